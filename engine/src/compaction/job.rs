//! Executing a [`Task`]: merge the inputs, pass them through the drop
//! rules ([`super::stream`]), write outputs split by size and at grandparent
//! boundaries, and install the result as one manifest edit.

use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::iter::merge::MergeCursor;
use crate::key::InternalKeyRef;
use crate::lifecycle::Lifecycle;
use crate::sst::TableBuilder;
use crate::state::DbInner;
use crate::stats::Counters;
use crate::version::{FileNumber, TableMeta, Version, VersionEdit};

use super::picker::{Task, key_may_exist_below};
use super::stream::{DropRules, Entry, Retention};

/// An output is closed early once it overlaps this many target table sizes
/// of the level below its own, so that compacting it later stays small.
const GRANDPARENT_OVERLAP_TABLES_MAX: u64 = 10;

/// Entries merged between checks of whether the store is closing.
const CLOSE_CHECK_INTERVAL: u64 = 4096;

impl DbInner {
    /// Runs `task` to completion and installs its result. The caller has
    /// registered the task as busy.
    pub(crate) fn run_task(&self, task: &Task) -> Result<()> {
        if task.is_trivial_move() {
            return self.trivial_move(task);
        }
        let version = self.versions.lock().current();
        let mut outputs = Outputs::new(self, task);
        let merged = self.merge_task(task, &version, &mut outputs);
        let tables = match merged.and_then(|()| outputs.finish()) {
            Ok(tables) => tables,
            Err(e) => {
                self.fail_on_sync_error(&e);
                outputs.abandon();
                return Err(e);
            }
        };
        let numbers: Vec<FileNumber> = tables.iter().map(|t| t.number).collect();
        let result = self.install_task(task, tables);
        if let Err(e) = &result {
            self.fail_on_sync_error(e);
        }
        self.release_outputs(&numbers);
        // After a failed manifest sync the edit may be durable: keep the
        // outputs, which the next open removes if the manifest lacks them.
        if result.is_err() && !self.versions.lock().edits_refused() {
            self.remove_tables(&numbers);
        }
        // Only now: the version this task read from still listed the
        // inputs as live, so deleting earlier would have kept them.
        drop(version);
        if result.is_ok() {
            self.delete_obsolete_tables();
        }
        result
    }

    fn trivial_move(&self, task: &Task) -> Result<()> {
        let table = &task.inputs[0];
        let edit = VersionEdit {
            deleted: vec![(task.start_level, table.number)],
            added: vec![(task.output_level, (**table).clone())],
            ..VersionEdit::default()
        };
        if let Err(e) = self.versions.lock().log_and_apply(edit) {
            self.fail_on_sync_error(&e);
            return Err(e);
        }
        self.install_current_version(None);
        Counters::add(&self.counters.trivial_moves, 1);
        tracing::info!(
            table = %table.number,
            from = %task.start_level,
            to = %task.output_level,
            "compaction: trivial move"
        );
        Ok(())
    }

    /// Feeds the merged entries of the task's inputs that the drop rules
    /// keep to `out`.
    fn merge_task(&self, task: &Task, version: &Version, out: &mut Outputs<'_>) -> Result<()> {
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        for (_, meta) in task.all_inputs() {
            children.push(Box::new(
                self.table(meta.number)?.iter_without_filling_cache(),
            ));
        }
        let mut merge = MergeCursor::new(children, true);
        merge.seek_to_end();
        let rules = Retention {
            oldest_snapshot: self.oldest_snapshot(),
            expiry: self.opts.expiry(),
            may_exist_below: |user_key: &[u8]| {
                key_may_exist_below(version, task.output_level, user_key)
            },
        };
        let merged = Merged {
            cursor: merge,
            lifecycle: &self.lifecycle,
            count: 0,
        };
        let mut kept = DropRules::new(merged, rules);
        let result = kept
            .by_ref()
            .try_for_each(|entry| entry.and_then(|e| out.add(e.key(), &e.value)));
        self.metrics.expired_entries.add(kept.expired_count());
        result
    }

    /// Records the task's result in the manifest and makes it current.
    fn install_task(&self, task: &Task, tables: Vec<TableMeta>) -> Result<()> {
        let written: u64 = tables.iter().map(|t| t.size_bytes).sum();
        let output_count = tables.len();
        let edit = VersionEdit {
            deleted: task.all_inputs().map(|(l, t)| (l, t.number)).collect(),
            added: tables.into_iter().map(|t| (task.output_level, t)).collect(),
            ..VersionEdit::default()
        };
        self.versions.lock().log_and_apply(edit)?;
        self.install_current_version(None);
        let read = task.input_size_bytes();
        Counters::add(&self.counters.compactions, 1);
        Counters::add(&self.counters.compaction_bytes_read, read);
        Counters::add(&self.counters.compaction_bytes_written, written);
        tracing::info!(
            reason = ?task.reason,
            from = %task.start_level,
            to = %task.output_level,
            inputs = task.inputs.len() + task.output_level_inputs.len(),
            outputs = output_count,
            bytes_read = read,
            bytes_written = written,
            "compaction finished"
        );
        Ok(())
    }

    /// Removes table files (best effort: they are not in any version).
    pub(crate) fn remove_tables(&self, numbers: &[FileNumber]) {
        for &n in numbers {
            let path = self.path.join(crate::version::table_file_name(n));
            if let Err(e) = self.fs.remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "could not remove table");
            }
        }
    }
}

/// A compaction's merged inputs as the drop rules take them; stops with
/// [`Error::Closed`] within [`CLOSE_CHECK_INTERVAL`] entries once the store
/// is closing.
struct Merged<'a> {
    cursor: MergeCursor,
    lifecycle: &'a Lifecycle,
    count: u64,
}

impl Iterator for Merged<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.count > 0
            && self.count.is_multiple_of(CLOSE_CHECK_INTERVAL)
            && self.lifecycle.is_closing()
        {
            return Some(Err(Error::Closed));
        }
        let Some(key) = self.cursor.key() else {
            return self.cursor.status().err().map(Err);
        };
        let entry = Entry::new(key, self.cursor.value_bytes());
        self.cursor.advance();
        self.count += 1;
        Some(Ok(entry))
    }
}

/// The tables a compaction writes, closed by size and at grandparent
/// boundaries; all versions of a user key go to the same table, so the
/// output level keeps its no-overlap-by-user-key invariant.
struct Outputs<'a> {
    inner: &'a DbInner,
    task: &'a Task,
    builder: Option<(FileNumber, TableBuilder)>,
    finished: Vec<TableMeta>,
    last_user_key: Vec<u8>,
    grandparent_at: usize,
    grandparent_overlap_bytes: u64,
    seen_key: bool,
}

impl<'a> Outputs<'a> {
    fn new(inner: &'a DbInner, task: &'a Task) -> Self {
        Outputs {
            inner,
            task,
            builder: None,
            finished: Vec::new(),
            last_user_key: Vec::new(),
            grandparent_at: 0,
            grandparent_overlap_bytes: 0,
            seen_key: false,
        }
    }

    fn add(&mut self, key: InternalKeyRef<'_>, value: &[u8]) -> Result<()> {
        let new_user_key = self.builder.is_none() || key.user_key != self.last_user_key.as_slice();
        if new_user_key && self.should_close_before(key.user_key) {
            self.close_current()?;
        }
        if self.builder.is_none() {
            let number = self.inner.new_output_number();
            let builder = self.inner.create_table(number)?;
            self.builder = Some((number, builder));
        }
        if let Some((_, builder)) = &mut self.builder {
            builder.add(key, value)?;
        }
        if new_user_key {
            self.last_user_key.clear();
            self.last_user_key.extend_from_slice(key.user_key);
        }
        Ok(())
    }

    /// Whether the open output should be closed before `user_key`.
    fn should_close_before(&mut self, user_key: &[u8]) -> bool {
        let target = self.inner.opts.compaction.target_table_size_bytes;
        let grandparents = &self.task.grandparents;
        while let Some(gp) = grandparents.get(self.grandparent_at)
            && gp.largest_user_key() < user_key
        {
            if self.seen_key {
                self.grandparent_overlap_bytes += gp.size_bytes;
            }
            self.grandparent_at += 1;
        }
        self.seen_key = true;
        let Some((_, builder)) = &self.builder else {
            return false;
        };
        if self.grandparent_overlap_bytes > GRANDPARENT_OVERLAP_TABLES_MAX * target {
            self.grandparent_overlap_bytes = 0;
            return true;
        }
        builder.estimated_size_bytes() >= target
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some((number, builder)) = self.builder.take() {
            let info = match builder.finish() {
                Ok(info) => info,
                Err(e) => {
                    self.inner.fail_on_sync_error(&e);
                    self.inner.remove_tables(&[number]);
                    self.inner.release_outputs(&[number]);
                    return Err(e);
                }
            };
            self.finished.push(TableMeta::from_info(number, &info));
        }
        Ok(())
    }

    /// Closes the last output and makes every output's directory entry
    /// durable.
    fn finish(&mut self) -> Result<Vec<TableMeta>> {
        self.close_current()?;
        let dir = &self.inner.path;
        self.inner
            .fs
            .sync_dir(dir)
            .map_err(|e| Error::sync(dir, e))?;
        Ok(std::mem::take(&mut self.finished))
    }

    /// Deletes every output after a failure.
    fn abandon(&mut self) {
        let mut numbers: Vec<FileNumber> = self.finished.iter().map(|t| t.number).collect();
        if let Some((number, _)) = self.builder.take() {
            numbers.push(number);
        }
        self.finished.clear();
        self.inner.remove_tables(&numbers);
        self.inner.release_outputs(&numbers);
    }
}

impl TableMeta {
    /// The manifest's record of a table just written as `number`.
    pub(crate) fn from_info(number: FileNumber, info: &crate::sst::TableInfo) -> TableMeta {
        let p = &info.properties;
        TableMeta {
            number,
            size_bytes: info.file_size_bytes,
            smallest: p.smallest_key.clone(),
            largest: p.largest_key.clone(),
            min_seqno: p.seqno_min,
            max_seqno: p.seqno_max,
            entry_count: p.entry_count,
            tombstone_count: p.tombstone_count,
        }
    }
}
