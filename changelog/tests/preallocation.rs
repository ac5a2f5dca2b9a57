//! Preallocation on the real file system: the active segment is grown
//! ahead of its data by reserved space (`fallocate`), which reads as zeros;
//! a crash image taken with that tail in place reopens with every record;
//! sealed segments and a closed log's last segment are cut back to their
//! data; and a reservation the file
//! system refuses (no space) is skipped without failing the append.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use varve_changelog::fs::{FileSystem, StdFs};
use varve_changelog::testing::{InterceptFs, OpKind, Rng};
use varve_changelog::{Log, LogOptions, Record, StoredRecord, SyncPolicy};

const CHUNK: u64 = 64 << 10;

fn options(fs: Arc<dyn FileSystem>) -> LogOptions {
    LogOptions::default()
        .segment_size_bytes(256 << 10)
        .sync_policy(SyncPolicy::Always)
        .preallocate_bytes(Some(CHUNK))
        .fs(fs)
}

/// Batches of 1 to 40 records, values from empty to 8 KiB.
fn batch(rng: &mut Rng, n: u64) -> Vec<Record> {
    (0..=rng.below(40))
        .map(|i| {
            let len = match rng.below(10) {
                0 => 0,
                1 => rng.below(8 << 10) as usize,
                _ => rng.below(200) as usize,
            };
            Record::put(format!("k{n}-{i}"), vec![(n % 251) as u8; len])
        })
        .collect()
}

fn read_all(log: &Log) -> Vec<StoredRecord> {
    log.reader(log.log_start_offset())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Copies every file of `from` into `to`, as a crash would find them.
fn crash_image(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn a_preallocated_tail_reads_as_zeros_survives_a_crash_and_sealing_or_closing_cuts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, options(Arc::new(StdFs))).unwrap();
    let mut rng = Rng::new(7);
    let mut written = Vec::new();
    let mut data_bytes = 0;
    for n in 0..400 {
        let records = batch(&mut rng, n);
        data_bytes += log.append(&records).unwrap().size_bytes as u64;
        written.extend(records);
    }
    let files = segment_files(&dir);
    assert!(files.len() > 3, "the workload rolls segments: {files:?}");
    let (active, sealed) = files.split_last().unwrap();
    let active_len = std::fs::metadata(active).unwrap().len();
    let data_len = log.active_segment_size_bytes();
    let sealed_len: u64 = sealed
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        sealed_len + data_len,
        data_bytes,
        "sealed segments hold their batches and nothing more"
    );
    assert!(active_len >= data_len);
    assert_eq!(
        active_len % CHUNK,
        0,
        "the active segment is grown in chunks"
    );
    let bytes = std::fs::read(active).unwrap();
    assert!(bytes[data_len as usize..].iter().all(|&b| b == 0));

    // The files as they are now, preallocated tail and all.
    let image = tmp.path().join("image");
    crash_image(&dir, &image);
    let reopened = Log::open(&image, options(Arc::new(StdFs))).unwrap();
    let read: Vec<Record> = read_all(&reopened).into_iter().map(|r| r.record).collect();
    assert_eq!(read.len(), written.len());
    assert!(read == written, "the crash image holds every record");
    let more = batch(&mut rng, 1000);
    reopened.append(&more).unwrap();
    assert_eq!(reopened.next_offset(), (written.len() + more.len()) as u64);
    reopened.close().unwrap();
    log.close().unwrap();
    // A closed log's last segment ends where its data does.
    let last = segment_files(&image).pop().unwrap();
    let closed_len = std::fs::metadata(&last).unwrap().len();
    let reopened = Log::open(&image, options(Arc::new(StdFs))).unwrap();
    assert_eq!(read_all(&reopened).len(), written.len() + more.len());
    assert_eq!(closed_len, reopened.active_segment_size_bytes());
}

#[test]
fn a_refused_reservation_is_skipped_and_the_append_still_lands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    let fs = InterceptFs::new(Arc::new(StdFs), move |op| {
        if op.kind == OpKind::Allocate {
            count.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    });
    let log = Log::open(&dir, options(Arc::new(fs))).unwrap();
    let mut rng = Rng::new(11);
    let mut written = Vec::new();
    for n in 0..50 {
        let records = batch(&mut rng, n);
        log.append(&records).unwrap();
        written.extend(records);
    }
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "appends asked for space"
    );
    let active = segment_files(&dir).pop().unwrap();
    assert_eq!(
        std::fs::metadata(&active).unwrap().len(),
        log.active_segment_size_bytes(),
        "without a reservation the file holds only data"
    );
    log.close().unwrap();
    let reopened = Log::open(&dir, options(Arc::new(StdFs))).unwrap();
    let read: Vec<Record> = read_all(&reopened).into_iter().map(|r| r.record).collect();
    assert!(read == written);
}
