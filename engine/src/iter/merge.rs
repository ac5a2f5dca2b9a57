//! A one-direction merge of internal iterators.
//!
//! A cursor only moves one way, so it needs no direction switching: the
//! forward merge always yields the smallest child key, the backward merge
//! the largest. The valid children sit in a binary heap ordered by their
//! current keys (ties by child index, so the earlier child, the newer
//! source, comes first). A step moves the child on top and sifts it down:
//! when one child holds a long stretch of the smallest keys, as the
//! bottom level does in a scan, that is one or two key comparisons per
//! step instead of one per child.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::InternalKeyRef;

/// Merges children in internal-key order, moving forward or backward.
pub(crate) struct MergeCursor {
    children: Vec<Box<dyn InternalIterator>>,
    forward: bool,
    /// Indexes of the valid children, as a heap whose top is the child
    /// with the next key in the cursor's direction. Empty once any child
    /// has failed, so that a read error ends the merge (and [`status`]
    /// reports it) instead of the other children's entries hiding the gap.
    ///
    /// [`status`]: MergeCursor::status
    heap: Vec<usize>,
}

impl MergeCursor {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>, forward: bool) -> Self {
        let heap = Vec::with_capacity(children.len());
        MergeCursor {
            children,
            forward,
            heap,
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
        self.rebuild();
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
        self.rebuild();
    }

    /// Moves one entry on in the cursor's direction. Requires `valid()`.
    pub(crate) fn advance(&mut self) {
        let Some(&top) = self.heap.first() else {
            return;
        };
        let child = &mut self.children[top];
        if self.forward {
            child.next();
        } else {
            child.prev();
        }
        if child.valid() {
            self.sift_down(0);
        } else if child.status().is_err() {
            self.heap.clear();
        } else {
            self.heap.swap_remove(0);
            self.sift_down(0);
        }
    }

    /// The current key. Requires `valid()`.
    pub(crate) fn key(&self) -> Option<InternalKeyRef<'_>> {
        self.heap.first().map(|&i| self.children[i].key())
    }

    /// The current value. Requires `valid()`.
    pub(crate) fn value_bytes(&self) -> Bytes {
        self.heap
            .first()
            .map_or_else(Bytes::new, |&i| self.children[i].value_bytes())
    }

    /// The first child error, if any.
    pub(crate) fn status(&self) -> Result<()> {
        for child in &self.children {
            child.status()?;
        }
        Ok(())
    }

    /// Puts every valid child in the heap after a seek; none if any child
    /// has failed.
    fn rebuild(&mut self) {
        self.heap.clear();
        for (i, child) in self.children.iter().enumerate() {
            if child.valid() {
                self.heap.push(i);
            } else if child.status().is_err() {
                self.heap.clear();
                return;
            }
        }
        for at in (0..self.heap.len() / 2).rev() {
            self.sift_down(at);
        }
    }

    /// Whether child `a` comes before child `b` in the cursor's direction.
    fn before(&self, a: usize, b: usize) -> bool {
        let ord = self.children[a].key().cmp_internal(&self.children[b].key());
        let ord = if self.forward { ord } else { ord.reverse() };
        ord.then(a.cmp(&b)) == Ordering::Less
    }

    /// Restores the heap order below `at` after the child there moved.
    fn sift_down(&mut self, mut at: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                return;
            }
            let right = left + 1;
            let first = if right < len && self.before(self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            if !self.before(self.heap[first], self.heap[at]) {
                return;
            }
            self.heap.swap(at, first);
            at = first;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::error::Error;
    use crate::key::{SeqNo, ValueKind};

    /// A child over sorted `(user key, seqno)` entries, failing with a
    /// corruption once it reaches position `fail_at` (if given).
    struct VecIter {
        entries: Vec<(Vec<u8>, u64)>,
        at: Option<usize>,
        fail_at: Option<usize>,
        failed: bool,
    }

    impl VecIter {
        fn new(mut entries: Vec<(Vec<u8>, u64)>, fail_at: Option<usize>) -> Self {
            entries.sort_by(|a, b| key(a).cmp_internal(&key(b)));
            VecIter {
                entries,
                at: None,
                fail_at,
                failed: false,
            }
        }

        fn go(&mut self, at: Option<usize>) {
            self.at = at.filter(|&i| i < self.entries.len());
            if self.at.is_some() && self.at == self.fail_at {
                self.failed = true;
            }
        }
    }

    fn key(entry: &(Vec<u8>, u64)) -> InternalKeyRef<'_> {
        InternalKeyRef {
            user_key: &entry.0,
            seqno: SeqNo(entry.1),
            kind: ValueKind::Put,
        }
    }

    impl InternalIterator for VecIter {
        fn valid(&self) -> bool {
            !self.failed && self.at.is_some()
        }
        fn seek_to_first(&mut self) {
            self.go(Some(0));
        }
        fn seek_to_last(&mut self) {
            self.go(self.entries.len().checked_sub(1));
        }
        fn seek(&mut self, target: &InternalKeyRef<'_>) {
            let i = self
                .entries
                .iter()
                .position(|e| key(e).cmp_internal(target).is_ge());
            self.go(i);
        }
        fn seek_for_prev(&mut self, target: &InternalKeyRef<'_>) {
            let i = self
                .entries
                .iter()
                .rposition(|e| key(e).cmp_internal(target).is_le());
            self.go(i);
        }
        fn next(&mut self) {
            self.go(self.at.map(|i| i + 1));
        }
        fn prev(&mut self) {
            self.go(self.at.and_then(|i| i.checked_sub(1)));
        }
        fn key(&self) -> InternalKeyRef<'_> {
            key(&self.entries[self.at.unwrap_or(0)])
        }
        fn value(&self) -> &[u8] {
            &[]
        }
        fn status(&self) -> Result<()> {
            if self.failed {
                Err(Error::corruption("child", 0, "injected"))
            } else {
                Ok(())
            }
        }
    }

    fn cursor(
        sources: &[Vec<(Vec<u8>, u64)>],
        fail: Option<(usize, usize)>,
        forward: bool,
    ) -> MergeCursor {
        let children = sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let fail_at = fail.filter(|&(child, _)| child == i).map(|(_, at)| at);
                Box::new(VecIter::new(s.clone(), fail_at)) as Box<dyn InternalIterator>
            })
            .collect();
        MergeCursor::new(children, forward)
    }

    fn drain(merge: &mut MergeCursor) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        while let Some(k) = merge.key() {
            out.push((k.user_key.to_vec(), k.seqno.0));
            merge.advance();
        }
        out
    }

    /// Sources of distinct internal keys: each (key, seqno) pair lands in
    /// one source.
    fn sources() -> impl Strategy<Value = Vec<Vec<(Vec<u8>, u64)>>> {
        (1usize..7).prop_flat_map(|n| {
            proptest::collection::btree_map(
                (proptest::collection::vec(0u8..4, 0..3), 0u64..5),
                0..n,
                0..60,
            )
            .prop_map(move |placed| {
                let mut out = vec![Vec::new(); n];
                for ((k, s), child) in placed {
                    out[child].push((k, s));
                }
                out
            })
        })
    }

    fn expected(sources: &[Vec<(Vec<u8>, u64)>]) -> Vec<(Vec<u8>, u64)> {
        let mut all: Vec<_> = sources.iter().flatten().cloned().collect();
        all.sort_by(|a, b| key(a).cmp_internal(&key(b)));
        all
    }

    proptest! {
        #[test]
        fn merges_in_internal_key_order_both_ways(sources in sources()) {
            let all = expected(&sources);
            let mut forward = cursor(&sources, None, true);
            forward.seek_to_end();
            prop_assert_eq!(drain(&mut forward), all.clone());
            let mut backward = cursor(&sources, None, false);
            backward.seek_to_end();
            let mut reversed = all.clone();
            reversed.reverse();
            prop_assert_eq!(drain(&mut backward), reversed);
        }

        #[test]
        fn seeks_land_on_the_first_entry_at_or_past_the_target(
            sources in sources(),
            target in (proptest::collection::vec(0u8..4, 0..3), 0u64..5),
        ) {
            let all = expected(&sources);
            let t = key(&target);
            let mut forward = cursor(&sources, None, true);
            forward.seek(&t);
            let after: Vec<_> =
                all.iter().filter(|e| key(e).cmp_internal(&t).is_ge()).cloned().collect();
            prop_assert_eq!(drain(&mut forward), after);
            let mut backward = cursor(&sources, None, false);
            backward.seek(&t);
            let mut before: Vec<_> =
                all.iter().filter(|e| key(e).cmp_internal(&t).is_le()).cloned().collect();
            before.reverse();
            prop_assert_eq!(drain(&mut backward), before);
        }

        #[test]
        fn a_failing_child_ends_the_merge_where_it_fails(
            sources in sources(),
            child in 0usize..7,
            at in 0usize..20,
        ) {
            let child = child % sources.len();
            prop_assume!(at < sources[child].len());
            let mut merge = cursor(&sources, Some((child, at)), true);
            merge.seek_to_end();
            let got = drain(&mut merge);
            prop_assert!(merge.status().is_err());
            // The child fails as it steps from its entry `at - 1` (or as
            // it is first positioned): everything up to that entry, and
            // nothing after it, even from the other children.
            let mut failing = sources[child].clone();
            failing.sort_by(|a, b| key(a).cmp_internal(&key(b)));
            let upto: Vec<_> = match at.checked_sub(1) {
                None => Vec::new(),
                Some(last) => expected(&sources)
                    .into_iter()
                    .filter(|e| key(e).cmp_internal(&key(&failing[last])).is_le())
                    .collect(),
            };
            prop_assert_eq!(got, upto);
        }
    }

    #[test]
    fn equal_keys_come_from_the_earlier_child_first() {
        let one = vec![(b"a".to_vec(), 1)];
        let mut merge = cursor(&[one.clone(), one.clone(), one], None, true);
        merge.seek_to_end();
        let mut order = Vec::new();
        while merge.key().is_some() {
            order.push(merge.heap[0]);
            merge.advance();
        }
        assert_eq!(order, [0, 1, 2]);
    }
}
