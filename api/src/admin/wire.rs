//! The JSON bodies of the admin API, shared by the server and the
//! `sdc-docker get/apply/edit/delete` client so both read the same shapes.
//!
//! Objects themselves travel as their stored JSON (`{apiVersion, kind,
//! metadata, spec, status}` with `metadata.resourceVersion` filled in); these
//! types are only the envelopes around them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The answer to `GET /v1/{kind}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList {
    /// The kind listed (`Container`).
    pub kind: String,
    /// The account listed.
    pub account: String,
    /// The store revision the list was read at.
    pub resource_version: i64,
    /// Every object that decodes, in name order.
    pub items: Vec<serde_json::Value>,
    /// Every stored value that does not, with the reason.
    #[serde(default)]
    pub invalid: Vec<InvalidObject>,
}

/// A stored value that does not decode as its kind (written with
/// `etcdctl`, say): shown to operators so they can fix or delete it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvalidObject {
    /// Its name (the last segment of its key).
    pub name: String,
    /// Its account.
    pub account: String,
    /// Its key in the store.
    pub key: String,
    /// The revision of its last write.
    pub resource_version: i64,
    /// What the decoder said, with line and column.
    pub error: String,
    /// The stored bytes (lossily as text).
    pub raw: String,
}

/// What `apply` did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed.
    Configured,
    /// It existed and already matched.
    Unchanged,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
        })
    }
}

/// One object of an `apply`, and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// Its kind (`Container`).
    pub kind: String,
    /// Its account.
    pub account: String,
    /// Its name.
    pub name: String,
    /// Created, configured or unchanged.
    pub action: Action,
    /// Its revision after the apply.
    pub resource_version: i64,
    /// Its generation after the apply.
    pub generation: i64,
}

/// The answer to `POST /v1/apply`: one entry per document, in file order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// What happened to each object.
    pub results: Vec<Applied>,
}

/// The answer to `DELETE /v1/{kind}/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// Its kind (`Container`).
    pub kind: String,
    /// Its account.
    pub account: String,
    /// Its name.
    pub name: String,
    /// The revision of the delete.
    pub resource_version: i64,
}
