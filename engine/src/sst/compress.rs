//! Block compression: LZ4 (block format) behind a varint32 of the
//! uncompressed size, used only when it saves at least an eighth.

use std::path::Path;

use bytes::Bytes;

use super::format::{
    BLOCK_UNCOMPRESSED_SIZE_MAX, COMPRESSION_LZ4, COMPRESSION_NONE, get_varint32, put_varint32,
};
use crate::error::{Error, Result};
use crate::options::Compression;

/// The bytes to store for `contents` and their compression type byte.
pub(crate) fn compress(contents: Vec<u8>, compression: Compression) -> (Vec<u8>, u8) {
    match compression {
        Compression::None => (contents, COMPRESSION_NONE),
        Compression::Lz4 => {
            let Ok(size) = u32::try_from(contents.len()) else {
                return (contents, COMPRESSION_NONE);
            };
            let mut out =
                Vec::with_capacity(5 + lz4_flex::block::get_maximum_output_size(contents.len()));
            put_varint32(&mut out, size);
            out.extend_from_slice(&lz4_flex::block::compress(&contents));
            if out.len() <= contents.len() - contents.len() / 8 {
                (out, COMPRESSION_LZ4)
            } else {
                (contents, COMPRESSION_NONE)
            }
        }
    }
}

/// The uncompressed contents of a stored block of `compression_type`.
/// Every length is checked before it is trusted; `path` and `offset` name
/// the block in errors.
pub(crate) fn decompress(
    stored: Vec<u8>,
    compression_type: u8,
    path: &Path,
    offset: u64,
) -> Result<Bytes> {
    match compression_type {
        COMPRESSION_NONE => Ok(Bytes::from(stored)),
        COMPRESSION_LZ4 => {
            let corrupt = |what: String| Error::corruption(path, offset, what);
            let Some((size, used)) = get_varint32(&stored) else {
                return Err(corrupt("LZ4 block has no valid size prefix".into()));
            };
            let size = size as usize;
            if size > BLOCK_UNCOMPRESSED_SIZE_MAX {
                return Err(corrupt(format!(
                    "LZ4 block claims {size} uncompressed bytes, more than {BLOCK_UNCOMPRESSED_SIZE_MAX}"
                )));
            }
            let mut out = vec![0u8; size];
            match lz4_flex::block::decompress_into(&stored[used..], &mut out) {
                Ok(n) if n == size => Ok(Bytes::from(out)),
                Ok(n) => Err(corrupt(format!(
                    "LZ4 block decompressed to {n} bytes, its prefix says {size}"
                ))),
                Err(e) => Err(corrupt(format!("LZ4 block does not decompress: {e}"))),
            }
        }
        other => Err(Error::corruption(
            path,
            offset,
            format!("unsupported compression type {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fallback() {
        let text = b"order:0001 NEW order:0002 NEW order:0003 NEW ".repeat(50);
        let (stored, kind) = compress(text.clone(), Compression::Lz4);
        assert_eq!(kind, COMPRESSION_LZ4);
        assert!(stored.len() < text.len() / 2);
        let back = decompress(stored, kind, Path::new("t"), 0).unwrap();
        assert_eq!(&back[..], &text[..]);
        // Incompressible bytes are stored as they are.
        let mut noise = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let (stored, kind) = compress(noise.clone(), Compression::Lz4);
        assert_eq!((kind, stored), (COMPRESSION_NONE, noise));
        assert_eq!(
            compress(text.clone(), Compression::None).1,
            COMPRESSION_NONE
        );
    }

    #[test]
    fn damaged_lz4_is_corruption() {
        let text = b"abcdabcdabcdabcd".repeat(64);
        let (stored, kind) = compress(text, Compression::Lz4);
        let mut big = Vec::new();
        put_varint32(&mut big, u32::MAX);
        big.extend_from_slice(&stored[1..]);
        let mut short = stored.clone();
        short.truncate(stored.len() - 3);
        let mut wrong_size = Vec::new();
        put_varint32(&mut wrong_size, 5);
        wrong_size.extend_from_slice(&stored[2..]);
        for bad in [big, short, wrong_size, vec![0xff; 3], Vec::new()] {
            let err = decompress(bad, kind, Path::new("t.sst"), 42).unwrap_err();
            assert!(matches!(err, Error::Corruption { offset: 42, .. }), "{err}");
        }
        assert!(decompress(vec![1], 9, Path::new("t"), 0).is_err());
    }
}
