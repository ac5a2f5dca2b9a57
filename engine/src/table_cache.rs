//! [`TableCache`]: the open tables of a store, bounded in number.
//!
//! Opening a table reads its footer, index, filter and properties, so open
//! tables are kept; past the bound, the least recently used is closed (its
//! handle lives on in any reader still holding it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use varve_changelog::fs::{FileSystem, OpenMode};

use crate::cache::BlockCache;
use crate::error::{Error, Result};
use crate::sst::Table;
use crate::version::{FileNumber, table_file_name};

/// The table with `number` of the store in `dir`: from `tables` if it is
/// open, else opened (its blocks cached in `block_cache`) and kept there.
pub(crate) fn open_table(
    tables: &Mutex<TableCache>,
    fs: &dyn FileSystem,
    dir: &Path,
    number: FileNumber,
    block_cache: Option<&Arc<BlockCache>>,
) -> Result<Arc<Table>> {
    if let Some(t) = tables.lock().get(number) {
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
    tables.lock().insert(number, table.clone());
    Ok(table)
}

/// Open tables by file number, at most `capacity` of them.
pub(crate) struct TableCache {
    open: HashMap<FileNumber, (Arc<Table>, u64)>,
    tick: u64,
    capacity: usize,
}

impl TableCache {
    pub(crate) fn new(capacity: usize) -> TableCache {
        TableCache {
            open: HashMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&mut self, number: FileNumber) -> Option<Arc<Table>> {
        self.tick += 1;
        let tick = self.tick;
        self.open.get_mut(&number).map(|(table, used)| {
            *used = tick;
            Arc::clone(table)
        })
    }

    /// Adds `table`, closing the least recently used one if full. The scan
    /// for it is linear, but runs only when a table is opened.
    pub(crate) fn insert(&mut self, number: FileNumber, table: Arc<Table>) {
        if self.open.len() >= self.capacity && !self.open.contains_key(&number) {
            let oldest = self.open.iter().min_by_key(|(_, (_, used))| *used);
            if let Some((&victim, _)) = oldest {
                self.open.remove(&victim);
            }
        }
        self.tick += 1;
        self.open.insert(number, (table, self.tick));
    }

    pub(crate) fn remove(&mut self, number: FileNumber) {
        self.open.remove(&number);
    }

    pub(crate) fn len(&self) -> usize {
        self.open.len()
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
    fn least_recently_used_is_closed() {
        let fs = MemFs::new();
        let mut cache = TableCache::new(2);
        cache.insert(FileNumber(1), table(&fs, 1));
        cache.insert(FileNumber(2), table(&fs, 2));
        assert!(cache.get(FileNumber(1)).is_some());
        cache.insert(FileNumber(3), table(&fs, 3));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(FileNumber(2)).is_none(),
            "2 was least recently used"
        );
        assert!(cache.get(FileNumber(1)).is_some());
        cache.remove(FileNumber(1));
        assert!(cache.get(FileNumber(1)).is_none());
    }
}
