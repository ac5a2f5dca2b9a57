//! Opening a log directory: checking what is in it, and recovering the
//! segments (validating from the recovery point, cutting a torn tail).

use crate::fs::PathKind;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::filename::{FileKind, LOCK_FILE, META_FILE, parse_file_name};
use crate::fs::{DirLock, FileSystem};
use crate::meta::LogMeta;
use crate::options::{LogOptions, RecoveryMode};
use crate::segment::{BadBatch, ScanStop, Segment};

/// What recovery found and did when a log was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the log was created by this open.
    pub created: bool,
    /// Where the log was cut, if it was: the segment and byte position.
    pub truncated_at: Option<(PathBuf, u64)>,
    /// Why it was cut.
    pub truncation_reason: Option<String>,
    /// Bytes removed from the cut segment (non-zero bytes after the cut).
    pub truncated_bytes: u64,
    /// Whole segments removed because they followed the cut.
    pub segments_removed: usize,
    /// The offset the log ends at after recovery.
    pub next_offset: u64,
    /// Leftover temporary files deleted.
    pub leftovers_removed: usize,
}

pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) log_start_offset: u64,
    pub(crate) report: RecoveryReport,
}

/// Checks that `dir` is a log directory (or empty/missing), creates it if
/// needed, and takes its lock. A directory holding anything else is
/// refused before anything is written to it.
pub(crate) fn prepare_dir(fs: &dyn FileSystem, dir: &Path) -> Result<Box<dyn DirLock>> {
    match fs.kind(dir).map_err(|e| Error::io("stat", dir, e))? {
        Some(PathKind::Dir) => {}
        Some(PathKind::File) => {
            return Err(Error::NotALog {
                path: dir.to_owned(),
                reason: "it is a file, not a directory".into(),
            });
        }
        // Durably: the new directory's entry (and any parent's it made)
        // survives power loss once the open returns.
        None => crate::fs::create_dir_all_durably(fs, dir)
            .map_err(|e| Error::io("create directory", dir, e))?,
    }
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    let has_meta = names.iter().any(|n| n == META_FILE);
    for name in &names {
        if parse_file_name(name).is_none() {
            return Err(Error::NotALog {
                path: dir.join(name),
                reason: "unexpected file in a changelog directory".into(),
            });
        }
        let leftover_meta =
            name.starts_with(META_FILE) && parse_file_name(name) == Some(FileKind::Leftover);
        if !has_meta && name != LOCK_FILE && !leftover_meta {
            return Err(Error::NotALog {
                path: dir.to_owned(),
                reason: format!("{name} is present but log.meta is missing"),
            });
        }
    }
    fs.lock(&dir.join(LOCK_FILE)).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked {
            path: dir.to_owned(),
        },
        _ => Error::io("lock", dir.join(LOCK_FILE), e),
    })
}

/// Recovers the log in a locked directory.
pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path, opts: &LogOptions) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let meta_path = dir.join(META_FILE);
    let meta = match fs
        .kind(&meta_path)
        .map_err(|e| Error::io("stat", &meta_path, e))?
    {
        Some(_) => LogMeta::read(fs, &meta_path)?,
        None => {
            let meta = LogMeta {
                log_start_offset: 0,
                recovery_point: 0,
            };
            meta.write(fs, &meta_path)?;
            report.created = true;
            meta
        }
    };
    let mut bases = Vec::new();
    for name in fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?
    {
        match parse_file_name(&name) {
            Some(FileKind::Segment(base)) => bases.push(base),
            Some(FileKind::Leftover) => {
                fs.remove_file(&dir.join(&name))
                    .map_err(|e| Error::io("remove leftover", dir.join(&name), e))?;
                report.leftovers_removed += 1;
            }
            _ => {}
        }
    }
    bases.sort_unstable();
    if bases.is_empty() {
        if meta.recovery_point > meta.log_start_offset {
            return Err(Error::corruption(
                &meta_path,
                20,
                "log.meta records durable data but no segment exists",
            ));
        }
        let segment = Segment::create(fs, dir, meta.log_start_offset)?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
        report.next_offset = meta.log_start_offset;
        return Ok(Recovered {
            segments: vec![Arc::new(segment)],
            log_start_offset: meta.log_start_offset,
            report,
        });
    }
    let segments = recover_segments(fs, dir, opts, &meta, &bases, &mut report)?;
    let first_base = segments.first().map_or(0, |s| s.base_offset);
    let last = segments
        .last()
        .ok_or_else(|| Error::corruption(dir, 0, "no segments"))?;
    last.sync()?;
    report.next_offset = last.next_offset();
    if report.next_offset < meta.recovery_point && report.truncated_at.is_none() {
        let what = format!(
            "the log ends at offset {} but records up to {} were synced",
            report.next_offset, meta.recovery_point
        );
        if opts.recovery == RecoveryMode::Strict {
            return Err(Error::corruption(&last.path, last.size_bytes(), what));
        }
        report.truncated_at = Some((last.path.clone(), last.size_bytes()));
        report.truncation_reason = Some(what);
    }
    let log_start_offset = meta
        .log_start_offset
        .max(first_base)
        .min(report.next_offset);
    let fresh = LogMeta {
        log_start_offset,
        recovery_point: report.next_offset,
    };
    if fresh != meta {
        fresh.write(fs, &meta_path)?;
    }
    Ok(Recovered {
        segments,
        log_start_offset,
        report,
    })
}

fn recover_segments(
    fs: &dyn FileSystem,
    dir: &Path,
    opts: &LogOptions,
    meta: &LogMeta,
    bases: &[u64],
    report: &mut RecoveryReport,
) -> Result<Vec<Arc<Segment>>> {
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let next_base = bases.get(i + 1).copied();
        let segment = Segment::open(fs, dir, base, true)?;
        if let Some(prev) = segments.last()
            && prev.next_offset() > base
        {
            return Err(Error::corruption(
                &segment.path,
                0,
                format!(
                    "segment overlaps the previous one, which ends at offset {}",
                    prev.next_offset()
                ),
            ));
        }
        let below_recovery_point = next_base.is_some_and(|nb| nb <= meta.recovery_point);
        let stop = if below_recovery_point && !is_last {
            segment.load_closed(fs, opts.index_interval_bytes)?
        } else {
            segment.recover(opts.index_interval_bytes)?
        };
        if let ScanStop::Bad(bad) = stop {
            if let Some(err) = durable_damage(&segment, &bad, meta.recovery_point, is_last)
                && opts.recovery == RecoveryMode::Strict
            {
                return Err(err);
            }
            let BadBatch {
                position,
                tail_bytes,
                what,
                ..
            } = bad;
            tracing::warn!(segment = %segment.path.display(), position, tail_bytes, %what, "truncating the changelog");
            // Later segments go first (newest first), then the cut: a crash
            // in between leaves the damaged segment for the next recovery,
            // never a cut segment followed by later records (a hole).
            for &later in bases[i + 1..].iter().rev() {
                Segment::open(fs, dir, later, true)?.delete_files(fs)?;
                report.segments_removed += 1;
            }
            if report.segments_removed > 0 {
                fs.sync_dir(dir)
                    .map_err(|e| Error::io("sync directory", dir, e))?;
            }
            segment.truncate_file(position)?;
            report.truncated_at = Some((segment.path.clone(), position));
            report.truncation_reason = Some(what);
            report.truncated_bytes = tail_bytes;
            segments.push(Arc::new(segment));
            break;
        }
        segments.push(Arc::new(segment));
    }
    Ok(segments)
}

/// The corruption error for `bad`, the batch where the scan of `segment`
/// stopped, if it must be damaged durable data rather than a torn tail.
pub(crate) fn durable_damage(
    segment: &Segment,
    bad: &BadBatch,
    recovery_point: u64,
    is_last: bool,
) -> Option<Error> {
    let why = why_durable(segment.next_offset(), recovery_point, is_last, &bad.proof)?;
    let what = format!(
        "{}: damaged durable data, not a torn tail ({why})",
        bad.what
    );
    Some(Error::corruption(&segment.path, bad.position, what))
}

/// Why a bad batch at `damaged_offset` must be damaged durable data rather
/// than a torn tail, if it must: it lies below the recovery point, a later
/// segment exists (a segment is synced whole before the next one is
/// created), or a later batch in the segment proves it was synced.
fn why_durable(
    damaged_offset: u64,
    recovery_point: u64,
    is_last: bool,
    proof: &Option<String>,
) -> Option<String> {
    if damaged_offset < recovery_point {
        return Some(format!(
            "offset {damaged_offset} is below the recovery point {recovery_point}"
        ));
    }
    if !is_last {
        return Some("a later segment exists, so this one was synced whole".into());
    }
    proof.clone()
}
