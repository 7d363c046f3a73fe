//! `POST /images/{name}/push?tag=`: `docker push`, streaming Docker's
//! JSONMessage progress, with the credentials of `X-Registry-Auth`.
//!
//! With `tag` the one tag is pushed; without (`docker push --all-tags`),
//! every tag of the repository. As for pull, the push runs in its own task:
//! a failure before its first message (no such tag) is an HTTP error the CLI
//! prints as `Error response from daemon: …`; later ones end the 200 stream
//! as `errorDetail`.

use axum::response::Response;
use http::HeaderMap;
use sdc_docker_images::push::{PushError, PushEvent, push as push_image};
use sdc_docker_images::reference::Reference;

use super::{images_api, parse_reference, query_pairs, registry_auth};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::stream::{self, JsonMessage, ProgressThrottle};

/// `POST /images/{name}/push`, `name` being the path before `/push`.
pub async fn push(
    state: DockerState,
    name: String,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tag = query_pairs(query.as_deref())
        .into_iter()
        .find(|(k, _)| k == "tag")
        .map(|(_, v)| v)
        .filter(|t| !t.is_empty());
    let reference = push_reference(&name, tag.as_deref())?;
    let client = state
        .images
        .client_for(reference.registry_host(), registry_auth(&headers)?);

    let (messages, receiver) = stream::channel();
    let images = images_api(&state);
    let store = state.images.store.clone();
    let what = format!("push of {reference}");
    let work = tokio::spawn(async move {
        let mut progress = ProgressThrottle::default();
        let result = push_image(&client, &store, &images, &reference, |event| {
            if let Some(message) = push_message(&mut progress, event) {
                messages.send(message);
            }
        })
        .await
        .map_err(push_error)?;
        for tag in &result.tags {
            tracing::info!(reference = %reference, tag = %tag.tag, digest = %tag.digest, "pushed");
        }
        Ok(())
    });
    stream::respond(receiver, work, what).await
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

/// The JSONMessage of a push event; `Pushing` thinned by `progress`.
fn push_message(progress: &mut ProgressThrottle, event: PushEvent) -> Option<JsonMessage> {
    Some(match event {
        PushEvent::Status(status) => JsonMessage::status(status),
        PushEvent::Layer {
            id,
            status,
            current: Some(current),
            total: Some(total),
        } => return progress.progress(id, status, current, total),
        PushEvent::Layer { id, status, .. } => JsonMessage::about(id, status),
        PushEvent::Pushed(tag) => JsonMessage::aux(serde_json::to_value(&tag).unwrap_or_default()),
    })
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
    fn the_pushed_tag_is_the_aux_message_docker_sends() {
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).expect("digest");
        let message = push_message(
            &mut ProgressThrottle::default(),
            PushEvent::Pushed(PushedTag {
                tag: "v1".into(),
                digest: digest.clone(),
                size: 527,
            }),
        )
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
