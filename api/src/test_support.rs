//! Helpers for the unit tests of this crate: a real embedded store in a
//! temporary directory, and readers of response bodies.

use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use sdc_docker_store::Store;

/// An embedded store (and an image store beside it) living as long as
/// this value.
pub struct TestStore {
    /// The store.
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    images_dir: std::path::PathBuf,
}

impl TestStore {
    /// Open a fresh embedded store in a new temporary directory.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = sdc_docker_store::connect("embedded", dir.path())
            .await
            .expect("opening the embedded store");
        let images_dir = dir.path().join("images");
        TestStore {
            store,
            _dir: dir,
            images_dir,
        }
    }

    /// An image context over a fresh image store in the same temp dir.
    pub fn image_context(&self) -> crate::docker::ImageContext {
        let store = sdc_docker_images::store::ImageStore::open(&self.images_dir)
            .expect("opening the image store");
        crate::docker::ImageContext::new(store, Vec::new()).expect("a registry client")
    }
}

/// The whole body as text.
pub async fn body_text(response: http::Response<Body>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("reading the body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("a UTF-8 body")
}

/// The whole body as JSON.
pub async fn body_json(response: http::Response<Body>) -> serde_json::Value {
    let text = body_text(response).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}
