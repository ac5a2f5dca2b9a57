//! [`VersionEdit`]: one change to the level structure, and its encoding.
//!
//! An edit is encoded as a sequence of tagged fields, `field := tag payload`,
//! where `tag` is a varint and the payload's shape depends on the tag. The
//! tags are listed in `docs/format/manifest.md`; they are on-disk values and
//! are never renumbered. Decoding bounds-checks every length, rejects
//! unknown tags and repeated scalar fields, and checks every table's own
//! invariants, so a decoded edit is well formed (though it may still not
//! apply to a given [`Version`](super::Version)).

use crate::key::SeqNo;

use super::{FileNumber, Level, TableMeta};

/// The engine format this build writes into the first record of every
/// manifest, and the newest one it reads.
pub const ENGINE_FORMAT: u32 = 1;

// Field tags. On-disk values: never renumber, never reuse. 0 is invalid.
const TAG_ENGINE_FORMAT: u64 = 1;
const TAG_FLUSHED_OFFSET: u64 = 2;
const TAG_NEXT_FILE_NUMBER: u64 = 3;
const TAG_LAST_SEQNO: u64 = 4;
const TAG_DELETED_TABLE: u64 = 5;
const TAG_ADDED_TABLE: u64 = 6;
const TAG_TTL_MS: u64 = 7;

/// Longest varint: ten bytes of seven bits cover 64 bits.
const VARINT_SIZE_MAX: usize = 10;

/// A change to the level structure, recorded in the manifest.
///
/// Absent scalar fields leave the current value unchanged. Deletions are
/// applied before additions, so an edit can move a table between levels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// The engine format; present in the first record of every manifest.
    pub engine_format: Option<u32>,
    /// The changelog offset below which every write is in a table; recovery
    /// replays the changelog from here.
    pub flushed_offset: Option<u64>,
    /// The next unused file number.
    pub next_file_number: Option<FileNumber>,
    /// The largest sequence number that is durable in the changelog.
    pub last_seqno: Option<SeqNo>,
    /// Tables removed from a level.
    pub deleted: Vec<(Level, FileNumber)>,
    /// Tables added to a level.
    pub added: Vec<(Level, TableMeta)>,
    /// The store is a TTL store with this time to live, in milliseconds
    /// (at least 1): its values carry their write time
    /// (`docs/TTL.md`). Present in the first record of a TTL store's
    /// manifest; a later edit may change the duration. A manifest whose
    /// first record lacks it is a plain store.
    pub ttl_ms: Option<u64>,
}

impl VersionEdit {
    /// Checks what can be checked without a [`Version`](super::Version):
    /// levels exist, tables are well formed, `last_seqno <= SeqNo::MAX`,
    /// `next_file_number <= FileNumber::MAX`.
    ///
    /// # Errors
    /// A description of the first problem found.
    pub fn check(&self) -> Result<(), String> {
        if self.ttl_ms == Some(0) {
            return Err("ttl of 0 ms".to_string());
        }
        if let Some(seqno) = self.last_seqno
            && seqno > SeqNo::MAX
        {
            return Err(format!("last seqno {} exceeds the maximum", seqno.0));
        }
        if let Some(number) = self.next_file_number
            && number > FileNumber::MAX
        {
            return Err(format!(
                "next file number {} exceeds the maximum {}",
                number.0,
                FileNumber::MAX.0
            ));
        }
        for (level, number) in &self.deleted {
            if !level.is_valid() {
                return Err(format!(
                    "deleted table {number} names missing level {level}"
                ));
            }
        }
        for (level, table) in &self.added {
            if !level.is_valid() {
                return Err(format!(
                    "added table {} names missing level {level}",
                    table.number
                ));
            }
            table.check()?;
        }
        Ok(())
    }

    /// Appends the encoded edit to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        if let Some(format) = self.engine_format {
            put_varint(buf, TAG_ENGINE_FORMAT);
            put_varint(buf, u64::from(format));
        }
        let scalars = [
            (TAG_FLUSHED_OFFSET, self.flushed_offset),
            (TAG_NEXT_FILE_NUMBER, self.next_file_number.map(|n| n.0)),
            (TAG_LAST_SEQNO, self.last_seqno.map(|s| s.0)),
        ];
        for (tag, value) in scalars {
            if let Some(value) = value {
                put_varint(buf, tag);
                put_varint(buf, value);
            }
        }
        if let Some(ttl_ms) = self.ttl_ms {
            put_varint(buf, TAG_TTL_MS);
            put_varint(buf, ttl_ms);
        }
        for (level, number) in &self.deleted {
            put_varint(buf, TAG_DELETED_TABLE);
            buf.push(level.0);
            put_varint(buf, number.0);
        }
        for (level, table) in &self.added {
            put_varint(buf, TAG_ADDED_TABLE);
            buf.push(level.0);
            encode_table(buf, table);
        }
    }

    /// The encoded edit.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf
    }

    /// Decodes an edit written by [`encode`](Self::encode).
    ///
    /// # Errors
    /// A description of the damage, naming the byte position within
    /// `payload`; the manifest reader wraps it into a corruption error that
    /// names the file and record.
    pub fn decode(payload: &[u8]) -> Result<VersionEdit, String> {
        let mut reader = Reader {
            buf: payload,
            pos: 0,
        };
        let mut edit = VersionEdit::default();
        while !reader.is_empty() {
            let start = reader.pos;
            decode_field(&mut reader, &mut edit).map_err(|what| {
                format!(
                    "{what} (field at payload byte {start}, stopped at {})",
                    reader.pos
                )
            })?;
        }
        edit.check()?;
        Ok(edit)
    }
}

fn decode_field(reader: &mut Reader<'_>, edit: &mut VersionEdit) -> Result<(), String> {
    let tag = reader.varint()?;
    match tag {
        TAG_ENGINE_FORMAT => {
            let format = u32::try_from(reader.varint()?)
                .map_err(|_| "engine format does not fit in 32 bits".to_string())?;
            set_once(&mut edit.engine_format, format, "engine format")
        }
        TAG_FLUSHED_OFFSET => {
            let offset = reader.varint()?;
            set_once(&mut edit.flushed_offset, offset, "flushed offset")
        }
        TAG_NEXT_FILE_NUMBER => {
            let number = FileNumber(reader.varint()?);
            set_once(&mut edit.next_file_number, number, "next file number")
        }
        TAG_LAST_SEQNO => {
            let seqno = SeqNo(reader.varint()?);
            set_once(&mut edit.last_seqno, seqno, "last seqno")
        }
        TAG_DELETED_TABLE => {
            let level = Level(reader.byte()?);
            let number = FileNumber(reader.varint()?);
            edit.deleted.push((level, number));
            Ok(())
        }
        TAG_ADDED_TABLE => {
            let level = Level(reader.byte()?);
            let table = decode_table(reader)?;
            edit.added.push((level, table));
            Ok(())
        }
        TAG_TTL_MS => {
            let ttl_ms = reader.varint()?;
            set_once(&mut edit.ttl_ms, ttl_ms, "ttl")
        }
        _ => Err(format!("unknown field tag {tag}")),
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name} appears twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn encode_table(buf: &mut Vec<u8>, table: &TableMeta) {
    put_varint(buf, table.number.0);
    put_varint(buf, table.size_bytes);
    put_bytes(buf, &table.smallest);
    put_bytes(buf, &table.largest);
    put_varint(buf, table.min_seqno.0);
    put_varint(buf, table.max_seqno.0);
    put_varint(buf, table.entry_count);
    put_varint(buf, table.tombstone_count);
}

fn decode_table(reader: &mut Reader<'_>) -> Result<TableMeta, String> {
    Ok(TableMeta {
        number: FileNumber(reader.varint()?),
        size_bytes: reader.varint()?,
        smallest: reader.bytes()?.to_vec(),
        largest: reader.bytes()?.to_vec(),
        min_seqno: SeqNo(reader.varint()?),
        max_seqno: SeqNo(reader.varint()?),
        entry_count: reader.varint()?,
        tombstone_count: reader.varint()?,
    })
}

/// Appends `value` as an LEB128 varint (seven bits per byte, low first).
fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Appends a varint length followed by the bytes.
fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// A bounds-checked cursor over an encoded edit.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self.buf.get(self.pos).ok_or("edit ends inside a field")?;
        self.pos += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..VARINT_SIZE_MAX {
            let byte = self.byte()?;
            if i == VARINT_SIZE_MAX - 1 && byte > 1 {
                return Err("varint overflows 64 bits".to_string());
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than ten bytes".to_string())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        let remaining = self.buf.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= remaining)
            .ok_or_else(|| format!("length {len} exceeds the {remaining} bytes left"))?;
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::version::TABLE_SIZE_BYTES_MAX;
    use crate::version::test_util::table;

    fn full_edit() -> VersionEdit {
        VersionEdit {
            engine_format: Some(ENGINE_FORMAT),
            flushed_offset: Some(1 << 40),
            next_file_number: Some(FileNumber(17)),
            last_seqno: Some(SeqNo(123_456)),
            deleted: vec![(Level(0), FileNumber(3)), (Level(6), FileNumber(u64::MAX))],
            added: vec![
                (Level(1), table(9, b"a", b"m", 4, 8)),
                (Level(0), table(10, b"", b"\xff\xff", 0, SeqNo::MAX.0)),
            ],
            ttl_ms: Some(86_400_000),
        }
    }

    #[test]
    fn roundtrip_full_and_empty() {
        for edit in [full_edit(), VersionEdit::default()] {
            assert_eq!(VersionEdit::decode(&edit.encode()), Ok(edit));
        }
        assert!(VersionEdit::default().encode().is_empty());
    }

    #[test]
    fn varint_edges() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            let mut reader = Reader { buf: &buf, pos: 0 };
            assert_eq!(reader.varint(), Ok(value));
            assert!(reader.is_empty());
        }
        let overflow = [0xff; 9].iter().chain(&[0x02]).copied().collect::<Vec<_>>();
        assert!(
            Reader {
                buf: &overflow,
                pos: 0
            }
            .varint()
            .is_err()
        );
        assert!(
            Reader {
                buf: &[0x80],
                pos: 0
            }
            .varint()
            .is_err()
        );
    }

    #[test]
    fn unknown_tag_rejected() {
        let mut buf = full_edit().encode();
        put_varint(&mut buf, 99);
        put_varint(&mut buf, 1);
        let err = VersionEdit::decode(&buf).unwrap_err();
        assert!(err.contains("unknown field tag 99"), "{err}");
        assert!(VersionEdit::decode(&[0]).unwrap_err().contains("tag 0"));
    }

    #[test]
    fn repeated_scalar_rejected() {
        let mut buf = Vec::new();
        for _ in 0..2 {
            put_varint(&mut buf, TAG_LAST_SEQNO);
            put_varint(&mut buf, 5);
        }
        assert!(VersionEdit::decode(&buf).unwrap_err().contains("twice"));
    }

    #[test]
    fn bad_level_and_bad_table_rejected() {
        let mut edit = full_edit();
        edit.deleted.push((Level(7), FileNumber(1)));
        assert!(VersionEdit::decode(&edit.encode()).is_err());
        let mut edit = full_edit();
        edit.added[0].1.min_seqno = SeqNo(100);
        assert!(VersionEdit::decode(&edit.encode()).is_err());
    }

    #[test]
    fn every_truncation_fails_or_decodes_a_prefix() {
        let buf = full_edit().encode();
        for len in 0..buf.len() {
            // A cut may land on a field boundary; then it decodes to fewer
            // fields, which the manifest's CRC would have caught.
            if let Ok(edit) = VersionEdit::decode(&buf[..len]) {
                assert_ne!(edit, full_edit());
            }
        }
    }

    fn arb_table() -> impl Strategy<Value = TableMeta> {
        let keys = (
            prop::collection::vec(any::<u8>(), 0..12),
            prop::collection::vec(any::<u8>(), 0..12),
        );
        (
            0..FileNumber::MAX.0,
            0..=TABLE_SIZE_BYTES_MAX,
            keys,
            0..=SeqNo::MAX.0,
            0..=SeqNo::MAX.0,
            any::<u64>(),
        )
            .prop_map(|(number, size_bytes, (a, b), s1, s2, entries)| {
                let entries = entries % (size_bytes + 1);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let (seq_lo, seq_hi) = (s1.min(s2), s1.max(s2));
                let mut t = table(number, &lo, &hi, seq_lo, seq_hi);
                t.size_bytes = size_bytes;
                t.entry_count = entries;
                t.tombstone_count = entries / 3;
                t
            })
    }

    fn arb_edit() -> impl Strategy<Value = VersionEdit> {
        let level = (0..NUM_LEVELS_U8).prop_map(Level);
        (
            (
                any::<Option<u32>>(),
                any::<Option<u64>>(),
                prop::option::of(0..=FileNumber::MAX.0),
            ),
            prop::option::of(0..=SeqNo::MAX.0),
            prop::collection::vec((level.clone(), any::<u64>()), 0..4),
            prop::collection::vec((level, arb_table()), 0..4),
            prop::option::of(1..=u64::MAX),
        )
            .prop_map(|((format, flushed, next), last, deleted, added, ttl_ms)| {
                VersionEdit {
                    engine_format: format,
                    flushed_offset: flushed,
                    next_file_number: next.map(FileNumber),
                    last_seqno: last.map(SeqNo),
                    deleted: deleted
                        .into_iter()
                        .map(|(l, n)| (l, FileNumber(n)))
                        .collect(),
                    added,
                    ttl_ms,
                }
            })
    }

    const NUM_LEVELS_U8: u8 = crate::version::NUM_LEVELS as u8;

    proptest! {
        #[test]
        fn edit_roundtrip(edit in arb_edit()) {
            prop_assert_eq!(VersionEdit::decode(&edit.encode()), Ok(edit));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = VersionEdit::decode(&bytes);
        }
    }
}
