//! System routes: what a client asks before anything else (`/_ping` to
//! negotiate, `/version` to show the server), and `/auth` (`docker
//! login`), and `/info` (the data center as one Docker host). `/df`
//! belongs here too when it comes.

mod auth;
mod info;
mod ping;
mod version;

use axum::Router;
use axum::routing::{get, post};

use super::DockerState;

pub use auth::AuthResponse;
pub use info::Info;
pub use version::{ComponentVersion, PlatformInfo, VersionResponse};

/// The system routes.
pub fn routes() -> Router<DockerState> {
    Router::new()
        .route("/_ping", get(ping::ping).head(ping::ping))
        .route("/version", get(version::version))
        .route("/info", get(info::info))
        .route("/auth", post(auth::auth))
}
