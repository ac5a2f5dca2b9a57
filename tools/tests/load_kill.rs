//! `varve load` killed with `SIGKILL` at random moments (issue 15): batches
//! from 1 byte to the largest `load` writes (one value of the 8 MiB limit;
//! `load` gathers up to half the changelog's 16 MiB batch limit), then the
//! store is reopened every time. Every load that finished is there whole;
//! of a killed load, a prefix of its batches is there, each batch whole or
//! absent; the store opens after every kill and `varve verify` passes at
//! the end.
//!
//! `VARVE_LOAD_KILLS` sets the number of loads (default 16); the seed is
//! `VARVE_KILL_SEED` (default 7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use varve_db::testing::Rng;
use varve_db::{Db, Options};

/// What `load` counts a record as beyond its key and value, and the bytes
/// it gathers into one batch (see `tools/src/write.rs`).
const RECORD_OVERHEAD_BYTES: usize = 64;

fn batch_budget_bytes() -> usize {
    varve_db::varve_changelog::LogOptions::default().max_batch_size_bytes / 2
}

/// One load: `count` records of `value_bytes` each.
struct Load {
    count: usize,
    value_bytes: usize,
}

fn key(load: usize, j: usize) -> String {
    format!("load{load:03}-{j:06}")
}

fn value(load: usize, j: usize, len: usize) -> Vec<u8> {
    vec![b'a' + ((load + j) % 26) as u8; len]
}

/// The shapes of batch the loads cycle through, from a 1-byte batch to
/// one value of the 8 MiB limit.
fn shape(rng: &mut Rng) -> Load {
    let (count, value_bytes) = match rng.below(6) {
        0 => (1, 1),
        1 => (200 + rng.below(800) as usize, 100),
        2 => (1000 + rng.below(2000) as usize, 1100),
        3 => (4000 + rng.below(6000) as usize, 2000),
        4 => (
            2 + rng.below(3) as usize,
            (1 << 20) + rng.below(3 << 20) as usize,
        ),
        _ => (1 + rng.below(2) as usize, varve_db::MAX_VALUE_SIZE_BYTES),
    };
    Load { count, value_bytes }
}

/// The number of records of each batch `load` writes for `load`.
fn batch_ends(load: &Load) -> Vec<usize> {
    let size = load.value_bytes + key(0, 0).len() + RECORD_OVERHEAD_BYTES;
    let mut ends = Vec::new();
    let mut bytes = 0;
    for j in 0..load.count {
        if bytes > 0 && bytes + size > batch_budget_bytes() {
            ends.push(j);
            bytes = 0;
        }
        bytes += size;
    }
    ends.push(load.count);
    ends
}

fn write_file(path: &Path, n: usize, load: &Load) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for j in 0..load.count {
        let v = String::from_utf8(value(n, j, load.value_bytes)).unwrap();
        writeln!(out, "{{\"key\":\"{}\",\"value\":\"{v}\"}}", key(n, j)).unwrap();
    }
    out.flush().unwrap();
}

/// How many records of `load` number `n` the store holds, checking they
/// are a prefix and hold the right values.
fn present(db: &Db, n: usize, load: &Load) -> usize {
    let mut held = 0;
    for j in 0..load.count {
        if let Some(v) = db.get(key(n, j)).unwrap() {
            assert_eq!(held, j, "load {n}: record {j} present after a missing one");
            assert!(
                v[..] == value(n, j, load.value_bytes)[..],
                "load {n}: record {j} has a wrong value"
            );
            held += 1;
        }
    }
    held
}

/// Checks, cheaply, that load `m` still holds exactly its first `want`
/// records after load `n`: the first and last of them, and not the next.
fn still_there(db: &Db, m: usize, load: &Load, want: usize, n: usize) {
    for j in [0, want.saturating_sub(1)] {
        if j < want {
            let got = db.get(key(m, j)).unwrap();
            assert!(
                got.is_some_and(|v| v[..] == value(m, j, load.value_bytes)[..]),
                "load {m}: record {j} lost or changed after load {n}"
            );
        }
    }
    if want < load.count {
        assert!(
            db.get(key(m, want)).unwrap().is_none(),
            "load {m}: record {want} appeared after load {n}"
        );
    }
}

#[test]
fn killed_loads_keep_whole_batches_and_the_store_always_opens() {
    let loads = std::env::var("VARVE_LOAD_KILLS").map_or(16, |v| v.parse().unwrap());
    let seed = std::env::var("VARVE_KILL_SEED").map_or(7, |v| v.parse().unwrap());
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("load.jsonl");
    // Per load: its shape and how many records it must hold (None: all,
    // it finished; Some(p): the prefix found after it was killed).
    let mut done: Vec<(Load, Option<usize>)> = Vec::new();
    let (mut killed, mut finished, mut big_batches, mut cut_mid_load) = (0, 0, 0, 0);
    for n in 0..loads {
        let load = shape(&mut rng);
        write_file(&file, n, &load);
        let ends = batch_ends(&load);
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_varve"))
            .args(["load", "--create"])
            .arg(&store)
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let kill_at = Duration::from_millis(rng.below(300));
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() >= kill_at {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let complete = match status {
            Some(s) => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    s.success(),
                    "load {n} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                finished += 1;
                true
            }
            None => {
                killed += 1;
                false
            }
        };
        // A load killed before the store was created leaves none (the
        // next `load --create` starts it over).
        if !complete && !store.join("CURRENT").exists() {
            done.push((load, Some(0)));
            continue;
        }
        let opts = Options::default().create_if_missing(false);
        let db = Db::open(&store, opts)
            .unwrap_or_else(|e| panic!("after load {n} (finished: {complete}): reopen: {e}"));
        let held = present(&db, n, &load);
        if complete {
            assert_eq!(held, load.count, "load {n} finished but is not all there");
        } else {
            cut_mid_load += usize::from(held > 0 && held < load.count);
            assert!(
                held == 0 || ends.contains(&held),
                "load {n} was killed with {held} of {} records, not at a batch end {ends:?}",
                load.count
            );
        }
        big_batches += ends
            .iter()
            .zip(std::iter::once(&0).chain(ends.iter()))
            .filter(|(end, start)| (**end - **start) * load.value_bytes > 1 << 20)
            .count();
        for (m, (earlier, want)) in done.iter().enumerate() {
            let want = want.unwrap_or(earlier.count);
            still_there(&db, m, earlier, want, n);
        }
        db.close().unwrap();
        done.push((load, (!complete).then_some(held)));
    }
    let verify = Command::new(env!("CARGO_BIN_EXE_varve"))
        .arg("verify")
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "varve verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    eprintln!(
        "killed_loads: {loads} loads, {killed} killed ({cut_mid_load} between two of their \
         batches), {finished} finished, {big_batches} batches over 1 MiB written or attempted"
    );
}
