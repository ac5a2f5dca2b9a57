//! [`LevelIter`]: one cursor over all the tables of a level below level 0.
//!
//! The tables of such a level are sorted and do not overlap (a user key's
//! versions are all in one table), so the level reads as one sorted run:
//! a seek picks its table by key range and opens only that one, and the
//! cursor steps into the next table (or the previous one) when it runs off
//! the end of the current. A merge over a store therefore has one child per
//! level, not one per table, whatever the store's size: a seek in a store
//! of a thousand tables seeks in a few.
//!
//! The iterator holds its [`Version`], which keeps the level's table files
//! from deletion until it is dropped, so tables can be opened late.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::key::InternalKeyRef;
use crate::sst::{Table, TableIterator};
use crate::version::{FileNumber, Level, TableMeta, Version};

/// Opens (or finds open) the table with a file number.
pub(crate) type TableOpener = Arc<dyn Fn(FileNumber) -> Result<Arc<Table>> + Send + Sync>;

/// A cursor over the tables of one level (not level 0) of a version.
pub(crate) struct LevelIter {
    version: Arc<Version>,
    level: Level,
    open: TableOpener,
    /// Index in the level of the table `current` reads.
    at: usize,
    current: Option<TableIterator>,
    error: Option<Error>,
}

impl LevelIter {
    /// A cursor, not yet positioned, over `level` (at least 1) of `version`.
    pub(crate) fn new(version: Arc<Version>, level: Level, open: TableOpener) -> LevelIter {
        debug_assert!(level.index() > 0, "level 0 tables overlap");
        LevelIter {
            version,
            level,
            open,
            at: 0,
            current: None,
            error: None,
        }
    }

    fn tables(&self) -> &[Arc<TableMeta>] {
        self.version.tables(self.level)
    }

    /// Makes the table at index `at` current, to be positioned by the
    /// caller (the one already current is kept); false, with no table
    /// current, if there is none there or it fails to open.
    fn open_at(&mut self, at: usize) -> bool {
        if self.at == at && self.current.is_some() {
            return true;
        }
        self.current = None;
        if self.error.is_some() {
            return false;
        }
        let Some(number) = self.tables().get(at).map(|t| t.number) else {
            return false;
        };
        match (self.open)(number) {
            Ok(table) => {
                self.at = at;
                self.current = Some(table.iter());
                true
            }
            Err(error) => {
                self.error = Some(error);
                false
            }
        }
    }

    /// Whether the current table stopped on an error (it then stays
    /// current, so that [`status`](InternalIterator::status) reports it).
    fn current_failed(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.status().is_err())
    }

    /// After the current table ran off its end: the first entry of the
    /// next table that has one.
    fn skip_forward(&mut self) {
        while !self.valid() && !self.current_failed() {
            let next = self.at + 1;
            if !self.open_at(next) {
                return;
            }
            if let Some(c) = &mut self.current {
                c.seek_to_first();
            }
        }
    }

    /// After the current table ran off its start: the last entry of the
    /// previous table that has one.
    fn skip_backward(&mut self) {
        while !self.valid() && !self.current_failed() {
            let Some(previous) = self.at.checked_sub(1) else {
                self.current = None;
                return;
            };
            if !self.open_at(previous) {
                return;
            }
            if let Some(c) = &mut self.current {
                c.seek_to_last();
            }
        }
    }
}

/// The decoded internal key of a table bound (checked when the table
/// entered the version; an undecodable one sorts as the empty key).
fn bound(encoded: &[u8]) -> InternalKeyRef<'_> {
    InternalKeyRef::decode(encoded).unwrap_or(InternalKeyRef::seek_key(&[], crate::key::SeqNo(0)))
}

impl InternalIterator for LevelIter {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(TableIterator::valid)
    }

    fn seek_to_first(&mut self) {
        if self.open_at(0) {
            if let Some(c) = &mut self.current {
                c.seek_to_first();
            }
            self.skip_forward();
        }
    }

    fn seek_to_last(&mut self) {
        let Some(last) = self.tables().len().checked_sub(1) else {
            self.current = None;
            return;
        };
        if self.open_at(last) {
            if let Some(c) = &mut self.current {
                c.seek_to_last();
            }
            self.skip_backward();
        }
    }

    fn seek(&mut self, target: &InternalKeyRef<'_>) {
        // The first table whose largest entry is at or after the target.
        let at = self
            .tables()
            .partition_point(|t| bound(&t.largest).cmp_internal(target).is_lt());
        if self.open_at(at) {
            if let Some(c) = &mut self.current {
                c.seek(target);
            }
            self.skip_forward();
        }
    }

    fn seek_for_prev(&mut self, target: &InternalKeyRef<'_>) {
        // The last table whose smallest entry is at or before the target.
        let after = self
            .tables()
            .partition_point(|t| bound(&t.smallest).cmp_internal(target).is_le());
        let Some(at) = after.checked_sub(1) else {
            self.current = None;
            return;
        };
        if self.open_at(at) {
            if let Some(c) = &mut self.current {
                c.seek_for_prev(target);
            }
            self.skip_backward();
        }
    }

    fn next(&mut self) {
        if let Some(c) = &mut self.current {
            c.next();
        }
        self.skip_forward();
    }

    fn prev(&mut self) {
        if let Some(c) = &mut self.current {
            c.prev();
        }
        self.skip_backward();
    }

    fn key(&self) -> InternalKeyRef<'_> {
        match &self.current {
            Some(c) => c.key(),
            None => InternalKeyRef::seek_key(&[], crate::key::SeqNo(0)),
        }
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.value())
    }

    fn value_bytes(&self) -> Bytes {
        self.current
            .as_ref()
            .map_or_else(Bytes::new, |c| c.value_bytes())
    }

    fn status(&self) -> Result<()> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        self.current.as_ref().map_or(Ok(()), |c| c.status())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use varve_changelog::fs::{FileSystem, MemFs, OpenMode};

    use super::*;
    use crate::key::{SeqNo, ValueKind};
    use crate::sst::{TableBuilder, TableOptions};
    use crate::version::{TableMeta, VersionEdit};

    /// Entries by user key and seqno.
    type Entries = BTreeMap<(Vec<u8>, u64), Vec<u8>>;

    /// Tables 1..=4 in level 1, holding keys `k000`..`k039` (ten each,
    /// the even ones with two versions), in `fs`; and what they hold.
    fn level(fs: &MemFs) -> (Arc<Version>, Entries) {
        let mut added = Vec::new();
        let mut entries = BTreeMap::new();
        for number in 1..=4u64 {
            let path = PathBuf::from(format!("/{number:06}.sst"));
            let file = fs.open_file(&path, OpenMode::CreateNew).unwrap();
            let mut builder = TableBuilder::new(file, path, TableOptions::default());
            for i in (number - 1) * 10..number * 10 {
                let key = format!("k{i:03}").into_bytes();
                let seqnos: &[u64] = if i % 2 == 0 {
                    &[200 + i, 100 + i]
                } else {
                    &[100 + i]
                };
                for &seqno in seqnos {
                    let value = format!("v{i}.{seqno}").into_bytes();
                    let ikey = InternalKeyRef {
                        user_key: &key,
                        seqno: SeqNo(seqno),
                        kind: ValueKind::Put,
                    };
                    builder.add(ikey, &value).unwrap();
                    entries.insert((key.clone(), seqno), value);
                }
            }
            let info = builder.finish().unwrap();
            added.push((Level(1), TableMeta::from_info(FileNumber(number), &info)));
        }
        let edit = VersionEdit {
            next_file_number: Some(FileNumber(10)),
            added,
            ..VersionEdit::default()
        };
        (Arc::new(Version::empty().apply(&edit).unwrap()), entries)
    }

    fn opener(fs: &MemFs) -> TableOpener {
        let fs = fs.clone();
        Arc::new(move |number: FileNumber| {
            let path = PathBuf::from(format!("/{:06}.sst", number.0));
            let file = fs
                .open_file(&path, OpenMode::Read)
                .map_err(|e| Error::io("open", &path, e))?;
            Ok(Arc::new(Table::open(file, path, number.0)?))
        })
    }

    /// Internal-key order: user key ascending, seqno descending.
    fn in_order(entries: &Entries) -> Vec<(Vec<u8>, u64)> {
        let mut keys: Vec<_> = entries.keys().cloned().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        keys
    }

    fn here(it: &LevelIter) -> (Vec<u8>, u64) {
        let key = it.key();
        (key.user_key.to_vec(), key.seqno.0)
    }

    #[test]
    fn walks_every_table_both_ways() {
        let fs = MemFs::new();
        let (version, entries) = level(&fs);
        let want = in_order(&entries);
        let mut it = LevelIter::new(version, Level(1), opener(&fs));
        it.seek_to_first();
        let mut forward = Vec::new();
        while it.valid() {
            assert_eq!(it.value(), &entries[&here(&it)][..]);
            forward.push(here(&it));
            it.next();
        }
        it.status().unwrap();
        assert_eq!(forward, want);
        it.seek_to_last();
        let mut backward = Vec::new();
        while it.valid() {
            backward.push(here(&it));
            it.prev();
        }
        backward.reverse();
        assert_eq!(backward, want);
    }

    #[test]
    fn seeks_land_in_the_right_table_and_cross_boundaries() {
        let fs = MemFs::new();
        let (version, entries) = level(&fs);
        let want = in_order(&entries);
        let mut it = LevelIter::new(version, Level(1), opener(&fs));
        for target in [
            "a", "k000", "k009", "k0095", "k010", "k019", "k020", "k039", "k0395", "z",
        ] {
            for seqno in [u64::MAX >> 8, 205, 1] {
                let t = InternalKeyRef::seek_key(target.as_bytes(), SeqNo(seqno));
                let cmp = |k: &(Vec<u8>, u64)| {
                    InternalKeyRef::seek_key(&k.0, SeqNo(k.1)).cmp_internal(&t)
                };
                it.seek(&t);
                let first = want.iter().find(|k| cmp(k).is_ge());
                assert_eq!(
                    it.valid().then(|| here(&it)).as_ref(),
                    first,
                    "seek {target}@{seqno}"
                );
                if let Some(at) = first.and_then(|f| want.iter().position(|k| k == f)) {
                    it.next();
                    assert_eq!(it.valid().then(|| here(&it)).as_ref(), want.get(at + 1));
                }
                it.seek_for_prev(&t);
                let last = want.iter().rev().find(|k| cmp(k).is_le());
                assert_eq!(
                    it.valid().then(|| here(&it)).as_ref(),
                    last,
                    "seek_for_prev {target}@{seqno}"
                );
                if let Some(at) = last.and_then(|l| want.iter().position(|k| k == l)) {
                    it.prev();
                    let before = at.checked_sub(1).and_then(|b| want.get(b));
                    assert_eq!(it.valid().then(|| here(&it)).as_ref(), before);
                }
            }
        }
    }

    #[test]
    fn a_table_that_fails_to_open_stops_the_cursor_with_its_error() {
        let fs = MemFs::new();
        let (version, _) = level(&fs);
        fs.remove_file(std::path::Path::new("/000003.sst")).unwrap();
        let mut it = LevelIter::new(version, Level(1), opener(&fs));
        it.seek_to_first();
        let mut seen = 0;
        while it.valid() {
            seen += 1;
            it.next();
        }
        assert_eq!(seen, 30, "the entries of tables 1 and 2");
        assert!(it.status().is_err());
        it.seek(&InternalKeyRef::seek_key(b"k025", SeqNo(1000)));
        assert!(!it.valid());
        assert!(it.status().is_err());
    }
}
