//! TTL stores: values that expire a fixed time after they were written,
//! like Samza's RocksDB TTL stores. The design is in `docs/TTL.md`.
//!
//! In a store opened with [`Options::ttl`](crate::Options::ttl), every value
//! in the memtable and in tables is stored as
//! `write_time_ms:u64le ‖ user value`, where the write time is the
//! changelog record's `timestamp_ms`. The changelog keeps plain user
//! values. Reads strip the prefix and treat an entry whose
//! `now_ms - write_time_ms > ttl_ms` as absent; compaction turns expired
//! puts into tombstones, or drops them where nothing older can lie below.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Size of the write-time prefix of a value in a TTL store.
pub(crate) const WRITE_TIME_SIZE_BYTES: usize = 8;

/// A source of wall-clock time in milliseconds since the Unix epoch: the
/// write time of records and the "now" of TTL expiry. A seam so tests need
/// not sleep ([`ManualClock`]).
///
/// # Examples
/// ```
/// use varve_db::{Clock, SystemClock};
/// assert!(SystemClock.now_ms() > 1_600_000_000_000);
/// ```
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock (the default).
///
/// # Examples
/// ```
/// use varve_db::Clock;
/// let a = varve_db::SystemClock.now_ms();
/// assert!(varve_db::SystemClock.now_ms() >= a);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(varve_changelog::now_ms()).unwrap_or(0)
    }
}

/// A clock that moves only when told to: for tests of expiry.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use varve_db::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), 3_000);
/// clock.set_ms(10);
/// assert_eq!(clock.now_ms(), 10);
/// ```
///
/// A TTL store whose values expire without sleeping:
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::{sync::Arc, time::Duration};
/// use varve_db::{Db, ManualClock, Options};
/// let clock = Arc::new(ManualClock::new(1_700_000_000_000));
/// let opts = Options::default().ttl(Some(Duration::from_secs(60))).clock(clock.clone());
/// let db = Db::open(dir.path(), opts)?;
/// db.put("session:1", "alive")?;
/// clock.advance(Duration::from_secs(60));
/// assert!(db.get("session:1")?.is_some()); // exactly the TTL: still there
/// clock.advance(Duration::from_millis(1));
/// assert!(db.get("session:1")?.is_none()); // expired
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `now_ms`.
    ///
    /// # Examples
    /// ```
    /// use varve_db::Clock;
    /// assert_eq!(varve_db::ManualClock::new(5).now_ms(), 5);
    /// ```
    #[must_use]
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now_ms))
    }

    /// Sets the time.
    ///
    /// # Examples
    /// ```
    /// use varve_db::Clock;
    /// let c = varve_db::ManualClock::new(5);
    /// c.set_ms(7);
    /// assert_eq!(c.now_ms(), 7);
    /// ```
    pub fn set_ms(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }

    /// Moves the time forward by `by` (saturating).
    ///
    /// # Examples
    /// ```
    /// use varve_db::Clock;
    /// let c = varve_db::ManualClock::new(5);
    /// c.advance(std::time::Duration::from_millis(3));
    /// assert_eq!(c.now_ms(), 8);
    /// ```
    pub fn advance(&self, by: Duration) {
        let by_ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(by_ms))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How the memtable and tables hold values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueFormat {
    /// The user's value, as it is.
    Plain,
    /// `write_time_ms:u64le ‖ user value` (a TTL store).
    Timestamped,
}

/// Writes the stored form of `value` written at `write_time_ms` into `buf`.
pub(crate) fn encode_timestamped(write_time_ms: u64, value: &[u8], buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&write_time_ms.to_le_bytes());
    buf.extend_from_slice(value);
}

/// The stored form of `value`, a record's value written at `timestamp_ms`,
/// in `format`: the value itself, or its timestamped form built in `buf`
/// (a negative timestamp, before 1970, counts as written at 0). The one
/// place that turns a changelog record's value into a stored value, for
/// writes, recovery and restore alike.
pub(crate) fn stored_value<'a>(
    value: &'a [u8],
    timestamp_ms: i64,
    format: ValueFormat,
    buf: &'a mut Vec<u8>,
) -> &'a [u8] {
    match format {
        ValueFormat::Plain => value,
        ValueFormat::Timestamped => {
            let write_time_ms = u64::try_from(timestamp_ms).unwrap_or(0);
            encode_timestamped(write_time_ms, value, buf);
            buf
        }
    }
}

/// Splits a stored TTL value into its write time and the user's value;
/// `None` if it is too short to hold a write time (damaged).
pub(crate) fn decode_timestamped(stored: &[u8]) -> Option<(u64, &[u8])> {
    let (time, value) = stored.split_first_chunk::<WRITE_TIME_SIZE_BYTES>()?;
    Some((u64::from_le_bytes(*time), value))
}

/// The expiry rule of a TTL store at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expiry {
    pub(crate) ttl_ms: u64,
    pub(crate) now_ms: u64,
}

/// What a stored put means to a reader of a TTL store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stored<'a> {
    /// Not expired: the user's value.
    Live(&'a [u8]),
    /// Expired: absent.
    Expired,
}

impl Expiry {
    /// Whether a value written at `write_time_ms` has expired.
    pub(crate) fn expired(&self, write_time_ms: u64) -> bool {
        self.now_ms.saturating_sub(write_time_ms) > self.ttl_ms
    }

    /// Interprets a stored put; `Err` names the damage.
    pub(crate) fn read<'a>(&self, stored: &'a [u8]) -> Result<Stored<'a>, String> {
        let (write_time_ms, value) = decode_timestamped(stored).ok_or_else(|| {
            format!(
                "a value of a TTL store holds {} bytes, fewer than its {WRITE_TIME_SIZE_BYTES}-byte write time",
                stored.len()
            )
        })?;
        if self.expired(write_time_ms) {
            Ok(Stored::Expired)
        } else {
            Ok(Stored::Live(value))
        }
    }
}

impl crate::options::Options {
    /// The value format of a store opened with these options.
    pub(crate) fn value_format(&self) -> ValueFormat {
        if self.ttl.is_some() {
            ValueFormat::Timestamped
        } else {
            ValueFormat::Plain
        }
    }

    /// The expiry rule as of now, for a TTL store.
    pub(crate) fn expiry(&self) -> Option<Expiry> {
        let ttl = self.ttl?;
        Some(Expiry {
            ttl_ms: ttl_ms(ttl),
            now_ms: self.clock.now_ms(),
        })
    }
}

/// `ttl` in whole milliseconds (saturating).
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_expiry_boundary() {
        let mut buf = Vec::new();
        encode_timestamped(1_000, b"v", &mut buf);
        assert_eq!(decode_timestamped(&buf), Some((1_000, &b"v"[..])));
        let at = |now_ms| Expiry {
            ttl_ms: 100,
            now_ms,
        };
        assert_eq!(at(1_100).read(&buf), Ok(Stored::Live(b"v")));
        assert_eq!(at(1_101).read(&buf), Ok(Stored::Expired));
        // A clock behind the write time: not expired.
        assert_eq!(at(0).read(&buf), Ok(Stored::Live(b"v")));
    }

    #[test]
    fn short_values_are_damage() {
        let e = Expiry {
            ttl_ms: 1,
            now_ms: 0,
        };
        assert!(e.read(&[1, 2, 3]).is_err());
        assert_eq!(decode_timestamped(&[0; 8]), Some((0, &[][..])));
    }

    /// An expired put compacted to a level above an older version of its
    /// key becomes a tombstone there; dropping it would bring back the
    /// older version below. Older version in L2, newer expired one
    /// compacted from L0 into L1, then L1 into L2.
    #[test]
    fn expired_put_above_an_older_version_becomes_a_tombstone() {
        use crate::compaction::Reason;
        use crate::compaction::picker::task_into;
        use crate::version::Level;
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(ManualClock::new(1_000_000));
        let opts = crate::Options::default()
            .ttl(Some(Duration::from_secs(10)))
            .clock(clock.clone())
            .compaction(crate::CompactionOptions::default().auto(false));
        let db = crate::Db::open(dir.path(), opts).unwrap();
        let inner = db.inner().clone();
        let compact = |from: u8, to: u8| {
            let version = inner.super_version().version.clone();
            let inputs = version.tables(Level(from)).to_vec();
            assert!(!inputs.is_empty(), "L{from} holds a table");
            let task = task_into(&version, Level(from), Level(to), inputs, Reason::Manual);
            inner.run_task(&task).unwrap();
            inner.super_version().version.clone()
        };
        db.put("k", "older").unwrap();
        db.flush().unwrap();
        compact(0, 2);
        clock.set_ms(0); // the clock steps back: the newer write expires first
        db.put("k", "newer").unwrap();
        db.flush().unwrap();
        clock.set_ms(10_001);
        assert_eq!(db.get("k").unwrap(), None);

        let version = compact(0, 1);
        let (l1, l2) = (version.tables(Level(1)), version.tables(Level(2)));
        assert_eq!((l1.len(), l2.len()), (1, 1));
        assert_eq!((l1[0].entry_count, l1[0].tombstone_count), (1, 1));
        assert_eq!(db.get("k").unwrap(), None, "the older version stays hidden");
        assert_eq!(db.iter().count(), 0);

        // Merged with the older version at the lowest level: both go.
        let version = compact(1, 2);
        assert!(version.tables(Level(1)).is_empty());
        assert!(version.tables(Level(2)).is_empty());
        assert_eq!(db.get("k").unwrap(), None);
        assert_eq!(db.approximate_num_entries(), 0);
    }

    /// The TTL survives manifest rotation (it is part of every snapshot
    /// record) and a zero TTL in an edit is refused.
    #[test]
    fn ttl_is_kept_across_manifest_rotation() {
        use crate::version::{VersionEdit, VersionSet, VersionSetOptions};
        let fs: std::sync::Arc<dyn varve_changelog::fs::FileSystem> =
            std::sync::Arc::new(varve_changelog::fs::MemFs::new());
        let dir = std::path::Path::new("/store");
        let options = VersionSetOptions {
            manifest_rotate_size_bytes: 64,
            ttl_ms: Some(5_000),
        };
        let mut set = VersionSet::create(fs.clone(), dir, options).unwrap();
        let first = set.manifest_file_number();
        for seqno in 1..=20u64 {
            let edit = VersionEdit {
                last_seqno: Some(crate::key::SeqNo(seqno)),
                ..VersionEdit::default()
            };
            set.log_and_apply(edit).unwrap();
        }
        assert_ne!(set.manifest_file_number(), first, "the manifest rotated");
        drop(set);
        let set = VersionSet::open(fs, dir, VersionSetOptions::default()).unwrap();
        assert_eq!(set.current().ttl_ms(), Some(5_000));
        let zero = VersionEdit {
            ttl_ms: Some(0),
            ..VersionEdit::default()
        };
        assert!(zero.check().is_err());
        assert!(VersionEdit::decode(&zero.encode()).is_err());
    }
}
