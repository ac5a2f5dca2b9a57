//! A stable-toolchain fuzz driver: feeds each target the inputs of its
//! corpus and seeded random mutations of them.
//!
//! ```text
//! cargo run --release --bin run -- [--target NAME] [--iters N] [--seconds S] [--seed X]
//! cargo run --release --bin run -- gen-corpus [TARGET]
//! ```
//!
//! Without `--target` every target runs in turn (`--iters`/`--seconds` per
//! target; defaults 10,000 iterations). An input that panics (or runs over
//! `HANG_SECONDS`, a hang) is saved under
//! `regressions/<target>/` and the driver exits with status 1. It prints
//! one JSON line per target with the executions made. `gen-corpus` writes
//! valid seed inputs (encoded by Varve itself) under `corpus/<target>/`
//! (for `TARGET` alone if given).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use varve_db::testing::{MemFs, Rng};
use varve_db::varve_changelog::fs::FileSystem;
use varve_fuzz::targets::{TARGETS, target};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// One random change (or a few) to `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    for _ in 0..1 + rng.index(4) {
        let len = input.len();
        match rng.index(8) {
            0 if len > 0 => {
                let i = rng.index(len);
                input[i] ^= 1 << rng.index(8);
            }
            1 if len > 0 => {
                let i = rng.index(len);
                input[i] = [0, 0xff, 0x7f, 0x80, 1][rng.index(5)];
            }
            2 if len > 0 => {
                let i = rng.index(len);
                input[i] = rng.next_u64() as u8;
            }
            3 if len > 0 => input.truncate(rng.index(len)),
            4 if len < 1 << 16 => {
                let i = rng.index(len + 1);
                let n = 1 + rng.index(16);
                for _ in 0..n {
                    input.insert(i, rng.next_u64() as u8);
                }
            }
            5 if len > 1 => {
                let i = rng.index(len);
                let n = 1 + rng.index(len - i);
                input.drain(i..i + n.min(16));
            }
            6 if !pool.is_empty() => {
                let other = &pool[rng.index(pool.len())];
                let at = rng.index(len + 1);
                let from = rng.index(other.len() + 1);
                let n = rng.index(other.len() - from + 1).min(256);
                input.splice(at..at, other[from..from + n].iter().copied());
            }
            _ => {
                // Overwrite four bytes with a little-endian integer.
                if len >= 4 {
                    let i = rng.index(len - 3);
                    let v = [0u32, 1, u32::MAX, 0x7fff_ffff, len as u32][rng.index(5)];
                    input[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

/// An input that runs longer than this is a hang: it is saved under
/// `regressions/<target>/` and the driver exits with status 1.
const HANG_SECONDS: u64 = 10;

/// The input being run: its target, start time and bytes (for the
/// watchdog).
static RUNNING: Mutex<Option<(&'static str, Instant, Vec<u8>)>> = Mutex::new(None);

/// Runs `f` on `input` under the watchdog; false if it panicked.
fn run_one(name: &'static str, f: fn(&[u8]), input: &[u8]) -> bool {
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((name, Instant::now(), input.to_vec()));
    let ok = std::panic::catch_unwind(|| f(input)).is_ok();
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = None;
    ok
}

/// Watches the input being run; saves one that hangs and exits.
fn start_watchdog() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((name, started, input)) = running.as_ref()
                && started.elapsed() > Duration::from_secs(HANG_SECONDS)
            {
                let path = save(&root().join("regressions").join(name), "hang", input);
                eprintln!(
                    "{name}: an input ran over {HANG_SECONDS} s; saved to {}",
                    path.display()
                );
                std::process::exit(1);
            }
        }
    });
}

/// Fuzzes one target; returns the executions made, or the panicking input.
fn fuzz(name: &'static str, iters: u64, until: Option<Instant>, seed: u64) -> Result<u64, Vec<u8>> {
    let f = target(name).expect("known target");
    let mut pool = read_dir_files(&root().join("corpus").join(name));
    pool.extend(read_dir_files(&root().join("regressions").join(name)));
    let mut rng = Rng::new(seed ^ (name.len() as u64 * 0x1F3D));
    let mut execs = 0u64;
    for input in &pool {
        execs += 1;
        if !run_one(name, f, input) {
            return Err(input.clone());
        }
    }
    loop {
        let done = match until {
            Some(t) => Instant::now() >= t,
            None => execs >= iters,
        };
        if done {
            return Ok(execs);
        }
        let mut input = if pool.is_empty() || rng.index(10) == 0 {
            let n = rng.index(256);
            (0..n).map(|_| rng.next_u64() as u8).collect()
        } else {
            pool[rng.index(pool.len())].clone()
        };
        mutate(&mut rng, &mut input, &pool);
        execs += 1;
        if !run_one(name, f, &input) {
            return Err(input);
        }
    }
}

fn save(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create corpus directory");
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = dir.join(format!("{name}-{hash:016x}"));
    std::fs::write(&path, data).expect("write input");
    path
}

/// Writes valid inputs for the decoders, made by Varve's own encoders;
/// with `only`, for that target alone (stores are written with the current
/// time, so rewriting every corpus would add new copies of old seeds).
fn gen_corpus(only: Option<&str>) {
    let corpus = root().join("corpus");
    let put = |target: &str, name: &str, data: &[u8]| {
        if only.is_none_or(|o| o == target) {
            save(&corpus.join(target), name, data);
        }
    };
    store_seeds(&put);
    // A small store: changelog segments, a table, a manifest.
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let opts = varve_db::Options::default().block_size_bytes(256);
    let db = varve_db::Db::open("/db", opts.fs(dynfs.clone())).expect("open");
    for i in 0..40u32 {
        let mut b = varve_db::WriteBatch::new();
        b.put(format!("key-{i:03}"), format!("value-{i}"));
        if i % 5 == 0 {
            b.delete(format!("key-{:03}", i / 2));
        }
        db.write(b, varve_db::WriteOptions::default().sync(i % 7 == 0))
            .expect("write");
    }
    db.flush().expect("flush");
    db.changelog()
        .commit_position("shipper", 10)
        .expect("position");
    db.close().expect("close");
    let mut walk = vec![PathBuf::from("/db")];
    while let Some(dir) = walk.pop() {
        for entry in fs.list_dir(&dir).expect("list") {
            let path = dir.join(&entry);
            if fs.kind(&path).expect("kind") == Some(varve_db::varve_changelog::fs::PathKind::Dir) {
                walk.push(path);
                continue;
            }
            let data = fs.read_all(&path).expect("read");
            if entry.ends_with(".log") {
                put("changelog_recovery", "segment", &data);
                // The segment's first batch alone.
                if let Ok(h) = varve_db::varve_changelog::batch::parse_header(&data) {
                    let end = (h.next_offset() as usize).min(data.len());
                    let _ = end;
                }
                put(
                    "changelog_batch_decode",
                    "segment-start",
                    &data[..data.len().min(4096)],
                );
            } else if entry.ends_with("index") {
                let mut input = vec![0xff, 0xff, 40, 0];
                input.extend_from_slice(&data);
                put("changelog_index_decode", &entry.replace('.', "-"), &input);
            } else if entry.ends_with(".sst") {
                put("sst_table_decode", "table", &data);
            } else if entry.starts_with("MANIFEST") {
                put("manifest_decode", "manifest", &data);
            } else if entry == "positions" {
                put("changelog_positions_decode", "positions", &data);
            } else if entry == "log.meta" {
                put("changelog_meta_decode", "meta", &data);
            }
        }
    }
    new_format_seeds(&put);
    // Batches of each shape.
    let records = vec![
        varve_db::varve_changelog::Record::put("k", "v"),
        varve_db::varve_changelog::Record::tombstone("gone"),
        varve_db::varve_changelog::Record::put("h", "v").with_header("x", "y"),
    ];
    let mut buf = Vec::new();
    varve_db::varve_changelog::batch::encode_batch(&mut buf, 77, &records);
    put("changelog_batch_decode", "three-records", &buf);
    let mut positions = BTreeMap::new();
    positions.insert("a".to_owned(), 5);
    positions.insert("standby".to_owned(), 1 << 40);
    put(
        "changelog_positions_decode",
        "two",
        &varve_db::varve_changelog::positions::encode(&positions),
    );
    // A data block.
    let mut builder = varve_db::internals::sst::block::BlockBuilder::new(4);
    for i in 0..20u64 {
        let mut k = Vec::new();
        varve_db::internals::key::InternalKeyRef {
            user_key: format!("key-{i:02}").as_bytes(),
            seqno: varve_db::internals::key::SeqNo(100 - i),
            kind: varve_db::internals::key::ValueKind::Put,
        }
        .encode_into(&mut k);
        builder.add(&k, b"value");
    }
    put("sst_block_decode", "data-block", &builder.finish());
    // Structured targets start from a few arbitrary programs.
    for (target, seeds) in [
        (
            "db_model",
            &[
                &b"\x00\x03ab\x01\x08\x04\x02\x09\x00\x0a\x01"[..],
                b"\x03\x02\x01\x00\x08\x0b\x05\x00\x00\x0a\x02\x07",
            ][..],
        ),
        (
            "changelog_batch_roundtrip",
            &[&b"\x03key\x01\x05value\x00\x10"[..]][..],
        ),
        ("positions_roundtrip", &[&b"\x04name\x10\x00\x03"[..]][..]),
        (
            "version_edit_roundtrip",
            &[
                &b"\x0f\x01\x02\x00\x03\x00\x04\x00\x01\x02\x05\x00\x01\x02ab\x02cd\x05\x09\x01"[..],
                b"\x10\x40\x1f\x05",
            ][..],
        ),
        (
            "sst_block_roundtrip",
            &[&b"\x04\x03abc\x02xy\x03abd\x01z"[..]][..],
        ),
    ] {
        for (i, s) in seeds.iter().enumerate() {
            put(target, &format!("seed{i}"), s);
        }
    }
    eprintln!("corpus written under {}", corpus.display());
}

/// Every file under `dir` in `fs`, named relative to it.
fn store_files(fs: &MemFs, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut walk = vec![PathBuf::new()];
    while let Some(rel) = walk.pop() {
        for entry in fs.list_dir(&dir.join(&rel)).expect("list") {
            let rel = rel.join(&entry);
            let path = dir.join(&rel);
            if fs.kind(&path).expect("kind") == Some(varve_db::varve_changelog::fs::PathKind::Dir) {
                walk.push(rel);
            } else if entry != "LOCK" {
                let name = rel.to_str().expect("utf-8 name").to_owned();
                files.push((name, fs.read_all(&path).expect("read")));
            }
        }
    }
    files.sort();
    files
}

/// Whole stores for `store_open`: tables on two levels with an unflushed
/// changelog tail and a consumer position; a TTL store; a store dropped
/// without closing (its memtable only in the changelog).
fn store_seeds(put: &dyn Fn(&str, &str, &[u8])) {
    for (name, flags) in [
        ("tables-and-tail", 0u8),
        ("ttl", 1),
        ("unclosed", 0),
        ("fixed-checksums", 2),
        ("ttl-fixed-checksums", 3),
    ] {
        let fs = MemFs::new();
        let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
        let opts = varve_db::Options::default()
            .block_size_bytes(256)
            .ttl((flags & 1 == 1).then(|| Duration::from_secs(3600)))
            .clock(Arc::new(varve_db::ManualClock::new(
                varve_fuzz::targets::SEED_CLOCK_MS,
            )));
        let dir = Path::new(varve_fuzz::targets::STORE_DIR);
        let db = varve_db::Db::open(dir, opts.fs(dynfs)).expect("open");
        for round in 0..3u32 {
            let mut b = varve_db::WriteBatch::new();
            for i in 0..20u32 {
                b.put(format!("key-{i:03}"), format!("value-{round}-{i}"));
            }
            b.delete(format!("key-{round:03}"));
            db.write(b, varve_db::WriteOptions::default().sync(true))
                .expect("write");
            if round < 2 {
                db.flush().expect("flush");
            }
            if round == 0 {
                db.compact_range::<&[u8], _>(..).expect("compact");
            }
        }
        db.changelog()
            .commit_position("shipper", 5)
            .expect("position");
        if name == "unclosed" {
            drop(db);
        } else {
            db.close().expect("close");
        }
        let input = varve_fuzz::targets::encode_store(flags, &store_files(&fs, dir));
        put("store_open", name, &input);
    }
}

/// Seeds for the formats added after the first corpus: a `PARTITIONS`
/// file, restore markers, and a TTL store's manifest and TTL edit.
fn new_format_seeds(put: &dyn Fn(&str, &str, &[u8])) {
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    varve_db::PartitionedStore::open("/parts", 3, varve_db::Options::default().fs(dynfs.clone()))
        .expect("open partitioned store")
        .close()
        .expect("close partitioned store");
    let partitions = fs
        .read_all(&Path::new("/parts").join(varve_db::PARTITIONS_FILE))
        .expect("read PARTITIONS");
    put("partitions_decode", "three", &partitions);
    put("restore_marker_decode", "empty", b"");
    put("restore_marker_decode", "dir", b"\x01");
    put("restore_marker_decode", "current", b"\x06MANIFEST-000001\n");
    // Stores without tables, so that opening them needs nothing else.
    for (name, ttl) in [
        ("ttl-store", Some(Duration::from_secs(3600))),
        ("plain-store", None),
    ] {
        let dir = Path::new("/stores").join(name);
        let opts = varve_db::Options::default().ttl(ttl);
        varve_db::Db::open(&dir, opts.fs(dynfs.clone()))
            .expect("open store")
            .close()
            .expect("close store");
        for file in fs.list_dir(&dir).expect("list") {
            if file.starts_with("MANIFEST") {
                let data = fs.read_all(&dir.join(&file)).expect("read");
                put("ttl_manifest_decode", name, &data);
            }
        }
    }
    let edit = varve_db::internals::version::VersionEdit {
        ttl_ms: Some(86_400_000),
        ..varve_db::internals::version::VersionEdit::default()
    };
    put("ttl_manifest_decode", "edit", &edit.encode());
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("gen-corpus") {
        gen_corpus(args.get(1).map(String::as_str));
        return ExitCode::SUCCESS;
    }
    let mut only = None;
    let (mut iters, mut seconds, mut seed) = (10_000u64, None, 1u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().cloned().unwrap_or_default();
        let num = || value.parse::<u64>().unwrap_or(0);
        match flag.as_str() {
            "--target" => only = Some(value.clone()),
            "--iters" => iters = num(),
            "--seconds" => seconds = Some(num()),
            "--seed" => seed = num(),
            _ => {
                eprintln!("unknown flag {flag}");
                return ExitCode::from(2);
            }
        }
    }
    // Keep panics quiet: the driver reports them itself.
    std::panic::set_hook(Box::new(|_| {}));
    start_watchdog();
    for (name, _) in TARGETS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let started = Instant::now();
        let until = seconds.map(|s| started + Duration::from_secs(s));
        match fuzz(name, iters, until, seed) {
            Ok(execs) => println!(
                "{{\"target\": \"{name}\", \"execs\": {execs}, \"seconds\": {:.1}, \"crashes\": 0}}",
                started.elapsed().as_secs_f64()
            ),
            Err(input) => {
                let path = save(&root().join("regressions").join(name), "crash", &input);
                let _ = std::panic::take_hook();
                eprintln!("{name}: an input panicked; saved to {}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
