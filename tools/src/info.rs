//! `varve info DIR`: what a store is, from its files. On a partitioned
//! store's root: every partition, then totals.
//!
//! Amplification is computed from what the files show, which is what
//! survives, not what was ever written:
//!
//! - *logical bytes* of a table = its user keys and values (the
//!   `raw_key_size_bytes` and `raw_value_size_bytes` properties, less the
//!   8-byte trailer of each internal key), every version included;
//! - *write amplification (lower bound)* = 1 (each write goes once to the
//!   changelog) + table bytes on disk / logical bytes in tables. Rewrites by
//!   earlier compactions leave no trace in the files, so the true figure
//!   can only be higher;
//! - *space amplification* (with `--live`) = bytes on disk (tables,
//!   changelog, manifest) / bytes of live keys and values, measured by
//!   reading every live entry.

use std::path::Path;

use serde_json::{Map, Value, json};
use varve_db::ReadOnlyDb;
use varve_db::internals::key::TRAILER_SIZE;
use varve_db::internals::version::{FileKind, NUM_LEVELS, parse_file_name};

use crate::error::Result;
use crate::format::{Out, human_bytes};
use crate::segments::{self, SegmentScanner, Step};
use crate::store::{self, LockState, Manifest};

/// Prints what the store in `dir` is.
///
/// # Errors
/// If the directory is not a store or its manifest cannot be read.
pub fn run(out: &mut Out, dir: &Path, live: bool) -> Result<()> {
    if let Some(n) = crate::open::partitions(dir)? {
        return run_partitioned(out, dir, n, live);
    }
    let report = report(dir, live)?;
    if out.json() {
        out.object(report)?;
    } else {
        print_text(out, &report)?;
    }
    out.flush()
}

/// Prints every partition of the partitioned store rooted at `root`, then
/// totals over them.
fn run_partitioned(out: &mut Out, root: &Path, partitions: u32, live: bool) -> Result<()> {
    let mut reports = Vec::new();
    for p in 0..partitions {
        let mut report = report(&varve_db::partition_dir(root, p), live)?;
        report.insert("partition".into(), json!(p));
        reports.push(report);
    }
    let totals = totals(&reports);
    if out.json() {
        let mut obj = Map::new();
        obj.insert("store".into(), json!(root.display().to_string()));
        obj.insert("partitions".into(), json!(partitions));
        obj.insert("partition_reports".into(), json!(reports));
        obj.insert("totals".into(), totals);
        out.object(obj)?;
        return out.flush();
    }
    out.line(format!(
        "partitioned store {} ({partitions} partitions; keys routed with Kafka's default partitioner)",
        root.display()
    ))?;
    for (p, report) in reports.iter().enumerate() {
        out.line("")?;
        out.line(format!("== partition {p} =="))?;
        print_text(out, report)?;
    }
    out.line("")?;
    let t = &totals;
    out.line(format!(
        "totals         {partitions} partitions: {} table(s), {} in tables; {} changelog record(s), {} only in the changelog; {} consumer position(s); disk {}",
        t["tables"],
        human_bytes(t["tables_bytes"].as_u64().unwrap_or(0)),
        t["changelog_records"],
        t["unflushed_records"],
        t["consumer_positions"],
        human_bytes(t["disk_total_bytes"].as_u64().unwrap_or(0))
    ))?;
    out.flush()
}

/// Sums over the reports of a partitioned store's partitions.
fn totals(reports: &[Map<String, Value>]) -> Value {
    let sum = |f: &dyn Fn(&Map<String, Value>) -> u64| reports.iter().map(f).sum::<u64>();
    let log = |r: &Map<String, Value>, name: &str| r["changelog"][name].as_u64().unwrap_or(0);
    json!({
        "tables": sum(&|r| r["levels"]
            .as_array()
            .map_or(0, |ls| ls.iter().map(|l| l["tables"].as_array().map_or(0, Vec::len) as u64).sum())),
        "tables_bytes": sum(&|r| r["disk"]["tables_bytes"].as_u64().unwrap_or(0)),
        "changelog_records": sum(&|r| log(r, "log_end_offset").saturating_sub(log(r, "log_start_offset"))),
        "unflushed_records": sum(&|r| log(r, "unflushed_records")),
        "consumer_positions": sum(&|r| r["changelog"]["positions"].as_object().map_or(0, |p| p.len() as u64)),
        "disk_total_bytes": sum(&|r| r["disk"]["total_bytes"].as_u64().unwrap_or(0)),
        "in_use": reports.iter().any(|r| r["in_use"] == json!(true)),
    })
}

/// What the store in `dir` is, as one JSON object.
fn report(dir: &Path, live: bool) -> Result<Map<String, Value>> {
    store::check_store_dir(dir)?;
    let lock = LockState::probe(dir)?;
    lock.warn_if_live();
    if let (true, LockState::InUse(lock)) = (live, &lock) {
        return Err(crate::error::ToolError::Locked { lock: lock.clone() });
    }
    let in_use = matches!(lock, LockState::InUse(_));
    // The engine's read-only open takes the lock itself, and holds it.
    let live_db = if live {
        drop(lock);
        Some(crate::open::read_only(dir)?)
    } else {
        None
    };
    let manifest = Manifest::load(dir)?;
    let mut report = Map::new();
    report.insert("store".into(), json!(dir.display().to_string()));
    report.insert("in_use".into(), json!(in_use));
    report.insert("engine_format".into(), json!(manifest.engine_format));
    report.insert("manifest".into(), manifest_info(&manifest)?);
    let (levels, tables_total) = levels_info(dir, &manifest);
    report.insert("levels".into(), levels);
    let log = changelog_info(dir, manifest.version.flushed_offset())?;
    let disk = disk_info(dir)?;
    let amp = amplification(&tables_total, &disk, live_db.as_ref())?;
    report.insert("changelog".into(), log);
    report.insert("disk".into(), disk);
    report.insert("amplification".into(), amp);
    Ok(report)
}

fn manifest_info(manifest: &Manifest) -> Result<Value> {
    let v = &manifest.version;
    Ok(json!({
        "file": manifest.path.display().to_string(),
        "size_bytes": store::file_size(&manifest.path)?,
        "records": manifest.scan.edits.len(),
        "torn_tail_bytes": manifest.scan.torn_tail.map_or(0, |t| t.len_bytes),
        "flushed_offset": v.flushed_offset(),
        "last_seqno": v.last_seqno().0,
        "next_file_number": v.next_file_number().0,
    }))
}

/// Totals over every table, for the amplification figures.
#[derive(Default)]
struct TableTotals {
    size_bytes: u64,
    logical_bytes: u64,
}

fn levels_info(dir: &Path, manifest: &Manifest) -> (Value, TableTotals) {
    let mut levels = vec![json!({"tables": [], "size_bytes": 0u64}); NUM_LEVELS];
    let mut totals = TableTotals::default();
    for (level, meta) in manifest.tables() {
        let path = store::table_path(dir, meta.number);
        let mut table = json!({
            "file": path.display().to_string(),
            "number": meta.number.0,
            "size_bytes": meta.size_bytes,
            "entries": meta.entry_count,
            "tombstones": meta.tombstone_count,
            "seqno_min": meta.min_seqno.0,
            "seqno_max": meta.max_seqno.0,
        });
        match store::open_table(&path) {
            Ok(t) => {
                let p = t.properties();
                let logical = (p.raw_key_size_bytes + p.raw_value_size_bytes)
                    .saturating_sub(p.entry_count * TRAILER_SIZE as u64);
                table["logical_bytes"] = json!(logical);
                totals.logical_bytes += logical;
            }
            Err(e) => table["damaged"] = json!(e.to_string()),
        }
        totals.size_bytes += meta.size_bytes;
        let slot = &mut levels[usize::from(level)];
        slot["size_bytes"] = json!(slot["size_bytes"].as_u64().unwrap_or(0) + meta.size_bytes);
        if let Some(tables) = slot["tables"].as_array_mut() {
            tables.push(table);
        }
    }
    (Value::Array(levels), totals)
}

fn changelog_info(dir: &Path, flushed: u64) -> Result<Value> {
    let log_dir = dir.join(varve_db::CHANGELOG_DIR);
    let meta = segments::read_meta(&log_dir)?;
    let segs = segments::list_segments(&log_dir)?;
    let mut size_bytes = 0;
    for s in &segs {
        size_bytes += store::file_size(&s.path)?;
    }
    let first_base = segs
        .first()
        .map_or(meta.log_start_offset, |s| s.base_offset);
    let (end, tail) = match segs.last() {
        Some(last) => log_end(last)?,
        None => (meta.log_start_offset, None),
    };
    let end_note = tail.as_ref().map(|bad| {
        format!(
            "the last segment stops at byte {} ({}); run `varve verify`",
            bad.position, bad.what
        )
    });
    let next_open_cut = match (segs.last(), &tail) {
        (Some(last), Some(bad)) => json!({
            "segment": last.path.display().to_string(),
            "byte": bad.position,
            "bytes": bad.tail_bytes,
            "what": bad.what,
        }),
        _ => Value::Null,
    };
    let start = meta.log_start_offset.max(first_base).min(end);
    let positions = crate::positions::read_positions(&log_dir)?;
    let positions: Map<String, Value> = positions
        .into_iter()
        .map(|(name, offset)| {
            (
                name,
                json!({"offset": offset, "lag": end.saturating_sub(offset)}),
            )
        })
        .collect();
    Ok(json!({
        "dir": log_dir.display().to_string(),
        "segments": segs.len(),
        "size_bytes": size_bytes,
        "log_start_offset": start,
        "log_end_offset": end,
        "recovery_point": meta.recovery_point,
        "flushed_offset": flushed,
        "unflushed_records": end.saturating_sub(flushed),
        "end_note": end_note,
        "next_open_cut": next_open_cut,
        "positions": positions,
    }))
}

/// The log end offset: the offset after the last valid batch of the last
/// segment, and where damage (or a torn tail) stops the scan, if it does.
fn log_end(last: &segments::SegmentFile) -> Result<(u64, Option<segments::BadBatch>)> {
    let mut scanner = SegmentScanner::open(last)?;
    loop {
        match scanner.step()? {
            Step::Batch(_) => {}
            Step::End { .. } => return Ok((scanner.next_offset(), None)),
            Step::Bad(bad) => return Ok((scanner.next_offset(), Some(bad))),
        }
    }
}

fn disk_info(dir: &Path) -> Result<Value> {
    let (mut tables, mut manifests, mut other) = (0u64, 0u64, 0u64);
    for name in store::list_dir(dir)? {
        let path = dir.join(&name);
        if path.is_dir() {
            continue;
        }
        let size = store::file_size(&path)?;
        match parse_file_name(&name) {
            Some(FileKind::Table(_)) => tables += size,
            Some(FileKind::Manifest(_) | FileKind::Current) => manifests += size,
            _ => other += size,
        }
    }
    let log_dir = dir.join(varve_db::CHANGELOG_DIR);
    let mut changelog = 0;
    for name in store::list_dir(&log_dir)? {
        changelog += store::file_size(&log_dir.join(name))?;
    }
    Ok(json!({
        "tables_bytes": tables,
        "changelog_bytes": changelog,
        "manifest_bytes": manifests,
        "other_bytes": other,
        "total_bytes": tables + changelog + manifests + other,
    }))
}

fn amplification(tables: &TableTotals, disk: &Value, live: Option<&ReadOnlyDb>) -> Result<Value> {
    let write_amp = (tables.logical_bytes > 0)
        .then(|| 1.0 + tables.size_bytes as f64 / tables.logical_bytes as f64);
    let mut amp = json!({
        "table_logical_bytes": tables.logical_bytes,
        "write_amplification_lower_bound": write_amp,
        "live_bytes": null,
        "space_amplification": null,
    });
    if let Some(db) = live {
        let mut live_bytes = 0u64;
        for entry in db.iter() {
            let (k, v) = entry?;
            live_bytes += (k.len() + v.len()) as u64;
        }
        let total = disk["total_bytes"].as_u64().unwrap_or(0);
        amp["live_bytes"] = json!(live_bytes);
        amp["space_amplification"] =
            json!((live_bytes > 0).then(|| total as f64 / live_bytes as f64));
    }
    Ok(amp)
}

fn print_text(out: &mut Out, r: &Map<String, Value>) -> Result<()> {
    let m = &r["manifest"];
    out.line(format!(
        "store          {}",
        r["store"].as_str().unwrap_or("")
    ))?;
    if r["in_use"] == json!(true) {
        out.line("               (open in another process: figures may be moving)")?;
    }
    out.line(format!("engine format  {}", r["engine_format"]))?;
    out.line(format!(
        "manifest       {} ({} records, {} bytes)",
        m["file"].as_str().unwrap_or(""),
        m["records"],
        m["size_bytes"]
    ))?;
    // A sequence number is a changelog offset plus one, so the store's
    // newest write is the changelog's end even before it reaches a table.
    let in_tables = m["last_seqno"].as_u64().unwrap_or(0);
    let newest = in_tables.max(r["changelog"]["log_end_offset"].as_u64().unwrap_or(0));
    out.line(format!(
        "last seqno     {newest} ({in_tables} in tables)    next file number {}",
        m["next_file_number"]
    ))?;
    print_levels(out, &r["levels"])?;
    print_changelog(out, &r["changelog"])?;
    print_amplification(out, &r["disk"], &r["amplification"])
}

fn print_levels(out: &mut Out, levels: &Value) -> Result<()> {
    out.line("levels")?;
    for (i, level) in levels.as_array().into_iter().flatten().enumerate() {
        let tables = level["tables"].as_array().cloned().unwrap_or_default();
        if tables.is_empty() {
            continue;
        }
        let size = level["size_bytes"].as_u64().unwrap_or(0);
        out.line(format!(
            "  L{i}: {} table(s), {}",
            tables.len(),
            human_bytes(size)
        ))?;
        for t in tables {
            let state = t["damaged"]
                .as_str()
                .map_or(String::new(), |d| format!("  DAMAGED: {d}"));
            out.line(format!(
                "    {:06}.sst  {:>10}  {} entries ({} tombstones)  seqnos {}..={}{state}",
                t["number"].as_u64().unwrap_or(0),
                human_bytes(t["size_bytes"].as_u64().unwrap_or(0)),
                t["entries"],
                t["tombstones"],
                t["seqno_min"],
                t["seqno_max"]
            ))?;
        }
    }
    Ok(())
}

fn print_changelog(out: &mut Out, c: &Value) -> Result<()> {
    out.line(format!(
        "changelog      {} segment(s), {}",
        c["segments"],
        human_bytes(c["size_bytes"].as_u64().unwrap_or(0))
    ))?;
    out.line(format!(
        "  log start offset {}   log end offset {}   recovery point {}",
        c["log_start_offset"], c["log_end_offset"], c["recovery_point"]
    ))?;
    out.line(format!(
        "  flushed offset {} (below it everything is in tables; {} record(s) only in the changelog)",
        c["flushed_offset"], c["unflushed_records"]
    ))?;
    if let Some(note) = c["end_note"].as_str() {
        out.line(format!("  note: {note}"))?;
    }
    let cut = &c["next_open_cut"];
    if let Some(segment) = cut["segment"].as_str() {
        out.line(format!(
            "  next open cuts {} byte(s) of {segment} from byte {} (a torn tail: {}), \
             unless a valid batch follows, when it refuses the store as damaged",
            cut["bytes"],
            cut["byte"],
            cut["what"].as_str().unwrap_or("")
        ))?;
    }
    let positions = c["positions"].as_object().cloned().unwrap_or_default();
    if positions.is_empty() {
        out.line("  consumer positions: none")?;
    }
    for (name, p) in positions {
        out.line(format!(
            "  consumer {name}: offset {} (lag {})",
            p["offset"], p["lag"]
        ))?;
    }
    Ok(())
}

fn print_amplification(out: &mut Out, d: &Value, a: &Value) -> Result<()> {
    let size = |v: &Value| human_bytes(v.as_u64().unwrap_or(0));
    out.line(format!(
        "disk           {} total: tables {}, changelog {}, manifest {}, other {}",
        size(&d["total_bytes"]),
        size(&d["tables_bytes"]),
        size(&d["changelog_bytes"]),
        size(&d["manifest_bytes"]),
        size(&d["other_bytes"])
    ))?;
    let write = a["write_amplification_lower_bound"]
        .as_f64()
        .map_or("n/a (no tables)".to_owned(), |w| format!("≥ {w:.2}"));
    out.line(format!(
        "write amp      {write} (1 changelog write + table bytes / logical bytes in tables; earlier rewrites leave no trace)"
    ))?;
    let space = match (a["space_amplification"].as_f64(), a["live_bytes"].as_u64()) {
        (Some(s), Some(live)) => format!(
            "{s:.2} (disk bytes / {} of live keys and values)",
            human_bytes(live)
        ),
        (None, Some(_)) => "n/a (no live data)".to_owned(),
        _ => "run with --live to measure (reads every live entry)".to_owned(),
    };
    out.line(format!("space amp      {space}"))
}
