//! The merge `varve repair` writes its new store from: the tables that
//! verify, plus an overlay of what was salvaged from damaged tables and
//! read from the changelog, newest sequence number first. Repair reads a
//! damaged store's files directly, which the engine refuses to open; every
//! other command reads stores through the engine (`crate::open`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use varve_db::internals::iter::InternalIterator;
use varve_db::internals::key::{InternalKeyRef, SeqNo, ValueKind};
use varve_db::internals::sst::{Table, TableIterator};

use crate::error::Result;

/// One version of a key: its sequence number and value (`None` = deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The sequence number (changelog offset + 1).
    pub seqno: u64,
    /// The value, or `None` for a tombstone.
    pub value: Option<Bytes>,
}

/// Newest version of each key from sources outside the tables.
pub type Overlay = BTreeMap<Vec<u8>, Entry>;

/// Adds `entry` for `key` to `overlay` unless a newer version is there.
pub fn overlay_insert(overlay: &mut Overlay, key: Vec<u8>, entry: Entry) {
    match overlay.get(&key) {
        Some(old) if old.seqno >= entry.seqno => {}
        _ => {
            overlay.insert(key, entry);
        }
    }
}

/// The tables repair keeps whole, with the salvaged overlay on top.
#[derive(Debug)]
pub struct View {
    tables: Vec<Arc<Table>>,
    overlay: Overlay,
}

impl View {
    /// A view of `tables` with `overlay` on top (newest seqno wins).
    pub fn new(tables: Vec<Arc<Table>>, overlay: Overlay) -> View {
        View { tables, overlay }
    }

    /// The live entries in `range`, in key order (or reverse).
    pub fn scan(&self, range: &KeyRange, reverse: bool) -> Scan {
        let tail: Vec<(Vec<u8>, Entry)> = if range.is_empty() {
            Vec::new()
        } else {
            let bounds = (range.lower_bound(), range.upper_bound());
            let mut tail: Vec<_> = self
                .overlay
                .range::<[u8], _>(bounds)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
            if reverse {
                tail.reverse();
            }
            tail
        };
        Scan {
            tables: TableMerge::new(&self.tables, range, reverse),
            tail: tail.into_iter().peekable(),
            table_next: None,
            range: range.clone(),
            reverse,
            done: range.is_empty(),
        }
    }
}

/// A range of keys: `lower` inclusive, `upper` exclusive, either unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Smallest key included.
    pub lower: Option<Vec<u8>>,
    /// First key excluded.
    pub upper: Option<Vec<u8>>,
}

impl KeyRange {
    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.lower.as_deref().is_none_or(|l| key >= l)
            && self.upper.as_deref().is_none_or(|u| key < u)
    }

    fn is_empty(&self) -> bool {
        matches!((&self.lower, &self.upper), (Some(l), Some(u)) if l >= u)
    }

    fn lower_bound(&self) -> std::ops::Bound<&[u8]> {
        self.lower
            .as_deref()
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included)
    }

    fn upper_bound(&self) -> std::ops::Bound<&[u8]> {
        self.upper
            .as_deref()
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded)
    }
}

/// A cursor over the live entries of a [`View`].
pub struct Scan {
    tables: TableMerge,
    tail: std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Entry)>>,
    table_next: Option<(Vec<u8>, Entry)>,
    range: KeyRange,
    reverse: bool,
    done: bool,
}

impl Scan {
    /// The next live key and value.
    ///
    /// # Errors
    /// Damage met in a table.
    pub fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Bytes)>> {
        while !self.done {
            if self.table_next.is_none() {
                self.table_next = self.tables.next_entry()?;
            }
            let Some((key, entry)) = self.pick() else {
                self.done = true;
                break;
            };
            if !self.range.contains(&key) {
                self.done = true;
                break;
            }
            if let Some(value) = entry.value {
                return Ok(Some((key, value)));
            }
        }
        Ok(None)
    }

    /// Takes the next entry from the tables or the tail, whichever comes
    /// first in scan order; for the same key, the newer one.
    fn pick(&mut self) -> Option<(Vec<u8>, Entry)> {
        let order = match (&self.table_next, self.tail.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((tk, _)), Some((lk, _))) if self.reverse => lk.cmp(tk),
            (Some((tk, _)), Some((lk, _))) => tk.cmp(lk),
        };
        match order {
            std::cmp::Ordering::Less => self.table_next.take(),
            std::cmp::Ordering::Greater => self.tail.next(),
            std::cmp::Ordering::Equal => {
                let table = self.table_next.take()?;
                let tail = self.tail.next()?;
                Some(if table.1.seqno > tail.1.seqno {
                    table
                } else {
                    tail
                })
            }
        }
    }
}

/// The newest version of each user key over several tables.
struct TableMerge {
    iters: Vec<TableIterator>,
    reverse: bool,
}

impl TableMerge {
    fn new(tables: &[Arc<Table>], range: &KeyRange, reverse: bool) -> TableMerge {
        let mut iters: Vec<TableIterator> = tables.iter().map(Table::iter).collect();
        for it in &mut iters {
            position(it, range, reverse);
        }
        TableMerge { iters, reverse }
    }

    fn status(&self) -> Result<()> {
        for it in &self.iters {
            it.status()?;
        }
        Ok(())
    }

    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Entry)>> {
        self.status()?;
        let user_key = {
            let mut valid = self.iters.iter().filter(|it| it.valid());
            let Some(first) = valid.next() else {
                return Ok(None);
            };
            let mut best = first.key().user_key;
            for it in valid {
                let key = it.key().user_key;
                if (key < best) != self.reverse && key != best {
                    best = key;
                }
            }
            best.to_vec()
        };
        let mut newest: Option<Entry> = None;
        for it in &mut self.iters {
            while it.valid() && it.key().user_key == user_key.as_slice() {
                let key = it.key();
                if newest.as_ref().is_none_or(|n| n.seqno < key.seqno.0) {
                    let value = (key.kind == ValueKind::Put).then(|| it.value_bytes());
                    newest = Some(Entry {
                        seqno: key.seqno.0,
                        value,
                    });
                }
                if self.reverse { it.prev() } else { it.next() }
            }
        }
        self.status()?;
        Ok(newest.map(|entry| (user_key, entry)))
    }
}

/// Positions `it` at the first entry of `range` in scan order.
fn position(it: &mut TableIterator, range: &KeyRange, reverse: bool) {
    if !reverse {
        match &range.lower {
            Some(lower) => it.seek(&InternalKeyRef::seek_key(lower, SeqNo::MAX)),
            None => it.seek_to_first(),
        }
        return;
    }
    match &range.upper {
        Some(upper) => {
            it.seek_for_prev(&InternalKeyRef::seek_key(upper, SeqNo::MAX));
            while it.valid() && it.key().user_key >= upper.as_slice() {
                it.prev();
            }
        }
        None => it.seek_to_last(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_keeps_the_newest() {
        let mut o = Overlay::new();
        let e = |seqno, v: &'static str| Entry {
            seqno,
            value: Some(Bytes::from(v)),
        };
        overlay_insert(&mut o, b"k".to_vec(), e(5, "new"));
        overlay_insert(&mut o, b"k".to_vec(), e(3, "old"));
        assert_eq!(o[&b"k".to_vec()].value.as_deref(), Some(&b"new"[..]));
    }
}
