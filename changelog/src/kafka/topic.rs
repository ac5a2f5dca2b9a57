//! Topic set-up: create the changelog topic if it is missing, and refuse an
//! existing topic whose configuration would lose data (a `delete` cleanup
//! policy) or break the partition mapping (another partition count).

use std::sync::Arc;
use std::time::Instant;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use super::client::{BridgeContext, block_on, serve_main_queue, topic_partitions};
use super::config::KafkaConfig;
use super::error::{Error, Result, is_authorization};

/// The cleanup policy a changelog topic must have.
pub const CLEANUP_POLICY: &str = "compact";

/// The shape of a changelog topic.
///
/// # Examples
/// ```
/// use varve_changelog::kafka::TopicSpec;
/// let spec = TopicSpec::new(4).replication_factor(3);
/// assert_eq!((spec.partitions, spec.replication_factor), (4, 3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicSpec {
    /// The number of partitions: one per store partition.
    pub partitions: i32,
    /// The replication factor used when the topic is created; `-1` (the
    /// default) lets the broker choose (`default.replication.factor`).
    pub replication_factor: i32,
}

impl TopicSpec {
    /// A topic of `partitions` partitions with the broker's default
    /// replication factor.
    pub fn new(partitions: i32) -> TopicSpec {
        TopicSpec {
            partitions,
            replication_factor: -1,
        }
    }
}

crate::option_setters!(TopicSpec {
    replication_factor: i32,
});

/// What [`ensure_topic`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Whether this call created the topic.
    pub created: bool,
    /// The topic's partition count.
    pub partitions: usize,
    /// The topic's `cleanup.policy` as the broker describes it.
    pub cleanup_policy: String,
}

/// Creates the changelog topic if it is missing (`cleanup.policy=compact`,
/// `spec.partitions` partitions), then checks it: an existing topic must
/// have exactly that policy and partition count.
///
/// # Examples
/// ```no_run
/// use varve_changelog::kafka::{KafkaConfig, TopicSpec, ensure_topic};
/// let config = KafkaConfig::new("127.0.0.1:9092", "store-changelog");
/// let info = ensure_topic(&config, &TopicSpec::new(4))?;
/// assert_eq!(info.partitions, 4);
/// # Ok::<(), varve_changelog::kafka::Error>(())
/// ```
///
/// # Errors
/// [`Error::TopicConfig`] for a mismatch, [`Error::Unreachable`],
/// [`Error::Authorization`], [`Error::Authentication`] (a failed TLS
/// handshake or SASL authentication), [`Error::Timeout`] within the
/// configured timeout, [`Error::InvalidArgument`] for a bad spec.
pub fn ensure_topic(config: &KafkaConfig, spec: &TopicSpec) -> Result<TopicInfo> {
    config.validate()?;
    if spec.partitions < 1 {
        return Err(Error::InvalidArgument(format!(
            "a topic needs at least one partition, got {}",
            spec.partitions
        )));
    }
    let admin = Admin::new(config)?;
    let created = match admin.partitions() {
        Ok(_) => false,
        Err(Error::TopicMissing { .. }) => admin.create(spec)?,
        Err(e) => return Err(e),
    };
    let mut info = admin.check(spec)?;
    info.created = created;
    Ok(info)
}

/// Checks an existing changelog topic without creating it.
///
/// # Errors
/// [`Error::TopicMissing`] and the errors of [`ensure_topic`].
pub fn check_topic(config: &KafkaConfig, spec: &TopicSpec) -> Result<TopicInfo> {
    config.validate()?;
    Admin::new(config)?.check(spec)
}

/// An admin client bound to one topic.
struct Admin<'a> {
    config: &'a KafkaConfig,
    client: AdminClient<BridgeContext>,
    ctx: Arc<BridgeContext>,
}

impl<'a> Admin<'a> {
    fn new(config: &'a KafkaConfig) -> Result<Admin<'a>> {
        let client: AdminClient<BridgeContext> = config
            .client_config()
            .create_with_context(BridgeContext::default())
            .map_err(|e| Error::from_client("create an admin client", &config.topic, e))?;
        let ctx = client.inner().context().clone();
        Ok(Admin {
            config,
            client,
            ctx,
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.config.timeout()))
            .operation_timeout(Some(self.config.timeout()))
    }

    fn partitions(&self) -> Result<usize> {
        let client = self.client.inner();
        topic_partitions(client, &self.ctx, self.config, || {
            serve_main_queue(client, &self.ctx);
        })
    }

    /// Creates the topic; false if another client created it first.
    fn create(&self, spec: &TopicSpec) -> Result<bool> {
        let topic = &self.config.topic;
        let new = NewTopic::new(
            topic,
            spec.partitions,
            TopicReplication::Fixed(spec.replication_factor),
        )
        .set("cleanup.policy", CLEANUP_POLICY);
        let started = Instant::now();
        let results = block_on(
            self.client.create_topics([&new], &self.options()),
            self.config.timeout(),
        )
        .ok_or_else(|| {
            self.ctx
                .timed_out(self.config, "create the topic", started.elapsed())
        })?
        .map_err(|e| Error::from_client("create the topic", topic, e))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Ok(false),
                Err((_, code)) if is_authorization(code) => {
                    return Err(Error::Authorization {
                        resource: topic.clone(),
                        operation: "create the topic",
                        code,
                    });
                }
                Err((_, code)) => {
                    return Err(Error::Client {
                        operation: "create the topic",
                        source: rdkafka::error::KafkaError::AdminOp(code),
                    });
                }
            }
        }
        tracing::info!(
            topic,
            partitions = spec.partitions,
            "created changelog topic"
        );
        Ok(true)
    }

    /// Checks partition count and cleanup policy.
    fn check(&self, spec: &TopicSpec) -> Result<TopicInfo> {
        let topic = &self.config.topic;
        let partitions = self.wait_for_partitions()?;
        if partitions != spec.partitions as usize {
            return Err(Error::TopicConfig {
                topic: topic.clone(),
                setting: "partitions",
                expected: spec.partitions.to_string(),
                found: partitions.to_string(),
            });
        }
        let cleanup_policy = self.cleanup_policy()?;
        if cleanup_policy != CLEANUP_POLICY {
            return Err(Error::TopicConfig {
                topic: topic.clone(),
                setting: "cleanup.policy",
                expected: CLEANUP_POLICY.into(),
                found: cleanup_policy,
            });
        }
        Ok(TopicInfo {
            created: false,
            partitions,
            cleanup_policy,
        })
    }

    /// The partition count, waiting (within the timeout) for a topic just
    /// created to show up in metadata.
    fn wait_for_partitions(&self) -> Result<usize> {
        let deadline = Instant::now() + self.config.timeout();
        loop {
            match self.partitions() {
                Err(Error::TopicMissing { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// The topic's `cleanup.policy` from DescribeConfigs.
    fn cleanup_policy(&self) -> Result<String> {
        let topic = &self.config.topic;
        let operation = "describe the topic's configuration";
        let started = Instant::now();
        let results = block_on(
            self.client
                .describe_configs([&ResourceSpecifier::Topic(topic)], &self.options()),
            self.config.timeout(),
        )
        .ok_or_else(|| {
            self.ctx
                .timed_out(self.config, operation, started.elapsed())
        })?
        .map_err(|e| Error::from_client(operation, topic, e))?;
        let resource = match results.into_iter().next() {
            Some(Ok(resource)) => resource,
            Some(Err(code)) if is_authorization(code) => {
                return Err(Error::Authorization {
                    resource: topic.clone(),
                    operation,
                    code,
                });
            }
            Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                return Err(Error::TopicMissing {
                    topic: topic.clone(),
                });
            }
            Some(Err(code)) => {
                return Err(Error::Client {
                    operation,
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
            None => {
                return Err(Error::Unsupported {
                    what: "DescribeConfigs (no result for the topic)".into(),
                });
            }
        };
        // A broker lists only the settings it knows; one that lists no
        // cleanup.policy applies its default (`delete` on Apache Kafka),
        // which is not the compacted changelog we need.
        Ok(resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| "(not set: the broker default applies)".into()))
    }
}
