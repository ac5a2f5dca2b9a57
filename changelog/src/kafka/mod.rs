//! The Kafka bridge (feature `kafka`): ship a changelog to a compacted
//! Kafka topic partition and restore from it.
//!
//! - [`ensure_topic`] creates the changelog topic (`cleanup.policy=compact`,
//!   one partition per store partition) or checks an existing one.
//! - [`Shipper`] tails a local [`Log`](crate::Log) as a named consumer and
//!   produces every record, in offset order, with the idempotent producer
//!   (`acks=all`); its position is committed only after Kafka acknowledged.
//! - [`KafkaSource`] is a [`RecordSource`](crate::RecordSource) over one
//!   topic partition, from its earliest offset to the high watermark of the
//!   fetch response, for the engine's restore and standbys.
//!
//! Every produced record carries its local offset in the header
//! [`OFFSET_HEADER`] (`varve.offset`, 8 bytes, big-endian `u64`); it is
//! informational: a restore uses Kafka's offsets. The record's own headers
//! follow it. See `docs/KAFKA.md` for the set-up, guarantees and errors.

mod client;
mod config;
mod error;
mod security;
mod shipper;
mod source;
mod topic;

pub use config::{Compression, GUARANTEED_PROPERTIES, KafkaConfig};
pub use error::{Error, Result};
pub use shipper::{Shipper, ShipperHandle, ShipperOptions};
pub use source::{KafkaSource, SOURCE_FETCH_SETTINGS, local_offset_from_header};
pub use topic::{CLEANUP_POLICY, TopicInfo, TopicSpec, check_topic, ensure_topic};

/// The Kafka client the bridge uses, for settings and clients of your own
/// (its librdkafka is built from source with the crate).
#[doc(no_inline)]
pub use rdkafka;

/// The header holding a shipped record's local offset: 8 bytes, big-endian.
pub const OFFSET_HEADER: &str = "varve.offset";
