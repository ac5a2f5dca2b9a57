//! One test per way a manifest or `CURRENT` file can be damaged
//! (`docs/format/manifest.md`, "Damage and what a reader does").

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a failed unwrap is a test failure"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use varve_changelog::fs::{FileSystem, StdFs};
use varve_db::Error;
use varve_db::internals::key::SeqNo;
use varve_db::internals::version::{
    ENGINE_FORMAT, FileNumber, Level, TableMeta, Version, VersionEdit, VersionSet,
    VersionSetOptions, manifest_file_name, read_manifest,
};

fn std_fs() -> Arc<dyn FileSystem> {
    Arc::new(StdFs)
}

/// An encoded internal key (`user_key ++ seqno << 8 | Put`).
fn ikey(user_key: &[u8], seqno: u64) -> Vec<u8> {
    let mut key = user_key.to_vec();
    key.extend_from_slice(&((seqno << 8) | 1).to_le_bytes());
    key
}

fn table(number: FileNumber, lo: &[u8], hi: &[u8], seqno: u64) -> TableMeta {
    TableMeta {
        number,
        size_bytes: 4096,
        smallest: ikey(lo, seqno),
        largest: ikey(hi, seqno),
        min_seqno: SeqNo(seqno),
        max_seqno: SeqNo(seqno),
        entry_count: 2,
        tombstone_count: 0,
    }
}

/// Creates a store and applies `edits` flushes; returns the state after
/// each manifest record (creation included), oldest first.
fn build_store(dir: &Path, edits: u64) -> Vec<Arc<Version>> {
    let mut set = VersionSet::create(std_fs(), dir, VersionSetOptions::default()).unwrap();
    let mut states = vec![set.current()];
    for i in 1..=edits {
        let number = set.new_file_number();
        let lo = [b'a' + i as u8];
        let edit = VersionEdit {
            flushed_offset: Some(i * 100),
            last_seqno: Some(SeqNo(i * 100 - 1)),
            added: vec![(Level(1), table(number, &lo, &lo, i))],
            ..VersionEdit::default()
        };
        states.push(set.log_and_apply(edit).unwrap());
    }
    states
}

/// The path of the manifest that `CURRENT` names.
fn manifest_path(dir: &Path) -> PathBuf {
    let current = fs::read_to_string(dir.join("CURRENT")).unwrap();
    dir.join(current.trim_end())
}

/// Byte offsets of the manifest's records.
fn record_offsets(path: &Path) -> Vec<u64> {
    read_manifest(&StdFs, path)
        .unwrap()
        .iter()
        .map(|(offset, _)| *offset)
        .collect()
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len_bytes: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len_bytes)
        .unwrap();
}

/// Frames `payload` as a manifest record (length, CRC, payload).
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    let mut record = len.to_vec();
    record.extend_from_slice(&hasher.finalize().to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn append(path: &Path, bytes: &[u8]) {
    let mut all = fs::read(path).unwrap();
    all.extend_from_slice(bytes);
    fs::write(path, all).unwrap();
}

fn open(dir: &Path) -> Result<VersionSet, Error> {
    VersionSet::open(std_fs(), dir, VersionSetOptions::default())
}

/// Asserts `err` is corruption in `path` at `offset`.
fn assert_corruption_at(err: &Error, path: &Path, offset: u64) {
    match err {
        Error::Corruption {
            path: p, offset: o, ..
        } => {
            assert_eq!((p.as_path(), *o), (path, offset), "{err}");
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn flipped_byte_in_middle_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 3);
    let path = manifest_path(dir.path());
    let offsets = record_offsets(&path);
    flip_byte(&path, offsets[1] + 10);
    let err = open(dir.path()).unwrap_err();
    assert_corruption_at(&err, &path, offsets[1]);
    assert!(err.to_string().contains("MANIFEST-000001"), "{err}");
}

#[test]
fn flipped_byte_in_last_record_is_corruption() {
    // A complete record with a bad checksum was synced and acknowledged, so
    // it is reported even at the end of the file.
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 3);
    let path = manifest_path(dir.path());
    let last = *record_offsets(&path).last().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    flip_byte(&path, len - 1);
    assert_corruption_at(&open(dir.path()).unwrap_err(), &path, last);
}

#[test]
fn damaged_length_in_middle_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 3);
    let path = manifest_path(dir.path());
    let offsets = record_offsets(&path);
    flip_byte(&path, offsets[1] + 2); // length now runs past the end
    assert_corruption_at(&open(dir.path()).unwrap_err(), &path, offsets[1]);
}

#[test]
fn torn_last_record_opens_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let states = build_store(dir.path(), 3);
    let path = manifest_path(dir.path());
    let last = *record_offsets(&path).last().unwrap();
    let pristine = fs::read(&path).unwrap();
    for cut in [last + 3, last + 8, pristine.len() as u64 - 1] {
        fs::write(&path, &pristine[..cut as usize]).unwrap();
        let mut set = open(dir.path()).unwrap();
        assert_eq!(*set.current(), *states[2]);
        let tail = set.torn_tail_on_open().unwrap();
        assert_eq!((tail.offset, tail.len_bytes), (last, cut - last));
        // The torn bytes are cut off, so later records follow whole ones.
        assert_eq!(fs::metadata(&path).unwrap().len(), last);
        let edit = VersionEdit {
            flushed_offset: Some(301),
            ..VersionEdit::default()
        };
        set.log_and_apply(edit).unwrap();
        drop(set);
        let reopened = open(dir.path()).unwrap();
        assert_eq!(reopened.current().flushed_offset(), 301);
        assert_eq!(reopened.torn_tail_on_open(), None);
    }
}

#[test]
fn missing_current_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    fs::remove_file(dir.path().join("CURRENT")).unwrap();
    assert!(!VersionSet::exists(&StdFs, dir.path()).unwrap());
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
}

#[test]
fn current_naming_missing_manifest_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let current = dir.path().join("CURRENT");
    fs::write(&current, format!("{}\n", manifest_file_name(FileNumber(7)))).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert_corruption_at(&err, &current, 0);
    assert!(err.to_string().contains("MANIFEST-000007"), "{err}");
}

#[test]
fn garbage_current_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let current = dir.path().join("CURRENT");
    let garbage: [&[u8]; 5] = [
        b"",
        b"MANIFEST-000001",
        b"MANIFEST-000001\n\n",
        b"000001.sst\n",
        b"\xff\xfe\n",
    ];
    for contents in garbage {
        fs::write(&current, contents).unwrap();
        assert_corruption_at(&open(dir.path()).unwrap_err(), &current, 0);
    }
}

/// A store of `edits` edits with a record of `payload` appended to its
/// manifest: opening it is corruption at that record, saying `words`.
fn appended_record_is_corruption(edits: u64, payload: &[u8], words: &str) {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), edits);
    let path = manifest_path(dir.path());
    let end = fs::metadata(&path).unwrap().len();
    append(&path, &frame(payload));
    let err = open(dir.path()).unwrap_err();
    assert_corruption_at(&err, &path, end);
    assert!(err.to_string().contains(words), "{words}: {err}");
}

#[test]
fn unknown_tag_is_corruption() {
    // Tag 99, then a byte.
    appended_record_is_corruption(2, &[0x63, 0x01], "unknown field tag 99");
}

#[test]
fn newer_engine_format_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let path = manifest_path(dir.path());
    let edit = VersionEdit {
        engine_format: Some(ENGINE_FORMAT + 1),
        ..VersionEdit::default()
    };
    fs::write(&path, frame(&edit.encode())).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 2, .. }),
        "{err}"
    );
}

#[test]
fn empty_manifest_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let path = manifest_path(dir.path());
    truncate(&path, 0);
    assert_corruption_at(&open(dir.path()).unwrap_err(), &path, 0);
}

#[test]
fn edit_breaking_an_invariant_is_corruption() {
    // Two edits: L1 holds "b" (table 2) and "c" (table 3).
    let edit = VersionEdit {
        added: vec![(Level(1), table(FileNumber(1), b"b", b"c", 9))],
        ..VersionEdit::default()
    };
    appended_record_is_corruption(2, &edit.encode(), "overlap in L1");
}

#[test]
fn every_single_bit_flip_is_corruption_or_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let states = build_store(dir.path(), 3);
    let path = manifest_path(dir.path());
    let pristine = fs::read(&path).unwrap();
    let (mut corrupt, mut prefix) = (0, 0);
    for bit in 0..pristine.len() * 8 {
        let mut bytes = pristine.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        fs::write(&path, &bytes).unwrap();
        match open(dir.path()) {
            Ok(set) => {
                let state = set.current();
                assert!(
                    states.iter().any(|s| **s == *state),
                    "bit {bit}: not a prefix"
                );
                prefix += 1;
            }
            Err(err) => {
                assert!(matches!(err, Error::Corruption { .. }), "bit {bit}: {err}");
                corrupt += 1;
            }
        }
    }
    // Only the final record's length bits can read as a torn tail.
    assert!(prefix <= 32, "{prefix} prefixes, {corrupt} corruptions");
    assert!(corrupt > 0);
}

#[test]
fn current_naming_the_largest_manifest_number_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let name = manifest_file_name(FileNumber(u64::MAX));
    assert_eq!(name, "MANIFEST-18446744073709551615");
    fs::copy(manifest_path(dir.path()), dir.path().join(&name)).unwrap();
    fs::write(dir.path().join("CURRENT"), format!("{name}\n")).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert_corruption_at(&err, &dir.path().join("CURRENT"), 0);
    assert!(err.to_string().contains("largest file number"), "{err}");
    let err = varve_db::Db::open(dir.path(), varve_db::Options::default()).unwrap_err();
    assert_corruption_at(&err, &dir.path().join("CURRENT"), 0);
}

#[test]
fn next_file_number_beyond_the_maximum_is_corruption() {
    for next in [u64::MAX, FileNumber::MAX.0 + 1] {
        let edit = VersionEdit {
            next_file_number: Some(FileNumber(next)),
            ..VersionEdit::default()
        };
        appended_record_is_corruption(1, &edit.encode(), "next file number");
    }
}

#[test]
fn largest_next_file_number_opens_and_refuses_edits_past_it() {
    let dir = tempfile::tempdir().unwrap();
    build_store(dir.path(), 1);
    let path = manifest_path(dir.path());
    let edit = VersionEdit {
        next_file_number: Some(FileNumber::MAX),
        ..VersionEdit::default()
    };
    append(&path, &frame(&edit.encode()));
    let mut set = open(dir.path()).unwrap();
    assert_eq!(set.new_file_number(), FileNumber::MAX);
    // The counter saturates instead of wrapping; the edit is refused.
    assert_eq!(set.new_file_number().0, FileNumber::MAX.0 + 1);
    let err = set.log_and_apply(VersionEdit::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn table_sizes_and_counts_beyond_their_bounds_are_corruption() {
    type Damage = fn(&mut TableMeta);
    let cases: [(&str, Damage); 3] = [
        ("exceeds the maximum", |t| t.size_bytes = u64::MAX),
        ("cannot fit", |t| t.entry_count = t.size_bytes + 1),
        ("number exceeds", |t| t.number = FileNumber(u64::MAX)),
    ];
    for (words, damage) in cases {
        let mut added = table(FileNumber(9), b"x", b"x", 50);
        damage(&mut added);
        let edit = VersionEdit {
            next_file_number: Some(FileNumber(10)),
            added: vec![(Level(0), added)],
            ..VersionEdit::default()
        };
        appended_record_is_corruption(1, &edit.encode(), words);
    }
}
