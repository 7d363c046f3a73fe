//! `GET`/`HEAD /_ping`: the first request of every `docker` command. Its
//! headers tell the client the API version to use (`Api-Version`, added by
//! the negotiation middleware), the builder, the OS and the swarm state.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};

/// Answer a ping with `OK` (or nothing for `HEAD`) and Docker's headers.
pub async fn ping(method: Method) -> Response {
    let mut response = if method == Method::HEAD {
        let mut r = ().into_response();
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    } else {
        "OK".into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert("builder-version", HeaderValue::from_static("1"));
    headers.insert("swarm", HeaderValue::from_static("inactive"));
    response
}
