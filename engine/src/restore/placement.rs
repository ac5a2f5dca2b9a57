//! Placing a restore's tables in the last level without rewriting them,
//! as RocksDB's `IngestExternalFile` does: a table whose key range meets
//! no other table's holds the only version of each of its keys, so it can
//! move to the bottom as it is. If it also holds no tombstone it is
//! already shaped like the output of a full compaction. What is left (the
//! tables that overlap, and those with tombstones) is merged by the
//! restore's final compaction, which then reads only those.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::error::Result;
use crate::state::DbInner;
use crate::version::{Level, NUM_LEVELS, TableMeta, VersionEdit};

/// The bottom level.
const LAST_LEVEL: Level = Level((NUM_LEVELS - 1) as u8);

/// Moves every table of the store that overlaps no other table and holds
/// no tombstone into the last level, in one manifest edit; returns how
/// many moved. Call it only once every record is in tables and only on a
/// store without a TTL (whose final compaction also drops expired values
/// from the last level).
///
/// # Errors
/// Manifest errors (the version is then unchanged).
pub(super) fn place_disjoint_tables(inner: &DbInner) -> Result<usize> {
    let version = inner.versions.lock().current();
    let mut tables: Vec<(Level, Arc<TableMeta>)> = Level::all()
        .flat_map(|level| {
            version
                .tables(level)
                .iter()
                .map(move |t| (level, t.clone()))
        })
        .collect();
    tables.sort_by(|a, b| a.1.smallest_user_key().cmp(b.1.smallest_user_key()));
    let disjoint = disjoint_indexes(&tables);
    let mut edit = VersionEdit::default();
    for i in disjoint {
        let (level, table) = &tables[i];
        if *level == LAST_LEVEL || table.tombstone_count > 0 {
            continue;
        }
        edit.deleted.push((*level, table.number));
        edit.added.push((LAST_LEVEL, (**table).clone()));
    }
    let moved = edit.added.len();
    if moved == 0 {
        return Ok(0);
    }
    inner.versions.lock().log_and_apply(edit)?;
    inner.install_current_version(None);
    tracing::info!(tables = moved, "restore: tables placed in the last level");
    Ok(moved)
}

/// The indexes of the tables (sorted by smallest user key) whose key range
/// meets no other table's.
fn disjoint_indexes(tables: &[(Level, Arc<TableMeta>)]) -> Vec<usize> {
    let mut out = Vec::new();
    // The largest user key of the tables before `i`.
    let mut reach: Option<&[u8]> = None;
    for (i, (_, table)) in tables.iter().enumerate() {
        let clear_before = reach.is_none_or(|r| r.cmp(table.smallest_user_key()) == Ordering::Less);
        let clear_after = tables
            .get(i + 1)
            .is_none_or(|(_, next)| table.largest_user_key() < next.smallest_user_key());
        if clear_before && clear_after {
            out.push(i);
        }
        let largest = table.largest_user_key();
        reach = Some(reach.map_or(largest, |r| r.max(largest)));
    }
    out
}
