//! `read_only::read_records`: the records `Log::open` would serve, read
//! without changing a byte of any file; a torn tail left out and reported;
//! damage that recovery refuses refused the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use varve_changelog::fs::{FileSystem, MemFs, OpenMode, read_file};
use varve_changelog::read_only::{ReadOnlyEnd, read_records};
use varve_changelog::{Error, Log, LogOptions, Record};

const DIR: &str = "/log";

/// Offsets and keys of records.
type Keys = Vec<(u64, Vec<u8>)>;

fn options() -> LogOptions {
    LogOptions::default().segment_size_bytes(4096)
}

/// A closed log of several segments.
fn make_log(fs: &MemFs) -> Keys {
    let log = Log::open(DIR, options().fs(Arc::new(fs.clone()))).unwrap();
    for i in 0..100 {
        let records = [
            Record::put(format!("k{i}-a"), vec![b'v'; 90]),
            Record::tombstone(format!("k{i}-b")),
        ];
        log.append(&records).unwrap();
    }
    let all = log
        .reader(0)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.offset, r.record.key.to_vec())
        })
        .collect();
    log.close().unwrap();
    all
}

fn files(fs: &MemFs) -> BTreeMap<String, Vec<u8>> {
    fs.list_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .map(|n| {
            let bytes = read_file(fs, &Path::new(DIR).join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

fn read(fs: &MemFs, from: u64) -> Result<(Keys, ReadOnlyEnd), Error> {
    let mut got = Vec::new();
    let end = read_records(fs, Path::new(DIR), from, |r| {
        got.push((r.offset, r.record.key.to_vec()));
        Ok(())
    })?;
    Ok((got, end))
}

fn segments(fs: &MemFs) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[test]
fn reads_what_the_log_serves_from_any_offset_and_changes_nothing() {
    let fs = MemFs::new();
    let all = make_log(&fs);
    assert!(segments(&fs).len() > 3, "several segments");
    let before = files(&fs);
    let (got, end) = read(&fs, 0).unwrap();
    assert_eq!(got, all);
    assert_eq!(
        (end.log_start_offset, end.next_offset, end.torn_tail),
        (0, 200, None)
    );
    let (got, _) = read(&fs, 77).unwrap();
    assert_eq!(got, all[77..]);
    let (got, _) = read(&fs, 200).unwrap();
    assert!(got.is_empty());
    assert_eq!(files(&fs), before);
}

#[test]
fn a_torn_tail_is_left_out_and_reported_not_cut() {
    let fs = MemFs::new();
    let all = make_log(&fs);
    let last = Path::new(DIR).join(segments(&fs).pop().unwrap());
    let file = fs.open_file(&last, OpenMode::ReadWrite).unwrap();
    let len = file.len().unwrap();
    file.write_all_at(&[0x33; 50], len).unwrap();
    drop(file);
    let before = files(&fs);
    let (got, end) = read(&fs, 0).unwrap();
    assert_eq!(got, all);
    let (segment, byte, bytes, _) = end.torn_tail.clone().unwrap();
    assert_eq!((segment.as_path(), byte, bytes), (last.as_path(), len, 50));
    assert_eq!(files(&fs), before, "nothing was cut");
    let log = Log::open(DIR, options().fs(Arc::new(fs.clone()))).unwrap();
    assert_eq!(log.recovery_report().truncated_at, Some((last, len)));
}

#[test]
fn damage_that_recovery_refuses_is_refused_and_nothing_changes() {
    let fs = MemFs::new();
    make_log(&fs);
    let first = Path::new(DIR).join(&segments(&fs)[0]);
    let file = fs.open_file(&first, OpenMode::ReadWrite).unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 100).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], 100).unwrap();
    drop(file);
    let before = files(&fs);
    let err = read(&fs, 150).unwrap_err();
    assert!(
        matches!(err, Error::Corruption { ref path, .. } if *path == first),
        "{err}"
    );
    assert!(err.to_string().contains("not a torn tail"), "{err}");
    assert_eq!(files(&fs), before);
}
