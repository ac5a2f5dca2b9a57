//! Bit flips: every single-bit flip in a small golden file of each format
//! is detected. The golden files (`tests/golden/`) are written by this
//! test when missing (or with `VARVE_BLESS_GOLDEN=1`) from a small store,
//! and committed, so a format change shows up as a diff.
//!
//! "Detected" means: an SST fails to open, to verify or to scan; a
//! changelog segment fails to open in strict recovery or is cut (and the
//! cut reported) at or before the flipped byte; a manifest fails to read
//! or reports a torn tail at or before the flipped byte; the positions and
//! `log.meta` files fail to decode. Never a panic, never silent data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use varve::varve_changelog::fs::{FileSystem, MemFs, OpenMode};
use varve::varve_changelog::{self as changelog, LogOptions};
use varve::{Db, Options, WriteBatch, WriteOptions};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Writes the golden files from a small store.
fn bless() {
    let fs = MemFs::new();
    let opts = Options {
        block_size_bytes: 256,
        ..Options::default()
    };
    let db = Db::open_with_fs(Arc::new(fs.clone()), "/db", opts).unwrap();
    for i in 0..12u32 {
        let mut b = WriteBatch::new();
        b.put(format!("k{i:02}"), format!("v{i}"));
        if i % 4 == 3 {
            b.delete(format!("k{:02}", i - 2));
        }
        db.write(b, WriteOptions { sync: i % 3 == 0 }).unwrap();
    }
    db.flush().unwrap();
    db.changelog().commit_position("shipper", 5).unwrap();
    db.close().unwrap();
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut walk = vec![PathBuf::from("/db")];
    while let Some(d) = walk.pop() {
        for name in fs.list_dir(&d).unwrap() {
            let p = d.join(&name);
            if fs.kind(&p).unwrap() == Some(true) {
                walk.push(p);
                continue;
            }
            let golden = if name.ends_with(".sst") {
                "table.sst"
            } else if name.ends_with(".log") && name.starts_with("00000") {
                "segment.log"
            } else if name.starts_with("MANIFEST") {
                "MANIFEST"
            } else if name == "positions" {
                "positions"
            } else if name == "log.meta" {
                "log.meta"
            } else {
                continue;
            };
            let mut data = fs.read_all(&p).unwrap();
            if golden == "segment.log" {
                // Drop the preallocated zeros after the last batch.
                while data.last() == Some(&0) {
                    data.pop();
                }
            }
            std::fs::write(dir.join(golden), data).unwrap();
        }
    }
}

fn golden(name: &str) -> Option<Vec<u8>> {
    let dir = golden_dir();
    if std::env::var_os("VARVE_BLESS_GOLDEN").is_some() || !dir.join("table.sst").exists() {
        bless();
    }
    std::fs::read(dir.join(name)).ok()
}

/// Calls `detected` for every single-bit flip of `data`; returns the
/// number of flips.
fn every_flip(
    name: &str,
    data: &[u8],
    detected: impl Fn(&[u8], usize) -> Result<(), String>,
) -> usize {
    let mut n = 0;
    for byte in 0..data.len() {
        for bit in 0..8 {
            let mut d = data.to_vec();
            d[byte] ^= 1 << bit;
            if let Err(why) = detected(&d, byte) {
                panic!("{name}: flip of bit {bit} of byte {byte} went undetected: {why}");
            }
            n += 1;
        }
    }
    n
}

#[test]
fn every_bit_flip_in_a_table_is_detected() {
    let data = golden("table.sst").expect("golden table");
    every_flip("table.sst", &data, |d, _| {
        let fs = MemFs::new();
        fs.write_all(Path::new("/1.sst"), d).unwrap();
        let file = fs.open_file(Path::new("/1.sst"), OpenMode::Read).unwrap();
        let Ok(table) = varve::sst::Table::open(file, "/1.sst".into(), 1) else {
            return Ok(());
        };
        if table.verify().is_err() {
            return Ok(());
        }
        Err("the table opened and verified".into())
    });
}

#[test]
fn every_bit_flip_in_a_segment_is_detected() {
    let data = golden("segment.log").expect("golden segment");
    every_flip("segment.log", &data, |d, byte| {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/log")).unwrap();
        fs.write_all(
            &changelog::filename::segment_path(Path::new("/log"), 0, ".log"),
            d,
        )
        .unwrap();
        let Ok(log) = changelog::Log::open_with_fs(Arc::new(fs), "/log", LogOptions::default())
        else {
            return Ok(());
        };
        match &log.recovery_report().truncated_at {
            Some((_, at)) if *at <= byte as u64 => Ok(()),
            other => Err(format!("opened with truncation {other:?}")),
        }
    });
}

#[test]
fn every_bit_flip_in_a_manifest_is_detected() {
    let data = golden("MANIFEST").expect("golden manifest");
    every_flip("MANIFEST", &data, |d, byte| {
        let fs = MemFs::new();
        fs.write_all(Path::new("/MANIFEST-1"), d).unwrap();
        match varve::version::scan_manifest(&fs, Path::new("/MANIFEST-1")) {
            Err(_) => Ok(()),
            Ok(scan) if scan.torn_tail.is_some() && scan.valid_len_bytes <= byte as u64 => Ok(()),
            Ok(scan) => Err(format!(
                "scanned {} edits, valid length {}",
                scan.edits.len(),
                scan.valid_len_bytes
            )),
        }
    });
}

#[test]
fn every_bit_flip_in_small_changelog_files_is_detected() {
    if let Some(data) = golden("positions") {
        every_flip(
            "positions",
            &data,
            |d, _| match changelog::positions::decode(Path::new("positions"), d) {
                Err(e) if e.is_corruption() => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    if let Some(data) = golden("log.meta") {
        every_flip(
            "log.meta",
            &data,
            |d, _| match changelog::meta::LogMeta::decode(Path::new("log.meta"), d) {
                Err(_) => Ok(()),
                Ok(m) => Err(format!("{m:?}")),
            },
        );
    }
}
