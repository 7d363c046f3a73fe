//! `POST /images/create`: `docker pull` (`fromImage`), streaming Docker's
//! JSONMessage progress; `fromSrc` is `docker import`.
//!
//! The pull runs in its own task. Until it reports its first step (after the
//! registry resolved the reference), a failure is still an HTTP error with
//! its status, which the CLI prints as `Error response from daemon: …`; from
//! then on the reply is a 200 stream and a failure is its last message, as
//! `errorDetail`. A client that goes away does not cancel the pull: the
//! next `docker pull` then finds it done.

use axum::extract::{Query, State};
use axum::response::Response;
use http::HeaderMap;
use sdc_docker_images::pull::{PullError, PullEvent, pull};
use sdc_docker_images::reference::{Digest, Reference};
use sdc_docker_images::registry::{Platform, RegistryError};
use serde::Deserialize;

use super::{images_api, parse_reference, registry_auth};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::stream::{self, JsonMessage, ProgressThrottle};

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

    let (messages, receiver) = stream::channel();
    let images = images_api(&state);
    let store = state.images.store.clone();
    let what = format!("pull of {reference}");
    let work = tokio::spawn(async move {
        let mut progress = ProgressThrottle::default();
        let image = pull(&client, &store, &images, &reference, &platform, |event| {
            if let Some(message) = pull_message(&mut progress, event) {
                messages.send(message);
            }
        })
        .await
        .map_err(|e| pull_error(&reference, e))?;
        tracing::info!(reference = %reference, id = %image.spec.id, "pulled");
        Ok(())
    });
    stream::respond(receiver, work, what).await
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

/// The JSONMessage of a pull event; `Downloading` thinned by `progress`.
fn pull_message(progress: &mut ProgressThrottle, event: PullEvent) -> Option<JsonMessage> {
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
        } => return progress.progress(id, status, current, total),
        PullEvent::Layer { id, status, .. } => JsonMessage::about(id, status),
        PullEvent::Digest(digest) => JsonMessage::status(format!("Digest: {digest}")),
        PullEvent::Status(status) => JsonMessage::status(format!("Status: {status}")),
    })
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
        let mut throttle = ProgressThrottle::default();
        let event = |current| PullEvent::Layer {
            id: "abc".into(),
            status: "Downloading".into(),
            current: Some(current),
            total: Some(100),
        };
        assert!(pull_message(&mut throttle, event(1)).is_some());
        assert!(pull_message(&mut throttle, event(2)).is_none());
        let last = pull_message(&mut throttle, event(100)).expect("the last one");
        assert_eq!(last.progress_detail.and_then(|p| p.current), Some(100));
    }
}
