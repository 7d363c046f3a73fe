//! The image half of the Docker API: pull (`POST /images/create`), list,
//! inspect, history, tag, remove, and (in their own files) push, save, load,
//! import and search.
//!
//! Images live in two places: the [`Image`] objects in the spec store, which
//! every instance sees (tags, digests, config), and this node's
//! [`ImageStore`] on disk (blobs and unpacked layers). Handlers find images
//! with [`lookup::find`], which follows Docker's rules for names, ids, id
//! prefixes and digests.

mod archive;
mod create;
mod inspect;
mod list;
mod push;
mod remove;
mod search;

use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use http::HeaderMap;
use sdc_docker_images::lookup::{self, LookupError};
use sdc_docker_images::reference::Reference;
use sdc_docker_images::registry::{Client, ClientConfig, Credentials, Platform, RegistryError};
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::Api;
use sdc_docker_store::model::Image;
use serde::Deserialize;

use super::DockerState;
use crate::ApiError;

pub use inspect::{HistoryItem, ImageInspect};
pub use list::ImageSummary;

/// What the image handlers need besides the spec store: this node's image
/// store and how to reach registries.
#[derive(Clone, Debug)]
pub struct ImageContext {
    /// Blobs and unpacked layers on this node.
    pub store: ImageStore,
    /// The registry client without per-request credentials; it knows the
    /// hosts spoken to in plain HTTP (`--insecure-registry`).
    pub client: Client,
    /// The platform pulled when the request names none.
    pub default_platform: Platform,
    /// The registries spoken to in plain HTTP (`--insecure-registry`),
    /// as `docker info` shows them.
    pub insecure_registries: Vec<String>,
}

impl ImageContext {
    /// A context over `store`, with `insecure_registries` reached in plain
    /// HTTP (loopback registries always are).
    pub fn new(
        store: ImageStore,
        insecure_registries: Vec<String>,
    ) -> Result<ImageContext, RegistryError> {
        let client = Client::new(ClientConfig {
            insecure_registries: insecure_registries.clone(),
            ..ClientConfig::default()
        })?;
        Ok(ImageContext {
            store,
            client,
            default_platform: Platform::linux_amd64(),
            insecure_registries,
        })
    }

    /// The client to reach `host` with `credentials` (from `X-Registry-Auth`),
    /// or the shared one when there are none. Both share one connection pool.
    pub fn client_for(&self, host: &str, credentials: Option<Credentials>) -> Client {
        match credentials {
            None => self.client.clone(),
            Some(credentials) => self.client.with_credentials(host, Some(credentials)),
        }
    }
}

/// The image routes.
pub fn routes() -> Router<DockerState> {
    Router::new()
        .route("/images/create", post(create::create))
        .route("/images/json", get(list::list))
        .route("/images/search", get(search::search))
        .route("/images/get", get(archive::get_many))
        // `docker load` bodies are whole images: streamed, never limited.
        .route(
            "/images/load",
            post(archive::load).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/images/{*name}",
            get(by_name_get).post(by_name_post).delete(remove::remove),
        )
}

/// Image names contain slashes (`127.0.0.1:5000/library/busybox`), so the
/// routes that end in an action (`/json`, `/history`, `/tag`) are matched
/// by hand on the rest of the path, as Docker's router does.
async fn by_name_get(
    state: axum::extract::State<DockerState>,
    axum::extract::Path(path): axum::extract::Path<String>,
    version: axum::Extension<super::ApiVersion>,
    query: axum::extract::RawQuery,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(name) = path.strip_suffix("/json") {
        return inspect::inspect(state, name.to_owned(), version)
            .await
            .into_response();
    }
    if let Some(name) = path.strip_suffix("/get") {
        return archive::get_one(state.0, name.to_owned()).await;
    }
    if let Some(name) = path.strip_suffix("/history") {
        return inspect::history(state, name.to_owned())
            .await
            .into_response();
    }
    let _ = query;
    ApiError::not_found("page not found").into_response()
}

async fn by_name_post(
    state: axum::extract::State<DockerState>,
    axum::extract::Path(path): axum::extract::Path<String>,
    query: axum::extract::RawQuery,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(name) = path.strip_suffix("/push") {
        return push::push(state.0, name.to_owned(), query.0, headers)
            .await
            .into_response();
    }
    if let Some(name) = path.strip_suffix("/tag") {
        return remove::tag(state, name.to_owned(), query)
            .await
            .into_response();
    }
    ApiError::not_found("page not found").into_response()
}

/// The Image objects of the request's account.
pub(crate) fn images_api(state: &DockerState) -> Api<Image> {
    Api::default_account(state.store.clone())
}

/// The decoded `key=value` pairs of a query string, repeated keys kept in
/// order (`docker save a b` sends `names=a&names=b`).
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    let uri: http::Uri = format!("/?{query}").parse().unwrap_or_default();
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// The image `name` names, or Docker's 404 `No such image: NAME`.
pub(crate) async fn find(
    state: &DockerState,
    name: &str,
) -> Result<(Image, lookup::Found), ApiError> {
    lookup::find(&images_api(state), name)
        .await
        .map_err(lookup_error)
}

/// A lookup failure as Docker answers it.
pub(crate) fn lookup_error(e: LookupError) -> ApiError {
    match e {
        LookupError::NotFound(_) => ApiError::not_found(e.to_string()),
        LookupError::Ambiguous(_) => ApiError::bad_request(e.to_string()),
        LookupError::Store(e) => e.into(),
    }
}

/// A reference from a request, with Docker's 400 for a bad one.
pub(crate) fn parse_reference(name: &str) -> Result<Reference, ApiError> {
    Reference::parse_normalized(name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Docker's familiar form of a stored normalised tag or digested name:
/// `docker.io/library/busybox:latest` → `busybox:latest`.
pub(crate) fn familiar(normalised: &str) -> String {
    Reference::parse_normalized(normalised)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| normalised.to_owned())
}

/// Docker's `registry.AuthConfig`, as `X-Registry-Auth` and `POST /auth`
/// carry it.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// `base64(username:password)`, the form config files keep.
    pub auth: String,
    /// The registry (`127.0.0.1:5000`, `https://index.docker.io/v1/`).
    pub serveraddress: String,
    /// A token from an earlier login, used as the password.
    pub identitytoken: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// The credentials it holds, if any.
    pub fn credentials(&self) -> Option<Credentials> {
        if !self.identitytoken.is_empty() {
            let user = if self.username.is_empty() {
                "<token>"
            } else {
                &self.username
            };
            return Some(Credentials::new(user, self.identitytoken.clone()));
        }
        if !self.username.is_empty() {
            return Some(Credentials::new(
                self.username.clone(),
                self.password.clone(),
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credentials::new(user, password))
    }
}

/// Credentials from the `X-Registry-Auth` header: base64url (padded or
/// not, and tolerating standard base64 as old clients send) of an
/// [`AuthConfig`]. Absent, empty or `{}` is no credentials; a header that
/// does not decode is a 400, as Docker answers it.
pub fn registry_auth(headers: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    let Some(value) = headers.get("X-Registry-Auth") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("invalid X-Registry-Auth header"))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = URL_SAFE
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| STANDARD.decode(text))
        .map_err(|_| ApiError::bad_request("invalid X-Registry-Auth header: not base64"))?;
    let config: AuthConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth header: {e}")))?;
    Ok(config.credentials())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("X-Registry-Auth", value.parse().expect("header value"));
        headers
    }

    #[test]
    fn registry_auth_reads_the_clis_base64url_json() {
        let json = r#"{"username":"u","password":"p+/?","serveraddress":"127.0.0.1:5000"}"#;
        let encoded = base64::engine::general_purpose::URL_SAFE.encode(json);
        let credentials = registry_auth(&header(&encoded)).expect("ok").expect("some");
        assert_eq!(credentials, Credentials::new("u", "p+/?"));
    }

    #[test]
    fn registry_auth_of_an_empty_object_is_no_credentials() {
        assert_eq!(registry_auth(&header("e30=")).expect("ok"), None);
        assert_eq!(registry_auth(&HeaderMap::new()).expect("ok"), None);
    }

    #[test]
    fn registry_auth_takes_the_auth_field_when_there_is_no_user_name() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = format!(r#"{{"auth":"{auth}"}}"#);
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let credentials = registry_auth(&header(&encoded)).expect("ok").expect("some");
        assert_eq!(credentials, Credentials::new("alice", "s3cret"));
    }

    #[test]
    fn a_registry_auth_header_that_is_not_base64_json_is_a_bad_request() {
        let e = registry_auth(&header("!!!")).expect_err("refused");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        let e = registry_auth(&header("bm90IGpzb24")).expect_err("refused");
        assert!(
            e.message().starts_with("invalid X-Registry-Auth header"),
            "{e}"
        );
    }

    #[test]
    fn the_query_is_decoded() {
        assert_eq!(
            query_pairs(Some("tag=v%2B1&x=y")),
            vec![("tag".into(), "v+1".into()), ("x".into(), "y".into())]
        );
        assert!(query_pairs(Some("")).is_empty());
        assert!(query_pairs(None).is_empty());
    }

    #[test]
    fn stored_tags_are_shown_in_their_familiar_form() {
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("127.0.0.1:5000/app:v1"), "127.0.0.1:5000/app:v1");
    }
}
