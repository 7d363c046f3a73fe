//! `docker save` (`GET /images/{name}/get`, `GET /images/get?names=…`),
//! `docker load` (`POST /images/load`) and `docker import`
//! (`POST /images/create?fromSrc=-`), over [`sdc_docker_images::archive`].
//!
//! Save finds every image and checks its blobs before the first byte, so an
//! unknown name is still Docker's 404 `No such image: NAME`; then the tar
//! streams as `application/x-tar`. Load and import read the request body
//! as a stream (no body limit: images are big); a bad archive found before
//! the first message is a plain HTTP 400, as Docker answers it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use sdc_docker_images::archive::{self, ArchiveError, LoadEvent};
use sdc_docker_images::lookup::Found;
use sdc_docker_images::registry::Platform;
use tokio::io::{AsyncRead, ReadBuf};

use super::{find, images_api, parse_reference, query_pairs};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::query::bool_value;
use crate::docker::stream::{self, JsonMessage};

/// The last value of `key`, if any.
fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// An archive failure as an HTTP error: the client's fault is a 400.
fn archive_error(e: ArchiveError) -> ApiError {
    if e.is_client_error() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::internal(e.to_string())
    }
}

/// `GET /images/{name}/get`: one image, tagged with the name when it is a
/// tag.
pub async fn get_one(state: DockerState, name: String) -> Response {
    save(state, vec![name]).await.into_response()
}

/// `GET /images/get?names=a&names=b`.
pub async fn get_many(State(state): State<DockerState>, RawQuery(query): RawQuery) -> Response {
    let names = query_pairs(query.as_deref())
        .into_iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v)
        .collect();
    save(state, names).await.into_response()
}

async fn save(state: DockerState, names: Vec<String>) -> Result<Response, ApiError> {
    let mut selected = Vec::new();
    for name in &names {
        let (image, found) = find(&state, name).await?;
        // Only a name that is a tag goes into RepoTags, as Docker does.
        let tags = match found {
            Found::Tag(tag) => vec![tag],
            Found::Id | Found::Digest(_) => Vec::new(),
        };
        selected.push((image, tags));
    }
    let plan = archive::plan_save(&state.images.store, &selected).map_err(archive_error)?;
    tracing::info!(images = ?plan.image_ids(), "saving");
    let mut response = (StatusCode::OK, Body::from_stream(plan.into_stream())).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(response)
}

/// The request body as an `AsyncRead`.
struct BodyReader {
    stream: BodyDataStream,
    current: Bytes,
}

impl BodyReader {
    fn new(body: Body) -> BodyReader {
        BodyReader {
            stream: body.into_data_stream(),
            current: Bytes::new(),
        }
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            match self.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(Some(Ok(chunk))) => self.current = chunk,
            }
        }
        let n = self.current.len().min(buf.remaining());
        let chunk = self.current.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// `POST /images/load?quiet=`: the body is the tar; the answer Docker's
/// JSONMessage stream (`Loading layer` progress unless quiet, then
/// `{"stream":"Loaded image: busybox:latest\n"}` per tag).
pub async fn load(
    State(state): State<DockerState>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref());
    let quiet = bool_value(last(&pairs, "quiet"));
    let platform = match last(&pairs, "platform").filter(|p| !p.is_empty()) {
        None => state.images.default_platform.clone(),
        Some(p) => Platform::parse(p).ok_or_else(|| {
            ApiError::bad_request(format!(
                "\"{p}\": unknown operating system or architecture: invalid argument"
            ))
        })?,
    };
    let (messages, mut receiver) = stream::channel();
    let images = images_api(&state);
    let store = state.images.store.clone();
    let task = tokio::spawn(async move {
        archive::load(
            &store,
            &images,
            BodyReader::new(body),
            &platform,
            |event| match event {
                LoadEvent::Layer {
                    id,
                    status,
                    current,
                    total,
                } if !quiet => {
                    messages.send(JsonMessage::progress(id, status, current, total));
                }
                LoadEvent::Layer { .. } => {}
                LoadEvent::Message(text) => messages.send(JsonMessage::stream(format!("{text}\n"))),
            },
        )
        .await
    });

    let Some(first) = receiver.recv().await else {
        // Ended before a word: a plain HTTP error, or nothing loaded.
        return match task.await {
            Ok(Ok(_)) => Ok(stream::response(None, receiver)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "load failed");
                Err(archive_error(e))
            }
            Err(e) => Err(ApiError::internal(format!("the load failed: {e}"))),
        };
    };
    let (tail, tail_receiver) = stream::channel();
    tokio::spawn(async move {
        while let Some(message) = receiver.recv().await {
            tail.send(message);
        }
        match task.await {
            Ok(Ok(loaded)) => tracing::info!(images = loaded.len(), "loaded"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "load failed");
                tail.send(JsonMessage::error(e.to_string()));
            }
            Err(e) => tail.send(JsonMessage::error(format!("the load failed: {e}"))),
        }
    });
    Ok(stream::response(Some(first), tail_receiver))
}

/// The `fromSrc` branch of `POST /images/create` (`docker import`): the body
/// is a rootfs tarball; `repo` and `tag` name the image, `changes` (repeated)
/// are `--change` instructions, `message` the commit message, `platform`
/// the image's platform. Answers `{"status":"sha256:…"}` as Docker does.
/// Only `fromSrc=-` is supported (no import from a URL).
pub async fn import(state: DockerState, query: Option<String>, body: Body) -> Response {
    let mut body = Some(body);
    let result = import_inner(state, query, &mut body).await;
    if result.is_err()
        && let Some(unread) = body.take()
    {
        // Refused before the tarball was read: read it anyway (within
        // bounds), so the client, still sending, gets this answer instead
        // of a broken pipe.
        drain(unread).await;
    }
    result.into_response()
}

/// Reads and drops what is left of a request body: at most
/// [`DRAIN_MAX_BYTES`], for at most [`DRAIN_TIMEOUT`].
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// How much of a refused upload is read before the connection is closed.
const DRAIN_MAX_BYTES: usize = 1 << 30;
/// How long reading a refused upload may take.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn import_inner(
    state: DockerState,
    query: Option<String>,
    body: &mut Option<Body>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref());
    match last(&pairs, "fromSrc") {
        Some("-") => {}
        Some(src) => {
            return Err(ApiError::bad_request(format!(
                "importing from {src:?} is not supported: only fromSrc=- (the request body)"
            )));
        }
        None => return Err(ApiError::bad_request("fromSrc must be given")),
    }
    let repo = last(&pairs, "repo").filter(|r| !r.is_empty());
    let tag = last(&pairs, "tag").filter(|t| !t.is_empty());
    let reference = match repo {
        None => None,
        Some(repo) => {
            let reference = parse_reference(repo)?;
            if reference.digest().is_some() {
                return Err(ApiError::bad_request("cannot import digest reference"));
            }
            Some(match tag {
                Some(tag) => reference
                    .with_tag(tag)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                None => reference.with_default_tag(),
            })
        }
    };
    let changes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "changes")
        .map(|(_, v)| v.clone())
        .collect();
    let message = last(&pairs, "message").map(str::to_owned);
    let platform = match last(&pairs, "platform").filter(|p| !p.is_empty()) {
        None => state.images.default_platform.clone(),
        Some(p) => Platform::parse(p).ok_or_else(|| {
            ApiError::bad_request(format!(
                "\"{p}\": unknown operating system or architecture: invalid argument"
            ))
        })?,
    };
    // The changes are checked while the body can still be drained.
    archive::apply_changes(&mut serde_json::Map::new(), &changes).map_err(archive_error)?;
    let image = archive::import(
        &state.images.store,
        &images_api(&state),
        BodyReader::new(body.take().unwrap_or_default()),
        reference.clone(),
        &changes,
        message,
        &platform,
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "import failed");
        archive_error(e)
    })?;
    tracing::info!(id = %image.spec.id, reference = ?reference.map(|r| r.to_string()), "imported");
    let (messages, receiver) = stream::channel();
    drop(messages);
    Ok(stream::response(
        Some(JsonMessage::status(image.spec.id.clone())),
        receiver,
    ))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use http_body_util::BodyExt;
    use sdc_docker_testkit::{Format, busybox};
    use tower::ServiceExt;

    use crate::docker::router;
    use crate::test_support::{TestStore, body_json, body_text};

    async fn app(store: &TestStore) -> Router {
        router(
            store.store.clone(),
            store.image_context(),
            crate::docker::NodeStreams::new(),
        )
    }

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        body: Vec<u8>,
    ) -> http::Response<axum::body::Body> {
        app.clone()
            .oneshot(
                http::Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(axum::body::Body::from(body))
                    .expect("request"),
            )
            .await
            .expect("response")
    }

    fn lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[tokio::test]
    async fn load_answers_loaded_image_lines_and_save_gives_the_archive_back() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let image = busybox::layered(Format::Docker);
        let response = send(
            &app,
            "POST",
            "/v1.45/images/load?quiet=1",
            image.docker_archive("busybox:latest"),
        )
        .await;
        assert_eq!(response.status(), 200);
        let messages = lines(&body_text(response).await);
        assert_eq!(
            messages,
            vec![serde_json::json!({ "stream": "Loaded image: busybox:latest\n" })]
        );

        let response = send(&app, "GET", "/v1.45/images/busybox/get", Vec::new()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-tar");
        let tar = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let needle = br#""RepoTags":["busybox:latest"]"#;
        assert!(tar.windows(needle.len()).any(|w| w == needle));
        // What was saved loads into another engine.
        let other = TestStore::new().await;
        let other_app = router(
            other.store.clone(),
            other.image_context(),
            crate::docker::NodeStreams::new(),
        );
        let response = send(&other_app, "POST", "/images/load", tar.to_vec()).await;
        assert_eq!(response.status(), 200);
        let text = body_text(response).await;
        assert!(text.contains("Loading layer"), "{text}");
        assert!(text.contains("Loaded image: busybox:latest"), "{text}");

        let response = send(
            &app,
            "GET",
            &format!("/images/get?names=busybox&names={}", image.id()),
            Vec::new(),
        )
        .await;
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn saving_an_unknown_image_is_a_404_before_any_byte() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let response = send(&app, "GET", "/images/nothere/get", Vec::new()).await;
        assert_eq!(response.status(), 404);
        assert_eq!(
            body_json(response).await["message"],
            "No such image: nothere"
        );
        let response = send(&app, "GET", "/images/get?names=nothere", Vec::new()).await;
        assert_eq!(response.status(), 404);
    }

    #[tokio::test]
    async fn loading_a_garbled_archive_is_a_400_and_records_nothing() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let response = send(&app, "POST", "/images/load", b"garbage".repeat(200)).await;
        assert_eq!(response.status(), 400);
        let message = body_json(response).await["message"].clone();
        assert!(
            message
                .as_str()
                .unwrap_or_default()
                .starts_with("invalid archive"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn loading_more_than_the_body_limit_is_streamed_not_refused() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let image = sdc_docker_testkit::Image::random(1, 17 << 20, 3);
        let response = send(&app, "POST", "/images/load", image.docker_archive("big:1")).await;
        assert_eq!(response.status(), 200);
        let text = body_text(response).await;
        assert!(text.contains("Loaded image: big:1"), "{text}");
    }

    #[tokio::test]
    async fn import_answers_the_new_image_id_and_tags_it() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let tar = busybox::layered(Format::Docker).layers[0].tar();
        let response = send(
            &app,
            "POST",
            "/images/create?fromSrc=-&repo=imported&tag=v1&changes=CMD%20%5B%22sh%22%5D&changes=ENV%20A%3Db&message=hi",
            tar,
        )
        .await;
        assert_eq!(response.status(), 200);
        let messages = lines(&body_text(response).await);
        let id = messages[0]["status"].as_str().expect("status").to_owned();
        assert!(id.starts_with("sha256:"), "{id}");
        let response = send(&app, "GET", "/images/imported:v1/json", Vec::new()).await;
        assert_eq!(response.status(), 200);
        let inspect = body_json(response).await;
        assert_eq!(inspect["Id"], id);
        assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(inspect["Comment"], "hi");

        let response = send(
            &app,
            "POST",
            "/images/create?fromSrc=-&changes=RUN%20true",
            b"x".to_vec(),
        )
        .await;
        assert_eq!(response.status(), 400);
        assert_eq!(
            body_json(response).await["message"],
            "run is not a valid change command"
        );
    }
}
