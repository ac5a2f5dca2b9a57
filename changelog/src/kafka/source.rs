//! Restoring from Kafka: a [`RecordSource`] over one topic partition.
//!
//! The start is the partition's *earliest* offset (Kafka's log start
//! offset, never a literal 0); the end is the high watermark the broker
//! reports in its fetch responses (librdkafka caches it per partition) and
//! the partition-EOF event, not a ListOffsets(Latest) answer, which some
//! brokers do not keep exact.

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::OFFSET_HEADER;
use super::client::{BridgeContext, EVENTS_PER_SERVE, check_partition, topic_partitions};
use super::config::KafkaConfig;
use super::error::{Error, Result};
use crate::record::{Header, Record, StoredRecord};
use crate::source::{RecordSource, SourceBounds};

/// How long one consumer poll waits before the source checks its bounds.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// The librdkafka fetch settings of a [`KafkaSource`] (the configuration's
/// own properties are applied after them, so they can be overridden).
///
/// A restore reads a partition from start to end as fast as it can: large
/// fetches, up to 64 MiB queued ahead of the restore, and no pause when
/// the queue is full — librdkafka's defaults (`queued.min.messages`
/// 100,000, `fetch.queue.backoff.ms` 1000) stop fetching for a second
/// whenever about 100,000 records wait, e.g. while the restore writes a
/// table.
pub const SOURCE_FETCH_SETTINGS: &[(&str, &str)] = &[
    ("fetch.max.bytes", "67108864"),
    ("max.partition.fetch.bytes", "8388608"),
    ("fetch.wait.max.ms", "100"),
    ("queued.max.messages.kbytes", "65536"),
    ("queued.min.messages", "10000000"),
    ("fetch.queue.backoff.ms", "10"),
];

/// Records of one topic partition, in Kafka offset order, from the earliest
/// offset to the high watermark of the fetch response. Offsets are Kafka's (a compacted topic has
/// gaps); the `varve.offset` header is dropped from the records.
///
/// # Examples
/// ```no_run
/// use varve_changelog::RecordSource;
/// use varve_changelog::kafka::{KafkaConfig, KafkaSource};
/// let config = KafkaConfig::new("127.0.0.1:9092", "store-changelog");
/// let mut source = KafkaSource::new(config, 0)?;
/// let bounds = source.bounds()?;
/// source.seek(bounds.start_offset)?;
/// let mut restored = 0;
/// while source.position() < bounds.end_offset {
///     restored += source.poll(1 << 20)?.len();
/// }
/// println!("{restored} records");
/// # Ok::<(), varve_changelog::kafka::Error>(())
/// ```
pub struct KafkaSource {
    config: KafkaConfig,
    partition: i32,
    topic_c: CString,
    consumer: BaseConsumer<BridgeContext>,
    /// Records fetched (while finding the bounds) but not yet polled.
    pending: VecDeque<StoredRecord>,
    /// Whether the partition is assigned to the consumer.
    assigned: bool,
    /// The offset after the last record handed out (or the seek target).
    position: u64,
    /// Whether the consumer reported the partition's end since it last
    /// delivered a record.
    at_eof: bool,
    /// Whether records keep their `varve.offset` header.
    keep_offset_header: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.config.topic)
            .field("partition", &self.partition)
            .field("position", &self.position)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// A source over `partition` of the configured topic. It checks that
    /// the topic and partition exist.
    ///
    /// # Errors
    /// [`Error::TopicMissing`], [`Error::PartitionMissing`],
    /// [`Error::Unreachable`], [`Error::Authorization`],
    /// [`Error::Authentication`] (a failed TLS handshake or SASL
    /// authentication), [`Error::Timeout`] within the configured timeout.
    pub fn new(config: KafkaConfig, partition: i32) -> Result<KafkaSource> {
        config.validate()?;
        let mut c = config.client_config();
        // librdkafka needs a group id to assign partitions; the source never
        // joins the group nor commits to it.
        c.set("group.id", "varve-restore")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error");
        for (k, v) in SOURCE_FETCH_SETTINGS {
            c.set(*k, *v);
        }
        for (k, v) in &config.properties {
            c.set(k, v);
        }
        let consumer: BaseConsumer<BridgeContext> = c
            .create_with_context(BridgeContext::default())
            .map_err(|e| Error::from_client("create a consumer", &config.topic, e))?;
        // No partition is assigned yet, so a poll serves only events
        // (errors reach the context).
        let partitions = topic_partitions(consumer.client(), consumer.context(), &config, || {
            for _ in 0..EVENTS_PER_SERVE {
                let _ = consumer.poll(Duration::ZERO);
            }
        })?;
        check_partition(&config, partition, partitions)?;
        let topic_c = CString::new(config.topic.clone())
            .map_err(|_| Error::InvalidArgument("topic name holds a NUL byte".into()))?;
        Ok(KafkaSource {
            config,
            partition,
            topic_c,
            consumer,
            pending: VecDeque::new(),
            assigned: false,
            position: 0,
            at_eof: false,
            keep_offset_header: false,
        })
    }

    /// Keeps the `varve.offset` header in the records handed out (by
    /// default it is dropped, so a restored record equals the original).
    pub fn keep_offset_header(mut self, keep: bool) -> KafkaSource {
        self.keep_offset_header = keep;
        self
    }

    /// The offset after the last record handed out by
    /// [`poll`](RecordSource::poll) (or where the last seek points).
    pub fn position(&self) -> u64 {
        self.position
    }

    fn ctx(&self) -> &Arc<BridgeContext> {
        self.consumer.context()
    }

    /// Assigns the partition at `offset`, dropping anything buffered.
    fn assign(&mut self, offset: Offset) -> Result<()> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.config.topic, self.partition, offset)
            .map_err(|e| Error::from_client("assign the partition", &self.config.topic, e))?;
        self.consumer
            .assign(&list)
            .map_err(|e| Error::from_client("assign the partition", &self.config.topic, e))?;
        self.pending.clear();
        self.assigned = true;
        self.at_eof = false;
        Ok(())
    }

    /// The (low, high) watermarks librdkafka cached from the last fetch
    /// response, or `None` before the first one.
    fn cached_watermarks(&self) -> Option<(i64, i64)> {
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives,
        // the topic is a NUL-terminated string owned by `self`, and the
        // out-pointers point at live locals. The call only reads the
        // client's cached partition state.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                self.topic_c.as_ptr(),
                self.partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some((low, high))
    }

    /// Polls the consumer once: a record goes to `pending`, the EOF event
    /// sets `at_eof`. Returns whether anything happened.
    fn poll_once(&mut self, timeout: Duration) -> Result<bool> {
        match self.consumer.poll(timeout) {
            None => Ok(false),
            Some(Ok(message)) => {
                let record = convert(&self.config.topic, &message, self.keep_offset_header)?;
                self.ctx().mark_answered();
                self.at_eof = false;
                self.pending.push_back(record);
                Ok(true)
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                self.ctx().mark_answered();
                self.at_eof = true;
                Ok(true)
            }
            Some(Err(e)) => Err(Error::from_client("fetch records", &self.config.topic, e)),
        }
    }

    /// Waits (within the timeout) for the first fetch response, so the
    /// high watermark is known.
    fn first_fetch(&mut self) -> Result<(i64, i64)> {
        let started = Instant::now();
        loop {
            if let Some(marks) = self.cached_watermarks()
                && (self.at_eof || !self.pending.is_empty())
            {
                return Ok(marks);
            }
            if started.elapsed() >= self.config.timeout() {
                return Err(self.ctx().timed_out(
                    &self.config,
                    "fetch the partition's high watermark",
                    started.elapsed(),
                ));
            }
            self.poll_once(POLL_SLICE)?;
        }
    }

    /// Whether everything up to the partition's end has been handed out:
    /// the consumer reported the end, or the position reached the high
    /// watermark of the last fetch response.
    fn at_end(&self) -> bool {
        self.at_eof
            || self
                .cached_watermarks()
                .is_some_and(|(_, high)| self.position >= u64::try_from(high).unwrap_or(0))
    }

    /// The offset of the first record not yet handed out, if known.
    fn next_pending_offset(&self) -> Option<u64> {
        self.pending.front().map(|r| r.offset)
    }
}

impl RecordSource for KafkaSource {
    type Error = Error;

    /// The partition's log start offset and high watermark, both from the
    /// broker's fetch response; the first call starts fetching at the
    /// earliest offset.
    fn bounds(&mut self) -> Result<SourceBounds> {
        if !self.assigned {
            self.assign(Offset::Beginning)?;
        }
        let (low, high) = self.first_fetch()?;
        let end_offset = u64::try_from(high).unwrap_or(0);
        // The fetch response's log start offset when the broker sent one,
        // else the first record fetched from the beginning, else the end.
        let start_offset = match u64::try_from(low) {
            Ok(low) => low,
            Err(_) => self.next_pending_offset().unwrap_or(end_offset),
        }
        .min(end_offset);
        if self.position < start_offset {
            self.position = self.next_pending_offset().unwrap_or(start_offset);
        }
        Ok(SourceBounds {
            start_offset,
            end_offset,
        })
    }

    fn seek(&mut self, offset: u64) -> Result<()> {
        if let Some(first) = self.next_pending_offset()
            && first >= offset
            && self.position <= offset
        {
            // Already fetching from here (bounds() started at the earliest
            // offset, which is where a restore seeks): keep the buffer.
            self.position = offset;
            return Ok(());
        }
        let kafka_offset = i64::try_from(offset)
            .map_err(|_| Error::InvalidArgument(format!("offset {offset} is past i64::MAX")))?;
        if let Some((low, high)) = self.cached_watermarks()
            && (kafka_offset < low || kafka_offset > high)
        {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is outside {}/{}: [{low}, {high}]",
                self.config.topic, self.partition
            )));
        }
        self.assign(Offset::Offset(kafka_offset))?;
        self.position = offset;
        Ok(())
    }

    fn poll(&mut self, max_bytes: usize) -> Result<Vec<StoredRecord>> {
        if !self.assigned {
            self.assign(Offset::Beginning)?;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let started = Instant::now();
        loop {
            while let Some(record) = self.pending.pop_front() {
                if record.offset < self.position {
                    continue;
                }
                bytes +=
                    record.record.key.len() + record.record.value.as_ref().map_or(0, Bytes::len);
                self.position = record.offset + 1;
                out.push(record);
                if bytes >= max_bytes {
                    return Ok(out);
                }
            }
            // Whatever librdkafka already holds is taken without waiting
            // (and without asking for the watermarks per record).
            if self.poll_once(Duration::ZERO)? {
                continue;
            }
            if !out.is_empty() || self.at_end() {
                return Ok(out);
            }
            if !self.poll_once(POLL_SLICE)? && started.elapsed() >= self.config.timeout() {
                return Err(self
                    .ctx()
                    .timed_out(&self.config, "fetch records", started.elapsed()));
            }
        }
    }
}

/// A fetched message as a changelog record at its Kafka offset.
fn convert(
    topic: &str,
    message: &BorrowedMessage<'_>,
    keep_offset_header: bool,
) -> Result<StoredRecord> {
    let bad = |what: String| Error::BadRecord {
        topic: topic.to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        what,
    };
    let offset = u64::try_from(message.offset()).map_err(|_| bad("negative offset".into()))?;
    let mut headers = Vec::new();
    if let Some(hs) = message.headers() {
        for h in hs.iter() {
            if h.key == OFFSET_HEADER {
                if h.value.is_none_or(|v| v.len() != 8) {
                    return Err(bad(format!("{OFFSET_HEADER} header is not 8 bytes")));
                }
                if !keep_offset_header {
                    continue;
                }
            }
            headers.push(Header {
                key: h.key.to_owned(),
                value: Bytes::copy_from_slice(h.value.unwrap_or_default()),
            });
        }
    }
    Ok(StoredRecord {
        offset,
        record: Record {
            key: Bytes::copy_from_slice(message.key().unwrap_or_default()),
            value: message.payload().map(Bytes::copy_from_slice),
            timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
            headers,
        },
    })
}

/// The local offset a shipped record carried in its `varve.offset` header.
///
/// # Examples
/// ```
/// use varve_changelog::kafka::local_offset_from_header;
/// assert_eq!(local_offset_from_header(&42u64.to_be_bytes()), Some(42));
/// assert_eq!(local_offset_from_header(b"short"), None);
/// ```
pub fn local_offset_from_header(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}
