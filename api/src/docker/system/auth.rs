//! `POST /auth`: `docker login`. The daemon checks the credentials against
//! the registry (`GET /v2/`, answering its Basic or Bearer challenge) and
//! keeps nothing: the CLI stores them and sends them with each push or pull
//! in `X-Registry-Auth`.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use sdc_docker_images::registry::{Credentials, RegistryError};
use serde::Serialize;

use super::DockerState;
use crate::ApiError;
use crate::docker::images::AuthConfig;

/// Docker Hub's registry host, for a login without a server address.
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// Docker's `registry.AuthenticateOKBody`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthResponse {
    /// `Login Succeeded`.
    pub status: String,
    /// A token to use instead of the password (never given here).
    pub identity_token: String,
}

/// `POST /auth`.
pub async fn auth(
    State(state): State<DockerState>,
    body: axum::body::Bytes,
) -> Result<Json<AuthResponse>, ApiError> {
    let config: AuthConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid auth configuration: {e}")))?;
    let host = login_host(&config.serveraddress);
    let credentials = config
        .credentials()
        .unwrap_or_else(|| Credentials::new("", ""));
    state
        .images
        .client
        .login(&host, &credentials)
        .await
        .map_err(|e| {
            tracing::info!(%host, user = %credentials.username, error = %e, "login refused");
            login_error(e)
        })?;
    tracing::info!(%host, user = %credentials.username, "login succeeded");
    Ok(Json(AuthResponse {
        status: "Login Succeeded".into(),
        identity_token: String::new(),
    }))
}

/// The registry host a `serveraddress` names: `127.0.0.1:5000`,
/// `https://reg.example.com/v1/` → `reg.example.com`; Docker Hub (or
/// nothing) → its registry host.
fn login_host(server: &str) -> String {
    let server = server.trim();
    let bare = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = bare.split('/').next().unwrap_or_default();
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            DOCKER_HUB_REGISTRY.to_owned()
        }
        host => host.to_owned(),
    }
}

/// A login failure as Docker answers it: 401 for refused credentials.
fn login_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::LoginFailed { .. } | RegistryError::Unauthorized { .. } => {
            ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
        }
        e => ApiError::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_become_registry_hosts() {
        assert_eq!(login_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_host("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(
            login_host("https://index.docker.io/v1/"),
            "registry-1.docker.io"
        );
        assert_eq!(login_host(""), "registry-1.docker.io");
    }

    #[test]
    fn refused_credentials_are_a_401_with_dockers_words() {
        let e = login_error(RegistryError::LoginFailed {
            url: "http://127.0.0.1:5000/v2/".into(),
            status: StatusCode::UNAUTHORIZED,
        });
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            e.message(),
            "login attempt to http://127.0.0.1:5000/v2/ failed with status: 401 Unauthorized"
        );
    }

    #[test]
    fn the_answer_is_dockers_authenticate_ok_body() {
        let json = serde_json::to_value(AuthResponse {
            status: "Login Succeeded".into(),
            identity_token: String::new(),
        })
        .expect("json");
        assert_eq!(
            json,
            serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""})
        );
    }
}
