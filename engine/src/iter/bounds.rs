//! Key-range bounds for iterators: a caller's range, or a prefix's range,
//! as owned bounds.

use std::ops::{Bound, RangeBounds};

use bytes::Bytes;

fn to_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<Bytes> {
    match b {
        Bound::Included(k) => Bound::Included(Bytes::copy_from_slice(k.as_ref())),
        Bound::Excluded(k) => Bound::Excluded(Bytes::copy_from_slice(k.as_ref())),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The owned bounds of `range`.
pub(crate) fn bounds_of<K: AsRef<[u8]>, R: RangeBounds<K>>(
    range: &R,
) -> (Bound<Bytes>, Bound<Bytes>) {
    (to_bound(range.start_bound()), to_bound(range.end_bound()))
}

/// `[prefix, successor(prefix))`; unbounded above if the prefix is all
/// `0xff` bytes (or empty).
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Bytes>, Bound<Bytes>) {
    let lower = Bound::Included(Bytes::copy_from_slice(prefix));
    let mut upper = prefix.to_vec();
    while let Some(&last) = upper.last() {
        if last == 0xff {
            upper.pop();
        } else {
            let n = upper.len();
            upper[n - 1] = last + 1;
            return (lower, Bound::Excluded(Bytes::from(upper)));
        }
    }
    (lower, Bound::Unbounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_end_at_the_successor() {
        assert_eq!(
            prefix_bounds(b"ab"),
            (
                Bound::Included(Bytes::from("ab")),
                Bound::Excluded(Bytes::from("ac"))
            )
        );
        assert_eq!(
            prefix_bounds(&[b'a', 0xff]),
            (
                Bound::Included(Bytes::from(&[b'a', 0xff][..])),
                Bound::Excluded(Bytes::from("b"))
            )
        );
        assert_eq!(prefix_bounds(&[0xff]).1, Bound::Unbounded);
        assert_eq!(prefix_bounds(b"").1, Bound::Unbounded);
    }
}
