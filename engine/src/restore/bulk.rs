//! The bulk-load path of a restore: source records are gathered in a
//! [`SortedRun`] up to the run size, and each full run is sorted, written
//! straight to a level-0 table and installed with its flushed offset, on a
//! writer thread while the next run is gathered, with no changelog
//! writes. The store's changelog stays empty and is moved to
//! start at each new flushed offset, so a crash at any point leaves a store
//! that a resumed restore can continue from its flushed offset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

use varve_changelog::RecordRef;

use super::run::{BlockPool, SortedRun};
use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::sst::TableBuilder;
use crate::state::DbInner;
use crate::version::{FileNumber, Level, TableMeta, VersionEdit};

/// Loads records into a store being restored: the calling thread gathers
/// runs, a writer thread sorts and writes each full one while the next is
/// gathered. The two meet through a channel with no room: a full run waits
/// until the writer is done with the one before, so at most two runs are
/// held at once.
pub(crate) struct BulkLoader<'scope> {
    run: SortedRun,
    run_size_bytes: usize,
    /// Arena blocks of written runs, for the next.
    pool: BlockPool,
    /// The next offset to apply: every source record below it is in the
    /// run, on its way to the writer, or in tables.
    position: u64,
    /// The flushed offset of the last run the writer installed: every
    /// record below it is in tables, and a restore stopped now resumes
    /// there.
    flushed: Arc<AtomicU64>,
    jobs: Option<SyncSender<Job>>,
    writer: Option<ScopedJoinHandle<'scope, Result<Vec<Vec<u8>>>>>,
}

/// A run for the writer, and the flushed offset its table is installed
/// with.
struct Job {
    run: SortedRun,
    flushed_offset: u64,
}

/// What [`BulkLoader::apply`] applied.
#[derive(Default)]
pub(crate) struct Applied {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

impl<'scope> BulkLoader<'scope> {
    /// A loader whose writer thread runs in `scope`, writing tables of
    /// runs of up to `run_size_bytes` (see
    /// [`SortedRun::size_bytes`]).
    ///
    /// # Errors
    /// [`Error::Io`] if the writer thread cannot be spawned.
    pub(crate) fn new<'env>(
        inner: &'env DbInner,
        scope: &'scope Scope<'scope, 'env>,
        run_size_bytes: usize,
        position: u64,
    ) -> Result<Self> {
        let (jobs, queue) = sync_channel(0);
        let pool = BlockPool::new(run_size_bytes);
        let flushed = Arc::new(AtomicU64::new(position));
        let installed = flushed.clone();
        let ahead = pool.clone();
        let writer = std::thread::Builder::new()
            .name("varve-restore-writer".into())
            .spawn_scoped(scope, move || {
                let Some(first) = prefault_until_first_job(&ahead, &queue) else {
                    return Ok(Vec::new());
                };
                write_runs(inner, first, &queue, &installed, run_size_bytes)
            })
            .map_err(|e| Error::io("spawn restore writer thread", &inner.path, e))?;
        Ok(BulkLoader {
            run: SortedRun::new(run_size_bytes, &pool),
            pool,
            run_size_bytes,
            position,
            flushed,
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }

    /// The next offset to apply.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// The flushed offset of the last run installed (at first, the offset
    /// the loader started at): a restore stopped now resumes there.
    pub(crate) fn flushed_offset(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Applies `record` if it is below `end` and counts it in `applied`;
    /// returns `false` (and applies nothing) for a record at or past
    /// `end`, which arrived after the restore took its end. Hands the run
    /// to the writer whenever it is full.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the source delivers offsets that do not
    /// increase or exceed the largest sequence number; a key or value
    /// larger than a write may hold; the writer's table and manifest
    /// errors.
    pub(crate) fn apply(
        &mut self,
        record: RecordRef<'_>,
        end: u64,
        applied: &mut Applied,
    ) -> Result<bool> {
        if record.offset >= end {
            self.position = end;
            return Ok(false);
        }
        if record.offset < self.position || record.offset >= SeqNo::MAX.0 {
            return Err(Error::InvalidArgument(format!(
                "the source delivered offset {} where offsets from {} up (and below {}) were expected",
                record.offset,
                self.position,
                SeqNo::MAX.0
            )));
        }
        self.run.push(record)?;
        self.position = record.offset + 1;
        applied.records += 1;
        applied.bytes += (record.key.len() + record.value.map_or(0, <[u8]>::len)) as u64;
        // A run in key order is handed over small, so the writer adds
        // it to its open table while the next is gathered, and the same
        // few blocks of memory carry every such run.
        let size = self.run.size_bytes();
        let due = if self.run.is_ascending() {
            size >= stream_run_bytes(self.run_size_bytes)
        } else {
            size >= self.run_size_bytes
        };
        if due {
            self.hand_over(self.position)?;
        }
        Ok(true)
    }

    /// Writes what is loaded to a table installed with the flushed offset
    /// [`position`](Self::position), waits for the writer to finish, and
    /// stops it (for a cancelled restore).
    ///
    /// # Errors
    /// Table, manifest and changelog errors.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.hand_over(self.position)?;
        self.join().map(drop)
    }

    /// Like [`stop`](Self::stop), declaring everything below `end`
    /// applied (the source holds no more records below it); returns the
    /// keys every unsorted run was cut at (none if no run was).
    ///
    /// # Errors
    /// As [`stop`](Self::stop).
    pub(crate) fn finish(mut self, end: u64) -> Result<Vec<Vec<u8>>> {
        self.position = self.position.max(end);
        self.hand_over(self.position)?;
        self.join()
    }

    /// Sends the run to the writer, to be installed with `flushed_offset`;
    /// waits while the writer is busy with the run before.
    fn hand_over(&mut self, flushed_offset: u64) -> Result<()> {
        let job = Job {
            run: std::mem::replace(
                &mut self.run,
                SortedRun::new(self.run_size_bytes, &self.pool),
            ),
            flushed_offset,
        };
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if sent {
            return Ok(());
        }
        // The writer stopped on an error: that error is the one to report.
        self.join()?;
        Err(Error::InvalidArgument(
            "the restore's writer thread stopped".into(),
        ))
    }

    /// Closes the writer's queue and waits for it to write what it holds;
    /// returns the keys its unsorted runs were cut at.
    fn join(&mut self) -> Result<Vec<Vec<u8>>> {
        self.jobs = None;
        match self.writer.take() {
            Some(writer) => match writer.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            None => Ok(Vec::new()),
        }
    }
}

/// The most a run in key order holds before it is handed over.
const STREAM_RUN_BYTES: usize = 1 << 20;

/// The size at which a run in key order is handed over: an eighth of the
/// run size, at most [`STREAM_RUN_BYTES`].
fn stream_run_bytes(run_size_bytes: usize) -> usize {
    (run_size_bytes / 8).clamp(1, STREAM_RUN_BYTES)
}

/// The table the writer keeps open while runs arrive in key order, each
/// starting above the last key of the one before.
struct OpenTable {
    number: FileNumber,
    builder: TableBuilder,
    /// The last key added.
    last_key: Vec<u8>,
    /// The flushed offset of the last run added: every record below it
    /// not in an installed table is in this one.
    flushed_offset: u64,
}

/// The writer thread: writes each run it is sent to tables, in order,
/// until the queue closes or a write fails; publishes the flushed offset
/// of each installed table in `installed`.
///
/// A run in key order whose keys start above the open table's goes into
/// that table, which is installed once it holds `target_table_size_bytes`
/// or the run size, whichever is smaller (each install is a restore
/// checkpoint), or when a run arrives that it cannot take. Any other run
/// is sorted and written to tables of its own.
fn write_runs(
    inner: &DbInner,
    first: Job,
    queue: &Receiver<Job>,
    installed: &AtomicU64,
    run_size_bytes: usize,
) -> Result<Vec<Vec<u8>>> {
    // The keys every unsorted run is cut at, from the first such run.
    let mut cuts = Vec::new();
    let mut open: Option<OpenTable> = None;
    let table_bytes = inner
        .opts
        .compaction
        .target_table_size_bytes
        .min(run_size_bytes as u64)
        .max(1);
    for mut job in std::iter::once(first).chain(queue.iter()) {
        let in_order = job.run.is_ascending() && !job.run.is_empty();
        let continues = in_order
            && open.as_ref().is_none_or(|table| {
                job.run
                    .key_bounds()
                    .is_some_and(|(first, _)| first > table.last_key.as_slice())
            });
        if !continues && let Some(table) = open.take() {
            install_open(inner, table, installed)?;
        }
        if in_order {
            let table = add_to_open(inner, open.take(), &job)?;
            if table.builder.estimated_size_bytes() >= table_bytes {
                install_open(inner, table, installed)?;
            } else {
                open = Some(table);
            }
        } else {
            flush_to(inner, &mut job.run, job.flushed_offset, &mut cuts)?;
            installed.store(job.flushed_offset, Ordering::Release);
        }
    }
    if let Some(table) = open.take() {
        install_open(inner, table, installed)?;
    }
    Ok(cuts)
}

/// How many blocks the writer thread keeps ready in the pool before the
/// first run arrives.
const PREFAULT_AHEAD_BLOCKS: usize = 2;

/// Until the first run arrives, keeps [`PREFAULT_AHEAD_BLOCKS`] blocks of
/// touched memory in `pool` for the run being gathered (its first blocks
/// would otherwise be faulted in, page by page, as records are copied
/// into them); returns that run, or `None` if the queue closed first.
fn prefault_until_first_job(pool: &BlockPool, queue: &Receiver<Job>) -> Option<Job> {
    loop {
        if pool.wants(PREFAULT_AHEAD_BLOCKS) {
            match queue.try_recv() {
                Ok(job) => return Some(job),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    if pool.prefault().is_err() {
                        // Out of mappings: the runs map what they need.
                        return queue.recv().ok();
                    }
                }
            }
        } else {
            match queue.recv_timeout(Duration::from_millis(1)) {
                Ok(job) => return Some(job),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// Adds the records of `job` (a run in key order above every key of
/// `open`) to `open`, or to a new table.
fn add_to_open(inner: &DbInner, open: Option<OpenTable>, job: &Job) -> Result<OpenTable> {
    let mut table = match open {
        Some(table) => table,
        None => {
            let number = inner.new_output_number();
            match inner.create_table(number) {
                Ok(builder) => OpenTable {
                    number,
                    builder,
                    last_key: Vec::new(),
                    flushed_offset: job.flushed_offset,
                },
                Err(e) => {
                    inner.release_outputs(&[number]);
                    return Err(e);
                }
            }
        }
    };
    if let Err(e) = job
        .run
        .add_in_order(&mut table.builder, inner.opts.value_format())
    {
        drop(table.builder);
        inner.release_outputs(&[table.number]);
        inner.remove_tables(&[table.number]);
        return Err(e);
    }
    if let Some((_, last)) = job.run.key_bounds() {
        table.last_key = last.to_vec();
    }
    table.flushed_offset = job.flushed_offset;
    Ok(table)
}

/// Finishes (and syncs) the open table, syncs the directory, installs the
/// table in level 0 with its flushed offset, moves the empty changelog
/// there, and publishes that offset in `installed`.
fn install_open(inner: &DbInner, table: OpenTable, installed: &AtomicU64) -> Result<()> {
    let OpenTable {
        number,
        builder,
        flushed_offset,
        ..
    } = table;
    let finished = builder.finish().and_then(|info| {
        inner
            .fs
            .sync_dir(&inner.path)
            .map_err(|e| Error::sync(&inner.path, e))?;
        Ok(info)
    });
    let info = match finished {
        Ok(info) => info,
        Err(e) => {
            inner.release_outputs(&[number]);
            inner.remove_tables(&[number]);
            return Err(e);
        }
    };
    tracing::debug!(
        flushed_offset,
        "restore: table of runs in key order written"
    );
    install(
        inner,
        &[number],
        vec![TableMeta::from_info(number, &info)],
        flushed_offset,
    )?;
    installed.store(flushed_offset, Ordering::Release);
    Ok(())
}

/// Writes `run` (if it holds anything) to a level-0 table and installs it
/// with `flushed_offset`; then moves the empty changelog to start there.
fn flush_to(
    inner: &DbInner,
    run: &mut SortedRun,
    flushed_offset: u64,
    cuts: &mut Vec<Vec<u8>>,
) -> Result<()> {
    if run.is_empty() {
        if inner.versions.lock().current().flushed_offset() == flushed_offset {
            return move_changelog(inner, flushed_offset);
        }
        return install(inner, &[], Vec::new(), flushed_offset);
    }
    let count = run.table_count(inner.opts.compaction.target_table_size_bytes, cuts);
    let numbers: Vec<FileNumber> = (0..count).map(|_| inner.new_output_number()).collect();
    let tables = match write_run(inner, run, &numbers, cuts) {
        Ok(tables) => tables,
        Err(e) => {
            inner.release_outputs(&numbers);
            inner.remove_tables(&numbers);
            return Err(e);
        }
    };
    tracing::debug!(flushed_offset, "restore: run written");
    install(inner, &numbers, tables, flushed_offset)
}

/// Installs `tables` (written, synced, with the directory synced) in
/// level 0 with one manifest edit whose flushed offset is
/// `flushed_offset`, releases the output `numbers` they were written
/// under (removing their files if the edit fails), and moves the empty
/// changelog to start there.
fn install(
    inner: &DbInner,
    numbers: &[FileNumber],
    tables: Vec<TableMeta>,
    flushed_offset: u64,
) -> Result<()> {
    let version = inner.versions.lock().current();
    let mut edit = VersionEdit {
        flushed_offset: Some(flushed_offset),
        last_seqno: Some(SeqNo(flushed_offset).max(version.last_seqno())),
        ..VersionEdit::default()
    };
    edit.added
        .extend(tables.into_iter().map(|table| (Level(0), table)));
    let result = inner.versions.lock().log_and_apply(edit);
    inner.release_outputs(numbers);
    if result.is_err() {
        inner.remove_tables(numbers);
    }
    result?;
    inner.install_current_version(None);
    move_changelog(inner, flushed_offset)
}

/// Writes `run` to tables numbered from `numbers` (as many as its
/// records fill, one per number at most), syncs them and the store's
/// directory, and removes the files of the numbers left unused; returns
/// the tables written.
fn write_run(
    inner: &DbInner,
    run: &mut SortedRun,
    numbers: &[FileNumber],
    cuts: &mut Vec<Vec<u8>>,
) -> Result<Vec<TableMeta>> {
    let builders = numbers
        .iter()
        .map(|&n| inner.create_table(n))
        .collect::<Result<Vec<_>>>()?;
    let infos = run.write_tables(builders, inner.opts.value_format(), cuts)?;
    let mut tables = Vec::with_capacity(infos.len());
    let mut unused = Vec::new();
    for (&number, info) in numbers.iter().zip(infos) {
        match info {
            Some(info) => tables.push(TableMeta::from_info(number, &info)),
            None => unused.push(number),
        }
    }
    inner.remove_tables(&unused);
    inner
        .fs
        .sync_dir(&inner.path)
        .map_err(|e| Error::sync(&inner.path, e))?;
    Ok(tables)
}

/// Restarts the (empty) changelog at `offset`, where the next write or
/// restored record goes.
fn move_changelog(inner: &DbInner, offset: u64) -> Result<()> {
    let log = &inner.log;
    if log.next_offset() < offset || log.log_start_offset() < offset {
        log.truncate_fully_and_start_at(offset)?;
    }
    Ok(())
}
