//! Where the bridge connects, which topic it uses, and how long it waits.

use std::time::Duration;

use rdkafka::ClientConfig;

use super::error::{Error, Result};
use super::security::check_security;

/// The connection and topic shared by every part of the bridge.
///
/// # Examples
/// ```
/// use varve_changelog::kafka::KafkaConfig;
/// let config = KafkaConfig::new("127.0.0.1:9092", "store-changelog")
///     .timeout_ms(10_000)
///     .property("client.id", "varve-node-1");
/// assert_eq!(config.timeout_ms, 10_000);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// `security.protocol`, `sasl.mechanism`, `sasl.password`,
    /// `client.id`). [`validate`](KafkaConfig::validate) refuses those the
    /// bridge's guarantees depend on (idempotence, `acks`, requests in
    /// flight, offset handling: see [`GUARANTEED_PROPERTIES`]) unless they
    /// hold the value the bridge needs. Values of secret-looking keys
    /// (`*password*`, `*secret*`, `*jaas*`, `*token*`, `*.pem`) are
    /// printed as `<redacted>` by `Debug`.
    pub properties: Vec<(String, String)>,
}

/// The librdkafka properties the bridge's guarantees depend on, with the
/// only value a [`KafkaConfig`] may give them (`acks` also accepts `-1`).
/// `bootstrap.servers`, `metadata.broker.list` and `transactional.id` may
/// not be set as properties at all, and
/// `max.in.flight.requests.per.connection` (alias `max.in.flight`) may be
/// 1 to 5.
pub const GUARANTEED_PROPERTIES: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("request.required.acks", "all"),
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "error"),
    ("enable.partition.eof", "true"),
    ("allow.auto.create.topics", "false"),
];

/// Properties that are not the configuration's to set.
const REFUSED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "transactional.id",
];

/// Parts of a property name that mark its value as a secret.
const SECRET_MARKS: &[&str] = &["password", "secret", "jaas", "token", ".pem", "credential"];

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKS.iter().any(|m| key.contains(m))
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret(k) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("timeout_ms", &self.timeout_ms)
            .field("properties", &properties)
            .finish()
    }
}

/// Refuses a property that would break the bridge's guarantees.
fn check_property(key: &str, value: &str) -> Result<()> {
    let k = key.trim().to_ascii_lowercase();
    let v = value.trim().to_ascii_lowercase();
    if REFUSED_PROPERTIES.contains(&k.as_str()) {
        return Err(Error::InvalidArgument(format!(
            "property {key} cannot be set here (set it through KafkaConfig's own fields, or not at all)"
        )));
    }
    if k == "max.in.flight.requests.per.connection" || k == "max.in.flight" {
        return match v.parse::<u32>() {
            Ok(1..=5) => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "property {key}={value} would let an idempotent producer reorder records: 1 to 5 only"
            ))),
        };
    }
    if let Some((_, needed)) = GUARANTEED_PROPERTIES.iter().find(|(name, _)| *name == k) {
        let same = v == *needed || (k.ends_with("acks") && v == "-1");
        if !same {
            return Err(Error::InvalidArgument(format!(
                "property {key}={value} would break the bridge's guarantee: it needs {k}={needed}"
            )));
        }
    }
    Ok(())
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

    /// Sets the timeout (see the field).
    #[must_use]
    pub fn timeout_ms(mut self, timeout_ms: u64) -> KafkaConfig {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Adds a librdkafka property (to those already given).
    #[must_use]
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> KafkaConfig {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks the configuration.
    ///
    /// # Examples
    /// ```
    /// use varve_changelog::kafka::KafkaConfig;
    /// let ok = KafkaConfig::new("127.0.0.1:9092", "t").property("acks", "all");
    /// assert!(ok.validate().is_ok());
    /// let weak = KafkaConfig::new("127.0.0.1:9092", "t").property("acks", "1");
    /// assert!(weak.validate().is_err());
    /// let secret = KafkaConfig::new("127.0.0.1:9092", "t").property("sasl.password", "hunter2");
    /// assert!(!format!("{secret:?}").contains("hunter2"));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty bootstrap list or topic, a
    /// zero timeout, a property that would break the bridge's guarantees
    /// (see [`GUARANTEED_PROPERTIES`]), or a `security.protocol` or
    /// `sasl.mechanism` this build of librdkafka lacks (TLS and SCRAM need
    /// the `kafka-tls` feature; GSSAPI is not built).
    pub fn validate(&self) -> Result<()> {
        for (key, value) in &self.properties {
            check_property(key, value)?;
        }
        check_security(&self.properties)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: &str) -> KafkaConfig {
        KafkaConfig::new("127.0.0.1:9092", "t").property(key, value)
    }

    #[test]
    fn properties_that_break_the_guarantee_are_refused() {
        for (key, value) in [
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("acks", "0"),
            ("request.required.acks", "1"),
            ("max.in.flight.requests.per.connection", "6"),
            ("max.in.flight", "0"),
            ("enable.auto.commit", "true"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            ("bootstrap.servers", "elsewhere:9092"),
            ("transactional.id", "x"),
            ("ACKS", "1"),
        ] {
            let err = with(key, value).validate().unwrap_err();
            assert!(err.to_string().contains(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn harmless_and_matching_properties_are_accepted() {
        for (key, value) in [
            ("acks", "all"),
            ("acks", "-1"),
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("security.protocol", "PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.password", "hunter2"),
            ("client.id", "node-1"),
        ] {
            assert!(with(key, value).validate().is_ok(), "{key}={value}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = with("sasl.password", "hunter2")
            .property("ssl.key.password", "pw2")
            .property("sasl.oauthbearer.client.secret", "s3")
            .property("sasl.jaas.config", "j4")
            .property("client.id", "visible");
        let shown = format!("{config:?}");
        for secret in ["hunter2", "pw2", "s3", "j4"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("visible") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
