//! Sparse offset and time indexes of a segment.
//!
//! Both are hints, rebuildable from the segment, so they carry no checksum
//! (as in Kafka); a loaded index is sanity-checked and rebuilt if it fails.
//! Formats: `docs/format/changelog-index.md`.
//!
//! ```text
//! offset index := entry*   entry := relative_offset:u32 position:u32   (8 bytes, LE)
//! time index   := entry*   entry := timestamp_ms:i64 relative_offset:u32 (12 bytes, LE)
//! ```

/// Size of one offset index entry.
pub const OFFSET_ENTRY_SIZE: usize = 8;
/// Size of one time index entry.
pub const TIME_ENTRY_SIZE: usize = 12;

/// One offset index entry: the batch whose base offset is `base + relative_offset`
/// starts at byte `position` of the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Offset relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// One time index entry: `timestamp_ms` is the largest timestamp of the
/// records of this segment before offset `base + relative_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp of the records before `relative_offset`.
    pub timestamp_ms: i64,
    /// Offset relative to the segment's base offset.
    pub relative_offset: u32,
}

/// The in-memory indexes of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    /// Offset index entries, strictly increasing in both fields.
    pub offsets: Vec<OffsetEntry>,
    /// Time index entries, strictly increasing in both fields.
    pub times: Vec<TimeEntry>,
}

impl SegmentIndex {
    /// The position to start scanning from to find `relative_offset`: the
    /// position of the last indexed batch at or before it (0 if none).
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].position
        }
    }

    /// The last entry at or before `relative_offset`, if any.
    pub fn lookup_entry(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| self.offsets[i])
    }

    /// The relative offset to start scanning from to find the first record
    /// with a timestamp `>= timestamp_ms`.
    pub fn lookup_time(&self, timestamp_ms: i64) -> u32 {
        let i = self
            .times
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        if i == 0 {
            0
        } else {
            self.times[i - 1].relative_offset
        }
    }

    /// Records that a batch starts at `position` with `relative_offset`, and
    /// that `max_timestamp_before_ms` is the largest timestamp before it.
    pub fn push(
        &mut self,
        relative_offset: u32,
        position: u32,
        max_timestamp_before_ms: Option<i64>,
    ) {
        if self
            .offsets
            .last()
            .is_none_or(|e| relative_offset > e.relative_offset && position > e.position)
        {
            self.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        if let Some(ts) = max_timestamp_before_ms
            && self
                .times
                .last()
                .is_none_or(|e| ts > e.timestamp_ms && relative_offset > e.relative_offset)
        {
            self.times.push(TimeEntry {
                timestamp_ms: ts,
                relative_offset,
            });
        }
    }

    /// Drops entries at or past `position` / `relative_offset` (after a truncation).
    pub fn truncate(&mut self, relative_offset: u32, position: u32) {
        self.offsets
            .retain(|e| e.position < position && e.relative_offset < relative_offset);
        self.times.retain(|e| e.relative_offset < relative_offset);
    }

    /// Encodes the offset index file: each entry's relative offset, then
    /// its position (`u32` LE each).
    pub fn encode_offsets(&self) -> Vec<u8> {
        self.offsets
            .iter()
            .flat_map(|e| [e.relative_offset.to_le_bytes(), e.position.to_le_bytes()])
            .flatten()
            .collect()
    }

    /// Encodes the time index file: each entry's timestamp (`i64` LE), then
    /// its relative offset (`u32` LE).
    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_SIZE);
        for e in &self.times {
            out.extend(e.timestamp_ms.to_le_bytes());
            out.extend(e.relative_offset.to_le_bytes());
        }
        out
    }

    /// Decodes both index files and checks them against a segment of
    /// `segment_size_bytes` holding relative offsets below `relative_end`.
    /// Returns `None` if either is malformed (the caller rebuilds).
    pub fn decode(
        offsets: &[u8],
        times: &[u8],
        segment_size_bytes: u64,
        relative_end: u64,
    ) -> Option<SegmentIndex> {
        if !offsets.len().is_multiple_of(OFFSET_ENTRY_SIZE)
            || !times.len().is_multiple_of(TIME_ENTRY_SIZE)
        {
            return None;
        }
        let mut index = SegmentIndex::default();
        for chunk in offsets.chunks_exact(OFFSET_ENTRY_SIZE) {
            let e = OffsetEntry {
                relative_offset: le_u32(&chunk[..4]),
                position: le_u32(&chunk[4..]),
            };
            let ordered = index
                .offsets
                .last()
                .is_none_or(|p| e.relative_offset > p.relative_offset && e.position > p.position);
            if !ordered
                || u64::from(e.position) >= segment_size_bytes
                || u64::from(e.relative_offset) >= relative_end
            {
                return None;
            }
            index.offsets.push(e);
        }
        for chunk in times.chunks_exact(TIME_ENTRY_SIZE) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let e = TimeEntry {
                timestamp_ms: i64::from_le_bytes(ts),
                relative_offset: le_u32(&chunk[8..]),
            };
            let ordered = index.times.last().is_none_or(|p| {
                e.timestamp_ms > p.timestamp_ms && e.relative_offset > p.relative_offset
            });
            if !ordered || u64::from(e.relative_offset) >= relative_end {
                return None;
            }
            index.times.push(e);
        }
        Some(index)
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(b);
    u32::from_le_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_roundtrip() {
        let mut idx = SegmentIndex::default();
        idx.push(0, 0, None);
        idx.push(10, 4096, Some(100));
        idx.push(20, 8192, Some(250));
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(15), 4096);
        assert_eq!(idx.lookup(25), 8192);
        assert_eq!(idx.lookup_time(50), 0);
        assert_eq!(idx.lookup_time(101), 10);
        assert_eq!(idx.lookup_time(300), 20);
        let back =
            SegmentIndex::decode(&idx.encode_offsets(), &idx.encode_times(), 10_000, 30).unwrap();
        assert_eq!(back, idx);
    }

    #[test]
    fn rejects_bad_indexes() {
        let mut idx = SegmentIndex::default();
        idx.push(0, 0, None);
        idx.push(10, 4096, Some(100));
        let off = idx.encode_offsets();
        assert!(
            SegmentIndex::decode(&off, &[], 4000, 30).is_none(),
            "position past the end"
        );
        assert!(
            SegmentIndex::decode(&off[..5], &[], 10_000, 30).is_none(),
            "partial entry"
        );
        let mut swapped = off[8..].to_vec();
        swapped.extend_from_slice(&off[..8]);
        assert!(
            SegmentIndex::decode(&swapped, &[], 10_000, 30).is_none(),
            "out of order"
        );
    }
}
