//! Where the bridge connects, which topic it uses, and how long it waits.

use std::time::Duration;

use rdkafka::ClientConfig;

use super::error::{Error, Result};

/// The connection and topic shared by every part of the bridge.
///
/// # Examples
/// ```
/// use varve_changelog::kafka::KafkaConfig;
/// let config = KafkaConfig::new("127.0.0.1:9092", "store-changelog")
///     .with_timeout_ms(10_000)
///     .with_property("client.id", "varve-node-1");
/// assert_eq!(config.timeout_ms, 10_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of bootstrap brokers.
    pub bootstrap_servers: String,
    /// The changelog topic.
    pub topic: String,
    /// The bound on every blocking call of the bridge (topic set-up,
    /// metadata, a restore's fetches, [`Shipper::ship_until`]'s own limit
    /// when it is larger is cut to this for connection set-up). Default
    /// 30 000 ms.
    ///
    /// [`Shipper::ship_until`]: super::Shipper::ship_until
    pub timeout_ms: u64,
    /// Extra librdkafka properties applied to every client (for example
    /// `security.protocol`, `sasl.mechanism`, `client.id`). They are
    /// applied last, so they can override the bridge's own settings; the
    /// bridge's guarantees hold only if `enable.idempotence`, `acks` and
    /// `max.in.flight.requests.per.connection` are left alone.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// A configuration for `topic` on the brokers `bootstrap_servers`, with
    /// the default timeout.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            timeout_ms: 30_000,
            properties: Vec::new(),
        }
    }

    /// Replaces the timeout.
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> KafkaConfig {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Adds a librdkafka property.
    pub fn with_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> KafkaConfig {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty bootstrap list or topic, or
    /// a zero timeout.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(Error::InvalidArgument("bootstrap_servers is empty".into()));
        }
        if self.topic.is_empty() || self.topic.len() > 249 {
            return Err(Error::InvalidArgument(format!(
                "topic name must be 1..=249 bytes, got {:?}",
                self.topic
            )));
        }
        if self.timeout_ms == 0 || self.timeout_ms > i32::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "timeout_ms must be 1..={}, got {}",
                i32::MAX,
                self.timeout_ms
            )));
        }
        Ok(())
    }

    /// The librdkafka settings every client of the bridge starts from.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let timeout = self.timeout_ms.to_string();
        let setup = self.timeout_ms.max(1000).to_string();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("allow.auto.create.topics", "false")
            .set("socket.timeout.ms", timeout.clone())
            .set("socket.connection.setup.timeout.ms", setup)
            .set("reconnect.backoff.max.ms", "1000")
            .set("retry.backoff.max.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "10000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// The compression codec of produced batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    None,
    /// LZ4 (the default: cheap, and changelog values compress well).
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The librdkafka `compression.codec` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}
