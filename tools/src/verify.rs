//! `varve verify DIR`: reads every file of a store and checks every
//! checksum and invariant, printing `file:offset: what` for each problem.
//!
//! Checked: `CURRENT`; every manifest record (CRC, decoding, invariants as
//! it is replayed); that every table the manifest lists exists with the
//! recorded size and agrees with its entry; every table (footer, index,
//! filter, properties, every data block, keys strictly increasing, counts);
//! `log.meta` and `positions`; every changelog segment (every batch's
//! header, CRC and records, offsets increasing within and across segments
//! and below the engine's sequence-number range);
//! the index files of sealed segments; and that the manifest's flushed
//! offset lies inside the changelog. Leftover files are notes, not
//! problems. A torn tail past the changelog's recovery point (what a crash
//! during an append leaves, and opening the store cuts) is a note too.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, json};
use varve_changelog::filename::{META_FILE, POSITIONS_FILE};
use varve_db::internals::version::{FileKind, TableMeta, parse_file_name};

use crate::error::{Problem, Result, ToolError};
use crate::format::Out;
use crate::segments::{self, SegmentFile, SegmentScanner, Step};
use crate::store::{self, LockState, Manifest};

/// Problems and notes found so far, printed as they are found.
struct Findings<'a> {
    out: &'a mut Out,
    progress: Progress,
    problems: usize,
    notes: usize,
    files_checked: u64,
}

impl Findings<'_> {
    fn problem(&mut self, p: Problem) -> Result<()> {
        self.problems += 1;
        self.emit("problem", &p)
    }

    fn note(&mut self, p: Problem) -> Result<()> {
        self.notes += 1;
        self.emit("note", &p)
    }

    fn checked(&mut self, path: &Path) {
        self.files_checked += 1;
        self.progress.checked(path);
    }

    fn emit(&mut self, kind: &str, p: &Problem) -> Result<()> {
        let result = if self.out.json() {
            let mut obj = Map::new();
            obj.insert("kind".into(), json!(kind));
            obj.insert("file".into(), json!(p.path.display().to_string()));
            obj.insert("offset".into(), json!(p.offset));
            obj.insert("what".into(), json!(p.what));
            self.out.object(obj)
        } else if kind == "note" {
            self.out.line(format!("note: {p}"))
        } else {
            self.out.line(p.to_string())
        };
        self.out.flush()?;
        result
    }
}

/// A progress bar on a terminal, plain lines on stderr otherwise, nothing
/// with `--quiet`.
enum Progress {
    Bar(ProgressBar),
    Lines { done: u64, total: u64 },
    Quiet,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { done: 0, total };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} files {wide_msg}") {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    fn checked(&mut self, path: &Path) {
        match self {
            Progress::Bar(bar) => {
                bar.set_message(path.display().to_string());
                bar.inc(1);
            }
            Progress::Lines { done, total } => {
                *done += 1;
                eprintln!("checked {}/{} {}", done, total, path.display());
            }
            Progress::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// What verifying one store found.
struct Checked {
    problems: usize,
    notes: usize,
    files_checked: u64,
}

/// Verifies the store in `dir`, or every partition of a partitioned
/// store's root.
///
/// # Errors
/// [`ToolError::Problems`] if any problem was found (already printed); a
/// store that cannot be read at all gives the reason.
pub fn run(out: &mut Out, dir: &Path) -> Result<()> {
    let partitions = crate::open::partitions(dir)?;
    let dirs: Vec<PathBuf> = match partitions {
        Some(n) => (0..n).map(|p| varve_db::partition_dir(dir, p)).collect(),
        None => vec![dir.to_owned()],
    };
    let mut total = Checked {
        problems: 0,
        notes: 0,
        files_checked: 0,
    };
    let mut damaged = Vec::new();
    for (p, store_dir) in dirs.iter().enumerate() {
        let checked = match verify_one(out, store_dir) {
            // A partition that is gone or is no store is a problem of the
            // partitioned store, and the other partitions are still checked.
            Err(e @ (ToolError::Missing(_) | ToolError::NotAStore { .. }))
                if partitions.is_some() =>
            {
                missing_partition(out, store_dir, &e)?
            }
            other => other?,
        };
        if partitions.is_some() {
            partition_summary(out, p, store_dir, &checked)?;
        }
        if checked.problems > 0 {
            damaged.push(p);
        }
        total.problems += checked.problems;
        total.notes += checked.notes;
        total.files_checked += checked.files_checked;
    }
    summary(out, dir, partitions, &total, &damaged)
}

/// Checks one store, printing its problems and notes.
fn verify_one(out: &mut Out, dir: &Path) -> Result<Checked> {
    store::check_store_dir(dir)?;
    let lock = LockState::probe(dir)?;
    lock.warn_if_live();
    let log_dir = dir.join(varve_db::CHANGELOG_DIR);
    let segs = segments::list_segments(&log_dir).unwrap_or_default();
    let table_files = table_files(dir)?;
    let total = 3 + (table_files.len() + segs.len()) as u64;
    let quiet = out.style.quiet;
    let mut f = Findings {
        out,
        progress: Progress::new(total, quiet),
        problems: 0,
        notes: 0,
        files_checked: 0,
    };
    let manifest = check_manifest(&mut f, dir)?;
    check_tables(&mut f, manifest.as_ref(), &table_files)?;
    let log_end = check_changelog(&mut f, &log_dir, &segs)?;
    if let (Some(m), Some(end)) = (&manifest, log_end) {
        check_flushed(&mut f, m, &log_dir, end)?;
    }
    f.progress.finish();
    Ok(Checked {
        problems: f.problems,
        notes: f.notes,
        files_checked: f.files_checked,
    })
}

/// Reports a partition directory that cannot be verified at all.
fn missing_partition(out: &mut Out, dir: &Path, e: &ToolError) -> Result<Checked> {
    let p = Problem::file(dir, e.to_string());
    if out.json() {
        out.object(Map::from_iter([
            ("kind".to_owned(), json!("problem")),
            ("file".to_owned(), json!(dir.display().to_string())),
            ("offset".to_owned(), json!(null)),
            ("what".to_owned(), json!(p.what)),
        ]))?;
    } else {
        out.line(p.to_string())?;
    }
    Ok(Checked {
        problems: 1,
        notes: 0,
        files_checked: 0,
    })
}

/// One line per partition of a partitioned store.
fn partition_summary(out: &mut Out, p: usize, dir: &Path, c: &Checked) -> Result<()> {
    if out.json() {
        out.object(Map::from_iter([
            ("kind".to_owned(), json!("partition")),
            ("partition".to_owned(), json!(p)),
            ("store".to_owned(), json!(dir.display().to_string())),
            ("ok".to_owned(), json!(c.problems == 0)),
            ("files_checked".to_owned(), json!(c.files_checked)),
            ("problems".to_owned(), json!(c.problems)),
            ("notes".to_owned(), json!(c.notes)),
        ]))?;
    } else if c.problems == 0 {
        out.line(format!("{}: ok", dir.display()))?;
    } else {
        out.line(format!("{}: {} problem(s)", dir.display(), c.problems))?;
    }
    out.flush()
}

/// The last line: `DIR: ok` (or, in JSON, `{"kind":"summary","ok":…}`),
/// and [`ToolError::Problems`] if anything was found.
fn summary(
    out: &mut Out,
    dir: &Path,
    partitions: Option<u32>,
    c: &Checked,
    damaged: &[usize],
) -> Result<()> {
    if out.json() {
        let mut obj = Map::from_iter([
            ("kind".to_owned(), json!("summary")),
            ("ok".to_owned(), json!(c.problems == 0)),
            ("store".to_owned(), json!(dir.display().to_string())),
            ("files_checked".to_owned(), json!(c.files_checked)),
            ("problems".to_owned(), json!(c.problems)),
            ("notes".to_owned(), json!(c.notes)),
        ]);
        if let Some(n) = partitions {
            obj.insert("partitions".into(), json!(n));
            obj.insert("damaged_partitions".into(), json!(damaged));
        }
        out.object(obj)?;
    } else if c.problems == 0 {
        let scope = partitions.map_or(String::new(), |n| format!(" ({n} partitions)"));
        out.line(format!("{}: ok{scope}", dir.display()))?;
    } else if let Some(n) = partitions {
        let list: Vec<String> = damaged.iter().map(usize::to_string).collect();
        out.line(format!(
            "{}: damaged partition(s) {} of {n}",
            dir.display(),
            list.join(", ")
        ))?;
    }
    out.flush()?;
    if c.problems == 0 {
        Ok(())
    } else {
        Err(ToolError::Problems(c.problems))
    }
}

/// The table files in `dir`, by number.
fn table_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files: Vec<(u64, PathBuf)> = store::list_dir(dir)?
        .into_iter()
        .filter_map(|name| match parse_file_name(&name) {
            Some(FileKind::Table(n)) => Some((n.0, dir.join(name))),
            _ => None,
        })
        .collect();
    files.sort();
    Ok(files)
}

fn check_manifest(f: &mut Findings<'_>, dir: &Path) -> Result<Option<Manifest>> {
    let current = dir.join(store::CURRENT);
    let result = Manifest::load(dir);
    f.checked(&current);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            f.problem(problem_of(&current, &e))?;
            return Ok(None);
        }
    };
    if let Some(tail) = manifest.scan.torn_tail {
        let what = format!(
            "torn final record of {} bytes (an unacknowledged edit; opening the store cuts it)",
            tail.len_bytes
        );
        f.note(Problem::at(&manifest.path, tail.offset, what))?;
    }
    for name in store::list_dir(dir)? {
        match parse_file_name(&name) {
            Some(FileKind::Manifest(_)) if dir.join(&name) != manifest.path => {
                f.note(Problem::file(
                    dir.join(&name),
                    "manifest not named by CURRENT (left over; removed on the next open)",
                ))?;
            }
            Some(FileKind::Temp) => f.note(Problem::file(
                dir.join(&name),
                "temporary file left by a crash (removed on the next open)",
            ))?,
            None if name != varve_db::CHANGELOG_DIR => {
                f.note(Problem::file(dir.join(&name), "not a Varve file"))?
            }
            _ => {}
        }
    }
    Ok(Some(manifest))
}

fn problem_of(fallback: &Path, e: &ToolError) -> Problem {
    match e {
        ToolError::Engine(e) => Problem::from_engine(fallback, e),
        ToolError::Changelog(e) => Problem::from_changelog(fallback, e),
        other => Problem::file(fallback, other.to_string()),
    }
}

fn check_tables(
    f: &mut Findings<'_>,
    manifest: Option<&Manifest>,
    files: &[(u64, PathBuf)],
) -> Result<()> {
    let listed: HashMap<u64, (u8, std::sync::Arc<TableMeta>)> = manifest
        .map(|m| {
            m.tables()
                .into_iter()
                .map(|(l, t)| (t.number.0, (l, t)))
                .collect()
        })
        .unwrap_or_default();
    if let Some(m) = manifest {
        for (number, (level, meta)) in &listed {
            if !files.iter().any(|(n, _)| n == number) {
                let offset = m.added_at.get(&meta.number).copied().unwrap_or(0);
                let what = format!("L{level} table {:06}.sst is listed but missing", number);
                f.problem(Problem::at(&m.path, offset, what))?;
            }
        }
    }
    for (number, path) in files {
        match listed.get(number) {
            Some((_, meta)) => check_table(f, path, meta)?,
            None if manifest.is_some() => {
                f.note(Problem::file(
                    path,
                    "not listed in the manifest (left over; removed on the next open)",
                ))?;
                check_table_file(f, path)?;
            }
            None => {
                check_table_file(f, path)?;
            }
        }
        f.checked(path);
    }
    Ok(())
}

/// Opens and verifies a table file; its properties if it is sound.
fn check_table_file(
    f: &mut Findings<'_>,
    path: &Path,
) -> Result<Option<varve_db::internals::sst::TableProperties>> {
    let table = match store::open_table(path) {
        Ok(t) => t,
        Err(e) => {
            f.problem(problem_of(path, &e))?;
            return Ok(None);
        }
    };
    if let Err(e) = table.verify() {
        f.problem(Problem::from_engine(path, &e))?;
        return Ok(None);
    }
    Ok(Some(table.properties().clone()))
}

fn check_table(f: &mut Findings<'_>, path: &Path, meta: &TableMeta) -> Result<()> {
    let size = store::file_size(path)?;
    if size != meta.size_bytes {
        let what = format!(
            "file is {size} bytes but the manifest records {}",
            meta.size_bytes
        );
        f.problem(Problem::file(path, what))?;
    }
    let Some(p) = check_table_file(f, path)? else {
        return Ok(());
    };
    let agrees = p.entry_count == meta.entry_count
        && p.tombstone_count == meta.tombstone_count
        && p.smallest_key == meta.smallest
        && p.largest_key == meta.largest
        && p.seqno_min == meta.min_seqno
        && p.seqno_max == meta.max_seqno;
    if !agrees {
        let what =
            "the table's properties (counts, key range or seqnos) disagree with its manifest entry";
        f.problem(Problem::file(path, what))?;
    }
    Ok(())
}

/// Checks the changelog; returns the log end offset if it could be read.
fn check_changelog(
    f: &mut Findings<'_>,
    log_dir: &Path,
    segs: &[SegmentFile],
) -> Result<Option<u64>> {
    let meta_path = log_dir.join(META_FILE);
    let meta = segments::read_meta(log_dir);
    f.checked(&meta_path);
    let recovery_point = match meta {
        Ok(m) => Some(m.recovery_point),
        Err(e) => {
            f.problem(problem_of(&meta_path, &e))?;
            None
        }
    };
    let positions_path = log_dir.join(POSITIONS_FILE);
    if let Err(e) = crate::positions::read_positions(log_dir) {
        f.problem(problem_of(&positions_path, &e))?;
    }
    if positions_path.exists() {
        // Absent until the first commit: then there is nothing to check.
        f.checked(&positions_path);
    }
    if recovery_point.is_none() && segs.is_empty() {
        return Ok(None);
    }
    let mut end = 0u64;
    for (i, seg) in segs.iter().enumerate() {
        if seg.base_offset < end {
            let what = format!(
                "segment starts at offset {} but the previous one ends at {end}",
                seg.base_offset
            );
            f.problem(Problem::at(&seg.path, 0, what))?;
        }
        let last = i + 1 == segs.len();
        end = end.max(check_segment(f, seg, last, recovery_point)?);
        f.checked(&seg.path);
    }
    Ok(Some(end))
}

/// Checks one segment; returns the offset after its last valid batch.
fn check_segment(
    f: &mut Findings<'_>,
    seg: &SegmentFile,
    last: bool,
    recovery_point: Option<u64>,
) -> Result<u64> {
    let mut scanner = SegmentScanner::open(seg)?;
    let mut batches = HashMap::new();
    loop {
        match scanner.step()? {
            Step::Batch(good) => {
                batches.insert(good.position, good.batch.header().base_offset);
                let last_offset = good.batch.header().last_offset();
                if varve_db::internals::memtable::seqno_of_offset(last_offset).is_none() {
                    let what = format!(
                        "batch offsets up to {last_offset} lie beyond the sequence-number range (offsets must be below {}); the store cannot replay them",
                        varve_db::internals::key::SeqNo::MAX.0
                    );
                    f.problem(Problem::at(&seg.path, good.position, what))?;
                }
                if let Some(Err(e)) = good.batch.records().find(Result::is_err) {
                    let what = format!("a record does not decode: {e:?}");
                    f.problem(Problem::at(&seg.path, good.position, what))?;
                }
            }
            Step::Bad(bad) => {
                let proof = if !last {
                    Some("a later segment exists, so this one was synced whole".to_owned())
                } else if let Some(rp) = recovery_point.filter(|&rp| scanner.next_offset() < rp) {
                    Some(format!(
                        "offset {} is below the recovery point {rp}",
                        scanner.next_offset()
                    ))
                } else {
                    scanner.durable_damage_proof(&bad)?
                };
                let torn = proof.is_none() && recovery_point.is_some();
                let mut p = Problem::at(
                    &seg.path,
                    bad.position,
                    format!(
                        "{} ({} bytes to the last non-zero byte)",
                        bad.what, bad.tail_bytes
                    ),
                );
                if torn {
                    f.note(Problem {
                        what: format!(
                            "torn tail (nothing after it shows it was synced), cut on the next \
                             open: {}",
                            p.what
                        ),
                        ..p
                    })?;
                } else {
                    if let Some(why) = proof {
                        p.what =
                            format!("{}; damaged durable data, not a torn tail ({why})", p.what);
                    }
                    f.problem(p)?;
                }
                if !scanner.skip_bad(&bad) {
                    break;
                }
            }
            Step::End { .. } => break,
        }
    }
    if !last {
        for p in crate::log_dump::index_problems(seg, &batches)? {
            f.problem(p)?;
        }
    }
    Ok(scanner.next_offset())
}

fn check_flushed(f: &mut Findings<'_>, m: &Manifest, log_dir: &Path, end: u64) -> Result<()> {
    let flushed = m.version.flushed_offset();
    let start = segments::read_meta(log_dir)
        .map(|meta| meta.log_start_offset)
        .unwrap_or(0);
    if flushed > end || flushed < start {
        let what = format!(
            "the manifest's flushed offset {flushed} lies outside the changelog [{start}, {end}]"
        );
        f.problem(Problem::file(&m.path, what))?;
    }
    Ok(())
}
