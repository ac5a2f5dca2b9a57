//! `varve compact`: a full manual compaction of a closed store, then its
//! shape and amplification.

use std::path::Path;

use serde_json::Value;

use crate::error::Result;
use crate::format::{Out, human_bytes, object};
use crate::progress::Progress;
use crate::write::open_for_write;

/// Flushes the store's memtable and compacts every table down to the last
/// level (dropping overwritten versions and tombstones), then prints the
/// store's statistics.
///
/// # Errors
/// As [`open_for_write`], and compaction errors.
pub fn run(out: &mut Out, dir: &Path) -> Result<()> {
    let db = open_for_write(dir, false)?;
    let before = db.stats()?;
    let tables: u64 = before.levels.iter().map(|l| l.tables as u64).sum();
    let progress = Progress::spinner(
        format!(
            "compacting {tables} table(s), {} (and the memtable)",
            human_bytes(before.table_bytes)
        ),
        out.style.quiet,
    );
    db.compact_range::<&[u8], _>(..)?;
    progress.finish();
    let stats = db.stats()?;
    if out.json() {
        let levels: Vec<Value> = stats
            .levels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Value::Object(object([
                    ("level", Value::from(i)),
                    ("tables", Value::from(l.tables)),
                    ("size_bytes", Value::from(l.size_bytes)),
                ]))
            })
            .collect();
        out.object(object([
            ("levels", Value::Array(levels)),
            ("table_bytes", Value::from(stats.table_bytes)),
            ("live_data_bytes", Value::from(stats.live_data_bytes)),
            ("space_amp", Value::from(stats.space_amp)),
            (
                "compaction_bytes_read",
                Value::from(stats.compaction_bytes_read),
            ),
            (
                "compaction_bytes_written",
                Value::from(stats.compaction_bytes_written),
            ),
        ]))?;
    } else {
        for line in stats.to_string().lines() {
            out.line(line)?;
        }
    }
    Ok(db.close()?)
}
