//! The keep/drop rules without files: table-driven cases, then a model
//! test checking that no reader at or above the oldest snapshot can tell
//! the output from the input.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::{DropRules, Entry, Retention};
use crate::error::{Error, Result};
use crate::key::{SeqNo, ValueKind};
use crate::ttl::{Expiry, encode_timestamped};

fn put(key: &str, seqno: u64, value: &str) -> Entry {
    Entry {
        user_key: Bytes::copy_from_slice(key.as_bytes()),
        seqno: SeqNo(seqno),
        kind: ValueKind::Put,
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn del(key: &str, seqno: u64) -> Entry {
    Entry {
        user_key: Bytes::copy_from_slice(key.as_bytes()),
        seqno: SeqNo(seqno),
        kind: ValueKind::Delete,
        value: Bytes::new(),
    }
}

/// A put of a TTL store written at `write_time_ms`.
fn ttl_put(key: &str, seqno: u64, write_time_ms: u64) -> Entry {
    let mut stored = Vec::new();
    encode_timestamped(write_time_ms, b"v", &mut stored);
    Entry {
        value: Bytes::from(stored),
        ..put(key, seqno, "")
    }
}

/// `(key, seqno, kind)` of each entry, for short expectations.
fn shape(entries: &[Entry]) -> Vec<(String, u64, ValueKind)> {
    entries
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.user_key).into_owned(),
                e.seqno.0,
                e.kind,
            )
        })
        .collect()
}

fn kept(key: &str, seqno: u64, kind: ValueKind) -> (String, u64, ValueKind) {
    (key.to_owned(), seqno, kind)
}

/// Runs the stream over `input` with nothing below the output unless
/// `below` says so; returns what it kept and its expired count.
fn run(input: Vec<Entry>, oldest: u64, expiry: Option<Expiry>, below: bool) -> (Vec<Entry>, u64) {
    let rules = Retention {
        oldest_snapshot: SeqNo(oldest),
        expiry,
        may_exist_below: |_: &[u8]| below,
    };
    let mut stream = DropRules::new(input.into_iter().map(Ok), rules);
    let out: Vec<Entry> = stream.by_ref().map(|e| e.unwrap()).collect();
    (out, stream.expired_count())
}

#[test]
fn empty_input_yields_nothing() {
    assert!(run(Vec::new(), 10, None, false).0.is_empty());
    assert!(run(Vec::new(), 0, None, true).0.is_empty());
}

#[test]
fn table_of_cases() {
    use ValueKind::{Delete, Put};
    struct Case {
        name: &'static str,
        input: Vec<Entry>,
        oldest: u64,
        below: bool,
        expect: Vec<(String, u64, ValueKind)>,
    }
    let cases = [
        Case {
            name: "no reader below the versions: only the newest stays",
            input: vec![put("k", 9, "c"), put("k", 5, "b"), put("k", 2, "a")],
            oldest: 20,
            below: false,
            expect: vec![kept("k", 9, Put)],
        },
        Case {
            name: "versions above the oldest snapshot all stay, plus the newest at or below it",
            input: vec![
                put("k", 10, "e"),
                put("k", 8, "d"),
                put("k", 6, "c"),
                put("k", 4, "b"),
                put("k", 2, "a"),
            ],
            oldest: 5,
            below: false,
            expect: vec![
                kept("k", 10, Put),
                kept("k", 8, Put),
                kept("k", 6, Put),
                kept("k", 4, Put),
            ],
        },
        Case {
            name: "a snapshot exactly at a version keeps that version and drops the older",
            input: vec![put("k", 7, "b"), put("k", 4, "a"), put("k", 1, "z")],
            oldest: 4,
            below: false,
            expect: vec![kept("k", 7, Put), kept("k", 4, Put)],
        },
        Case {
            name: "oldest snapshot before every version: everything stays",
            input: vec![put("k", 7, "b"), del("k", 4), put("k", 3, "a")],
            oldest: 2,
            below: false,
            expect: vec![kept("k", 7, Put), kept("k", 4, Delete), kept("k", 3, Put)],
        },
        Case {
            name: "keys are independent",
            input: vec![
                put("a", 3, "x"),
                put("a", 1, "w"),
                put("b", 2, "y"),
                put("c", 9, "z"),
            ],
            oldest: 5,
            below: false,
            expect: vec![kept("a", 3, Put), kept("b", 2, Put), kept("c", 9, Put)],
        },
        Case {
            name: "a tombstone at the bottom, seen by every reader, goes with what it hides",
            input: vec![del("k", 6), put("k", 3, "a"), put("l", 1, "b")],
            oldest: 10,
            below: true,
            expect: vec![kept("k", 6, Delete), kept("l", 1, Put)],
        },
        Case {
            name: "a tombstone at the bottommost level goes",
            input: vec![del("k", 6), put("k", 3, "a"), put("l", 1, "b")],
            oldest: 10,
            below: false,
            expect: vec![kept("l", 1, Put)],
        },
        Case {
            name: "a tombstone newer than the oldest snapshot stays even at the bottom",
            input: vec![del("k", 6), put("k", 3, "a")],
            oldest: 4,
            below: false,
            expect: vec![kept("k", 6, Delete), kept("k", 3, Put)],
        },
        Case {
            name: "a hidden tombstone goes, a newer put stays",
            input: vec![put("k", 8, "b"), del("k", 6), put("k", 3, "a")],
            oldest: 10,
            below: true,
            expect: vec![kept("k", 8, Put)],
        },
    ];
    for case in cases {
        let (out, expired) = run(case.input, case.oldest, None, case.below);
        assert_eq!(shape(&out), case.expect, "{}", case.name);
        assert_eq!(expired, 0, "{}", case.name);
    }
}

#[test]
fn values_pass_through_unchanged() {
    let (out, _) = run(vec![put("k", 9, "new"), put("k", 2, "old")], 5, None, false);
    assert_eq!(out, vec![put("k", 9, "new"), put("k", 2, "old")]);
}

#[test]
fn ttl_expiry_drops_or_turns_puts_into_tombstones() {
    use ValueKind::{Delete, Put};
    let expiry = Some(Expiry {
        ttl_ms: 100,
        now_ms: 1_000,
    });
    // Expired (written at 800), at the bottom and seen by every reader: gone.
    let (out, expired) = run(vec![ttl_put("k", 3, 800)], 10, expiry, false);
    assert_eq!((shape(&out), expired), (vec![], 1));
    // Something older may lie below: a tombstone hides it.
    let (out, expired) = run(vec![ttl_put("k", 3, 800)], 10, expiry, true);
    assert_eq!((shape(&out), expired), (vec![kept("k", 3, Delete)], 1));
    assert!(out[0].value.is_empty());
    // Newer than the oldest snapshot: a tombstone, so that the snapshot
    // does not see the older version below it.
    let (out, expired) = run(
        vec![ttl_put("k", 7, 800), ttl_put("k", 3, 990)],
        5,
        expiry,
        false,
    );
    assert_eq!(
        (shape(&out), expired),
        (vec![kept("k", 7, Delete), kept("k", 3, Put)], 1)
    );
    // Exactly the TTL old: live.
    let (out, expired) = run(vec![ttl_put("k", 3, 900)], 10, expiry, false);
    assert_eq!((shape(&out), expired), (vec![kept("k", 3, Put)], 0));
    // Hidden expired versions are dropped as hidden, not counted.
    let (out, expired) = run(
        vec![ttl_put("k", 9, 990), ttl_put("k", 3, 800)],
        10,
        expiry,
        false,
    );
    assert_eq!((shape(&out), expired), (vec![kept("k", 9, Put)], 0));
    // A damaged value (too short for its write time) is kept for reads to
    // report.
    let (out, expired) = run(vec![put("k", 3, "abc")], 10, expiry, false);
    assert_eq!((shape(&out), expired), (vec![kept("k", 3, Put)], 0));
    // Without a TTL rule nothing expires.
    let (out, expired) = run(vec![ttl_put("k", 3, 0)], 10, None, false);
    assert_eq!((shape(&out), expired), (vec![kept("k", 3, Put)], 0));
}

#[test]
fn flush_rules_keep_every_tombstone() {
    use ValueKind::{Delete, Put};
    // What flush passes: everything may exist below, no TTL rule.
    let (out, _) = run(
        vec![
            del("a", 9),
            put("a", 4, "x"),
            put("b", 8, "y"),
            put("b", 7, "z"),
            del("c", 2),
        ],
        20,
        None,
        true,
    );
    assert_eq!(
        shape(&out),
        vec![
            kept("a", 9, Delete),
            kept("b", 8, Put),
            kept("c", 2, Delete)
        ]
    );
}

#[test]
fn the_predicate_is_asked_about_the_right_keys_only() {
    let mut asked = Vec::new();
    let rules = Retention {
        oldest_snapshot: SeqNo(10),
        expiry: None,
        may_exist_below: |k: &[u8]| {
            asked.push(k.to_vec());
            k == b"b"
        },
    };
    let input = vec![put("a", 5, "x"), del("b", 4), del("c", 3), del("d", 12)];
    let out: Vec<Entry> = DropRules::new(input.into_iter().map(Ok), rules)
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(
        shape(&out),
        vec![
            kept("a", 5, ValueKind::Put),
            kept("b", 4, ValueKind::Delete),
            kept("d", 12, ValueKind::Delete)
        ]
    );
    assert_eq!(asked, vec![b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn input_errors_are_passed_on_and_end_the_stream() {
    let input: Vec<Result<Entry>> = vec![
        Ok(put("a", 5, "x")),
        Ok(put("a", 4, "dropped")),
        Err(Error::Closed),
        Ok(put("b", 3, "never read")),
    ];
    let rules = Retention {
        oldest_snapshot: SeqNo(10),
        expiry: None,
        may_exist_below: |_: &[u8]| false,
    };
    let mut stream = DropRules::new(input.into_iter(), rules);
    assert_eq!(stream.next().unwrap().unwrap(), put("a", 5, "x"));
    assert!(matches!(stream.next(), Some(Err(Error::Closed))));
    assert!(stream.next().is_none());
    assert!(stream.next().is_none());
}

// ---- model ---------------------------------------------------------------

/// What a reader at `at` sees of `key` in `entries` (newest first per key)
/// and then in `below`, with `expiry` applied.
fn read(
    entries: &[Entry],
    below: &BTreeMap<Bytes, Entry>,
    key: &[u8],
    at: SeqNo,
    expiry: Option<Expiry>,
) -> Option<Bytes> {
    let found = entries
        .iter()
        .find(|e| e.user_key == key && e.seqno <= at)
        .or_else(|| below.get(key).filter(|e| e.seqno <= at))?;
    match found.kind {
        ValueKind::Delete => None,
        ValueKind::Put if super::expired(expiry, &found.value) => None,
        ValueKind::Put => Some(found.value.clone()),
    }
}

/// A key, what lies below the output for it (0: nothing, and the stream is
/// told so; 1: nothing, but the stream is told something may; 2: an older
/// put), and its versions as (seqno, is a delete, write time).
type KeyCase = (u8, u8, Vec<(u64, bool, u64)>);

fn key_cases() -> impl Strategy<Value = Vec<KeyCase>> {
    prop::collection::vec(
        (
            0u8..6,
            0u8..3,
            prop::collection::vec((1u64..60, any::<bool>(), 0u64..40), 1..6),
        ),
        0..6,
    )
}

proptest! {
    #[test]
    fn no_reader_at_or_above_the_oldest_snapshot_sees_a_difference(
        cases in key_cases(),
        snapshots in prop::collection::btree_set(0u64..70, 0..4),
        latest in 0u64..70,
        ttl in prop::option::of((0u64..20, 0u64..50)),
    ) {
        // Build the input: distinct seqnos per key, merged order.
        let mut versions: BTreeMap<(Bytes, std::cmp::Reverse<u64>), Entry> = BTreeMap::new();
        let mut below: BTreeMap<Bytes, Entry> = BTreeMap::new();
        let mut told_below: Vec<Bytes> = Vec::new();
        for (k, under, list) in &cases {
            let key = Bytes::from(vec![b'a' + k]);
            for &(seqno, is_delete, write_time_ms) in list {
                let mut stored = Vec::new();
                encode_timestamped(write_time_ms, &[*k, seqno as u8], &mut stored);
                let entry = Entry {
                    user_key: key.clone(),
                    seqno: SeqNo(seqno),
                    kind: if is_delete { ValueKind::Delete } else { ValueKind::Put },
                    value: if is_delete { Bytes::new() } else { Bytes::from(stored) },
                };
                versions.insert((key.clone(), std::cmp::Reverse(seqno)), entry);
            }
            if *under > 0 {
                told_below.push(key.clone());
            }
            if *under == 2 {
                let mut stored = Vec::new();
                encode_timestamped(u64::MAX / 2, b"below", &mut stored);
                below.insert(key.clone(), Entry {
                    user_key: key.clone(),
                    seqno: SeqNo(0),
                    kind: ValueKind::Put,
                    value: Bytes::from(stored),
                });
            }
        }
        let input: Vec<Entry> = versions.into_values().collect();
        let oldest = snapshots.iter().copied().chain([latest]).min().unwrap_or(latest);
        let expiry = ttl.map(|(ttl_ms, now_ms)| Expiry { ttl_ms, now_ms });
        let rules = Retention {
            oldest_snapshot: SeqNo(oldest),
            expiry,
            may_exist_below: |k: &[u8]| told_below.iter().any(|b| b == k),
        };
        let output: Vec<Entry> = DropRules::new(input.clone().into_iter().map(Ok), rules)
            .collect::<Result<_>>()
            .unwrap();

        // The output is in order and comes from the input (or is a
        // tombstone in an input entry's place).
        for pair in output.windows(2) {
            prop_assert!(pair[0].key().cmp_internal(&pair[1].key()).is_lt());
        }
        for e in &output {
            prop_assert!(input.iter().any(|i| i.user_key == e.user_key && i.seqno == e.seqno
                && (i == e || e.kind == ValueKind::Delete)));
        }
        // Every live snapshot and the latest read, and indeed every read at
        // or above the oldest snapshot, sees the same as before.
        let readers = snapshots.iter().copied().chain([latest]).chain(oldest..=70);
        for at in readers {
            for k in 0u8..6 {
                let key = [b'a' + k];
                prop_assert_eq!(
                    read(&output, &below, &key, SeqNo(at), expiry),
                    read(&input, &below, &key, SeqNo(at), expiry),
                    "key {} read at {} (oldest {})", k, at, oldest
                );
            }
        }
    }
}
