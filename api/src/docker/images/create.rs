//! `POST /images/create`: `docker pull` (`fromImage`), streaming Docker's
//! JSONMessage progress; `fromSrc` is `docker import`.
//!
//! The pull runs in its own task. Until it reports its first step (after the
//! registry resolved the reference), a failure is still an HTTP error with
//! its status, which the CLI prints as `Error response from daemon: …`; from
//! then on the reply is a 200 stream and a failure is its last message, as
//! `errorDetail`. A client that goes away does not cancel the pull: the
//! next `docker pull` then finds it done.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use sdc_docker_images::pull::{PullError, PullEvent, pull};
use sdc_docker_images::reference::{Digest, Reference};
use sdc_docker_images::registry::{Platform, RegistryError};
use serde::Deserialize;

use super::{images_api, parse_reference, registry_auth};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::stream::{self, JsonMessage};

/// The query of `POST /images/create`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CreateQuery {
    /// The image to pull.
    pub from_image: Option<String>,
    /// `-` to import the request body.
    pub from_src: Option<String>,
    /// The repository to import into.
    pub repo: Option<String>,
    /// The tag, or a digest (`sha256:…`), to pull or import as.
    pub tag: Option<String>,
    /// `os[/arch[/variant]]`.
    pub platform: Option<String>,
    /// Commit message of an import.
    pub message: Option<String>,
}

/// How often `Downloading` progress goes out per layer at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// `POST /images/create`.
pub async fn create(
    State(state): State<DockerState>,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    raw_query: axum::extract::RawQuery,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    if query.from_src.is_some() {
        // `docker import`: the body is the tarball; see `archive.rs`.
        return Ok(super::archive::import(state, raw_query.0, body).await);
    }
    let Some(from_image) = query.from_image.as_deref().filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request("fromImage or fromSrc must be given"));
    };
    let reference = pull_reference(from_image, query.tag.as_deref())?;
    let platform = match query.platform.as_deref().filter(|p| !p.is_empty()) {
        None => state.images.default_platform.clone(),
        Some(p) => Platform::parse(p).ok_or_else(|| {
            ApiError::bad_request(format!(
                "\"{p}\": unknown operating system or architecture: invalid argument"
            ))
        })?,
    };
    let credentials = registry_auth(&headers)?;
    let client = state
        .images
        .client_for(reference.registry_host(), credentials);

    let (messages, mut receiver) = stream::channel();
    let images = images_api(&state);
    let store = state.images.store.clone();
    let task_reference = reference.clone();
    let task = tokio::spawn(async move {
        let mut throttle = Throttle::default();
        pull(
            &client,
            &store,
            &images,
            &task_reference,
            &platform,
            |event| {
                if let Some(message) = throttle.message(event) {
                    messages.send(message);
                }
            },
        )
        .await
        .map(|image| {
            tracing::info!(reference = %task_reference, id = %image.spec.id, "pulled");
        })
    });

    let Some(first) = receiver.recv().await else {
        // The pull ended before reporting anything: a plain HTTP error.
        return match task.await {
            Ok(Ok(())) => Err(ApiError::internal("the pull ended without a word")),
            Ok(Err(e)) => Err(pull_error(&reference, e)),
            Err(e) => Err(ApiError::internal(format!("the pull failed: {e}"))),
        };
    };
    // From here on the reply is a stream; the pull's outcome is its end.
    let (tail, tail_receiver) = stream::channel();
    tokio::spawn(async move {
        while let Some(message) = receiver.recv().await {
            tail.send(message);
        }
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let e = pull_error(&reference, e);
                tracing::warn!(reference = %reference, error = %e, "pull failed");
                tail.send(JsonMessage::error(e.message()));
            }
            Err(e) => tail.send(JsonMessage::error(format!("the pull failed: {e}"))),
        }
    });
    Ok(stream::response(Some(first), tail_receiver).into_response())
}

/// The reference to pull: `fromImage` with `tag` (a tag or a digest), as
/// the CLI splits `docker pull name:tag` and `name@sha256:…`.
fn pull_reference(from_image: &str, tag: Option<&str>) -> Result<Reference, ApiError> {
    let reference = parse_reference(from_image)?;
    match tag.filter(|t| !t.is_empty()) {
        None => Ok(reference),
        Some(tag) if tag.contains(':') => {
            let digest = Digest::parse(tag).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(reference.with_digest(digest))
        }
        Some(tag) => reference
            .with_tag(tag)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

/// A pull failure with the status and words Docker answers it with.
fn pull_error(reference: &Reference, e: PullError) -> ApiError {
    match e {
        PullError::Registry(RegistryError::ManifestUnknown { .. }) => {
            ApiError::not_found(e.to_string())
        }
        // Docker hides whether the repository exists from those who may not
        // read it, and answers 404 so the CLI does not prompt for a login.
        PullError::Registry(RegistryError::Unauthorized { message, .. }) => {
            ApiError::not_found(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': {message}",
                reference.familiar_name()
            ))
        }
        e => ApiError::internal(e.to_string()),
    }
}

/// Turns pull events into JSONMessages, sending `Downloading` for a layer
/// at most every [`PROGRESS_EVERY`] (and always its last one).
#[derive(Default)]
struct Throttle {
    last: HashMap<String, Instant>,
}

impl Throttle {
    fn message(&mut self, event: PullEvent) -> Option<JsonMessage> {
        Some(match event {
            PullEvent::PullingFrom { repo, tag } => {
                let mut message = JsonMessage::status(format!("Pulling from {repo}"));
                message.id = Some(tag);
                message
            }
            PullEvent::Layer {
                id,
                status,
                current: Some(current),
                total: Some(total),
            } => {
                let now = Instant::now();
                let due = self
                    .last
                    .get(&id)
                    .is_none_or(|last| now.duration_since(*last) >= PROGRESS_EVERY);
                if !due && current < total {
                    return None;
                }
                self.last.insert(id.clone(), now);
                JsonMessage::progress(id, status, current, total)
            }
            PullEvent::Layer { id, status, .. } => JsonMessage::about(id, status),
            PullEvent::Digest(digest) => JsonMessage::status(format!("Digest: {digest}")),
            PullEvent::Status(status) => JsonMessage::status(format!("Status: {status}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_and_a_digest_in_the_tag_parameter_both_make_the_reference() {
        let r = pull_reference("busybox", Some("1.36")).expect("ok");
        assert_eq!(r.to_string(), "docker.io/library/busybox:1.36");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = pull_reference("127.0.0.1:5000/x", Some(&digest)).expect("ok");
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x@{digest}"));
        let e = pull_reference("Busybox", None).expect_err("refused");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        let e = pull_reference("busybox", Some("-bad")).expect_err("refused");
        assert_eq!(e.message(), "invalid tag format");
    }

    #[test]
    fn downloading_progress_is_thinned_but_its_end_always_goes_out() {
        let mut throttle = Throttle::default();
        let event = |current| PullEvent::Layer {
            id: "abc".into(),
            status: "Downloading".into(),
            current: Some(current),
            total: Some(100),
        };
        assert!(throttle.message(event(1)).is_some());
        assert!(throttle.message(event(2)).is_none());
        let last = throttle.message(event(100)).expect("the last one");
        assert_eq!(last.progress_detail.and_then(|p| p.current), Some(100));
    }
}
