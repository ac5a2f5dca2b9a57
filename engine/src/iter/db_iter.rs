//! [`Iter`]: the user-facing ordered iterator over a consistent view.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::iter::merge::MergeCursor;
use crate::key::{InternalKeyRef, SeqNo, ValueKind};
use crate::metrics::StoreMetrics;
use crate::ttl::{Expiry, Stored};

/// A key and its value.
pub type KeyValue = (Bytes, Bytes);

/// One direction of an [`Iter`].
pub(crate) struct Cursor {
    merge: MergeCursor,
    snapshot: SeqNo,
    forward: bool,
    started: bool,
    done: bool,
    /// In a TTL store: the expiry rule, and the store's path for errors.
    ttl: Option<(Expiry, PathBuf)>,
}

impl Cursor {
    pub(crate) fn new(merge: MergeCursor, snapshot: SeqNo, forward: bool) -> Self {
        Cursor {
            merge,
            snapshot,
            forward,
            started: false,
            done: false,
            ttl: None,
        }
    }

    /// Makes the cursor read a TTL store's values: strip each write time,
    /// skip expired entries.
    pub(crate) fn expiring(mut self, ttl: Option<(Expiry, PathBuf)>) -> Self {
        self.ttl = ttl;
        self
    }

    /// What a reader sees of a put's stored value: `None` if expired.
    fn live_value(&self, key: &[u8], value: Bytes) -> Result<Option<Bytes>> {
        let Some((expiry, path)) = &self.ttl else {
            return Ok(Some(value));
        };
        match expiry.read(&value) {
            Ok(Stored::Live(v)) => Ok(Some(value.slice(value.len() - v.len()..))),
            Ok(Stored::Expired) => Ok(None),
            Err(what) => {
                let what = format!("key {:?}: {what}", String::from_utf8_lossy(key));
                Err(Error::corruption(path, 0, what))
            }
        }
    }

    fn start(&mut self, lower: &Bound<Bytes>, upper: &Bound<Bytes>) {
        self.started = true;
        let bound = if self.forward { lower } else { upper };
        match bound {
            Bound::Unbounded => self.merge.seek_to_end(),
            Bound::Included(k) | Bound::Excluded(k) => {
                let target = if self.forward {
                    InternalKeyRef::seek_key(k, SeqNo::MAX)
                } else {
                    InternalKeyRef {
                        user_key: k,
                        seqno: SeqNo(0),
                        kind: ValueKind::Delete,
                    }
                };
                self.merge.seek(&target);
            }
        }
    }

    /// The next visible entry in this cursor's direction within bounds.
    fn next_entry(
        &mut self,
        lower: &Bound<Bytes>,
        upper: &Bound<Bytes>,
    ) -> Option<Result<KeyValue>> {
        if self.done {
            return None;
        }
        if !self.started {
            self.start(lower, upper);
        }
        loop {
            let found = if self.forward {
                self.next_forward()
            } else {
                self.next_backward()
            };
            let Some((key, kind, value)) = found else {
                self.done = true;
                return self.merge.status().err().map(Err);
            };
            if !self.within(&key, lower, upper) {
                if self.past_end(&key, lower, upper) {
                    self.done = true;
                    return None;
                }
                continue;
            }
            if kind == ValueKind::Put {
                match self.live_value(&key, value) {
                    Ok(Some(value)) => return Some(Ok((key, value))),
                    Ok(None) => continue,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Forward: the newest visible version of the next user key.
    fn next_forward(&mut self) -> Option<(Bytes, ValueKind, Bytes)> {
        while let Some(k) = self.merge.key() {
            if k.seqno > self.snapshot {
                self.merge.advance();
                continue;
            }
            let user_key = Bytes::copy_from_slice(k.user_key);
            let kind = k.kind;
            let value = self.merge.value_bytes();
            self.merge.advance();
            while self
                .merge
                .key()
                .is_some_and(|k| k.user_key == &user_key[..])
            {
                self.merge.advance();
            }
            return Some((user_key, kind, value));
        }
        None
    }

    /// Backward: versions of a user key come oldest first; the last visible
    /// one seen is the newest.
    fn next_backward(&mut self) -> Option<(Bytes, ValueKind, Bytes)> {
        loop {
            let k = self.merge.key()?;
            let user_key = Bytes::copy_from_slice(k.user_key);
            let mut newest: Option<(ValueKind, Bytes)> = None;
            while let Some(k) = self.merge.key() {
                if k.user_key != &user_key[..] {
                    break;
                }
                if k.seqno <= self.snapshot {
                    newest = Some((k.kind, self.merge.value_bytes()));
                }
                self.merge.advance();
            }
            if let Some((kind, value)) = newest {
                return Some((user_key, kind, value));
            }
        }
    }

    fn within(&self, key: &[u8], lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> bool {
        let above_lower = match lower {
            Bound::Unbounded => true,
            Bound::Included(l) => key >= &l[..],
            Bound::Excluded(l) => key > &l[..],
        };
        let below_upper = match upper {
            Bound::Unbounded => true,
            Bound::Included(u) => key <= &u[..],
            Bound::Excluded(u) => key < &u[..],
        };
        above_lower && below_upper
    }

    /// Whether `key` (outside the bounds) is past the far end, so the
    /// cursor can stop; otherwise it is before the near end and skipped.
    fn past_end(&self, key: &[u8], lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> bool {
        if self.forward {
            match upper {
                Bound::Unbounded => false,
                Bound::Included(u) => key > &u[..],
                Bound::Excluded(u) => key >= &u[..],
            }
        } else {
            match lower {
                Bound::Unbounded => false,
                Bound::Included(l) => key < &l[..],
                Bound::Excluded(l) => key <= &l[..],
            }
        }
    }
}

/// An ordered iterator over `(key, value)` pairs of a consistent view of
/// the store (the moment it was created, or a [`Snapshot`](crate::Snapshot)).
/// Keys are in unsigned byte order; `rev()` walks backwards. It does not
/// block writers.
///
/// # Errors
/// Yields `Err` (and then ends) if a table cannot be read.
pub struct Iter {
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    front: Cursor,
    back: Option<Cursor>,
    make_back: Option<Box<dyn FnOnce() -> Cursor + Send>>,
    /// The last key each end returned, kept in a reused buffer (a clone
    /// of the returned `Bytes` would allocate its shared header).
    front_last: Option<Vec<u8>>,
    back_last: Option<Vec<u8>>,
    _holding: Option<Box<dyn std::any::Any + Send>>,
    metrics: Option<Arc<StoreMetrics>>,
    /// Entries and value bytes returned so far, added to `metrics` once,
    /// when the iterator is dropped (not one shared atomic per entry).
    entries_read: u64,
    bytes_read: u64,
}

impl Iter {
    /// An iterator over `[lower, upper]` at `seqno` that merges the
    /// children `children` makes: once now for the forward cursor, and once
    /// more, on the first step from the back, for the backward one.
    pub(crate) fn merging(
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
        seqno: SeqNo,
        ttl: Option<(Expiry, PathBuf)>,
        children: impl Fn() -> Vec<Box<dyn InternalIterator>> + Send + 'static,
    ) -> Self {
        let front =
            Cursor::new(MergeCursor::new(children(), true), seqno, true).expiring(ttl.clone());
        let make_back = Box::new(move || {
            Cursor::new(MergeCursor::new(children(), false), seqno, false).expiring(ttl)
        });
        Iter::new(lower, upper, front, make_back)
    }

    pub(crate) fn new(
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
        front: Cursor,
        make_back: Box<dyn FnOnce() -> Cursor + Send>,
    ) -> Self {
        Iter {
            lower,
            upper,
            front,
            back: None,
            make_back: Some(make_back),
            front_last: None,
            back_last: None,
            _holding: None,
            metrics: None,
            entries_read: 0,
            bytes_read: 0,
        }
    }

    /// Keeps `guard` (a snapshot registration) alive as long as the iterator.
    pub(crate) fn holding(mut self, guard: impl std::any::Any + Send) -> Self {
        self._holding = Some(Box::new(guard));
        self
    }

    /// Counts the entries this iterator returns into `metrics`.
    pub(crate) fn counting(mut self, metrics: Arc<StoreMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl Drop for Iter {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.entries_read(self.entries_read, self.bytes_read);
        }
    }
}

impl std::fmt::Debug for Iter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .finish_non_exhaustive()
    }
}

impl Iterator for Iter {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.front.next_entry(&self.lower, &self.upper)?;
        if let Ok((k, _)) = &item {
            if self.back_last.as_ref().is_some_and(|b| k[..] >= b[..]) {
                self.front.done = true;
                return None;
            }
            remember(&mut self.front_last, k);
        }
        Some(self.counted(item))
    }
}

impl Iter {
    /// `item`, counted in the entries and bytes read when it is an entry.
    fn counted(&mut self, item: Result<KeyValue>) -> Result<KeyValue> {
        if let Ok((_, v)) = &item {
            self.entries_read += 1;
            self.bytes_read += v.len() as u64;
        }
        item
    }
}

/// Copies `key` into `slot`, reusing its buffer.
fn remember(slot: &mut Option<Vec<u8>>, key: &[u8]) {
    match slot {
        Some(buf) => {
            buf.clear();
            buf.extend_from_slice(key);
        }
        None => *slot = Some(key.to_vec()),
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.back.is_none() {
            let make = self.make_back.take()?;
            self.back = Some(make());
        }
        let back = self.back.as_mut()?;
        let item = back.next_entry(&self.lower, &self.upper)?;
        if let Ok((k, _)) = &item {
            if self.front_last.as_ref().is_some_and(|f| k[..] <= f[..]) {
                back.done = true;
                return None;
            }
            remember(&mut self.back_last, k);
        }
        Some(self.counted(item))
    }
}
