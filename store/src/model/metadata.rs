//! Object metadata, common to every kind, and the condition type statuses use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::keys::DEFAULT_ACCOUNT;

fn default_account() -> String {
    DEFAULT_ACCOUNT.to_string()
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Identity and bookkeeping of an object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Unique within kind and account; the last segment of the key.
    pub name: String,
    /// Unique forever (a recreated object with the same name gets a new one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The tenant; `default` until authentication exists.
    #[serde(default = "default_account")]
    pub account: String,
    /// Operator-facing labels (Docker labels live in the container spec).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form notes for tools.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Bumped on every change of the spec, never on a status write.
    #[serde(default)]
    pub generation: i64,
    /// The store revision of the last write; filled in on read, never stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resource_version: i64,
    /// When the object was created.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_timestamp: Option<OffsetDateTime>,
    /// When deletion was asked for, while finalizers still hold the object.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deletion_timestamp: Option<OffsetDateTime>,
    /// Controllers that must clean up before the object may go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

impl Metadata {
    /// Metadata with a name in the default account and nothing else set.
    pub fn named(name: &str) -> Self {
        Metadata {
            name: name.to_string(),
            account: default_account(),
            ..Default::default()
        }
    }
}

/// One observation a controller records on an object's status, the way
/// Kubernetes conditions work: `type` names the aspect, `status` says
/// whether it holds, `reason`/`message` say why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect, e.g. `Invalid`, `Ready`, `Scheduled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase machine-readable reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_transition_time: Option<OffsetDateTime>,
}

/// Sets the condition `type_` in `conditions` to `status` with `reason` and
/// `message`, in place (its position kept, so rewriting the same condition
/// changes nothing), or adds it. Its transition time moves only when the
/// status changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status.to_string();
                c.last_transition_time = Some(OffsetDateTime::now_utc());
            }
            c.reason = reason.to_string();
            c.message = message;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: Some(OffsetDateTime::now_utc()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, "Scheduled", false, "NoNodes", "a".into());
        let first = conditions[0].last_transition_time;
        set_condition(
            &mut conditions,
            "Scheduled",
            false,
            "Unschedulable",
            "b".into(),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, first);
        assert_eq!(conditions[0].message, "b");
    }

    #[test]
    fn setting_a_condition_again_keeps_its_place_among_the_others() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, "Scheduled", true, "Placed", "on a".into());
        set_condition(
            &mut conditions,
            "Provisioned",
            true,
            "Provisioned",
            String::new(),
        );
        let before = conditions.clone();
        set_condition(&mut conditions, "Scheduled", true, "Placed", "on a".into());
        assert_eq!(conditions, before);
        set_condition(&mut conditions, "Scheduled", false, "Gone", "b".into());
        assert_eq!(conditions[0].type_, "Scheduled");
        assert_eq!(conditions[0].status, "False");
        assert_ne!(
            conditions[0].last_transition_time,
            before[0].last_transition_time
        );
    }
}
