//! Placing a restore's tables in the last level without rewriting them,
//! as RocksDB's `IngestExternalFile` does: a table whose key range meets
//! no other table's holds the only version of each of its keys, so it can
//! move to the bottom as it is. If it also holds no tombstone it is
//! already shaped like the output of a full compaction. What is left (the
//! tables that overlap, and those with tombstones) is merged by the
//! restore's final compaction, which then reads only those.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::compaction::picker::task_into;
use crate::compaction::{Reason, Task};
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

/// Merges, for each stretch between the keys `cuts` (those every
/// unsorted run was cut at), its level-0 tables into the last level, two
/// stretches at a time on two threads; returns how many stretches were
/// merged. Each stretch's tables overlap no other stretch's, so moving
/// one stretch below the level-0 tables of the others keeps every newer
/// version above every older one. Does nothing unless every table is in
/// level 0 and within one stretch (a restore from a checkpoint, or one
/// resumed with other cuts, is left to the full compaction). A stretch of
/// one table without tombstones is left for
/// [`place_disjoint_tables`]. Call it only once every record is in
/// tables, with the store's visible sequence number at the end, and not
/// on a TTL store.
///
/// # Errors
/// Table and manifest errors of a merge (the version then holds the
/// stretches merged before it).
pub(super) fn merge_stretches(inner: &DbInner, cuts: &[Vec<u8>]) -> Result<usize> {
    if cuts.is_empty() {
        return Ok(0);
    }
    let version = inner.versions.lock().current();
    if Level::all().any(|level| level != Level(0) && !version.tables(level).is_empty()) {
        return Ok(0);
    }
    let stretch_of = |key: &[u8]| cuts.partition_point(|cut| cut.as_slice() <= key);
    let mut groups: Vec<Vec<Arc<TableMeta>>> = vec![Vec::new(); cuts.len() + 1];
    for table in version.tables(Level(0)) {
        let stretch = stretch_of(table.smallest_user_key());
        if stretch != stretch_of(table.largest_user_key()) {
            return Ok(0);
        }
        groups[stretch].push(table.clone());
    }
    let tasks: Vec<Task> = groups
        .into_iter()
        .filter(|g| g.len() > 1 || g.iter().any(|t| t.tombstone_count > 0))
        .map(|g| task_into(&version, Level(0), LAST_LEVEL, g, Reason::Manual))
        .collect();
    drop(version);
    let merged = tasks.len();
    let (first, second): (Vec<_>, Vec<_>) = tasks.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let run_all = |share: Vec<(usize, &Task)>| -> Result<()> {
        share
            .into_iter()
            .try_for_each(|(_, task)| inner.run_task(task))
    };
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("varve-restore-merge".into())
            .spawn_scoped(scope, || run_all(second))
            .map_err(|e| crate::error::Error::io("spawn", "a restore merge thread", e))?;
        let first = run_all(first);
        let second = match helper.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        first.and(second)
    })?;
    if merged > 0 {
        tracing::info!(
            stretches = merged,
            "restore: stretches merged into the last level"
        );
    }
    Ok(merged)
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
