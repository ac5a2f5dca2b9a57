//! `varve positions DIR`: the committed consumer positions of a changelog;
//! with `--delete NAME` or `--reset NAME --to OFFSET`, edits one of them
//! offline, as `kafka-consumer-groups.sh --delete` and `--reset-offsets`
//! do for a consumer group.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use varve_changelog::filename::{LOCK_FILE, POSITIONS_FILE};
use varve_changelog::fs::{DirLock, FileSystem, StdFs};

use crate::error::{Result, ToolError};
use crate::format::{Out, object};
use crate::segments::{self, SegmentScanner, Step};

/// The positions in the changelog directory `log_dir` (none if the file is
/// missing).
///
/// # Errors
/// [`ToolError::Changelog`](crate::error::ToolError::Changelog) naming the
/// damage.
pub fn read_positions(log_dir: &Path) -> Result<BTreeMap<String, u64>> {
    let path = log_dir.join(POSITIONS_FILE);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    Ok(varve_changelog::positions::read(
        &varve_changelog::fs::StdFs,
        &path,
    )?)
}

/// Prints each consumer's position and its lag behind the log end; with
/// `--json` one object holding the list (empty when there are none).
///
/// # Errors
/// If `dir` is not a store or changelog, or its files are damaged.
pub fn run(out: &mut Out, dir: &Path) -> Result<()> {
    let log_dir = segments::changelog_dir(dir)?;
    let positions = read_positions(&log_dir)?;
    let start = log_start_offset(&log_dir)?;
    let end = log_end_offset(&log_dir)?;
    if out.json() {
        let list: Vec<Value> = positions
            .iter()
            .map(|(name, &offset)| {
                Value::Object(object([
                    ("consumer", Value::from(name.as_str())),
                    ("offset", Value::from(offset)),
                    ("lag", Value::from(end.saturating_sub(offset))),
                ]))
            })
            .collect();
        out.object(object([
            ("changelog", Value::from(log_dir.display().to_string())),
            ("log_start_offset", Value::from(start)),
            ("log_end_offset", Value::from(end)),
            ("positions", Value::Array(list)),
        ]))?;
        return out.flush();
    }
    if positions.is_empty() {
        out.line(format!("no consumer positions (log end offset {end})"))?;
    }
    for (name, offset) in positions {
        let lag = end.saturating_sub(offset);
        out.line(format!("{name}\toffset {offset}\tlag {lag}"))?;
    }
    out.flush()
}

/// The change `varve positions --delete` or `--reset` makes.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Forget the consumer (`kafka-consumer-groups.sh --delete`).
    Delete(String),
    /// Move the consumer to an offset (`--reset-offsets --to-offset`).
    Reset(String, Target),
}

/// Where `--reset NAME --to` moves a consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The log start offset (`--to-earliest`).
    Earliest,
    /// The log end offset (`--to-latest`): nothing left to read.
    Latest,
    /// This offset.
    Offset(u64),
}

impl Target {
    /// Parses `earliest`, `latest` or an offset.
    ///
    /// # Errors
    /// [`ToolError::Invalid`] for anything else.
    pub fn parse(text: &str) -> Result<Target> {
        match text {
            "earliest" => Ok(Target::Earliest),
            "latest" => Ok(Target::Latest),
            _ => text.parse().map(Target::Offset).map_err(|_| {
                ToolError::Invalid(format!(
                    "--to {text:?}: expected an offset, `earliest` or `latest`"
                ))
            }),
        }
    }
}

/// Deletes or resets one consumer position of the store (or changelog) in
/// `dir`, holding its locks so that no process has it open meanwhile, and
/// prints what changed. With `dry_run`, prints it without writing.
///
/// # Errors
/// [`ToolError::Locked`] if the store is open elsewhere;
/// [`ToolError::Invalid`] for an unknown consumer or an offset outside
/// the log; the changelog's errors writing the file.
pub fn edit(out: &mut Out, dir: &Path, edit: &Edit, dry_run: bool) -> Result<()> {
    let log_dir = segments::changelog_dir(dir)?;
    // The store's lock (when DIR is a store) and the changelog's own: the
    // engine and a bare `Log` each hold theirs while open.
    let _store_lock = (log_dir != dir).then(|| lock(dir)).transpose()?;
    let _log_lock = lock(&log_dir)?;
    let mut positions = read_positions(&log_dir)?;
    let start = log_start_offset(&log_dir)?;
    let end = log_end_offset(&log_dir)?;
    let (name, after) = match edit {
        Edit::Delete(name) => (name, None),
        Edit::Reset(name, target) => {
            let offset = match *target {
                Target::Earliest => start,
                Target::Latest => end,
                Target::Offset(o) => o,
            };
            if offset < start || offset > end {
                let gone = if start > 0 {
                    format!("; the records below {start} are gone")
                } else {
                    String::new()
                };
                return Err(ToolError::Invalid(format!(
                    "offset {offset} is outside the changelog [{start}, {end}] (log start \
                     offset to log end offset){gone}"
                )));
            }
            (name, Some(offset))
        }
    };
    let Some(&before) = positions.get(name) else {
        let known: Vec<&str> = positions.keys().map(String::as_str).collect();
        return Err(ToolError::Invalid(format!(
            "{} has no consumer position named {name:?} (it has: {})",
            log_dir.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    match after {
        Some(offset) => positions.insert(name.clone(), offset),
        None => positions.remove(name),
    };
    if !dry_run {
        varve_changelog::positions::write(&StdFs, &log_dir.join(POSITIONS_FILE), &positions)?;
    }
    report_edit(out, name, before, after, (start, end), dry_run)
}

fn report_edit(
    out: &mut Out,
    name: &str,
    before: u64,
    after: Option<u64>,
    (start, end): (u64, u64),
    dry_run: bool,
) -> Result<()> {
    let lag = |o: u64| end.saturating_sub(o);
    if out.json() {
        out.object(object([
            ("ok", Value::from(true)),
            (
                "op",
                Value::from(if after.is_some() { "reset" } else { "delete" }),
            ),
            ("consumer", Value::from(name)),
            ("offset_before", Value::from(before)),
            ("offset_after", after.map_or(Value::Null, Value::from)),
            ("log_start_offset", Value::from(start)),
            ("log_end_offset", Value::from(end)),
            ("dry_run", Value::from(dry_run)),
        ]))?;
        return out.flush();
    }
    let verb = |done: &str, would: &str| {
        if dry_run {
            would.to_owned()
        } else {
            done.to_owned()
        }
    };
    let line = match after {
        Some(offset) => format!(
            "{} {name}: offset {before} -> {offset} (lag {} -> {})",
            verb("reset", "would reset"),
            lag(before),
            lag(offset)
        ),
        None => format!(
            "{} {name} (was at offset {before}, lag {}); retention no longer waits for it",
            verb("deleted", "would delete"),
            lag(before)
        ),
    };
    out.line(line)?;
    if dry_run {
        out.line("dry run: nothing was written")?;
    }
    out.flush()
}

/// Takes the lock file in `dir` (creating it, as the engine does), or
/// [`ToolError::Locked`] if a process has it.
fn lock(dir: &Path) -> Result<Box<dyn DirLock>> {
    let path = dir.join(LOCK_FILE);
    StdFs.lock(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => ToolError::Locked { lock: path },
        _ => ToolError::io("lock", path, e),
    })
}

/// The first offset the changelog in `log_dir` still holds.
///
/// # Errors
/// I/O errors, a damaged `log.meta`.
pub fn log_start_offset(log_dir: &Path) -> Result<u64> {
    let meta = segments::read_meta(log_dir)?;
    let first = segments::list_segments(log_dir)?
        .first()
        .map_or(meta.log_start_offset, |s| s.base_offset);
    Ok(meta.log_start_offset.max(first))
}

/// The offset after the last valid batch of the changelog in `log_dir`.
///
/// # Errors
/// I/O errors.
pub fn log_end_offset(log_dir: &Path) -> Result<u64> {
    let Some(last) = segments::list_segments(log_dir)?.pop() else {
        return Ok(segments::read_meta(log_dir)?.log_start_offset);
    };
    let mut scanner = SegmentScanner::open(&last)?;
    while let Step::Batch(_) = scanner.step()? {}
    Ok(scanner.next_offset())
}
