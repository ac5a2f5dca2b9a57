//! Criterion micro-benchmarks of the engine's building blocks.
//!
//! | group | what |
//! | --- | --- |
//! | `memtable` | `MemTable::insert` of 1,000 random keys, and of 100,000 ascending and 100,000 random keys, into a fresh table; `get` of a present and of an absent key in a table of 100,000 |
//! | `block` | building one 4 KiB data block; seeking a `BlockIter` to a random key in it |
//! | `bloom` | building a 10 bits/key filter over 10,000 keys; probing a present and an absent key in filters of 10,000 (in cache) and 4,000,000 keys |
//! | `table` | `Table::get` of a present and of an absent key in a 100,000-entry table (in memory, through `MemFs`) |
//! | `merge` | reading 100 entries from a random key, and scanning all 40,000, of a store whose keys are spread over four tables and the memtable, so every step merges five children |
//!
//! Keys are 16 bytes and values 100 (the `varve-bench` record shape).
//! The changelog's append (batches of 1 and 100), read and checksum
//! benchmarks are in `changelog.rs`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput};
use varve_bench::runner::{Rng, ValueSource, fill_key};
use varve_bench::{KEY_BYTES, VALUE_BYTES, bench_dir};
use varve_changelog::fs::{FileSystem, MemFs, OpenMode};
use varve_db::internals::key::{InternalKeyRef, SeqNo, ValueKind};
use varve_db::internals::memtable::MemTable;
use varve_db::internals::sst::block::{Block, BlockBuilder, BlockKind, BlockOrigin};
use varve_db::internals::sst::filter::{BloomFilter, FilterBuilder};
use varve_db::internals::sst::format::FORMAT_VERSION;
use varve_db::internals::sst::{BlockIter, Table, TableBuilder, TableOptions};
use varve_db::{Db, Options};

/// Entries in the prefilled memtable and table.
const PREFILLED: u64 = 100_000;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let scratch = bench_dir(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("create scratch dir");
    memtable(&mut c);
    block(&mut c);
    bloom(&mut c);
    table(&mut c);
    merge(&mut c, scratch.path());
    c.final_summary();
}

fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    fill_key(&mut k, i);
    k
}

fn memtable(c: &mut Criterion) {
    let values = ValueSource::new(VALUE_BYTES);
    let mut g = c.benchmark_group("memtable");
    g.throughput(Throughput::Elements(1000));
    let mut rng = Rng::new(1);
    g.bench_function("insert_1000_random", |b| {
        b.iter_batched(
            || MemTable::new(1),
            |table| {
                for seqno in 1..=1000 {
                    let i = rng.below(PREFILLED);
                    table.insert(&key(i), SeqNo(seqno), ValueKind::Put, values.get(i));
                }
                table
            },
            BatchSize::SmallInput,
        );
    });
    g.throughput(Throughput::Elements(PREFILLED));
    g.sample_size(10);
    g.bench_function("insert_100000_ascending", |b| {
        b.iter_batched(
            || MemTable::new(1),
            |table| {
                for i in 0..PREFILLED {
                    table.insert(&key(i), SeqNo(i + 1), ValueKind::Put, values.get(i));
                }
                table
            },
            BatchSize::LargeInput,
        );
    });
    g.bench_function("insert_100000_random", |b| {
        b.iter_batched(
            || MemTable::new(1),
            |table| {
                for seqno in 1..=PREFILLED {
                    let i = rng.below(PREFILLED);
                    table.insert(&key(i), SeqNo(seqno), ValueKind::Put, values.get(i));
                }
                table
            },
            BatchSize::LargeInput,
        );
    });
    g.sample_size(100);
    let table = MemTable::new(1);
    for i in 0..PREFILLED {
        table.insert(&key(i * 2), SeqNo(i + 1), ValueKind::Put, values.get(i));
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_present", |b| {
        b.iter(|| {
            table
                .get(&key(rng.below(PREFILLED) * 2), SeqNo::MAX)
                .map(|e| e.2.len())
        });
    });
    g.bench_function("get_absent", |b| {
        b.iter(|| {
            table
                .get(&key(rng.below(PREFILLED) * 2 + 1), SeqNo::MAX)
                .is_some()
        });
    });
    g.finish();
}

/// The encoded internal keys and values of one 4 KiB data block.
fn block_entries() -> Vec<(Vec<u8>, &'static [u8])> {
    let value: &'static [u8] = &[7u8; VALUE_BYTES];
    let mut out = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < 4096 {
        let mut encoded = Vec::new();
        let k = key(i);
        InternalKeyRef {
            user_key: &k,
            seqno: SeqNo(i + 1),
            kind: ValueKind::Put,
        }
        .encode_into(&mut encoded);
        size += encoded.len() + value.len() + 3;
        out.push((encoded, value));
        i += 1;
    }
    out
}

fn block(c: &mut Criterion) {
    let entries = block_entries();
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("build_4KiB", |b| {
        b.iter(|| {
            let mut builder = BlockBuilder::new(16);
            for (k, v) in &entries {
                builder.add(k, v);
            }
            builder.finish()
        });
    });
    let mut builder = BlockBuilder::new(16);
    for (k, v) in &entries {
        builder.add(k, v);
    }
    let origin = BlockOrigin {
        path: Arc::from(Path::new("bench.sst")),
        offset: 0,
    };
    let block = Arc::new(
        Block::decode(Bytes::from(builder.finish()), BlockKind::Data, origin)
            .expect("decode block"),
    );
    let n = entries.len() as u64;
    let mut rng = Rng::new(2);
    g.throughput(Throughput::Elements(1));
    g.bench_function("seek", |b| {
        b.iter(|| {
            let k = key(rng.below(n));
            let mut iter = BlockIter::new(block.clone());
            iter.seek(&InternalKeyRef::seek_key(&k, SeqNo::MAX));
            iter.valid()
        });
    });
    g.finish();
}

fn bloom(c: &mut Criterion) {
    let mut g = c.benchmark_group("bloom");
    // 10,000 keys: a 12 KiB filter, in the processor's cache; 4,000,000
    // keys: 5 MiB, like the filters of a level of a 500 MB store, mostly
    // not.
    for keys in [10_000u64, 4_000_000] {
        g.throughput(Throughput::Elements(keys));
        if keys == 10_000 {
            g.bench_function("build_10000", |b| {
                b.iter(|| {
                    let mut builder = FilterBuilder::new(10);
                    (0..keys).for_each(|i| builder.add_key(&key(i * 2)));
                    builder.finish()
                });
            });
        }
        let mut builder = FilterBuilder::new(10);
        (0..keys).for_each(|i| builder.add_key(&key(i * 2)));
        let filter = BloomFilter::decode(
            Bytes::from(builder.finish()),
            Path::new("bench.sst"),
            0,
            FORMAT_VERSION,
        )
        .expect("decode filter");
        let mut rng = Rng::new(3);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("probe_present_{keys}"), |b| {
            b.iter(|| filter.may_contain(&key(rng.below(keys) * 2)));
        });
        g.bench_function(format!("probe_absent_{keys}"), |b| {
            b.iter(|| filter.may_contain(&key(rng.below(keys) * 2 + 1)));
        });
    }
    g.finish();
}

fn table(c: &mut Criterion) {
    let fs = MemFs::new();
    let path = PathBuf::from("/000001.sst");
    let file = fs
        .open_file(&path, OpenMode::CreateNew)
        .expect("create table file");
    let mut builder = TableBuilder::new(file.clone(), path.clone(), TableOptions::default());
    let values = ValueSource::new(VALUE_BYTES);
    for i in 0..PREFILLED {
        let k = key(i * 2);
        let entry = InternalKeyRef {
            user_key: &k,
            seqno: SeqNo(i + 1),
            kind: ValueKind::Put,
        };
        builder.add(entry, values.get(i)).expect("add to table");
    }
    builder.finish().expect("finish table");
    let table = Table::open(file, path, 1).expect("open table");
    let mut rng = Rng::new(4);
    let mut g = c.benchmark_group("table");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_present", |b| {
        b.iter(|| {
            table
                .get(&key(rng.below(PREFILLED) * 2), SeqNo::MAX)
                .expect("get")
                .is_some()
        });
    });
    g.bench_function("get_absent", |b| {
        b.iter(|| {
            table
                .get(&key(rng.below(PREFILLED) * 2 + 1), SeqNo::MAX)
                .expect("get")
                .is_some()
        });
    });
    g.finish();
}

fn merge(c: &mut Criterion, scratch: &Path) {
    const KEYS: u64 = 40_000;
    const RUNS: u64 = 5;
    let db = Db::open(scratch.join("merge"), Options::default()).expect("open store");
    let values = ValueSource::new(VALUE_BYTES);
    // Key i goes to run i % 5: four flushed tables, then the memtable.
    for run in 0..RUNS {
        for i in (run..KEYS).step_by(RUNS as usize) {
            db.put(key(i).to_vec(), values.get(i).to_vec())
                .expect("put");
        }
        if run + 1 < RUNS {
            db.flush().expect("flush");
        }
    }
    let mut rng = Rng::new(5);
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(100));
    g.bench_function("range_100", |b| {
        b.iter(|| {
            let start = key(rng.below(KEYS - 100));
            db.range(start..)
                .take(100)
                .map(|kv| kv.expect("read").1.len())
                .sum::<usize>()
        });
    });
    g.throughput(Throughput::Elements(KEYS));
    g.bench_function("scan_all", |b| {
        b.iter(|| black_box(db.iter().map(|kv| kv.expect("read").1.len()).sum::<usize>()));
    });
    g.finish();
    db.close().expect("close store");
}
