//! `positions`: durable, named consumer positions.
//!
//! ```text
//! positions := magic:[u8; 8] = "VARVEPOS"  version:u32 = 1  count:u32
//!              entry{count}  crc:u32
//! entry     := name_len:u16  name:[u8; name_len] (UTF-8)  offset:u64
//! ```
//! Little-endian; the CRC-32 covers every byte before it. Replaced
//! atomically on every commit. Format: `docs/format/changelog-positions.md`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::{self, FileSystem};

/// The magic bytes at the start of the positions file.
pub const POSITIONS_MAGIC: [u8; 8] = *b"VARVEPOS";
/// The positions format version.
pub const POSITIONS_VERSION: u32 = 1;
/// The longest consumer name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// The most consumers a log tracks.
pub const MAX_CONSUMERS: usize = 1024;

/// Encodes a positions map.
pub fn encode(positions: &BTreeMap<String, u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + positions.len() * 32);
    out.extend_from_slice(&POSITIONS_MAGIC);
    out.extend_from_slice(&POSITIONS_VERSION.to_le_bytes());
    out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for (name, offset) in positions {
        assert!(
            name.len() <= MAX_NAME_BYTES,
            "consumer name checked by caller"
        );
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a positions file read from `path`.
///
/// # Errors
/// [`Error::Corruption`] naming the byte where the file is wrong, or
/// [`Error::UnsupportedVersion`].
pub fn decode(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, u64>> {
    let bad = |at: usize, what: &str| Error::corruption(path, at as u64, what.to_owned());
    if bytes.len() < 20 {
        return Err(bad(0, "positions file too short"));
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32fast::hash(body) != crc {
        return Err(bad(body.len(), "positions CRC mismatch"));
    }
    if body[0..8] != POSITIONS_MAGIC {
        return Err(bad(0, "bad positions magic"));
    }
    let version = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
    if version != POSITIONS_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
            supported: POSITIONS_VERSION,
        });
    }
    let count = u32::from_le_bytes([body[12], body[13], body[14], body[15]]) as usize;
    if count > MAX_CONSUMERS {
        return Err(bad(12, "too many consumers"));
    }
    let mut map = BTreeMap::new();
    let mut pos = 16;
    for _ in 0..count {
        let len_end = pos + 2;
        let name_len = body
            .get(pos..len_end)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| bad(pos, "entry past end"))?;
        if name_len > MAX_NAME_BYTES {
            return Err(bad(pos, "consumer name too long"));
        }
        let name = body
            .get(len_end..len_end + name_len)
            .ok_or_else(|| bad(pos, "entry past end"))?;
        let name =
            std::str::from_utf8(name).map_err(|_| bad(len_end, "consumer name is not UTF-8"))?;
        let off_at = len_end + name_len;
        let raw = body
            .get(off_at..off_at + 8)
            .ok_or_else(|| bad(off_at, "entry past end"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(raw);
        map.insert(name.to_owned(), u64::from_le_bytes(a));
        pos = off_at + 8;
    }
    if pos != body.len() {
        return Err(bad(pos, "bytes after the last entry"));
    }
    Ok(map)
}

/// Reads the positions file; an absent file is an empty map.
///
/// # Errors
/// I/O errors or as [`decode`].
pub fn read(fs: &dyn FileSystem, path: &Path) -> Result<BTreeMap<String, u64>> {
    match fs::read_file(fs, path) {
        Ok(bytes) => decode(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Error::io("read positions", path, e)),
    }
}

/// Writes the positions file atomically and durably.
///
/// # Errors
/// The I/O error; the old file is then intact.
pub fn write(fs: &dyn FileSystem, path: &Path, positions: &BTreeMap<String, u64>) -> Result<()> {
    fs::write_file_atomic(fs, path, &encode(positions))
        .map_err(|e| Error::io("write positions", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_bit_flip() {
        let p = Path::new("positions");
        let mut m = BTreeMap::new();
        m.insert("shipper".to_owned(), 42);
        m.insert("standby-1".to_owned(), 7);
        let bytes = encode(&m);
        assert_eq!(decode(p, &bytes).unwrap(), m);
        for bit in 0..bytes.len() * 8 {
            let mut d = bytes.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(p, &d).is_err(), "bit {bit}");
        }
        for len in 0..bytes.len() {
            assert!(decode(p, &bytes[..len]).is_err(), "truncated to {len}");
        }
    }
}
