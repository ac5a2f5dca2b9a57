//! The compaction decision: which tables to merge next, and into which
//! level. Everything here is a pure function of a [`Version`], the options
//! and the tables already being compacted, so it is tested without files.

use std::collections::HashSet;
use std::sync::Arc;

use crate::options::CompactionOptions;
use crate::version::{FileNumber, Level, NUM_LEVELS, TableMeta, Version};

/// The last level: it holds most of the data and is never compacted further
/// by size.
const LAST_LEVEL: usize = NUM_LEVELS - 1;

/// Why a task was chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// L0 reached its table-count trigger.
    Level0Tables {
        /// Tables in L0.
        count: usize,
    },
    /// A level outgrew its target size.
    LevelSize {
        /// The level's size divided by its target.
        score: f64,
    },
    /// Asked for by [`Db::compact_range`](crate::Db::compact_range).
    Manual,
}

/// One compaction: merge `inputs` (from `start_level`) with the tables of
/// `output_level` they overlap, and write the result to `output_level`.
#[derive(Clone, Debug)]
pub struct Task {
    /// Why this task was chosen.
    pub reason: Reason,
    /// The level the inputs come from.
    pub start_level: Level,
    /// The level the outputs go to.
    pub output_level: Level,
    /// Tables taken from `start_level`.
    pub inputs: Vec<Arc<TableMeta>>,
    /// Tables of `output_level` whose user keys meet the inputs'.
    pub output_level_inputs: Vec<Arc<TableMeta>>,
    /// Tables of the level below `output_level` that the task's key range
    /// meets: outputs are split so none of them overlaps too many of these.
    pub grandparents: Vec<Arc<TableMeta>>,
}

impl Task {
    /// Whether the task can move its one input table to `output_level`
    /// without rewriting it (nothing there overlaps it).
    #[must_use]
    pub fn is_trivial_move(&self) -> bool {
        self.inputs.len() == 1
            && self.output_level_inputs.is_empty()
            && self.start_level != self.output_level
            && self.reason != Reason::Manual
    }

    /// Every table the task reads.
    pub fn all_inputs(&self) -> impl Iterator<Item = (Level, &Arc<TableMeta>)> {
        let start = self.inputs.iter().map(|t| (self.start_level, t));
        let out = self
            .output_level_inputs
            .iter()
            .map(|t| (self.output_level, t));
        start.chain(out)
    }

    /// Total size of the tables the task reads.
    #[must_use]
    pub fn input_size_bytes(&self) -> u64 {
        self.all_inputs().map(|(_, t)| t.size_bytes).sum()
    }

    /// The user-key range the task covers (smallest, largest).
    #[must_use]
    pub fn user_key_range(&self) -> (Vec<u8>, Vec<u8>) {
        let tables: Vec<&Arc<TableMeta>> = self.all_inputs().map(|(_, t)| t).collect();
        key_range(&tables)
    }
}

/// What running compactions hold: their input tables, and the user-key
/// ranges they are writing into each output level. A new task may share
/// neither, so concurrent compactions never produce overlapping tables.
#[derive(Clone, Debug, Default)]
pub struct Busy {
    /// Tables being read by a running compaction.
    pub tables: HashSet<FileNumber>,
    /// `(output level, smallest user key, largest user key)` of each
    /// running compaction.
    pub output_ranges: Vec<(Level, Vec<u8>, Vec<u8>)>,
}

impl Busy {
    /// Records `task` as running.
    pub fn add(&mut self, task: &Task) {
        self.tables
            .extend(task.all_inputs().map(|(_, table)| table.number));
        let (small, large) = task.user_key_range();
        self.output_ranges.push((task.output_level, small, large));
    }

    /// Forgets `task` (it finished or failed).
    pub fn remove(&mut self, task: &Task) {
        for (_, table) in task.all_inputs() {
            self.tables.remove(&table.number);
        }
        let (small, large) = task.user_key_range();
        if let Some(at) = self
            .output_ranges
            .iter()
            .position(|(l, s, g)| *l == task.output_level && *s == small && *g == large)
        {
            self.output_ranges.swap_remove(at);
        }
    }

    /// Whether `task` conflicts with a running compaction.
    #[must_use]
    pub fn conflicts(&self, task: &Task) -> bool {
        if task
            .all_inputs()
            .any(|(_, t)| self.tables.contains(&t.number))
        {
            return true;
        }
        let (small, large) = task.user_key_range();
        self.output_ranges.iter().any(|(level, s, g)| {
            (*level == task.output_level || *level == task.start_level)
                && s.as_slice() <= large.as_slice()
                && small.as_slice() <= g.as_slice()
        })
    }
}

/// The target size of every level and the base level (the one L0 compacts
/// into), derived from the data the version holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelShape {
    /// The level L0 compacts into; the levels between L0 and it are empty.
    pub base_level: Level,
    /// Target size per level (0 for L0 and for levels above the base).
    pub targets_bytes: [u64; NUM_LEVELS],
}

/// Computes the dynamic level targets (see
/// [`CompactionOptions`]).
#[must_use]
pub fn shape(version: &Version, opts: &CompactionOptions) -> LevelShape {
    let mut targets_bytes = [0; NUM_LEVELS];
    let first_non_empty = (1..=LAST_LEVEL).find(|&l| !version.tables(Level(l as u8)).is_empty());
    let mut target = version
        .level_size_bytes(Level(LAST_LEVEL as u8))
        .max(opts.level_base_size_bytes);
    targets_bytes[LAST_LEVEL] = target;
    let mut base = LAST_LEVEL;
    for level in (1..LAST_LEVEL).rev() {
        let next = target / opts.level_size_multiplier;
        let must_have_target = first_non_empty.is_some_and(|first| level >= first);
        if next < opts.level_base_size_bytes && !must_have_target {
            break;
        }
        target = next.max(1);
        targets_bytes[level] = target;
        base = level;
    }
    LevelShape {
        base_level: Level(base as u8),
        targets_bytes,
    }
}

/// An estimate of the bytes compaction must rewrite to bring every level
/// back under its target (RocksDB's "pending compaction bytes"): an L0
/// past its trigger counts whole, and each level's excess counts with the
/// part of the level below it will be merged with.
#[must_use]
pub fn estimated_pending_bytes(version: &Version, opts: &CompactionOptions) -> u64 {
    let shape = shape(version, opts);
    let mut pending = 0u64;
    let mut incoming = 0u64;
    if version.tables(Level(0)).len() >= opts.level0_compaction_trigger {
        incoming = version.level_size_bytes(Level(0));
        pending = incoming;
    }
    for level in shape.base_level.index()..LAST_LEVEL {
        let size = version.level_size_bytes(Level(level as u8)) + incoming;
        let target = shape.targets_bytes[level];
        let excess = size.saturating_sub(target);
        let below = version.level_size_bytes(Level(level as u8 + 1));
        let ratio = if size == 0 { 0 } else { below / size.max(1) };
        pending = pending.saturating_add(excess.saturating_mul(ratio + 1));
        incoming = excess;
    }
    pending
}

/// The next compaction worth doing, or `None` if every level is within its
/// target (or the tasks that are due conflict with running ones).
///
/// Levels are scored (L0: tables / trigger; others: size / target) and
/// tried from the highest score down; a score below 1 is not due. Within a
/// level, the table whose overlap with the next level is smallest relative
/// to its own size is chosen, which keeps write amplification down.
#[must_use]
pub fn pick(version: &Version, opts: &CompactionOptions, busy: &Busy) -> Option<Task> {
    let shape = shape(version, opts);
    let mut scores: Vec<(f64, usize)> = Vec::new();
    let l0 = version.tables(Level(0)).len();
    if l0 >= opts.level0_compaction_trigger {
        scores.push((l0 as f64 / opts.level0_compaction_trigger as f64, 0));
    }
    for level in shape.base_level.index()..LAST_LEVEL {
        let target = shape.targets_bytes[level].max(1);
        let score = version.level_size_bytes(Level(level as u8)) as f64 / target as f64;
        if score >= 1.0 {
            scores.push((score, level));
        }
    }
    scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (score, level) in scores {
        let task = if level == 0 {
            level0_task(version, &shape, Reason::Level0Tables { count: l0 }, busy)
        } else {
            level_task(version, Level(level as u8), score, busy)
        };
        if task.is_some() {
            return task;
        }
    }
    None
}

/// All of L0 into the base level (L0 tables overlap, so taking them all
/// keeps newer versions above older ones).
fn level0_task(version: &Version, shape: &LevelShape, reason: Reason, busy: &Busy) -> Option<Task> {
    let inputs: Vec<Arc<TableMeta>> = version.tables(Level(0)).to_vec();
    if inputs.is_empty() {
        return None;
    }
    let task = task_into(version, Level(0), shape.base_level, inputs, reason);
    (!busy.conflicts(&task)).then_some(task)
}

/// One table of `level` into the level below.
fn level_task(version: &Version, level: Level, score: f64, busy: &Busy) -> Option<Task> {
    let output = Level(level.0 + 1);
    let mut best: Option<(u128, Task)> = None;
    for table in version.tables(level) {
        let task = task_into(
            version,
            level,
            output,
            vec![Arc::clone(table)],
            Reason::LevelSize { score },
        );
        if busy.conflicts(&task) {
            continue;
        }
        let overlap: u64 = task.output_level_inputs.iter().map(|t| t.size_bytes).sum();
        let ratio = u128::from(overlap) * 1024 / u128::from(table.size_bytes.max(1));
        if best.as_ref().is_none_or(|(r, _)| ratio < *r) {
            best = Some((ratio, task));
        }
    }
    best.map(|(_, task)| task)
}

/// A task merging `inputs` of `start` with what they overlap in `output`.
pub(crate) fn task_into(
    version: &Version,
    start: Level,
    output: Level,
    inputs: Vec<Arc<TableMeta>>,
    reason: Reason,
) -> Task {
    let refs: Vec<&Arc<TableMeta>> = inputs.iter().collect();
    let (small, large) = key_range(&refs);
    let output_level_inputs = if start == output {
        Vec::new()
    } else {
        version.overlapping_tables(output, &small, &large)
    };
    let grandparents = if output.index() + 1 < NUM_LEVELS {
        let mut all = refs.clone();
        all.extend(output_level_inputs.iter());
        let (small, large) = key_range(&all);
        version.overlapping_tables(Level(output.0 + 1), &small, &large)
    } else {
        Vec::new()
    };
    Task {
        reason,
        start_level: start,
        output_level: output,
        inputs,
        output_level_inputs,
        grandparents,
    }
}

/// The user-key range of `tables` (empty keys if there are none).
fn key_range(tables: &[&Arc<TableMeta>]) -> (Vec<u8>, Vec<u8>) {
    let small = tables.iter().map(|t| t.smallest_user_key()).min();
    let large = tables.iter().map(|t| t.largest_user_key()).max();
    (
        small.unwrap_or_default().to_vec(),
        large.unwrap_or_default().to_vec(),
    )
}

/// A manual task: every table of `level` that meets `range` (inclusive
/// user keys; every table if `None`; all of L0 if any L0 table meets it),
/// into `output`. `None` if there is
/// no such table.
pub(crate) fn manual_task(
    version: &Version,
    level: Level,
    output: Level,
    range: Option<(&[u8], &[u8])>,
) -> Option<Task> {
    let inputs = match range {
        Some((small, large)) => version.overlapping_tables(level, small, large),
        None => version.tables(level).to_vec(),
    };
    if inputs.is_empty() {
        return None;
    }
    // L0 tables overlap one another: moving some of them down while an
    // older, overlapping one stays above would let the older version
    // shadow the newer. Take all of L0, as automatic compaction does.
    let inputs = if level.0 == 0 {
        version.tables(level).to_vec()
    } else {
        inputs
    };
    Some(task_into(version, level, output, inputs, Reason::Manual))
}

/// The level below `level` that compaction writes to: L0 goes to the base
/// level, every other level to the next one.
pub(crate) fn next_level(level: Level, shape: &LevelShape) -> Level {
    if level.0 == 0 {
        shape.base_level
    } else {
        Level(level.0 + 1)
    }
}

/// Whether any level below `output` holds a table that may contain
/// `user_key` (if not, a tombstone for it at `output` can be dropped).
pub(crate) fn key_may_exist_below(version: &Version, output: Level, user_key: &[u8]) -> bool {
    ((output.index() + 1)..NUM_LEVELS).any(|level| {
        let tables = version.tables(Level(level as u8));
        let at = tables.partition_point(|t| t.largest_user_key() < user_key);
        tables
            .get(at)
            .is_some_and(|t| t.smallest_user_key() <= user_key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::VersionEdit;
    use crate::version::test_util::table;

    fn opts() -> CompactionOptions {
        CompactionOptions::default()
            .level0_compaction_trigger(2)
            .level0_slowdown_trigger(4)
            .level0_stop_trigger(8)
            .level_base_size_bytes(10_000)
            .level_size_multiplier(10)
            .target_table_size_bytes(4096)
    }

    fn version(tables: Vec<(u8, TableMeta)>) -> Version {
        let edit = VersionEdit {
            next_file_number: Some(FileNumber(1000)),
            added: tables.into_iter().map(|(l, t)| (Level(l), t)).collect(),
            ..VersionEdit::default()
        };
        Version::empty().apply(&edit).unwrap()
    }

    fn sized(mut t: TableMeta, size_bytes: u64) -> TableMeta {
        t.size_bytes = size_bytes;
        t
    }

    #[test]
    fn empty_tree_compacts_l0_into_last_level() {
        let v = version(vec![]);
        let s = shape(&v, &opts());
        assert_eq!(s.base_level, Level(6));
        assert!(pick(&v, &opts(), &Busy::default()).is_none());
        let v = version(vec![
            (0, table(1, b"a", b"c", 1, 1)),
            (0, table(2, b"b", b"d", 2, 2)),
        ]);
        let task = pick(&v, &opts(), &Busy::default()).unwrap();
        assert_eq!(task.start_level, Level(0));
        assert_eq!(task.output_level, Level(6));
        assert_eq!(task.inputs.len(), 2);
    }

    #[test]
    fn base_level_rises_as_the_last_level_grows() {
        // Last level 1 MB: L5 target 100 KB, L4 10 KB, L3 would be 1 KB < base.
        let v = version(vec![(6, sized(table(1, b"a", b"z", 1, 1), 1_000_000))]);
        let s = shape(&v, &opts());
        assert_eq!(s.base_level, Level(4));
        assert_eq!(s.targets_bytes[6], 1_000_000);
        assert_eq!(s.targets_bytes[5], 100_000);
        assert_eq!(s.targets_bytes[4], 10_000);
        assert_eq!(s.targets_bytes[3], 0);
    }

    #[test]
    fn non_empty_levels_keep_a_target() {
        // Data in L2 while the last level is small: L2 keeps a (tiny) target
        // and stays the base level.
        let v = version(vec![(2, sized(table(1, b"a", b"b", 1, 1), 100))]);
        let s = shape(&v, &opts());
        assert_eq!(s.base_level, Level(2));
        assert!(s.targets_bytes[2] >= 1);
    }

    #[test]
    fn oversized_level_picks_least_overlapping_table() {
        let v = version(vec![
            (6, sized(table(1, b"a", b"z", 1, 1), 100_000)),
            (5, sized(table(2, b"a", b"c", 2, 2), 8_000)),
            (5, sized(table(3, b"d", b"f", 2, 2), 8_000)),
        ]);
        // L5 target 10 KB, size 16 KB: due. Both overlap table 1 equally;
        // the first wins ties.
        let task = pick(&v, &opts(), &Busy::default()).unwrap();
        assert_eq!(task.start_level, Level(5));
        assert_eq!(task.output_level, Level(6));
        assert_eq!(task.output_level_inputs.len(), 1);
        let v = version(vec![
            (6, sized(table(1, b"a", b"c", 1, 1), 100_000)),
            (5, sized(table(2, b"a", b"c", 2, 2), 8_000)),
            (5, sized(table(3, b"d", b"f", 2, 2), 8_000)),
        ]);
        let task = pick(&v, &opts(), &Busy::default()).unwrap();
        assert_eq!(task.inputs[0].number, FileNumber(3));
        assert!(task.is_trivial_move());
    }

    #[test]
    fn busy_tables_and_ranges_are_skipped() {
        let v = version(vec![
            (0, table(1, b"a", b"c", 1, 1)),
            (0, table(2, b"b", b"d", 2, 2)),
        ]);
        let task = pick(&v, &opts(), &Busy::default()).unwrap();
        let mut busy = Busy::default();
        busy.add(&task);
        assert!(pick(&v, &opts(), &busy).is_none());
        busy.remove(&task);
        assert!(busy.tables.is_empty() && busy.output_ranges.is_empty());
        assert!(pick(&v, &opts(), &busy).is_some());
    }

    #[test]
    fn pending_bytes_grow_with_excess() {
        let small = version(vec![(6, sized(table(1, b"a", b"z", 1, 1), 1_000_000))]);
        assert_eq!(estimated_pending_bytes(&small, &opts()), 0);
        let big = version(vec![
            (6, sized(table(1, b"a", b"z", 1, 1), 1_000_000)),
            (5, sized(table(2, b"a", b"c", 2, 2), 300_000)),
        ]);
        assert!(estimated_pending_bytes(&big, &opts()) >= 200_000);
    }

    #[test]
    fn tombstone_drop_needs_no_deeper_data() {
        let v = version(vec![(6, table(1, b"m", b"p", 1, 1))]);
        assert!(key_may_exist_below(&v, Level(5), b"n"));
        assert!(!key_may_exist_below(&v, Level(5), b"a"));
        assert!(!key_may_exist_below(&v, Level(6), b"n"));
    }
}
