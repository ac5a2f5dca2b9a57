//! The keep/drop rules of compaction and flush, as a pure stream.
//!
//! [`DropRules`] wraps an iterator of internal entries in merged order
//! (user key ascending, then sequence number descending) and yields the
//! entries to keep. It reads no files and writes none: the compaction job
//! and the flush feed it merged entries and write what comes out, so the
//! rules are tested here without files (as lsm-tree's `CompactionStream`
//! is). The rules are described in `docs/COMPACTION.md`:
//!
//! ```text
//! hidden         := the previous input entry is a newer version of the same
//!                   user key, and its seqno is ≤ oldest
//! dead tombstone := kind = delete and seqno ≤ oldest and nothing below may hold the key
//! expired put    := kind = put and the TTL rule says its value has expired
//!
//! hidden, dead tombstone          → dropped
//! expired put (not hidden)        → a tombstone, or dropped if seqno ≤ oldest
//!                                   and nothing below may hold the key
//! anything else                   → kept as it is
//! ```

use bytes::Bytes;

use crate::error::Result;
use crate::key::{InternalKeyRef, SeqNo, ValueKind};
use crate::ttl::{Expiry, Stored};

/// One internal entry, owned: what flows through a [`DropRules`] stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The user's key.
    pub(crate) user_key: Bytes,
    /// The sequence number of the write.
    pub(crate) seqno: SeqNo,
    /// Put or delete.
    pub(crate) kind: ValueKind,
    /// The stored value (empty for a delete).
    pub(crate) value: Bytes,
}

impl Entry {
    /// An owned copy of `key` with `value`.
    pub(crate) fn new(key: InternalKeyRef<'_>, value: Bytes) -> Entry {
        Entry {
            user_key: Bytes::copy_from_slice(key.user_key),
            seqno: key.seqno,
            kind: key.kind,
            value,
        }
    }

    /// The entry's internal key, borrowed.
    pub(crate) fn key(&self) -> InternalKeyRef<'_> {
        InternalKeyRef {
            user_key: &self.user_key,
            seqno: self.seqno,
            kind: self.kind,
        }
    }
}

/// What a [`DropRules`] stream may drop, fixed when it starts.
pub(crate) struct Retention<F> {
    /// The smallest sequence number any reader may read at: the oldest
    /// live snapshot, or what new reads see if that is older. Every
    /// version newer than it is kept; at or below it, only the newest
    /// version of each key. Read once, before the stream starts, so that a
    /// snapshot taken later (at a higher number) is covered.
    pub(crate) oldest_snapshot: SeqNo,
    /// The TTL rule of a TTL store as of the start (`None`: values never
    /// expire here).
    pub(crate) expiry: Option<Expiry>,
    /// Whether an older version of a user key may lie outside the input,
    /// below the output (in a deeper level the merge does not read). A
    /// tombstone, or an expired put, is dropped only where this says no;
    /// a flush, with older tables everywhere below, answers yes for
    /// every key.
    pub(crate) may_exist_below: F,
}

/// An iterator adaptor applying the keep/drop rules to merged entries.
///
/// Input errors are passed on, and the stream ends after the first one.
pub(crate) struct DropRules<I, F> {
    input: I,
    rules: Retention<F>,
    /// The user key of the previous input entry.
    user_key: Bytes,
    /// The sequence number of the previous input entry, if it had
    /// `user_key` (`None` before the first entry).
    newer_seqno: Option<SeqNo>,
    expired_count: u64,
    done: bool,
}

impl<I, F> DropRules<I, F>
where
    I: Iterator<Item = Result<Entry>>,
    F: FnMut(&[u8]) -> bool,
{
    /// Applies `rules` to `input`, which must be in internal-key order.
    pub(crate) fn new(input: I, rules: Retention<F>) -> Self {
        DropRules {
            input,
            rules,
            user_key: Bytes::new(),
            newer_seqno: None,
            expired_count: 0,
            done: false,
        }
    }

    /// Expired puts met so far (turned into tombstones or dropped).
    pub(crate) fn expired_count(&self) -> u64 {
        self.expired_count
    }

    /// What becomes of `entry`: itself, a tombstone in its place, or
    /// nothing.
    fn decide(&mut self, entry: Entry) -> Option<Entry> {
        let newer = self.newer_seqno.filter(|_| entry.user_key == self.user_key);
        if newer.is_none() {
            self.user_key = entry.user_key.clone();
        }
        self.newer_seqno = Some(entry.seqno);
        let oldest = self.rules.oldest_snapshot;
        if newer.is_some_and(|n| n <= oldest) {
            return None; // hidden
        }
        match entry.kind {
            ValueKind::Delete => {
                let dead = entry.seqno <= oldest && !(self.rules.may_exist_below)(&entry.user_key);
                (!dead).then_some(entry)
            }
            ValueKind::Put if expired(self.rules.expiry, &entry.value) => {
                // An expired put reads as absent. Dropping it is safe only
                // where no older version can lie below (that one would
                // reappear); elsewhere it becomes a tombstone.
                self.expired_count += 1;
                let keep = entry.seqno > oldest || (self.rules.may_exist_below)(&entry.user_key);
                keep.then(|| Entry {
                    kind: ValueKind::Delete,
                    value: Bytes::new(),
                    ..entry
                })
            }
            ValueKind::Put => Some(entry),
        }
    }
}

impl<I, F> Iterator for DropRules<I, F>
where
    I: Iterator<Item = Result<Entry>>,
    F: FnMut(&[u8]) -> bool,
{
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        while !self.done {
            match self.input.next() {
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(entry)) => {
                    if let Some(kept) = self.decide(entry) {
                        return Some(Ok(kept));
                    }
                }
            }
        }
        None
    }
}

/// Whether a stored put of a TTL store has expired (damaged values are
/// kept, for reads to report).
fn expired(expiry: Option<Expiry>, stored: &[u8]) -> bool {
    expiry.is_some_and(|e| e.read(stored) == Ok(Stored::Expired))
}

#[cfg(test)]
mod tests;
