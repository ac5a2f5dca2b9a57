//! LEB128 variable-length integers, as used inside record batches.

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_u64(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends `value` zig-zag encoded, so small negative numbers stay short.
pub(crate) fn put_i64(buf: &mut Vec<u8>, value: i64) {
    put_u64(buf, ((value << 1) ^ (value >> 63)) as u64);
}

/// Reads an unsigned varint from the front of `buf`, returning the value and
/// the number of bytes it took; `None` if it is truncated or longer than ten
/// bytes.
pub(crate) fn get_u64(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return None; // would overflow 64 bits
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Reads a zig-zag varint.
pub(crate) fn get_i64(buf: &[u8]) -> Option<(i64, usize)> {
    let (raw, n) = get_u64(buf)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), n))
}

/// How many bytes `put_u64(value)` writes.
pub(crate) fn len_u64(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_edges() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put_u64(&mut buf, v);
            assert_eq!(buf.len(), len_u64(v));
            assert_eq!(get_u64(&buf), Some((v, buf.len())));
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_i64(&mut buf, v);
            assert_eq!(get_i64(&buf), Some((v, buf.len())));
        }
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert_eq!(get_u64(&[0x80]), None);
        assert_eq!(get_u64(&[]), None);
        assert_eq!(get_u64(&[0xff; 11]), None);
        assert_eq!(
            get_u64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }
}
