//! The fuzz targets as plain functions over bytes.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line `fuzz_target!` over the
//! function of that name here; the stable driver (`src/bin/run.rs`) and the
//! corpus replay test (`engine/tests/fuzz_corpus.rs`, which includes this
//! file by path) call the same functions. A target fails by panicking:
//! decoders must return `Ok` or a typed error on any input, round trips
//! must give back what they were given, and the model target must agree
//! with a `BTreeMap`.
//!
//! Only `varve` (and the `varve_changelog` it re-exports) is used, so the
//! file compiles both in the fuzz crate and as a module of an engine test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use varve_db::varve_changelog as changelog;
use varve_db::varve_changelog::fs::{CrashMode, FaultKind, FileSystem, MemFs, OpenMode, PathKind};

/// A fuzz target: panics on a failure.
pub type Target = fn(&[u8]);

/// Every target, by name: the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("changelog_batch_decode", changelog_batch_decode),
    ("changelog_recovery", changelog_recovery),
    ("changelog_index_decode", changelog_index_decode),
    ("changelog_positions_decode", changelog_positions_decode),
    ("changelog_meta_decode", changelog_meta_decode),
    ("sst_block_decode", sst_block_decode),
    ("sst_table_decode", sst_table_decode),
    ("manifest_decode", manifest_decode),
    ("partitions_decode", partitions_decode),
    ("restore_marker_decode", restore_marker_decode),
    ("ttl_manifest_decode", ttl_manifest_decode),
    ("changelog_batch_roundtrip", changelog_batch_roundtrip),
    ("positions_roundtrip", positions_roundtrip),
    ("version_edit_roundtrip", version_edit_roundtrip),
    ("sst_block_roundtrip", sst_block_roundtrip),
    ("db_model", db_model),
    ("store_open", store_open),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Reads little pieces off the front of the input; past the end it yields
/// zeros, so every input is a complete program.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }
    fn bytes(&mut self, max: usize) -> &[u8] {
        let n = usize::from(self.u8()).min(max).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Decoders: never panic, never loop, bounded memory.

/// A changelog record batch: header check, CRC check, and every record.
pub fn changelog_batch_decode(data: &[u8]) {
    let _ = changelog::batch::parse_header(data);
    let _ = changelog::batch::check_batch(data);
    if let Ok(batch) = changelog::batch::Batch::from_bytes(Bytes::copy_from_slice(data)) {
        let header = *batch.header();
        let mut n = 0u64;
        for record in batch.records() {
            if record.is_err() {
                break;
            }
            n += 1;
            assert!(n <= u64::from(u32::MAX), "record iterator does not end");
        }
        let _ = header.last_offset();
    }
}

/// A changelog directory whose first segment holds `data`: open (strict
/// and tolerant recovery) and read everything.
pub fn changelog_recovery(data: &[u8]) {
    for tolerant in [false, true] {
        let fs = MemFs::new();
        let dir = Path::new("/log");
        fs.create_dir_all(dir).expect("mkdir");
        // The segment, optionally followed by a second one holding the tail.
        let split = data.len() / 2;
        let (first, second) = if data.first().is_some_and(|b| b & 1 == 1) {
            (&data[..split], Some(&data[split..]))
        } else {
            (data, None)
        };
        fs.write_all(&changelog::filename::segment_path(dir, 0, ".log"), first)
            .expect("write segment");
        if let Some(second) = second {
            fs.write_all(
                &changelog::filename::segment_path(dir, 1000, ".log"),
                second,
            )
            .expect("write segment");
        }
        let opts = changelog::LogOptions::default().recovery(if tolerant {
            changelog::RecoveryMode::Tolerant
        } else {
            changelog::RecoveryMode::Strict
        });
        let Ok(log) = changelog::Log::open(dir, opts.fs(Arc::new(fs))) else {
            continue;
        };
        read_whole_log(&log);
    }
}

fn read_whole_log(log: &changelog::Log) {
    let Ok(mut reader) = log.reader(log.log_start_offset()) else {
        return;
    };
    let mut expect = log.log_start_offset();
    while let Ok(Some((_, records))) = reader.next_batch() {
        for r in records {
            assert!(r.offset >= expect, "offsets go backwards");
            expect = r.offset + 1;
        }
        assert!(expect <= log.next_offset(), "read past the log end");
    }
}

/// The offset and time index files of a segment.
pub fn changelog_index_decode(data: &[u8]) {
    let mut input = Input(data);
    let size = u64::from(input.u16()) << 4;
    let end = u64::from(input.u16());
    let rest = input.0;
    let split = rest.len() / 2 / 8 * 8;
    let (offsets, times) = rest.split_at(split);
    if let Some(index) = changelog::index::SegmentIndex::decode(offsets, times, size, end) {
        for rel in [0, 1, end.min(u64::from(u32::MAX)) as u32, u32::MAX] {
            let pos = index.lookup(rel);
            assert!(u64::from(pos) <= size, "index points past the segment");
        }
        let _ = index.lookup_time(i64::MAX);
    }
}

/// The consumer positions file.
pub fn changelog_positions_decode(data: &[u8]) {
    let _ = changelog::positions::decode(Path::new("positions"), data);
}

/// The changelog's `log.meta` file.
pub fn changelog_meta_decode(data: &[u8]) {
    let _ = changelog::meta::LogMeta::decode(Path::new("log.meta"), data);
}

/// An encoded internal key (a put).
fn ikey(user_key: &[u8], seqno: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    varve_db::internals::key::InternalKeyRef {
        user_key,
        seqno: varve_db::internals::key::SeqNo(seqno),
        kind: varve_db::internals::key::ValueKind::Put,
    }
    .encode_into(&mut buf);
    buf
}

fn origin() -> varve_db::internals::sst::block::BlockOrigin {
    varve_db::internals::sst::block::BlockOrigin {
        path: Arc::from(Path::new("fuzz.sst")),
        offset: 0,
    }
}

/// One SST block (without trailer) of each kind: decode, then walk it
/// forwards and backwards.
pub fn sst_block_decode(data: &[u8]) {
    use varve_db::internals::sst::block::{Block, BlockKind};
    for kind in [BlockKind::Data, BlockKind::Index, BlockKind::Properties] {
        let Ok(block) = Block::decode(Bytes::copy_from_slice(data), kind, origin()) else {
            continue;
        };
        let mut n = 0;
        block.for_each_entry(|_, _| n += 1);
        assert_eq!(n, block.entry_count(), "entry count");
        if kind == BlockKind::Properties {
            continue;
        }
        let mut it = varve_db::internals::sst::BlockIter::new(Arc::new(block));
        it.seek_to_first();
        let mut forward = 0;
        while it.valid() {
            forward += 1;
            it.next();
        }
        it.seek_to_last();
        let mut backward = 0;
        while it.valid() {
            backward += 1;
            it.prev();
        }
        assert_eq!(forward, backward, "forward and backward walks differ");
    }
}

/// A whole SST file: open, verify, scan, point reads.
pub fn sst_table_decode(data: &[u8]) {
    let fs = MemFs::new();
    let path = PathBuf::from("/1.sst");
    fs.write_all(&path, data).expect("write table");
    let Ok(file) = fs.open_file(&path, OpenMode::Read) else {
        return;
    };
    let Ok(table) = varve_db::internals::sst::Table::open(file, path, 1) else {
        return;
    };
    let table = Arc::new(table);
    let _ = table.verify();
    use varve_db::internals::iter::InternalIterator;
    let mut it = table.iter();
    it.seek_to_first();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    while it.valid() && keys.len() < 100_000 {
        keys.push(it.key().user_key.to_vec());
        it.next();
    }
    let _ = it.status();
    for k in keys.iter().take(16) {
        let _ = table.get(k, varve_db::internals::key::SeqNo::MAX);
        let _ = table.may_contain(k);
    }
}

/// A manifest file (a log of version edits) and one edit payload.
pub fn manifest_decode(data: &[u8]) {
    let _ = varve_db::internals::version::VersionEdit::decode(data);
    let fs = MemFs::new();
    let path = PathBuf::from("/MANIFEST-1");
    fs.write_all(&path, data).expect("write manifest");
    let _ = varve_db::internals::version::read_manifest(&fs, &path);
    let _ = varve_db::internals::version::scan_manifest(&fs, &path);
}

/// A partitioned store's `PARTITIONS` file, read as opening the store
/// reads it: a count it accepts is in range and is the one the file holds
/// (the file is 20 bytes: magic, version, count, CRC).
pub fn partitions_decode(data: &[u8]) {
    let fs = MemFs::new();
    let dir = Path::new("/parts");
    fs.create_dir_all(dir).expect("mkdir");
    fs.write_all(&dir.join(varve_db::PARTITIONS_FILE), data)
        .expect("write PARTITIONS");
    match varve_db::read_partitions_file(&fs, dir) {
        Ok(count) => {
            assert!(
                (1..=varve_db::MAX_PARTITIONS).contains(&count),
                "count {count}"
            );
            assert_eq!(data.len(), 20, "a {}-byte file accepted", data.len());
            assert_eq!(
                data[12..16],
                count.to_le_bytes(),
                "count read from elsewhere"
            );
        }
        Err(e) => assert!(
            e.is_corruption() || matches!(e, varve_db::Error::UnsupportedVersion { .. }),
            "untyped error {e}"
        ),
    }
}

/// A store directory holding a `RESTORING` marker with any content (or a
/// directory by that name), beside a `CURRENT` file made of the input: the
/// store never opens, and the refusal says a restore is incomplete.
pub fn restore_marker_decode(data: &[u8]) {
    let fs = MemFs::new();
    let dir = Path::new("/db");
    fs.create_dir_all(dir).expect("mkdir");
    let marker = dir.join(varve_db::restore::MARKER_FILE);
    if data.first().is_some_and(|b| b & 1 == 1) {
        fs.create_dir_all(&marker).expect("mkdir marker");
    } else {
        fs.write_all(&marker, data).expect("write marker");
    }
    if data.first().is_some_and(|b| b & 2 == 2) {
        fs.write_all(&dir.join("CURRENT"), data)
            .expect("write CURRENT");
    }
    let opts =
        varve_db::Options::default().create_if_missing(data.first().is_some_and(|b| b & 4 == 4));
    match varve_db::Db::open(dir, opts.fs(Arc::new(fs))) {
        Err(varve_db::Error::RestoreIncomplete { .. }) => {}
        Err(e) => panic!("a marked store was refused for another reason: {e}"),
        Ok(_) => panic!("a store with a restore marker opened"),
    }
}

/// Manifest tag 7, a TTL store's duration: the input as one version-edit
/// payload, alone and after a TTL field. An edit that decodes never has
/// a TTL of 0 and re-encodes to bytes that decode to the same edit. As a
/// store's manifest, the input replays to a version whose TTL (or none) a
/// store opened without a TTL, or with another one, never ignores: a TTL
/// store opened without a TTL and a plain store opened with one are refused.
pub fn ttl_manifest_decode(data: &[u8]) {
    use varve_db::internals::version::{
        FileNumber, VersionEdit, VersionSet, VersionSetOptions, manifest_file_name,
    };
    let mut with_ttl = vec![7u8];
    with_ttl.extend_from_slice(data);
    for payload in [data, &with_ttl[..]] {
        if let Ok(edit) = VersionEdit::decode(payload) {
            assert_ne!(edit.ttl_ms, Some(0), "a TTL of 0 decoded");
            let again = VersionEdit::decode(&edit.encode()).expect("re-encoded edit decodes");
            assert_eq!(again, edit);
        }
    }
    let fs = MemFs::new();
    let dir = Path::new("/db");
    fs.create_dir_all(dir).expect("mkdir");
    let name = manifest_file_name(FileNumber(1));
    fs.write_all(&dir.join(&name), data)
        .expect("write manifest");
    fs.write_all(&dir.join("CURRENT"), format!("{name}\n").as_bytes())
        .expect("write CURRENT");
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs);
    let Ok(versions) = VersionSet::open(dynfs.clone(), dir, VersionSetOptions::default()) else {
        return;
    };
    let stored_ms = versions.current().ttl_ms();
    drop(versions);
    assert_ne!(stored_ms, Some(0), "a TTL of 0 replayed");
    let other_ms = stored_ms.map_or(60_000, |ms| ms.saturating_add(1));
    for given_ms in [None, Some(other_ms)] {
        let opts = varve_db::Options::default()
            .create_if_missing(false)
            .ttl(given_ms.map(std::time::Duration::from_millis));
        let opened = varve_db::Db::open(dir, opts.fs(dynfs.clone()));
        if stored_ms.is_some() != given_ms.is_some() {
            assert!(
                opened.is_err(),
                "TTL {stored_ms:?} in the manifest, {given_ms:?} given, and the store opened"
            );
        }
        if let Ok(db) = opened {
            let _ = db.close();
        }
    }
}

/// The time, in ms since the epoch, of the clock `store_open` opens its
/// stores with and its seeds were written with: a TTL store's seed stays
/// live (and every run alike) whatever the real time is.
pub const SEED_CLOCK_MS: u64 = 1_800_000_000_000;

/// The store directory `store_open` builds its files in.
pub const STORE_DIR: &str = "/db";

/// Encodes a store directory's files as a `store_open` input: a flags byte
/// (bit 0: open with a one-hour TTL; bit 1: recompute the checksums of
/// manifest records, changelog batches and tables), then for each file
/// `name_len:u8 name len:u32le bytes`, where `name` is relative to the
/// store directory (`CURRENT`, `000002.sst`, `changelog/log.meta`, …).
pub fn encode_store(flags: u8, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![flags];
    for (name, bytes) in files {
        let name = &name.as_bytes()[..name.len().min(255)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The files of a `store_open` input (see [`encode_store`]); a length past
/// the end takes what is left, and names that are not a plain file name,
/// optionally under `changelog/`, are skipped.
fn decode_store(data: &[u8]) -> (u8, Vec<(String, &[u8])>) {
    let mut input = Input(data);
    let flags = input.u8();
    let mut files = Vec::new();
    while !input.is_empty() && files.len() < 64 {
        let name = String::from_utf8_lossy(input.bytes(255)).into_owned();
        let len = u32::from(input.u16()) | u32::from(input.u16()) << 16;
        let len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(input.0.len());
        let (bytes, rest) = input.0.split_at(len);
        input.0 = rest;
        let plain = |n: &str| {
            !n.is_empty()
                && n != "."
                && n != ".."
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let ok = match name.strip_prefix("changelog/") {
            Some(inner) => plain(inner),
            None => plain(&name),
        };
        if ok {
            files.push((name, bytes));
        }
    }
    (flags, files)
}

/// A whole store directory built from the input (`CURRENT`, a manifest,
/// tables, changelog segments and indexes, `log.meta`, consumer
/// positions; see [`encode_store`]) in a [`MemFs`], opened with `Db`. If
/// it opens, everything is read (a full scan both ways, point reads),
/// one write is flushed into a table, and the store is closed and opened
/// again. Nothing may panic or hang, and every corruption error must name
/// a file of the store.
pub fn store_open(data: &[u8]) {
    let (dynfs, opts) = build_store(data);
    let dir = Path::new(STORE_DIR);
    for round in 0..2 {
        let db = match varve_db::Db::open(dir, opts.clone().fs(dynfs.clone())) {
            Ok(db) => db,
            Err(e) => return check_store_error(&e),
        };
        if let Err(e) = exercise_store(&db, round) {
            check_store_error(&e);
        }
        if let Err(e) = db.close() {
            return check_store_error(&e);
        }
    }
}

/// The store directory a `store_open` input describes, in a new
/// [`MemFs`], and the options to open it with (at [`STORE_DIR`]).
pub fn build_store(data: &[u8]) -> (Arc<dyn FileSystem>, varve_db::Options) {
    let (flags, files) = decode_store(data);
    let fs = MemFs::new();
    let dir = Path::new(STORE_DIR);
    fs.create_dir_all(&dir.join("changelog")).expect("mkdir");
    for (name, bytes) in &files {
        let path = dir.join(name);
        let mut bytes = bytes.to_vec();
        if flags & 2 == 2 {
            fix_checksums(name, &mut bytes);
        }
        // A name may collide with a directory; that file is left out.
        if fs.kind(&path).expect("kind") != Some(PathKind::Dir) {
            fs.write_all(&path, &bytes).expect("write file");
        }
    }
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs);
    let opts = varve_db::Options::default()
        .create_if_missing(false)
        .memtable_size_bytes(64 << 10)
        .ttl((flags & 1 == 1).then(|| std::time::Duration::from_secs(3600)))
        .clock(Arc::new(varve_db::ManualClock::new(SEED_CLOCK_MS)));
    (dynfs, opts)
}

/// Recomputes the checksums in a file: of every manifest record and
/// changelog batch whose length fits in `bytes`, and of a table's blocks
/// and footer, so mutations of their contents reach the decoders instead
/// of stopping at the CRC. The record and batch checksums are CRC-32 over
/// bytes `[0, 4)` and `[8, length)` of the record or batch.
fn fix_checksums(name: &str, bytes: &mut [u8]) {
    if name.ends_with(".sst") {
        return fix_table_checksums(bytes);
    }
    let (is_batch, header_size) = if name.starts_with("MANIFEST-") {
        (false, 8)
    } else if name.starts_with("changelog/") && name.ends_with(".log") {
        (true, changelog::batch::BATCH_HEADER_SIZE)
    } else {
        return;
    };
    let mut pos = 0usize;
    while bytes.len().saturating_sub(pos) >= header_size {
        let raw = [bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]];
        let field = u32::from_le_bytes(raw) as usize;
        // A batch's length covers its header; a record's does not.
        let len = if is_batch {
            field
        } else {
            field.saturating_add(8)
        };
        if len < header_size || len > bytes.len() - pos {
            return;
        }
        let crc = changelog::batch::batch_crc(&bytes[pos..pos + len]);
        bytes[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos += len;
    }
}

/// Recomputes a table's checksums: every data block the index names (if
/// the index is stored uncompressed and decodes), the filter, properties
/// and index blocks, and the footer, wherever their handles fit.
fn fix_table_checksums(bytes: &mut [u8]) {
    use varve_db::internals::sst::BlockHandle;
    use varve_db::internals::sst::block::{Block, BlockKind};
    use varve_db::internals::sst::format::{
        FOOTER_CRC_OFFSET, FOOTER_FILTER_OFFSET, FOOTER_INDEX_OFFSET, FOOTER_PROPERTIES_OFFSET,
        FOOTER_SIZE, block_crc,
    };
    let Some(footer_at) = bytes.len().checked_sub(FOOTER_SIZE) else {
        return;
    };
    let handle_at = |at: usize| {
        let word = |i: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[footer_at + i..footer_at + i + 8]);
            u64::from_le_bytes(raw)
        };
        BlockHandle {
            offset: word(at),
            size_bytes: word(at + 8),
        }
    };
    let index = handle_at(FOOTER_INDEX_OFFSET);
    let mut handles = vec![
        handle_at(FOOTER_FILTER_OFFSET),
        handle_at(FOOTER_PROPERTIES_OFFSET),
    ];
    if let Some((start, end)) = block_span(bytes, index)
        && bytes[end] == 0
    {
        let contents = Bytes::copy_from_slice(&bytes[start..end]);
        if let Ok(block) = Block::decode(contents, BlockKind::Index, origin()) {
            block.for_each_entry(|_, value| handles.extend(BlockHandle::decode_varint(value)));
        }
    }
    handles.push(index);
    for handle in handles {
        if let Some((start, end)) = block_span(bytes, handle) {
            let crc = block_crc(&bytes[start..end], bytes[end]);
            bytes[end + 1..end + 5].copy_from_slice(&crc.to_le_bytes());
        }
    }
    // The footer's CRC covers its first 52 bytes: `block_crc` of the first
    // 51 with the 52nd as the "type byte" is exactly that CRC.
    let covered = footer_at + FOOTER_CRC_OFFSET;
    let crc = block_crc(&bytes[footer_at..covered - 1], bytes[covered - 1]);
    bytes[covered..covered + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The contents' start and end of the block at `handle`, if it and its
/// 5-byte trailer lie inside `bytes`.
fn block_span(
    bytes: &[u8],
    handle: varve_db::internals::sst::BlockHandle,
) -> Option<(usize, usize)> {
    let start = usize::try_from(handle.offset).ok()?;
    let end = start.checked_add(usize::try_from(handle.size_bytes).ok()?)?;
    (end.checked_add(5)? <= bytes.len()).then_some((start, end))
}

/// Reads everything in `db` (bounded), writes one key and flushes it.
/// Damage the checksums cannot see (a manifest's key range that does not
/// match its table) may make reads disagree, so only errors are checked.
fn exercise_store(db: &varve_db::Db, round: u8) -> varve_db::Result<()> {
    let mut keys = Vec::new();
    for kv in db.iter().take(10_000) {
        keys.push(kv?.0);
    }
    for kv in db.iter().rev().take(10_000) {
        kv?;
    }
    for key in keys.iter().step_by(keys.len() / 16 + 1) {
        db.get(key)?;
    }
    db.put(format!("fuzz-{round}"), "value")?;
    db.flush()?;
    db.get(format!("fuzz-{round}"))?;
    Ok(())
}

/// A store built from bytes may be refused, but a corruption error must
/// name a file or directory of the store.
fn check_store_error(e: &varve_db::Error) {
    assert!(!e.to_string().is_empty(), "an error without a message");
    if let varve_db::Error::Corruption { path, .. } = e {
        assert!(
            path.starts_with(STORE_DIR),
            "corruption names {} outside the store: {e}",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Round trips: encode, decode, compare.

/// Records built from the input, encoded as a batch and decoded again.
pub fn changelog_batch_roundtrip(data: &[u8]) {
    let mut input = Input(data);
    let mut records = Vec::new();
    while !input.is_empty() && records.len() < 64 {
        let key = Bytes::copy_from_slice(input.bytes(64));
        let tag = input.u8();
        let mut r = if tag & 1 == 0 {
            changelog::Record::put(key, Bytes::copy_from_slice(input.bytes(255)))
        } else {
            changelog::Record::tombstone(key)
        };
        r = r.with_timestamp_ms(i64::from(input.u16()) * 1000);
        if tag & 2 != 0 {
            let name = String::from_utf8_lossy(input.bytes(8)).into_owned();
            r = r.with_header(name, Bytes::copy_from_slice(input.bytes(8)));
        }
        records.push(r);
    }
    if records.is_empty() {
        return;
    }
    let base = u64::from(input.u16()) << 20;
    let mut buf = Vec::new();
    let header = changelog::batch::encode_batch(&mut buf, base, &records);
    let batch = changelog::batch::Batch::from_bytes(Bytes::from(buf)).expect("own batch decodes");
    assert_eq!(*batch.header(), header);
    let back: Vec<(u64, changelog::Record)> = batch
        .records()
        .collect::<Result<_, _>>()
        .expect("own records decode");
    assert_eq!(back.len(), records.len());
    for (i, ((offset, got), want)) in back.iter().zip(&records).enumerate() {
        assert_eq!(*offset, base + i as u64);
        assert_eq!(got, want);
    }
}

/// Consumer positions encoded and decoded.
pub fn positions_roundtrip(data: &[u8]) {
    let mut input = Input(data);
    let mut positions = BTreeMap::new();
    while !input.is_empty() && positions.len() < 32 {
        let name = String::from_utf8_lossy(input.bytes(16)).into_owned();
        let offset = u64::from(input.u16()) << u32::from(input.u8() % 40);
        if !name.is_empty() {
            positions.insert(name, offset);
        }
    }
    let bytes = changelog::positions::encode(&positions);
    let back =
        changelog::positions::decode(Path::new("positions"), &bytes).expect("own positions decode");
    assert_eq!(back, positions);
}

/// A version edit encoded and decoded.
pub fn version_edit_roundtrip(data: &[u8]) {
    use varve_db::internals::key::SeqNo;
    use varve_db::internals::version::{FileNumber, Level, TableMeta, VersionEdit};
    let mut input = Input(data);
    let flags = input.u8();
    let mut edit = VersionEdit {
        engine_format: (flags & 1 != 0).then(|| u32::from(input.u8())),
        flushed_offset: (flags & 2 != 0).then(|| u64::from(input.u16()) << 16),
        next_file_number: (flags & 4 != 0).then(|| FileNumber(u64::from(input.u16()))),
        last_seqno: (flags & 8 != 0).then(|| SeqNo(u64::from(input.u16()))),
        ttl_ms: (flags & 16 != 0).then(|| u64::from(input.u16()) << u32::from(input.u8() % 40)),
        ..VersionEdit::default()
    };
    for _ in 0..input.u8() % 4 {
        edit.deleted
            .push((Level(input.u8() % 7), FileNumber(u64::from(input.u16()))));
    }
    for _ in 0..input.u8() % 4 {
        let lo = input.bytes(8).to_vec();
        let hi_suffix = input.bytes(8).to_vec();
        let mut hi = lo.clone();
        hi.extend(hi_suffix);
        let (s1, s2) = (u64::from(input.u8()), u64::from(input.u8()));
        edit.added.push((
            Level(input.u8() % 7),
            TableMeta {
                number: FileNumber(u64::from(input.u16())),
                size_bytes: u64::from(input.u16()),
                smallest: ikey(&lo, s1.max(s2)),
                largest: ikey(&hi, s1.min(s2)),
                min_seqno: SeqNo(s1.min(s2)),
                max_seqno: SeqNo(s1.max(s2)),
                entry_count: u64::from(input.u8()),
                tombstone_count: 0,
            },
        ));
    }
    if edit.check().is_err() {
        return;
    }
    let bytes = edit.encode();
    let back = VersionEdit::decode(&bytes).expect("own edit decodes");
    assert_eq!(back, edit);
}

/// Entries built from the input, put in a data block and decoded again.
pub fn sst_block_roundtrip(data: &[u8]) {
    use varve_db::internals::sst::block::{Block, BlockBuilder, BlockKind};
    let mut input = Input(data);
    let interval = 1 + usize::from(input.u8() % 16);
    let mut keys: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    while !input.is_empty() && keys.len() < 200 {
        let k = input.bytes(24).to_vec();
        let v = input.bytes(64).to_vec();
        keys.insert(k, v);
    }
    if keys.is_empty() {
        return;
    }
    let mut builder = BlockBuilder::new(interval);
    let mut want = Vec::new();
    for (i, (k, v)) in keys.iter().enumerate() {
        let ikey = ikey(k, 1000 - i as u64);
        builder.add(&ikey, v);
        want.push((ikey, v.clone()));
    }
    let bytes = builder.finish();
    let block =
        Block::decode(Bytes::from(bytes), BlockKind::Data, origin()).expect("own block decodes");
    let mut got = Vec::new();
    block.for_each_entry(|k, v| got.push((k.to_vec(), v.to_vec())));
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// The model target.

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// One write batch of the model: keys with a value (put) or `None`.
type ModelBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Arbitrary operation sequences (put, delete, batch, get, range,
/// snapshot, flush, reopen, simulated crash, injected I/O error) against a
/// `Db` on a [`MemFs`] and a `BTreeMap`. After a crash or an error the
/// store must hold a prefix of the attempted batches that includes every
/// acknowledged one.
pub fn db_model(data: &[u8]) {
    let mut input = Input(data);
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let opts = varve_db::Options::default()
        .memtable_size_bytes(4096)
        .block_size_bytes(256)
        .changelog_segment_size_bytes(64 << 10);
    let open = || varve_db::Db::open("/db", opts.clone().fs(dynfs.clone()));
    let mut db = Some(open().expect("open a new store"));
    // Batches since the last verified state, the state before them, and
    // how many of them are acknowledged as durable.
    let mut base = State::new();
    let mut batches: Vec<ModelBatch> = Vec::new();
    let mut durable = 0usize;
    let mut snapshot: Option<(varve_db::Snapshot, State)> = None;
    let mut steps = 0;
    while !input.is_empty() && steps < 200 {
        steps += 1;
        let current = apply_all(&base, &batches);
        let Some(d) = db.as_ref() else { break };
        let op = input.u8() % 12;
        let mut failed = false;
        match op {
            0..=3 => {
                let n = if op == 3 { 1 + input.u8() % 4 } else { 1 };
                let mut batch = varve_db::WriteBatch::new();
                let mut recs = Vec::new();
                for _ in 0..n {
                    let k = vec![b'k', b'0' + input.u8() % 8];
                    if op == 1 {
                        batch.delete(k.clone());
                        recs.push((k, None));
                    } else {
                        let v = input.bytes(40).to_vec();
                        batch.put(k.clone(), v.clone());
                        recs.push((k, Some(v)));
                    }
                }
                let sync = input.u8() & 1 == 1;
                batches.push(recs);
                match d.write(batch, varve_db::WriteOptions::default().sync(sync)) {
                    Ok(()) if sync => durable = batches.len(),
                    Ok(()) => {}
                    Err(_) => failed = true,
                }
            }
            4 => {
                let k = vec![b'k', b'0' + input.u8() % 8];
                match d.get(&k) {
                    Ok(v) => assert_eq!(v.as_deref(), current.get(&k).map(Vec::as_slice)),
                    Err(_) => failed = true,
                }
            }
            5 => match d.iter().rev().collect::<varve_db::Result<Vec<_>>>() {
                Ok(mut got) => {
                    got.reverse();
                    assert!(same(&got, &current), "reverse scan differs from the model");
                }
                Err(_) => failed = true,
            },
            6 => snapshot = Some((d.snapshot(), current.clone())),
            7 => {
                if let Some((s, want)) = &snapshot {
                    match s
                        .range::<&[u8], _>(..)
                        .collect::<varve_db::Result<Vec<_>>>()
                    {
                        Ok(got) => assert!(same(&got, want), "snapshot changed"),
                        Err(_) => failed = true,
                    }
                }
            }
            8 => match d.flush() {
                Ok(()) => durable = batches.len(),
                Err(_) => failed = true,
            },
            9 => {
                snapshot = None;
                match db.take().map(varve_db::Db::close) {
                    Some(Ok(())) => durable = batches.len(),
                    _ => failed = true,
                }
                db = open().ok();
                failed |= db.is_none();
            }
            10 => failed = true, // a simulated crash
            _ => {
                // An I/O error on one of the next calls.
                fs.fail_after(u64::from(input.u8() % 32), FaultKind::Once);
            }
        }
        if failed {
            snapshot = None;
            fs.fail_after(0, FaultKind::Persistent);
            drop(db.take());
            let mode = match input.u8() % 3 {
                0 => CrashMode::DropAll,
                1 => CrashMode::KeepAll,
                _ => CrashMode::Random,
            };
            fs.crash(mode, u64::from(input.u16()));
            let reopened = open().expect("reopen after a crash");
            let got: Vec<_> = reopened
                .iter()
                .collect::<varve_db::Result<_>>()
                .expect("scan after a crash");
            let p = (durable..=batches.len())
                .find(|&p| same(&got, &apply_all(&base, &batches[..p])))
                .unwrap_or_else(|| {
                    panic!(
                        "after a crash the store is no prefix in [{durable}, {}]",
                        batches.len()
                    )
                });
            base = apply_all(&base, &batches[..p]);
            batches.clear();
            durable = 0;
            db = Some(reopened);
        }
    }
    fs.clear_faults();
}

fn apply_all(base: &State, batches: &[ModelBatch]) -> State {
    let mut s = base.clone();
    for b in batches {
        for (k, v) in b {
            match v {
                Some(v) => s.insert(k.clone(), v.clone()),
                None => s.remove(k),
            };
        }
    }
    s
}

fn same(got: &[(Bytes, Bytes)], want: &State) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((gk, gv), (wk, wv))| gk[..] == wk[..] && gv[..] == wv[..])
}
