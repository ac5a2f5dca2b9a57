//! [`TableIterator`]: a two-level cursor over a table, an index position
//! plus a cursor into the data block it names.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::block_iter::BlockIter;
use super::reader::Table;
use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::key::InternalKeyRef;

/// An [`InternalIterator`] over every entry of a [`Table`].
///
/// Errors are sticky: after the first I/O error or corruption the iterator
/// stays invalid and [`status`](InternalIterator::status) reports it.
#[derive(Debug)]
pub struct TableIterator {
    table: Arc<Table>,
    /// Index of the data block `block` is over.
    position: usize,
    block: Option<BlockIter>,
    error: Option<Error>,
    fill_cache: bool,
}

impl TableIterator {
    pub(crate) fn new(table: Arc<Table>, fill_cache: bool) -> Self {
        TableIterator {
            table,
            position: 0,
            block: None,
            error: None,
            fill_cache,
        }
    }

    /// Positions the block cursor on data block `position` (unpositioned
    /// within it); false, with the cursor cleared, if out of range or on error.
    fn load(&mut self, position: usize) -> bool {
        self.block = None;
        if self.error.is_some() || position >= self.table.data_block_count() {
            return false;
        }
        self.position = position;
        match self.table.data_block(position, self.fill_cache) {
            Ok(block) => {
                self.block = Some(BlockIter::new(block));
                true
            }
            Err(error) => {
                self.error = Some(error);
                false
            }
        }
    }

    /// After the block cursor ran off either end, takes its error or moves
    /// to the neighbouring block. Bounded by the number of blocks.
    fn settle(&mut self, forward: bool) {
        loop {
            let Some(block) = &self.block else { return };
            if let Err(error) = block.status() {
                self.error.get_or_insert(error);
                self.block = None;
                return;
            }
            if block.valid() {
                return;
            }
            let next = if forward {
                self.position + 1
            } else if let Some(previous) = self.position.checked_sub(1) {
                previous
            } else {
                self.block = None;
                return;
            };
            if !self.load(next) {
                return;
            }
            if let Some(block) = &mut self.block {
                if forward {
                    block.seek_to_first();
                } else {
                    block.seek_to_last();
                }
            }
        }
    }

    fn current(&self) -> &BlockIter {
        match &self.block {
            Some(block) if block.valid() => block,
            _ => panic!("TableIterator used while not valid"),
        }
    }

    fn current_mut(&mut self) -> &mut BlockIter {
        match &mut self.block {
            Some(block) if block.valid() => block,
            _ => panic!("TableIterator used while not valid"),
        }
    }
}

impl InternalIterator for TableIterator {
    fn valid(&self) -> bool {
        self.error.is_none() && self.block.as_ref().is_some_and(BlockIter::valid)
    }

    fn seek_to_first(&mut self) {
        if self.load(0) {
            if let Some(block) = &mut self.block {
                block.seek_to_first();
            }
            self.settle(true);
        }
    }

    fn seek_to_last(&mut self) {
        let count = self.table.data_block_count();
        if count > 0 && self.load(count - 1) {
            if let Some(block) = &mut self.block {
                block.seek_to_last();
            }
            self.settle(false);
        } else {
            self.block = None;
        }
    }

    fn seek(&mut self, target: &InternalKeyRef<'_>) {
        let position = self.table.index_position(target);
        if self.load(position) {
            if let Some(block) = &mut self.block {
                block.seek(target);
            }
            self.settle(true);
        }
    }

    fn seek_for_prev(&mut self, target: &InternalKeyRef<'_>) {
        self.seek(target);
        if self.valid() {
            if self.key().cmp_internal(target) == Ordering::Greater {
                self.prev();
            }
        } else if self.error.is_none() {
            self.seek_to_last();
        }
    }

    fn next(&mut self) {
        self.current_mut().next();
        self.settle(true);
    }

    fn prev(&mut self) {
        self.current_mut().prev();
        self.settle(false);
    }

    fn key(&self) -> InternalKeyRef<'_> {
        self.current().key()
    }

    fn value(&self) -> &[u8] {
        self.current().value()
    }

    fn value_bytes(&self) -> Bytes {
        self.current().value_bytes()
    }

    fn status(&self) -> Result<()> {
        self.error.clone().map_or(Ok(()), Err)
    }
}

impl Table {
    /// An unpositioned iterator over every entry, in internal-key order.
    ///
    /// # Examples
    /// ```
    /// # use std::path::PathBuf;
    /// # use std::sync::Arc;
    /// # use varve_db::internals::key::{InternalKeyRef, SeqNo};
    /// # use varve_db::internals::sst::{Table, TableBuilder, TableOptions};
    /// # use varve_changelog::fs::{FileSystem, MemFs, OpenMode};
    /// use varve_db::internals::iter::InternalIterator;
    /// # let fs = MemFs::new();
    /// # let path = PathBuf::from("/000002.sst");
    /// # let file = fs.open_file(&path, OpenMode::CreateNew)?;
    /// # let mut builder = TableBuilder::new(file.clone(), path.clone(), TableOptions::default());
    /// # for (key, seqno) in [(&b"a"[..], 5), (b"a", 3), (b"b", 4)] {
    /// #     builder.add(InternalKeyRef::seek_key(key, SeqNo(seqno)), b"v")?;
    /// # }
    /// # builder.finish()?;
    /// let table = Arc::new(Table::open(file, path, 2)?);
    /// let mut iter = table.iter();
    /// iter.seek_to_first();
    /// let mut seen = Vec::new();
    /// while iter.valid() {
    ///     seen.push((iter.key().user_key.to_vec(), iter.key().seqno.0));
    ///     iter.next();
    /// }
    /// iter.status()?;
    /// assert_eq!(seen, [(b"a".to_vec(), 5), (b"a".to_vec(), 3), (b"b".to_vec(), 4)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(self: &Arc<Self>) -> TableIterator {
        TableIterator::new(Arc::clone(self), true)
    }

    /// An iterator that reads through the block cache without filling it
    /// (for compactions, which read each block once).
    pub(crate) fn iter_without_filling_cache(self: &Arc<Self>) -> TableIterator {
        TableIterator::new(Arc::clone(self), false)
    }
}
