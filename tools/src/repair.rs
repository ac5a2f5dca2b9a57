//! `varve repair DIR --to OUT`: salvages what can be read from a damaged
//! store into a new, consistent store, and reports what was lost.
//!
//! The damaged store is only read (never changed), and `OUT` must be new,
//! so a repair can be retried and its result compared before anything is
//! replaced; the operator swaps the directories afterwards. What is read:
//!
//! - the tables the manifest lists (every `*.sst` file if the manifest is
//!   unreadable): a table that verifies is used whole; from a damaged one,
//!   every data block that still reads;
//! - the changelog, from its first segment up to the first damage (as
//!   `RecoveryMode::Tolerant` would cut it).
//!
//! For each key the newest version by sequence number wins, so a
//! changelog that still holds the records of a lost table brings them
//! back. The live entries are written to `OUT` through the engine and
//! flushed. The new store has a new changelog (offsets start again at 0),
//! so consumer positions are not carried over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use serde_json::{Value, json};
use varve_db::internals::key::{InternalKeyRef, ValueKind};
use varve_db::internals::sst::Table;
use varve_db::internals::version::{FileKind, TableMeta, parse_file_name};
use varve_db::{Clock, Db, ManualClock, Options, SystemClock, WriteBatch, WriteOptions};

use crate::error::{Problem, Result, ToolError};
use crate::format::{Out, quoted};
use crate::progress::Progress;
use crate::segments::{self, SegmentScanner, Step};
use crate::store::{self, LockState, Manifest};
use crate::view::{Entry, KeyRange, Overlay, View, overlay_insert};

/// Entries written to the new store per batch.
const WRITE_BATCH_RECORDS: usize = 1000;

/// What the repair found, kept, and lost.
#[derive(Default)]
struct Report {
    notes: Vec<String>,
    lost: Vec<String>,
    tables_whole: u64,
    tables_partial: u64,
    tables_dropped: u64,
    /// Changelog offsets each lost table covered, to check the changelog.
    lost_seqnos: Vec<(PathBuf, u64, u64)>,
    log_first_offset: Option<u64>,
    log_next_offset: u64,
    keys_written: u64,
    /// The damaged store's TTL (its stored values carry a write time).
    ttl_ms: Option<u64>,
    /// Values of a TTL store that had expired: not written.
    expired: u64,
}

/// Repairs the store in `dir` into the new store `to`.
///
/// # Errors
/// If `dir` is missing or in use, `to` is not new, or writing `to` fails.
pub fn run(out: &mut Out, dir: &Path, to: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(ToolError::Missing(dir.to_owned()));
    }
    check_target(dir, to)?;
    let _lock = LockState::take(dir)?;
    let mut report = Report::default();
    let (table_paths, flushed) = tables_to_read(dir, &mut report)?;
    report.ttl_ms = Manifest::load(dir).ok().and_then(|m| m.version.ttl_ms());
    let mut overlay = Overlay::new();
    let mut good = Vec::new();
    // One step per table, one for the changelog, one for writing the new
    // store.
    let progress = Progress::bar(
        table_paths.len() as u64 + 2,
        "{bar:40} {pos}/{len} steps {wide_msg}",
        out.style.quiet,
    );
    for (path, meta) in table_paths {
        progress.message(format!("reading {}", path.display()));
        if let Some(table) = salvage_table(&path, meta.as_deref(), &mut overlay, &mut report) {
            good.push(table);
        }
        progress.inc(1);
    }
    progress.message("reading the changelog");
    read_changelog(dir, flushed, &mut overlay, &mut report)?;
    progress.inc(1);
    check_lost_tables_covered(&mut report);
    progress.message(format!("writing {}", to.display()));
    write_store(to, &View::new(good, overlay), &mut report)?;
    progress.inc(1);
    progress.finish();
    print_report(out, dir, to, &report)
}

fn check_target(dir: &Path, to: &Path) -> Result<()> {
    let empty = to
        .read_dir()
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false);
    if to.exists() && !empty {
        return Err(ToolError::Invalid(format!(
            "{} exists and is not empty: repair writes a new store and never overwrites one",
            to.display()
        )));
    }
    // Links resolved: a symlink must not lead the new store into the
    // damaged one.
    varve_db::check_outside_store(&varve_db::varve_changelog::fs::StdFs, dir, to)?;
    Ok(())
}

/// A table file and what the manifest says of it, if it could be read.
type TableToRead = (PathBuf, Option<Arc<TableMeta>>);

/// The tables to read and the flushed offset: from the manifest, or every
/// table file when the manifest cannot be read.
fn tables_to_read(dir: &Path, report: &mut Report) -> Result<(Vec<TableToRead>, u64)> {
    match Manifest::load(dir) {
        Ok(m) => {
            let paths = m
                .tables()
                .into_iter()
                .map(|(_, t)| (store::table_path(dir, t.number), Some(t)))
                .collect();
            Ok((paths, m.version.flushed_offset()))
        }
        Err(e) => {
            report.notes.push(format!(
                "the manifest cannot be used ({e}); reading every table file in the directory and the whole changelog"
            ));
            let paths = store::list_dir(dir)?
                .into_iter()
                .filter(|n| matches!(parse_file_name(n), Some(FileKind::Table(_))))
                .map(|n| (dir.join(n), None))
                .collect();
            Ok((paths, 0))
        }
    }
}

/// Uses a sound table whole; copies the readable blocks of a damaged one
/// into `overlay`. Returns the table if it is sound.
fn salvage_table(
    path: &Path,
    meta: Option<&TableMeta>,
    overlay: &mut Overlay,
    report: &mut Report,
) -> Option<Arc<Table>> {
    let table = match store::open_table(path) {
        Ok(table) => table,
        Err(e) => {
            report.tables_dropped += 1;
            let what = meta.map_or(String::new(), |m| {
                report
                    .lost_seqnos
                    .push((path.to_owned(), m.min_seqno.0, m.max_seqno.0));
                format!(
                    " ({} entries, keys {} ..= {})",
                    m.entry_count,
                    quoted(m.smallest_user_key()),
                    quoted(m.largest_user_key())
                )
            });
            report.lost.push(format!(
                "{}: table dropped, nothing in it can be read{what}: {e}",
                path.display()
            ));
            return None;
        }
    };
    if table.verify().is_ok() {
        report.tables_whole += 1;
        return Some(table);
    }
    report.tables_partial += 1;
    salvage_blocks(&table, overlay, report);
    None
}

fn salvage_blocks(table: &Table, overlay: &mut Overlay, report: &mut Report) {
    let handles = table.data_block_handles().unwrap_or_default();
    let mut salvaged = 0u64;
    let mut last_good_key: Option<Vec<u8>> = None;
    let mut lost_since: Option<(Option<Vec<u8>>, u64)> = None;
    for handle in handles {
        match table.read_block(handle) {
            Ok(block) => {
                block.for_each_entry(|key, value| {
                    let Some(k) = InternalKeyRef::decode(key) else {
                        return;
                    };
                    let value = (k.kind == ValueKind::Put).then(|| value.clone());
                    overlay_insert(
                        overlay,
                        k.user_key.to_vec(),
                        Entry {
                            seqno: k.seqno.0,
                            value,
                        },
                    );
                    salvaged += 1;
                });
                if let Some((after, offset)) = lost_since.take() {
                    let before =
                        InternalKeyRef::decode(block.first_key()).map(|k| k.user_key.to_vec());
                    report.lost.push(lost_range(
                        table.path(),
                        offset,
                        after.as_deref(),
                        before.as_deref(),
                    ));
                }
                last_good_key =
                    InternalKeyRef::decode(block.last_key()).map(|k| k.user_key.to_vec());
            }
            Err(e) => {
                if lost_since.is_none() {
                    let offset = match &e {
                        varve_db::Error::Corruption { offset, .. } => *offset,
                        _ => handle.offset,
                    };
                    lost_since = Some((last_good_key.clone(), offset));
                }
            }
        }
    }
    if let Some((after, offset)) = lost_since {
        report
            .lost
            .push(lost_range(table.path(), offset, after.as_deref(), None));
    }
    let p = table.properties();
    let path = table.path().display();
    if salvaged >= p.entry_count {
        report.notes.push(format!(
            "{path}: the table fails verification but every data block reads; all {salvaged} entries kept"
        ));
        return;
    }
    report.lost.push(format!(
        "{path}: {salvaged} of {} entries salvaged, {} lost",
        p.entry_count,
        p.entry_count - salvaged
    ));
    report
        .lost_seqnos
        .push((table.path().to_owned(), p.seqno_min.0, p.seqno_max.0));
}

fn lost_range(path: &Path, offset: u64, after: Option<&[u8]>, before: Option<&[u8]>) -> String {
    let show = |k: Option<&[u8]>, open: &str| k.map_or(open.to_owned(), quoted);
    format!(
        "{}: damaged data block(s) from byte {offset}: keys between {} and {} (exclusive) may be lost or show older versions",
        path.display(),
        show(after, "the start"),
        show(before, "the end")
    )
}

/// Reads the changelog into `overlay`: every record at or above the
/// manifest's `flushed` offset (those are in no table), and below it only
/// records that a lost or damaged table may have held (a record the tables
/// already reflect must not override them: a key deleted later, whose
/// tombstone compaction dropped, would come back). Damage below `flushed`
/// loses nothing (the tables hold those records) and reading goes on past
/// it; reading stops at damage at or above `flushed`, so the new store
/// holds a prefix of the acknowledged writes, and what follows is counted
/// as lost.
fn read_changelog(
    dir: &Path,
    flushed: u64,
    overlay: &mut Overlay,
    report: &mut Report,
) -> Result<()> {
    let log_dir = dir.join(varve_db::CHANGELOG_DIR);
    if !log_dir.is_dir() {
        report
            .lost
            .push("the changelog directory is missing: writes not yet in tables are lost".into());
        return Ok(());
    }
    let recovery_point = match segments::read_meta(&log_dir) {
        Ok(meta) => Some(meta.recovery_point),
        Err(e) => {
            report.notes.push(format!(
                "log.meta cannot be read ({e}); reading the segments without it"
            ));
            None
        }
    };
    let lost_ranges: Vec<(u64, u64)> = report
        .lost_seqnos
        .iter()
        .map(|(_, min, max)| (*min, *max))
        .collect();
    let wanted = |seqno: u64| {
        seqno > flushed
            || lost_ranges
                .iter()
                .any(|&(min, max)| (min..=max).contains(&seqno))
    };
    let mut next_offset = 0u64;
    let mut stop: Option<(Problem, u64)> = None;
    let mut skipped_below_flushed = Vec::new();
    let mut resumed_after: Option<Problem> = None;
    let list = segments::list_segments(&log_dir)?;
    'segments: for segment in &list {
        let mut scanner = SegmentScanner::open(segment)?;
        loop {
            match scanner.step()? {
                Step::Batch(good) => {
                    let header = *good.batch.header();
                    if let Some(at) = resumed_after.take()
                        && header.base_offset > flushed
                    {
                        // The damage hid offsets from below the flushed
                        // offset up to this batch: those at or above it
                        // are lost, and what follows would leave a hole.
                        stop = Some((at, flushed));
                        break 'segments;
                    }
                    let records: std::result::Result<Vec<_>, _> = good.batch.records().collect();
                    let Ok(records) = records else {
                        let at =
                            Problem::at(&segment.path, good.position, "a record does not decode");
                        if header.base_offset >= flushed {
                            stop = Some((at, header.base_offset));
                            break 'segments;
                        }
                        skipped_below_flushed.push(at);
                        next_offset = next_offset.max(header.next_offset());
                        continue;
                    };
                    for (offset, record) in records {
                        report.log_first_offset.get_or_insert(offset);
                        if wanted(offset + 1) {
                            overlay_insert(
                                overlay,
                                record.key.to_vec(),
                                Entry {
                                    seqno: offset + 1,
                                    value: stored_form(
                                        record.value,
                                        record.timestamp_ms,
                                        report.ttl_ms,
                                    ),
                                },
                            );
                        }
                    }
                    next_offset = next_offset.max(header.next_offset());
                }
                Step::Bad(bad) => {
                    let at = Problem::at(&segment.path, bad.position, &bad.what);
                    let from = scanner.next_offset();
                    if from >= flushed {
                        stop = Some((at, from));
                        break 'segments;
                    }
                    skipped_below_flushed.push(at.clone());
                    resumed_after = Some(at.clone());
                    if !scanner.skip_bad(&bad) && !scanner.resync(&bad)? {
                        // The rest of this segment cannot be walked; the
                        // next segment starts where reading goes on. If
                        // that is past the flushed offset, the records in
                        // between are lost.
                        let resume = list
                            .iter()
                            .find(|s| s.base_offset > segment.base_offset)
                            .map(|s| s.base_offset);
                        if resume.is_none_or(|r| r > flushed) {
                            stop = Some((at, flushed));
                            break 'segments;
                        }
                        continue 'segments;
                    }
                }
                Step::End { .. } => break,
            }
        }
        next_offset = next_offset.max(scanner.next_offset());
    }
    report.log_next_offset = next_offset;
    for at in skipped_below_flushed {
        report.notes.push(format!(
            "changelog damaged at {at}, below the manifest's flushed offset {flushed}: those records are in the tables, nothing is lost"
        ));
    }
    if let Some((at, from)) = stop {
        let known_end = recovery_point.unwrap_or(0).max(segments_end(&list, from)?);
        let count = if known_end > from {
            format!(
                " (the changelog held offsets up to {known_end}: {} record offset(s) lost)",
                known_end - from
            )
        } else {
            String::new()
        };
        report.lost.push(format!(
            "changelog cut at {at}: records from offset {from} on are lost{count}"
        ));
        report.log_next_offset = from;
    } else if next_offset < flushed {
        report.lost.push(format!(
            "the changelog ends at offset {next_offset} below the manifest's flushed offset {flushed}"
        ));
    }
    Ok(())
}

/// The end offset of the last readable batch of the changelog's segments
/// at or after `from` (what the log held past a cut), as far as the
/// segments after the damaged one can be walked.
fn segments_end(list: &[segments::SegmentFile], from: u64) -> Result<u64> {
    let mut end = from;
    for segment in list.iter().rev() {
        let mut scanner = SegmentScanner::open(segment)?;
        while let Step::Batch(good) = scanner.step()? {
            end = end.max(good.batch.header().next_offset());
        }
        if end > from {
            break;
        }
    }
    Ok(end)
}

/// Notes whether the changelog still held the records of damaged tables.
fn check_lost_tables_covered(report: &mut Report) {
    let (Some(first), next) = (report.log_first_offset, report.log_next_offset) else {
        return;
    };
    for (path, seqno_min, seqno_max) in std::mem::take(&mut report.lost_seqnos) {
        // seqno = offset + 1: the table's writes are offsets
        // seqno_min - 1 ..= seqno_max - 1, all read if within first..next.
        if seqno_min > first && seqno_max <= next {
            let prefix = format!("{}: ", path.display());
            let (recovered, lost): (Vec<String>, Vec<String>) = std::mem::take(&mut report.lost)
                .into_iter()
                .partition(|l| l.starts_with(&prefix));
            report.lost = lost;
            report.notes.push(format!(
                "{prefix}the changelog still holds every write of this table (offsets {}..={}), so nothing of it is lost; recovered from there: {}",
                seqno_min - 1,
                seqno_max - 1,
                recovered
                    .iter()
                    .map(|l| l.trim_start_matches(&prefix))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
}

/// A changelog value in the form a store holds it: in a TTL store, behind
/// its record's write time (as the engine stores it, `docs/TTL.md`), so
/// that it merges with table values.
fn stored_form(value: Option<Bytes>, timestamp_ms: i64, ttl_ms: Option<u64>) -> Option<Bytes> {
    let value = value?;
    if ttl_ms.is_none() {
        return Some(value);
    }
    let mut stored = u64::try_from(timestamp_ms)
        .unwrap_or(0)
        .to_le_bytes()
        .to_vec();
    stored.extend_from_slice(&value);
    Some(Bytes::from(stored))
}

/// Writes the live entries into the new store `to`. A TTL store's
/// repair is a TTL store too: each value is written with its original
/// write time (the clock is set to it), and expired values are left out,
/// so nothing lives longer than it would have.
fn write_store(to: &Path, view: &View, report: &mut Report) -> Result<()> {
    let now_ms = SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(now_ms));
    let opts = Options::default()
        .ttl(report.ttl_ms.map(Duration::from_millis))
        .clock(clock.clone());
    let db = Db::open(to, opts)?;
    let mut scan = view.scan(&KeyRange::default(), false);
    let mut batch = WriteBatch::new();
    let mut batch_time_ms = now_ms;
    while let Some((key, stored)) = scan.next_entry()? {
        let (write_time_ms, value) = match report.ttl_ms {
            None => (now_ms, stored),
            Some(ttl_ms) => match live_ttl_value(&key, stored, ttl_ms, now_ms, report) {
                Some(found) => found,
                None => continue,
            },
        };
        if !batch.is_empty()
            && (batch.len() >= WRITE_BATCH_RECORDS || write_time_ms != batch_time_ms)
        {
            db.write(std::mem::take(&mut batch), WriteOptions::default())?;
        }
        batch_time_ms = write_time_ms;
        clock.set_ms(write_time_ms);
        batch.put(key, value);
        report.keys_written += 1;
    }
    if !batch.is_empty() {
        db.write(batch, WriteOptions::default())?;
    }
    clock.set_ms(now_ms);
    db.flush()?;
    Ok(db.close()?)
}

/// A TTL store's stored value split into its write time and the user's
/// value; `None` (and counted) if it has expired or is too short to hold
/// a write time.
fn live_ttl_value(
    key: &[u8],
    stored: Bytes,
    ttl_ms: u64,
    now_ms: u64,
    report: &mut Report,
) -> Option<(u64, Bytes)> {
    let Some(time) = stored.first_chunk::<8>() else {
        report.lost.push(format!(
            "key {}: its value holds {} bytes, fewer than the 8-byte write time of a TTL store",
            quoted(key),
            stored.len()
        ));
        return None;
    };
    let write_time_ms = u64::from_le_bytes(*time);
    if now_ms.saturating_sub(write_time_ms) > ttl_ms {
        report.expired += 1;
        return None;
    }
    Some((write_time_ms, stored.slice(8..)))
}

fn print_report(out: &mut Out, dir: &Path, to: &Path, r: &Report) -> Result<()> {
    if out.json() {
        out.object(crate::format::object([
            ("from", json!(dir.display().to_string())),
            ("to", json!(to.display().to_string())),
            ("tables_whole", json!(r.tables_whole)),
            ("tables_partial", json!(r.tables_partial)),
            ("tables_dropped", json!(r.tables_dropped)),
            (
                "changelog_offsets_read",
                json!([r.log_first_offset, r.log_next_offset]),
            ),
            ("keys_written", json!(r.keys_written)),
            ("ttl_ms", json!(r.ttl_ms)),
            ("expired_not_written", json!(r.expired)),
            ("lost", Value::from(r.lost.clone())),
            ("notes", Value::from(r.notes.clone())),
        ]))?;
        return out.flush();
    }
    out.line(format!("repaired {} into {}", dir.display(), to.display()))?;
    out.line(format!(
        "tables: {} whole, {} partly salvaged, {} dropped",
        r.tables_whole, r.tables_partial, r.tables_dropped
    ))?;
    let first = r.log_first_offset.map_or("-".to_owned(), |o| o.to_string());
    out.line(format!(
        "changelog: offsets {first}..{} read",
        r.log_next_offset
    ))?;
    out.line(format!("live keys written: {}", r.keys_written))?;
    if let Some(ttl_ms) = r.ttl_ms {
        out.line(format!(
            "TTL store ({ttl_ms} ms): values keep their write times; {} expired value(s) not written",
            r.expired
        ))?;
    }
    for note in &r.notes {
        out.line(format!("note: {note}"))?;
    }
    if r.lost.is_empty() {
        out.line("lost: nothing")?;
    }
    for lost in &r.lost {
        out.line(format!("LOST: {lost}"))?;
    }
    out.flush()
}
