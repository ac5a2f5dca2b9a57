//! One test per kind of damage to a changelog directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use varve_changelog::batch::encode_batch;
use varve_changelog::{Error, Log, LogOptions, Record, RecoveryMode};

const RECORDS: u64 = 30;

fn opts() -> LogOptions {
    LogOptions::default()
        .segment_size_bytes(4096)
        .index_interval_bytes(128)
}

fn rec(i: u64) -> Record {
    Record::put(format!("key-{i:03}"), format!("value-{i:03}")).with_timestamp_ms(1_000 + i as i64)
}

/// A cleanly closed log of `RECORDS` records in 10 batches.
fn make_log(dir: &Path, options: LogOptions) {
    let log = Log::open(dir, options).unwrap();
    for b in 0..10 {
        log.append(&(0..3).map(|i| rec(b * 3 + i)).collect::<Vec<_>>())
            .unwrap();
    }
    log.close().unwrap();
}

fn segment(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Writes `bytes` at `at` in place (rewriting a file through truncation
/// makes ext4 flush it, which slows these loops down a lot).
fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, at)
        .unwrap();
}

fn flip_byte(path: &Path, at: u64) {
    let bytes = std::fs::read(path).unwrap();
    write_at(path, at, &[bytes[at as usize] ^ 0x40]);
}

fn flip_bit(path: &Path, pristine: &[u8], bit: usize) {
    write_at(
        path,
        (bit / 8) as u64,
        &[pristine[bit / 8] ^ (1 << (bit % 8))],
    );
}

fn restore_byte(path: &Path, pristine: &[u8], bit: usize) {
    write_at(path, (bit / 8) as u64, &[pristine[bit / 8]]);
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Opens and reads everything; the first error, or the records.
fn open_and_read(dir: &Path, options: LogOptions) -> Result<Vec<(u64, Record)>, Error> {
    let log = Log::open(dir, options)?;
    let start = log.log_start_offset();
    log.reader(start)?
        .map(|r| r.map(|s| (s.offset, s.record)))
        .collect()
}

fn expect_corruption_in(result: Result<Vec<(u64, Record)>, Error>, file: &Path) {
    match result {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, file),
        other => panic!("expected corruption in {}, got {other:?}", file.display()),
    }
}

fn one_segment_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path(), LogOptions::default());
    let seg = segment(dir.path(), 0);
    (dir, seg)
}

#[test]
fn flipped_byte_in_batch_header() {
    let (dir, seg) = one_segment_log();
    flip_byte(&seg, 20); // base offset of the first batch
    expect_corruption_in(open_and_read(dir.path(), LogOptions::default()), &seg);
}

#[test]
fn flipped_byte_in_payload() {
    let (dir, seg) = one_segment_log();
    flip_byte(&seg, 60);
    expect_corruption_in(open_and_read(dir.path(), LogOptions::default()), &seg);
}

#[test]
fn flipped_byte_in_crc() {
    let (dir, seg) = one_segment_log();
    flip_byte(&seg, 5);
    let err = open_and_read(dir.path(), LogOptions::default()).unwrap_err();
    match err {
        Error::Corruption { path, offset, what } => {
            assert_eq!(path, seg);
            assert_eq!(offset, 0, "names the damaged batch");
            assert!(what.contains("CRC"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_durable_tail_is_corruption_unless_tolerant() {
    let (dir, seg) = one_segment_log();
    let len = std::fs::metadata(&seg).unwrap().len();
    truncate(&seg, len - 7);
    expect_corruption_in(open_and_read(dir.path(), LogOptions::default()), &seg);
    let tolerant = LogOptions::default().recovery(RecoveryMode::Tolerant);
    let log = Log::open(dir.path(), tolerant).unwrap();
    assert_eq!(
        log.next_offset(),
        RECORDS - 3,
        "the damaged last batch is cut whole"
    );
    assert!(log.recovery_report().truncated_at.is_some());
}

#[test]
fn torn_batch_past_the_recovery_point_is_cut_and_reported() {
    let (dir, seg) = one_segment_log();
    let mut batch = Vec::new();
    encode_batch(&mut batch, RECORDS, &[rec(RECORDS), rec(RECORDS + 1)]);
    append_bytes(&seg, &batch[..batch.len() / 2]);
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let report = log.recovery_report().clone();
    assert_eq!(report.next_offset, RECORDS);
    // The report counts the cut bytes up to the last non-zero one.
    assert!(report.truncated_bytes > 0 && report.truncated_bytes <= (batch.len() / 2) as u64);
    assert_eq!(
        report.truncated_at.as_ref().map(|(p, _)| p.clone()),
        Some(seg.clone())
    );
    assert_eq!(
        log.append(&[rec(RECORDS)]).unwrap().base_offset,
        RECORDS,
        "appends continue after the cut"
    );
}

#[test]
fn garbage_appended_is_cut() {
    let (dir, seg) = one_segment_log();
    let len = std::fs::metadata(&seg).unwrap().len();
    append_bytes(
        &seg,
        b"this is not a batch at all, just noise from somewhere else",
    );
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.next_offset(), RECORDS);
    assert_eq!(log.recovery_report().truncated_at, Some((seg.clone(), len)));
    drop(log);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    assert_eq!(
        open_and_read(dir.path(), LogOptions::default())
            .unwrap()
            .len() as u64,
        RECORDS
    );
}

#[test]
fn complete_batch_with_wrong_offset_is_cut() {
    let (dir, seg) = one_segment_log();
    let mut batch = Vec::new();
    encode_batch(&mut batch, 3, &[rec(99)]); // offset already used
    append_bytes(&seg, &batch);
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.next_offset(), RECORDS);
    assert!(
        log.recovery_report()
            .truncation_reason
            .as_deref()
            .unwrap_or("")
            .contains("below the expected offset")
    );
}

fn multi_segment_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    for i in 0..200 {
        log.append(&[rec(i)]).unwrap();
    }
    log.close().unwrap();
    dir
}

#[test]
fn deleted_index_is_rebuilt() {
    let dir = multi_segment_log();
    let index = dir.path().join(format!("{:020}.index", 0));
    let times = dir.path().join(format!("{:020}.timeindex", 0));
    std::fs::remove_file(&index).unwrap();
    std::fs::remove_file(&times).unwrap();
    let all = open_and_read(dir.path(), opts()).unwrap();
    assert_eq!(all.len(), 200);
    assert!(index.exists() && times.exists(), "indexes rewritten");
}

#[test]
fn index_pointing_past_the_end_is_rebuilt() {
    let dir = multi_segment_log();
    let index = dir.path().join(format!("{:020}.index", 0));
    let mut bytes = std::fs::read(&index).unwrap();
    bytes.extend_from_slice(&1_000u32.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&index, bytes).unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    for from in [0, 5, 17, 40, 199] {
        assert_eq!(
            log.reader(from).unwrap().next().unwrap().unwrap().offset,
            from
        );
    }
}

#[test]
fn index_pointing_inside_a_batch_falls_back_to_a_scan() {
    let dir = multi_segment_log();
    let index = dir.path().join(format!("{:020}.index", 0));
    let mut bytes = std::fs::read(&index).unwrap();
    assert!(bytes.len() >= 8, "segment 0 has index entries");
    let pos = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    bytes[4..8].copy_from_slice(&(pos + 3).to_le_bytes());
    std::fs::write(&index, bytes).unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let seg0_end = log.segment_base_offsets()[1];
    for from in 0..seg0_end {
        assert_eq!(
            log.reader(from).unwrap().next().unwrap().unwrap().offset,
            from
        );
    }
}

#[test]
fn damaged_meta_is_corruption() {
    let (dir, _) = one_segment_log();
    let meta = dir.path().join("log.meta");
    flip_byte(&meta, 14);
    expect_corruption_in(open_and_read(dir.path(), LogOptions::default()), &meta);
}

#[test]
fn damaged_positions_file_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.append(&[rec(0)]).unwrap();
        log.commit_position("shipper", 1).unwrap();
    }
    let positions = dir.path().join("positions");
    flip_byte(&positions, 17);
    expect_corruption_in(open_and_read(dir.path(), LogOptions::default()), &positions);
}

/// Every single-bit flip of a small segment is detected: the open or the
/// read fails with `Corruption` — never wrong data, never a panic.
#[test]
fn every_single_bit_flip_is_detected() {
    let (dir, seg) = one_segment_log();
    let pristine = std::fs::read(&seg).unwrap();
    let expected = open_and_read(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(expected.len() as u64, RECORDS);
    for bit in 0..pristine.len() * 8 {
        flip_bit(&seg, &pristine, bit);
        match open_and_read(dir.path(), LogOptions::default()) {
            Err(Error::Corruption { .. }) => {}
            other => panic!("flip of bit {bit} gave {other:?}"),
        }
        restore_byte(&seg, &pristine, bit);
    }
}

/// The same for a closed segment below the recovery point, which open
/// trusts and reads verify.
#[test]
fn every_single_bit_flip_in_a_closed_segment_is_detected_on_read() {
    let dir = multi_segment_log();
    let seg = segment(dir.path(), 0);
    let pristine = std::fs::read(&seg).unwrap();
    for bit in 0..pristine.len() * 8 {
        flip_bit(&seg, &pristine, bit);
        match open_and_read(dir.path(), opts()) {
            Err(Error::Corruption { .. }) => {}
            other => panic!("flip of bit {bit} gave {:?}", other.map(|v| v.len())),
        }
        restore_byte(&seg, &pristine, bit);
    }
}

/// A segment cut by something else while the log is open: a read of the
/// bytes the log knows it wrote fails with `Corruption` at once, instead
/// of reading again for ever.
#[test]
fn a_segment_truncated_under_an_open_log_fails_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default().preallocate_bytes(None)).unwrap();
    let big = vec![b'x'; 200_000];
    for i in 0..4u64 {
        log.append(&[Record::put(format!("k{i}"), big.clone())])
            .unwrap();
    }
    log.sync().unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(segment(dir.path(), 0))
        .unwrap();
    file.set_len(100).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = log
            .reader(0)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>().map(|v| v.len()));
        let _ = done_tx.send(result.map_err(|e| e.to_string()));
    });
    let result = done_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the read returns instead of waiting for bytes that are gone");
    let err = result.expect_err("records past the cut cannot be read");
    assert!(err.contains("corruption"), "{err}");
}
