//! [`BrokenSource`]: a record source whose every poll fails.

use std::io;

use crate::{RecordSource, SourceBounds, StoredRecord};

/// A [`RecordSource`] that claims offsets `0..10` and fails every poll
/// with [`io::ErrorKind::TimedOut`] ("broker away"): a restore from it stops
/// after its store exists, leaving an interrupted restore behind.
#[derive(Clone, Copy, Debug, Default)]
pub struct BrokenSource;

impl RecordSource for BrokenSource {
    type Error = io::Error;
    fn bounds(&mut self) -> Result<SourceBounds, io::Error> {
        Ok(SourceBounds {
            start_offset: 0,
            end_offset: 10,
        })
    }
    fn seek(&mut self, _: u64) -> Result<(), io::Error> {
        Ok(())
    }
    fn poll(&mut self, _: usize) -> Result<Vec<StoredRecord>, io::Error> {
        Err(io::Error::new(io::ErrorKind::TimedOut, "broker away"))
    }
}
