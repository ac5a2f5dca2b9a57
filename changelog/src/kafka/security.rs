//! TLS and SASL settings against what librdkafka was built with: a
//! configuration that asks for TLS or a SASL mechanism the build lacks is
//! refused before any client is made, with the cargo feature that brings
//! it.

use std::sync::OnceLock;

use rdkafka::ClientConfig;

use super::error::{Error, Result};

/// The cargo feature that builds librdkafka with OpenSSL.
const TLS_FEATURE: &str = "kafka-tls";

/// librdkafka's `builtin.features` (for example
/// `gzip,snappy,ssl,sasl,regex,lz4,sasl_plain,sasl_scram,...`), read once.
fn builtin_features() -> &'static str {
    static FEATURES: OnceLock<String> = OnceLock::new();
    FEATURES.get_or_init(|| {
        ClientConfig::new()
            .create_native_config()
            .and_then(|c| c.get("builtin.features"))
            .unwrap_or_default()
    })
}

/// Whether librdkafka was built with `feature` (a name of
/// `builtin.features`, such as `ssl` or `sasl_scram`).
pub(crate) fn has_builtin(feature: &str) -> bool {
    builtin_features().split(',').any(|f| f.trim() == feature)
}

/// The `builtin.features` name a SASL mechanism needs.
fn sasl_builtin(mechanism: &str) -> Option<&'static str> {
    match mechanism {
        "PLAIN" => Some("sasl_plain"),
        "SCRAM-SHA-256" | "SCRAM-SHA-512" => Some("sasl_scram"),
        "GSSAPI" => Some("sasl_gssapi"),
        "OAUTHBEARER" => Some("sasl_oauthbearer"),
        _ => None,
    }
}

/// Refuses `security.protocol`/`sasl.mechanism(s)` values this build of
/// librdkafka cannot honour (others are left to librdkafka to judge).
pub(crate) fn check_security(properties: &[(String, String)]) -> Result<()> {
    check_security_with(properties, has_builtin)
}

fn check_security_with(properties: &[(String, String)], has: impl Fn(&str) -> bool) -> Result<()> {
    let mut protocol = String::from("PLAINTEXT");
    let mut mechanism = String::from("GSSAPI");
    for (key, value) in properties {
        match key.trim().to_ascii_lowercase().as_str() {
            "security.protocol" => protocol = value.trim().to_ascii_uppercase(),
            "sasl.mechanism" | "sasl.mechanisms" => mechanism = value.trim().to_ascii_uppercase(),
            _ => {}
        }
    }
    let tls = matches!(protocol.as_str(), "SSL" | "SASL_SSL");
    if tls && !has("ssl") {
        return Err(Error::InvalidArgument(format!(
            "security.protocol={protocol} needs librdkafka built with TLS: enable the \
             {TLS_FEATURE} feature of varve-changelog (or varve-db)"
        )));
    }
    if protocol.starts_with("SASL_")
        && let Some(needed) = sasl_builtin(&mechanism)
        && !has(needed)
    {
        let how = if needed == "sasl_gssapi" {
            "GSSAPI (Kerberos) needs rdkafka's gssapi feature and the Cyrus SASL library, \
             which this crate does not enable"
                .to_owned()
        } else {
            format!("enable the {TLS_FEATURE} feature of varve-changelog (or varve-db)")
        };
        return Err(Error::InvalidArgument(format!(
            "sasl.mechanism={mechanism} is not built into librdkafka ({needed}): {how}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The features of a build without OpenSSL.
    fn plain_build(f: &str) -> bool {
        matches!(f, "sasl_plain" | "sasl_oauthbearer")
    }

    /// The features of a build with OpenSSL.
    fn tls_build(f: &str) -> bool {
        matches!(f, "ssl" | "sasl_plain" | "sasl_scram" | "sasl_oauthbearer")
    }

    #[test]
    fn tls_without_openssl_names_the_feature() {
        for protocol in ["SSL", "sasl_ssl"] {
            let p = props(&[("security.protocol", protocol), ("sasl.mechanism", "PLAIN")]);
            let err = check_security_with(&p, plain_build).unwrap_err();
            assert!(err.to_string().contains(TLS_FEATURE), "{err}");
            assert!(check_security_with(&p, tls_build).is_ok());
        }
        assert!(check_security_with(&props(&[]), plain_build).is_ok());
    }

    #[test]
    fn sasl_mechanisms_need_their_part_of_the_build() {
        let scram = props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
        ]);
        let err = check_security_with(&scram, plain_build).unwrap_err();
        assert!(err.to_string().contains("sasl_scram"), "{err}");
        assert!(check_security_with(&scram, tls_build).is_ok());
        // The default mechanism is GSSAPI, which neither build has.
        let kerberos = props(&[("security.protocol", "SASL_SSL")]);
        let err = check_security_with(&kerberos, tls_build).unwrap_err();
        assert!(err.to_string().contains("gssapi"), "{err}");
        let plain = props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "PLAIN"),
        ]);
        assert!(check_security_with(&plain, tls_build).is_ok());
    }

    #[test]
    fn this_build_reports_its_features() {
        assert!(has_builtin("sasl_plain"), "{}", builtin_features());
        if cfg!(feature = "kafka-tls") {
            assert!(
                has_builtin("ssl") && has_builtin("sasl_scram"),
                "{}",
                builtin_features()
            );
        }
    }
}
