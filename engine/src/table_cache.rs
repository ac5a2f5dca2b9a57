//! [`TableCache`]: the open tables of a store, bounded in number.
//!
//! Opening a table reads its footer, index, filter and properties, so open
//! tables are kept; past the bound, one not used lately is closed (its
//! handle lives on in any reader still holding it).
//!
//! Every point read looks its tables up here, so the lookup is read-mostly:
//! readers share a read lock and mark the table used with a reference bit
//! (stored only when not already set, so a hot table's line is not written
//! on every read); opening a table takes the write lock and picks its
//! victim CLOCK-wise, the first unmarked table, clearing marks on the way.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use varve_changelog::fs::{FileSystem, OpenMode};

use crate::cache::{BlockCache, IntMap};
use crate::error::{Error, Result};
use crate::sst::Table;
use crate::version::{FileNumber, table_file_name};

/// The table with `number` of the store in `dir`: from `tables` if it is
/// open, else opened (its blocks cached in `block_cache`) and kept there.
pub(crate) fn open_table(
    tables: &TableCache,
    fs: &dyn FileSystem,
    dir: &Path,
    number: FileNumber,
    block_cache: Option<&Arc<BlockCache>>,
) -> Result<Arc<Table>> {
    if let Some(t) = tables.get(number) {
        return Ok(t);
    }
    let path = dir.join(table_file_name(number));
    let file = fs
        .open_file(&path, OpenMode::Read)
        .map_err(|e| Error::io("open table", &path, e))?;
    let table = Arc::new(Table::open_with_cache(
        file,
        path,
        number.0,
        block_cache.cloned(),
    )?);
    tables.insert(number, table.clone());
    Ok(table)
}

struct OpenTable {
    table: Arc<Table>,
    /// Used since the last eviction sweep passed it.
    referenced: AtomicBool,
}

/// Open tables by file number, at most `capacity` of them.
pub(crate) struct TableCache {
    open: RwLock<IntMap<FileNumber, OpenTable>>,
    capacity: usize,
}

impl TableCache {
    pub(crate) fn new(capacity: usize) -> TableCache {
        TableCache {
            open: RwLock::default(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&self, number: FileNumber) -> Option<Arc<Table>> {
        let open = self.open.read();
        let entry = open.get(&number)?;
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        Some(Arc::clone(&entry.table))
    }

    /// Adds `table`, closing one not used lately if full. The sweep for it
    /// is linear (at most two passes: the first clears every mark), but
    /// runs only when a table is opened.
    pub(crate) fn insert(&self, number: FileNumber, table: Arc<Table>) {
        let mut open = self.open.write();
        if open.len() >= self.capacity && !open.contains_key(&number) {
            let victim = open
                .iter()
                .find(|(_, entry)| !entry.referenced.swap(false, Ordering::Relaxed))
                .or_else(|| open.iter().next())
                .map(|(&victim, _)| victim);
            if let Some(victim) = victim {
                open.remove(&victim);
            }
        }
        let entry = OpenTable {
            table,
            referenced: AtomicBool::new(false),
        };
        open.insert(number, entry);
    }

    pub(crate) fn remove(&self, number: FileNumber) {
        self.open.write().remove(&number);
    }

    pub(crate) fn len(&self) -> usize {
        self.open.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{InternalKeyRef, SeqNo};
    use crate::sst::{TableBuilder, TableOptions};
    use std::path::PathBuf;
    use varve_changelog::fs::{FileSystem, MemFs, OpenMode};

    fn table(fs: &MemFs, n: u64) -> Arc<Table> {
        let path = PathBuf::from(format!("/{n:06}.sst"));
        let file = fs.open_file(&path, OpenMode::CreateNew).unwrap();
        let mut b = TableBuilder::new(file.clone(), path.clone(), TableOptions::default());
        b.add(InternalKeyRef::seek_key(b"k", SeqNo(1)), b"v")
            .unwrap();
        b.finish().unwrap();
        Arc::new(Table::open(file, path, n).unwrap())
    }

    #[test]
    fn a_table_not_used_lately_is_closed() {
        let fs = MemFs::new();
        let cache = TableCache::new(2);
        cache.insert(FileNumber(1), table(&fs, 1));
        cache.insert(FileNumber(2), table(&fs, 2));
        assert!(cache.get(FileNumber(1)).is_some());
        cache.insert(FileNumber(3), table(&fs, 3));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(FileNumber(2)).is_none(),
            "2 was not used since it was opened"
        );
        assert!(cache.get(FileNumber(1)).is_some());
        cache.remove(FileNumber(1));
        assert!(cache.get(FileNumber(1)).is_none());
    }
}
