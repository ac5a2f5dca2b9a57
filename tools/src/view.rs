//! A read-only view of a store built from its files: the tables the
//! manifest lists, plus the changelog records from the flushed offset on
//! (what `Db::open` would replay into its memtable), merged by sequence
//! number. Opening it writes nothing, unlike `Db::open`, which recovers the
//! changelog and may rotate the manifest and delete files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use varve::iter::InternalIterator;
use varve::key::{InternalKeyRef, SeqNo, ValueKind};
use varve::sst::{Table, TableIterator};

use crate::error::{Problem, Result, ToolError};
use crate::segments::{self, LogEnd};
use crate::store::{self, Manifest};

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

/// Tables and the changelog tail of a store, merged.
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

    /// Opens the view of the store in `dir` from its files. A torn tail at
    /// the end of the changelog (past its recovery point) is left out with
    /// a warning, as opening the store would cut it.
    ///
    /// # Errors
    /// [`ToolError::Engine`] / [`ToolError::Changelog`] for damage that
    /// opening the store would also refuse.
    pub fn open(dir: &Path) -> Result<View> {
        let manifest = Manifest::load(dir)?;
        let mut tables = Vec::new();
        for (_, meta) in manifest.tables() {
            tables.push(store::open_table(&store::table_path(dir, meta.number))?);
        }
        let log_dir = dir.join(varve::CHANGELOG_DIR);
        let meta = segments::read_meta(&log_dir)?;
        let flushed = manifest.version.flushed_offset();
        let mut overlay = Overlay::new();
        let end = segments::read_records(&log_dir, flushed, |offset, record| {
            let entry = Entry {
                seqno: offset + 1,
                value: record.value,
            };
            overlay_insert(&mut overlay, record.key.to_vec(), entry);
            Ok(())
        })?;
        check_log_end(&end, meta.recovery_point, flushed)?;
        Ok(View::new(tables, overlay))
    }

    /// The value of `key`, if it has one.
    ///
    /// # Errors
    /// Damage met in a table.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let mut best = self.overlay.get(key).cloned();
        for table in &self.tables {
            if let Some((seqno, kind, value)) = table.get(key, SeqNo::MAX)?
                && best.as_ref().is_none_or(|b| b.seqno < seqno.0)
            {
                let value = (kind == ValueKind::Put).then_some(value);
                best = Some(Entry {
                    seqno: seqno.0,
                    value,
                });
            }
        }
        Ok(best.and_then(|e| e.value))
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

/// Refuses a changelog damaged below its recovery point, or one that ends
/// before the flushed offset, as opening the store would.
fn check_log_end(end: &LogEnd, recovery_point: u64, flushed: u64) -> Result<()> {
    if let Some((path, bad)) = &end.damage {
        let problem = Problem::at(path, bad.position, &bad.what);
        if end.next_offset < recovery_point {
            return Err(ToolError::Invalid(format!(
                "{problem} (below the recovery point {recovery_point}: acknowledged records are damaged; see `varve verify` and `varve repair`)"
            )));
        }
        eprintln!(
            "warning: ignoring a torn tail of {} bytes at {problem}; opening the store would cut it",
            bad.tail_bytes
        );
    }
    if end.next_offset < flushed {
        return Err(ToolError::Invalid(format!(
            "the changelog ends at offset {} but the manifest's flushed offset is {flushed}",
            end.next_offset
        )));
    }
    Ok(())
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
    /// The keys from `from` (inclusive) to `to` (exclusive) that start with
    /// `prefix`.
    pub fn new(from: Option<Vec<u8>>, to: Option<Vec<u8>>, prefix: Option<&[u8]>) -> KeyRange {
        let mut range = KeyRange {
            lower: from,
            upper: to,
        };
        if let Some(prefix) = prefix {
            if range.lower.as_deref().is_none_or(|l| l < prefix) {
                range.lower = Some(prefix.to_vec());
            }
            if let Some(end) = prefix_end(prefix)
                && range.upper.as_deref().is_none_or(|u| u > end.as_slice())
            {
                range.upper = Some(end);
            }
        }
        range
    }

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

/// The first key after every key that starts with `prefix`; `None` if
/// there is none (the prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        let r = KeyRange::new(Some(b"a".to_vec()), None, Some(b"ord"));
        assert_eq!(r.lower.as_deref(), Some(&b"ord"[..]));
        assert_eq!(r.upper.as_deref(), Some(&b"ore"[..]));
        assert!(r.contains(b"order:1") && !r.contains(b"ore") && !r.contains(b"or"));
    }

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
