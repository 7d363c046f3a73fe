//! The operations of the admin API on one kind, generic over
//! [`Resource`]: list (with the values that do not decode), get, replace
//! guarded by `resourceVersion`, delete, and the create-or-replace of
//! `apply`.
//!
//! All of them go through [`Api`], so the rules of the model (generation
//! bumped on spec changes, status kept on replace) hold here as everywhere.
//! The one thing [`Api`] cannot do is replace a stored value that does not
//! decode; [`overwrite_invalid`] does that, guarded by the revision read.

use std::sync::Arc;

use sdc_docker_store::{
    Api, Decoded, Error as StoreError, Kind, Resource, Store, encode, keys, new_uid,
};
use time::OffsetDateTime;

use super::wire::{Action, Applied, Deleted, InvalidObject, ObjectList};
use crate::ApiError;

/// How often a create-or-replace retries when someone else wrote between
/// its read and its write (only when the caller did not pin a revision).
const APPLY_ATTEMPTS: usize = 5;

/// `container "web"` (and the account when it is not the default one), for
/// messages.
pub fn describe(kind: Kind, account: &str, name: &str) -> String {
    let kind = kind.as_str().to_ascii_lowercase();
    if account == keys::DEFAULT_ACCOUNT {
        format!("{kind} {name:?}")
    } else {
        format!("{kind} {name:?} in account {account:?}")
    }
}

fn modified_since_read(kind: Kind, account: &str, name: &str, read: i64, now: i64) -> ApiError {
    ApiError::conflict(format!(
        "{} was modified since you read it (you read resourceVersion {read}, it is now at {now}): get it again and redo your change",
        describe(kind, account, name)
    ))
}

fn not_found(kind: Kind, account: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("{} not found", describe(kind, account, name)))
}

fn to_json<K: Resource>(obj: &K) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(obj).map_err(|e| ApiError::internal(format!("encoding {}: {e}", K::KIND)))
}

/// Every object of `K` in `account`, and the values that do not decode.
pub async fn list<K: Resource>(
    store: Arc<dyn Store>,
    account: &str,
) -> Result<ObjectList, ApiError> {
    let list = Api::<K>::new(store, account).list().await?;
    let items = list.items.iter().map(to_json).collect::<Result<_, _>>()?;
    let invalid = list
        .invalid
        .into_iter()
        .filter_map(|bad| match bad {
            Decoded::Valid(_) => None,
            Decoded::Invalid {
                key,
                name,
                message,
                resource_version,
                raw,
            } => Some(InvalidObject {
                account: keys::parse(&key).map_or(account, |(_, a, _)| a).to_string(),
                name,
                key,
                resource_version,
                error: message,
                raw: String::from_utf8_lossy(&raw).into_owned(),
            }),
        })
        .collect();
    Ok(ObjectList {
        kind: K::KIND.as_str().to_string(),
        account: account.to_string(),
        resource_version: list.revision,
        items,
        invalid,
    })
}

/// The object `name`; 404 when absent, 422 when its stored value does not
/// decode (with the decoder's message).
pub async fn get<K: Resource>(
    store: Arc<dyn Store>,
    account: &str,
    name: &str,
) -> Result<serde_json::Value, ApiError> {
    match Api::<K>::new(store, account).get_decoded(name).await? {
        None => Err(not_found(K::KIND, account, name)),
        Some(Decoded::Valid(obj)) => to_json(&obj),
        Some(Decoded::Invalid { message, .. }) => Err(ApiError::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{} is stored but does not decode: {message}; replace it with `sdc-docker apply -f` or delete it",
                describe(K::KIND, account, name)
            ),
        )),
    }
}

/// Replace the spec, labels and annotations of `name` with those of `obj`,
/// guarded by `obj.metadata.resourceVersion` when it is set. A stored value
/// that does not decode is overwritten. 404 when absent.
pub async fn replace<K: Resource>(
    store: Arc<dyn Store>,
    account: &str,
    obj: K,
) -> Result<K, ApiError> {
    let api = Api::<K>::new(store, account);
    let name = obj.metadata().name.clone();
    let read = obj.metadata().resource_version;
    match api.get_decoded(&name).await? {
        None => Err(not_found(K::KIND, account, &name)),
        Some(Decoded::Valid(current)) => {
            let now = current.metadata().resource_version;
            if read != 0 && read != now {
                return Err(modified_since_read(K::KIND, account, &name, read, now));
            }
            match api.replace(&obj).await {
                Err(StoreError::Conflict {
                    expected, actual, ..
                }) => Err(modified_since_read(
                    K::KIND,
                    account,
                    &name,
                    expected,
                    actual,
                )),
                Err(StoreError::NotFound { .. }) => Err(not_found(K::KIND, account, &name)),
                other => Ok(other?),
            }
        }
        Some(Decoded::Invalid {
            resource_version,
            raw,
            ..
        }) => {
            if read != 0 && read != resource_version {
                return Err(modified_since_read(
                    K::KIND,
                    account,
                    &name,
                    read,
                    resource_version,
                ));
            }
            match overwrite_invalid(&api, &obj, resource_version, &raw).await {
                Err(StoreError::Conflict {
                    expected, actual, ..
                }) => Err(modified_since_read(
                    K::KIND,
                    account,
                    &name,
                    expected,
                    actual,
                )),
                other => Ok(other?),
            }
        }
    }
}

/// Delete `name`, guarded by `expected` when given.
pub async fn delete<K: Resource>(
    store: Arc<dyn Store>,
    account: &str,
    name: &str,
    expected: Option<i64>,
) -> Result<Deleted, ApiError> {
    let api = Api::<K>::new(store, account);
    match api.delete(name, expected).await {
        Ok(revision) => Ok(Deleted {
            kind: K::KIND.as_str().to_string(),
            account: account.to_string(),
            name: name.to_string(),
            resource_version: revision,
        }),
        Err(StoreError::NotFound { .. }) => Err(not_found(K::KIND, account, name)),
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => Err(modified_since_read(
            K::KIND,
            account,
            name,
            expected,
            actual,
        )),
        Err(e) => Err(e.into()),
    }
}

/// Create `obj` if absent, otherwise replace its spec, labels and
/// annotations (keeping its status), and say which it was.
pub async fn apply<K: Resource>(
    store: Arc<dyn Store>,
    account: &str,
    obj: K,
) -> Result<Applied, ApiError> {
    let api = Api::<K>::new(store, account);
    let name = obj.metadata().name.clone();
    let pinned = obj.metadata().resource_version != 0;
    let applied = |action: Action, stored: &K| Applied {
        kind: K::KIND.as_str().to_string(),
        account: account.to_string(),
        name: name.clone(),
        action,
        resource_version: stored.metadata().resource_version,
        generation: stored.metadata().generation,
    };
    for _ in 0..APPLY_ATTEMPTS {
        let outcome = match api.get_decoded(&name).await? {
            None => {
                if pinned {
                    return Err(not_found(K::KIND, account, &name));
                }
                api.create(&obj)
                    .await
                    .map(|stored| applied(Action::Created, &stored))
            }
            Some(Decoded::Valid(current)) => {
                let before = current.metadata().resource_version;
                let read = obj.metadata().resource_version;
                if pinned && read != before {
                    return Err(modified_since_read(K::KIND, account, &name, read, before));
                }
                api.replace(&obj).await.map(|stored| {
                    let action = if stored.metadata().resource_version == before {
                        Action::Unchanged
                    } else {
                        Action::Configured
                    };
                    applied(action, &stored)
                })
            }
            Some(Decoded::Invalid {
                resource_version,
                raw,
                ..
            }) => {
                let read = obj.metadata().resource_version;
                if pinned && read != resource_version {
                    return Err(modified_since_read(
                        K::KIND,
                        account,
                        &name,
                        read,
                        resource_version,
                    ));
                }
                overwrite_invalid(&api, &obj, resource_version, &raw)
                    .await
                    .map(|stored| applied(Action::Configured, &stored))
            }
        };
        match outcome {
            Ok(result) => return Ok(result),
            // Someone wrote between our read and our write: read again,
            // unless the caller pinned the revision they read.
            Err(StoreError::AlreadyExists { .. } | StoreError::NotFound { .. }) if !pinned => {
                continue;
            }
            Err(StoreError::Conflict {
                expected, actual, ..
            }) => {
                if pinned {
                    return Err(modified_since_read(
                        K::KIND,
                        account,
                        &name,
                        expected,
                        actual,
                    ));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "{} kept changing while it was being applied; try again",
        describe(K::KIND, account, &name)
    )))
}

/// Replace a stored value that does not decode with `obj`, guarded by the
/// revision it was read at. Keeps the uid, creation time and generation
/// found in the old value when they can be read (bumping the generation),
/// and starts from an empty status: a value that did not decode carries no
/// observation worth keeping, and controllers observe again.
pub async fn overwrite_invalid<K: Resource>(
    api: &Api<K>,
    obj: &K,
    expected: i64,
    raw: &[u8],
) -> Result<K, StoreError> {
    let old: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
    let old_meta = old.get("metadata");
    let field = |name: &str| old_meta.and_then(|m| m.get(name));
    let mut next = obj.clone();
    *next.status_mut() = Default::default();
    let meta = next.metadata_mut();
    meta.account = api.account().to_string();
    meta.uid = field("uid")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map_or_else(new_uid, str::to_string);
    meta.creation_timestamp = Some(
        field("creationTimestamp")
            .and_then(|v| v.as_str())
            .and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .unwrap_or_else(OffsetDateTime::now_utc),
    );
    meta.generation = field("generation")
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
        .max(0)
        + 1;
    meta.deletion_timestamp = None;
    let name = meta.name.clone();
    let value = encode(&next)?;
    let revision = api
        .store()
        .update(&api.key(&name), value, expected, None)
        .await?;
    next.metadata_mut().resource_version = revision;
    Ok(next)
}
