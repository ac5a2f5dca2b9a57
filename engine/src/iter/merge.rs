//! A one-direction merge of internal iterators.
//!
//! A cursor only moves one way, so it needs no direction switching: the
//! forward merge always yields the smallest child key, the backward merge
//! the largest. Children are few (memtables, L0 tables, one per level), so
//! a linear pick beats a heap.

use bytes::Bytes;

use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::InternalKeyRef;

/// Merges children in internal-key order, moving forward or backward.
pub(crate) struct MergeCursor {
    children: Vec<Box<dyn InternalIterator>>,
    forward: bool,
    current: Option<usize>,
}

impl MergeCursor {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>, forward: bool) -> Self {
        MergeCursor {
            children,
            forward,
            current: None,
        }
    }

    /// Forward: first entry `>= target`. Backward: last entry `<= target`.
    pub(crate) fn seek(&mut self, target: &InternalKeyRef<'_>) {
        for child in &mut self.children {
            if self.forward {
                child.seek(target);
            } else {
                child.seek_for_prev(target);
            }
        }
        self.pick();
    }

    /// Forward: the first entry. Backward: the last entry.
    pub(crate) fn seek_to_end(&mut self) {
        for child in &mut self.children {
            if self.forward {
                child.seek_to_first();
            } else {
                child.seek_to_last();
            }
        }
        self.pick();
    }

    /// Moves one entry on in the cursor's direction. Requires `valid()`.
    pub(crate) fn advance(&mut self) {
        if let Some(i) = self.current {
            if self.forward {
                self.children[i].next();
            } else {
                self.children[i].prev();
            }
            self.pick();
        }
    }

    /// The current key. Requires `valid()`.
    pub(crate) fn key(&self) -> Option<InternalKeyRef<'_>> {
        self.current.map(|i| self.children[i].key())
    }

    /// The current value. Requires `valid()`.
    pub(crate) fn value_bytes(&self) -> Bytes {
        self.current
            .map_or_else(Bytes::new, |i| self.children[i].value_bytes())
    }

    /// The first child error, if any.
    pub(crate) fn status(&self) -> Result<()> {
        for child in &self.children {
            child.status()?;
        }
        Ok(())
    }

    /// Points at the child with the next key; at none if any child has
    /// failed, so that a read error ends the merge (and [`status`] reports
    /// it) instead of the other children's entries hiding the gap.
    ///
    /// [`status`]: MergeCursor::status
    fn pick(&mut self) {
        let mut best: Option<usize> = None;
        for (i, child) in self.children.iter().enumerate() {
            if !child.valid() {
                if child.status().is_err() {
                    self.current = None;
                    return;
                }
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let ord = child.key().cmp_internal(&self.children[b].key());
                    let better = if self.forward {
                        ord.is_lt()
                    } else {
                        ord.is_gt()
                    };
                    if better { Some(i) } else { Some(b) }
                }
            };
        }
        self.current = best;
    }
}
