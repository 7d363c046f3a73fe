//! API version negotiation, the way Docker's version middleware does it.
//!
//! A request may name a version in its path (`/v1.44/containers/json`);
//! [`strip_version_prefix`] removes it before routing and remembers it, and
//! [`check_version`] (on matched routes only) answers 400 with Docker's exact
//! wording when it is newer than [`API_VERSION`] or older than
//! [`MIN_API_VERSION`]. As Docker does, a too-old version is answered in
//! plain text: clients that old print a JSON error as it is. Handlers read
//! the negotiated version as [`ApiVersion`].

use std::cmp::Ordering;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::uri::PathAndQuery;
use http::{HeaderValue, StatusCode, Uri, header};

use crate::ApiError;
use crate::build_info::{API_VERSION, MIN_API_VERSION, os, server_header};

/// The version a request named in its path, if any (set before routing).
#[derive(Clone, Debug, PartialEq, Eq)]
struct RequestedVersion(Option<String>);

/// The API version a request is served at: the one in its path, or
/// [`API_VERSION`] when it named none. Available to handlers as
/// `Extension<ApiVersion>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersion(pub String);

impl ApiVersion {
    /// Whether this version is older than `other` (`"1.44"`).
    pub fn older_than(&self, other: &str) -> bool {
        compare_versions(&self.0, other) == Ordering::Less
    }
}

/// Compare dotted versions numerically, part by part, a missing or
/// non-numeric part counting as 0 (Go's `versions.compare`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

/// Split `/v1.45/rest` into `("1.45", "/rest")`; `None` when the path does
/// not start with `/v` + digits and dots + `/` (Docker's `/v{version:[0-9.]+}`).
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/')?;
    let (version, tail) = rest.split_at(end);
    let well_formed =
        !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    well_formed.then_some((version, tail))
}

/// Remove a `/vX.Y` prefix before routing, remember it for
/// [`check_version`], and put Docker's identifying headers on every reply.
pub async fn strip_version_prefix(mut request: Request, next: Next) -> Response {
    let mut requested = RequestedVersion(None);
    if let Some((version, rest)) = split_version(request.uri().path()) {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_string(),
        };
        let version = version.to_string();
        if let Ok(pq) = PathAndQuery::try_from(path_and_query) {
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
                requested = RequestedVersion(Some(version));
            }
        }
    }
    request.extensions_mut().insert(requested);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("api-version", HeaderValue::from_static(API_VERSION));
    headers.insert("ostype", HeaderValue::from_static(os()));
    headers.insert("docker-experimental", HeaderValue::from_static("false"));
    if let Ok(server) = HeaderValue::try_from(server_header()) {
        headers.insert(header::SERVER, server);
    }
    response
}

/// Reject a version outside what we serve; otherwise record the negotiated
/// [`ApiVersion`] for the handler.
pub async fn check_version(mut request: Request, next: Next) -> Response {
    let requested = request
        .extensions()
        .get::<RequestedVersion>()
        .and_then(|r| r.0.clone());
    let version = match requested {
        None => API_VERSION.to_string(),
        Some(version) => {
            if compare_versions(&version, MIN_API_VERSION) == Ordering::Less {
                return too_old(&version);
            }
            if compare_versions(&version, API_VERSION) == Ordering::Greater {
                return ApiError::bad_request(format!(
                    "client version {version} is too new. Maximum supported API version is {API_VERSION}"
                ))
                .into_response();
            }
            version
        }
    };
    request.extensions_mut().insert(ApiVersion(version));
    next.run(request).await
}

/// Docker answers clients older than its minimum in plain text (Go's
/// `http.Error`), because such clients print JSON errors verbatim.
fn too_old(version: &str) -> Response {
    let message = format!(
        "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version\n"
    );
    let mut response = (StatusCode::BAD_REQUEST, message).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_part_by_part() {
        assert_eq!(compare_versions("1.45", "1.45"), Ordering::Equal);
        assert_eq!(compare_versions("1.9", "1.24"), Ordering::Less);
        assert_eq!(compare_versions("1.100", "1.45"), Ordering::Greater);
        assert_eq!(compare_versions("2", "1.45"), Ordering::Greater);
        assert_eq!(compare_versions("1.24.0", "1.24"), Ordering::Equal);
    }

    #[test]
    fn only_a_v_digits_and_dots_prefix_is_a_version() {
        assert_eq!(split_version("/v1.45/_ping"), Some(("1.45", "/_ping")));
        assert_eq!(split_version("/v1.45/"), Some(("1.45", "/")));
        assert_eq!(split_version("/v1.45"), None);
        assert_eq!(split_version("/volumes/x"), None);
        assert_eq!(split_version("/v/x"), None);
        assert_eq!(split_version("/_ping"), None);
    }
}
