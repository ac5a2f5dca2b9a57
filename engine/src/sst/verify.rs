//! [`Table::verify`]: reads every block of a table and checks it against the
//! index, the filter and the properties.

use super::block_iter::BlockIter;
use super::format::BLOCK_TRAILER_SIZE;
use super::properties::mismatch;
use super::reader::Table;
use crate::error::{Error, Result};
use crate::key::{SeqNo, ValueKind};

/// What [`Table::verify`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Data blocks read and checked.
    pub data_block_count: u64,
    /// Entries seen.
    pub entry_count: u64,
    /// Delete entries seen.
    pub tombstone_count: u64,
    /// Bytes of data blocks read, trailers included.
    pub data_size_bytes: u64,
}

/// Totals gathered while scanning, compared with the properties at the end.
#[derive(Default)]
struct Totals {
    seqno_min: Option<SeqNo>,
    seqno_max: SeqNo,
    raw_key_size_bytes: u64,
    raw_value_size_bytes: u64,
    smallest_key: Vec<u8>,
}

impl Table {
    /// Reads every data block and checks it: CRC, compression type and
    /// structure; keys strictly increasing within and across blocks and
    /// agreeing with the index; every user key present in the Bloom
    /// filter; counts, sizes, key range and seqno range equal to the
    /// properties. The footer, index, filter and properties were checked by
    /// [`open`](Table::open).
    ///
    /// # Errors
    /// [`Error::Corruption`] for the first problem found, [`Error::Io`] if a
    /// read failed.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut totals = Totals::default();
        for (i, handle) in self.data_block_handles()?.into_iter().enumerate() {
            let block = self.data_block_from_file(i)?;
            if i == 0 {
                totals.smallest_key = block.first_key().to_vec();
            }
            let mut iter = BlockIter::new(block);
            iter.seek_to_first();
            while iter.valid() {
                let key = iter.key();
                if !self.may_contain(key.user_key) {
                    let what = "the filter does not contain a key of this block";
                    return Err(Error::corruption(self.path(), handle.offset, what));
                }
                report.entry_count += 1;
                report.tombstone_count += u64::from(key.kind == ValueKind::Delete);
                totals.seqno_min =
                    Some(totals.seqno_min.map_or(key.seqno, |min| min.min(key.seqno)));
                totals.seqno_max = totals.seqno_max.max(key.seqno);
                totals.raw_key_size_bytes += iter.encoded_key().len() as u64;
                totals.raw_value_size_bytes += iter.value().len() as u64;
                iter.next();
            }
            iter.status()?;
            report.data_block_count += 1;
            report.data_size_bytes += handle.size_bytes + BLOCK_TRAILER_SIZE as u64;
        }
        self.compare_with_properties(&report, &totals)?;
        Ok(report)
    }

    fn compare_with_properties(&self, report: &VerifyReport, totals: &Totals) -> Result<()> {
        let props = self.properties();
        let at = self.footer().properties.offset;
        let checks = [
            ("entry_count", props.entry_count, report.entry_count),
            (
                "tombstone_count",
                props.tombstone_count,
                report.tombstone_count,
            ),
            (
                "seqno_min",
                props.seqno_min.0,
                totals.seqno_min.unwrap_or_default().0,
            ),
            ("seqno_max", props.seqno_max.0, totals.seqno_max.0),
            (
                "raw_key_size_bytes",
                props.raw_key_size_bytes,
                totals.raw_key_size_bytes,
            ),
            (
                "raw_value_size_bytes",
                props.raw_value_size_bytes,
                totals.raw_value_size_bytes,
            ),
        ];
        for (what, recorded, actual) in checks {
            if recorded != actual {
                return Err(mismatch(self.path(), at, what, recorded, actual));
            }
        }
        if props.smallest_key != totals.smallest_key {
            return Err(Error::corruption(
                self.path(),
                at,
                "smallest key disagrees with the first data block",
            ));
        }
        Ok(())
    }
}
