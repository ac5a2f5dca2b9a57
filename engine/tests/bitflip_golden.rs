//! Bit flips: every single-bit flip in a small golden file of each format
//! is detected. The golden files (`tests/golden/`) are written by this
//! test when missing (or all of them with `VARVE_BLESS_GOLDEN=1`) from a
//! small store, a TTL store and a partitioned store, and committed, so a
//! format change shows up as a diff.
//!
//! "Detected" means: an SST fails to open, to verify or to scan; a
//! changelog segment (opened with the `log.meta` of the same closed
//! store, so every record in it was synced) fails to open with
//! `Corruption`, never cut; a manifest fails to read
//! or reports a torn tail at or before the flipped byte; the positions and
//! `log.meta` files fail to decode; a TTL store's manifest (tag 7) fails
//! like any manifest, so its TTL never silently changes; a `PARTITIONS`
//! file fails to read with a typed error, so the partition count never
//! silently changes. The restore marker is an empty file whose presence
//! is its meaning: any content, and a directory by its name, still refuses
//! the store. Never a panic, never silent data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use varve_changelog::fs::PathKind;

use varve_db::varve_changelog::fs::{FileSystem, MemFs, OpenMode};
use varve_db::varve_changelog::{self as changelog, LogOptions};
use varve_db::{Db, Options, PartitionedStore, WriteBatch, WriteOptions};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Writes the golden files from a small store (only the missing ones,
/// unless `all`: a changelog segment holds record times).
fn bless(all: bool) {
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, data: &[u8]| {
        if all || !dir.join(name).exists() {
            std::fs::write(dir.join(name), data).unwrap();
        }
    };
    bless_store(&write);
    bless_new_formats(&write);
}

/// The golden files of the formats added later: a TTL store's manifest
/// and a partitioned store's `PARTITIONS` file.
fn bless_new_formats(write: &dyn Fn(&str, &[u8])) {
    let fs = MemFs::new();
    let opts = Options::default().ttl(Some(std::time::Duration::from_secs(90)));
    let db = Db::open("/ttl", opts.fs(Arc::new(fs.clone()))).unwrap();
    db.put("k", "v").unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    for name in fs.list_dir(Path::new("/ttl")).unwrap() {
        if name.starts_with("MANIFEST") {
            write(
                "MANIFEST-ttl",
                &fs.read_all(&Path::new("/ttl").join(name)).unwrap(),
            );
        }
    }
    PartitionedStore::open("/parts", 3, Options::default().fs(Arc::new(fs.clone())))
        .unwrap()
        .close()
        .unwrap();
    write(
        "PARTITIONS",
        &fs.read_all(&Path::new("/parts").join(varve_db::PARTITIONS_FILE))
            .unwrap(),
    );
}

fn bless_store(write: &dyn Fn(&str, &[u8])) {
    let fs = MemFs::new();
    let opts = Options::default().block_size_bytes(256);
    let db = Db::open("/db", opts.fs(Arc::new(fs.clone()))).unwrap();
    for i in 0..12u32 {
        let mut b = WriteBatch::new();
        b.put(format!("k{i:02}"), format!("v{i}"));
        if i % 4 == 3 {
            b.delete(format!("k{:02}", i - 2));
        }
        db.write(b, WriteOptions::default().sync(i % 3 == 0))
            .unwrap();
    }
    db.flush().unwrap();
    db.changelog().commit_position("shipper", 5).unwrap();
    db.close().unwrap();
    let mut walk = vec![PathBuf::from("/db")];
    while let Some(d) = walk.pop() {
        for name in fs.list_dir(&d).unwrap() {
            let p = d.join(&name);
            if fs.kind(&p).unwrap() == Some(PathKind::Dir) {
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
            // The engine's changelog has no preallocation: the segment
            // ends with its last batch (whose last byte may be zero).
            write(golden, &fs.read_all(&p).unwrap());
        }
    }
}

fn golden(name: &str) -> Option<Vec<u8>> {
    static BLESSED: std::sync::Once = std::sync::Once::new();
    BLESSED.call_once(|| bless(std::env::var_os("VARVE_BLESS_GOLDEN").is_some()));
    std::fs::read(golden_dir().join(name)).ok()
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

/// `table-v1.sst` is a table of format version 1, kept (never blessed
/// again) because stores written by it are still read.
#[test]
fn every_bit_flip_in_a_table_is_detected() {
    for name in ["table.sst", "table-v1.sst"] {
        every_flip_in_a_table(name);
    }
}

fn every_flip_in_a_table(name: &str) {
    let data = golden(name).expect("golden table");
    every_flip(name, &data, |d, _| {
        let fs = MemFs::new();
        fs.write_all(Path::new("/1.sst"), d).unwrap();
        let file = fs.open_file(Path::new("/1.sst"), OpenMode::Read).unwrap();
        let Ok(table) = varve_db::internals::sst::Table::open(file, "/1.sst".into(), 1) else {
            return Ok(());
        };
        if table.verify().is_err() {
            return Ok(());
        }
        Err("the table opened and verified".into())
    });
}

/// Opens a changelog of the golden segment (with the golden `log.meta`
/// of the same closed store) whose segment bytes are `segment`.
fn open_golden_log(segment: &[u8]) -> changelog::Result<changelog::Log> {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/log")).unwrap();
    fs.write_all(
        &changelog::filename::segment_path(Path::new("/log"), 0, ".log"),
        segment,
    )
    .unwrap();
    let meta = golden("log.meta").expect("golden log.meta");
    fs.write_all(Path::new("/log/log.meta"), &meta).unwrap();
    changelog::Log::open("/log", LogOptions::default().fs(Arc::new(fs)))
}

/// Every record of a log, with its offset.
fn records_of(log: &changelog::Log) -> Vec<(u64, changelog::Record)> {
    log.reader(log.log_start_offset())
        .unwrap()
        .map(|r| r.map(|s| (s.offset, s.record)).unwrap())
        .collect()
}

/// The golden segment comes from a closed store: every record in it was
/// acknowledged and synced, so a flip anywhere in it must be refused with
/// a typed error, never cut away (not even as a "torn tail").
#[test]
fn every_bit_flip_in_a_segment_is_detected() {
    let data = golden("segment.log").expect("golden segment");
    let want = records_of(&open_golden_log(&data).expect("the golden segment opens"));
    assert!(want.len() >= 12);
    every_flip("segment.log", &data, |d, _| match open_golden_log(d) {
        Err(changelog::Error::Corruption { .. }) => Ok(()),
        Err(e) => Err(format!("untyped error {e}")),
        Ok(log) => {
            let got = records_of(&log);
            if got == want && log.recovery_report().truncated_at.is_none() {
                Ok(())
            } else {
                Err(format!(
                    "opened with {} of {} records, cut {:?}",
                    got.len(),
                    want.len(),
                    log.recovery_report().truncated_at
                ))
            }
        }
    });
}

#[test]
fn every_bit_flip_in_a_manifest_is_detected() {
    every_flip_in_a_manifest("MANIFEST");
}

/// A TTL store's manifest records its TTL (tag 7); a flip never changes
/// it silently.
#[test]
fn every_bit_flip_in_a_ttl_manifest_is_detected() {
    let data = golden("MANIFEST-ttl").expect("golden TTL manifest");
    let fs = MemFs::new();
    fs.write_all(Path::new("/MANIFEST-1"), &data).unwrap();
    let edits = varve_db::internals::version::read_manifest(&fs, Path::new("/MANIFEST-1")).unwrap();
    assert!(
        edits.iter().any(|(_, e)| e.ttl_ms == Some(90_000)),
        "the golden manifest records no TTL"
    );
    every_flip_in_a_manifest("MANIFEST-ttl");
}

fn every_flip_in_a_manifest(name: &str) {
    let data = golden(name).expect("golden manifest");
    every_flip(name, &data, |d, byte| {
        let fs = MemFs::new();
        fs.write_all(Path::new("/MANIFEST-1"), d).unwrap();
        match varve_db::internals::version::scan_manifest(&fs, Path::new("/MANIFEST-1")) {
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

#[test]
fn every_bit_flip_in_a_partitions_file_is_detected() {
    let data = golden("PARTITIONS").expect("golden PARTITIONS");
    let dir = Path::new("/parts");
    let read = |d: &[u8]| {
        let fs = MemFs::new();
        fs.create_dir_all(dir).unwrap();
        fs.write_all(&dir.join(varve_db::PARTITIONS_FILE), d)
            .unwrap();
        varve_db::read_partitions_file(&fs, dir)
    };
    assert_eq!(read(&data).unwrap(), 3, "the golden file");
    let flips = every_flip("PARTITIONS", &data, |d, _| match read(d) {
        Err(e) if e.is_corruption() || matches!(e, varve_db::Error::UnsupportedVersion { .. }) => {
            Ok(())
        }
        other => Err(format!("{other:?}")),
    });
    assert_eq!(flips, 160);
    // The store itself refuses a damaged file before opening a partition.
    let mut damaged = data.clone();
    damaged[12] ^= 1;
    let fs = MemFs::new();
    fs.create_dir_all(dir).unwrap();
    fs.write_all(&dir.join(varve_db::PARTITIONS_FILE), &damaged)
        .unwrap();
    let opened = PartitionedStore::open(dir, 3, Options::default().fs(Arc::new(fs.clone())));
    assert!(
        matches!(opened, Err(ref e) if e.is_corruption()),
        "{opened:?}"
    );
    let names = fs.list_dir(dir).unwrap();
    assert!(
        !names.iter().any(|n| n.starts_with("partition-")),
        "{names:?}"
    );
}

/// The restore marker is empty on disk; whatever bytes it holds (every
/// single byte value, a flipped bit in a longer one) or a directory by its
/// name, a store holding it is refused as an incomplete restore.
#[test]
fn any_restore_marker_refuses_the_store() {
    let golden_store = {
        let fs = MemFs::new();
        Db::open("/db", Options::default().fs(Arc::new(fs.clone())))
            .unwrap()
            .close()
            .unwrap();
        fs
    };
    let mut contents: Vec<Vec<u8>> = vec![Vec::new()];
    contents.extend((0..=255u8).map(|b| vec![b]));
    contents.extend((0..64).map(|bit| {
        let mut d = vec![0u8; 8];
        d[bit / 8] ^= 1 << (bit % 8);
        d
    }));
    let marker = Path::new("/db").join(varve_db::restore::MARKER_FILE);
    // `None`: a directory named like the marker.
    for content in contents.iter().map(Some).chain([None]) {
        let fs = MemFs::new();
        copy_tree(&golden_store, &fs, Path::new("/db"));
        match content {
            Some(content) => fs.write_all(&marker, content).unwrap(),
            None => fs.create_dir_all(&marker).unwrap(),
        }
        match Db::open("/db", Options::default().fs(Arc::new(fs))) {
            Err(varve_db::Error::RestoreIncomplete { .. }) => {}
            other => panic!("marker {content:?}: {:?}", other.map(|_| "opened")),
        }
    }
}

fn copy_tree(from: &MemFs, to: &MemFs, dir: &Path) {
    to.create_dir_all(dir).unwrap();
    for name in from.list_dir(dir).unwrap() {
        let p = dir.join(&name);
        if from.kind(&p).unwrap() == Some(PathKind::Dir) {
            copy_tree(from, to, &p);
        } else {
            to.write_all(&p, &from.read_all(&p).unwrap()).unwrap();
        }
    }
}
