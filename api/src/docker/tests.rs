//! The Docker router as a client sees it, through `Router::oneshot`.

use axum::body::Body;
use http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::router;
use crate::test_support::{TestStore, body_json, body_text};

async fn call(method: &str, uri: &str) -> http::Response<Body> {
    let store = TestStore::new().await;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    router(
        store.store.clone(),
        store.image_context(),
        crate::docker::NodeStreams::new(),
    )
    .oneshot(request)
    .await
    .expect("infallible")
}

#[tokio::test]
async fn ping_answers_ok_with_dockers_headers() {
    let response = call("GET", "/_ping").await;
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["api-version"], "1.45");
    assert_eq!(h["ostype"], "linux");
    assert_eq!(h["docker-experimental"], "false");
    assert_eq!(h["builder-version"], "1");
    assert_eq!(h["swarm"], "inactive");
    assert_eq!(h["cache-control"], "no-cache, no-store, must-revalidate");
    assert_eq!(h["pragma"], "no-cache");
    assert!(
        h[header::SERVER]
            .to_str()
            .unwrap_or("")
            .starts_with("sdc-docker/")
    );
    assert_eq!(body_text(response).await, "OK");
}

#[tokio::test]
async fn a_head_ping_has_no_body() {
    let response = call("HEAD", "/v1.45/_ping").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "0");
    assert_eq!(body_text(response).await, "");
}

#[tokio::test]
async fn version_names_sdc_docker_and_the_api_range() {
    let response = call("GET", "/v1.24/version").await;
    assert_eq!(response.status(), StatusCode::OK);
    let v = body_json(response).await;
    assert_eq!(v["Platform"]["Name"], "sdc-docker");
    assert_eq!(v["ApiVersion"], "1.45");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Components"][0]["Name"], "Engine");
    assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.45");
    assert!(v["GoVersion"].as_str().unwrap_or("").starts_with("rustc "));
}

#[tokio::test]
async fn a_version_newer_than_ours_is_refused_in_dockers_words() {
    let response = call("GET", "/v1.99/version").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(response.headers()["api-version"], "1.45");
    let v = body_json(response).await;
    assert_eq!(
        v["message"],
        "client version 1.99 is too new. Maximum supported API version is 1.45"
    );
}

#[tokio::test]
async fn a_version_older_than_the_minimum_is_refused_in_plain_text() {
    let response = call("GET", "/v1.12/_ping").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        body_text(response).await,
        "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version\n"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_page_not_found() {
    for (method, uri) in [
        ("GET", "/nope"),
        ("GET", "/v1.45/nope"),
        ("GET", "/v1.99/nope"),
        ("DELETE", "/_ping"),
        ("GET", "/v1.45"),
    ] {
        let response = call(method, uri).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()["api-version"], "1.45");
        assert_eq!(body_json(response).await["message"], "page not found");
    }
}
