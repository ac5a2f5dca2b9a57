//! The read path shared by an open [`Db`](crate::Db) and a
//! [`ReadOnlyDb`](crate::ReadOnlyDb): a point lookup over memtables and
//! tables, and the child iterators a merge reads, with a TTL store's
//! values decoded the same way for both.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::iter::level::{LevelIter, TableOpener};
use crate::key::{InternalKeyRef, SeqNo, ValueKind};
use crate::memtable::MemTable;
use crate::sst::Table;
use crate::sst::filter::hash64;
use crate::ttl::{Expiry, Stored};
use crate::version::{FileNumber, Level, Version};

/// A value and its version (the sequence number of the write that made it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// The version: changelog offset of the write plus one.
    pub version: u64,
}

/// A child iterator that only reports an error (a table that failed to open).
pub(crate) struct ErrorIter(pub(crate) Error);

impl InternalIterator for ErrorIter {
    fn valid(&self) -> bool {
        false
    }
    fn seek_to_first(&mut self) {}
    fn seek_to_last(&mut self) {}
    fn seek(&mut self, _: &InternalKeyRef<'_>) {}
    fn seek_for_prev(&mut self, _: &InternalKeyRef<'_>) {}
    fn next(&mut self) {}
    fn prev(&mut self) {}
    fn key(&self) -> InternalKeyRef<'_> {
        InternalKeyRef::seek_key(&[], SeqNo(0))
    }
    fn value(&self) -> &[u8] {
        &[]
    }
    fn status(&self) -> Result<()> {
        Err(self.0.clone())
    }
}

/// What a read looks at: the memtables, the table version, and how to
/// open one of its tables.
pub(crate) struct ReadSources<'a> {
    /// The active memtable.
    pub(crate) mem: &'a Arc<MemTable>,
    /// Immutable memtables, newest first.
    pub(crate) imm: &'a [Arc<MemTable>],
    pub(crate) version: &'a Arc<Version>,
    pub(crate) table: &'a dyn Fn(FileNumber) -> Result<Arc<Table>>,
}

impl ReadSources<'_> {
    /// The newest version of `key` visible at `seqno`, with its sequence
    /// number; in a TTL store (`expiry`) without its write time, and
    /// absent once expired. `path` names the store in errors.
    pub(crate) fn versioned(
        &self,
        key: &[u8],
        seqno: SeqNo,
        expiry: Option<Expiry>,
        path: &Path,
    ) -> Result<Option<Versioned>> {
        // Hashed once, for every memtable's and table's filter.
        let key_hash = hash64(key);
        for mem in std::iter::once(self.mem).chain(self.imm) {
            if let Some((found, kind, value)) = mem.get_hashed(key, key_hash, seqno) {
                if kind != ValueKind::Put {
                    return Ok(None);
                }
                return live_version(key, found, Bytes::copy_from_slice(value), expiry, path);
            }
        }
        for (_, meta) in self.version.tables_for_key_iter(key) {
            let table = (self.table)(meta.number)?;
            if let Some((found, kind, value)) = table.get_hashed(key, key_hash, seqno)? {
                if kind != ValueKind::Put {
                    return Ok(None);
                }
                return live_version(key, found, value, expiry, path);
            }
        }
        Ok(None)
    }

    /// The internal iterators a merge reads: one per memtable and level 0
    /// table, and one per deeper level that has tables, which opens them
    /// through `open` as it reaches them. A level 0 table that fails to
    /// open gives an iterator that reports the error.
    pub(crate) fn children(&self, open: &TableOpener) -> Vec<Box<dyn InternalIterator>> {
        let mut children: Vec<Box<dyn InternalIterator>> = std::iter::once(self.mem)
            .chain(self.imm)
            .map(|m| Box::new(m.iter()) as Box<dyn InternalIterator>)
            .collect();
        for meta in self.version.tables(Level(0)) {
            match (self.table)(meta.number) {
                Ok(t) => children.push(Box::new(t.iter())),
                Err(e) => children.push(Box::new(ErrorIter(e))),
            }
        }
        for level in Level::all().skip(1) {
            if !self.version.tables(level).is_empty() {
                let version = Arc::clone(self.version);
                children.push(Box::new(LevelIter::new(version, level, Arc::clone(open))));
            }
        }
        children
    }
}

/// The newest version `found` of `key` as the reader sees it: in a TTL
/// store the write time is stripped, and an expired value is absent (older
/// versions are not consulted: they are older still).
fn live_version(
    key: &[u8],
    found: SeqNo,
    stored: Bytes,
    expiry: Option<Expiry>,
    path: &Path,
) -> Result<Option<Versioned>> {
    let value = match expiry {
        None => stored,
        Some(expiry) => match expiry.read(&stored) {
            Ok(Stored::Live(v)) => stored.slice(stored.len() - v.len()..),
            Ok(Stored::Expired) => return Ok(None),
            Err(what) => {
                let what = format!("key {:?}: {what}", String::from_utf8_lossy(key));
                return Err(Error::corruption(path, 0, what));
            }
        },
    };
    Ok(Some(Versioned {
        value,
        version: found.0,
    }))
}
