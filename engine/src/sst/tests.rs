//! Table-level tests: build, get, iterate, seek, verify, and a model test
//! against a sorted `Vec`.

use std::cmp::Ordering;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use varve_changelog::fs::{FileSystem, MemFs, OpenMode};

use super::*;
use crate::iter::InternalIterator;
use crate::key::{InternalKeyRef, SeqNo, ValueKind};

/// An owned entry: user key, seqno, kind, value.
type Entry = (Vec<u8>, u64, ValueKind, Vec<u8>);

fn cmp_entries(a: &Entry, b: &Entry) -> Ordering {
    as_key(a).cmp_internal(&as_key(b))
}

fn as_key(entry: &Entry) -> InternalKeyRef<'_> {
    InternalKeyRef {
        user_key: &entry.0,
        seqno: SeqNo(entry.1),
        kind: entry.2,
    }
}

fn build(entries: &[Entry], options: TableOptions) -> (Arc<Table>, TableInfo) {
    let fs = MemFs::new();
    let path = PathBuf::from("/000007.sst");
    let file = fs.open_file(&path, OpenMode::CreateNew).unwrap();
    let mut builder = TableBuilder::new(file.clone(), path.clone(), options);
    for entry in entries {
        builder.add(as_key(entry), &entry.3).unwrap();
    }
    assert_eq!(builder.entry_count(), entries.len() as u64);
    let estimate = builder.estimated_size_bytes();
    let info = builder.finish().unwrap();
    assert!(
        estimate + 4096 >= info.file_size_bytes,
        "estimate {estimate}, actual {}",
        info.file_size_bytes
    );
    assert_eq!(file.len().unwrap(), info.file_size_bytes);
    let table = Table::open(file, path, 7).unwrap();
    assert_eq!(table.properties(), &info.properties);
    (Arc::new(table), info)
}

fn small_blocks() -> TableOptions {
    TableOptions {
        block_size_bytes: 128,
        block_restart_interval: 4,
        bloom_bits_per_key: 10,
        compression: crate::Compression::None,
    }
}

/// Keys `k0000`…: key `i` has versions at seqnos `10*i + 1 ..= 10*i + (i % 3) + 1`,
/// the oldest a delete when `i % 5 == 0`.
fn versioned_entries(n: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("k{i:04}").into_bytes();
        let versions = (i % 3) as u64 + 1;
        for v in (1..=versions).rev() {
            let seqno = 10 * i as u64 + v;
            if v == 1 && i % 5 == 0 {
                out.push((key.clone(), seqno, ValueKind::Delete, Vec::new()));
            } else {
                out.push((
                    key.clone(),
                    seqno,
                    ValueKind::Put,
                    format!("value-{i}-{v}").into_bytes(),
                ));
            }
        }
    }
    out
}

fn collect_forward(iter: &mut TableIterator) -> Vec<Entry> {
    collect(iter, TableIterator::next)
}

fn collect_backward(iter: &mut TableIterator) -> Vec<Entry> {
    let mut out = collect(iter, TableIterator::prev);
    out.reverse();
    out
}

/// The entries from the iterator's position on, stepping with `step`.
fn collect(iter: &mut TableIterator, step: fn(&mut TableIterator)) -> Vec<Entry> {
    let mut out = Vec::new();
    while iter.valid() {
        let key = iter.key();
        out.push((
            key.user_key.to_vec(),
            key.seqno.0,
            key.kind,
            iter.value().to_vec(),
        ));
        assert_eq!(
            iter.value_bytes(),
            iter.value(),
            "the two value accessors agree"
        );
        step(iter);
    }
    iter.status().unwrap();
    out
}

/// The model's answer to `get`.
fn model_get(
    entries: &[Entry],
    user_key: &[u8],
    snapshot: u64,
) -> Option<(SeqNo, ValueKind, Vec<u8>)> {
    entries
        .iter()
        .find(|e| e.0 == user_key && e.1 <= snapshot)
        .map(|e| (SeqNo(e.1), e.2, e.3.clone()))
}

fn table_get(table: &Table, user_key: &[u8], snapshot: u64) -> Option<(SeqNo, ValueKind, Vec<u8>)> {
    let found = table.get(user_key, SeqNo(snapshot)).unwrap();
    found.map(|(seqno, kind, value)| (seqno, kind, value.to_vec()))
}

#[test]
fn table_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Table>();
    check::<TableIterator>();
}

#[test]
fn build_get_and_iterate_both_ways() {
    let entries = versioned_entries(300);
    let (table, info) = build(&entries, small_blocks());
    assert!(info.properties.data_block_count > 20);
    assert_eq!(info.properties.entry_count, entries.len() as u64);
    assert_eq!(info.properties.tombstone_count, 60);
    assert_eq!(info.properties.changelog_offsets(), Some(0..=2992));
    let mut iter = table.iter();
    iter.seek_to_first();
    assert_eq!(collect_forward(&mut iter), entries);
    iter.seek_to_last();
    assert_eq!(collect_backward(&mut iter), entries);
    for entry in &entries {
        assert_eq!(
            table_get(&table, &entry.0, entry.1),
            Some((SeqNo(entry.1), entry.2, entry.3.clone()))
        );
    }
    assert_eq!(table_get(&table, b"k9999", u64::MAX), None);
    assert_eq!(table_get(&table, b"a", u64::MAX), None);
    let report = table.verify().unwrap();
    assert_eq!(report.entry_count, entries.len() as u64);
    assert_eq!(report.data_block_count, info.properties.data_block_count);
    assert_eq!(report.data_size_bytes, info.properties.data_size_bytes);
    let handles = table.data_block_handles().unwrap();
    assert_eq!(handles.len() as u64, info.properties.data_block_count);
    assert_eq!(handles[0].offset, 0);
}

#[test]
fn direction_changes_across_block_boundaries() {
    let entries = versioned_entries(60);
    let (table, _) = build(&entries, small_blocks());
    let mut iter = table.iter();
    iter.seek_to_first();
    for i in 0..entries.len() - 1 {
        let at = |iter: &TableIterator| (iter.key().user_key.to_vec(), iter.key().seqno.0);
        assert_eq!(at(&iter), (entries[i].0.clone(), entries[i].1));
        iter.next();
        assert_eq!(at(&iter), (entries[i + 1].0.clone(), entries[i + 1].1));
        iter.prev();
        assert_eq!(at(&iter), (entries[i].0.clone(), entries[i].1));
        iter.next();
    }
    iter.next();
    assert!(!iter.valid());
    iter.status().unwrap();
}

#[test]
fn get_honours_snapshots() {
    // k0002 has versions 23, 22, 21; k0000 has only a delete at 1.
    let (table, _) = build(&versioned_entries(10), TableOptions::default());
    let value = |s: &str| s.as_bytes().to_vec();
    assert_eq!(
        table_get(&table, b"k0002", u64::MAX),
        Some((SeqNo(23), ValueKind::Put, value("value-2-3")))
    );
    assert_eq!(
        table_get(&table, b"k0002", 22),
        Some((SeqNo(22), ValueKind::Put, value("value-2-2")))
    );
    assert_eq!(
        table_get(&table, b"k0002", 21),
        Some((SeqNo(21), ValueKind::Put, value("value-2-1")))
    );
    assert_eq!(table_get(&table, b"k0002", 20), None);
    assert_eq!(
        table_get(&table, b"k0000", 5),
        Some((SeqNo(1), ValueKind::Delete, Vec::new()))
    );
    assert_eq!(table_get(&table, b"k0000", 0), None);
    assert!(table.may_contain(b"k0002"));
}

#[test]
fn seek_and_seek_for_prev() {
    let entries = versioned_entries(100);
    let (table, _) = build(&entries, small_blocks());
    let mut iter = table.iter();
    let targets = [
        (b"k0002".as_slice(), 22u64),
        (b"k0002", 100),
        (b"k0002", 20),
        (b"k0002a", 5),
        (b"", 0),
        (b"k0099", 991),
        (b"k0099", 990),
        (b"z", 0),
    ];
    for (user_key, seqno) in targets {
        let target: Entry = (user_key.to_vec(), seqno, ValueKind::Put, Vec::new());
        let at_or_after = entries
            .iter()
            .find(|e| cmp_entries(e, &target) != Ordering::Less);
        iter.seek(&as_key(&target));
        assert_eq!(iter.valid(), at_or_after.is_some(), "seek {target:?}");
        if let Some(expected) = at_or_after {
            assert_eq!(
                (iter.key().user_key, iter.key().seqno.0),
                (&expected.0[..], expected.1)
            );
        }
        let at_or_before = entries
            .iter()
            .rev()
            .find(|e| cmp_entries(e, &target) != Ordering::Greater);
        iter.seek_for_prev(&as_key(&target));
        assert_eq!(
            iter.valid(),
            at_or_before.is_some(),
            "seek_for_prev {target:?}"
        );
        if let Some(expected) = at_or_before {
            assert_eq!(
                (iter.key().user_key, iter.key().seqno.0),
                (&expected.0[..], expected.1)
            );
        }
    }
    iter.status().unwrap();
}

#[test]
fn empty_table_opens_and_has_nothing() {
    let (table, info) = build(&[], TableOptions::default());
    assert!(info.properties.is_empty());
    assert_eq!(info.properties.data_block_count, 0);
    assert!(!table.may_contain(b"x"));
    assert_eq!(table_get(&table, b"x", u64::MAX), None);
    let mut iter = table.iter();
    iter.seek_to_first();
    assert!(!iter.valid());
    iter.seek_to_last();
    assert!(!iter.valid());
    iter.seek_for_prev(&InternalKeyRef::seek_key(b"x", SeqNo(1)));
    assert!(!iter.valid());
    iter.status().unwrap();
    assert_eq!(table.verify().unwrap().entry_count, 0);
}

#[test]
fn large_values_span_their_own_blocks() {
    let entries: Vec<Entry> = (0..5)
        .map(|i| (vec![b'a' + i], 1, ValueKind::Put, vec![i; 20_000]))
        .collect();
    let (table, info) = build(&entries, TableOptions::default());
    assert_eq!(info.properties.data_block_count, 5);
    assert_eq!(table_get(&table, b"c", 1).unwrap().2, vec![2; 20_000]);
}

#[test]
fn disabled_filter_still_finds_keys() {
    let options = TableOptions {
        bloom_bits_per_key: 0,
        ..TableOptions::default()
    };
    let entries = versioned_entries(50);
    let (table, _) = build(&entries, options);
    assert!(table.may_contain(b"absent"));
    assert_eq!(table_get(&table, b"absent", u64::MAX), None);
    assert_eq!(table_get(&table, b"k0007", u64::MAX).unwrap().0, SeqNo(72));
}

#[test]
#[should_panic(expected = "strictly increasing")]
fn out_of_order_add_panics() {
    let fs = MemFs::new();
    let path = PathBuf::from("/bad.sst");
    let file = fs.open_file(&path, OpenMode::CreateNew).unwrap();
    let mut builder = TableBuilder::new(file, path, TableOptions::default());
    builder
        .add(InternalKeyRef::seek_key(b"b", SeqNo(1)), b"")
        .unwrap();
    builder
        .add(InternalKeyRef::seek_key(b"a", SeqNo(1)), b"")
        .unwrap();
}

/// Random sorted entries: up to 3 versions of up to 60 short user keys.
fn arb_entries() -> impl Strategy<Value = Vec<Entry>> {
    let version = (0u64..50, any::<bool>());
    let versions = prop::collection::btree_map(version, any::<u8>(), 1..4);
    prop::collection::btree_map(prop::collection::vec(0u8..4, 0..6), versions, 0..60).prop_map(
        |map| {
            let mut out: Vec<Entry> = Vec::new();
            for (key, versions) in map {
                for ((seqno, delete), fill) in versions {
                    let (kind, value) = if delete {
                        (ValueKind::Delete, Vec::new())
                    } else {
                        (ValueKind::Put, vec![fill; usize::from(fill % 50)])
                    };
                    out.push((key.clone(), seqno, kind, value));
                }
            }
            out.sort_by(cmp_entries);
            out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
            out
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn table_matches_model(
        entries in arb_entries(),
        block_size_bytes in 1usize..300,
        block_restart_interval in 1usize..5,
        probes in prop::collection::vec((prop::collection::vec(0u8..4, 0..6), 0u64..55), 20),
    ) {
        let options = TableOptions { block_size_bytes, block_restart_interval, bloom_bits_per_key: 10, ..TableOptions::default() };
        let (table, _) = build(&entries, options);
        let mut iter = table.iter();
        iter.seek_to_first();
        prop_assert_eq!(&collect_forward(&mut iter), &entries);
        iter.seek_to_last();
        prop_assert_eq!(&collect_backward(&mut iter), &entries);
        for (user_key, snapshot) in probes {
            prop_assert_eq!(table_get(&table, &user_key, snapshot), model_get(&entries, &user_key, snapshot));
            let target: Entry = (user_key, snapshot, ValueKind::Put, Vec::new());
            let after = entries.iter().position(|e| cmp_entries(e, &target) != Ordering::Less);
            iter.seek(&as_key(&target));
            prop_assert_eq!(&collect_forward(&mut iter), &entries[after.unwrap_or(entries.len())..].to_vec());
            iter.seek_for_prev(&as_key(&target));
            let upto = entries.iter().rposition(|e| cmp_entries(e, &target) != Ordering::Greater);
            prop_assert_eq!(&collect_backward(&mut iter), &entries[..upto.map_or(0, |i| i + 1)].to_vec());
        }
        let report = table.verify().unwrap();
        prop_assert_eq!(report.entry_count, entries.len() as u64);
    }
}
