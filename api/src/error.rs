//! The one error type of every handler, answered the way Docker answers
//! errors: a status code and `{"message": "..."}` as `application/json`.
//!
//! `From` impls for the store's errors and for axum's extractor rejections
//! let handlers use `?` everywhere, so no handler writes an error body by
//! hand and none answers in plain text by accident.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

/// The body of every error reply: Docker's `ErrorResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub message: String,
}

/// An error a handler answers with: a status code and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the request collides with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 500: something broke on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The status code answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message answered.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        }
        // Go's json.Encoder ends the body with a newline; so do we.
        let mut body = serde_json::to_vec(&ErrorBody {
            message: self.message,
        })
        .unwrap_or_else(|_| br#"{"message":"error"}"#.to_vec());
        body.push(b'\n');
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl From<sdc_docker_store::Error> for ApiError {
    fn from(e: sdc_docker_store::Error) -> Self {
        use sdc_docker_store::Error as E;
        let status = match &e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::AlreadyExists { .. } | E::Conflict { .. } | E::Fenced { .. } => StatusCode::CONFLICT,
            // Refused for good: most often a value the backend will not take
            // (too large for etcd), so the request is what has to change.
            E::Invalid { .. } | E::Rejected(_) => StatusCode::BAD_REQUEST,
            E::Unavailable(_) | E::Closed => StatusCode::SERVICE_UNAVAILABLE,
            E::LeaseNotFound(_) | E::Compacted { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn an_error_is_a_json_message_with_its_status() {
        let response = ApiError::conflict("taken").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        assert_eq!(
            body.ok().as_deref(),
            Some(&b"{\"message\":\"taken\"}\n"[..])
        );
    }

    #[test]
    fn store_errors_map_to_the_status_a_client_expects() {
        use sdc_docker_store::Error as E;
        let status = |e| ApiError::from(e).status();
        assert_eq!(
            status(E::NotFound { key: "k".into() }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(E::AlreadyExists { key: "k".into() }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(E::Conflict {
                key: "k".into(),
                expected: 1,
                actual: 2
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(E::Invalid {
                key: "k".into(),
                message: "m".into()
            }),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(E::Unavailable("down".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
