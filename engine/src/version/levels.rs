//! [`Version`]: an immutable snapshot of the level structure.
//!
//! Invariants, checked every time an edit is applied (so a manifest that
//! breaks them is reported as corrupt rather than served):
//!
//! - every table is well formed ([`TableMeta::check`]) and its number is
//!   below `next_file_number`; no number appears twice;
//! - L0 is ordered newest first: `max_seqno` descending, then file number
//!   descending. L0 tables may overlap;
//! - each of L1.. is sorted by smallest key and its tables do not overlap
//!   *by user key*: every version of a user key lives in one table of the
//!   level, so a point lookup reads at most one table per level;
//! - `flushed_offset`, `last_seqno` and `next_file_number` never decrease.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::key::{SeqNo, cmp_encoded};

use super::{FileNumber, Level, NUM_LEVELS, TableMeta, VersionEdit};

/// An immutable snapshot of the tables of every level and the counters
/// recorded with them. Shared as `Arc<Version>`; a table stays live while
/// any `Version` holding it is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    levels: Vec<Vec<Arc<TableMeta>>>,
    flushed_offset: u64,
    last_seqno: SeqNo,
    next_file_number: FileNumber,
    ttl_ms: Option<u64>,
}

impl Default for Version {
    fn default() -> Self {
        Version {
            levels: vec![Vec::new(); NUM_LEVELS],
            flushed_offset: 0,
            last_seqno: SeqNo(0),
            next_file_number: FileNumber(1),
            ttl_ms: None,
        }
    }
}

impl Version {
    /// An empty version: no tables, offsets zero, next file number 1.
    #[must_use]
    pub fn empty() -> Self {
        Version::default()
    }

    /// The changelog offset below which every write is in a table.
    #[must_use]
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// The last sequence number recorded in the manifest.
    #[must_use]
    pub fn last_seqno(&self) -> SeqNo {
        self.last_seqno
    }

    /// The time to live of a TTL store in milliseconds, `None` for a
    /// plain store (manifest tag 7).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(varve_db::internals::version::Version::empty().ttl_ms(), None);
    /// ```
    #[must_use]
    pub fn ttl_ms(&self) -> Option<u64> {
        self.ttl_ms
    }

    /// The next unused file number recorded in the manifest.
    #[must_use]
    pub fn next_file_number(&self) -> FileNumber {
        self.next_file_number
    }

    /// The tables of `level` in search order (empty for a missing level).
    #[must_use]
    pub fn tables(&self, level: Level) -> &[Arc<TableMeta>] {
        self.levels.get(level.index()).map_or(&[], Vec::as_slice)
    }

    /// Total size of the tables of `level` (saturating: each table is at
    /// most [`TABLE_SIZE_BYTES_MAX`](super::TABLE_SIZE_BYTES_MAX), so a
    /// real level never comes near it).
    #[must_use]
    pub fn level_size_bytes(&self, level: Level) -> u64 {
        self.tables(level)
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(t.size_bytes))
    }

    /// The numbers of every table in this version, ascending.
    #[must_use]
    pub fn all_table_numbers(&self) -> Vec<FileNumber> {
        let mut numbers: Vec<_> = self.levels.iter().flatten().map(|t| t.number).collect();
        numbers.sort_unstable();
        numbers
    }

    /// The tables that may hold `user_key`, in the order a lookup must read
    /// them: L0 newest first, then at most one table per deeper level.
    #[must_use]
    pub fn tables_for_key(&self, user_key: &[u8]) -> Vec<(Level, Arc<TableMeta>)> {
        self.tables_for_key_iter(user_key)
            .map(|(level, table)| (level, Arc::clone(table)))
            .collect()
    }

    /// [`tables_for_key`](Self::tables_for_key) without collecting them:
    /// what a point read walks, lazily, so that it stops at the first
    /// table that has the key and neither allocates nor clones.
    pub fn tables_for_key_iter<'a>(
        &'a self,
        user_key: &'a [u8],
    ) -> impl Iterator<Item = (Level, &'a Arc<TableMeta>)> + 'a {
        let level0 = self.levels[0]
            .iter()
            .filter(|t| t.contains_user_key(user_key))
            .map(|t| (Level(0), t));
        let deeper = Level::all()
            .zip(&self.levels)
            .skip(1)
            .filter_map(move |(level, tables)| {
                let at = tables.partition_point(|t| t.largest_user_key() < user_key);
                let table = tables
                    .get(at)
                    .filter(|t| t.smallest_user_key() <= user_key)?;
                Some((level, table))
            });
        level0.chain(deeper)
    }

    /// The tables of `level` whose user-key range meets
    /// `smallest_user_key..=largest_user_key`, in the level's order.
    #[must_use]
    pub fn overlapping_tables(
        &self,
        level: Level,
        smallest_user_key: &[u8],
        largest_user_key: &[u8],
    ) -> Vec<Arc<TableMeta>> {
        let meets = |t: &Arc<TableMeta>| {
            t.smallest_user_key() <= largest_user_key && smallest_user_key <= t.largest_user_key()
        };
        let tables = self.tables(level);
        if level.0 == 0 {
            return tables.iter().filter(|t| meets(t)).cloned().collect();
        }
        let start = tables.partition_point(|t| t.largest_user_key() < smallest_user_key);
        tables[start..]
            .iter()
            .take_while(|t| meets(t))
            .cloned()
            .collect()
    }

    /// The version that results from applying `edit`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the edit is malformed or breaks an
    /// invariant (see the module documentation); `self` is unchanged.
    pub fn apply(&self, edit: &VersionEdit) -> Result<Version> {
        self.apply_edit(edit).map_err(Error::InvalidArgument)
    }

    /// Like [`apply`](Self::apply), with the problem as plain text so the
    /// manifest reader can report it as corruption.
    pub(crate) fn apply_edit(&self, edit: &VersionEdit) -> Result<Version, String> {
        edit.check()?;
        let mut next = self.clone();
        next.apply_counters(edit)?;
        for (level, number) in &edit.deleted {
            let tables = &mut next.levels[level.index()];
            let at = tables.iter().position(|t| t.number == *number);
            let at =
                at.ok_or_else(|| format!("deletes table {number}, which is not in {level}"))?;
            tables.remove(at);
        }
        for (level, table) in &edit.added {
            next.levels[level.index()].push(Arc::new(table.clone()));
        }
        next.sort_levels();
        next.check_tables()?;
        Ok(next)
    }

    fn apply_counters(&mut self, edit: &VersionEdit) -> Result<(), String> {
        if let Some(ttl_ms) = edit.ttl_ms {
            self.ttl_ms = Some(ttl_ms);
        }
        if let Some(offset) = edit.flushed_offset {
            if offset < self.flushed_offset {
                let old = self.flushed_offset;
                return Err(format!("flushed offset moves back from {old} to {offset}"));
            }
            self.flushed_offset = offset;
        }
        if let Some(seqno) = edit.last_seqno {
            if seqno < self.last_seqno {
                let old = self.last_seqno.0;
                return Err(format!("last seqno moves back from {old} to {}", seqno.0));
            }
            self.last_seqno = seqno;
        }
        if let Some(number) = edit.next_file_number {
            if number < self.next_file_number {
                let old = self.next_file_number;
                return Err(format!(
                    "next file number moves back from {old} to {number}"
                ));
            }
            self.next_file_number = number;
        }
        Ok(())
    }

    fn sort_levels(&mut self) {
        self.levels[0].sort_by(|a, b| {
            b.max_seqno
                .cmp(&a.max_seqno)
                .then_with(|| b.number.cmp(&a.number))
        });
        for tables in self.levels.iter_mut().skip(1) {
            tables.sort_by(|a, b| cmp_encoded(&a.smallest, &b.smallest));
        }
    }

    /// Checks table numbers and the L1+ non-overlap invariant.
    fn check_tables(&self) -> Result<(), String> {
        let numbers = self.all_table_numbers();
        if let Some(pair) = numbers.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!("table {} appears twice", pair[0]));
        }
        if let Some(&max) = numbers.last()
            && max >= self.next_file_number
        {
            let next = self.next_file_number;
            return Err(format!(
                "table {max} is not below the next file number {next}"
            ));
        }
        for (level, tables) in Level::all().zip(&self.levels).skip(1) {
            for pair in tables.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                if a.largest_user_key().cmp(b.smallest_user_key()) != Ordering::Less {
                    return Err(format!(
                        "tables {} and {} overlap in {level}",
                        a.number, b.number
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::test_util::table;

    fn add(level: u8, t: TableMeta) -> (Level, TableMeta) {
        (Level(level), t)
    }

    fn base() -> Version {
        let edit = VersionEdit {
            next_file_number: Some(FileNumber(100)),
            added: vec![
                add(0, table(1, b"a", b"z", 1, 10)),
                add(0, table(3, b"k", b"p", 21, 30)),
                add(0, table(2, b"m", b"q", 11, 20)),
                add(1, table(5, b"n", b"r", 1, 5)),
                add(1, table(4, b"a", b"f", 1, 5)),
                add(2, table(6, b"b", b"d", 1, 2)),
                add(2, table(7, b"o", b"x", 1, 2)),
            ],
            ..VersionEdit::default()
        };
        Version::empty().apply(&edit).unwrap()
    }

    fn numbers(found: &[(Level, Arc<TableMeta>)]) -> Vec<(u8, u64)> {
        found.iter().map(|(l, t)| (l.0, t.number.0)).collect()
    }

    #[test]
    fn l0_newest_first_and_l1_sorted() {
        let v = base();
        let l0: Vec<_> = v.tables(Level(0)).iter().map(|t| t.number.0).collect();
        assert_eq!(l0, [3, 2, 1]);
        let l1: Vec<_> = v.tables(Level(1)).iter().map(|t| t.number.0).collect();
        assert_eq!(l1, [4, 5]);
        assert_eq!(v.level_size_bytes(Level(1)), 1004 + 1005);
        assert_eq!(v.level_size_bytes(Level(9)), 0);
        let all: Vec<_> = v.all_table_numbers().iter().map(|n| n.0).collect();
        assert_eq!(all, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn tables_for_key_search_order() {
        let v = base();
        assert_eq!(
            numbers(&v.tables_for_key(b"o")),
            [(0, 3), (0, 2), (0, 1), (1, 5), (2, 7)]
        );
        assert_eq!(numbers(&v.tables_for_key(b"c")), [(0, 1), (1, 4), (2, 6)]);
        assert_eq!(numbers(&v.tables_for_key(b"g")), [(0, 1)]);
        assert!(v.tables_for_key(b"zz").is_empty());
    }

    #[test]
    fn overlapping_tables_by_level() {
        let v = base();
        let nums = |ts: Vec<Arc<TableMeta>>| ts.iter().map(|t| t.number.0).collect::<Vec<_>>();
        assert_eq!(nums(v.overlapping_tables(Level(0), b"a", b"b")), [1]);
        assert_eq!(nums(v.overlapping_tables(Level(1), b"e", b"n")), [4, 5]);
        assert_eq!(
            nums(v.overlapping_tables(Level(1), b"g", b"m")),
            Vec::<u64>::new()
        );
        assert_eq!(nums(v.overlapping_tables(Level(2), b"a", b"zz")), [6, 7]);
    }

    #[test]
    fn l1_overlap_rejected() {
        let v = base();
        let edit = VersionEdit {
            added: vec![add(1, table(8, b"f", b"h", 1, 1))],
            ..VersionEdit::default()
        };
        let err = v.apply_edit(&edit).unwrap_err();
        assert!(err.contains("overlap in L1"), "{err}");
        // Same user key at a boundary is an overlap too.
        let edit = VersionEdit {
            added: vec![add(2, table(8, b"d", b"e", 3, 4))],
            ..VersionEdit::default()
        };
        assert!(v.apply_edit(&edit).is_err());
        // L0 may overlap freely.
        let edit = VersionEdit {
            added: vec![add(0, table(8, b"a", b"z", 31, 40))],
            ..VersionEdit::default()
        };
        assert!(v.apply_edit(&edit).is_ok());
    }

    #[test]
    fn delete_and_move() {
        let v = base();
        let mut moved = (*v.tables(Level(1))[0]).clone();
        moved.number = FileNumber(4);
        let edit = VersionEdit {
            deleted: vec![(Level(1), FileNumber(4)), (Level(0), FileNumber(1))],
            added: vec![add(3, moved)],
            ..VersionEdit::default()
        };
        let next = v.apply(&edit).unwrap();
        assert_eq!(next.tables(Level(3)).len(), 1);
        assert_eq!(next.tables(Level(0)).len(), 2);
        // The original is untouched.
        assert_eq!(v.tables(Level(1)).len(), 2);
    }

    #[test]
    fn bad_edits_rejected() {
        let v = base();
        let cases = [
            VersionEdit {
                deleted: vec![(Level(2), FileNumber(4))],
                ..VersionEdit::default()
            },
            VersionEdit {
                added: vec![add(3, table(4, b"a", b"b", 1, 1))],
                ..VersionEdit::default()
            },
            VersionEdit {
                added: vec![add(3, table(100, b"a", b"b", 1, 1))],
                ..VersionEdit::default()
            },
            VersionEdit {
                next_file_number: Some(FileNumber(50)),
                ..VersionEdit::default()
            },
        ];
        for edit in cases {
            assert!(v.apply(&edit).is_err(), "{edit:?}");
        }
        let forward = VersionEdit {
            flushed_offset: Some(10),
            last_seqno: Some(SeqNo(10)),
            ..VersionEdit::default()
        };
        let v = v.apply(&forward).unwrap();
        for back in [
            VersionEdit {
                flushed_offset: Some(9),
                ..VersionEdit::default()
            },
            VersionEdit {
                last_seqno: Some(SeqNo(9)),
                ..VersionEdit::default()
            },
        ] {
            assert!(v.apply(&back).is_err());
        }
    }
}
