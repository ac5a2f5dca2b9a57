//! [`TableBuilder`]: writes a sorted run of entries as a table file.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use varve_changelog::fs::File;

use super::block::BlockBuilder;
use super::filter::FilterBuilder;
use super::format::{
    BLOCK_TRAILER_SIZE, BlockHandle, COMPRESSION_NONE, DEFAULT_BLOCK_RESTART_INTERVAL,
    DEFAULT_BLOCK_SIZE_BYTES, DEFAULT_BLOOM_BITS_PER_KEY, FOOTER_SIZE, FORMAT_VERSION, Footer,
    MAX_VARINT_HANDLE_SIZE, block_trailer,
};
use super::properties::TableProperties;
use crate::error::{Error, Result};
use crate::key::{InternalKeyRef, SeqNo, TRAILER_SIZE, ValueKind, cmp_encoded};

/// How many bytes of blocks a builder gathers before writing them to the
/// file in one call.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// How tables are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block's contents; a block is closed once it
    /// reaches this size (default 4096).
    pub block_size_bytes: usize,
    /// Entries between restart points in data blocks (default 16; at least
    /// 1). Larger saves space, smaller speeds up seeks and `prev`.
    pub block_restart_interval: usize,
    /// Bloom filter bits per distinct user key (default 10, ≈ 1 % false
    /// positives); 0 disables the filter.
    pub bloom_bits_per_key: u32,
    /// Compression of data blocks (default none). Index, filter and
    /// properties blocks are never compressed.
    pub compression: crate::options::Compression,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size_bytes: DEFAULT_BLOCK_SIZE_BYTES,
            block_restart_interval: DEFAULT_BLOCK_RESTART_INTERVAL,
            bloom_bits_per_key: DEFAULT_BLOOM_BITS_PER_KEY,
            compression: crate::options::Compression::None,
        }
    }
}

/// What [`TableBuilder::finish`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Size of the finished file.
    pub file_size_bytes: u64,
    /// The properties recorded in the file.
    pub properties: TableProperties,
}

/// Writes entries, added in strictly increasing internal-key order, as a
/// table: data blocks as they fill, then the filter, properties and index
/// blocks and the footer (see `docs/format/sst.md`).
///
/// After an error the builder is unusable: every later call returns the
/// same error, and the caller should delete the file.
///
/// # Examples
/// ```
/// use std::path::{Path, PathBuf};
/// use std::sync::Arc;
/// use varve_db::internals::key::{InternalKeyRef, SeqNo, ValueKind};
/// use varve_db::internals::sst::{Table, TableBuilder, TableOptions};
/// use varve_changelog::fs::{FileSystem, MemFs, OpenMode};
///
/// let fs = MemFs::new();
/// let path = PathBuf::from("/000001.sst");
/// let file = fs.open_file(&path, OpenMode::CreateNew)?;
/// let mut builder = TableBuilder::new(file.clone(), path.clone(), TableOptions::default());
/// let key = InternalKeyRef { user_key: b"apple", seqno: SeqNo(7), kind: ValueKind::Put };
/// builder.add(key, b"red")?;
/// let info = builder.finish()?;
/// assert_eq!(info.properties.entry_count, 1);
///
/// let table = Table::open(file, path, 1)?;
/// let (seqno, kind, value) = table.get(b"apple", SeqNo::MAX)?.expect("present");
/// assert_eq!((seqno, kind, &value[..]), (SeqNo(7), ValueKind::Put, &b"red"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TableBuilder {
    file: Arc<dyn File>,
    path: PathBuf,
    options: TableOptions,
    /// The table's length so far, the bytes in `pending` included.
    offset: u64,
    /// Bytes at the end of the table not yet written to the file: blocks
    /// go out in writes of about [`WRITE_BUFFER_BYTES`], not one each.
    pending: Vec<u8>,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    filter: FilterBuilder,
    props: TableProperties,
    last_key: Vec<u8>,
    key_buf: Vec<u8>,
    error: Option<Error>,
}

impl TableBuilder {
    /// A builder writing to `file` (which should be empty) from offset 0.
    /// `path` is used in error messages.
    ///
    /// # Panics
    /// If `options.block_restart_interval` is 0.
    pub fn new(file: Arc<dyn File>, path: PathBuf, options: TableOptions) -> Self {
        assert!(
            options.block_restart_interval >= 1,
            "block_restart_interval must be at least 1"
        );
        TableBuilder {
            file,
            path,
            options,
            offset: 0,
            pending: Vec::new(),
            data_block: BlockBuilder::new(options.block_restart_interval),
            index_block: BlockBuilder::new(1),
            filter: FilterBuilder::new(options.bloom_bits_per_key),
            props: TableProperties::default(),
            last_key: Vec::new(),
            key_buf: Vec::new(),
            error: None,
        }
    }

    /// Adds an entry. A delete's `value` must be empty.
    ///
    /// # Errors
    /// [`Error::Io`] if writing a full data block failed (or an earlier
    /// call failed).
    ///
    /// # Panics
    /// If `key` does not sort strictly after the previous key in internal
    /// order, if `key` is a delete with a non-empty value, if its seqno is
    /// above [`SeqNo::MAX`], or if the key or value is 4 GiB or longer.
    pub fn add(&mut self, key: InternalKeyRef<'_>, value: &[u8]) -> Result<()> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        assert!(
            key.seqno <= SeqNo::MAX,
            "seqno {} is above SeqNo::MAX",
            key.seqno.0
        );
        assert!(
            key.kind != ValueKind::Delete || value.is_empty(),
            "a delete must have an empty value"
        );
        self.key_buf.clear();
        key.encode_into(&mut self.key_buf);
        let first = self.props.entry_count == 0;
        if !first {
            let order = cmp_encoded(&self.last_key, &self.key_buf);
            assert!(
                order == Ordering::Less,
                "table keys must be added in strictly increasing internal order"
            );
        }
        let last_user_key = &self.last_key[..self.last_key.len().saturating_sub(TRAILER_SIZE)];
        if first || last_user_key != key.user_key {
            self.filter.add_key(key.user_key);
        }
        self.record(key, value);
        self.data_block.add(&self.key_buf, value);
        std::mem::swap(&mut self.last_key, &mut self.key_buf);
        if self.data_block.estimated_size_bytes() >= self.options.block_size_bytes {
            let result = self.flush_data_block();
            return self.remember(result);
        }
        Ok(())
    }

    fn record(&mut self, key: InternalKeyRef<'_>, value: &[u8]) {
        let props = &mut self.props;
        if props.entry_count == 0 {
            props.smallest_key.clone_from(&self.key_buf);
            (props.seqno_min, props.seqno_max) = (key.seqno, key.seqno);
        }
        props.seqno_min = props.seqno_min.min(key.seqno);
        props.seqno_max = props.seqno_max.max(key.seqno);
        props.entry_count += 1;
        props.tombstone_count += u64::from(key.kind == ValueKind::Delete);
        props.raw_key_size_bytes += self.key_buf.len() as u64;
        props.raw_value_size_bytes += value.len() as u64;
    }

    fn remember<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    fn flush_data_block(&mut self) -> Result<()> {
        assert!(!self.data_block.is_empty());
        let contents = self.data_block.finish();
        let (stored, compression_type) =
            super::compress::compress(contents, self.options.compression);
        let handle = self.write_stored_block(stored, compression_type)?;
        let mut encoded = Vec::with_capacity(MAX_VARINT_HANDLE_SIZE);
        handle.encode_varint_into(&mut encoded);
        // The separator is exactly the block's last key (format version 1).
        self.index_block.add(&self.last_key, &encoded);
        self.props.data_block_count += 1;
        Ok(())
    }

    /// Writes `contents` uncompressed, with its trailer, at the end of the
    /// file.
    fn write_block(&mut self, contents: Vec<u8>) -> Result<BlockHandle> {
        self.write_stored_block(contents, COMPRESSION_NONE)
    }

    /// Writes stored (possibly compressed) block bytes and their trailer.
    fn write_stored_block(
        &mut self,
        mut contents: Vec<u8>,
        compression_type: u8,
    ) -> Result<BlockHandle> {
        let handle = BlockHandle {
            offset: self.offset,
            size_bytes: contents.len() as u64,
        };
        let trailer = block_trailer(&contents, compression_type);
        contents.extend_from_slice(&trailer);
        self.write_at_end(&contents)?;
        Ok(handle)
    }

    /// Appends `bytes` to the table, writing the buffered end of it to the
    /// file once it holds [`WRITE_BUFFER_BYTES`].
    fn write_at_end(&mut self, bytes: &[u8]) -> Result<()> {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(WRITE_BUFFER_BYTES + (64 << 10));
        }
        self.pending.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
        if self.pending.len() >= WRITE_BUFFER_BYTES {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes the buffered end of the table to the file.
    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = self.offset - self.pending.len() as u64;
        self.file
            .write_all_at(&self.pending, at)
            .map_err(|e| Error::io("write", &self.path, e))?;
        // The device writes while the rest of the table is built, so the
        // sync at the end waits for little more than the last write. A
        // hint: the sync reports any failure to write.
        let _ = self.file.start_writeback(at, self.pending.len() as u64);
        self.pending.clear();
        Ok(())
    }

    /// Number of entries added so far.
    pub fn entry_count(&self) -> u64 {
        self.props.entry_count
    }

    /// An estimate of the file size if the builder were finished now, so
    /// callers can split output into files of a target size.
    pub fn estimated_size_bytes(&self) -> u64 {
        let pending = self.data_block.estimated_size_bytes()
            + self.index_block.estimated_size_bytes()
            + self.filter.estimated_size_bytes()
            + 3 * BLOCK_TRAILER_SIZE
            + FOOTER_SIZE;
        self.offset + pending as u64
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the last data block, the filter, properties and index blocks
    /// and the footer, then syncs the file's data (`sync_data`). The
    /// caller syncs the directory if the file is new.
    ///
    /// # Errors
    /// [`Error::Io`] if a write or the sync failed (or an earlier call
    /// failed); the file is then incomplete and should be deleted.
    pub fn finish(mut self) -> Result<TableInfo> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if !self.data_block.is_empty() {
            self.flush_data_block()?;
        }
        let data_size_bytes = self.offset;
        let filter = self.write_block(self.filter.finish())?;
        let index_contents = self.index_block.finish();
        let props = self.final_properties(data_size_bytes, filter, index_contents.len());
        let properties = self.write_block(props.encode())?;
        let index = self.write_block(index_contents)?;
        let footer = Footer {
            filter,
            properties,
            index,
            version: FORMAT_VERSION,
        };
        let encoded = footer.encode();
        assert!(
            Footer::decode(&encoded, &self.path, self.offset)
                .is_ok_and(|decoded| decoded == footer),
            "footer does not survive its own decoder"
        );
        self.write_at_end(&encoded)?;
        self.write_pending()?;
        self.trim_and_sync()?;
        Ok(TableInfo {
            file_size_bytes: self.offset,
            properties: props,
        })
    }

    fn final_properties(
        &mut self,
        data_size_bytes: u64,
        filter: BlockHandle,
        index_size_bytes: usize,
    ) -> TableProperties {
        let mut props = std::mem::take(&mut self.props);
        props.largest_key.clone_from(&self.last_key);
        props.data_size_bytes = data_size_bytes;
        props.filter_size_bytes = filter.size_bytes + BLOCK_TRAILER_SIZE as u64;
        props.index_size_bytes = (index_size_bytes + BLOCK_TRAILER_SIZE) as u64;
        props.creation_time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        props.creator = format!("varve {}", env!("CARGO_PKG_VERSION"));
        props.compression = match self.options.compression {
            crate::options::Compression::None => "none".into(),
            crate::options::Compression::Lz4 => "lz4".into(),
        };
        props.block_size_bytes = self.options.block_size_bytes as u64;
        props.block_restart_interval = self.options.block_restart_interval as u64;
        props.bloom_bits_per_key = u64::from(self.options.bloom_bits_per_key);
        props
    }

    /// Cuts off anything past the table (if the file was not empty) and
    /// syncs.
    fn trim_and_sync(&self) -> Result<()> {
        let len = self
            .file
            .len()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        if len > self.offset {
            self.file
                .set_len(self.offset)
                .map_err(|e| Error::io("truncate", &self.path, e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| Error::sync(&self.path, e))
    }
}
