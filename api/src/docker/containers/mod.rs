//! The container half of the Docker API.
//!
//! The handlers write Container specs and read their status; they never
//! drive a zone. A request that needs the zone to change (start, stop,
//! kill) writes the spec, then follows the Container in the store until the
//! node says it acted ([`watch_until`]). Only streams (attach, exec, logs,
//! stats, files) reach the zone itself, through the [`NodeStreams`] of the
//! node the Container was placed on ([`zone_streams`]).
//!
//! Containers are found the way Docker finds them ([`find`]): by full id,
//! by exact name, or by a unique id prefix.
//!
//! [`NodeStreams`]: super::nodes::NodeStreams

mod attach;
mod create;
pub mod exec;
mod files;
mod hijack;
mod inspect;
mod labels;
mod lifecycle;
mod list;
mod logs;
pub mod names;
mod rename;
mod stats;
mod update;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, head, post};
use futures::StreamExt;
use sdc_docker_store::model::Container;
use sdc_docker_store::{Api, Decoded, Error as StoreError, ObjectEvent};
use sdc_docker_zones::{ZoneError, ZoneStreams, zone_id};

use super::DockerState;
use crate::ApiError;

pub use inspect::ContainerInspect;
pub use list::ContainerSummary;

/// The container routes.
pub fn routes() -> Router<DockerState> {
    Router::new()
        // Lifecycle (lifecycle.rs, create.rs).
        .route("/containers/create", post(create::create))
        .route("/containers/prune", post(lifecycle::prune))
        .route("/containers/{name}/start", post(lifecycle::start))
        .route("/containers/{name}/stop", post(lifecycle::stop))
        .route("/containers/{name}/kill", post(lifecycle::kill))
        .route("/containers/{name}/restart", post(lifecycle::restart))
        .route("/containers/{name}/wait", post(lifecycle::wait))
        .route("/containers/{name}", delete(lifecycle::remove))
        // Listing and looking (list.rs, inspect.rs).
        .route("/containers/json", get(list::list))
        .route("/containers/{name}/json", get(inspect::inspect))
        .route("/containers/{name}/top", get(inspect::top))
        .route("/containers/{name}/rename", post(rename::rename))
        // Changing a live container (update.rs).
        .route("/containers/{name}/update", post(update::update))
        .route("/containers/{name}/pause", post(update::pause))
        .route("/containers/{name}/unpause", post(update::unpause))
        // Streams (attach.rs, logs.rs, exec.rs, stats.rs).
        .route("/containers/{name}/attach", post(attach::attach))
        .route("/containers/{name}/resize", post(attach::resize))
        .route("/containers/{name}/logs", get(logs::logs))
        .route("/containers/{name}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/containers/{name}/stats", get(stats::stats))
        // Files (files.rs).
        .route(
            "/containers/{name}/archive",
            head(files::stat)
                .get(files::archive)
                .put(files::extract)
                // An upload is as big as the files copied.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/containers/{name}/changes", get(files::changes))
        .route("/containers/{name}/export", get(files::export))
}

/// The Container objects of the request's account.
pub(crate) fn containers_api(state: &DockerState) -> Api<Container> {
    Api::default_account(state.store.clone())
}

/// Docker's 404 for a container that is not there.
pub(crate) fn no_such_container(name: &str) -> ApiError {
    ApiError::not_found(format!("No such container: {name}"))
}

/// Whether `s` could be (a prefix of) a Docker id.
fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container `name` names, the way Docker resolves it: a full id, an
/// exact name (with or without the leading `/`), or a prefix of exactly
/// one container's id. Anything else, an ambiguous prefix included, is
/// Docker's 404 `No such container: name`.
pub(crate) async fn find(state: &DockerState, name: &str) -> Result<Container, ApiError> {
    let api = containers_api(state);
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(no_such_container(name));
    }
    if !(bare.len() == 64 && is_hex(bare)) && valid_name(bare) {
        match api.get(bare).await {
            Ok(container) => return Ok(container),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !is_hex(bare) {
        return Err(no_such_container(name));
    }
    let wanted = bare.to_ascii_lowercase();
    let list = api.list().await?;
    let mut matches = list
        .items
        .into_iter()
        .filter(|c| c.docker_id().starts_with(&wanted));
    match (matches.next(), matches.next()) {
        (Some(one), None) => Ok(one),
        _ => Err(no_such_container(name)),
    }
}

/// Whether `name` is a valid container name: Docker's
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (one character is allowed too, as the
/// store allows it).
pub(crate) fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The streaming side of the node holding `container`'s zone, and the
/// zone's id. A container not yet placed cannot be streamed: 409 with the
/// reason. A node this instance does not run is reached over the network
/// ([`NodeStreams::reach`](super::nodes::NodeStreams::reach)).
pub(crate) fn zone_streams(
    state: &DockerState,
    container: &Container,
) -> Result<(Arc<dyn ZoneStreams>, String), ApiError> {
    let id = zone_id(&container.docker_id())
        .map_err(|e| ApiError::internal(format!("container {}: {e}", container.metadata.name)))?;
    let node = &container.status.node;
    if node.is_empty() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running: it has not been placed on a compute node yet",
            container.docker_id()
        )));
    }
    // A node this instance does not run is found through its Node object
    // when the stream is opened; an unreachable one fails that call.
    Ok((state.nodes.reach(&state.store, node), id))
}

/// The answer to a zone error on `container`, in Docker's words.
pub(crate) fn zone_error(container: &Container, e: ZoneError) -> ApiError {
    match e {
        ZoneError::NotFound { .. } | ZoneError::WrongState { .. } => ApiError::conflict(format!(
            "Container {} is not running",
            container.docker_id()
        )),
        ZoneError::NoSuchPath { .. } => ApiError::not_found(e.to_string()),
        ZoneError::BadRequest(message) => ApiError::bad_request(message),
        ZoneError::InvalidSignal(signal) => {
            ApiError::bad_request(format!("Invalid signal: {signal}"))
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// How a followed container ended up.
#[derive(Debug)]
pub(crate) enum Seen {
    /// It satisfied the condition; as it is then.
    Now(Box<Container>),
    /// It was removed; its last value when known.
    Removed(Option<Box<Container>>),
}

/// Follows the Container `name` in the store, from `from_revision` (the
/// revision of the caller's own write, or of the read it acted on), until
/// `done` holds for it or it is removed; for at most `deadline` when given
/// (then 500 with `what` in the message).
pub(crate) async fn watch_until(
    api: &Api<Container>,
    name: &str,
    from_revision: i64,
    deadline: Option<Duration>,
    what: &str,
    mut done: impl FnMut(&Container) -> bool + Send,
) -> Result<Seen, ApiError> {
    let follow = async {
        // Watching from the revision replays every change since, so no
        // change between the caller's write and this watch is missed.
        let mut events = Box::pin(api.watch(from_revision.max(1)).await?);
        // The object as it stands, in case nothing changes any more.
        match api.get(name).await {
            Ok(c) if done(&c) => return Ok(Seen::Now(Box::new(c))),
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Ok(Seen::Removed(None)),
            Err(e) => return Err(ApiError::from(e)),
        }
        while let Some(event) = events.next().await {
            match event? {
                ObjectEvent::Applied(Decoded::Valid(c)) if c.metadata.name == name && done(&c) => {
                    return Ok(Seen::Now(Box::new(c)));
                }
                ObjectEvent::Deleted {
                    name: gone, last, ..
                } if gone == name => {
                    return Ok(Seen::Removed(last.map(Box::new)));
                }
                ObjectEvent::Compacted { .. } => {
                    // History is gone: look at the object itself again.
                    match api.get(name).await {
                        Ok(c) if done(&c) => return Ok(Seen::Now(Box::new(c))),
                        Ok(_) => {}
                        Err(StoreError::NotFound { .. }) => return Ok(Seen::Removed(None)),
                        Err(e) => return Err(ApiError::from(e)),
                    }
                    events = Box::pin(api.watch(0).await?);
                }
                _ => {}
            }
        }
        Err(ApiError::internal(format!(
            "the store's watch ended while waiting for {what}"
        )))
    };
    match deadline {
        None => follow.await,
        Some(limit) => tokio::time::timeout(limit, follow)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::internal(format!(
                    "timed out after {} s waiting for {what}",
                    limit.as_secs()
                )))
            }),
    }
}

/// Reads the Container `name`, lets `change` edit its spec, and writes it
/// with compare-and-swap, again on a conflict with another writer. `change`
/// may refuse (its error is answered, nothing is written).
pub(crate) async fn update_spec(
    api: &Api<Container>,
    name: &str,
    mut change: impl FnMut(&mut Container) -> Result<(), ApiError>,
) -> Result<Container, ApiError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut container = match api.get(name).await {
            Ok(c) => c,
            Err(StoreError::NotFound { .. }) => return Err(no_such_container(name)),
            Err(e) => return Err(e.into()),
        };
        change(&mut container)?;
        match api.replace(&container).await {
            Ok(written) => return Ok(written),
            Err(StoreError::Conflict { .. }) if attempts < 20 => continue,
            Err(StoreError::NotFound { .. }) => return Err(no_such_container(name)),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_dockers_rule() {
        assert!(valid_name("web"));
        assert!(valid_name("a"));
        assert!(valid_name("my_app.1-b"));
        assert!(!valid_name("_web"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("we b"));
        assert!(!valid_name("web/1"));
        assert!(!valid_name(""));
    }
}
