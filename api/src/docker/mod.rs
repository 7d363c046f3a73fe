//! The Docker Engine API, as the stock `docker` CLI expects it.
//!
//! Every route answers both unversioned (`/_ping`) and versioned
//! (`/v1.45/_ping`) paths: [`negotiation`] strips the version prefix before
//! routing, rejects versions outside [`MIN_API_VERSION`]..=[`API_VERSION`]
//! on matched routes (Docker's wording), and puts `Api-Version`, `Server` and
//! `Ostype` on every reply. Anything unrouted is Docker's 404
//! `page not found`. One folder per concept: [`system`], [`images`],
//! [`containers`], [`events`]; networks and volumes slot in beside them,
//! each with a `routes()` merged in [`router`].

pub mod containers;
pub mod events;
pub mod filters;
pub mod images;
pub mod negotiation;
pub mod nodes;
pub mod query;
pub mod stream;
pub mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn;
use sdc_docker_store::Store;
use tower::Layer;

use crate::ApiError;
pub use crate::build_info::{API_VERSION, MIN_API_VERSION};
pub use images::ImageContext;
pub use negotiation::ApiVersion;
pub use nodes::NodeStreams;

/// The largest request body a Docker route reads (container create bodies
/// are a few KiB; image loads and builds will stream rather than buffer).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the Docker handlers share.
#[derive(Clone)]
pub struct DockerState {
    /// The spec store.
    pub store: Arc<dyn Store>,
    /// This node's image store and registry access.
    pub images: Arc<ImageContext>,
    /// The streaming side of the nodes this instance reaches.
    pub nodes: Arc<NodeStreams>,
    /// What happened, for `GET /events`.
    pub events: Arc<events::EventLog>,
    /// The exec instances this API instance made (they live in its memory).
    pub execs: Arc<containers::exec::Execs>,
}

/// The Docker Engine API over `store`, with images in `images`, reaching
/// the zones of the nodes registered in `nodes`.
pub fn router(store: Arc<dyn Store>, images: ImageContext, nodes: Arc<NodeStreams>) -> Router {
    let images = Arc::new(images);
    let events = events::EventLog::start(store.clone());
    let routes = Router::new()
        .merge(system::routes())
        .merge(images::routes())
        .merge(containers::routes())
        .merge(events::routes())
        // Only matched routes check the version, as Docker does: an unknown
        // path under a bad version is still "page not found".
        .route_layer(from_fn(negotiation::check_version))
        .fallback(page_not_found)
        .method_not_allowed_fallback(page_not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(DockerState {
            store,
            images,
            nodes,
            events,
            execs: containers::exec::Execs::new(),
        });
    // The version prefix must be gone before routing, so this middleware
    // wraps the whole router instead of being one of its layers.
    Router::new().fallback_service(from_fn(negotiation::strip_version_prefix).layer(routes))
}

/// Docker's answer to an unknown path or method.
async fn page_not_found() -> ApiError {
    ApiError::not_found("page not found")
}

#[cfg(test)]
mod tests;
