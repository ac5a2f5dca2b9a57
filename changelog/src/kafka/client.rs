//! What every client of the bridge shares: a context that remembers
//! transport errors (to tell "unreachable" from "slow"), metadata look-ups
//! and a bounded wait on the admin API's futures.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use super::config::KafkaConfig;
use super::error::{Error, Result, is_authorization};

/// The client context of the bridge's admin clients and consumers.
#[derive(Debug, Default)]
pub(crate) struct BridgeContext {
    /// The last transport-level error (connection refused, resolve
    /// failure, all brokers down).
    transport_error: Mutex<Option<String>>,
    /// Whether any request was ever answered by a broker.
    answered: AtomicBool,
}

impl BridgeContext {
    /// Notes that a broker answered.
    pub(crate) fn mark_answered(&self) {
        self.answered.store(true, Ordering::Release);
    }

    /// The error for an operation that did not finish in time: unreachable
    /// when no broker ever answered and the client saw transport errors,
    /// otherwise a timeout.
    pub(crate) fn timed_out(
        &self,
        config: &KafkaConfig,
        operation: &'static str,
        waited: Duration,
    ) -> Error {
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        if !self.answered.load(Ordering::Acquire) {
            // Transport errors reach the context only when its queue is
            // polled, so also try the bootstrap servers directly.
            let detail = self
                .transport_error
                .lock()
                .clone()
                .or_else(|| probe_bootstrap(config));
            if let Some(detail) = detail {
                return Error::Unreachable {
                    bootstrap: config.bootstrap_servers.clone(),
                    waited_ms,
                    detail,
                };
            }
        }
        Error::Timeout {
            operation,
            waited_ms,
        }
    }

    fn note_error(&self, error: &KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code()
            && is_transport(code)
        {
            *self.transport_error.lock() = Some(reason.to_owned());
        }
    }
}

/// Tries a TCP connection to each bootstrap server (at most 2 s each);
/// `None` if one accepts, else what went wrong with the last one.
pub(crate) fn probe_bootstrap(config: &KafkaConfig) -> Option<String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let mut last = None;
    for server in config.bootstrap_servers.split(',').map(str::trim) {
        let address = server.rsplit_once("://").map_or(server, |(_, a)| a);
        let addrs = match address.to_socket_addrs() {
            Ok(addrs) => addrs,
            Err(e) => {
                last = Some(format!("{address}: {e}"));
                continue;
            }
        };
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(_) => return None,
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
    }
    Some(last.unwrap_or_else(|| "no bootstrap server address".into()))
}

/// Whether `code` is a connection-level failure.
pub(crate) fn is_transport(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::NetworkException
    )
}

impl ClientContext for BridgeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note_error(&error, reason);
        tracing::debug!(target: "varve_db::kafka", %error, reason, "client error");
    }
}

impl ConsumerContext for BridgeContext {}

/// The shared context behind a producer's own context.
pub(crate) fn note_client_error(ctx: &BridgeContext, error: &KafkaError, reason: &str) {
    ctx.note_error(error, reason);
}

/// Sends librdkafka's log lines to `tracing` (they are noisy while a broker
/// is down, so nothing above `warn`).
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    if std::env::var_os("VARVE_KAFKA_DEBUG_LOG").is_some() {
        eprintln!("librdkafka {level:?} {fac} {message}");
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", fac, message)
        }
        _ => tracing::debug!(target: "librdkafka", fac, message),
    }
}

/// The partition count of the configured topic, from a metadata request.
///
/// # Errors
/// [`Error::TopicMissing`], [`Error::Authorization`], [`Error::Unreachable`]
/// or [`Error::Timeout`] within the configured timeout.
pub(crate) fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    ctx: &BridgeContext,
    config: &KafkaConfig,
) -> Result<usize> {
    let started = Instant::now();
    let metadata = match client.fetch_metadata(Some(&config.topic), config.timeout()) {
        Ok(m) => m,
        Err(e) => {
            return Err(match e.rdkafka_error_code() {
                Some(code) if code == RDKafkaErrorCode::OperationTimedOut || is_transport(code) => {
                    ctx.timed_out(config, "fetch topic metadata", started.elapsed())
                }
                _ => Error::from_client("fetch topic metadata", &config.topic, e),
            });
        }
    };
    ctx.mark_answered();
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == config.topic) else {
        return Err(Error::TopicMissing {
            topic: config.topic.clone(),
        });
    };
    if let Some(err) = topic.error() {
        return Err(topic_error(config, "fetch topic metadata", err));
    }
    if topic.partitions().is_empty() {
        return Err(Error::TopicMissing {
            topic: config.topic.clone(),
        });
    }
    Ok(topic.partitions().len())
}

/// The typed error for a per-topic error code.
pub(crate) fn topic_error(
    config: &KafkaConfig,
    operation: &'static str,
    err: RDKafkaRespErr,
) -> Error {
    let code = RDKafkaErrorCode::from(err);
    match code {
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
            Error::TopicMissing {
                topic: config.topic.clone(),
            }
        }
        c if is_authorization(c) => Error::Authorization {
            resource: config.topic.clone(),
            operation,
            code: c,
        },
        c => Error::Client {
            operation,
            source: KafkaError::MetadataFetch(c),
        },
    }
}

/// Checks that `partition` exists in a topic of `partitions` partitions.
pub(crate) fn check_partition(
    config: &KafkaConfig,
    partition: i32,
    partitions: usize,
) -> Result<()> {
    if partition < 0 || partition as usize >= partitions {
        return Err(Error::PartitionMissing {
            topic: config.topic.clone(),
            partition,
            partitions,
        });
    }
    Ok(())
}

/// Runs `future` on this thread until it completes or `timeout` passes
/// (`None`). The admin API's futures are completed by the client's own
/// background thread, so no executor is needed.
pub(crate) fn block_on<F: Future>(future: F, timeout: Duration) -> Option<F::Output> {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let deadline = Instant::now() + timeout;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}
