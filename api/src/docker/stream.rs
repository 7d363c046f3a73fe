//! Docker's JSONMessage streams: the newline-separated JSON objects that
//! `POST /images/create`, `/images/{name}/push` and `/images/load` answer
//! with, chunk by chunk, so the CLI draws progress bars as work goes on.
//!
//! A stream is a channel: the work sends [`JsonMessage`]s, the response body
//! writes each as one line. An error after the first message can no longer
//! change the HTTP status, so it goes in the stream as `errorDetail`, which
//! the CLI prints and exits 1 on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Docker's `jsonmessage.JSONMessage`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonMessage {
    /// A status line (`Downloading`, `Digest: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What the status is about (a layer's short id, a tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bytes done and in all, for progress bars.
    #[serde(
        default,
        rename = "progressDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress_detail: Option<ProgressDetail>,
    /// The bar as text, for clients that do not draw their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Plain output (`docker load`'s `Loaded image: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// What failed, once the stream has started.
    #[serde(
        default,
        rename = "errorDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_detail: Option<ErrorDetail>,
    /// The same message, for old clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Structured results (`docker push`'s digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

/// Docker's `jsonmessage.JSONProgress` as sent on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDetail {
    /// Bytes done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// Bytes in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// Docker's `jsonmessage.JSONError`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong.
    pub message: String,
}

impl JsonMessage {
    /// A bare status line.
    pub fn status(status: impl Into<String>) -> JsonMessage {
        JsonMessage {
            status: Some(status.into()),
            ..JsonMessage::default()
        }
    }

    /// A status line about `id`, with an empty `progressDetail` as Docker
    /// sends for layer lines (the CLI keeps one line per id).
    pub fn about(id: impl Into<String>, status: impl Into<String>) -> JsonMessage {
        JsonMessage {
            status: Some(status.into()),
            id: Some(id.into()),
            progress_detail: Some(ProgressDetail::default()),
            ..JsonMessage::default()
        }
    }

    /// A status about `id` with `current` of `total` bytes done.
    pub fn progress(
        id: impl Into<String>,
        status: impl Into<String>,
        current: u64,
        total: u64,
    ) -> JsonMessage {
        JsonMessage {
            status: Some(status.into()),
            id: Some(id.into()),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            progress: Some(progress_bar(current, total)),
            ..JsonMessage::default()
        }
    }

    /// Plain output, e.g. `Loaded image: busybox:latest\n`.
    pub fn stream(text: impl Into<String>) -> JsonMessage {
        JsonMessage {
            stream: Some(text.into()),
            ..JsonMessage::default()
        }
    }

    /// An error in the stream.
    pub fn error(message: impl Into<String>) -> JsonMessage {
        let message = message.into();
        JsonMessage {
            error: Some(message.clone()),
            error_detail: Some(ErrorDetail { message }),
            ..JsonMessage::default()
        }
    }

    /// A structured result.
    pub fn aux(value: serde_json::Value) -> JsonMessage {
        JsonMessage {
            aux: Some(value),
            ..JsonMessage::default()
        }
    }

    fn to_line(&self) -> Bytes {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        // Docker's encoder ends each message with CRLF.
        line.extend_from_slice(b"\r\n");
        Bytes::from(line)
    }
}

/// Docker's text bar: `[=====>      ]  1.05MB/2.1MB`, 50 cells wide.
pub fn progress_bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let done = (current.min(total) * WIDTH).checked_div(total).unwrap_or(0);
    let mut bar = "=".repeat(done as usize);
    if done < WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat((WIDTH - done - 1) as usize));
    }
    format!("[{bar}] {:>8}/{}", human_size(current), human_size(total))
}

/// Sizes as Docker's `units.HumanSize` writes them (decimal, 3 digits).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let digits = if size >= 100.0 {
        3
    } else if size >= 10.0 {
        2
    } else {
        1
    };
    // Three significant digits, trailing zeros dropped, like Go's %.4g.
    let rounded = format!("{size:.prec$}", prec = 3 - digits);
    let trimmed = if rounded.contains('.') {
        rounded
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        rounded
    };
    format!("{trimmed}{}", UNITS[unit])
}

/// The sending side of a JSONMessage stream. Sends never block and never
/// fail: when the client went away, messages are dropped and the work goes
/// on (a pull half done is still worth finishing).
#[derive(Clone, Debug)]
pub struct Messages {
    sender: mpsc::UnboundedSender<JsonMessage>,
}

impl Messages {
    /// Sends one message.
    pub fn send(&self, message: JsonMessage) {
        let _ = self.sender.send(message);
    }
}

/// A new stream: the sender for the work, the receiver for [`response`].
pub fn channel() -> (Messages, mpsc::UnboundedReceiver<JsonMessage>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Messages { sender }, receiver)
}

/// The 200 response streaming `first` then everything `receiver` yields, as
/// `application/json`, until every sender is gone.
pub fn response(
    first: Option<JsonMessage>,
    receiver: mpsc::UnboundedReceiver<JsonMessage>,
) -> Response {
    let rest = UnboundedReceiverStream::new(receiver);
    let lines = tokio_stream::iter(first)
        .chain(rest)
        .map(|m| Ok::<_, std::convert::Infallible>(m.to_line()));
    let mut response = (StatusCode::OK, Body::from_stream(lines)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// How often byte progress goes out per id at most.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Thins byte progress (`Downloading`, `Pushing`) to one message per id
/// every [`PROGRESS_EVERY`], always letting the last one (`current ==
/// total`) through, so the CLI's bars move without a message per chunk.
#[derive(Debug, Default)]
pub struct ProgressThrottle {
    last: HashMap<String, Instant>,
}

impl ProgressThrottle {
    /// The progress message for `id`, or `None` when one went out for it
    /// less than [`PROGRESS_EVERY`] ago and this is not the last.
    pub fn progress(
        &mut self,
        id: String,
        status: String,
        current: u64,
        total: u64,
    ) -> Option<JsonMessage> {
        let now = Instant::now();
        let due = self
            .last
            .get(&id)
            .is_none_or(|last| now.duration_since(*last) >= PROGRESS_EVERY);
        if !due && current < total {
            return None;
        }
        self.last.insert(id.clone(), now);
        Some(JsonMessage::progress(id, status, current, total))
    }
}

/// The reply to a request whose `work` (already running) reports on the
/// sender of `receiver`: until its first message, a failure is still an
/// HTTP error with its status, which the CLI prints as `Error response
/// from daemon: …`; from the first message on, the reply is a 200 stream
/// and a failure is its last message, as `errorDetail`. The work is not
/// cancelled when the client goes away. `what` names it in logs and
/// messages (`pull of docker.io/library/busybox:latest`).
pub async fn respond(
    mut receiver: mpsc::UnboundedReceiver<JsonMessage>,
    work: JoinHandle<Result<(), crate::ApiError>>,
    what: String,
) -> Result<Response, crate::ApiError> {
    let Some(first) = receiver.recv().await else {
        return match work.await {
            Ok(Ok(())) => Err(crate::ApiError::internal(format!(
                "the {what} ended without a word"
            ))),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(crate::ApiError::internal(format!("the {what} failed: {e}"))),
        };
    };
    let (tail, tail_receiver) = channel();
    tokio::spawn(async move {
        while let Some(message) = receiver.recv().await {
            tail.send(message);
        }
        match work.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "{what} failed");
                tail.send(JsonMessage::error(e.message()));
            }
            Err(e) => tail.send(JsonMessage::error(format!("the {what} failed: {e}"))),
        }
    });
    Ok(response(Some(first), tail_receiver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers_human_size() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
    }

    #[test]
    fn the_progress_bar_is_fifty_cells_with_an_arrow_at_the_front() {
        let bar = progress_bar(1_000_000, 2_000_000);
        assert!(bar.starts_with(&format!("[{}>", "=".repeat(25))), "{bar}");
        assert!(bar.ends_with("1MB/2MB"), "{bar}");
        assert!(progress_bar(5, 5).starts_with(&format!("[{}]", "=".repeat(50))));
        assert!(progress_bar(0, 0).starts_with("[>"));
    }

    #[test]
    fn byte_progress_is_thinned_per_id_but_its_end_always_goes_out() {
        let mut throttle = ProgressThrottle::default();
        let mut progress =
            |id: &str, current| throttle.progress(id.into(), "Downloading".into(), current, 100);
        assert!(progress("a", 1).is_some());
        assert!(progress("a", 2).is_none());
        assert!(progress("b", 2).is_some(), "each id has its own pace");
        let last = progress("a", 100).expect("the last one");
        assert_eq!(last.progress_detail.and_then(|p| p.current), Some(100));
    }

    #[tokio::test]
    async fn work_that_fails_before_its_first_message_is_an_http_error() {
        let (messages, receiver) = channel();
        let work = tokio::spawn(async move {
            drop(messages);
            Err(crate::ApiError::not_found("manifest unknown"))
        });
        let e = respond(receiver, work, "pull".into())
            .await
            .expect_err("an error");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn work_that_fails_after_its_first_message_ends_the_stream_with_error_detail() {
        use http_body_util::BodyExt;
        let (messages, receiver) = channel();
        let work = tokio::spawn(async move {
            messages.send(JsonMessage::status("Pulling from x"));
            Err(crate::ApiError::internal("connection reset"))
        });
        let response = respond(receiver, work, "pull".into())
            .await
            .expect("a stream");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let lines: Vec<serde_json::Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .map(|l| serde_json::from_slice(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["status"], "Pulling from x");
        assert_eq!(lines[1]["errorDetail"]["message"], "connection reset");
    }

    #[test]
    fn an_error_message_carries_both_error_and_error_detail() {
        let line = JsonMessage::error("boom").to_line();
        let value: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(value["error"], "boom");
        assert_eq!(value["errorDetail"]["message"], "boom");
        assert!(line.ends_with(b"\r\n"));
    }
}
