//! `varve restore` killed with `SIGKILL` at random moments (issue 19,
//! "Resumable"): before it has written anything, while it loads, during
//! its final compaction, around its end, and sometimes not at all. After
//! each kill a store holding the `RESTORING` marker is refused by
//! `Db::open` (`Error::RestoreIncomplete`); the restore is run again until
//! it finishes, and the finished store equals the source key by key and
//! passes `varve verify`. Every run prints its progress with
//! `--progress-json`, which measures the work each resume redoes: the
//! records the killed run had applied (the highest `offset` it printed)
//! that the next run applies again (from its `start_offset`).
//!
//! The source is a store of about 40 MB in 1 MiB changelog segments:
//! keys in random order with overwrites and deletes, values from empty to
//! a few near the 8 MiB limit. `VARVE_RESTORE_KILLS` sets the number of
//! runs that are given a moment to be killed at (default 40); the seed is
//! `VARVE_KILL_SEED` (default 19).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use varve_db::testing::{Rng, read_all};
use varve_db::{ChangelogRetention, Db, Error, Options, WriteBatch, WriteOptions};

/// The `--memory-budget` the restores run with.
const BUDGET: &str = "24M";
const BUDGET_BYTES: u64 = 24 << 20;
/// What a restore's budget keeps for the poll and the table builder; each
/// of the two runs it holds gets half of the rest (`RestoreOptions::
/// memory_budget_bytes`, `docs/STATE.md`).
const RESERVED_BYTES: u64 = 16 << 20;
/// The run bound: a run is handed to the writer, and becomes the next
/// checkpoint, once its size reaches this (4 MiB).
const RUN_BOUND_BYTES: u64 = (BUDGET_BYTES - RESERVED_BYTES) / 2;
/// What a run counts a record as beyond its key and value bytes
/// (`docs/STATE.md`: 80-byte entry, 32-byte sort slot, 16 bytes framing).
const RECORD_OVERHEAD_BYTES: u64 = 128;

/// The source: its live contents, and per offset the key and value bytes
/// of its record.
struct Source {
    model: BTreeMap<Vec<u8>, Vec<u8>>,
    record_bytes: Vec<u64>,
}

impl Source {
    /// What the records of `from..to` take in a run.
    fn footprint(&self, from: u64, to: u64) -> u64 {
        let (from, to) = (from as usize, (to as usize).min(self.record_bytes.len()));
        self.record_bytes[from.min(to)..to]
            .iter()
            .map(|b| b + RECORD_OVERHEAD_BYTES)
            .sum()
    }

    /// The key and value bytes of the records of `from..to`.
    fn bytes(&self, from: u64, to: u64) -> u64 {
        let (from, to) = (from as usize, (to as usize).min(self.record_bytes.len()));
        self.record_bytes[from.min(to)..to].iter().sum()
    }

    /// The most the records of `from..to` may take in runs when they
    /// are what a restore holds past its last installed checkpoint: the
    /// run the writer thread is writing was handed over once its size
    /// reached the run bound, so it takes less than the bound plus its
    /// last record; the run being gathered is below the bound whenever
    /// progress is printed (it is handed over as soon as it reaches it).
    /// Two runs: what the memory budget holds.
    fn two_runs(&self, from: u64, to: u64) -> u64 {
        let (from, to) = (from as usize, (to as usize).min(self.record_bytes.len()));
        let largest = self.record_bytes[from.min(to)..to].iter().max();
        2 * RUN_BOUND_BYTES + largest.map_or(0, |b| b + RECORD_OVERHEAD_BYTES)
    }
}

/// A key of the 3,000 the source writes, of 5 to about 40 bytes.
fn key(id: u64) -> Vec<u8> {
    const PREFIXES: [&str; 4] = ["u:", "order:", "session/", "cart-item:"];
    let tail = "-x".repeat((id % 13) as usize);
    format!("{}{id:06}{tail}", PREFIXES[(id % 4) as usize]).into_bytes()
}

/// A value length: mostly small, some of kilobytes to a megabyte.
fn value_len(rng: &mut Rng) -> usize {
    let n = match rng.below(10_000) {
        0..500 => 0,
        500..6500 => rng.range(1, 100),
        6500..9000 => rng.range(100, 1100),
        9000..9900 => rng.range(1 << 10, 16 << 10),
        9900..9990 => rng.range(16 << 10, 256 << 10),
        _ => rng.range(256 << 10, 1 << 20),
    };
    n as usize
}

/// The key of write `i` of a source written in key order: each key above
/// the one before.
fn key_in_order(i: u64) -> Vec<u8> {
    format!("order:{i:06}-{}", "x".repeat((i % 13) as usize)).into_bytes()
}

/// Writes the source store: 5,000 writes, 8 % of them deletes, some in
/// batches of up to 30, six values of 1 to 3 MiB and two within 4 KiB of
/// the value limit, at random places. Keys are drawn at random from 3,000,
/// or with `in_order` each above the one before (a restore then streams
/// its runs into open tables instead of sorting them).
fn write_source(dir: &Path, rng: &mut Rng, in_order: bool) -> Source {
    const WRITES: u64 = 5000;
    let opts = Options::default()
        .memtable_size_bytes(8 << 20)
        .changelog_segment_size_bytes(1 << 20)
        .changelog_retention(ChangelogRetention::UntilShipped);
    let db = Db::open(dir, opts).unwrap();
    db.changelog().commit_position("keep-all", 0).unwrap();
    let mut large: BTreeMap<u64, usize> = BTreeMap::new();
    for i in 0..8 {
        let len = if i < 2 {
            varve_db::MAX_VALUE_SIZE_BYTES - rng.below(4096) as usize
        } else {
            (1 << 20) + rng.below(2 << 20) as usize
        };
        large.insert(rng.below(WRITES), len);
    }
    let mut model = BTreeMap::new();
    let mut record_bytes = Vec::new();
    let mut batch = WriteBatch::new();
    let (mut in_batch, mut batch_bytes) = (0, 0);
    for i in 0..WRITES {
        let k = if in_order {
            key_in_order(i)
        } else {
            key(rng.below(3000))
        };
        let value = if rng.chance(8) {
            None
        } else {
            let mut v = vec![0; large.get(&i).copied().unwrap_or_else(|| value_len(rng))];
            rng.fill(&mut v);
            Some(v)
        };
        let size = k.len() + value.as_ref().map_or(0, Vec::len);
        record_bytes.push(size as u64);
        batch_bytes += size;
        match value {
            Some(v) => {
                batch.put(k.clone(), v.clone());
                model.insert(k, v);
            }
            None => {
                batch.delete(k.clone());
                model.remove(&k);
            }
        }
        in_batch += 1;
        // The large values go alone; a batch stays far below the
        // changelog's 16 MiB batch limit.
        let large_next = large.contains_key(&i) || large.contains_key(&(i + 1));
        if large_next || in_batch >= 30 || batch_bytes >= 2 << 20 || rng.chance(70) {
            db.write(std::mem::take(&mut batch), WriteOptions::default())
                .unwrap();
            (in_batch, batch_bytes) = (0, 0);
        }
    }
    if in_batch > 0 {
        db.write(batch, WriteOptions::default()).unwrap();
    }
    assert_eq!(db.changelog().next_offset(), WRITES, "one offset a record");
    // The model is the source store's own contents.
    let contents: BTreeMap<Vec<u8>, Vec<u8>> = read_all(&db)
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    assert!(
        contents == model,
        "the source store differs from its writes"
    );
    db.close().unwrap();
    Source {
        model: contents,
        record_bytes,
    }
}

/// What one run of `varve restore` printed.
#[derive(Default)]
struct Printed {
    /// The `start` line's `start_offset`.
    start: Option<u64>,
    end_offset: Option<u64>,
    /// `(offset, flushed_offset, elapsed_ms)` of each `progress` line.
    progress: Vec<(u64, u64, u64)>,
    /// The `--json` report on stdout, if it got that far.
    report: Option<Value>,
}

impl Printed {
    fn parse(stdout: &str, stderr: &str) -> Printed {
        let mut printed = Printed::default();
        let lines: Vec<&str> = stderr.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                // A line cut by the kill can only be the last.
                assert_eq!(i + 1, lines.len(), "not a JSON line: {line:?}\n{stderr}");
                continue;
            };
            let at = |name: &str| v[name].as_u64().unwrap();
            match v["event"].as_str().unwrap() {
                "start" => {
                    printed.start = Some(at("start_offset"));
                    printed.end_offset = Some(at("end_offset"));
                }
                "progress" => {
                    printed
                        .progress
                        .push((at("offset"), at("flushed_offset"), at("elapsed_ms")));
                }
                "end" => {}
                other => panic!("unknown event {other:?}"),
            }
        }
        printed.report = stdout
            .lines()
            .next()
            .map(|l| serde_json::from_str(l).unwrap());
        printed
    }

    /// The highest offset and checkpoint printed.
    fn reached(&self) -> Option<(u64, u64)> {
        self.progress
            .last()
            .map(|&(offset, flushed, _)| (offset, flushed))
    }

    /// The checkpoints the run installed, as its lines showed them (not
    /// the one it started at).
    fn checkpoints(&self) -> Vec<u64> {
        let mut installed: Vec<u64> = self.progress.iter().map(|p| p.1).collect();
        installed.dedup();
        installed.retain(|&c| self.start.is_none_or(|s| c > s));
        installed
    }

    /// Whether the load was done (the last run installed): it was killed
    /// in the final compaction or later.
    fn loaded(&self) -> bool {
        self.end_offset
            .is_some_and(|end| self.reached().is_some_and(|(_, f)| f == end))
    }
}

/// Runs `varve restore` into `new`, killing it after `kill_at` (if it has
/// not finished by then). Returns whether it finished, and what it printed.
fn restore(src: &Path, new: &Path, kill_at: Option<Duration>) -> (bool, Printed) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_varve"))
        .args([
            "restore",
            "--json",
            "--progress-json",
            "--memory-budget",
            BUDGET,
        ])
        .arg(src)
        .arg(new)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let finished = loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "restore failed: {}",
                errors.join().unwrap()
            );
            break true;
        }
        if kill_at.is_some_and(|at| started.elapsed() >= at) {
            child.kill().unwrap();
            child.wait().unwrap();
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let err = errors.join().unwrap();
    (finished, Printed::parse(&out, &err))
}

/// Checks the finished store in `new` against the source, key by key, and
/// with `varve verify`.
fn check_restored(new: &Path, source: &Source) {
    let db = Db::open(new, Options::default().create_if_missing(false)).unwrap();
    let restored = read_all(&db);
    let mut want = source.model.iter();
    for (k, v) in &restored {
        match want.next() {
            Some((wk, wv)) => {
                assert_eq!(&k[..], &wk[..], "a key differs");
                assert!(v[..] == wv[..], "the value of {k:?} differs");
            }
            None => panic!("an extra key {k:?}"),
        }
    }
    assert!(want.next().is_none(), "keys are missing");
    db.close().unwrap();
    let verify = Command::new(env!("CARGO_BIN_EXE_varve"))
        .arg("verify")
        .arg(new)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "varve verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// When to kill a run, from an uninterrupted run's timeline: its load
/// took `load`, the whole run `full`. `None`: let it finish.
fn kill_moment(rng: &mut Rng, load: Duration, full: Duration) -> Option<Duration> {
    let ms = |d: Duration| d.as_millis().max(1) as u64;
    let (load, full) = (ms(load), ms(full));
    let at = match rng.below(8) {
        // Early: before the marker or the first checkpoint, often.
        0 => rng.below(load / 8 + 5),
        // While it loads (a resumed run has less to load).
        1..=4 => rng.below(load),
        // In the final compaction.
        5 => rng.range(load, full),
        // Around its end: the marker's removal, or after it finished.
        6 => rng.range(full * 9 / 10, full * 13 / 10),
        _ => return None,
    };
    Some(Duration::from_millis(at))
}

/// The work one resume redid: the records the killed runs had applied
/// past where the resume started.
struct Redone {
    records: u64,
    bytes: u64,
    /// What those records take in runs.
    footprint: u64,
    /// How many checkpoints' worth that is: the checkpoint intervals of
    /// the resumed run it covers, the last one in part (`None` if the
    /// resumed run was killed before it showed them all).
    checkpoints: Option<f64>,
}

/// How many checkpoint intervals `start..offset` covers, the last one in
/// part, given the checkpoints a run from `start` installed, in order (a
/// run resumed from `start` splits its runs where the killed one did: the
/// splits follow from the records alone). A checkpoint installed between
/// two progress lines goes unseen: then two intervals count as one, so
/// the figure errs low, by at most one interval.
fn checkpoints_covered(start: u64, offset: u64, installed: &[u64]) -> Option<f64> {
    let mut from = start;
    let mut covered = 0.0;
    for &c in installed.iter().filter(|&&c| c > start) {
        if offset <= from {
            return Some(covered);
        }
        if offset < c {
            return Some(covered + (offset - from) as f64 / (c - from) as f64);
        }
        covered += 1.0;
        from = c;
    }
    (offset <= from).then_some(covered)
}

#[test]
fn killed_restores_resume_to_the_exact_state_redoing_little() {
    killed_restores_resume(false);
}

#[test]
fn killed_restores_of_keys_in_order_resume_to_the_exact_state_redoing_little() {
    killed_restores_resume(true);
}

fn killed_restores_resume(in_order: bool) {
    let kills = std::env::var("VARVE_RESTORE_KILLS").map_or(40, |v| v.parse().unwrap());
    let seed = std::env::var("VARVE_KILL_SEED").map_or(19, |v| v.parse().unwrap());
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let source = write_source(&src, &mut rng, in_order);
    let end = source.record_bytes.len() as u64;
    let segments = std::fs::read_dir(src.join(varve_db::CHANGELOG_DIR))
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.extension().is_some_and(|x| x == "log")
        })
        .count();

    // An uninterrupted run gives the timeline the kills are drawn from.
    let calibration = tmp.path().join("calibration");
    let started = Instant::now();
    let (finished, printed) = restore(&src, &calibration, None);
    let full = started.elapsed();
    assert!(finished);
    check_restored(&calibration, &source);
    let load = Duration::from_millis(printed.progress.last().unwrap().2);
    let checkpoints = printed.checkpoints();
    std::fs::remove_dir_all(&calibration).unwrap();

    let new = tmp.path().join("new");
    let mut redone: Vec<Redone> = Vec::new();
    // What the killed runs since the last `start` line printed: the
    // highest offset and checkpoint.
    let mut pending: Option<(u64, u64)> = None;
    let (mut runs, mut killed, mut finishes) = (0, 0, 0);
    let mut phases = BTreeMap::<&str, u32>::new();
    let mut attempts = 0;
    loop {
        let kill_at = if attempts < kills {
            attempts += 1;
            kill_moment(&mut rng, load, full)
        } else {
            None
        };
        runs += 1;
        let (finished, printed) = restore(&src, &new, kill_at);
        // The checkpoint trails the offset applied by at most the two
        // runs of the budget, on every line.
        for &(offset, flushed, _) in &printed.progress {
            assert!(flushed <= offset && offset <= end);
            let behind = source.footprint(flushed, offset);
            assert!(
                behind < source.two_runs(flushed, offset),
                "{behind} bytes of run past the checkpoint {flushed}, at {offset}"
            );
        }
        if let Some(start) = printed.start
            && let Some((offset, flushed)) = pending.take()
        {
            // A resume never starts before a checkpoint that was reported
            // (it may start past the offset last printed: the killed run
            // went on loading and installing).
            assert!(flushed <= start, "resumed at {start}, checkpoint {flushed}");
            // What the killed run had applied past the checkpoint it was
            // killed at is what its two runs held: the run being written
            // (the next checkpoint, not yet installed) and the one being
            // gathered after it. So a resume redoes less than two
            // checkpoints' worth.
            let footprint = source.footprint(start, offset);
            assert!(
                footprint < source.two_runs(start, offset),
                "a resume from {start} redid {footprint} bytes of run, up to {offset}"
            );
            let covered = checkpoints_covered(start, offset, &printed.checkpoints());
            assert!(
                covered.is_none_or(|c| c < 2.0),
                "{start}..{offset}: {covered:?}"
            );
            redone.push(Redone {
                records: offset.saturating_sub(start),
                bytes: source.bytes(start, offset),
                footprint,
                checkpoints: covered,
            });
        }
        if finished {
            let report = printed.report.as_ref().unwrap();
            let start = report["start_offset"].as_u64().unwrap();
            assert_eq!(report["end_offset"], end);
            assert_eq!(report["records"], end - start);
            assert_eq!(printed.start, Some(start));
            finishes += 1;
            check_restored(&new, &source);
            if attempts >= kills {
                break;
            }
            std::fs::remove_dir_all(&new).unwrap();
            continue;
        }
        killed += 1;
        if let Some(reached) = printed.reached() {
            pending = Some(reached);
        }
        let phase = if new.join(varve_db::restore::MARKER_FILE).exists() {
            let opts = Options::default().create_if_missing(false);
            match Db::open(&new, opts) {
                Err(Error::RestoreIncomplete { .. }) => {}
                Err(e) => panic!("a killed restore's store: {e}"),
                Ok(_) => panic!("a killed restore's store opened"),
            }
            if printed.loaded() {
                "final compaction"
            } else if printed.progress.is_empty() {
                "before any progress"
            } else {
                "load"
            }
        } else if new.join("CURRENT").exists() {
            // Killed once the marker was gone: the store is complete.
            check_restored(&new, &source);
            finishes += 1;
            pending = None;
            std::fs::remove_dir_all(&new).unwrap();
            "after the marker's removal"
        } else {
            "before the marker"
        };
        *phases.entry(phase).or_default() += 1;
    }
    report(&source, &checkpoints, (full, load), segments);
    let n = redone.len().max(1) as u64;
    let mean = |f: fn(&Redone) -> u64| redone.iter().map(f).sum::<u64>() / n;
    let max = |f: fn(&Redone) -> u64| redone.iter().map(f).max().unwrap_or(0);
    let covered: Vec<f64> = redone.iter().filter_map(|r| r.checkpoints).collect();
    let over_one = covered.iter().filter(|&&c| c > 1.0).count();
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "restore_kill: {runs} runs, {killed} killed {phases:?}, {finishes} finished; \
         {} resumes: redone records max {} mean {}, key and value bytes max {:.1} MB mean \
         {:.1} MB, in runs max {:.1} MB mean {:.1} MB; checkpoints' worth (of {}) max {:.3} \
         mean {:.2}, {over_one} above one",
        redone.len(),
        max(|r| r.records),
        mean(|r| r.records),
        mb(max(|r| r.bytes)),
        mb(mean(|r| r.bytes)),
        mb(max(|r| r.footprint)),
        mb(mean(|r| r.footprint)),
        covered.len(),
        covered.iter().copied().fold(0.0, f64::max),
        covered.iter().sum::<f64>() / covered.len().max(1) as f64,
    );
}

/// Prints the source's shape and the uninterrupted restore's checkpoints.
fn report(
    source: &Source,
    checkpoints: &[u64],
    (full, load): (Duration, Duration),
    segments: usize,
) {
    let end = source.record_bytes.len() as u64;
    let bounds: Vec<u64> = std::iter::once(0)
        .chain(checkpoints.iter().copied())
        .collect();
    let intervals: Vec<u64> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
    let sizes: Vec<u64> = bounds
        .windows(2)
        .map(|w| source.footprint(w[0], w[1]))
        .collect();
    eprintln!(
        "restore_kill: source {end} records, {:.1} MB, {segments} changelog segments; budget \
         {BUDGET} (runs of {} MiB): {} checkpoints seen, {:.0} records each on average (at most {}, \
         runs of {:.1} MB at most: a run takes its last record whole); uninterrupted restore \
         {:.2} s, its load {:.2} s",
        source.bytes(0, end) as f64 / 1e6,
        RUN_BOUND_BYTES >> 20,
        checkpoints.len(),
        end as f64 / checkpoints.len().max(1) as f64,
        intervals.iter().max().unwrap_or(&0),
        *sizes.iter().max().unwrap_or(&0) as f64 / 1e6,
        full.as_secs_f64(),
        load.as_secs_f64(),
    );
}
