//! Errors of the Kafka bridge: one typed variant per failure a caller can
//! act on, each with the topic, partition or address it concerns.

use std::fmt;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The bridge's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the Kafka bridge.
///
/// Every blocking call of the bridge gives up after the configured
/// [`timeout_ms`](super::KafkaConfig::timeout_ms) with one of these; nothing
/// local is marked shipped when a call fails.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No broker of the bootstrap list could be reached (connection
    /// refused, unresolvable host, every broker down), or at set-up none
    /// answered a request (a port that accepts connections but speaks
    /// another protocol, such as a TLS listener to a plaintext client),
    /// within the timeout.
    Unreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// How long the bridge tried.
        waited_ms: u64,
        /// The last transport error the client reported.
        detail: String,
    },
    /// The topic does not exist (topics are never auto-created by the
    /// bridge except through [`ensure_topic`](super::ensure_topic)).
    TopicMissing {
        /// The topic.
        topic: String,
    },
    /// The partition does not exist in the topic.
    PartitionMissing {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// The topic's partition count.
        partitions: usize,
    },
    /// The broker refused the operation to this client's principal.
    Authorization {
        /// The topic (or cluster) the operation was on.
        resource: String,
        /// What the bridge was doing.
        operation: &'static str,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The connection to the brokers could not be secured: the TLS
    /// handshake failed (a broker certificate the client does not trust,
    /// one that does not name the host, TLS against a plaintext listener)
    /// or SASL authentication failed (wrong credentials, a mechanism the
    /// broker does not offer). Reported when no broker ever answered and
    /// the client saw such a failure; retrying cannot cure it until a
    /// certificate, trust store or credential changes.
    Authentication {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// [`RDKafkaErrorCode::SSL`] for a TLS failure,
        /// [`RDKafkaErrorCode::Authentication`] for a SASL one.
        code: RDKafkaErrorCode,
        /// What the client reported (for a certificate, librdkafka names
        /// the check that failed).
        detail: String,
    },
    /// An existing topic is configured differently from what the bridge
    /// needs (cleanup policy, partition count).
    TopicConfig {
        /// The topic.
        topic: String,
        /// The setting that differs.
        setting: &'static str,
        /// What the bridge expects.
        expected: String,
        /// What the broker reports.
        found: String,
    },
    /// An operation did not finish within the timeout though a broker was
    /// reachable.
    Timeout {
        /// What the bridge was doing.
        operation: &'static str,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The broker does not support something the bridge needs.
    Unsupported {
        /// What is missing.
        what: String,
    },
    /// A record read from the topic cannot be turned into a changelog
    /// record (for example a bad `varve.offset` header).
    BadRecord {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's Kafka offset.
        offset: i64,
        /// What is wrong.
        what: String,
    },
    /// A bad argument or configuration value.
    InvalidArgument(String),
    /// The shipper was stopped, or its thread ended.
    Stopped,
    /// The shipper's thread stopped on an error that retrying cannot cure
    /// (authorization, a missing topic, a record the broker refuses, a
    /// local changelog error); nothing after the shipped position was
    /// committed.
    Failed {
        /// The error that stopped it.
        cause: String,
    },
    /// An error of the local changelog.
    Log(crate::Error),
    /// Any other error of the Kafka client.
    Client {
        /// What the bridge was doing.
        operation: &'static str,
        /// The client's error.
        source: KafkaError,
    },
}

impl Error {
    /// Maps a client error to a typed error where one fits.
    pub(crate) fn from_client(
        operation: &'static str,
        resource: &str,
        source: KafkaError,
    ) -> Error {
        match source.rdkafka_error_code() {
            Some(code) if is_authorization(code) => Error::Authorization {
                resource: resource.to_owned(),
                operation,
                code,
            },
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                Error::TopicMissing {
                    topic: resource.to_owned(),
                }
            }
            _ => Error::Client { operation, source },
        }
    }

    /// Whether retrying later may help (a timeout, an unreachable broker,
    /// a transient client error); false for configuration, authorization
    /// and data errors.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } => true,
            Error::Client { source, .. } => {
                !matches!(
                    source,
                    KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
                ) && !source.rdkafka_error_code().is_some_and(is_permanent)
            }
            _ => false,
        }
    }
}

/// Whether `code` says the request itself is wrong, so sending it again
/// cannot succeed (a record too large, an invalid record or topic, a
/// policy or version the broker refuses).
pub(crate) fn is_permanent(code: RDKafkaErrorCode) -> bool {
    is_authorization(code)
        || matches!(
            code,
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidRequiredAcks
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::UnsupportedVersion
                | RDKafkaErrorCode::UnsupportedForMessageFormat
                | RDKafkaErrorCode::UnsupportedCompressionType
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
        )
}

/// Whether `code` says the principal may not do what it asked.
pub(crate) fn is_authorization(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreachable {
                bootstrap,
                waited_ms,
                detail,
            } => write!(
                f,
                "no Kafka broker reachable at {bootstrap} within {waited_ms} ms ({detail})"
            ),
            Error::TopicMissing { topic } => write!(f, "Kafka topic {topic:?} does not exist"),
            Error::PartitionMissing {
                topic,
                partition,
                partitions,
            } => write!(
                f,
                "Kafka topic {topic:?} has {partitions} partitions; partition {partition} does not exist"
            ),
            Error::Authorization {
                resource,
                operation,
                code,
            } => write!(f, "not authorized to {operation} on {resource:?}: {code}"),
            Error::Authentication {
                bootstrap,
                code,
                detail,
            } => {
                let what = if *code == RDKafkaErrorCode::SSL {
                    "TLS handshake"
                } else {
                    "SASL authentication"
                };
                write!(
                    f,
                    "{what} with the Kafka brokers at {bootstrap} failed: {detail}"
                )
            }
            Error::TopicConfig {
                topic,
                setting,
                expected,
                found,
            } => write!(
                f,
                "Kafka topic {topic:?} has {setting}={found}, the changelog needs {setting}={expected}"
            ),
            Error::Timeout {
                operation,
                waited_ms,
            } => write!(f, "timed out after {waited_ms} ms: {operation}"),
            Error::Unsupported { what } => write!(f, "the Kafka broker does not support {what}"),
            Error::BadRecord {
                topic,
                partition,
                offset,
                what,
            } => write!(f, "bad record at {topic}/{partition}@{offset}: {what}"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Stopped => f.write_str("the shipper has stopped"),
            Error::Failed { cause } => write!(
                f,
                "the shipper stopped on an error that retrying cannot cure: {cause}"
            ),
            Error::Log(e) => write!(f, "changelog: {e}"),
            Error::Client { operation, source } => {
                write!(f, "Kafka client failed to {operation}: {source}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Log(e) => Some(e),
            Error::Client { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Error {
        Error::Log(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_broker_refuses_are_not_transient() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::PolicyViolation,
        ] {
            let e =
                Error::from_client("deliver a record", "t", KafkaError::MessageProduction(code));
            assert!(!e.is_transient(), "{code:?} retried for ever");
        }
        let e = Error::from_client(
            "deliver a record",
            "t",
            KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas),
        );
        assert!(e.is_transient());
    }

    fn client(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MetadataFetch(code)
    }

    #[test]
    fn client_errors_map_to_typed_errors() {
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
        ] {
            let e = Error::from_client("fetch metadata", "orders", client(code));
            assert!(
                matches!(&e, Error::Authorization { resource, operation: "fetch metadata", code: c } if resource == "orders" && *c == code),
                "{e:?}"
            );
            assert!(!e.is_transient(), "retrying does not grant access");
            assert!(e.to_string().contains("not authorized"), "{e}");
        }
        let e = Error::from_client(
            "fetch metadata",
            "orders",
            client(RDKafkaErrorCode::UnknownTopicOrPartition),
        );
        assert!(
            matches!(&e, Error::TopicMissing { topic } if topic == "orders"),
            "{e:?}"
        );
        let e = Error::from_client(
            "fetch metadata",
            "orders",
            client(RDKafkaErrorCode::BrokerTransportFailure),
        );
        assert!(matches!(e, Error::Client { .. }), "{e:?}");
        assert!(e.is_transient());
    }
}
