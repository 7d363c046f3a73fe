//! The operators' admin API: what `sdc-docker get/apply/edit/delete` talk
//! to, the way kubectl talks to its API server. It serves the stored
//! objects themselves, by kind and name, on `--admin-host` (a unix socket by
//! default: whoever can open it may change every object).
//!
//! | route | does |
//! | --- | --- |
//! | `GET /v1/{kind}?account=` | list, with the values that do not decode |
//! | `GET /v1/{kind}/{name}?account=` | one object (422 when it does not decode) |
//! | `PUT /v1/{kind}/{name}?account=` | replace spec, labels, annotations; 409 when `metadata.resourceVersion` is stale |
//! | `DELETE /v1/{kind}/{name}?account=&resourceVersion=` | delete |
//! | `POST /v1/apply?account=` | create or replace every object of a YAML/JSON file |
//!
//! `{kind}` is any spelling [`Kind::parse`] accepts (`container`,
//! `containers`, `Container`); `account` defaults to `default`. Bodies are
//! YAML or JSON; a malformed one (including one with a field its kind does
//! not know, such as a typo) is a 400 naming the document, the field's path,
//! line and column, and nothing of it is stored. What `GET` answers is
//! accepted back unchanged by `PUT` and `apply`.

mod apply;
pub mod documents;
mod field_path;
pub mod objects;
pub mod wire;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use sdc_docker_store::{Kind, Store, keys, with_kind};
use serde::Deserialize;

use crate::ApiError;
use documents::{Document, Head};

/// The largest body the admin API reads.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Renders the server's metrics in the Prometheus text format, for
/// `GET /metrics` (the controller runtime owns them; this crate only serves
/// them).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The spec store.
    pub store: Arc<dyn Store>,
    /// The metrics to serve at `GET /metrics`.
    pub metrics: MetricsSource,
}

/// The admin API over `store`, serving `metrics` at `GET /metrics`.
pub fn router(store: Arc<dyn Store>, metrics: MetricsSource) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/apply", post(apply::apply))
        .route("/v1/{kind}", get(list))
        .route(
            "/v1/{kind}/{name}",
            get(get_one).put(replace).delete(delete),
        )
        .fallback(no_such_route)
        .method_not_allowed_fallback(no_such_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AdminState { store, metrics })
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
async fn metrics_text(State(state): State<AdminState>) -> impl axum::response::IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (state.metrics)(),
    )
}

async fn no_such_route() -> ApiError {
    ApiError::not_found(
        "no such admin route: use /v1/{kind}, /v1/{kind}/{name}, POST /v1/apply or /metrics",
    )
}

/// `?account=` of every route.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// The account; `default` when absent.
    #[serde(default)]
    pub account: Option<String>,
    /// For delete and replace: only if the object is still at this
    /// revision (for replace it overrides `metadata.resourceVersion` in the
    /// body, so a client can send a person's file unchanged).
    #[serde(default)]
    pub resource_version: Option<i64>,
}

impl Scope {
    fn account(&self) -> Result<String, ApiError> {
        let account = self
            .account
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| keys::DEFAULT_ACCOUNT.to_string());
        check_account(&account)?;
        Ok(account)
    }
}

fn check_account(account: &str) -> Result<(), ApiError> {
    if keys::valid_name(account) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid account {account:?}: must be 1 to 253 characters, with no '/' or control characters"
        )))
    }
}

/// The kind named in a URL, or 404 listing the known ones.
fn parse_kind(kind: &str) -> Result<Kind, ApiError> {
    Kind::parse(kind).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
        ApiError::not_found(format!(
            "unknown kind {kind:?}; known kinds: {}",
            known.join(", ")
        ))
    })
}

async fn list(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
    scope: Result<Query<Scope>, QueryRejection>,
) -> Result<Json<wire::ObjectList>, ApiError> {
    let Path(kind) = path?;
    let kind = parse_kind(&kind)?;
    let account = scope?.account()?;
    let list = with_kind!(kind, K => objects::list::<K>(state.store, &account).await)?;
    Ok(Json(list))
}

async fn get_one(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
    scope: Result<Query<Scope>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path((kind, name)) = path?;
    let kind = parse_kind(&kind)?;
    let account = scope?.account()?;
    let obj = with_kind!(kind, K => objects::get::<K>(state.store, &account, &name).await)?;
    Ok(Json(obj))
}

async fn replace(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
    scope: Result<Query<Scope>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path((kind, name)) = path?;
    let kind = parse_kind(&kind)?;
    let scope = scope?.0;
    let account = scope.account()?;
    let body = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
    let documents = documents::split(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let [document] = documents.as_slice() else {
        return Err(ApiError::bad_request(format!(
            "expected exactly one object in the body, found {}",
            documents.len()
        )));
    };
    let head = check_head(document, Some(kind), &account)?;
    if head.metadata.name != name && !head.metadata.name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the body names {:?} but the URL names {name:?}",
            head.metadata.name
        )));
    }
    let stored = with_kind!(kind, K => {
        let mut obj: K = document.parse().map_err(|e| ApiError::bad_request(e.to_string()))?;
        obj.metadata_mut().name = name.clone();
        obj.metadata_mut().account = account.clone();
        if let Some(guard) = scope.resource_version {
            obj.metadata_mut().resource_version = guard;
        }
        let stored = objects::replace::<K>(state.store, &account, obj).await?;
        serde_json::to_value(&stored).map_err(|e| ApiError::internal(e.to_string()))
    })?;
    Ok(Json(stored))
}

async fn delete(
    State(state): State<AdminState>,
    path: Result<Path<(String, String)>, PathRejection>,
    scope: Result<Query<Scope>, QueryRejection>,
) -> Result<Json<wire::Deleted>, ApiError> {
    let Path((kind, name)) = path?;
    let kind = parse_kind(&kind)?;
    let scope = scope?.0;
    let account = scope.account()?;
    let deleted = with_kind!(kind, K => {
        objects::delete::<K>(state.store, &account, &name, scope.resource_version).await
    })?;
    Ok(Json(deleted))
}

/// Read and check a document's head: a known kind (equal to `expected` when
/// given), our `apiVersion` when one is given, a valid name (when no URL
/// supplies it) and an account agreeing with `account` when it names one.
fn check_head(
    document: &Document,
    expected: Option<Kind>,
    account: &str,
) -> Result<Head, ApiError> {
    let bad = |message: String| ApiError::bad_request(document.error(message).to_string());
    let head = document
        .head()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let head = head.ok_or_else(|| bad("the document is empty".to_string()))?;
    if let Some(version) = &head.api_version
        && version != sdc_docker_store::model::API_VERSION
    {
        return Err(bad(format!(
            "apiVersion is {version:?}; expected {:?}",
            sdc_docker_store::model::API_VERSION
        )));
    }
    match (head.kind.as_str(), expected) {
        ("", Some(_)) => {}
        ("", None) => {
            return Err(bad(format!(
                "missing `kind` (one of {})",
                Kind::ALL.map(|k| k.as_str()).join(", ")
            )));
        }
        (named, _) => match Kind::parse(named) {
            None => {
                return Err(bad(format!(
                    "unknown kind {named:?} (expected one of {})",
                    Kind::ALL.map(|k| k.as_str()).join(", ")
                )));
            }
            Some(kind) if expected.is_some_and(|e| e != kind) => {
                return Err(bad(format!(
                    "the document is a {kind} but the URL names {}",
                    expected.map_or("", |e| e.plural())
                )));
            }
            Some(_) => {}
        },
    }
    if expected.is_none() || !head.metadata.name.is_empty() {
        let name = &head.metadata.name;
        if name.is_empty() {
            return Err(bad("missing metadata.name".to_string()));
        }
        if !keys::valid_name(name) {
            return Err(bad(format!(
                "invalid metadata.name {name:?}: must be 1 to 253 characters, with no '/' or control characters"
            )));
        }
    }
    if let Some(named) = &head.metadata.account {
        check_account(named).map_err(|e| bad(e.message().to_string()))?;
        if expected.is_some() && named != account {
            return Err(bad(format!(
                "the document is in account {named:?} but the request names account {account:?}"
            )));
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests;
