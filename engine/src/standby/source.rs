//! [`Polled`]: any [`RecordSource`] as a standby's upstream — a Kafka
//! topic partition through the bridge's `KafkaSource`, a `LogSource`
//! over a changelog, or a source of the caller's own.
//!
//! It commits nothing upstream: the standby's position is its own
//! changelog's end. The source's end offset (for `lag`) is asked at most
//! once a second while records flow, and whenever the standby has caught
//! up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use varve_changelog::RecordSource;

use super::upstream::{EndProbe, Fetched, Upstream, beyond_seqno_range};
use crate::error::{Error, Result};
use crate::replicate::check_replica_position;

/// How often the follower asks the source for its end offset while
/// records keep coming.
const BOUNDS_INTERVAL: Duration = Duration::from_secs(1);

/// A [`RecordSource`] the follower polls.
pub(super) struct Polled<S> {
    source: S,
    /// The source's end offset as last seen (shared with the handle).
    end: Arc<AtomicU64>,
    last_bounds: Instant,
}

impl<S: RecordSource> Polled<S> {
    /// Checks that a standby at `position` can catch up from `source`
    /// and seeks the source there; returns it with the probe of its end.
    ///
    /// # Errors
    /// `Stale` for a position below the source's start or past its end;
    /// the source's errors as [`Error::Source`].
    pub(super) fn start(mut source: S, position: u64) -> Result<(Polled<S>, EndProbe)> {
        let bounds = source.bounds().map_err(source_error)?;
        check_replica_position(position, bounds)?;
        source.seek(position).map_err(source_error)?;
        let end = Arc::new(AtomicU64::new(bounds.end_offset));
        let seen = end.clone();
        let probe: EndProbe = Box::new(move || Ok(seen.load(Ordering::Acquire)));
        let polled = Polled {
            source,
            end,
            last_bounds: Instant::now(),
        };
        Ok((polled, probe))
    }

    /// Asks the source for its end offset; a failure only leaves `lag`
    /// stale.
    fn refresh_end(&mut self) {
        if let Ok(bounds) = self.source.bounds() {
            self.end.store(bounds.end_offset, Ordering::Release);
        }
        self.last_bounds = Instant::now();
    }
}

impl<S: RecordSource + Send> Upstream for Polled<S> {
    fn fetch(&mut self, position: u64) -> Result<Fetched> {
        let mut records = self
            .source
            .poll(super::follower::POLL_BYTES)
            .map_err(source_error)?;
        records.retain(|r| r.offset >= position);
        if let Some(bad) = beyond_seqno_range(&records) {
            // Not a file of ours: the source gave data the store cannot hold.
            let what = format!(
                "the source gave a record at offset {}, beyond the sequence-number range (offsets must be below {})",
                bad.offset,
                crate::key::SeqNo::MAX.0
            );
            return Err(source_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                what,
            )));
        }
        let next = records.last().map_or(position, |r| r.offset + 1);
        self.end.fetch_max(next, Ordering::AcqRel);
        if records.is_empty() || self.last_bounds.elapsed() >= BOUNDS_INTERVAL {
            self.refresh_end();
        }
        Ok(Fetched::Records { records, next })
    }

    fn end_offset(&mut self) -> Result<u64> {
        let end = self.source.bounds().map_err(source_error)?.end_offset;
        self.end.store(end, Ordering::Release);
        Ok(end)
    }
}

fn source_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    Error::Source(Arc::new(e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use varve_changelog::{Record, SourceBounds, StoredRecord};

    /// A source that hands out all its records on every poll, from the
    /// start (as a source that redelivers after a reconnect would).
    struct Redelivering(Vec<u64>);

    impl RecordSource for Redelivering {
        type Error = std::io::Error;

        fn bounds(&mut self) -> std::io::Result<SourceBounds> {
            Ok(SourceBounds {
                start_offset: 0,
                end_offset: self.0.last().map_or(0, |o| o + 1),
            })
        }

        fn seek(&mut self, _offset: u64) -> std::io::Result<()> {
            Ok(())
        }

        fn poll(&mut self, _max_bytes: usize) -> std::io::Result<Vec<StoredRecord>> {
            Ok(self
                .0
                .iter()
                .map(|&offset| StoredRecord {
                    offset,
                    record: Record::put("k", "v"),
                })
                .collect())
        }
    }

    fn offsets(fetched: Fetched) -> (Vec<u64>, u64) {
        match fetched {
            Fetched::Records { records, next } => {
                (records.iter().map(|r| r.offset).collect(), next)
            }
            Fetched::Closed => panic!("a record source never closes"),
        }
    }

    #[test]
    fn fetch_skips_what_was_applied_and_tracks_the_end() {
        let (mut polled, end) = Polled::start(Redelivering(vec![1, 4, 6]), 2).unwrap();
        assert_eq!(end().unwrap(), 7);
        assert_eq!(offsets(polled.fetch(2).unwrap()), (vec![4, 6], 7));
        assert_eq!(offsets(polled.fetch(7).unwrap()), (vec![], 7));
        assert_eq!(polled.end_offset().unwrap(), 7);
        // Past the end, or below the start: stale.
        assert!(matches!(
            Polled::start(Redelivering(vec![1]), 3).map(|_| ()),
            Err(Error::Stale { position: 3, .. })
        ));
    }

    #[test]
    fn a_record_beyond_the_seqno_range_is_a_source_error() {
        let beyond = crate::key::SeqNo::MAX.0;
        let (mut polled, _) = Polled::start(Redelivering(vec![0, beyond]), 0).unwrap();
        match polled.fetch(0) {
            Err(Error::Source(e)) => {
                assert!(e.to_string().contains("sequence-number range"), "{e}")
            }
            Err(e) => panic!("expected a source error, got {e:?}"),
            Ok(_) => panic!("expected a source error"),
        }
    }
}
