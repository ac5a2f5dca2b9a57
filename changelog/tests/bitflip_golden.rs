//! Bit flips in a small golden changelog: every single-bit flip of every
//! file of the log in `tests/golden/log/` (a sealed segment with its offset
//! and time indexes, the active segment, `log.meta`, `positions`) is
//! either reported by a
//! typed error when the log is opened (`Corruption`, `NotALog`,
//! `UnsupportedVersion`) or leaves a log that reads back a prefix of the
//! golden records at their offsets, with the golden log start and
//! positions. Never a panic, an I/O error, or different data.
//!
//! The offset and time indexes carry no checksum (they are rebuilt from
//! the segment when they look wrong), so a flip in them must leave every
//! record readable: the test then also reads from every offset, which is
//! where a wrong index entry would misdirect a read.
//!
//! Every golden record was synced, so a flip that still opens must leave
//! all of them: damage to acknowledged data is refused, never cut away.
//!
//! The golden files are written by a fixed workload with fixed record
//! times, so they are reproducible: `golden_files_match_the_current_format`
//! regenerates them and compares (`VARVE_BLESS_GOLDEN=1` rewrites them
//! after a deliberate format change).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use varve_changelog::fs::{FileSystem, MemFs};
use varve_changelog::{Error, Log, LogOptions, Record, SyncPolicy};

const DIR: &str = "/log";
const T0: i64 = 1_700_000_000_000;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/log")
}

fn options() -> LogOptions {
    LogOptions::default()
        .index_interval_bytes(64)
        .sync_policy(SyncPolicy::Manual)
        .preallocate_bytes(None)
}

/// The golden log's files, by name, written by a fixed workload: seven
/// batches in a sealed segment, two in the active one, one position.
fn generate() -> BTreeMap<String, Vec<u8>> {
    let fs = MemFs::new();
    let log = Log::open(DIR, options().fs(Arc::new(fs.clone()))).unwrap();
    for b in 0..9u8 {
        let records: Vec<Record> = (0..=b % 3)
            .map(|i| {
                let key = format!("k{b}{i}");
                if (b + i) % 4 == 3 {
                    Record::tombstone(key)
                } else {
                    Record::put(key, format!("v{b}"))
                }
                .with_timestamp_ms(T0 + i64::from(b) * 10)
            })
            .collect();
        log.append(&records).unwrap();
        if b == 6 {
            log.roll().unwrap();
        }
    }
    log.sync().unwrap();
    log.commit_position("standby", 5).unwrap();
    log.close().unwrap();
    fs.list_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|name| name != varve_changelog::filename::LOCK_FILE)
        .map(|name| {
            let data = fs.read_all(&Path::new(DIR).join(&name)).unwrap();
            (name, data)
        })
        .collect()
}

/// The committed golden files; written first if missing or blessed.
fn golden() -> BTreeMap<String, Vec<u8>> {
    static GOLDEN: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    GOLDEN.get_or_init(read_or_bless).clone()
}

fn read_or_bless() -> BTreeMap<String, Vec<u8>> {
    let dir = golden_dir();
    if std::env::var_os("VARVE_BLESS_GOLDEN").is_some() || !dir.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in generate() {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        files.insert(name, std::fs::read(entry.path()).unwrap());
    }
    files
}

/// What a log opened from `files` holds: start, records with offsets,
/// positions. `Err` is the open's (or a read's) error.
struct Contents {
    start: u64,
    records: Vec<(u64, Record)>,
    positions: BTreeMap<String, u64>,
}

fn open(files: &BTreeMap<String, Vec<u8>>) -> Result<(Log, Contents), Error> {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new(DIR)).unwrap();
    for (name, data) in files {
        fs.write_all(&Path::new(DIR).join(name), data).unwrap();
    }
    let log = Log::open(DIR, options().fs(Arc::new(fs)))?;
    let start = log.log_start_offset();
    let records = log
        .reader(start)?
        .map(|r| r.map(|s| (s.offset, s.record)))
        .collect::<Result<Vec<_>, _>>()?;
    let positions = log.positions();
    Ok((
        log,
        Contents {
            start,
            records,
            positions,
        },
    ))
}

/// Whether `e` reports damaged or foreign bytes with a typed error.
fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::Corruption { .. } | Error::NotALog { .. } | Error::UnsupportedVersion { .. }
    )
}

#[test]
fn golden_files_match_the_current_format() {
    let golden = golden();
    let fresh = generate();
    assert_eq!(
        golden.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "golden file names (VARVE_BLESS_GOLDEN=1 rewrites them)"
    );
    for (name, data) in &fresh {
        assert!(
            golden[name] == *data,
            "{name} differs from the golden file: the format changed \
             (VARVE_BLESS_GOLDEN=1 rewrites it)"
        );
    }
    let (_, want) = open(&golden).expect("the golden log opens");
    assert!(want.records.len() >= 15 && want.positions.len() == 1);
    assert_eq!(golden.keys().filter(|n| n.ends_with(".log")).count(), 2);
    assert_eq!(golden.keys().filter(|n| n.ends_with("index")).count(), 2);
}

/// A log written by format version 1 (batches without a durability
/// claim) still opens and reads back the same records as today's.
#[test]
fn a_version_1_log_still_opens() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/log-v1");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        files.insert(name, std::fs::read(entry.path()).unwrap());
    }
    let segment = &files["00000000000000000000.log"];
    assert_eq!(segment[8], 1, "the old golden is format version 1");
    let (_, old) = open(&files).expect("the version 1 log opens");
    let (_, new) = open(&golden()).expect("the golden log opens");
    assert_eq!(old.records, new.records);
    assert_eq!(old.positions, new.positions);
    assert_eq!(old.start, new.start);
}

#[test]
fn every_bit_flip_in_a_golden_changelog_is_detected_or_harmless() {
    let golden = golden();
    let (_, want) = open(&golden).expect("the golden log opens");
    let (mut flips, mut reported, mut harmless) = (0u64, 0u64, 0u64);
    for (name, data) in &golden {
        let is_index = name.ends_with(".index") || name.ends_with(".timeindex");
        for byte in 0..data.len() {
            for bit in 0..8 {
                let mut files = golden.clone();
                files.get_mut(name).unwrap()[byte] ^= 1 << bit;
                let at = format!("{name}: flip of bit {bit} of byte {byte}");
                flips += 1;
                let (log, got) = match open(&files) {
                    Err(e) if typed(&e) => {
                        reported += 1;
                        continue;
                    }
                    Err(e) => panic!("{at}: untyped error {e}"),
                    Ok(opened) => opened,
                };
                harmless += 1;
                assert_eq!(got.start, want.start, "{at}: log start");
                assert_eq!(got.positions, want.positions, "{at}: positions");
                // Every golden record was synced (the log was closed), so
                // a flip that opens must lose none of them.
                assert_eq!(got.records, want.records, "{at}: acknowledged records lost");
                if is_index {
                    assert_eq!(got.records, want.records, "{at}: records lost");
                    for (offset, record) in &want.records {
                        let first = log
                            .reader(*offset)
                            .and_then(|mut r| r.next().transpose())
                            .unwrap_or_else(|e| panic!("{at}: read at {offset}: {e}"));
                        assert_eq!(
                            first,
                            Some(varve_changelog::StoredRecord {
                                offset: *offset,
                                record: record.clone()
                            }),
                            "{at}: read at {offset}"
                        );
                    }
                }
            }
        }
    }
    eprintln!(
        "every_bit_flip_in_a_golden_changelog: {} files, {flips} flips, {reported} reported, \
         {harmless} harmless",
        golden.len()
    );
}
