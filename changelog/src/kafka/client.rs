//! What every client of the bridge shares: a context that remembers
//! transport and handshake errors (to tell "unreachable" or "refused the
//! TLS/SASL handshake" from "slow"), metadata look-ups and a bounded wait on
//! the admin API's futures.

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
    /// The last TLS handshake or SASL authentication failure.
    handshake_error: Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// Whether any request was ever answered by a broker.
    answered: AtomicBool,
}

impl BridgeContext {
    /// Notes that a broker answered.
    pub(crate) fn mark_answered(&self) {
        self.answered.store(true, Ordering::Release);
    }

    /// [`timed_out`](Self::timed_out) for a client being set up: a port
    /// that takes connections but answered nothing in the whole timeout is
    /// unreachable, most likely a listener of another protocol (a running
    /// client's new connection may just be slow, so only set-up says so).
    pub(crate) fn set_up_timed_out(
        &self,
        config: &KafkaConfig,
        operation: &'static str,
        waited: Duration,
    ) -> Error {
        match self.timed_out(config, operation, waited) {
            Error::Timeout { waited_ms, .. } if !self.answered.load(Ordering::Acquire) => {
                Error::Unreachable {
                    bootstrap: config.bootstrap_servers.clone(),
                    waited_ms,
                    detail: "a bootstrap server accepts connections but no broker answered a \
                             request (is security.protocol right? a TLS listener needs SSL or \
                             SASL_SSL, a plaintext one neither)"
                        .to_owned(),
                }
            }
            e => e,
        }
    }

    /// [`Error::Authentication`] if no broker ever answered and the client
    /// saw a TLS handshake or SASL authentication fail.
    pub(crate) fn authentication_error(&self, config: &KafkaConfig) -> Option<Error> {
        if self.answered.load(Ordering::Acquire) {
            return None;
        }
        let (code, detail) = self.handshake_error.lock().clone()?;
        Some(Error::Authentication {
            bootstrap: config.bootstrap_servers.clone(),
            code,
            detail,
        })
    }

    /// The error for an operation that did not finish in time: a failed
    /// handshake when no broker ever answered and the client saw one,
    /// unreachable when no broker ever answered and the client saw
    /// transport errors (or a direct connection attempt fails), otherwise
    /// a timeout.
    pub(crate) fn timed_out(
        &self,
        config: &KafkaConfig,
        operation: &'static str,
        waited: Duration,
    ) -> Error {
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        if let Some(e) = self.authentication_error(config) {
            return e;
        }
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
        if let Some(code) = error.rdkafka_error_code() {
            self.note_code(code, reason);
        }
    }

    fn note_code(&self, code: RDKafkaErrorCode, reason: &str) {
        if code == RDKafkaErrorCode::AllBrokersDown {
            // "1/1 brokers are down" says less than the failure before it,
            // or than a direct connection attempt (see `timed_out`).
        } else if is_transport(code) {
            *self.transport_error.lock() = Some(reason.to_owned());
        } else if is_handshake(code) {
            *self.handshake_error.lock() = Some((code, reason.to_owned()));
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

/// Whether `code` is a failed TLS handshake or SASL authentication of a
/// connection.
pub(crate) fn is_handshake(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
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

/// Events served between two metadata waits, at most (the clients' polls
/// serve one event each).
pub(crate) const EVENTS_PER_SERVE: usize = 64;

/// The first wait for metadata; each further one is twice as long (the
/// last one cut to what is left of the timeout), so a failed handshake
/// shows within about a second while a slow broker still gets about half
/// the timeout for its last request.
const METADATA_WAIT_FIRST: Duration = Duration::from_millis(250);

/// Serves the error and log events waiting on the main queue of a client
/// that no one else polls there (an admin client: its results come on a
/// queue of their own), so that `ctx` learns of transport and handshake
/// failures.
pub(crate) fn serve_main_queue<C: ClientContext>(client: &Client<C>, ctx: &BridgeContext) {
    use rdkafka::bindings as rd;
    // Bounded: what piled up since the last call, not a stream.
    const EVENTS_MAX: usize = 1_000;
    // SAFETY: the client pointer is valid while `client` lives. The queue
    // handle is ours and destroyed at the end; each event is destroyed
    // after use, and the strings read from it (checked for null) are
    // copied before that.
    unsafe {
        let queue = rd::rd_kafka_queue_get_main(client.native_ptr());
        if queue.is_null() {
            return;
        }
        for _ in 0..EVENTS_MAX {
            let event = rd::rd_kafka_queue_poll(queue, 0);
            if event.is_null() {
                break;
            }
            match rd::rd_kafka_event_type(event) {
                rd::RD_KAFKA_EVENT_ERROR => {
                    let code = RDKafkaErrorCode::from(rd::rd_kafka_event_error(event));
                    let reason = rd::rd_kafka_event_error_string(event);
                    let reason = if reason.is_null() {
                        String::new()
                    } else {
                        std::ffi::CStr::from_ptr(reason)
                            .to_string_lossy()
                            .into_owned()
                    };
                    ctx.note_code(code, reason.trim());
                    tracing::debug!(target: "varve_db::kafka", %code, reason, "client error");
                }
                rd::RD_KAFKA_EVENT_LOG => {
                    let (mut fac, mut message, mut level) = (std::ptr::null(), std::ptr::null(), 0);
                    if rd::rd_kafka_event_log(event, &mut fac, &mut message, &mut level) == 0
                        && !fac.is_null()
                        && !message.is_null()
                    {
                        log_librdkafka(
                            log_level(level),
                            &std::ffi::CStr::from_ptr(fac).to_string_lossy(),
                            &std::ffi::CStr::from_ptr(message).to_string_lossy(),
                        );
                    }
                }
                _ => {}
            }
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
    }
}

/// librdkafka's syslog-style level as the client crate's enum.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        i32::MIN..=0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// The partition count of the configured topic, from a metadata request.
/// Between waits it calls `serve_events`, which hands the client's error
/// events to `ctx`, and stops at a failed TLS handshake or SASL
/// authentication.
///
/// # Errors
/// [`Error::TopicMissing`], [`Error::Authorization`],
/// [`Error::Authentication`], [`Error::Unreachable`] or [`Error::Timeout`]
/// within the configured timeout.
pub(crate) fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    ctx: &BridgeContext,
    config: &KafkaConfig,
    mut serve_events: impl FnMut(),
) -> Result<usize> {
    let started = Instant::now();
    let mut wait = METADATA_WAIT_FIRST;
    let metadata = loop {
        let wait_started = Instant::now();
        let this_wait = wait.min(config.timeout().saturating_sub(started.elapsed()));
        match client.fetch_metadata(Some(&config.topic), this_wait) {
            Ok(m) => break m,
            Err(e) => match e.rdkafka_error_code() {
                Some(code) if code == RDKafkaErrorCode::OperationTimedOut || is_transport(code) => {
                    // A call that fails at once (all brokers down) must not
                    // spin.
                    thread::sleep(this_wait.saturating_sub(wait_started.elapsed()));
                    serve_events();
                    if let Some(e) = ctx.authentication_error(config) {
                        return Err(e);
                    }
                    if started.elapsed() >= config.timeout() {
                        return Err(ctx.set_up_timed_out(
                            config,
                            "fetch topic metadata",
                            started.elapsed(),
                        ));
                    }
                    wait = wait.saturating_mul(2);
                }
                _ => return Err(Error::from_client("fetch topic metadata", &config.topic, e)),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KafkaConfig {
        KafkaConfig::new("127.0.0.1:1", "t")
    }

    #[test]
    fn a_failed_handshake_before_any_answer_is_an_authentication_error() {
        let ctx = BridgeContext::default();
        assert!(ctx.authentication_error(&config()).is_none());
        ctx.note_code(RDKafkaErrorCode::SSL, "certificate verify failed");
        let e = ctx.timed_out(&config(), "fetch topic metadata", Duration::from_millis(5));
        assert!(
            matches!(&e, Error::Authentication { code: RDKafkaErrorCode::SSL, detail, .. } if detail.contains("verify")),
            "{e:?}"
        );
        assert!(!e.is_transient(), "a certificate does not change by itself");
        assert!(e.to_string().contains("TLS handshake"), "{e}");
        let sasl = BridgeContext::default();
        sasl.note_code(RDKafkaErrorCode::Authentication, "invalid-proof");
        let e = sasl.authentication_error(&config()).unwrap();
        assert!(e.to_string().contains("SASL authentication"), "{e}");
        // Once a broker answered, a later failure is the running client's
        // to retry, not a set-up error.
        ctx.mark_answered();
        assert!(ctx.authentication_error(&config()).is_none());
    }

    #[test]
    fn only_set_up_calls_a_silent_listener_unreachable() {
        // A local port that accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = KafkaConfig::new(listener.local_addr().unwrap().to_string(), "t");
        let ctx = BridgeContext::default();
        let e = ctx.set_up_timed_out(&config, "fetch topic metadata", Duration::from_millis(5));
        assert!(
            matches!(&e, Error::Unreachable { detail, .. } if detail.contains("security.protocol")),
            "{e:?}"
        );
        // A running client (a shipper's replaced producer) only timed out.
        let e = ctx.timed_out(&config, "ship records", Duration::from_millis(5));
        assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    }

    #[test]
    fn all_brokers_down_does_not_hide_the_failure_before_it() {
        let ctx = BridgeContext::default();
        ctx.note_code(
            RDKafkaErrorCode::BrokerTransportFailure,
            "connection refused",
        );
        ctx.note_code(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down");
        let e = ctx.timed_out(&config(), "fetch topic metadata", Duration::from_millis(5));
        assert!(
            matches!(&e, Error::Unreachable { detail, .. } if detail == "connection refused"),
            "{e:?}"
        );
    }
}
