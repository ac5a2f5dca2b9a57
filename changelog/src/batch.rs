//! The record-batch format: encoding and validated decoding.
//!
//! The byte layout is specified in `docs/format/changelog-segment.md`; every
//! constant lives here.
//!
//! ```text
//! batch  := header record{record_count}
//! header := length:u32 crc:u32 magic:u8 attributes:u8 reserved:u16
//!           record_count:u32 base_offset:u64 last_offset_delta:u32
//!           durable_lag:u32 first_timestamp_ms:i64 max_timestamp_ms:i64
//! record := attributes:u8 offset_delta:varint timestamp_delta:zigzag
//!           key_len:varint key [value_len:varint value]
//!           header_count:varint (hkey_len:varint hkey hval_len:varint hval)*
//! ```

use std::ops::Range;

use bytes::Bytes;

use crate::record::{Header, Record, RecordRef};
use crate::varint;

/// Size of the fixed batch header in bytes.
pub const BATCH_HEADER_SIZE: usize = 48;
/// The batch format version this build writes.
pub const BATCH_MAGIC: u8 = 2;
/// The first batch format version, still read: its `durable_lag` field is
/// reserved (zero) and the batch makes no durability claim.
pub const BATCH_MAGIC_V1: u8 = 1;
/// The largest batch the format allows (a bound for decoders; the log's
/// `max_batch_size_bytes` option may be smaller).
pub const MAX_BATCH_SIZE_BYTES: usize = 64 << 20;
/// Batch attribute bit: records were removed by the cleaner, so offsets
/// inside the batch may have gaps.
pub const ATTR_COMPACTED: u8 = 0b0000_1000;
/// Batch attribute bits for compression (only 0 = none exists).
pub const ATTR_COMPRESSION_MASK: u8 = 0b0000_0111;
/// Record attribute bit: the record is a tombstone and has no value.
pub const RECORD_ATTR_TOMBSTONE: u8 = 0b0000_0001;

const OFF_LENGTH: usize = 0;
const OFF_CRC: usize = 4;
const OFF_MAGIC: usize = 8;
const OFF_ATTRIBUTES: usize = 9;
const OFF_RECORD_COUNT: usize = 12;
const OFF_BASE_OFFSET: usize = 16;
const OFF_LAST_OFFSET_DELTA: usize = 24;
const OFF_DURABLE_LAG: usize = 28;
const OFF_FIRST_TIMESTAMP: usize = 32;
const OFF_MAX_TIMESTAMP: usize = 40;

const _: () = assert!(OFF_MAX_TIMESTAMP + 8 == BATCH_HEADER_SIZE);
const _: () = assert!(MAX_BATCH_SIZE_BYTES <= u32::MAX as usize);

/// The decoded fixed header of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Total size of the batch in bytes, header included.
    pub length: u32,
    /// The stored CRC-32.
    pub crc: u32,
    /// Batch attributes (compression, compacted).
    pub attributes: u8,
    /// Number of records in the batch.
    pub record_count: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// `last offset - base_offset`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record.
    pub first_timestamp_ms: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp_ms: i64,
    /// Every offset below this one was durable (synced) when the batch was
    /// written: the claim recovery uses to tell a torn tail from damaged
    /// durable data. 0 (no claim) for format version 1.
    pub durable_offset: u64,
}

impl BatchHeader {
    /// The offset of the last record (the batch's last offset even if the
    /// cleaner removed that record).
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// The offset that follows this batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }
}

/// Why bytes are not a valid batch. `Incomplete` means the bytes end before
/// the batch does (a torn tail or a short buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes are available than the header or its length field needs.
    Incomplete {
        /// How many bytes the batch needs in all (0 if unknown).
        needed_bytes: usize,
    },
    /// The bytes are damaged or not a batch.
    Invalid(String),
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// The CRC-32 a batch must carry: over bytes `[0, 4)` and `[8, length)`.
pub fn batch_crc(batch: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&batch[OFF_LENGTH..OFF_CRC]);
    hasher.update(&batch[OFF_MAGIC..]);
    hasher.finalize()
}

/// Parses and checks the header at the front of `buf` without looking at
/// the records. Checks the length bounds, magic and reserved bits, but not
/// the CRC.
///
/// # Errors
/// [`DecodeError::Incomplete`] if `buf` is shorter than a header, or
/// [`DecodeError::Invalid`] describing the bad field.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, DecodeError> {
    if buf.len() < BATCH_HEADER_SIZE {
        return Err(DecodeError::Incomplete { needed_bytes: 0 });
    }
    let length = read_u32(buf, OFF_LENGTH);
    if (length as usize) < BATCH_HEADER_SIZE || length as usize > MAX_BATCH_SIZE_BYTES {
        return Err(DecodeError::Invalid(format!(
            "batch length {length} out of range"
        )));
    }
    let magic = buf[OFF_MAGIC];
    if magic != BATCH_MAGIC && magic != BATCH_MAGIC_V1 {
        return Err(DecodeError::Invalid(format!("unknown batch magic {magic}")));
    }
    let attributes = buf[OFF_ATTRIBUTES];
    let durable_lag = read_u32(buf, OFF_DURABLE_LAG);
    if attributes & !ATTR_COMPACTED != 0
        || buf[10] != 0
        || buf[11] != 0
        || (magic == BATCH_MAGIC_V1 && durable_lag != 0)
    {
        return Err(DecodeError::Invalid(format!(
            "unknown batch attributes {attributes:#04x}"
        )));
    }
    let base_offset = read_u64(buf, OFF_BASE_OFFSET);
    let durable_offset = if magic == BATCH_MAGIC_V1 {
        0
    } else {
        base_offset
            .checked_sub(u64::from(durable_lag))
            .ok_or_else(|| {
                DecodeError::Invalid(format!(
                    "durable lag {durable_lag} exceeds base offset {base_offset}"
                ))
            })?
    };
    let header = BatchHeader {
        length,
        crc: read_u32(buf, OFF_CRC),
        attributes,
        record_count: read_u32(buf, OFF_RECORD_COUNT),
        base_offset,
        last_offset_delta: read_u32(buf, OFF_LAST_OFFSET_DELTA),
        first_timestamp_ms: read_u64(buf, OFF_FIRST_TIMESTAMP) as i64,
        max_timestamp_ms: read_u64(buf, OFF_MAX_TIMESTAMP) as i64,
        durable_offset,
    };
    check_header_fields(&header)?;
    Ok(header)
}

fn check_header_fields(h: &BatchHeader) -> Result<(), DecodeError> {
    if h.record_count == 0 || h.record_count > h.last_offset_delta.saturating_add(1) {
        return Err(DecodeError::Invalid(format!(
            "record count {} does not fit offset delta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    if h.attributes & ATTR_COMPACTED == 0
        && u64::from(h.record_count) != u64::from(h.last_offset_delta) + 1
    {
        return Err(DecodeError::Invalid(
            "uncompacted batch with offset gaps".into(),
        ));
    }
    if h.base_offset
        .checked_add(u64::from(h.last_offset_delta) + 1)
        .is_none()
    {
        return Err(DecodeError::Invalid("batch offsets overflow".into()));
    }
    if h.max_timestamp_ms < h.first_timestamp_ms {
        return Err(DecodeError::Invalid(
            "max timestamp below first timestamp".into(),
        ));
    }
    // Every record takes at least 5 bytes (attributes, 3 varints, header count).
    if (h.length as usize - BATCH_HEADER_SIZE) < h.record_count as usize * 5 {
        return Err(DecodeError::Invalid(
            "record count exceeds batch length".into(),
        ));
    }
    Ok(())
}

/// Checks a complete batch at the front of `buf`: header, length and CRC.
/// Returns the header; the batch occupies `buf[..header.length]`.
///
/// # Errors
/// [`DecodeError::Incomplete`] if `buf` ends before the batch, or
/// [`DecodeError::Invalid`] if a field or the CRC is wrong.
pub fn check_batch(buf: &[u8]) -> Result<BatchHeader, DecodeError> {
    let header = parse_header(buf)?;
    let length = header.length as usize;
    if buf.len() < length {
        return Err(DecodeError::Incomplete {
            needed_bytes: length,
        });
    }
    let actual = batch_crc(&buf[..length]);
    if actual != header.crc {
        return Err(DecodeError::Invalid(format!(
            "CRC mismatch: stored {:#010x}, computed {actual:#010x}",
            header.crc
        )));
    }
    Ok(header)
}

/// Builds one batch in a caller's buffer.
pub(crate) struct BatchEncoder<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    count: u32,
    first_timestamp_ms: i64,
    max_timestamp_ms: i64,
    last_delta: Option<u32>,
    durable_offset: u64,
}

impl<'a> BatchEncoder<'a> {
    /// Starts a batch at the end of `buf`.
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        buf.resize(start + BATCH_HEADER_SIZE, 0);
        BatchEncoder {
            buf,
            start,
            count: 0,
            first_timestamp_ms: 0,
            max_timestamp_ms: i64::MIN,
            last_delta: None,
            durable_offset: 0,
        }
    }

    /// Appends a record at `offset_delta` from the base offset.
    ///
    /// # Panics
    /// If deltas do not strictly increase (a caller bug).
    pub(crate) fn push(&mut self, offset_delta: u32, record: &RecordParts<'_>) {
        assert!(
            self.last_delta.is_none_or(|d| offset_delta > d),
            "offset deltas must increase"
        );
        if self.count == 0 {
            self.first_timestamp_ms = record.timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(record.timestamp_ms);
        let ts_delta = record.timestamp_ms.wrapping_sub(self.first_timestamp_ms);
        let buf = &mut *self.buf;
        buf.push(if record.value.is_none() {
            RECORD_ATTR_TOMBSTONE
        } else {
            0
        });
        varint::put_u64(buf, u64::from(offset_delta));
        varint::put_i64(buf, ts_delta);
        varint::put_u64(buf, record.key.len() as u64);
        buf.extend_from_slice(record.key);
        if let Some(value) = record.value {
            varint::put_u64(buf, value.len() as u64);
            buf.extend_from_slice(value);
        }
        varint::put_u64(buf, record.headers.len() as u64);
        for header in record.headers {
            varint::put_u64(buf, header.key.len() as u64);
            buf.extend_from_slice(header.key.as_bytes());
            varint::put_u64(buf, header.value.len() as u64);
            buf.extend_from_slice(&header.value);
        }
        self.count += 1;
        self.last_delta = Some(offset_delta);
    }

    /// The encoded size so far.
    pub(crate) fn size_bytes(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Records the batch's durability claim: every offset below
    /// `durable_offset` was synced before this batch is written (the
    /// default, 0, claims nothing).
    pub(crate) fn set_durable_offset(&mut self, durable_offset: u64) {
        self.durable_offset = durable_offset;
    }

    /// Writes the header and CRC. `last_offset_delta` may exceed the last
    /// pushed delta only for compacted batches.
    ///
    /// # Panics
    /// If no record was pushed or the batch exceeds the format maximum.
    pub(crate) fn finish(self, base_offset: u64, last_offset_delta: u32) -> BatchHeader {
        assert!(self.count > 0, "a batch needs at least one record");
        let length = self.size_bytes();
        assert!(
            length <= MAX_BATCH_SIZE_BYTES,
            "batch exceeds the format maximum"
        );
        let compacted = self.count != last_offset_delta + 1;
        // A lag too large for the field is clamped: the batch then claims
        // less than is true, never more.
        let durable_lag =
            u32::try_from(base_offset - self.durable_offset.min(base_offset)).unwrap_or(u32::MAX);
        let h = BatchHeader {
            length: length as u32,
            crc: 0,
            attributes: if compacted { ATTR_COMPACTED } else { 0 },
            record_count: self.count,
            base_offset,
            last_offset_delta,
            first_timestamp_ms: self.first_timestamp_ms,
            max_timestamp_ms: self.max_timestamp_ms,
            durable_offset: base_offset - u64::from(durable_lag),
        };
        let out = &mut self.buf[self.start..];
        out[OFF_LENGTH..OFF_CRC].copy_from_slice(&h.length.to_le_bytes());
        out[OFF_MAGIC] = BATCH_MAGIC;
        out[OFF_ATTRIBUTES] = h.attributes;
        out[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&h.record_count.to_le_bytes());
        out[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
        out[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&last_offset_delta.to_le_bytes());
        out[OFF_DURABLE_LAG..OFF_DURABLE_LAG + 4].copy_from_slice(&durable_lag.to_le_bytes());
        out[OFF_FIRST_TIMESTAMP..OFF_FIRST_TIMESTAMP + 8]
            .copy_from_slice(&h.first_timestamp_ms.to_le_bytes());
        out[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8]
            .copy_from_slice(&h.max_timestamp_ms.to_le_bytes());
        let crc = batch_crc(out);
        out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        BatchHeader { crc, ..h }
    }
}

/// Borrowed parts of a record, for encoding.
pub(crate) struct RecordParts<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) timestamp_ms: i64,
    pub(crate) headers: &'a [Header],
}

impl<'a> From<&'a Record> for RecordParts<'a> {
    fn from(r: &'a Record) -> Self {
        RecordParts {
            key: &r.key,
            value: r.value.as_deref(),
            timestamp_ms: r.timestamp_ms,
            headers: &r.headers,
        }
    }
}

/// The encoded size of a batch holding `records`.
pub fn encoded_size(records: &[Record]) -> usize {
    let mut size = BATCH_HEADER_SIZE;
    for (i, r) in records.iter().enumerate() {
        size += 1 + varint::len_u64(i as u64) + 10;
        size += varint::len_u64(r.key.len() as u64) + r.key.len();
        if let Some(v) = &r.value {
            size += varint::len_u64(v.len() as u64) + v.len();
        }
        size += varint::len_u64(r.headers.len() as u64);
        for h in &r.headers {
            size += 20 + h.key.len() + h.value.len();
        }
    }
    size
}

/// Encodes `records` as one batch starting at `base_offset`, appending it
/// to `buf`. Returns the header written. The batch makes no durability
/// claim (its `durable_offset` is 0).
///
/// # Panics
/// If `records` is empty or too large for the format (callers check
/// sizes first and return typed errors).
pub fn encode_batch(buf: &mut Vec<u8>, base_offset: u64, records: &[Record]) -> BatchHeader {
    encode_batch_claiming(buf, base_offset, 0, records)
}

/// As [`encode_batch`], with the claim that every offset below
/// `durable_offset` was durable when the batch is written.
pub(crate) fn encode_batch_claiming(
    buf: &mut Vec<u8>,
    base_offset: u64,
    durable_offset: u64,
    records: &[Record],
) -> BatchHeader {
    let mut enc = BatchEncoder::new(buf);
    for (i, record) in records.iter().enumerate() {
        enc.push(i as u32, &RecordParts::from(record));
    }
    enc.set_durable_offset(durable_offset);
    enc.finish(base_offset, records.len() as u32 - 1)
}

/// A validated batch: its header and bytes (CRC checked).
#[derive(Clone, Debug)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Validates `bytes` (exactly one whole batch) and wraps it.
    ///
    /// # Errors
    /// [`DecodeError`] if the bytes are not exactly one valid batch.
    pub fn from_bytes(bytes: Bytes) -> Result<Batch, DecodeError> {
        let header = check_batch(&bytes)?;
        if header.length as usize != bytes.len() {
            return Err(DecodeError::Invalid("trailing bytes after batch".into()));
        }
        Ok(Batch { header, bytes })
    }

    /// Wraps bytes already validated by [`check_batch`] (no second CRC).
    pub(crate) fn from_checked(header: BatchHeader, bytes: Bytes) -> Batch {
        debug_assert_eq!(header.length as usize, bytes.len());
        Batch { header, bytes }
    }

    /// The batch header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The raw encoded batch.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Iterates the records with their offsets. Keys and values share the
    /// batch's memory (no copy).
    pub fn records(&self) -> RecordIter {
        RecordIter {
            bytes: self.bytes.clone(),
            pos: BATCH_HEADER_SIZE,
            remaining: self.header.record_count,
            header: self.header,
            last_delta: None,
        }
    }
}

/// Iterator over the records of a [`Batch`]; yields `(offset, record)`.
#[derive(Debug)]
pub struct RecordIter {
    bytes: Bytes,
    pos: usize,
    remaining: u32,
    header: BatchHeader,
    last_delta: Option<u64>,
}

impl Iterator for RecordIter {
    type Item = Result<(u64, Record), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            if self.pos != self.bytes.len() {
                self.pos = self.bytes.len();
                return Some(Err(DecodeError::Invalid(
                    "bytes left after the last record".into(),
                )));
            }
            return None;
        }
        self.remaining -= 1;
        let item = self.decode_one();
        if item.is_err() {
            self.remaining = 0;
            self.pos = self.bytes.len();
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize + 1))
    }
}

impl RecordIter {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = varint::get_u64(&self.bytes[self.pos..])
            .ok_or_else(|| DecodeError::Invalid(format!("bad varint at {}", self.pos)))?;
        self.pos += n;
        Ok(v)
    }

    /// The range of the next length-prefixed field.
    fn field(&mut self) -> Result<Range<usize>, DecodeError> {
        let len = self.varint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| DecodeError::Invalid(format!("field length {len} past batch end")))?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    /// Decodes and checks the next record, leaving its key, value and
    /// header values as ranges of the batch's bytes; header names are
    /// checked to be UTF-8 and kept only if `keep_headers`.
    fn decode_raw(&mut self, keep_headers: bool) -> Result<RawRecord, DecodeError> {
        let attributes = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| DecodeError::Invalid("record past batch end".into()))?;
        if attributes & !RECORD_ATTR_TOMBSTONE != 0 {
            return Err(DecodeError::Invalid(format!(
                "unknown record attributes {attributes:#04x}"
            )));
        }
        self.pos += 1;
        let delta = self.varint()?;
        if delta > u64::from(self.header.last_offset_delta)
            || self.last_delta.is_some_and(|d| delta <= d)
        {
            return Err(DecodeError::Invalid(format!(
                "record offset delta {delta} out of order"
            )));
        }
        self.last_delta = Some(delta);
        let (ts_delta, n) = varint::get_i64(&self.bytes[self.pos..])
            .ok_or_else(|| DecodeError::Invalid("bad timestamp varint".into()))?;
        self.pos += n;
        let key = self.field()?;
        let value = if attributes & RECORD_ATTR_TOMBSTONE == 0 {
            Some(self.field()?)
        } else {
            None
        };
        let header_count = self.varint()?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let name = self.field()?;
            let name = std::str::from_utf8(&self.bytes[name])
                .map_err(|_| DecodeError::Invalid("header name is not UTF-8".into()))?;
            let name = if keep_headers {
                name.to_owned()
            } else {
                String::new()
            };
            let value = self.field()?;
            if keep_headers {
                headers.push((name, value));
            }
        }
        Ok(RawRecord {
            offset: self.header.base_offset + delta,
            timestamp_ms: self.header.first_timestamp_ms.wrapping_add(ts_delta),
            key,
            value,
            headers,
        })
    }

    fn decode_one(&mut self) -> Result<(u64, Record), DecodeError> {
        let raw = self.decode_raw(true)?;
        let record = Record {
            key: self.bytes.slice(raw.key),
            value: raw.value.map(|v| self.bytes.slice(v)),
            timestamp_ms: raw.timestamp_ms,
            headers: raw
                .headers
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value: self.bytes.slice(value),
                })
                .collect(),
        };
        Ok((raw.offset, record))
    }

    /// Hands each record left, from offset `from` up, to `visit` borrowed
    /// from the batch's bytes (headers are checked but not passed), until
    /// `visit` returns `false`; returns whether every record was visited.
    ///
    /// # Errors
    /// [`DecodeError`] at the first record that does not decode, or bytes
    /// left after the last.
    pub(crate) fn visit(
        mut self,
        from: u64,
        visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
    ) -> Result<bool, DecodeError> {
        while self.remaining > 0 {
            self.remaining -= 1;
            let raw = self.decode_raw(false)?;
            if raw.offset < from {
                continue;
            }
            let record = RecordRef {
                offset: raw.offset,
                key: &self.bytes[raw.key],
                value: raw.value.map(|v| &self.bytes[v]),
                timestamp_ms: raw.timestamp_ms,
            };
            if !visit(record) {
                return Ok(false);
            }
        }
        if self.pos != self.bytes.len() {
            return Err(DecodeError::Invalid(
                "bytes left after the last record".into(),
            ));
        }
        Ok(true)
    }
}

/// A decoded record whose bytes are ranges of its batch.
struct RawRecord {
    offset: u64,
    timestamp_ms: i64,
    key: Range<usize>,
    value: Option<Range<usize>>,
    headers: Vec<(String, Range<usize>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::put("a", "1").with_timestamp_ms(1000),
            Record::tombstone("b").with_timestamp_ms(999),
            Record::put("", "")
                .with_timestamp_ms(2000)
                .with_header("h", "v"),
        ]
    }

    #[test]
    fn roundtrip() {
        let mut buf = Vec::new();
        let h = encode_batch(&mut buf, 42, &sample());
        assert_eq!(h.length as usize, buf.len());
        assert!(encoded_size(&sample()) >= buf.len());
        let batch = Batch::from_bytes(Bytes::from(buf)).unwrap();
        assert_eq!(batch.header().base_offset, 42);
        assert_eq!(batch.header().next_offset(), 45);
        assert_eq!(batch.header().max_timestamp_ms, 2000);
        let got: Vec<_> = batch.records().map(|r| r.unwrap()).collect();
        let want: Vec<_> = sample()
            .into_iter()
            .enumerate()
            .map(|(i, r)| (42 + i as u64, r))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 7, &sample());
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                check_batch(&damaged).is_err(),
                "flip of bit {bit} not detected"
            );
        }
    }

    #[test]
    fn truncated_batch_is_incomplete() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 0, &sample());
        assert_eq!(
            check_batch(&buf[..10]),
            Err(DecodeError::Incomplete { needed_bytes: 0 })
        );
        assert!(matches!(
            check_batch(&buf[..buf.len() - 1]),
            Err(DecodeError::Incomplete { .. })
        ));
    }

    #[test]
    fn compacted_batch_keeps_offsets() {
        let mut buf = Vec::new();
        let records = sample();
        let mut enc = BatchEncoder::new(&mut buf);
        enc.push(1, &RecordParts::from(&records[1]));
        enc.push(4, &RecordParts::from(&records[0]));
        let h = enc.finish(10, 9);
        assert_eq!(h.attributes, ATTR_COMPACTED);
        let batch = Batch::from_bytes(Bytes::from(buf)).unwrap();
        let offsets: Vec<u64> = batch.records().map(|r| r.unwrap().0).collect();
        assert_eq!(offsets, vec![11, 14]);
        assert_eq!(batch.header().next_offset(), 20);
    }
}
