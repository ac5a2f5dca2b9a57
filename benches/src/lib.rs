//! `varve-bench`: benchmarks of Varve and its changelog.
//!
//! The criterion micro-benchmarks live in `benches/` (run them with
//! `cargo bench -p varve-bench --bench changelog`, add `-- --quick` for a
//! short run or a name filter such as `-- append_sync`). This library holds
//! the workload pieces they share with other runners, so that every
//! benchmark writes the same records:
//!
//! - [`records`]: records of a 16-byte key and a 100-byte value
//!   ([`RECORD_BYTES`] = 116 bytes of payload);
//! - [`frame_records`]: the baseline's format, each record as a 4-byte
//!   length, a 4-byte CRC-32 and the payload ([`FRAMED_RECORD_BYTES`]);
//! - [`bench_dir`]: a scratch directory on a real file system
//!   (`VARVE_BENCH_DIR` overrides the default), and [`file_system_of`] to
//!   say which one it is;
//! - [`engines`]: the stores the `varve-bench` runner drives (Varve, and
//!   behind cargo features RocksDB, fjall and sled) behind one trait;
//! - [`runner`]: the db_bench-style workloads, their metrics, the table and
//!   JSON output and the charts of `varve-bench report`.

pub mod engines;
pub mod runner;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use varve_changelog::Record;

/// Bytes in a benchmark record's key.
pub const KEY_BYTES: usize = 16;
/// Bytes in a benchmark record's value.
pub const VALUE_BYTES: usize = 100;
/// Payload bytes of one benchmark record (key and value).
pub const RECORD_BYTES: usize = KEY_BYTES + VALUE_BYTES;
/// Bytes of the baseline's per-record frame header: length and CRC-32.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of one framed record in the baseline format.
pub const FRAMED_RECORD_BYTES: usize = FRAME_HEADER_BYTES + RECORD_BYTES;
/// The environment variable that chooses the parent directory of
/// [`bench_dir`].
pub const BENCH_DIR_ENV: &str = "VARVE_BENCH_DIR";

/// The key of record number `i`: 16 ASCII bytes, `k` and 15 decimal digits.
pub fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut out = [b'0'; KEY_BYTES];
    out[0] = b'k';
    let mut n = i;
    for slot in out[1..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// The value of record number `i`: [`VALUE_BYTES`] deterministic
/// pseudo-random bytes (so that nothing compresses or dedups them).
pub fn value(i: u64) -> [u8; VALUE_BYTES] {
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = [0u8; VALUE_BYTES];
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// `n` records numbered from `first`, each a put of [`key`] to [`value`]
/// with one fixed timestamp. Cloning them is cheap (`Bytes`).
pub fn records(first: u64, n: usize) -> Vec<Record> {
    (first..first + n as u64)
        .map(|i| {
            Record::put(
                Bytes::copy_from_slice(&key(i)),
                Bytes::copy_from_slice(&value(i)),
            )
            .with_timestamp_ms(1_700_000_000_000)
        })
        .collect()
}

/// Appends `records` to `out` in the baseline format: for each record its
/// payload length (`u32` little endian), the CRC-32 of the payload, and the
/// payload (key then value).
pub fn frame_records(out: &mut Vec<u8>, records: &[Record]) {
    for record in records {
        let value: &[u8] = record.value.as_deref().unwrap_or_default();
        let len = record.key.len() + value.len();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&record.key);
        crc.update(value);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&record.key);
        out.extend_from_slice(value);
    }
}

/// A fresh scratch directory, removed when dropped: inside `$VARVE_BENCH_DIR`
/// if that is set, else inside `default_parent` (created if missing). Choose
/// a parent on the file system you mean to measure: a `tmpfs` makes synced
/// writes free.
///
/// # Errors
/// I/O errors creating the directory.
pub fn bench_dir(default_parent: &Path) -> io::Result<tempfile::TempDir> {
    let parent = std::env::var_os(BENCH_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| default_parent.to_owned());
    std::fs::create_dir_all(&parent)?;
    tempfile::Builder::new()
        .prefix("varve-bench-")
        .tempdir_in(parent)
}

/// The mount point and file-system type that hold `path` (from
/// `/proc/self/mounts`), or `None` where that cannot be told.
pub fn file_system_of(path: &Path) -> Option<(PathBuf, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = PathBuf::from(fields.next()?.replace("\\040", " "));
            let fs_type = fields.next()?.to_owned();
            Some((mount_point, fs_type))
        })
        .filter(|(mount_point, _)| path.starts_with(mount_point))
        .max_by_key(|(mount_point, _)| mount_point.as_os_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_benchmark_shape() {
        let recs = records(7, 3);
        assert_eq!(recs.len(), 3);
        for r in &recs {
            assert_eq!(r.key.len(), KEY_BYTES);
            assert_eq!(r.value.as_ref().unwrap().len(), VALUE_BYTES);
        }
        assert_eq!(&recs[0].key[..], b"k000000000000007");
        assert_ne!(recs[0].value, recs[1].value);
        assert_eq!(records(7, 1)[0], recs[0]);
    }

    #[test]
    fn frames_are_length_crc_payload() {
        let recs = records(0, 2);
        let mut out = Vec::new();
        frame_records(&mut out, &recs);
        assert_eq!(out.len(), 2 * FRAMED_RECORD_BYTES);
        let frame = &out[FRAMED_RECORD_BYTES..];
        assert_eq!(frame[..4], (RECORD_BYTES as u32).to_le_bytes());
        let payload = &frame[FRAME_HEADER_BYTES..];
        assert_eq!(frame[4..8], crc32fast::hash(payload).to_le_bytes());
        assert_eq!(&payload[..KEY_BYTES], &recs[1].key[..]);
    }

    #[test]
    fn bench_dir_is_fresh_and_removed() {
        let parent = tempfile::tempdir().unwrap();
        let path = {
            let dir = bench_dir(parent.path()).unwrap();
            assert!(dir.path().is_dir());
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            dir.path().to_owned()
        };
        assert!(!path.exists());
    }

    #[test]
    fn file_system_of_root_is_known() {
        if Path::new("/proc/self/mounts").exists() {
            let (mount_point, fs_type) = file_system_of(Path::new("/")).unwrap();
            assert_eq!(mount_point, PathBuf::from("/"));
            assert!(!fs_type.is_empty());
        }
    }
}
