//! The key-value store API that users of Samza's and Kafka Streams' state
//! stores expect, on top of [`Db`]: bulk writes, reverse ranges, entry
//! estimates, and atomic conditional writes with versions.
//!
//! A value's *version* is the sequence number of the write that made it
//! (its changelog offset plus one), so versions grow with every write and
//! survive restarts and restores.
//!
//! Conditional writes ([`Db::put_if_absent`], [`Db::remove`],
//! [`Db::compare_and_put`]) check and write while holding the write
//! leadership, so no other write commits between the check and the write.

use bytes::Bytes;
use std::ops::RangeBounds;

use crate::batch::{WriteBatch, check_key};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::iter::db_iter::Iter;
use crate::key::SeqNo;
use crate::options::WriteOptions;
use crate::read_path::Versioned;
use crate::state::{DbInner, SuperVersion};

impl Db {
    /// Writes every `(key, value)` pair as one atomic batch (Samza's
    /// `putAll`).
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn put_all<K: Into<Bytes>, V: Into<Bytes>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let mut batch = WriteBatch::new();
        for (k, v) in entries {
            batch.put(k, v);
        }
        self.write(batch, WriteOptions::default())
    }

    /// Deletes every key as one atomic batch (Samza's `deleteAll`).
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn delete_all<K: Into<Bytes>>(&self, keys: impl IntoIterator<Item = K>) -> Result<()> {
        let mut batch = WriteBatch::new();
        for k in keys {
            batch.delete(k);
        }
        self.write(batch, WriteOptions::default())
    }

    /// The entries in `range`, largest key first (Kafka Streams'
    /// `reverseRange`).
    pub fn reverse_range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> std::iter::Rev<Iter> {
        self.range(range).rev()
    }

    /// An estimate of the number of live keys (Kafka Streams'
    /// `approximateNumEntries`): entries in memtables and tables minus
    /// tombstones. Overwritten versions not yet compacted away are counted
    /// more than once, deleted keys may still count; cheap (no reads).
    pub fn approximate_num_entries(&self) -> u64 {
        let sv = self.inner().super_version();
        let mut entries: u64 = std::iter::once(&sv.mem)
            .chain(sv.imm.iter())
            .map(|m| m.len() as u64)
            .sum();
        let mut tombstones = 0u64;
        for level in crate::version::Level::all() {
            for t in sv.version.tables(level) {
                entries += t.entry_count;
                tombstones += t.tombstone_count;
            }
        }
        entries.saturating_sub(2 * tombstones)
    }

    /// The value of `key` and its version, or `None` if absent.
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn get_versioned(&self, key: impl AsRef<[u8]>) -> Result<Option<Versioned>> {
        let inner = self.inner();
        let sv = inner.super_version();
        let seqno = inner.visible();
        inner.versioned_in(&sv, key.as_ref(), seqno)
    }

    /// Writes `value` only if `key` is absent; returns the existing value
    /// otherwise (Kafka Streams' `putIfAbsent`).
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn put_if_absent(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Option<Bytes>> {
        let (key, value) = (key.into(), value.into());
        self.conditionally(&key, |found| match found {
            Some(existing) => Ok((None, Some(existing.value))),
            None => {
                let mut batch = WriteBatch::new();
                batch.put(key.clone(), value);
                Ok((Some(batch), None))
            }
        })
        .map(|(_, existing)| existing)
    }

    /// Deletes `key` and returns the value it had (Kafka Streams'
    /// `delete`, Rust's `HashMap::remove`): a conditional write that reads
    /// the key first. Nothing is written if the key is absent. For a blind
    /// delete that reads nothing, use [`Db::delete`].
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn remove(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let key = key.into();
        self.conditionally(&key, |found| match found {
            Some(existing) => {
                let mut batch = WriteBatch::new();
                batch.delete(key.clone());
                Ok((Some(batch), Some(existing.value)))
            }
            None => Ok((None, None)),
        })
        .map(|(_, old)| old)
    }

    /// Writes `value` only if `key`'s current version is
    /// `expected_version` (`None`: the key must be absent), and returns the
    /// new version: optimistic concurrency.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
    /// let v1 = db.compare_and_put("order:7", None, "NEW")?;
    /// let v2 = db.compare_and_put("order:7", Some(v1), "APPROVED")?;
    /// assert!(v2 > v1);
    /// // A writer holding the stale version loses, and nothing is written.
    /// let stale = db.compare_and_put("order:7", Some(v1), "CANCELLED");
    /// assert!(matches!(stale, Err(varve_db::Error::Conflict { .. })));
    /// assert_eq!(db.get_versioned("order:7")?.map(|v| v.version), Some(v2));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] if the version differs (nothing is written);
    /// otherwise as [`Db::write`].
    pub fn compare_and_put(
        &self,
        key: impl Into<Bytes>,
        expected_version: Option<u64>,
        value: impl Into<Bytes>,
    ) -> Result<u64> {
        let (key, value) = (key.into(), value.into());
        self.conditionally(&key, |found| {
            let actual = found.map(|f| f.version);
            if actual != expected_version {
                return Err(Error::Conflict {
                    expected: expected_version,
                    actual,
                });
            }
            let mut batch = WriteBatch::new();
            batch.put(key.clone(), value);
            Ok((Some(batch), ()))
        })
        .map(|(version, ())| version.unwrap_or(0))
    }

    /// Reads `key`, lets `decide` choose a batch to write, and writes it,
    /// all under the write leadership. Returns the sequence number of the
    /// written batch's last record (`None` if nothing was written) with
    /// `decide`'s result.
    fn conditionally<T>(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<Versioned>) -> Result<(Option<WriteBatch>, T)>,
    ) -> Result<(Option<u64>, T)> {
        check_key(key)?;
        let inner = self.inner();
        inner.check_writable()?;
        inner.with_write_leadership(|| {
            let sv = inner.super_version();
            let found = inner.versioned_in(&sv, key, inner.visible())?;
            drop(sv);
            let (batch, out) = decide(found)?;
            let version = match batch {
                Some(batch) => Some(inner.commit_exclusive(batch, false)?),
                None => None,
            };
            Ok((version, out))
        })
    }
}

impl DbInner {
    /// The newest version of `key` visible at `seqno` in `sv`, with its
    /// sequence number.
    pub(crate) fn versioned_in(
        &self,
        sv: &SuperVersion,
        key: &[u8],
        seqno: SeqNo,
    ) -> Result<Option<Versioned>> {
        check_key(key)?;
        let table = |n| self.table(n);
        sv.sources(&table)
            .versioned(key, seqno, self.opts.expiry(), &self.path)
    }
}
