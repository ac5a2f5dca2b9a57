//! `log.meta`: the log's durable metadata.
//!
//! ```text
//! meta := magic:[u8; 8] = "VARVELOG"  version:u32 = 1
//!         log_start_offset:u64  recovery_point:u64  crc:u32
//! ```
//! All integers little-endian; the CRC-32 covers bytes `[0, 28)`. The file
//! is always replaced atomically (temp file, fsync, rename, directory
//! fsync). Format: `docs/format/changelog-meta.md`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::{self, FileSystem};

/// The magic bytes at the start of `log.meta`.
pub const META_MAGIC: [u8; 8] = *b"VARVELOG";
/// The meta format version this build writes and reads.
pub const META_VERSION: u32 = 1;
/// Size of `log.meta` in bytes.
pub const META_SIZE: usize = 32;

/// The contents of `log.meta`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogMeta {
    /// The first offset still in the log; reads below it are out of range.
    pub log_start_offset: u64,
    /// Every batch below this offset was synced; damage below it is
    /// corruption, not a torn tail.
    pub recovery_point: u64,
}

impl LogMeta {
    /// Encodes the file.
    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut out = [0u8; META_SIZE];
        out[0..8].copy_from_slice(&META_MAGIC);
        out[8..12].copy_from_slice(&META_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.log_start_offset.to_le_bytes());
        out[20..28].copy_from_slice(&self.recovery_point.to_le_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the file read from `path`.
    ///
    /// # Errors
    /// [`Error::NotALog`] for a wrong magic, [`Error::UnsupportedVersion`],
    /// or [`Error::Corruption`] for a wrong size or CRC.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<LogMeta> {
        if bytes.len() < 8 || bytes[0..8] != META_MAGIC {
            return Err(Error::NotALog {
                path: path.to_owned(),
                reason: "log.meta has no changelog magic".into(),
            });
        }
        if bytes.len() != META_SIZE {
            return Err(Error::corruption(
                path,
                0,
                format!("log.meta is {} bytes, expected {META_SIZE}", bytes.len()),
            ));
        }
        let crc = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
        if crc32fast::hash(&bytes[..28]) != crc {
            return Err(Error::corruption(path, 28, "log.meta CRC mismatch"));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != META_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                found: version,
                supported: META_VERSION,
            });
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[12..20]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[20..28]);
        let meta = LogMeta {
            log_start_offset: u64::from_le_bytes(a),
            recovery_point: u64::from_le_bytes(b),
        };
        if meta.recovery_point < meta.log_start_offset {
            return Err(Error::corruption(
                path,
                20,
                "recovery point below log start offset",
            ));
        }
        Ok(meta)
    }

    /// Reads `log.meta`.
    ///
    /// # Errors
    /// I/O errors, or as [`LogMeta::decode`].
    pub fn read(fs: &dyn FileSystem, path: &Path) -> Result<LogMeta> {
        let bytes = fs::read_file(fs, path).map_err(|e| Error::io("read log.meta", path, e))?;
        LogMeta::decode(path, &bytes)
    }

    /// Writes `log.meta` atomically and durably.
    ///
    /// # Errors
    /// The I/O error; the old file is then intact.
    pub fn write(&self, fs: &dyn FileSystem, path: &Path) -> Result<()> {
        fs::write_file_atomic(fs, path, &self.encode())
            .map_err(|e| Error::io("write log.meta", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let p = Path::new("log.meta");
        let m = LogMeta {
            log_start_offset: 5,
            recovery_point: 9,
        };
        let bytes = m.encode();
        assert_eq!(LogMeta::decode(p, &bytes).unwrap(), m);
        for bit in 0..META_SIZE * 8 {
            let mut d = bytes;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(LogMeta::decode(p, &d).is_err(), "bit {bit}");
        }
        assert!(matches!(
            LogMeta::decode(p, b"hello"),
            Err(Error::NotALog { .. })
        ));
    }
}
