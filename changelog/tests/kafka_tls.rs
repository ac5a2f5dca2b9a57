//! The Kafka bridge over TLS, and over SASL SCRAM-SHA-256 on TLS, against
//! real brokers behind a TLS terminator (`.ci/kafka-broker.sh start-tls`,
//! which exports the addresses, the CA and the SASL user). A round trip on
//! each, and the typed errors of a client that does not trust the broker,
//! speaks plaintext to the TLS port, or has the wrong password: each comes
//! within the configured timeout and leaves the local changelog unshipped
//! and unregistered.
//!
//! Needs the `kafka-tls` feature (librdkafka with OpenSSL); without it, or
//! without `VARVE_KAFKA_TLS_BOOTSTRAP`, the tests print `NOT RUN` and pass.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod kafka_common;

#[cfg(not(feature = "kafka-tls"))]
#[test]
fn the_tls_tests_need_the_kafka_tls_feature() {
    kafka_common::not_run(
        "kafka_tls",
        "built without the kafka-tls feature (librdkafka without OpenSSL)",
    );
}

#[cfg(feature = "kafka-tls")]
mod tls {
    use std::time::{Duration, Instant};

    use super::kafka_common::*;
    use rdkafka::types::RDKafkaErrorCode;
    use varve_changelog::kafka::{
        Error, KafkaConfig, KafkaSource, Shipper, ShipperOptions, TopicSpec, ensure_topic,
    };
    use varve_changelog::{Log, LogOptions};

    /// The bound the error tests give every call.
    const ERROR_TIMEOUT_MS: u64 = 5_000;

    /// An environment variable, or `None` after printing that `test` did
    /// not run.
    /// The TLS broker and the CA that signed its certificate, or `None`
    /// after saying `test` did not run.
    fn tls_broker(test: &str) -> Option<(String, String)> {
        let bootstrap = var(test, "VARVE_KAFKA_TLS_BOOTSTRAP")?;
        Some((bootstrap, var(test, "VARVE_KAFKA_TLS_CA")?))
    }

    /// The SASL-over-TLS broker, its CA, the user and the password, or
    /// `None` after saying `test` did not run.
    fn sasl_broker(test: &str) -> Option<[String; 4]> {
        Some([
            var(test, "VARVE_KAFKA_SASL_BOOTSTRAP")?,
            var(test, "VARVE_KAFKA_TLS_CA")?,
            var(test, "VARVE_KAFKA_SASL_USER")?,
            var(test, "VARVE_KAFKA_SASL_PASSWORD")?,
        ])
    }

    fn var(test: &str, name: &str) -> Option<String> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                not_run(
                    test,
                    &format!(
                        "{name} is not set (start the brokers with `.ci/kafka-broker.sh start-tls` and export what it prints)"
                    ),
                );
                None
            }
        }
    }

    /// A configuration over TLS to `bootstrap`, trusting the CA in the
    /// file `ca`.
    fn tls_config(bootstrap: &str, topic: &str, ca: &str) -> KafkaConfig {
        config(bootstrap, topic)
            .property("security.protocol", "SSL")
            .property("ssl.ca.location", ca)
    }

    /// A configuration over SASL SCRAM-SHA-256 on TLS.
    fn sasl_config(
        bootstrap: &str,
        topic: &str,
        ca: &str,
        user: &str,
        password: &str,
    ) -> KafkaConfig {
        config(bootstrap, topic)
            .property("security.protocol", "SASL_SSL")
            .property("ssl.ca.location", ca)
            .property("sasl.mechanism", "SCRAM-SHA-256")
            .property("sasl.username", user)
            .property("sasl.password", password)
    }

    /// Ships `n` records (overwrites, tombstones, headers) with `config`,
    /// reads them back with a [`KafkaSource`] on the same configuration
    /// and checks they are the local records, one by one.
    fn round_trip(config: &KafkaConfig, n: u64) {
        let info = ensure_topic(config, &TopicSpec::new(1)).unwrap();
        assert!(info.created);
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        fill(&log, 0, n, n / 10, |_| true);
        let mut shipper =
            Shipper::new(&log, config.clone(), ShipperOptions::new("kafka", 0)).unwrap();
        let started = Instant::now();
        assert_eq!(shipper.ship_until(n, SHIP_TIMEOUT).unwrap(), n);
        eprintln!("shipped {n} records in {:?}", started.elapsed());
        assert_eq!(log.position("kafka"), Some(n));
        drop(shipper);

        let local = local_records(&log);
        let dups = check_shipped(&local, &read_partition(config, 0));
        assert_eq!(dups, 0, "a clean run re-sends nothing");
        let (bounds, restored) =
            read_with_source(config.clone().timeout_ms(READ_TIMEOUT_MS), 1 << 20);
        assert_eq!(bounds.end_offset - bounds.start_offset, n);
        assert_eq!(restored.len(), local.len());
        for (r, l) in restored.iter().zip(&local) {
            assert_eq!(r.record, l.record);
        }
    }

    /// A log of 100 records that nothing has shipped.
    fn unshipped_log(dir: &std::path::Path) -> Log {
        let log = Log::open(dir, LogOptions::default()).unwrap();
        fill(&log, 0, 100, 10, |_| true);
        log
    }

    /// Runs `f`, checks it took less than the configured timeout plus a
    /// margin for a loaded machine, and returns its error.
    fn bounded<T: std::fmt::Debug>(f: impl FnOnce() -> Result<T, Error>) -> Error {
        let started = Instant::now();
        let err = f().unwrap_err();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(ERROR_TIMEOUT_MS) + Duration::from_secs(10),
            "took {took:?}: {err}"
        );
        err
    }

    /// Each set-up call with `config` (creating the topic, a source, a
    /// shipper of a new log of 100 records) fails within the bound, as
    /// `check` wants, and the shipper registers nothing; returns the log.
    fn set_up_calls_fail(config: &KafkaConfig, check: impl Fn(Error)) -> (tempfile::TempDir, Log) {
        check(bounded(|| ensure_topic(config, &TopicSpec::new(1))));
        check(bounded(|| KafkaSource::new(config.clone(), 0)));
        let dir = tempfile::tempdir().unwrap();
        let log = unshipped_log(dir.path());
        check(bounded(|| {
            Shipper::new(&log, config.clone(), ShipperOptions::new("kafka", 0))
        }));
        assert_eq!(log.position("kafka"), None);
        (dir, log)
    }

    #[test]
    fn ships_and_restores_over_tls() {
        let test = "ships_and_restores_over_tls";
        let Some((bootstrap, ca)) = tls_broker(test) else {
            return;
        };
        let config = tls_config(&bootstrap, &unique_topic("tls"), &ca);
        round_trip(&config, 5_000);
    }

    #[test]
    fn ships_and_restores_over_sasl_scram_on_tls() {
        let test = "ships_and_restores_over_sasl_scram_on_tls";
        let Some([bootstrap, ca, user, password]) = sasl_broker(test) else {
            return;
        };
        let config = sasl_config(&bootstrap, &unique_topic("sasl"), &ca, &user, &password);
        round_trip(&config, 2_000);
    }

    #[test]
    fn a_client_that_does_not_trust_the_broker_fails_the_handshake_and_ships_nothing() {
        let test = "a_client_that_does_not_trust_the_broker_fails_the_handshake_and_ships_nothing";
        let (Some((bootstrap, ca)), Some(other_ca)) =
            (tls_broker(test), var(test, "VARVE_KAFKA_TLS_OTHER_CA"))
        else {
            return;
        };
        let topic = unique_topic("untrusted");
        let trusting = tls_config(&bootstrap, &topic, &ca);
        // The broker's certificate was signed by `ca`, not `other_ca`.
        let untrusting = tls_config(&bootstrap, &topic, &other_ca).timeout_ms(ERROR_TIMEOUT_MS);
        let check = |err: Error| {
            assert!(
                matches!(&err, Error::Authentication { code: RDKafkaErrorCode::SSL, detail, .. }
                    if detail.contains("certificate verify failed")),
                "{err:?}"
            );
            assert!(!err.is_transient(), "{err}");
            assert!(err.to_string().contains("TLS handshake"), "{err}");
        };
        ensure_topic(&trusting, &TopicSpec::new(1)).unwrap();
        let (_dir, log) = set_up_calls_fail(&untrusting, check);
        // Nothing was registered as shipped, so nothing local can be
        // dropped as shipped; a shipper that trusts the broker ships it all.
        let mut shipper =
            Shipper::new(&log, trusting.clone(), ShipperOptions::new("kafka", 0)).unwrap();
        assert_eq!(shipper.ship_until(100, SHIP_TIMEOUT).unwrap(), 100);
        drop(shipper);
        assert_eq!(
            check_shipped(&local_records(&log), &read_partition(&trusting, 0)),
            0
        );
    }

    #[test]
    fn plaintext_against_the_tls_port_and_tls_against_a_plaintext_port_are_unreachable() {
        let test =
            "plaintext_against_the_tls_port_and_tls_against_a_plaintext_port_are_unreachable";
        let Some((tls_bootstrap, ca)) = tls_broker(test) else {
            return;
        };
        let topic = unique_topic("mismatch");
        let trusting = tls_config(&tls_bootstrap, &topic, &ca);
        ensure_topic(&trusting, &TopicSpec::new(1)).unwrap();
        let mut mismatched = vec![config(&tls_bootstrap, &topic)];
        if let Some(plain) = bootstrap(test) {
            // The plaintext broker does not have the topic, but the client
            // never gets as far as asking.
            mismatched.push(tls_config(&plain, &topic, &ca));
        }
        for config in mismatched {
            let config = config.timeout_ms(ERROR_TIMEOUT_MS);
            let check = |err: Error| {
                assert!(
                    matches!(&err, Error::Unreachable { detail, .. } if detail.contains("security.protocol")),
                    "{config:?}: {err:?}"
                );
            };
            let (_dir, log) = set_up_calls_fail(&config, check);
            assert_eq!(local_records(&log).len(), 100);
        }
    }

    #[test]
    fn a_wrong_sasl_password_is_an_authentication_error_and_ships_nothing() {
        let test = "a_wrong_sasl_password_is_an_authentication_error_and_ships_nothing";
        let Some([bootstrap, ca, user, password]) = sasl_broker(test) else {
            return;
        };
        let topic = unique_topic("sasl-refused");
        let right = sasl_config(&bootstrap, &topic, &ca, &user, &password);
        ensure_topic(&right, &TopicSpec::new(1)).unwrap();
        let wrong = sasl_config(&bootstrap, &topic, &ca, &user, &format!("not-{password}"))
            .timeout_ms(ERROR_TIMEOUT_MS);
        let unknown =
            sasl_config(&bootstrap, &topic, &ca, "nobody", &password).timeout_ms(ERROR_TIMEOUT_MS);
        for config in [wrong, unknown] {
            let check = |err: Error| {
                assert!(
                    matches!(
                        &err,
                        Error::Authentication {
                            code: RDKafkaErrorCode::Authentication,
                            ..
                        }
                    ),
                    "{err:?}"
                );
                assert!(!err.is_transient(), "{err}");
                assert!(err.to_string().contains("SASL authentication"), "{err}");
                // The password is not in the message.
                assert!(!err.to_string().contains(&password), "{err}");
            };
            set_up_calls_fail(&config, check);
        }
    }
}
