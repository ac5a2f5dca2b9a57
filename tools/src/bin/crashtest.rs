//! `crashtest`: real process kills against a Varve store.
//!
//! ```text
//! crashtest run   --dir DIR [--cycles N] [--seconds S] [--seed X] [--kill-ms-max M]
//! crashtest child --dir DIR --seed X --from B [--count N] [--grow-bytes G]
//! crashtest check --dir DIR --seed X [--floor F] [--grow-bytes G]
//! ```
//!
//! `run` (the parent) repeatedly starts `child`, kills it with `SIGKILL` at
//! a random moment, reopens the store itself and verifies it; it stops
//! after `--cycles` kills (default 100) or, if `--seconds` is given, after
//! that much time, and prints a JSON summary. Exit status 1 means a
//! violation was found.
//!
//! The child writes numbered batches with `sync: true`. Batch `b` is a
//! pure function of the seed and `b`: a few puts and deletes over 64 keys
//! plus `__batch = b`. After each acknowledged write the child appends `b`
//! to `DIR/acks` and syncs that file. The verification: the store's
//! `__batch` names the last batch it holds, which is at least the last
//! acknowledged one (nothing acknowledged is missing) and at most one
//! more (the write in flight); and every key holds exactly the value the
//! model gives after batches `0..=__batch` (the contents are a prefix).
//! Every 40 batches the child flushes, so tables are recovered too.
//!
//! `child` alone writes until it is killed or a write fails (or, with
//! `--count`, writes that many batches and closes the store); `check`
//! verifies the store once, as `run` does after each kill (`--floor`: the
//! batches a previous check found), and prints `{"batches": N}`. Tests use
//! the two to drive a writer into a full file system and back.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use varve_db::testing::Rng;
use varve_db::{Db, Options, WriteBatch, WriteOptions};

const KEYS: u64 = 64;
const ACKS_FILE: &str = "acks";
const STORE_DIR: &str = "store";

/// The mutations of batch `b`: `(key, Some(value))` puts, `(key, None)`
/// deletes; with `grow_bytes`, a put of a new key `grow-B` with that many
/// bytes, so the store grows by about that much a batch. The last one is
/// always `__batch = b`.
fn batch_ops(seed: u64, b: u64, grow_bytes: u64) -> Vec<(String, Option<String>)> {
    let mut rng = Rng::new(seed ^ b.wrapping_mul(0xA24B_AED4_963E_E407));
    let n = 1 + rng.below(8);
    let mut ops = Vec::new();
    for _ in 0..n {
        let k = format!("key-{:03}", rng.below(KEYS));
        if rng.below(4) == 0 {
            ops.push((k, None));
        } else {
            let pad = "x".repeat(rng.below(300) as usize);
            ops.push((k, Some(format!("b{b}-{pad}"))));
        }
    }
    if grow_bytes > 0 {
        let value = "g".repeat(usize::try_from(grow_bytes).unwrap_or(0));
        ops.push((format!("grow-{b:012}"), Some(value)));
    }
    ops.push(("__batch".to_owned(), Some(b.to_string())));
    ops
}

fn options() -> Options {
    Options::default()
        .memtable_size_bytes(64 << 10)
        .changelog_segment_size_bytes(64 << 10)
}

struct Args {
    dir: PathBuf,
    seed: u64,
    from: u64,
    cycles: u64,
    seconds: Option<u64>,
    kill_ms_max: u64,
    count: Option<u64>,
    floor: u64,
    grow_bytes: u64,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::new(),
        seed: 1,
        from: 0,
        cycles: 100,
        seconds: None,
        kill_ms_max: 150,
        count: None,
        floor: 0,
        grow_bytes: 0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(value),
            "--seed" => a.seed = num()?,
            "--from" => a.from = num()?,
            "--cycles" => a.cycles = num()?,
            "--seconds" => a.seconds = Some(num()?),
            "--kill-ms-max" => a.kill_ms_max = num()?.max(1),
            "--count" => a.count = Some(num()?),
            "--floor" => a.floor = num()?,
            "--grow-bytes" => a.grow_bytes = num()?.min(1 << 20),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.dir.as_os_str().is_empty() {
        return Err("--dir is required".into());
    }
    Ok(a)
}

/// The child: writes batches from `from` on until killed.
fn child(a: &Args) -> Result<(), String> {
    let db = Db::open(a.dir.join(STORE_DIR), options()).map_err(|e| e.to_string())?;
    let mut acks = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.dir.join(ACKS_FILE))
        .map_err(|e| e.to_string())?;
    let end = a.count.map_or(u64::MAX, |n| a.from.saturating_add(n));
    for b in a.from..end {
        let mut batch = WriteBatch::new();
        for (k, v) in batch_ops(a.seed, b, a.grow_bytes) {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            };
        }
        db.write(batch, WriteOptions::default().sync(true))
            .map_err(|e| format!("write {b}: {e}"))?;
        acks.write_all(&b.to_le_bytes())
            .and_then(|()| acks.sync_data())
            .map_err(|e| format!("ack {b}: {e}"))?;
        if b % 40 == 39 {
            db.flush().map_err(|e| format!("flush: {e}"))?;
        }
    }
    db.close().map_err(|e| format!("close: {e}"))
}

/// One verification of the store, as `run` makes after each kill.
fn check(a: &Args) -> Result<(), String> {
    let mut model = Model {
        seed: a.seed,
        grow_bytes: a.grow_bytes,
        applied: 0,
        state: BTreeMap::new(),
    };
    let held = verify(a, &mut model, a.floor)?;
    println!("{{\"batches\": {held}}}");
    Ok(())
}

/// The last batch number in the acks file, if any.
fn last_ack(dir: &Path) -> Result<Option<u64>, String> {
    let bytes = match std::fs::read(dir.join(ACKS_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let whole = bytes.len() / 8 * 8;
    Ok(bytes[..whole]
        .chunks_exact(8)
        .last()
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())))
}

/// The parent's model: the state after batches `0..applied`.
struct Model {
    seed: u64,
    grow_bytes: u64,
    applied: u64,
    state: BTreeMap<String, String>,
}

impl Model {
    fn advance_to(&mut self, applied: u64) {
        while self.applied < applied {
            for (k, v) in batch_ops(self.seed, self.applied, self.grow_bytes) {
                match v {
                    Some(v) => self.state.insert(k, v),
                    None => self.state.remove(&k),
                };
            }
            self.applied += 1;
        }
    }
}

/// Reopens the store, checks it, and returns the number of batches it
/// holds.
/// `floor` is the number of batches the previous verification found: they
/// were in the store then, so they count as acknowledged even if the
/// child was killed before it recorded the last one in the acks file.
fn verify(a: &Args, model: &mut Model, floor: u64) -> Result<u64, String> {
    let acked = last_ack(&a.dir)?;
    let db = Db::open(a.dir.join(STORE_DIR), options()).map_err(|e| format!("reopen: {e}"))?;
    let mut got = BTreeMap::new();
    for kv in db.iter() {
        let (k, v) = kv.map_err(|e| format!("scan: {e}"))?;
        let k = String::from_utf8_lossy(&k).into_owned();
        got.insert(k, String::from_utf8_lossy(&v).into_owned());
    }
    let held = match got.get("__batch") {
        Some(b) => b.parse::<u64>().map_err(|e| format!("__batch: {e}"))? + 1,
        None => 0,
    };
    let acked_count = acked.map_or(0, |b| b + 1).max(floor);
    if held < acked_count {
        return Err(format!(
            "acknowledged batch {} is missing: the store holds batches 0..{held}",
            acked_count - 1
        ));
    }
    if held > acked_count + 1 {
        return Err(format!(
            "the store holds batches 0..{held} but only 0..{acked_count} were acknowledged \
             and one more was in flight"
        ));
    }
    if held < model.applied {
        return Err(format!(
            "the store went back from {} to {held} batches",
            model.applied
        ));
    }
    model.advance_to(held);
    if got != model.state {
        let diff: Vec<_> = model
            .state
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .chain(
                got.keys()
                    .filter(|k| !model.state.contains_key(*k))
                    .cloned(),
            )
            .take(5)
            .collect();
        return Err(format!(
            "the store is not the prefix of {held} batches; keys differing: {diff:?}"
        ));
    }
    for (k, v) in &model.state {
        let have = db.get(k).map_err(|e| format!("get: {e}"))?;
        if have.as_deref() != Some(v.as_bytes()) {
            return Err(format!("get({k}) disagrees with the scan"));
        }
    }
    db.close().map_err(|e| format!("close: {e}"))?;
    Ok(held)
}

fn run(a: &Args) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&a.dir).map_err(|e| e.to_string())?;
    let mut model = Model {
        seed: a.seed,
        grow_bytes: a.grow_bytes,
        applied: 0,
        state: BTreeMap::new(),
    };
    let mut rng = Rng::new(a.seed.wrapping_mul(31));
    let started = Instant::now();
    let deadline = a.seconds.map(|s| started + Duration::from_secs(s));
    let mut cycles = 0u64;
    let mut held = verify(a, &mut model, 0)?;
    loop {
        let done = match deadline {
            Some(d) => Instant::now() >= d,
            None => cycles >= a.cycles,
        };
        if done {
            break;
        }
        let mut child = Command::new(&exe)
            .arg("child")
            .args(["--dir".as_ref(), a.dir.as_os_str()])
            .args(["--seed", &a.seed.to_string(), "--from", &held.to_string()])
            .args(["--grow-bytes", &a.grow_bytes.to_string()])
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        std::thread::sleep(Duration::from_millis(1 + rng.below(a.kill_ms_max)));
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            let status = child.wait().map_err(|e| e.to_string())?;
            return Err(format!("the child exited before it was killed: {status}"));
        }
        child.kill().map_err(|e| format!("kill: {e}"))?;
        child.wait().map_err(|e| e.to_string())?;
        cycles += 1;
        held = verify(a, &mut model, held).map_err(|e| format!("after kill {cycles}: {e}"))?;
    }
    println!(
        "{{\"kill_cycles\": {cycles}, \"batches_verified\": {held}, \"violations\": 0, \"seconds\": {:.1}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        eprintln!("usage: crashtest run|child|check --dir DIR [flags]");
        return ExitCode::from(2);
    };
    let parsed = match parse_args(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crashtest: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match mode.as_str() {
        "run" => run(&parsed),
        "child" => child(&parsed),
        "check" => check(&parsed),
        other => Err(format!("unknown mode {other}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "crashtest {mode}: VIOLATION or failure (seed {}): {e}",
                parsed.seed
            );
            ExitCode::FAILURE
        }
    }
}
