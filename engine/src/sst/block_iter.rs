//! A bidirectional cursor over the entries of one data block.
//!
//! Forward steps decode the next entry. Backward steps, as in LevelDB, jump
//! to the last restart point before the current entry and decode forward
//! until just before it, so `prev` costs at most one restart interval.
//! Seeks binary-search the restart points (whose keys are stored whole) and
//! then scan forward.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::block::{Block, decode_entry};
use crate::error::{Error, Result};
use crate::key::{InternalKeyRef, SeqNo, TRAILER_SIZE, ValueKind};

/// A cursor over one [`Block`] of internal keys.
#[derive(Debug)]
pub struct BlockIter {
    block: Arc<Block>,
    /// Offset of the current entry; `restarts_offset` when not positioned.
    current: usize,
    /// Offset of the entry after the current one.
    next: usize,
    /// The restart point at or before `current`.
    restart_index: usize,
    key: Vec<u8>,
    seqno: SeqNo,
    kind: ValueKind,
    value_start: usize,
    value_end: usize,
    error: Option<Error>,
}

impl BlockIter {
    /// An unpositioned cursor over `block`.
    pub fn new(block: Arc<Block>) -> Self {
        let end = block.restarts_offset();
        BlockIter {
            block,
            current: end,
            next: end,
            restart_index: 0,
            key: Vec::new(),
            seqno: SeqNo(0),
            kind: ValueKind::Put,
            value_start: 0,
            value_end: 0,
            error: None,
        }
    }

    /// Whether the cursor is at an entry.
    pub fn valid(&self) -> bool {
        self.error.is_none() && self.current < self.block.restarts_offset()
    }

    /// The error that stopped the cursor, if any.
    ///
    /// # Errors
    /// The corruption met while decoding.
    pub fn status(&self) -> Result<()> {
        self.error.clone().map_or(Ok(()), Err)
    }

    /// Positions at the first entry.
    pub fn seek_to_first(&mut self) {
        if self.block.num_restarts() > 0 {
            self.seek_to_restart(0);
            self.parse_next();
        }
    }

    /// Positions at the last entry.
    pub fn seek_to_last(&mut self) {
        if self.block.num_restarts() > 0 {
            self.seek_to_restart(self.block.num_restarts() - 1);
            while self.parse_next() && self.next < self.block.restarts_offset() {}
        }
    }

    /// Positions at the first entry whose key is `>= target`; invalid if
    /// there is none.
    pub fn seek(&mut self, target: &InternalKeyRef<'_>) {
        if self.error.is_some() || self.block.num_restarts() == 0 {
            return self.invalidate();
        }
        // Find the last restart point whose key is < target.
        let (mut left, mut right) = (0, self.block.num_restarts() - 1);
        while left < right {
            let mid = left + (right - left).div_ceil(2);
            match self.restart_key(mid) {
                Some(key) if key.cmp_internal(target) == Ordering::Less => left = mid,
                Some(_) => right = mid - 1,
                None => {
                    return self.fail(self.block.restart(mid), "malformed key at a restart point");
                }
            }
        }
        self.seek_to_restart(left);
        while self.parse_next() {
            if self.key().cmp_internal(target) != Ordering::Less {
                return;
            }
        }
    }

    /// Moves to the next entry. Requires [`valid`](Self::valid).
    pub fn next(&mut self) {
        assert!(self.valid(), "BlockIter::next on an invalid cursor");
        self.parse_next();
    }

    /// Moves to the previous entry; invalid before the first. Requires
    /// [`valid`](Self::valid).
    pub fn prev(&mut self) {
        assert!(self.valid(), "BlockIter::prev on an invalid cursor");
        let original = self.current;
        while self.block.restart(self.restart_index) >= original {
            if self.restart_index == 0 {
                return self.invalidate();
            }
            self.restart_index -= 1;
        }
        self.seek_to_restart(self.restart_index);
        while self.parse_next() && self.next < original {}
    }

    /// The current key. Requires [`valid`](Self::valid).
    pub fn key(&self) -> InternalKeyRef<'_> {
        InternalKeyRef {
            user_key: &self.key[..self.key.len().saturating_sub(TRAILER_SIZE)],
            seqno: self.seqno,
            kind: self.kind,
        }
    }

    /// The current encoded key. Requires [`valid`](Self::valid).
    pub fn encoded_key(&self) -> &[u8] {
        &self.key
    }

    /// The current value. Requires [`valid`](Self::valid).
    pub fn value(&self) -> &[u8] {
        &self.block.data()[self.value_start..self.value_end]
    }

    /// The current value, sharing the block's buffer.
    pub fn value_bytes(&self) -> Bytes {
        self.block.data().slice(self.value_start..self.value_end)
    }

    fn restart_key(&self, index: usize) -> Option<InternalKeyRef<'_>> {
        let data = self.block.data();
        let entry = decode_entry(
            data,
            self.block.restart(index),
            self.block.restarts_offset(),
        )?;
        InternalKeyRef::decode(data.get(entry.delta_offset..entry.value_offset())?)
    }

    fn seek_to_restart(&mut self, index: usize) {
        self.key.clear();
        self.restart_index = index;
        self.next = self.block.restart(index);
    }

    fn invalidate(&mut self) {
        self.current = self.block.restarts_offset();
        self.next = self.current;
    }

    fn fail(&mut self, offset: usize, what: &str) {
        if self.error.is_none() {
            self.error = Some(self.block.origin().corruption(offset, what));
        }
        self.invalidate();
    }

    /// Decodes the entry at `self.next`; false at the end or on damage.
    fn parse_next(&mut self) -> bool {
        let end = self.block.restarts_offset();
        self.current = self.next;
        if self.current >= end {
            self.invalidate();
            return false;
        }
        let Some(entry) = decode_entry(self.block.data(), self.current, end) else {
            self.fail(self.current, "entry overruns the block");
            return false;
        };
        if entry.shared > self.key.len() {
            self.fail(self.current, "shared prefix longer than the previous key");
            return false;
        }
        self.key.truncate(entry.shared);
        self.key
            .extend_from_slice(&self.block.data()[entry.delta_offset..entry.value_offset()]);
        let Some(decoded) = InternalKeyRef::decode(&self.key) else {
            self.fail(self.current, "malformed internal key");
            return false;
        };
        (self.seqno, self.kind) = (decoded.seqno, decoded.kind);
        (self.value_start, self.value_end) = (entry.value_offset(), entry.end());
        self.next = entry.end();
        while self.restart_index + 1 < self.block.num_restarts()
            && self.block.restart(self.restart_index + 1) <= self.current
        {
            self.restart_index += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sst::block::{BlockBuilder, BlockKind, BlockOrigin};

    fn ikey(user_key: &[u8], seqno: u64) -> Vec<u8> {
        let mut out = Vec::new();
        InternalKeyRef::seek_key(user_key, SeqNo(seqno)).encode_into(&mut out);
        out
    }

    /// Keys k000, k002, … (even numbers), each at seqno 5.
    fn block(interval: usize, n: usize) -> Arc<Block> {
        let mut builder = BlockBuilder::new(interval);
        for i in 0..n {
            builder.add(
                &ikey(format!("k{:03}", 2 * i).as_bytes(), 5),
                format!("v{i}").as_bytes(),
            );
        }
        let origin = BlockOrigin {
            path: Arc::from(Path::new("t.sst")),
            offset: 0,
        };
        Arc::new(Block::decode(Bytes::from(builder.finish()), BlockKind::Data, origin).unwrap())
    }

    fn user_key(iter: &BlockIter) -> String {
        String::from_utf8(iter.key().user_key.to_vec()).unwrap()
    }

    #[test]
    fn forward_and_backward_visit_every_entry() {
        for interval in [1, 3, 16] {
            for n in [1, 2, 16, 17, 50] {
                let mut iter = BlockIter::new(block(interval, n));
                iter.seek_to_first();
                let mut forward = Vec::new();
                while iter.valid() {
                    forward.push(user_key(&iter));
                    assert_eq!(iter.value(), format!("v{}", forward.len() - 1).as_bytes());
                    iter.next();
                }
                let expected: Vec<_> = (0..n).map(|i| format!("k{:03}", 2 * i)).collect();
                assert_eq!(forward, expected);
                iter.seek_to_last();
                let mut backward = Vec::new();
                while iter.valid() {
                    backward.push(user_key(&iter));
                    iter.prev();
                }
                backward.reverse();
                assert_eq!(backward, expected);
                iter.status().unwrap();
            }
        }
    }

    #[test]
    fn seek_finds_first_key_at_or_after_target() {
        let mut iter = BlockIter::new(block(4, 40));
        for probe in 0usize..82 {
            let target = format!("k{probe:03}");
            iter.seek(&InternalKeyRef::seek_key(target.as_bytes(), SeqNo(9)));
            let expected_index = probe.div_ceil(2);
            if expected_index >= 40 {
                assert!(!iter.valid());
            } else {
                assert_eq!(user_key(&iter), format!("k{:03}", 2 * expected_index));
            }
        }
        // Same user key, but the target's seqno is older than the entry's.
        iter.seek(&InternalKeyRef::seek_key(b"k010", SeqNo(4)));
        assert_eq!(user_key(&iter), "k012");
    }

    #[test]
    fn prev_then_next_returns_to_the_same_entry() {
        let mut iter = BlockIter::new(block(3, 20));
        iter.seek(&InternalKeyRef::seek_key(b"k020", SeqNo(9)));
        iter.prev();
        assert_eq!(user_key(&iter), "k018");
        iter.next();
        assert_eq!(user_key(&iter), "k020");
        iter.seek_to_first();
        iter.prev();
        assert!(!iter.valid());
        iter.status().unwrap();
    }
}
