//! [`Table`]: an open, immutable table file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use varve_changelog::fs::File;

use super::block::{Block, BlockKind, BlockOrigin};
use super::block_iter::BlockIter;
use super::compress::decompress;
use super::filter::{BloomFilter, hash64};
use super::format::{BLOCK_TRAILER_SIZE, BlockHandle, FOOTER_SIZE, Footer, block_crc};
use super::index::Index;
use super::properties::{TableProperties, mismatch};
use crate::cache::BlockCache;
use crate::error::{Error, Result};
use crate::key::{InternalKeyRef, SeqNo, ValueKind};

/// An open table. The footer, index, filter and properties are read and
/// checked by [`open`](Table::open) and kept in memory; data blocks are read
/// on demand with positioned reads, each checked against its CRC and
/// structure. Share it as `Arc<Table>`.
pub struct Table {
    file: Arc<dyn File>,
    path: PathBuf,
    shared_path: Arc<Path>,
    file_number: u64,
    file_size_bytes: u64,
    footer: Footer,
    index: Index,
    filter: BloomFilter,
    properties: TableProperties,
    cache: Option<Arc<BlockCache>>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("path", &self.path)
            .field("file_number", &self.file_number)
            .field("file_size_bytes", &self.file_size_bytes)
            .field("data_block_count", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Opens the table in `file`: reads and checks the footer, then the
    /// index, filter and properties blocks, and checks that they agree.
    /// `path` is used in error messages; `file_number` identifies the table
    /// (and will key its blocks in a block cache).
    ///
    /// # Errors
    /// [`Error::Corruption`] for any damage, [`Error::UnsupportedVersion`]
    /// for a table written by a newer format version, [`Error::Io`] if a
    /// read failed.
    pub fn open(file: Arc<dyn File>, path: PathBuf, file_number: u64) -> Result<Table> {
        Table::open_with_cache(file, path, file_number, None)
    }

    /// Like [`open`](Table::open), with data blocks looked up in and added
    /// to `cache`.
    ///
    /// # Errors
    /// As [`open`](Table::open).
    pub fn open_with_cache(
        file: Arc<dyn File>,
        path: PathBuf,
        file_number: u64,
        cache: Option<Arc<BlockCache>>,
    ) -> Result<Table> {
        let shared_path: Arc<Path> = Arc::from(path.as_path());
        let file_size_bytes = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let Some(footer_offset) = file_size_bytes.checked_sub(FOOTER_SIZE as u64) else {
            let what = format!(
                "file of {file_size_bytes} bytes is shorter than the {FOOTER_SIZE}-byte footer"
            );
            return Err(Error::corruption(&path, 0, what));
        };
        let mut raw = [0u8; FOOTER_SIZE];
        read_exact(file.as_ref(), &path, &mut raw, footer_offset)?;
        let footer = Footer::decode(&raw, &path, footer_offset)?;
        check_layout(&footer, footer_offset, &path)?;
        let reader = RawReader {
            file: file.as_ref(),
            path: &shared_path,
        };
        let index_block = reader.read_checked(footer.index, BlockKind::Index)?;
        let index = Index::decode(&index_block, footer.filter.offset)?;
        let filter_contents = reader.read_contents(footer.filter)?;
        let filter =
            BloomFilter::decode(filter_contents, &path, footer.filter.offset, footer.version)?;
        let properties_block = reader.read_checked(footer.properties, BlockKind::Properties)?;
        let properties = TableProperties::decode(&properties_block)?;
        check_properties(&properties, &footer, &index, &path)?;
        Ok(Table {
            file,
            path,
            shared_path,
            file_number,
            file_size_bytes,
            footer,
            index,
            filter,
            properties,
            cache,
        })
    }

    /// The newest version of `user_key` with a sequence number `<=
    /// snapshot`: its seqno, kind and value (empty for a delete). `None` if
    /// the table holds no such version. The Bloom filter is consulted first,
    /// so most lookups of absent keys read no data block.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the data block is damaged, [`Error::Io`] if
    /// the read failed.
    pub fn get(
        &self,
        user_key: &[u8],
        snapshot: SeqNo,
    ) -> Result<Option<(SeqNo, ValueKind, Bytes)>> {
        self.get_hashed(user_key, hash64(user_key), snapshot)
    }

    /// [`get`](Self::get) with the filter hash of `user_key` already
    /// computed (`key_hash` must be [`hash64`]`(user_key)`), so that a
    /// read that probes several tables hashes the key once.
    pub(crate) fn get_hashed(
        &self,
        user_key: &[u8],
        key_hash: u64,
        snapshot: SeqNo,
    ) -> Result<Option<(SeqNo, ValueKind, Bytes)>> {
        debug_assert_eq!(key_hash, hash64(user_key));
        if !self.filter.may_contain_hash(key_hash) {
            return Ok(None);
        }
        let target = InternalKeyRef::seek_key(user_key, snapshot);
        let position = self.index.find(&target);
        if position == self.index.len() {
            return Ok(None);
        }
        let mut iter = BlockIter::new(self.data_block(position, true)?);
        iter.seek(&target);
        iter.status()?;
        if !iter.valid() || iter.key().user_key != user_key {
            return Ok(None);
        }
        let key = iter.key();
        Ok(Some((key.seqno, key.kind, iter.value_bytes())))
    }

    /// Whether the table may hold `user_key`, per its Bloom filter; `false`
    /// means it certainly does not.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter.may_contain(user_key)
    }

    /// The properties recorded when the table was built.
    pub fn properties(&self) -> &TableProperties {
        &self.properties
    }

    /// The file's size.
    pub fn file_size_bytes(&self) -> u64 {
        self.file_size_bytes
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table's file number.
    pub fn file_number(&self) -> u64 {
        self.file_number
    }

    /// The decoded footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Memory held by the open table (index and filter), roughly.
    pub fn memory_size_bytes(&self) -> usize {
        self.index.memory_size_bytes() + self.filter.size_bytes()
    }

    /// The handles of the data blocks, in file order (for dump tools).
    ///
    /// # Errors
    /// None today (the index is in memory); a future partitioned index may
    /// need to read.
    pub fn data_block_handles(&self) -> Result<Vec<BlockHandle>> {
        Ok(self.index.handles())
    }

    /// Reads and checks the data block at `handle`: CRC, compression type
    /// and structure, bypassing the block cache.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the block is damaged or `handle` lies
    /// outside the data region, [`Error::Io`] if the read failed.
    pub fn read_block(&self, handle: BlockHandle) -> Result<Arc<Block>> {
        let inside = handle
            .end_with_trailer()
            .is_some_and(|end| end <= self.footer.filter.offset);
        if !inside {
            let what = format!("block handle {handle:?} lies outside the data region");
            return Err(Error::corruption(&self.path, handle.offset, what));
        }
        let reader = RawReader {
            file: self.file.as_ref(),
            path: &self.shared_path,
        };
        reader.read_checked(handle, BlockKind::Data).map(Arc::new)
    }

    /// Number of data blocks.
    pub(crate) fn data_block_count(&self) -> usize {
        self.index.len()
    }

    /// The first data block that can hold an entry `>= target`.
    pub(crate) fn index_position(&self, target: &InternalKeyRef<'_>) -> usize {
        self.index.find(target)
    }

    /// Data block `i`, from the block cache if it is there; otherwise read
    /// from the file (and added to the cache if `fill_cache`).
    pub(crate) fn data_block(&self, i: usize, fill_cache: bool) -> Result<Arc<Block>> {
        let Some(cache) = &self.cache else {
            return self.data_block_from_file(i);
        };
        let offset = self.index.handle(i).offset;
        if let Some(block) = cache.get(self.file_number, offset) {
            return Ok(block);
        }
        let block = self.data_block_from_file(i)?;
        if fill_cache {
            cache.insert(self.file_number, offset, Arc::clone(&block));
        }
        Ok(block)
    }

    /// Reads data block `i` from the file, bypassing the cache, and checks
    /// that it lies between its neighbours' index keys: its last key equals
    /// its index key, and its first key sorts after the previous block's
    /// index key.
    pub(crate) fn data_block_from_file(&self, i: usize) -> Result<Arc<Block>> {
        let handle = self.index.handle(i);
        let block = self.read_block(handle)?;
        let last_matches = InternalKeyRef::decode(block.last_key()) == Some(self.index.key(i));
        let first_after_previous = i == 0
            || InternalKeyRef::decode(block.first_key())
                .is_some_and(|first| first.cmp_internal(&self.index.key(i - 1)).is_gt());
        if !(last_matches && first_after_previous) {
            let what = "data block keys disagree with the index";
            return Err(Error::corruption(&self.path, handle.offset, what));
        }
        Ok(block)
    }
}

/// Positioned reads of whole blocks, before and after a `Table` exists.
struct RawReader<'a> {
    file: &'a dyn File,
    path: &'a Arc<Path>,
}

impl RawReader<'_> {
    /// Reads a block and its trailer; checks the CRC and compression type.
    fn read_contents(&self, handle: BlockHandle) -> Result<Bytes> {
        let len = usize::try_from(handle.size_bytes)
            .ok()
            .and_then(|size| size.checked_add(BLOCK_TRAILER_SIZE));
        let Some(len) = len else {
            return Err(Error::corruption(
                self.path.as_ref(),
                handle.offset,
                "block size overflows",
            ));
        };
        let mut buf = vec![0u8; len];
        read_exact(self.file, self.path, &mut buf, handle.offset)?;
        let size = len - BLOCK_TRAILER_SIZE;
        let compression_type = buf[size];
        let mut stored = [0u8; 4];
        stored.copy_from_slice(&buf[size + 1..]);
        let stored = u32::from_le_bytes(stored);
        let computed = block_crc(&buf[..size], compression_type);
        if stored != computed {
            let what = format!(
                "block checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            );
            return Err(Error::corruption(self.path.as_ref(), handle.offset, what));
        }
        buf.truncate(size);
        decompress(buf, compression_type, self.path.as_ref(), handle.offset)
    }

    /// Reads a block and checks its structure as `kind`.
    fn read_checked(&self, handle: BlockHandle, kind: BlockKind) -> Result<Block> {
        let contents = self.read_contents(handle)?;
        let origin = BlockOrigin {
            path: Arc::clone(self.path),
            offset: handle.offset,
        };
        Block::decode(contents, kind, origin)
    }
}

fn read_exact(file: &dyn File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::corruption(
                path,
                offset,
                format!("file ends inside the {} bytes read here", buf.len()),
            )
        } else {
            Error::io("read", path, e)
        }
    })
}

/// Checks that filter, properties and index blocks follow each other with
/// no gaps and end where the footer starts.
fn check_layout(footer: &Footer, footer_offset: u64, path: &Path) -> Result<()> {
    let filter_end = footer.filter.end_with_trailer();
    let properties_end = footer.properties.end_with_trailer();
    let index_end = footer.index.end_with_trailer();
    let tiled = filter_end == Some(footer.properties.offset)
        && properties_end == Some(footer.index.offset)
        && index_end == Some(footer_offset);
    if !tiled {
        let what = format!("footer handles do not tile the file: {footer:?}");
        return Err(Error::corruption(path, footer_offset, what));
    }
    Ok(())
}

/// Checks that the properties agree with the footer and the index.
fn check_properties(
    props: &TableProperties,
    footer: &Footer,
    index: &Index,
    path: &Path,
) -> Result<()> {
    let at = footer.properties.offset;
    let trailer = BLOCK_TRAILER_SIZE as u64;
    let checks = [
        (
            "data_size_bytes",
            props.data_size_bytes,
            footer.filter.offset,
        ),
        (
            "filter_size_bytes",
            props.filter_size_bytes,
            footer.filter.size_bytes + trailer,
        ),
        (
            "index_size_bytes",
            props.index_size_bytes,
            footer.index.size_bytes + trailer,
        ),
        (
            "data_block_count",
            props.data_block_count,
            index.len() as u64,
        ),
    ];
    for (what, recorded, actual) in checks {
        if recorded != actual {
            return Err(mismatch(path, at, what, recorded, actual));
        }
    }
    let largest_matches = match index.len() {
        0 => props.largest_key.is_empty(),
        n => props.largest() == Some(index.key(n - 1)),
    };
    if !largest_matches {
        return Err(Error::corruption(
            path,
            at,
            "largest key disagrees with the index",
        ));
    }
    Ok(())
}
