//! On-disk constants and fixed structures of the table format: the footer,
//! block handles, block trailers and varints.
//!
//! The byte-level description lives in `docs/format/sst.md`; every constant
//! it mentions is defined here, and layout constants are checked at compile
//! time. Values marked "on disk" must never change or be renumbered.

use std::path::Path;

use crate::error::{Error, Result};

/// Format version written by this build and the newest it reads (on disk).
/// Version 2 differs from version 1 only in the filter block: a blocked
/// filter ([`FILTER_KIND_BLOCKED`]) instead of [`FILTER_KIND_BLOOM_V1`].
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Magic number closing every table: the bytes `varvesst` in file order,
/// i.e. `0x7473_7365_7672_6176` read as a little-endian `u64` (on disk).
pub const MAGIC: u64 = u64::from_le_bytes(*b"varvesst");

/// Size of the footer at the end of every table.
pub const FOOTER_SIZE: usize = 64;
/// Offset in the footer of the filter block handle (two `u64` LE).
pub const FOOTER_FILTER_OFFSET: usize = 0;
/// Offset in the footer of the properties block handle (two `u64` LE).
pub const FOOTER_PROPERTIES_OFFSET: usize = 16;
/// Offset in the footer of the index block handle (two `u64` LE).
pub const FOOTER_INDEX_OFFSET: usize = 32;
/// Offset in the footer of the format version (`u32` LE).
pub const FOOTER_VERSION_OFFSET: usize = 48;
/// Offset in the footer of its CRC32 (`u32` LE over bytes `0..52`).
pub const FOOTER_CRC_OFFSET: usize = 52;
/// Offset in the footer of the magic number (`u64` LE).
pub const FOOTER_MAGIC_OFFSET: usize = 56;

const _: () = assert!(FOOTER_PROPERTIES_OFFSET == FOOTER_FILTER_OFFSET + FIXED_HANDLE_SIZE);
const _: () = assert!(FOOTER_INDEX_OFFSET == FOOTER_PROPERTIES_OFFSET + FIXED_HANDLE_SIZE);
const _: () = assert!(FOOTER_VERSION_OFFSET == FOOTER_INDEX_OFFSET + FIXED_HANDLE_SIZE);
const _: () = assert!(FOOTER_CRC_OFFSET == FOOTER_VERSION_OFFSET + 4);
const _: () = assert!(FOOTER_MAGIC_OFFSET == FOOTER_CRC_OFFSET + 4);
const _: () = assert!(FOOTER_SIZE == FOOTER_MAGIC_OFFSET + 8);
const _: () = assert!(FOOTER_SIZE == 64);

/// Size of a block handle in the footer: offset and size as `u64` LE.
pub const FIXED_HANDLE_SIZE: usize = 16;
/// Largest varint-encoded block handle (two 10-byte varints).
pub const MAX_VARINT_HANDLE_SIZE: usize = 20;

/// Size of the trailer after every block: compression type (1 byte) and
/// CRC32 (`u32` LE) over the block contents and the type byte.
pub const BLOCK_TRAILER_SIZE: usize = 5;
const _: () = assert!(BLOCK_TRAILER_SIZE == 1 + 4);

/// Size of a restart offset and of the restart count in a block (`u32` LE).
pub const RESTART_ENTRY_SIZE: usize = 4;

/// Compression type byte for an uncompressed block (on disk).
pub const COMPRESSION_NONE: u8 = 0;
/// Compression type byte for an LZ4-compressed block (on disk): the stored
/// bytes are `uncompressed_size: varint32` followed by one LZ4 block.
pub const COMPRESSION_LZ4: u8 = 1;
/// The largest uncompressed block a reader accepts (a block holds at least
/// one entry, and an entry is at most a 64 KiB key and an 8 MiB value).
pub const BLOCK_UNCOMPRESSED_SIZE_MAX: usize = 16 << 20;

/// Filter kind byte of a Bloom filter over [`hash64`](super::filter::hash64)
/// with double hashing over the whole bit array (on disk): the filter of
/// every format version 1 table.
pub const FILTER_KIND_BLOOM_V1: u8 = 1;
/// Filter kind byte of a blocked Bloom filter over
/// [`hash64`](super::filter::hash64), each key's probes in one
/// [`FILTER_BLOCK_SIZE`]-byte block (on disk): the filter of every format
/// version 2 table.
pub const FILTER_KIND_BLOCKED: u8 = 2;
/// Size of a block of a blocked filter: one cache line.
pub const FILTER_BLOCK_SIZE: usize = 64;
/// Size of the filter block's trailer: probe count (1 byte) and filter kind
/// (1 byte).
pub const FILTER_TRAILER_SIZE: usize = 2;
/// Most probes a filter may ask for.
pub const FILTER_PROBES_MAX: u8 = 30;

/// Default target size of a data block before its trailer.
pub const DEFAULT_BLOCK_SIZE_BYTES: usize = 4096;
/// Default number of entries between restart points in a data block.
pub const DEFAULT_BLOCK_RESTART_INTERVAL: usize = 16;
/// Default Bloom filter bits per distinct user key (≈ 1 % false positives).
pub const DEFAULT_BLOOM_BITS_PER_KEY: u32 = 10;

/// Where a block lives in a table file: its offset and the size of its
/// contents, not counting the [`BLOCK_TRAILER_SIZE`]-byte trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct BlockHandle {
    /// Byte offset of the block's first byte in the file.
    pub offset: u64,
    /// Size of the block's contents, without the trailer.
    pub size_bytes: u64,
}

impl BlockHandle {
    /// The offset just past the block's trailer, or `None` on overflow.
    pub fn end_with_trailer(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size_bytes)?
            .checked_add(BLOCK_TRAILER_SIZE as u64)
    }

    /// Appends the varint form (`offset:varint64 size:varint64`) to `buf`.
    pub fn encode_varint_into(&self, buf: &mut Vec<u8>) {
        put_varint64(buf, self.offset);
        put_varint64(buf, self.size_bytes);
    }

    /// Decodes the varint form; `None` if malformed or if bytes follow it.
    pub fn decode_varint(bytes: &[u8]) -> Option<BlockHandle> {
        let (offset, n) = get_varint64(bytes)?;
        let (size_bytes, m) = get_varint64(bytes.get(n..)?)?;
        (n + m == bytes.len()).then_some(BlockHandle { offset, size_bytes })
    }

    fn encode_fixed(&self, buf: &mut [u8; FOOTER_SIZE], at: usize) {
        buf[at..at + 8].copy_from_slice(&self.offset.to_le_bytes());
        buf[at + 8..at + 16].copy_from_slice(&self.size_bytes.to_le_bytes());
    }

    fn decode_fixed(buf: &[u8; FOOTER_SIZE], at: usize) -> BlockHandle {
        BlockHandle {
            offset: read_u64(buf, at),
            size_bytes: read_u64(buf, at + 8),
        }
    }
}

/// The fixed-size structure at the end of every table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// The filter block.
    pub filter: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
    /// The index block.
    pub index: BlockHandle,
    /// The table's format version, [`OLDEST_FORMAT_VERSION`] to
    /// [`FORMAT_VERSION`].
    pub version: u32,
}

impl Footer {
    /// Encodes the footer (with its `version`, which a writer sets to
    /// [`FORMAT_VERSION`]).
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut buf = [0u8; FOOTER_SIZE];
        self.filter.encode_fixed(&mut buf, FOOTER_FILTER_OFFSET);
        self.properties
            .encode_fixed(&mut buf, FOOTER_PROPERTIES_OFFSET);
        self.index.encode_fixed(&mut buf, FOOTER_INDEX_OFFSET);
        buf[FOOTER_VERSION_OFFSET..FOOTER_CRC_OFFSET].copy_from_slice(&self.version.to_le_bytes());
        let crc = crc32fast::hash(&buf[..FOOTER_CRC_OFFSET]);
        buf[FOOTER_CRC_OFFSET..FOOTER_MAGIC_OFFSET].copy_from_slice(&crc.to_le_bytes());
        buf[FOOTER_MAGIC_OFFSET..].copy_from_slice(&MAGIC.to_le_bytes());
        buf
    }

    /// Decodes and checks a footer read from byte `file_offset` of `path`.
    ///
    /// Checks, in order: magic, version, CRC. A version outside
    /// [`OLDEST_FORMAT_VERSION`]`..=`[`FORMAT_VERSION`] is
    /// [`Error::UnsupportedVersion`] unless the CRC would match with the
    /// version set to one of those: then the version field itself is
    /// damaged and the error is a corruption.
    ///
    /// # Errors
    /// [`Error::Corruption`] or [`Error::UnsupportedVersion`].
    pub fn decode(buf: &[u8; FOOTER_SIZE], path: &Path, file_offset: u64) -> Result<Footer> {
        let at = |field: usize| file_offset + field as u64;
        let magic = read_u64(buf, FOOTER_MAGIC_OFFSET);
        if magic != MAGIC {
            let what =
                format!("bad magic {magic:#018x}; expected {MAGIC:#018x} (not a Varve table?)");
            return Err(Error::corruption(path, at(FOOTER_MAGIC_OFFSET), what));
        }
        let version = read_u32(buf, FOOTER_VERSION_OFFSET);
        let stored_crc = read_u32(buf, FOOTER_CRC_OFFSET);
        let supported = OLDEST_FORMAT_VERSION..=FORMAT_VERSION;
        if !supported.contains(&version) {
            let damaged = supported.into_iter().any(|known| {
                let mut as_known = *buf;
                as_known[FOOTER_VERSION_OFFSET..FOOTER_CRC_OFFSET]
                    .copy_from_slice(&known.to_le_bytes());
                crc32fast::hash(&as_known[..FOOTER_CRC_OFFSET]) == stored_crc
            });
            if damaged {
                let what = format!("damaged format version field ({version})");
                return Err(Error::corruption(path, at(FOOTER_VERSION_OFFSET), what));
            }
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let computed_crc = crc32fast::hash(&buf[..FOOTER_CRC_OFFSET]);
        if computed_crc != stored_crc {
            let what = format!(
                "footer checksum mismatch: stored {stored_crc:#010x}, computed {computed_crc:#010x}"
            );
            return Err(Error::corruption(path, file_offset, what));
        }
        Ok(Footer {
            filter: BlockHandle::decode_fixed(buf, FOOTER_FILTER_OFFSET),
            properties: BlockHandle::decode_fixed(buf, FOOTER_PROPERTIES_OFFSET),
            index: BlockHandle::decode_fixed(buf, FOOTER_INDEX_OFFSET),
            version,
        })
    }
}

/// The CRC32 (IEEE) stored in a block trailer: over the contents, then the
/// compression type byte.
pub fn block_crc(contents: &[u8], compression_type: u8) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(contents);
    hasher.update(&[compression_type]);
    hasher.finalize()
}

/// Builds a block trailer for `contents`.
pub fn block_trailer(contents: &[u8], compression_type: u8) -> [u8; BLOCK_TRAILER_SIZE] {
    let mut trailer = [0u8; BLOCK_TRAILER_SIZE];
    trailer[0] = compression_type;
    trailer[1..].copy_from_slice(&block_crc(contents, compression_type).to_le_bytes());
    trailer
}

/// Appends `value` as a LEB128 varint (at most 10 bytes).
pub fn put_varint64(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends `value` as a LEB128 varint (at most 5 bytes).
pub fn put_varint32(buf: &mut Vec<u8>, value: u32) {
    put_varint64(buf, u64::from(value));
}

/// Decodes a varint at the start of `bytes`: the value and its length.
/// `None` if `bytes` ends inside it, it is longer than 10 bytes, or it
/// overflows 64 bits.
pub fn get_varint64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let payload = u64::from(byte & 0x7f);
        if i == 9 && payload > 1 {
            return None;
        }
        value |= payload << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Decodes a varint that must fit in 32 bits and take at most 5 bytes.
pub fn get_varint32(bytes: &[u8]) -> Option<(u32, usize)> {
    let (value, n) = get_varint64(bytes.get(..bytes.len().min(5))?)?;
    Some((u32::try_from(value).ok()?, n))
}

/// Reads a little-endian `u32` at `at`; `None` if `bytes` is too short.
pub fn get_u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    let mut buf = [0u8; 4];
    buf.copy_from_slice(raw);
    Some(u32::from_le_bytes(buf))
}

fn read_u32(buf: &[u8; FOOTER_SIZE], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn read_u64(buf: &[u8; FOOTER_SIZE], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer() -> Footer {
        Footer {
            filter: BlockHandle {
                offset: 100,
                size_bytes: 20,
            },
            properties: BlockHandle {
                offset: 125,
                size_bytes: 300,
            },
            index: BlockHandle {
                offset: 430,
                size_bytes: 40,
            },
            version: FORMAT_VERSION,
        }
    }

    #[test]
    fn magic_reads_varvesst_in_file_order() {
        assert_eq!(MAGIC, 0x7473_7365_7672_6176);
        assert_eq!(&footer().encode()[FOOTER_MAGIC_OFFSET..], b"varvesst");
    }

    #[test]
    fn footer_roundtrip_in_every_supported_version() {
        for version in OLDEST_FORMAT_VERSION..=FORMAT_VERSION {
            let footer = Footer {
                version,
                ..footer()
            };
            let buf = footer.encode();
            assert_eq!(Footer::decode(&buf, Path::new("t"), 0).unwrap(), footer);
        }
    }

    #[test]
    fn footer_damage_is_reported() {
        let path = Path::new("t");
        let mut bad_magic = footer().encode();
        bad_magic[60] ^= 1;
        assert!(
            Footer::decode(&bad_magic, path, 0)
                .unwrap_err()
                .is_corruption()
        );

        let mut flipped_version = footer().encode();
        flipped_version[FOOTER_VERSION_OFFSET] ^= 4;
        let err = Footer::decode(&flipped_version, path, 1000).unwrap_err();
        assert!(
            matches!(err, Error::Corruption { offset: 1048, .. }),
            "{err}"
        );

        for unknown in [0, FORMAT_VERSION + 1] {
            let err = Footer::decode(
                &Footer {
                    version: unknown,
                    ..footer()
                }
                .encode(),
                path,
                0,
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::UnsupportedVersion {
                        found,
                        supported: FORMAT_VERSION,
                        ..
                    } if found == unknown
                ),
                "{err}"
            );
        }

        let mut bad_handle = footer().encode();
        bad_handle[3] ^= 0x10;
        let err = Footer::decode(&bad_handle, path, 0).unwrap_err();
        assert!(matches!(err, Error::Corruption { offset: 0, .. }), "{err}");
    }

    #[test]
    fn varints_roundtrip_and_reject_garbage() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_varint64(&mut buf, value);
            assert_eq!(get_varint64(&buf), Some((value, buf.len())));
            assert_eq!(get_varint64(&buf[..buf.len() - 1]), None);
        }
        assert_eq!(get_varint64(&[0xff; 11]), None);
        assert_eq!(
            get_varint64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
        let mut big = Vec::new();
        put_varint64(&mut big, 1 << 32);
        assert_eq!(get_varint32(&big), None);
        assert_eq!(get_varint32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), None);
    }

    #[test]
    fn handle_varint_roundtrip() {
        let handle = BlockHandle {
            offset: 1 << 40,
            size_bytes: 4100,
        };
        let mut buf = Vec::new();
        handle.encode_varint_into(&mut buf);
        assert!(buf.len() <= MAX_VARINT_HANDLE_SIZE);
        assert_eq!(BlockHandle::decode_varint(&buf), Some(handle));
        buf.push(0);
        assert_eq!(BlockHandle::decode_varint(&buf), None);
        assert_eq!(
            BlockHandle {
                offset: u64::MAX,
                size_bytes: 1
            }
            .end_with_trailer(),
            None
        );
    }
}
