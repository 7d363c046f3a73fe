//! `POST /v1/apply`: create or replace every object of an operator's file.
//!
//! Every document is read and checked before anything is stored, so a
//! malformed document (bad YAML or JSON, an unknown kind, a field of the
//! wrong type or that the kind does not know, a name used twice) stores
//! nothing and answers 400 naming the document, field, line and column.
//! The objects are then applied one by one in file order; a store failure
//! part way stops there and says which objects were already applied (the
//! store has no multi-key transaction across both backends' typed API).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use sdc_docker_store::{Kind, with_kind};

use super::objects::{self, describe};
use super::wire::{Applied, ApplyReport};
use super::{AdminState, Scope, check_head, documents};
use crate::ApiError;

/// A checked document, ready to apply.
struct Planned {
    index: usize,
    kind: Kind,
    account: String,
    name: String,
    object: serde_json::Value,
}

/// Apply the file in the body.
pub(super) async fn apply(
    State(state): State<AdminState>,
    scope: Result<Query<Scope>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplyReport>, ApiError> {
    let account = scope?.account()?;
    let body = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the file is not UTF-8: {e}")))?;
    let planned = plan(text, &account)?;
    let mut results: Vec<Applied> = Vec::with_capacity(planned.len());
    for p in planned {
        let outcome = with_kind!(p.kind, K => {
            match serde_json::from_value::<K>(p.object) {
                Ok(obj) => objects::apply::<K>(state.store.clone(), &p.account, obj).await,
                Err(e) => Err(ApiError::internal(e.to_string())),
            }
        });
        match outcome {
            Ok(applied) => results.push(applied),
            Err(e) => {
                let mut message = format!(
                    "document {} ({}): {}",
                    p.index,
                    describe(p.kind, &p.account, &p.name),
                    e.message()
                );
                if !results.is_empty() {
                    let done: Vec<String> = results
                        .iter()
                        .map(|a| format!("{}/{} {}", a.kind.to_ascii_lowercase(), a.name, a.action))
                        .collect();
                    message.push_str(&format!("; applied before it: {}", done.join(", ")));
                }
                return Err(ApiError::new(e.status(), message));
            }
        }
    }
    Ok(Json(ApplyReport { results }))
}

/// Read and check every document of `text`; the first problem is the error.
fn plan(text: &str, account: &str) -> Result<Vec<Planned>, ApiError> {
    let documents = documents::split(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut planned = Vec::with_capacity(documents.len());
    let mut seen: HashMap<(Kind, String, String), usize> = HashMap::new();
    for document in &documents {
        let head = check_head(document, None, account)?;
        let kind = Kind::parse(&head.kind)
            .ok_or_else(|| ApiError::bad_request(document.error("unknown kind").to_string()))?;
        let account = head
            .metadata
            .account
            .clone()
            .unwrap_or_else(|| account.to_string());
        let name = head.metadata.name.clone();
        let object = with_kind!(kind, K => {
            let mut obj: K = document
                .parse()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            obj.metadata_mut().account = account.clone();
            serde_json::to_value(&obj).map_err(|e| ApiError::internal(e.to_string()))?
        });
        if let Some(first) = seen.insert((kind, account.clone(), name.clone()), document.index) {
            return Err(ApiError::bad_request(
                document
                    .error(format!(
                        "{} is also document {first}",
                        describe(kind, &account, &name)
                    ))
                    .to_string(),
            ));
        }
        planned.push(Planned {
            index: document.index,
            kind,
            account,
            name,
            object,
        });
    }
    if planned.is_empty() {
        return Err(ApiError::bad_request("the file holds no objects"));
    }
    Ok(planned)
}
