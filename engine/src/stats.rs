//! [`Stats`]: what a store has done and what shape it is in.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::CacheStats;
use crate::version::{Level, NUM_LEVELS, Version};

/// Running totals kept by an open store (since it was opened).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) user_bytes_written: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_bytes_written: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) trivial_moves: AtomicU64,
    pub(crate) compaction_bytes_read: AtomicU64,
    pub(crate) compaction_bytes_written: AtomicU64,
    pub(crate) compaction_errors: AtomicU64,
    pub(crate) stall_micros: AtomicU64,
    pub(crate) slowdowns: AtomicU64,
    pub(crate) stops: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The tables and bytes of one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Tables in the level.
    pub tables: usize,
    /// Bytes of those tables.
    pub size_bytes: u64,
    /// The level's target size (0 for L0 and for empty levels above the
    /// base level).
    pub target_bytes: u64,
}

/// Where the store's changelog stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangelogStats {
    /// Bytes of the changelog's segments.
    pub size_bytes: u64,
    /// The first offset still in the changelog.
    pub log_start_offset: u64,
    /// The offset the next write will get.
    pub next_offset: u64,
    /// Offset below which every write is in a table.
    pub flushed_offset: u64,
}

/// A report on a store, from [`Db::stats`](crate::Db::stats). Byte counts
/// of work done (written, read, stalled) run from when the store was
/// opened; the shape (levels, sizes) is as of the call.
///
/// Write amplification is bytes written to tables by flushes and
/// compactions over bytes of keys and values written by the user. Space
/// amplification is bytes of tables over live logical bytes (keys and
/// values of the entries a full read would return): 1.0 means no stale
/// versions, tombstones or overhead.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Per level, L0 first.
    pub levels: Vec<LevelStats>,
    /// Bytes of keys and values written by the user.
    pub user_bytes_written: u64,
    /// Memtables flushed to L0.
    pub flushes: u64,
    /// Bytes written by flushes.
    pub flush_bytes_written: u64,
    /// Compactions that rewrote tables.
    pub compactions: u64,
    /// Compactions that moved a table down a level without rewriting it.
    pub trivial_moves: u64,
    /// Bytes read by compactions.
    pub compaction_bytes_read: u64,
    /// Bytes written by compactions.
    pub compaction_bytes_written: u64,
    /// Compactions that failed (and were retried).
    pub compaction_errors: u64,
    /// (flush + compaction bytes written) / user bytes written; 0 before
    /// any write.
    pub write_amp: f64,
    /// Bytes of all tables.
    pub table_bytes: u64,
    /// Bytes of keys and values of the live entries.
    pub live_data_bytes: u64,
    /// `table_bytes / live_data_bytes`; 0 for an empty store.
    pub space_amp: f64,
    /// Estimated bytes compaction must rewrite to bring levels within target.
    pub pending_compaction_bytes: u64,
    /// Time writers spent delayed or held by write stalls, microseconds.
    pub stall_micros: u64,
    /// Write groups delayed because compaction fell behind.
    pub slowdowns: u64,
    /// Times writers were held until compaction caught up.
    pub stops: u64,
    /// The block cache.
    pub cache: CacheStats,
    /// Tables open now.
    pub open_tables: usize,
    /// The changelog.
    pub changelog: ChangelogStats,
}

pub(crate) fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl Stats {
    /// Fills in the counters and derived ratios.
    pub(crate) fn from_counters(c: &Counters) -> Stats {
        let user = Counters::get(&c.user_bytes_written);
        let flushed = Counters::get(&c.flush_bytes_written);
        let compacted = Counters::get(&c.compaction_bytes_written);
        Stats {
            user_bytes_written: user,
            flushes: Counters::get(&c.flushes),
            flush_bytes_written: flushed,
            compactions: Counters::get(&c.compactions),
            trivial_moves: Counters::get(&c.trivial_moves),
            compaction_bytes_read: Counters::get(&c.compaction_bytes_read),
            compaction_bytes_written: compacted,
            compaction_errors: Counters::get(&c.compaction_errors),
            write_amp: ratio(flushed + compacted, user),
            stall_micros: Counters::get(&c.stall_micros),
            slowdowns: Counters::get(&c.slowdowns),
            stops: Counters::get(&c.stops),
            ..Stats::default()
        }
    }

    /// Per-level tables and bytes of `version`, with `targets_bytes`.
    pub(crate) fn levels_of(
        version: &Version,
        targets_bytes: &[u64; NUM_LEVELS],
    ) -> Vec<LevelStats> {
        Level::all()
            .map(|level| LevelStats {
                tables: version.tables(level).len(),
                size_bytes: version.level_size_bytes(level),
                target_bytes: targets_bytes[level.index()],
            })
            .collect()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "level  tables       size MiB     target MiB")?;
        for (i, level) in self.levels.iter().enumerate() {
            writeln!(
                f,
                "L{i}     {:>6}  {:>13.2}  {:>13.2}",
                level.tables,
                mib(level.size_bytes),
                mib(level.target_bytes)
            )?;
        }
        writeln!(
            f,
            "write amp {:.2} (user {:.2} MiB, flush {:.2} MiB, compaction {:.2} MiB written / {:.2} MiB read)",
            self.write_amp,
            mib(self.user_bytes_written),
            mib(self.flush_bytes_written),
            mib(self.compaction_bytes_written),
            mib(self.compaction_bytes_read)
        )?;
        writeln!(
            f,
            "space amp {:.3} (tables {:.2} MiB, live data {:.2} MiB)",
            self.space_amp,
            mib(self.table_bytes),
            mib(self.live_data_bytes)
        )?;
        writeln!(
            f,
            "flushes {}, compactions {} (+{} trivial moves, {} errors), pending {:.2} MiB",
            self.flushes,
            self.compactions,
            self.trivial_moves,
            self.compaction_errors,
            mib(self.pending_compaction_bytes)
        )?;
        writeln!(
            f,
            "stalls: {:.3} s ({} slowdowns, {} stops)",
            self.stall_micros as f64 / 1e6,
            self.slowdowns,
            self.stops
        )?;
        writeln!(
            f,
            "block cache: {:.2}/{:.2} MiB, hit ratio {:.3} ({} hits, {} misses); {} open tables",
            mib(self.cache.usage_bytes),
            mib(self.cache.capacity_bytes),
            self.cache.hit_ratio(),
            self.cache.hits,
            self.cache.misses,
            self.open_tables
        )?;
        write!(
            f,
            "changelog: {:.2} MiB, offsets [{}, {}), flushed to {}",
            mib(self.changelog.size_bytes),
            self.changelog.log_start_offset,
            self.changelog.next_offset,
            self.changelog.flushed_offset
        )
    }
}
