//! `GET /version`: Docker's `VersionResponse`, naming sdc-docker as the
//! platform so `docker version` shows which server it talks to. Where Docker
//! reports its Go version we report the Rust compiler we were built with.

use std::collections::BTreeMap;

use axum::Json;
use serde::{Deserialize, Serialize};

use crate::build_info::{
    API_VERSION, BUILD_TIME, GIT_COMMIT, MIN_API_VERSION, PLATFORM_NAME, RUSTC_VERSION, VERSION,
    arch, kernel_version, os,
};

/// Docker's `system.VersionResponse`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionResponse {
    /// The product.
    pub platform: PlatformInfo,
    /// The parts of the server and their versions.
    pub components: Vec<ComponentVersion>,
    /// The server's version.
    pub version: String,
    /// The newest API version served.
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    /// The oldest API version served.
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    /// The commit built.
    pub git_commit: String,
    /// The compiler (Docker's field name; ours is `rustc …`).
    pub go_version: String,
    /// `linux`, …
    pub os: String,
    /// `amd64`, …
    pub arch: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// Whether experimental features are on (never).
    #[serde(default)]
    pub experimental: bool,
    /// When the server was built (RFC 3339).
    pub build_time: String,
}

/// Docker's `system.PlatformInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlatformInfo {
    /// The product name.
    pub name: String,
}

/// Docker's `system.ComponentVersion`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComponentVersion {
    /// `Engine`, …
    pub name: String,
    /// Its version.
    pub version: String,
    /// Free-form details the CLI prints.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

impl VersionResponse {
    /// The version of this server.
    pub fn current() -> Self {
        let kernel = kernel_version();
        let details = [
            ("ApiVersion", API_VERSION.to_string()),
            ("MinAPIVersion", MIN_API_VERSION.to_string()),
            ("GitCommit", GIT_COMMIT.to_string()),
            ("GoVersion", RUSTC_VERSION.to_string()),
            ("Os", os().to_string()),
            ("Arch", arch().to_string()),
            ("KernelVersion", kernel.clone()),
            ("BuildTime", BUILD_TIME.to_string()),
            ("Experimental", "false".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        VersionResponse {
            platform: PlatformInfo {
                name: PLATFORM_NAME.to_string(),
            },
            components: vec![ComponentVersion {
                name: "Engine".to_string(),
                version: VERSION.to_string(),
                details,
            }],
            version: VERSION.to_string(),
            api_version: API_VERSION.to_string(),
            min_api_version: MIN_API_VERSION.to_string(),
            git_commit: GIT_COMMIT.to_string(),
            go_version: RUSTC_VERSION.to_string(),
            os: os().to_string(),
            arch: arch().to_string(),
            kernel_version: kernel,
            experimental: false,
            build_time: BUILD_TIME.to_string(),
        }
    }
}

/// Answer `GET /version`.
pub async fn version() -> Json<VersionResponse> {
    Json(VersionResponse::current())
}
