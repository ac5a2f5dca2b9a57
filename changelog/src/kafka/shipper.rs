//! The shipper: tails a local [`Log`] as a named consumer and produces its
//! records, in offset order, to one partition of the changelog topic with
//! the idempotent producer. Its position is committed only after Kafka
//! acknowledged everything below it, so local retention with
//! `retain_for_consumers` never deletes an unshipped record, and a crash
//! at any point loses nothing (records acknowledged but not yet committed
//! are shipped again: at-least-once, per-key order kept).

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::OFFSET_HEADER;
use super::client::{
    BridgeContext, EVENTS_PER_SERVE, check_partition, log_librdkafka, note_client_error,
    topic_partitions,
};
use super::config::{Compression, KafkaConfig};
use super::error::{Error, Result};
use crate::log::Log;
use crate::record::StoredRecord;

/// How a [`Shipper`] ships.
///
/// # Examples
/// ```
/// use varve_changelog::kafka::{Compression, ShipperOptions};
/// let opts = ShipperOptions::new("kafka", 0).compression(Compression::Zstd);
/// assert_eq!(opts.partition, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShipperOptions {
    /// The consumer name under which the shipped position is committed in
    /// the local log ([`Log::commit_position`]).
    pub name: String,
    /// The topic partition this log ships to.
    pub partition: i32,
    /// The compression of produced batches. Default LZ4.
    pub compression: Compression,
    /// Records produced but not yet acknowledged, at most. Default 50 000.
    pub max_in_flight_records: usize,
    /// How long the producer waits to fill a batch. Default 5 ms.
    pub linger_ms: u64,
    /// How often the shipped position is committed while shipping
    /// (each commit is a small synced file write). Default 100 ms.
    pub commit_interval_ms: u64,
    /// How long librdkafka keeps retrying one record before reporting it
    /// failed (the shipper then produces again from its position). Default
    /// 120 000 ms.
    pub delivery_timeout_ms: u64,
}

impl ShipperOptions {
    /// Options for consumer `name` shipping to `partition`, with defaults.
    pub fn new(name: impl Into<String>, partition: i32) -> ShipperOptions {
        ShipperOptions {
            name: name.into(),
            partition,
            compression: Compression::default(),
            max_in_flight_records: 50_000,
            linger_ms: 5,
            commit_interval_ms: 100,
            delivery_timeout_ms: 120_000,
        }
    }
}

crate::option_setters!(ShipperOptions {
    compression: Compression,
    max_in_flight_records: usize,
    linger_ms: u64,
    commit_interval_ms: u64,
    delivery_timeout_ms: u64,
});

/// Records read from the log per produce round, at most.
const PRODUCE_CHUNK_RECORDS: usize = 10_000;

/// A delivery report: the local offset and the outcome.
type Delivery = (u64, std::result::Result<i64, KafkaError>);

/// The producer's context: collects delivery reports for the shipper.
#[derive(Debug, Default)]
struct ShipContext {
    bridge: BridgeContext,
    deliveries: Mutex<Vec<Delivery>>,
}

impl ClientContext for ShipContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        note_client_error(&self.bridge, &error, reason);
        tracing::debug!(target: "varve_db::kafka", %error, reason, "producer error");
    }
}

impl ProducerContext for ShipContext {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, local_offset: Box<u64>) {
        use rdkafka::Message;
        let outcome = match result {
            Ok(message) => Ok(message.offset()),
            Err((e, _)) => Err(e.clone()),
        };
        self.deliveries.lock().push((*local_offset, outcome));
    }
}

/// One produced record waiting for its acknowledgement.
#[derive(Debug)]
struct InFlight {
    local_offset: u64,
    acked: bool,
}

/// Ships one local [`Log`] to one topic partition: every record in offset
/// order, the position committed only after Kafka acknowledged (at least
/// once, per-key order kept; see `docs/KAFKA.md`).
///
/// `L` is how the shipper holds the log: `&Log` to ship synchronously with
/// [`ship_until`](Shipper::ship_until), `Arc<Log>` (or any `Deref<Target =
/// Log> + Send + 'static`) to run it in the background with
/// [`spawn`](Shipper::spawn).
///
/// # Examples
/// ```no_run
/// use std::time::Duration;
/// use varve_changelog::kafka::{KafkaConfig, Shipper, ShipperOptions, TopicSpec, ensure_topic};
/// use varve_changelog::{Log, LogOptions, Record};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let log = Log::open("/tmp/changelog", LogOptions::default())?;
/// log.append(&[Record::put("k", "v")])?;
/// let config = KafkaConfig::new("127.0.0.1:9092", "store-changelog");
/// ensure_topic(&config, &TopicSpec::new(1))?;
/// let mut shipper = Shipper::new(&log, config, ShipperOptions::new("kafka", 0))?;
/// shipper.ship_until(log.next_offset(), Duration::from_secs(30))?;
/// assert_eq!(shipper.lag(), 0);
/// # Ok(()) }
/// ```
pub struct Shipper<L: Deref<Target = Log>> {
    log: L,
    config: KafkaConfig,
    opts: ShipperOptions,
    producer: BaseProducer<ShipContext>,
    /// The next local offset to produce.
    produce_from: u64,
    in_flight: VecDeque<InFlight>,
    /// Every local record below this is acknowledged.
    acked_to: u64,
    /// The position last committed to the log.
    committed: u64,
    last_commit: Instant,
}

impl<L: Deref<Target = Log>> std::fmt::Debug for Shipper<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("topic", &self.config.topic)
            .field("partition", &self.opts.partition)
            .field("produce_from", &self.produce_from)
            .field("acked_to", &self.acked_to)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

impl<L: Deref<Target = Log>> Shipper<L> {
    /// A shipper for `log`, resuming from the position committed under
    /// `opts.name`. Without one it starts at the log start and registers
    /// that position at once, so retention that waits for consumers
    /// (`retain_for_consumers`, the store's `UntilShipped`) keeps every
    /// record from then on until it is shipped. It checks that the topic
    /// and partition exist first.
    ///
    /// # Errors
    /// [`Error::TopicMissing`], [`Error::PartitionMissing`],
    /// [`Error::Unreachable`], [`Error::Authorization`],
    /// [`Error::Authentication`] (a failed TLS handshake or SASL
    /// authentication), [`Error::Timeout`] within the configured timeout;
    /// [`Error::InvalidArgument`].
    pub fn new(log: L, config: KafkaConfig, opts: ShipperOptions) -> Result<Shipper<L>> {
        config.validate()?;
        if opts.name.is_empty() || opts.max_in_flight_records == 0 {
            return Err(Error::InvalidArgument(
                "a shipper needs a consumer name and max_in_flight_records > 0".into(),
            ));
        }
        let producer = create_producer(&config, &opts)?;
        let partitions = topic_partitions(
            producer.client(),
            &producer.context().bridge,
            &config,
            || {
                for _ in 0..EVENTS_PER_SERVE {
                    producer.poll(Duration::ZERO);
                }
            },
        )?;
        check_partition(&config, opts.partition, partitions)?;
        let position = match log.position(&opts.name) {
            Some(position) => position,
            None => {
                // Register at once, so that retention that waits for
                // consumers keeps everything from here until it is shipped.
                let start = log.log_start_offset();
                log.commit_position(&opts.name, start)?;
                start
            }
        };
        Ok(Shipper {
            log,
            config,
            opts,
            producer,
            produce_from: position,
            in_flight: VecDeque::new(),
            acked_to: position,
            committed: position,
            last_commit: Instant::now(),
        })
    }

    /// The log being shipped.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The committed shipped position: every local record below it is on
    /// the topic.
    pub fn shipped_position(&self) -> u64 {
        self.committed
    }

    /// Local records not yet known to be on the topic: the log end offset
    /// minus the shipped position.
    pub fn lag(&self) -> u64 {
        self.log.next_offset().saturating_sub(self.committed)
    }

    /// Ships until every local record below `offset` is acknowledged and
    /// the position is committed, or `timeout` passes. Returns the shipped
    /// position.
    ///
    /// # Errors
    /// [`Error::Timeout`] (or [`Error::Unreachable`] when no broker was
    /// ever reached) when `timeout` passes first; the work done so far is
    /// kept and a later call continues it. Delivery failures that are not
    /// transient ([`Error::Authorization`], [`Error::TopicMissing`]) and
    /// local log errors are returned at once. Nothing unacknowledged is
    /// ever committed.
    pub fn ship_until(&mut self, offset: u64, timeout: Duration) -> Result<u64> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            self.step(Duration::from_millis(5))?;
            if self.acked_to >= offset {
                self.commit(true)?;
                return Ok(self.committed);
            }
            if Instant::now() >= deadline {
                self.commit(true)?;
                return Err(self.producer.context().bridge.timed_out(
                    &self.config,
                    "ship records",
                    started.elapsed(),
                ));
            }
            if self.in_flight.is_empty() {
                self.log
                    .wait_for(self.produce_from, Duration::from_millis(20));
            }
        }
    }

    /// One round: produce what the log holds (up to the in-flight bound),
    /// serve delivery reports for up to `poll`, advance and maybe commit
    /// the position.
    fn step(&mut self, poll: Duration) -> Result<()> {
        self.produce()?;
        self.producer.poll(poll);
        self.collect_deliveries()?;
        self.commit(false)?;
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            // A fatal idempotence error (for example a broker without
            // InitProducerId): this producer is unusable, start over.
            self.rewind()?;
            return Err(Error::Client {
                operation: "produce with the idempotent producer",
                source: KafkaError::MessageProduction(code),
            })
            .inspect_err(
                |_| tracing::warn!(target: "varve_db::kafka", reason, "fatal producer error"),
            );
        }
        Ok(())
    }

    /// Produces records from `produce_from` while the in-flight bound
    /// allows.
    fn produce(&mut self) -> Result<()> {
        let end = self.log.next_offset();
        let room = self
            .opts
            .max_in_flight_records
            .saturating_sub(self.in_flight.len());
        if self.produce_from >= end || room == 0 {
            return Ok(());
        }
        let records: Vec<StoredRecord> = self
            .log
            .reader(self.produce_from)?
            .take(room.min(PRODUCE_CHUNK_RECORDS))
            .collect::<crate::Result<_>>()?;
        for record in &records {
            if !self.send(record)? {
                break;
            }
        }
        Ok(())
    }

    /// Hands one record to the producer; false when its queue is full.
    fn send(&mut self, stored: &StoredRecord) -> Result<bool> {
        debug_assert!(stored.offset >= self.produce_from);
        let record = &stored.record;
        let offset_bytes = stored.offset.to_be_bytes();
        let mut headers =
            OwnedHeaders::new_with_capacity(record.headers.len() + 1).insert(KafkaHeader {
                key: OFFSET_HEADER,
                value: Some(&offset_bytes),
            });
        for h in &record.headers {
            headers = headers.insert(KafkaHeader {
                key: &h.key,
                value: Some(&h.value[..]),
            });
        }
        let mut out = BaseRecord::<[u8], [u8], Box<u64>>::with_opaque_to(
            &self.config.topic,
            Box::new(stored.offset),
        )
        .key(&record.key[..])
        .partition(self.opts.partition)
        .timestamp(record.timestamp_ms)
        .headers(headers);
        if let Some(value) = &record.value {
            out = out.payload(&value[..]);
        }
        match self.producer.send(out) {
            Ok(()) => {
                self.in_flight.push_back(InFlight {
                    local_offset: stored.offset,
                    acked: false,
                });
                self.produce_from = stored.offset + 1;
                Ok(true)
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Ok(false),
            Err((e, _)) => Err(Error::from_client(
                "produce a record",
                &self.config.topic,
                e,
            )),
        }
    }

    /// Applies delivery reports. A failed delivery rewinds: the producer is
    /// replaced and everything from the first unacknowledged record is
    /// produced again, so order is kept (duplicates are possible).
    fn collect_deliveries(&mut self) -> Result<()> {
        let reports = std::mem::take(&mut *self.producer.context().deliveries.lock());
        let mut failure = None;
        for (local_offset, outcome) in reports {
            match outcome {
                Ok(_) => {
                    let i = self
                        .in_flight
                        .binary_search_by_key(&local_offset, |f| f.local_offset);
                    if let Ok(i) = i {
                        self.in_flight[i].acked = true;
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        while self.in_flight.front().is_some_and(|f| f.acked) {
            self.in_flight.pop_front();
        }
        self.acked_to = self
            .in_flight
            .front()
            .map_or(self.produce_from, |f| f.local_offset);
        if let Some(e) = failure {
            self.rewind()?;
            let error = Error::from_client("deliver records", &self.config.topic, e);
            if !matches!(error, Error::Client { .. }) {
                return Err(error);
            }
            tracing::warn!(target: "varve_db::kafka", %error, from = self.acked_to, "delivery failed; producing again");
        }
        Ok(())
    }

    /// Drops the producer (and whatever it still holds) and restarts from
    /// the first unacknowledged record.
    fn rewind(&mut self) -> Result<()> {
        let producer = create_producer(&self.config, &self.opts)?;
        self.producer = producer;
        self.in_flight.clear();
        self.produce_from = self.acked_to;
        Ok(())
    }

    /// Commits the acknowledged position if it moved and the interval
    /// passed (or `force`).
    fn commit(&mut self, force: bool) -> Result<()> {
        let due = force
            || self.last_commit.elapsed() >= Duration::from_millis(self.opts.commit_interval_ms);
        if self.acked_to > self.committed && due {
            self.log.commit_position(&self.opts.name, self.acked_to)?;
            self.committed = self.acked_to;
            self.last_commit = Instant::now();
        }
        Ok(())
    }
}

impl<L: Deref<Target = Log> + Send + 'static> Shipper<L> {
    /// Runs the shipper on a background thread until
    /// [`ShipperHandle::stop`] (or the handle is dropped). Transient
    /// failures (broker down, timeouts) are retried forever; the last one
    /// is visible through [`ShipperHandle::last_error`]. A failure that
    /// retrying cannot cure stops the thread after committing what was
    /// acknowledged; [`ShipperHandle::failure`] says why, and
    /// [`ShipperHandle::wait_shipped`] returns [`Error::Failed`].
    pub fn spawn(self) -> ShipperHandle {
        let shared = Arc::new(Shared::default());
        shared.shipped.store(self.committed, Ordering::Release);
        shared.end.store(self.log.next_offset(), Ordering::Release);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("varve-shipper-{}", self.opts.partition))
            .spawn(move || run(self, &thread_shared));
        match thread {
            Ok(thread) => ShipperHandle {
                shared,
                thread: Some(thread),
            },
            Err(e) => {
                *shared.last_error.lock() =
                    Some(format!("could not start the shipper thread: {e}"));
                ShipperHandle {
                    shared,
                    thread: None,
                }
            }
        }
    }
}

/// State shared between a [`ShipperHandle`] and its thread.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    shipped: AtomicU64,
    end: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The error that stopped the thread for good, if one did.
    failure: Mutex<Option<String>>,
}

/// The body of the shipper thread.
fn run<L: Deref<Target = Log>>(mut shipper: Shipper<L>, shared: &Shared) {
    let mut backoff = Duration::from_millis(100);
    while !shared.stop.load(Ordering::Acquire) {
        match shipper.step(Duration::from_millis(10)) {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) if e.is_transient() => {
                tracing::warn!(target: "varve_db::kafka", error = %e, "shipping failed; retrying");
                *shared.last_error.lock() = Some(e.to_string());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                // Retrying cannot cure it, and under UntilShipped the local
                // changelog would grow without bound meanwhile: stop, and
                // say why.
                tracing::error!(target: "varve_db::kafka", error = %e, "shipping failed for good; the shipper stops");
                *shared.last_error.lock() = Some(e.to_string());
                *shared.failure.lock() = Some(e.to_string());
                break;
            }
        }
        shared.shipped.store(shipper.committed, Ordering::Release);
        shared
            .end
            .store(shipper.log.next_offset(), Ordering::Release);
        if shipper.in_flight.is_empty() {
            shipper
                .log
                .wait_for(shipper.produce_from, Duration::from_millis(50));
        }
    }
    // A clean stop: wait (bounded) for what is in flight, commit it.
    let deadline = Instant::now() + shipper.config.timeout();
    while !shipper.in_flight.is_empty() && Instant::now() < deadline {
        shipper.producer.poll(Duration::from_millis(10));
        if shipper.collect_deliveries().is_err() {
            break;
        }
    }
    if let Err(e) = shipper.commit(true) {
        *shared.last_error.lock() = Some(e.to_string());
    }
    shared.shipped.store(shipper.committed, Ordering::Release);
}

/// A shipper running on its own thread; see [`Shipper::spawn`]. Dropping
/// the handle stops the shipper as [`stop`](ShipperHandle::stop) does.
#[derive(Debug)]
pub struct ShipperHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ShipperHandle {
    /// The committed shipped position, as of the thread's last round.
    pub fn shipped_position(&self) -> u64 {
        self.shared.shipped.load(Ordering::Acquire)
    }

    /// The log end offset minus the shipped position, as of the thread's
    /// last round (at most about 50 ms old).
    pub fn lag(&self) -> u64 {
        self.shared
            .end
            .load(Ordering::Acquire)
            .saturating_sub(self.shipped_position())
    }

    /// The last error the thread retried after, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().clone()
    }

    /// The error that stopped the thread for good (one that retrying
    /// cannot cure: authorization, a missing topic, a record the broker
    /// refuses, a local changelog error), if one did. Transient errors are
    /// retried and only shown by [`last_error`](ShipperHandle::last_error).
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().clone()
    }

    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits until the shipped position reaches `offset` or `timeout`
    /// passes.
    ///
    /// # Errors
    /// [`Error::Timeout`] with the last error in the log; [`Error::Failed`]
    /// if the thread stopped on an error retrying cannot cure,
    /// [`Error::Stopped`] if it is not running otherwise.
    pub fn wait_shipped(&self, offset: u64, timeout: Duration) -> Result<u64> {
        let started = Instant::now();
        loop {
            let shipped = self.shipped_position();
            if shipped >= offset {
                return Ok(shipped);
            }
            if !self.is_running() {
                return Err(match self.failure() {
                    Some(cause) => Error::Failed { cause },
                    None => Error::Stopped,
                });
            }
            if started.elapsed() >= timeout {
                if let Some(e) = self.last_error() {
                    tracing::warn!(target: "varve_db::kafka", error = %e, "shipper's last error");
                }
                return Err(Error::Timeout {
                    operation: "wait for records to be shipped",
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the thread after it committed what Kafka acknowledged (waiting
    /// at most the configured timeout for records in flight) and returns the
    /// final shipped position.
    pub fn stop(mut self) -> u64 {
        self.stop_thread();
        self.shipped_position()
    }

    fn stop_thread(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ShipperHandle {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The idempotent producer: `enable.idempotence=true`, `acks=all`, at most
/// 5 requests in flight (librdkafka keeps order with idempotence up to 5).
fn create_producer(
    config: &KafkaConfig,
    opts: &ShipperOptions,
) -> Result<BaseProducer<ShipContext>> {
    let mut c = config.client_config();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("compression.codec", opts.compression.as_str())
        .set("linger.ms", opts.linger_ms.to_string())
        .set("message.timeout.ms", opts.delivery_timeout_ms.to_string())
        .set(
            "queue.buffering.max.messages",
            opts.max_in_flight_records.max(1000).to_string(),
        )
        .set("partitioner", "murmur2_random");
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    c.create_with_context(ShipContext::default())
        .map_err(|e| Error::from_client("create the producer", &config.topic, e))
}
