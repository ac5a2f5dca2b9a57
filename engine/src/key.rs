//! Internal keys: a user key with the sequence number and kind of the write.
//!
//! Every version of a user key stored in a memtable or a table is identified
//! by `(user_key, seqno, kind)`. A sequence number is the changelog offset of
//! the write plus one, so they are unique and grow with time. Entries are ordered
//! by user key ascending (unsigned bytes), then by sequence number
//! *descending*, so that the newest version of a key comes first.
//!
//! On disk an internal key is `user_key ++ trailer`, where the trailer is a
//! little-endian `u64` holding `seqno << 8 | kind`.

use std::cmp::Ordering;

/// A sequence number: the changelog offset of the write that made an entry,
/// plus one (so that 0 means "before every write").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The largest sequence number an entry may have (56 bits).
    pub const MAX: SeqNo = SeqNo((1 << 56) - 1);
}

/// What an entry records. On-disk values: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// A deletion marker (tombstone); the entry has no value.
    Delete = 0,
    /// A value.
    Put = 1,
}

impl ValueKind {
    /// Decodes a kind byte; `None` for unknown values.
    pub fn from_u8(byte: u8) -> Option<ValueKind> {
        match byte {
            0 => Some(ValueKind::Delete),
            1 => Some(ValueKind::Put),
            _ => None,
        }
    }
}

/// Size of the trailer appended to a user key to make an internal key.
pub const TRAILER_SIZE: usize = 8;

/// A borrowed, decoded internal key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InternalKeyRef<'a> {
    /// The user's key.
    pub user_key: &'a [u8],
    /// The sequence number of the write.
    pub seqno: SeqNo,
    /// Put or delete.
    pub kind: ValueKind,
}

impl<'a> InternalKeyRef<'a> {
    /// The key that sorts before every version of `user_key` visible at
    /// `seqno`: seeking to it finds the newest such version.
    pub fn seek_key(user_key: &'a [u8], seqno: SeqNo) -> Self {
        InternalKeyRef {
            user_key,
            seqno,
            kind: ValueKind::Put,
        }
    }

    /// Compares two internal keys: user key ascending, then sequence number
    /// descending, then kind descending.
    pub fn cmp_internal(&self, other: &InternalKeyRef<'_>) -> Ordering {
        self.user_key
            .cmp(other.user_key)
            .then_with(|| other.seqno.cmp(&self.seqno))
            .then_with(|| (other.kind as u8).cmp(&(self.kind as u8)))
    }

    /// Appends the encoded form (`user_key ++ trailer`) to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.user_key);
        buf.extend_from_slice(&pack_trailer(self.seqno, self.kind).to_le_bytes());
    }

    /// Decodes an encoded internal key; `None` if it is too short or its
    /// kind is unknown.
    pub fn decode(encoded: &'a [u8]) -> Option<Self> {
        let split = encoded.len().checked_sub(TRAILER_SIZE)?;
        let (user_key, trailer) = encoded.split_at(split);
        let mut raw = [0u8; TRAILER_SIZE];
        raw.copy_from_slice(trailer);
        let packed = u64::from_le_bytes(raw);
        Some(InternalKeyRef {
            user_key,
            seqno: SeqNo(packed >> 8),
            kind: ValueKind::from_u8((packed & 0xff) as u8)?,
        })
    }
}

/// Packs a sequence number and kind into a trailer value.
pub fn pack_trailer(seqno: SeqNo, kind: ValueKind) -> u64 {
    debug_assert!(seqno <= SeqNo::MAX);
    (seqno.0 << 8) | kind as u64
}

/// Compares two *encoded* internal keys. Keys that fail to decode sort by
/// raw bytes (they are reported as corruption by whoever decoded them).
pub fn cmp_encoded(a: &[u8], b: &[u8]) -> Ordering {
    match (InternalKeyRef::decode(a), InternalKeyRef::decode(b)) {
        (Some(x), Some(y)) => x.cmp_internal(&y),
        _ => a.cmp(b),
    }
}

/// `user_key` at `seqno` of `kind`, encoded (for tests).
#[cfg(test)]
pub(crate) fn encoded_key(user_key: &[u8], seqno: u64, kind: ValueKind) -> Vec<u8> {
    let mut out = Vec::new();
    InternalKeyRef {
        user_key,
        seqno: SeqNo(seqno),
        kind,
    }
    .encode_into(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_sorts_first() {
        let old = InternalKeyRef::seek_key(b"k", SeqNo(1));
        let new = InternalKeyRef::seek_key(b"k", SeqNo(9));
        assert_eq!(new.cmp_internal(&old), Ordering::Less);
        let other = InternalKeyRef::seek_key(b"ka", SeqNo(100));
        assert_eq!(old.cmp_internal(&other), Ordering::Less);
    }

    #[test]
    fn encode_decode_roundtrip_and_order() {
        let a = encoded_key(b"a", 5, ValueKind::Delete);
        let b = encoded_key(b"ab", 7, ValueKind::Put);
        let da = InternalKeyRef::decode(&a).unwrap();
        assert_eq!(da.user_key, b"a");
        assert_eq!(da.seqno, SeqNo(5));
        assert_eq!(da.kind, ValueKind::Delete);
        assert_eq!(cmp_encoded(&a, &b), Ordering::Less);
        assert!(InternalKeyRef::decode(b"short").is_none());
    }
}
