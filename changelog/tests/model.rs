//! Model test: random operation sequences against a `Vec` model of the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use varve_changelog::{Log, LogOptions, Record};

#[derive(Clone, Debug)]
enum Op {
    /// Append a batch of (key index, value or tombstone).
    Append(Vec<(u8, Option<u16>)>),
    Read(u16),
    Flush,
    Roll,
    /// Truncate before a fraction (per mille) of the way through the log.
    TruncateBefore(u16),
    Clean,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u8..12, prop::option::weighted(0.85, any::<u16>())), 1..12).prop_map(Op::Append),
        2 => any::<u16>().prop_map(Op::Read),
        1 => Just(Op::Flush),
        1 => Just(Op::Roll),
        1 => (0u16..1000).prop_map(Op::TruncateBefore),
        1 => Just(Op::Clean),
        1 => Just(Op::Reopen),
    ]
}

/// A key and its value (`None` for a tombstone).
type Entry = (Vec<u8>, Option<Vec<u8>>);

/// The model: every offset ever assigned, `None` once removed.
struct Model {
    records: Vec<Option<Entry>>,
    start: u64,
}

fn opts() -> LogOptions {
    LogOptions::default()
        .segment_size_bytes(4096)
        .index_interval_bytes(200)
        .tombstone_retention_ms(i64::MAX as u64)
}

fn check_read(log: &Log, model: &Model, from: u64) {
    let got: Vec<(u64, Vec<u8>, Option<Vec<u8>>)> = log
        .reader(from)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (
                r.offset,
                r.record.key.to_vec(),
                r.record.value.map(|v| v.to_vec()),
            )
        })
        .collect();
    let want: Vec<(u64, Vec<u8>, Option<Vec<u8>>)> = model
        .records
        .iter()
        .enumerate()
        .skip(from as usize)
        .filter_map(|(o, r)| r.clone().map(|(k, v)| (o as u64, k, v)))
        .collect();
    assert_eq!(got, want, "read from {from}");
}

fn apply_clean(log: &Log, model: &mut Model) {
    let active_base = *log.segment_base_offsets().last().unwrap();
    let mut latest = std::collections::HashMap::new();
    for (o, r) in model.records.iter().enumerate().take(active_base as usize) {
        if let Some((k, _)) = r {
            latest.insert(k.clone(), o);
        }
    }
    for (o, r) in model
        .records
        .iter_mut()
        .enumerate()
        .take(active_base as usize)
    {
        if (o as u64) < model.start {
            continue;
        }
        if let Some((k, _)) = r
            && latest.get(k) != Some(&o)
        {
            *r = None;
        }
    }
    log.clean().unwrap();
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Some(Log::open(dir.path(), opts()).unwrap());
    let mut model = Model {
        records: Vec::new(),
        start: 0,
    };
    for op in ops {
        let l = log.as_ref().unwrap();
        match op {
            Op::Append(batch) => {
                let records: Vec<Record> = batch
                    .iter()
                    .map(|(k, v)| {
                        let key = format!("key-{k}").into_bytes();
                        match v {
                            Some(v) => Record::put(key, format!("value-{v}").into_bytes()),
                            None => Record::tombstone(key),
                        }
                    })
                    .collect();
                let info = l.append(&records).unwrap();
                assert_eq!(info.base_offset, model.records.len() as u64);
                for r in records {
                    model
                        .records
                        .push(Some((r.key.to_vec(), r.value.map(|v| v.to_vec()))));
                }
            }
            Op::Read(at) => {
                let end = model.records.len() as u64;
                let from = model.start + u64::from(at) % (end - model.start + 1);
                check_read(l, &model, from);
            }
            Op::Flush => {
                l.sync().unwrap();
                assert_eq!(l.synced_offset(), l.next_offset());
            }
            Op::Roll => l.roll().unwrap(),
            Op::TruncateBefore(per_mille) => {
                let end = model.records.len() as u64;
                let to = model.start + (end - model.start) * u64::from(per_mille) / 1000;
                l.truncate_before(to).unwrap();
                model.start = model.start.max(to);
                assert_eq!(l.log_start_offset(), model.start);
            }
            Op::Clean => apply_clean(l, &mut model),
            Op::Reopen => {
                drop(log.take());
                log = Some(Log::open(dir.path(), opts()).unwrap());
            }
        }
        let l = log.as_ref().unwrap();
        assert_eq!(l.next_offset(), model.records.len() as u64);
        assert_eq!(l.log_start_offset(), model.start);
    }
    let l = log.as_ref().unwrap();
    check_read(l, &model, model.start);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
