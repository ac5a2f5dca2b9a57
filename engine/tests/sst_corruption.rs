//! Damaged table files: one test per kind of damage, and a sweep that flips
//! every bit of a small table. A damaged table must yield
//! `Error::Corruption` (or `UnsupportedVersion` for a genuine newer
//! version), never a panic and never wrong data.

// Helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;
use varve_changelog::fs::{FileSystem, OpenMode, StdFs};
use varve_db::Error;
use varve_db::internals::iter::InternalIterator;
use varve_db::internals::key::{InternalKeyRef, SeqNo, ValueKind};
use varve_db::internals::sst::format::{
    BLOCK_TRAILER_SIZE, FOOTER_CRC_OFFSET, FOOTER_SIZE, FOOTER_VERSION_OFFSET, FORMAT_VERSION,
    block_trailer,
};
use varve_db::internals::sst::{BlockHandle, Footer, Table, TableBuilder, TableOptions};

/// An owned entry: user key, seqno, kind, value.
type Entry = (Vec<u8>, u64, ValueKind, Vec<u8>);

/// A table of `entries` in a temporary directory.
struct Fixture {
    _dir: TempDir,
    path: PathBuf,
    entries: Vec<Entry>,
    footer: Footer,
    data_blocks: Vec<BlockHandle>,
}

fn entries(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let key = format!("key-{i:03}").into_bytes();
            if i % 7 == 3 {
                (key, 100 + i as u64, ValueKind::Delete, Vec::new())
            } else {
                (
                    key,
                    100 + i as u64,
                    ValueKind::Put,
                    format!("value-{i}").repeat(i % 4 + 1).into_bytes(),
                )
            }
        })
        .collect()
}

fn build(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000001.sst");
    let file = StdFs.open_file(&path, OpenMode::CreateNew).unwrap();
    let options = TableOptions {
        block_size_bytes: 128,
        block_restart_interval: 4,
        bloom_bits_per_key: 10,
        ..TableOptions::default()
    };
    let mut builder = TableBuilder::new(file, path.clone(), options);
    let entries = entries(n);
    for (key, seqno, kind, value) in &entries {
        let key = InternalKeyRef {
            user_key: key,
            seqno: SeqNo(*seqno),
            kind: *kind,
        };
        builder.add(key, value).unwrap();
    }
    builder.finish().unwrap();
    let table = open(&path).unwrap();
    let footer = *table.footer();
    let data_blocks = table.data_block_handles().unwrap();
    assert!(
        data_blocks.len() >= 3,
        "the fixture should have several data blocks"
    );
    Fixture {
        _dir: dir,
        path,
        entries,
        footer,
        data_blocks,
    }
}

fn open(path: &Path) -> varve_db::Result<Arc<Table>> {
    let file = StdFs.open_file(path, OpenMode::Read).unwrap();
    Table::open(file, path.to_path_buf(), 1).map(Arc::new)
}

/// Writes `bytes` over the file, which has the same length, in place:
/// truncate-and-rewrite makes ext4 flush the file on close, which would make
/// the sweeps below slow.
fn overwrite(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    assert_eq!(file.metadata().unwrap().len(), bytes.len() as u64);
    file.write_all_at(bytes, 0).unwrap();
}

fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 1 << bit;
    overwrite(path, &bytes);
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    overwrite(path, &bytes);
}

fn set_bytes(path: &Path, offset: u64, new: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize..offset as usize + new.len()].copy_from_slice(new);
    overwrite(path, &bytes);
}

fn truncate(path: &Path, len_bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len_bytes)
        .unwrap();
}

/// Rewrites the trailer of the block at `handle` so its CRC matches again.
fn fix_block_crc(path: &Path, handle: BlockHandle) {
    let mut bytes = std::fs::read(path).unwrap();
    fix_block_crc_in(&mut bytes, handle);
    overwrite(path, &bytes);
}

fn fix_block_crc_in(bytes: &mut [u8], handle: BlockHandle) {
    let start = handle.offset as usize;
    let end = start + handle.size_bytes as usize;
    let trailer = block_trailer(&bytes[start..end], bytes[end]);
    bytes[end..end + BLOCK_TRAILER_SIZE].copy_from_slice(&trailer);
}

/// Opens the table and reads all of it: both scan directions, a `get` of
/// every entry and of absent keys, and `verify`. Panics on any wrong answer;
/// returns the first error.
fn read_everything(path: &Path, expected: &[Entry]) -> varve_db::Result<()> {
    let table = open(path)?;
    let mut iter = table.iter();
    iter.seek_to_first();
    let mut seen = 0;
    while iter.valid() {
        assert_eq!(
            entry_at(&iter),
            expected[seen],
            "forward scan returned wrong data"
        );
        seen += 1;
        iter.next();
    }
    iter.status()?;
    assert_eq!(
        seen,
        expected.len(),
        "forward scan stopped early without an error"
    );
    iter.seek_to_last();
    while iter.valid() {
        seen -= 1;
        assert_eq!(
            entry_at(&iter),
            expected[seen],
            "backward scan returned wrong data"
        );
        iter.prev();
    }
    iter.status()?;
    assert_eq!(seen, 0, "backward scan stopped early without an error");
    for (key, seqno, kind, value) in expected {
        let found = table.get(key, SeqNo(*seqno))?;
        let found = found.map(|(s, k, v)| (s.0, k, v.to_vec()));
        assert_eq!(
            found,
            Some((*seqno, *kind, value.clone())),
            "get returned wrong data"
        );
        assert_eq!(
            table.get(key, SeqNo(*seqno - 1))?,
            None,
            "get found a version that is too new"
        );
    }
    assert_eq!(table.get(b"key-", SeqNo::MAX)?, None);
    assert_eq!(table.get(b"zzz", SeqNo::MAX)?, None);
    table.verify()?;
    Ok(())
}

fn entry_at(iter: &impl InternalIterator) -> Entry {
    let key = iter.key();
    (
        key.user_key.to_vec(),
        key.seqno.0,
        key.kind,
        iter.value().to_vec(),
    )
}

/// Asserts `result` is a corruption of `path` at an offset in `range`.
fn assert_corruption<T>(result: varve_db::Result<T>, path: &Path, range: std::ops::Range<u64>) {
    match result {
        Err(Error::Corruption {
            path: p,
            offset,
            what,
        }) => {
            assert_eq!(p, path);
            assert!(
                range.contains(&offset),
                "offset {offset} not in {range:?} ({what})"
            );
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("expected corruption, got success"),
    }
}

fn span(handle: BlockHandle) -> std::ops::Range<u64> {
    handle.offset..handle.offset + handle.size_bytes + BLOCK_TRAILER_SIZE as u64
}

#[test]
fn undamaged_table_reads_back() {
    let fx = build(30);
    read_everything(&fx.path, &fx.entries).unwrap();
}

#[test]
fn flipped_byte_in_data_block() {
    let fx = build(30);
    let damaged = fx.data_blocks[1];
    flip_byte(&fx.path, damaged.offset + 3);
    let table = open(&fx.path).expect("data blocks are read lazily");
    // Keys in other blocks are still served.
    let first = &fx.entries[0];
    assert!(table.get(&first.0, SeqNo(first.1)).unwrap().is_some());
    assert_corruption(
        read_everything(&fx.path, &fx.entries),
        &fx.path,
        span(damaged),
    );
    assert_corruption(table.verify(), &fx.path, span(damaged));
}

#[test]
fn flipped_byte_in_block_trailer() {
    let fx = build(30);
    let damaged = fx.data_blocks[0];
    flip_byte(&fx.path, damaged.offset + damaged.size_bytes + 2);
    assert_corruption(
        read_everything(&fx.path, &fx.entries),
        &fx.path,
        span(damaged),
    );
}

#[test]
fn unknown_compression_type() {
    let fx = build(30);
    let damaged = fx.data_blocks[2];
    set_bytes(&fx.path, damaged.offset + damaged.size_bytes, &[1]);
    fix_block_crc(&fx.path, damaged);
    assert_corruption(
        read_everything(&fx.path, &fx.entries),
        &fx.path,
        span(damaged),
    );
}

/// A flipped byte in each block that `open` reads (index, filter,
/// properties) is corruption within that block.
#[test]
fn flipped_byte_in_a_block_read_at_open() {
    type Pick = fn(&Footer) -> BlockHandle;
    let cases: [(&str, Pick, u64); 3] = [
        ("index", |f| f.index, 5),
        ("filter", |f| f.filter, 1),
        ("properties", |f| f.properties, 10),
    ];
    for (name, pick, at) in cases {
        let fx = build(30);
        let block = pick(&fx.footer);
        flip_byte(&fx.path, block.offset + at);
        eprintln!("{name} block");
        assert_corruption(open(&fx.path), &fx.path, span(block));
    }
}

#[test]
fn index_with_valid_crc_but_wrong_handle() {
    let fx = build(30);
    // The first entry's value starts with the offset varint (0); point it
    // elsewhere and fix the CRC, as a buggy writer might.
    let bytes = std::fs::read(&fx.path).unwrap();
    let index_start = fx.footer.index.offset as usize;
    let key_len = bytes[index_start + 1] as usize;
    let value_at = index_start + 3 + key_len;
    assert_eq!(bytes[value_at], 0);
    set_bytes(&fx.path, value_at as u64, &[1]);
    fix_block_crc(&fx.path, fx.footer.index);
    assert_corruption(open(&fx.path), &fx.path, span(fx.footer.index));
}

#[test]
fn properties_with_valid_crc_but_wrong_count() {
    let fx = build(30);
    let bytes = std::fs::read(&fx.path).unwrap();
    let props = &bytes[span(fx.footer.properties).start as usize..];
    let name = b"varve.entry_count";
    let at = props.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    set_bytes(
        &fx.path,
        fx.footer.properties.offset + at as u64,
        &31u64.to_le_bytes(),
    );
    fix_block_crc(&fx.path, fx.footer.properties);
    let table = open(&fx.path).unwrap();
    assert_corruption(table.verify(), &fx.path, span(fx.footer.properties));
}

#[test]
fn flipped_byte_in_footer_magic() {
    let fx = build(30);
    let len = std::fs::metadata(&fx.path).unwrap().len();
    flip_byte(&fx.path, len - 1);
    assert_corruption(open(&fx.path), &fx.path, len - 8..len);
}

#[test]
fn flipped_byte_in_footer_handles() {
    let fx = build(30);
    let footer_at = std::fs::metadata(&fx.path).unwrap().len() - FOOTER_SIZE as u64;
    flip_byte(&fx.path, footer_at + 20);
    assert_corruption(
        open(&fx.path),
        &fx.path,
        footer_at..footer_at + FOOTER_SIZE as u64,
    );
}

/// Rewrites the footer's version field to `version`, with a CRC computed
/// over it, as a genuine footer of that version would have.
fn set_footer_version(path: &Path, version: u32) -> u64 {
    let footer_at = std::fs::metadata(path).unwrap().len() - FOOTER_SIZE as u64;
    set_bytes(
        path,
        footer_at + FOOTER_VERSION_OFFSET as u64,
        &version.to_le_bytes(),
    );
    let bytes = std::fs::read(path).unwrap();
    let crc = crc32fast::hash(&bytes[footer_at as usize..footer_at as usize + FOOTER_CRC_OFFSET]);
    set_bytes(
        path,
        footer_at + FOOTER_CRC_OFFSET as u64,
        &crc.to_le_bytes(),
    );
    footer_at
}

#[test]
fn newer_footer_version_is_unsupported() {
    let fx = build(30);
    set_footer_version(&fx.path, FORMAT_VERSION + 1);
    match open(&fx.path) {
        Err(Error::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
            path,
        }) if found == FORMAT_VERSION + 1 => assert_eq!(path, fx.path),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

/// A current table relabelled as version 1 (a valid footer CRC) holds a
/// filter kind version 1 never wrote: corruption at the filter block,
/// never a filter read the wrong way (which could hide present keys).
#[test]
fn a_filter_of_another_versions_kind_is_corruption() {
    let fx = build(30);
    set_footer_version(&fx.path, 1);
    let filter = fx.footer.filter.offset;
    assert_corruption(open(&fx.path), &fx.path, filter..filter + 1);
}

#[test]
fn damaged_footer_version_is_corruption() {
    let fx = build(30);
    let footer_at = std::fs::metadata(&fx.path).unwrap().len() - FOOTER_SIZE as u64;
    let version_at = footer_at + FOOTER_VERSION_OFFSET as u64;
    flip_bit(&fx.path, version_at + 1, 3);
    assert_corruption(open(&fx.path), &fx.path, version_at..version_at + 4);
}

#[test]
fn truncated_file() {
    let fx = build(30);
    let len = std::fs::metadata(&fx.path).unwrap().len();
    for cut in [
        len - 1,
        len - FOOTER_SIZE as u64,
        len / 2,
        FOOTER_SIZE as u64,
        10,
    ] {
        truncate(&fx.path, cut);
        assert_corruption(open(&fx.path), &fx.path, 0..len);
    }
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.sst");
    std::fs::write(&path, b"").unwrap();
    assert_corruption(open(&path), &path, 0..1);
}

#[test]
fn garbage_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sst");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut garbage: Vec<u8> = (0..5000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_corruption(open(&path), &path, 0..5000);
    // Garbage that happens to end with the magic is still caught.
    let end = garbage.len();
    garbage[end - 8..].copy_from_slice(b"varvesst");
    garbage[end - 16..end - 12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&path, &garbage).unwrap();
    assert_corruption(open(&path), &path, 0..5000);
}

/// Every single-bit flip anywhere in the file must be detected: every byte
/// of a table lies under some CRC, and CRC32 catches all one-bit errors.
/// Reads that succeed must return exactly the original data (checked inside
/// `read_everything`).
#[test]
fn every_bit_flip_is_detected() {
    let fx = build(30);
    let original = std::fs::read(&fx.path).unwrap();
    let mut undetected = Vec::new();
    for offset in 0..original.len() {
        for bit in 0..8 {
            let mut damaged = original.clone();
            damaged[offset] ^= 1 << bit;
            overwrite(&fx.path, &damaged);
            match read_everything(&fx.path, &fx.entries) {
                Err(Error::Corruption { path, .. }) => assert_eq!(path, fx.path),
                Err(other) => {
                    panic!("bit {bit} of byte {offset}: expected corruption, got {other}")
                }
                Ok(()) => undetected.push((offset, bit)),
            }
        }
    }
    assert!(
        undetected.is_empty(),
        "undetected flips (data was still correct): {undetected:?}"
    );
}

/// Reads everything without checking answers (for files whose damage no
/// CRC can catch); returns the first error.
fn read_loosely(path: &Path, probes: &[Entry]) -> varve_db::Result<()> {
    let table = open(path)?;
    let mut iter = table.iter();
    iter.seek_to_first();
    while iter.valid() {
        iter.next();
    }
    iter.status()?;
    iter.seek_to_last();
    while iter.valid() {
        iter.prev();
    }
    iter.status()?;
    for (key, seqno, kind, _) in probes {
        table.get(key, SeqNo(*seqno))?;
        let target = InternalKeyRef {
            user_key: key,
            seqno: SeqNo(*seqno),
            kind: *kind,
        };
        iter.seek(&target);
        iter.seek_for_prev(&target);
        iter.status()?;
    }
    table.verify()?;
    Ok(())
}

/// Blocks altered with their CRCs fixed up, as a buggy writer or a crafted
/// file would produce: the structural checks must turn every inconsistency
/// into `Corruption`, never a panic or an endless loop. (The data may
/// legitimately differ, so answers are not compared.)
#[test]
fn crafted_blocks_with_valid_crcs_never_panic() {
    let fx = build(30);
    let original = std::fs::read(&fx.path).unwrap();
    let mut blocks = fx.data_blocks.clone();
    blocks.extend([fx.footer.filter, fx.footer.properties, fx.footer.index]);
    let mut outcomes = [0usize; 2];
    for handle in blocks {
        for offset in handle.offset..handle.offset + handle.size_bytes {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut damaged = original.clone();
                damaged[offset as usize] = value;
                fix_block_crc_in(&mut damaged, handle);
                overwrite(&fx.path, &damaged);
                match read_loosely(&fx.path, &fx.entries) {
                    Ok(()) => outcomes[0] += 1,
                    Err(Error::Corruption { .. }) => outcomes[1] += 1,
                    Err(other) => {
                        panic!("byte {offset} = {value:#x}: expected corruption, got {other}")
                    }
                }
            }
        }
    }
    assert!(outcomes[1] > 0, "{outcomes:?}");
}

/// A real store with two flushed tables (closed); returns the newest
/// table's path.
fn store_with_tables(dir: &Path) -> PathBuf {
    let db = varve_db::Db::open(dir, varve_db::Options::default()).unwrap();
    for round in 0..2 {
        for i in 0..50 {
            db.put(format!("key-{i:03}"), format!("value-{round}-{i}"))
                .unwrap();
        }
        db.flush().unwrap();
    }
    db.close().unwrap();
    let mut tables: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    tables.sort();
    assert!(tables.len() >= 2, "{tables:?}");
    tables.pop().unwrap()
}

fn assert_open_refuses(dir: &Path, table: &Path, words: &str) {
    match varve_db::Db::open(dir, varve_db::Options::default()) {
        Err(err @ Error::Corruption { .. }) => {
            let Error::Corruption { path, what, .. } = &err else {
                unreachable!()
            };
            assert_eq!(path, table, "{err}");
            assert!(what.contains(words), "{err}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a store with a damaged table opened"),
    }
}

#[test]
fn open_refuses_a_newest_table_truncated_to_zero_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let table = store_with_tables(dir.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_open_refuses(dir.path(), &table, "is 0 bytes, but the manifest records");
}

#[test]
fn open_refuses_a_table_longer_than_the_manifest_records() {
    let dir = tempfile::tempdir().unwrap();
    let table = store_with_tables(dir.path());
    let mut bytes = std::fs::read(&table).unwrap();
    bytes.push(0);
    std::fs::write(&table, bytes).unwrap();
    assert_open_refuses(dir.path(), &table, "but the manifest records");
}

#[test]
fn open_refuses_a_missing_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = store_with_tables(dir.path());
    std::fs::remove_file(&table).unwrap();
    assert_open_refuses(dir.path(), &table, "is missing");
}
