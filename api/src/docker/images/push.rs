//! `POST /images/{name}/push?tag=`: `docker push`, streaming Docker's
//! JSONMessage progress, with the credentials of `X-Registry-Auth`.
//!
//! With `tag` the one tag is pushed; without (`docker push --all-tags`),
//! every tag of the repository. As for pull, the push runs in its own task:
//! a failure before its first message (no such tag) is an HTTP error the CLI
//! prints as `Error response from daemon: …`; later ones end the 200 stream
//! as `errorDetail`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use sdc_docker_images::push::{PushError, PushEvent, push as push_image};
use sdc_docker_images::reference::Reference;

use super::{images_api, parse_reference, registry_auth};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::stream::{self, JsonMessage};

/// How often `Pushing` progress goes out per layer at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// `POST /images/{name}/push`, `name` being the path before `/push`.
pub async fn push(
    state: DockerState,
    name: String,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tag = query
        .as_deref()
        .and_then(|q| {
            url_pairs(q)
                .into_iter()
                .find(|(k, _)| k == "tag")
                .map(|(_, v)| v)
        })
        .filter(|t| !t.is_empty());
    let reference = push_reference(&name, tag.as_deref())?;
    let credentials = registry_auth(&headers)?;
    // Anonymous pushes share the server's client (and its anonymous
    // tokens); credentials get a client of their own.
    let client = match credentials {
        Some(c) => state
            .images
            .client
            .with_credentials(reference.registry_host(), Some(c)),
        None => state.images.client.clone(),
    };

    let (messages, mut receiver) = stream::channel();
    let images = images_api(&state);
    let store = state.images.store.clone();
    let task_reference = reference.clone();
    let task = tokio::spawn(async move {
        let mut throttle = Throttle::default();
        push_image(&client, &store, &images, &task_reference, |event| {
            if let Some(message) = throttle.message(event) {
                messages.send(message);
            }
        })
        .await
        .map(|result| {
            for tag in &result.tags {
                tracing::info!(reference = %task_reference, tag = %tag.tag, digest = %tag.digest, "pushed");
            }
        })
    });

    let Some(first) = receiver.recv().await else {
        return match task.await {
            Ok(Ok(())) => Err(ApiError::internal("the push ended without a word")),
            Ok(Err(e)) => Err(push_error(e)),
            Err(e) => Err(ApiError::internal(format!("the push failed: {e}"))),
        };
    };
    let (tail, tail_receiver) = stream::channel();
    tokio::spawn(async move {
        while let Some(message) = receiver.recv().await {
            tail.send(message);
        }
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let e = push_error(e);
                tracing::warn!(reference = %reference, error = %e, "push failed");
                tail.send(JsonMessage::error(e.message()));
            }
            Err(e) => tail.send(JsonMessage::error(format!("the push failed: {e}"))),
        }
    });
    Ok(stream::response(Some(first), tail_receiver).into_response())
}

/// The decoded `key=value` pairs of a query string.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let uri: http::Uri = format!("/?{query}").parse().unwrap_or_default();
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// The reference to push: `name` with `tag`, or `name` alone (every tag).
fn push_reference(name: &str, tag: Option<&str>) -> Result<Reference, ApiError> {
    let reference = parse_reference(name)?;
    match tag {
        None => Ok(reference),
        Some(tag) => reference
            .with_tag(tag)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

/// A push failure with the status Docker answers it with.
fn push_error(e: PushError) -> ApiError {
    match e {
        PushError::NoSuchRepository(_) | PushError::NoSuchTag(_) => {
            ApiError::not_found(e.to_string())
        }
        PushError::DigestReference => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

/// Turns push events into JSONMessages, sending `Pushing` for a layer at
/// most every [`PROGRESS_EVERY`] (and always its last one).
#[derive(Default)]
struct Throttle {
    last: HashMap<String, Instant>,
}

impl Throttle {
    fn message(&mut self, event: PushEvent) -> Option<JsonMessage> {
        Some(match event {
            PushEvent::Status(status) => JsonMessage::status(status),
            PushEvent::Layer {
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
            PushEvent::Layer { id, status, .. } => JsonMessage::about(id, status),
            PushEvent::Pushed(tag) => {
                JsonMessage::aux(serde_json::to_value(&tag).unwrap_or_default())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use sdc_docker_images::push::PushedTag;
    use sdc_docker_images::reference::Digest;

    use super::*;

    #[test]
    fn the_tag_parameter_picks_one_tag_and_its_absence_every_tag() {
        let r = push_reference("127.0.0.1:5000/app", Some("v1")).expect("ok");
        assert_eq!(r.to_string(), "127.0.0.1:5000/app:v1");
        let r = push_reference("127.0.0.1:5000/app", None).expect("ok");
        assert_eq!(r.tag(), None);
        let e = push_reference("127.0.0.1:5000/app", Some("-x")).expect_err("refused");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_query_is_decoded() {
        assert_eq!(
            url_pairs("tag=v%2B1&x=y"),
            vec![("tag".into(), "v+1".into()), ("x".into(), "y".into())]
        );
        assert!(url_pairs("").is_empty());
    }

    #[test]
    fn the_pushed_tag_is_the_aux_message_docker_sends() {
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).expect("digest");
        let message = Throttle::default()
            .message(PushEvent::Pushed(PushedTag {
                tag: "v1".into(),
                digest: digest.clone(),
                size: 527,
            }))
            .expect("sent");
        assert_eq!(
            message.aux,
            Some(serde_json::json!({"Tag": "v1", "Digest": digest.as_str(), "Size": 527}))
        );
    }

    #[test]
    fn missing_tags_are_not_found_and_digests_bad_requests() {
        assert_eq!(
            push_error(PushError::NoSuchTag("x:y".into())).status(),
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            push_error(PushError::DigestReference).status(),
            http::StatusCode::BAD_REQUEST
        );
    }
}
