//! The container labels sdc-docker reserves, checked when a container is
//! created.
//!
//! Docker accepts any label. Triton gives two namespaces a meaning (the
//! "Container Labels" section of the sdc-docker divergence documents):
//! `triton.*` steers CNS and networking, `com.joyent.*` chooses a package.
//! A misspelt reserved label would otherwise be stored and silently
//! ignored, so unknown keys in either namespace are refused with 400, as is
//! a known key whose value CNS or the network lookup could not use.
//!
//! Only the shape of a value is checked here: whether the network named by
//! `triton.network.public` or the package named by `com.joyent.package`
//! exists is for the code that uses them to say.

use std::collections::BTreeMap;

use crate::ApiError;

/// Tells CNS not to serve records for the container: `true` or `false`.
pub(crate) const CNS_DISABLE: &str = "triton.cns.disable";
/// The CNS service names the container serves: `name[:port],…`.
pub(crate) const CNS_SERVICES: &str = "triton.cns.services";
/// The DNS name CNS answers reverse lookups of the container's addresses
/// with.
pub(crate) const CNS_REVERSE_PTR: &str = "triton.cns.reverse_ptr";
/// The external network the container uses for its public address.
pub(crate) const NETWORK_PUBLIC: &str = "triton.network.public";
/// The package (name, UUID or short UUID) the container is sized by.
pub(crate) const PACKAGE: &str = "com.joyent.package";

/// The `triton.*` labels with a meaning.
const TRITON_LABELS: [&str; 4] = [CNS_DISABLE, CNS_SERVICES, CNS_REVERSE_PTR, NETWORK_PUBLIC];
/// The `com.joyent.*` labels with a meaning.
const JOYENT_LABELS: [&str; 1] = [PACKAGE];

/// Check the reserved labels among `labels`; every other label is the
/// user's own and passes untouched. The error is a 400 naming the label.
pub(crate) fn validate(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in labels {
        if let Some(problem) = problem(key, value) {
            return Err(ApiError::bad_request(problem));
        }
    }
    Ok(())
}

/// The labels of a create body's `Labels`: an object of strings, or null
/// for none. Docker's decoder refuses anything else; the message names the
/// first key whose value is not a string.
pub(crate) fn from_json(value: &serde_json::Value) -> Result<BTreeMap<String, String>, ApiError> {
    let object = match value {
        serde_json::Value::Null => return Ok(BTreeMap::new()),
        serde_json::Value::Object(object) => object,
        _ => {
            return Err(ApiError::bad_request("Labels must be an object of strings"));
        }
    };
    object
        .iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(s) => Ok((key.clone(), s.clone())),
            _ => Err(ApiError::bad_request(format!(
                "label values must be strings: key {key}"
            ))),
        })
        .collect()
}

/// What is wrong with the label `key=value`, if anything.
fn problem(key: &str, value: &str) -> Option<String> {
    match key {
        CNS_DISABLE => (value != "true" && value != "false").then(|| {
            format!("invalid label {key}={value:?}: must be a boolean (\"true\" or \"false\")")
        }),
        CNS_SERVICES => services_problem(value).map(|why| {
            format!(
                "invalid label {key}={value:?}: {why}; expected a comma-separated list of \
                 DNS names, each optionally with :port (e.g. \"web,api:8080\")"
            )
        }),
        CNS_REVERSE_PTR => dns_name_problem(value)
            .map(|why| format!("invalid label {key}={value:?}: {why}; expected a DNS name")),
        NETWORK_PUBLIC => (!super::valid_name(value)).then(|| {
            format!(
                "invalid label {key}={value:?}: expected a network name \
                 ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
            )
        }),
        PACKAGE => value.trim().is_empty().then(|| {
            format!("invalid label {key}: must name a package (a name, a UUID or a short UUID)")
        }),
        _ if key.starts_with("triton.") => Some(format!(
            "unknown label {key}: the triton.* namespace is reserved; the known labels are {}",
            TRITON_LABELS.join(", ")
        )),
        _ if key.starts_with("com.joyent.") => Some(format!(
            "unknown label {key}: the com.joyent.* namespace is reserved; the known labels are {}",
            JOYENT_LABELS.join(", ")
        )),
        _ => None,
    }
}

/// What is wrong with a `triton.cns.services` value, if anything: each
/// entry is a service name (one lowercase DNS label, as CNS puts it in
/// front of the account's zone) with an optional port for SRV records.
fn services_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("no service named".to_string());
    }
    for entry in value.split(',') {
        let entry = entry.trim();
        let (name, port) = match entry.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (entry, None),
        };
        if let Some(why) = dns_label_problem(name, true) {
            return Some(format!("service {entry:?}: {why}"));
        }
        if let Some(port) = port
            && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
        {
            return Some(format!(
                "service {entry:?}: port {port:?} is not a number from 1 to 65535"
            ));
        }
    }
    None
}

/// What is wrong with `value` as a DNS name (`host.example.com`, a final
/// dot allowed), if anything.
fn dns_name_problem(value: &str) -> Option<String> {
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.is_empty() {
        return Some("empty".to_string());
    }
    if name.len() > 253 {
        return Some("longer than 253 characters".to_string());
    }
    name.split('.').find_map(|label| {
        dns_label_problem(label, false).map(|why| format!("label {label:?}: {why}"))
    })
}

/// What is wrong with `label` as one DNS label: 1 to 63 letters, digits
/// and hyphens, not starting or ending with a hyphen; `lowercase` refuses
/// capitals too.
fn dns_label_problem(label: &str, lowercase: bool) -> Option<String> {
    if label.is_empty() {
        return Some("empty name".to_string());
    }
    if label.len() > 63 {
        return Some("longer than 63 characters".to_string());
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (!lowercase && c.is_ascii_uppercase())
    };
    if let Some(bad) = label.chars().find(|&c| !allowed(c)) {
        let allowed = if lowercase {
            "lowercase letters, digits and hyphens"
        } else {
            "letters, digits and hyphens"
        };
        return Some(format!("{bad:?} is not allowed (only {allowed})"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some("starts or ends with a hyphen".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The 400 message for `key=value`; panics if it is accepted.
    fn refusal(key: &str, value: &str) -> String {
        let err = validate(&labels(&[(key, value)])).expect_err("refused");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        err.message().to_string()
    }

    fn accepted(key: &str, value: &str) -> bool {
        validate(&labels(&[(key, value)])).is_ok()
    }

    #[test]
    fn the_users_own_labels_pass_untouched() {
        let own = labels(&[
            ("com.example.vendor", "ACME"),
            ("tritonish", "anything"),
            ("com.joyentish", ""),
            ("", ""),
        ]);
        assert!(validate(&own).is_ok());
        assert!(validate(&BTreeMap::new()).is_ok());
    }

    #[test]
    fn cns_disable_must_be_a_boolean() {
        assert!(accepted(CNS_DISABLE, "true"));
        assert!(accepted(CNS_DISABLE, "false"));
        for bad in ["yes", "1", "TRUE", ""] {
            let message = refusal(CNS_DISABLE, bad);
            assert!(message.contains(CNS_DISABLE), "{message}");
            assert!(message.contains("boolean"), "{message}");
        }
    }

    #[test]
    fn cns_services_is_a_list_of_dns_names_with_optional_ports() {
        for good in ["web", "web,api", "web, api:8080", "db-1:5432", "a1"] {
            assert!(accepted(CNS_SERVICES, good), "{good}");
        }
        for (bad, why) in [
            ("", "no service"),
            ("Web", "'W'"),
            ("web,,api", "empty name"),
            ("web_1", "'_'"),
            ("-web", "starts or ends with a hyphen"),
            ("web:", "not a number"),
            ("web:0", "not a number"),
            ("web:70000", "not a number"),
            ("web:http", "not a number"),
            ("web.example", "'.'"),
        ] {
            let message = refusal(CNS_SERVICES, bad);
            assert!(message.contains(CNS_SERVICES), "{message}");
            assert!(message.contains(why), "{bad}: {message}");
        }
        let long = "a".repeat(64);
        assert!(refusal(CNS_SERVICES, &long).contains("63"));
    }

    #[test]
    fn cns_reverse_ptr_is_a_dns_name() {
        for good in [
            "host.example.com",
            "host.example.com.",
            "Web-1.Example.org",
            "x",
        ] {
            assert!(accepted(CNS_REVERSE_PTR, good), "{good}");
        }
        for bad in [
            "",
            ".",
            "host..example",
            "host_1.example",
            "-host.example",
            "a b",
        ] {
            let message = refusal(CNS_REVERSE_PTR, bad);
            assert!(message.contains("DNS name"), "{bad}: {message}");
        }
        let long = vec!["abcdefghij"; 24].join(".");
        assert!(refusal(CNS_REVERSE_PTR, &long).contains("253"));
    }

    #[test]
    fn network_public_is_a_network_name() {
        assert!(accepted(NETWORK_PUBLIC, "external"));
        assert!(accepted(NETWORK_PUBLIC, "my_net.v2-a"));
        for bad in ["", "my net", "-net", "a/b"] {
            let message = refusal(NETWORK_PUBLIC, bad);
            assert!(message.contains("network name"), "{bad}: {message}");
        }
    }

    #[test]
    fn an_unknown_triton_label_is_refused_naming_it_and_the_known_ones() {
        let message = refusal("triton.cns.disabled", "true");
        assert!(message.contains("triton.cns.disabled"), "{message}");
        for known in TRITON_LABELS {
            assert!(message.contains(known), "{message}");
        }
    }

    #[test]
    fn com_joyent_package_chooses_a_package_and_must_name_one() {
        assert!(accepted(PACKAGE, "sample-1G"));
        assert!(accepted(PACKAGE, "8b2ad5e8"));
        assert!(refusal(PACKAGE, "").contains(PACKAGE));
        assert!(refusal(PACKAGE, "  ").contains("package"));
    }

    #[test]
    fn other_com_joyent_labels_are_reserved() {
        let message = refusal("com.joyent.owner", "me");
        assert!(message.contains("com.joyent.owner"), "{message}");
        assert!(message.contains("reserved"), "{message}");
        assert!(message.contains(PACKAGE), "{message}");
    }

    #[test]
    fn one_bad_label_among_good_ones_is_refused() {
        let mixed = labels(&[
            ("app", "web"),
            (CNS_DISABLE, "true"),
            (CNS_SERVICES, "web"),
            (NETWORK_PUBLIC, "bogus name"),
        ]);
        let err = validate(&mixed).expect_err("refused");
        assert!(err.message().contains(NETWORK_PUBLIC), "{}", err.message());
    }

    #[test]
    fn labels_from_json_must_be_strings() {
        let ok = from_json(&json!({"a": "1", "b": ""})).expect("strings");
        assert_eq!(ok, labels(&[("a", "1"), ("b", "")]));
        assert!(from_json(&json!(null)).expect("null").is_empty());
        let err = from_json(&json!({"a": "1", "n": 3})).expect_err("a number");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.message(), "label values must be strings: key n");
        let err = from_json(&json!({"t": true})).expect_err("a boolean");
        assert_eq!(err.message(), "label values must be strings: key t");
        assert!(from_json(&json!(["a=b"])).is_err());
    }
}
