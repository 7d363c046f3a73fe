//! The admin router as the operator CLI sees it, through `Router::oneshot`
//! on a real embedded store.

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::router;
use crate::test_support::{TestStore, body_json};

const WEB: &str = "\
apiVersion: sdc-docker/v1
kind: Container
metadata:
  name: web
spec:
  image: nginx
  cmd: [nginx, -g, daemon off;]
";

async fn call(store: &TestStore, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router(store.store.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    (status, body_json(response).await)
}

#[tokio::test]
async fn apply_creates_then_leaves_unchanged_then_configures() {
    let store = TestStore::new().await;
    let (status, report) = call(&store, "POST", "/v1/apply", WEB).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["results"][0]["action"], "created");
    assert_eq!(report["results"][0]["generation"], 1);

    let (_, report) = call(&store, "POST", "/v1/apply", WEB).await;
    assert_eq!(report["results"][0]["action"], "unchanged");

    let changed = WEB.replace("image: nginx", "image: nginx:1.27");
    let (_, report) = call(&store, "POST", "/v1/apply", &changed).await;
    assert_eq!(report["results"][0]["action"], "configured");
    assert_eq!(report["results"][0]["generation"], 2);

    let (status, web) = call(&store, "GET", "/v1/containers/web", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(web["spec"]["image"], "nginx:1.27");
    assert_eq!(web["metadata"]["account"], "default");
    assert!(
        web["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
}

#[tokio::test]
async fn a_malformed_document_names_its_line_and_column_and_stores_nothing() {
    let store = TestStore::new().await;
    let file = format!(
        "{WEB}---\nkind: Container\nmetadata:\n  name: db\nspec:\n  image: postgres\n  memory: lots\n"
    );
    let (status, error) = call(&store, "POST", "/v1/apply", &file).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("document 2 (line 9): "), "{message}");
    assert!(message.contains("line 14, column 11"), "{message}");

    let (_, list) = call(&store, "GET", "/v1/container", "").await;
    assert_eq!(
        list["items"],
        Value::Array(vec![]),
        "nothing stored: {list}"
    );
}

#[tokio::test]
async fn unknown_kinds_are_refused_before_anything_is_stored() {
    let store = TestStore::new().await;
    let file = format!("{WEB}---\nkind: Pod\nmetadata:\n  name: p\n");
    let (status, error) = call(&store, "POST", "/v1/apply", &file).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown kind \"Pod\"")
    );
    let (status, _) = call(&store, "GET", "/v1/containers/web", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, error) = call(&store, "GET", "/v1/pods", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("known kinds: containers")
    );
}

#[tokio::test]
async fn a_replace_from_a_stale_read_is_a_conflict() {
    let store = TestStore::new().await;
    call(&store, "POST", "/v1/apply", WEB).await;
    let (_, web) = call(&store, "GET", "/v1/Container/web", "").await;
    let read = web["metadata"]["resourceVersion"]
        .as_i64()
        .unwrap_or_default();

    let mut first = web.clone();
    first["spec"]["image"] = "nginx:1".into();
    let (status, stored) = call(&store, "PUT", "/v1/containers/web", &first.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["metadata"]["generation"], 2);

    let mut second = web.clone();
    second["spec"]["image"] = "nginx:2".into();
    let (status, error) = call(&store, "PUT", "/v1/containers/web", &second.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("was modified since you read it"),
        "{message}"
    );
    assert!(
        message.contains(&format!("resourceVersion {read}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_stored_value_that_does_not_decode_is_listed_with_its_error_and_can_be_replaced() {
    let store = TestStore::new().await;
    call(&store, "POST", "/v1/apply", WEB).await;
    let key = "/sdc-docker/v1/containers/default/broken";
    store
        .store
        .create(
            key,
            br#"{"metadata":{"name":"broken"},"spec":{"memory":"lots"}}"#.to_vec(),
            None,
            None,
        )
        .await
        .expect("raw create");

    let (status, list) = call(&store, "GET", "/v1/containers", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["invalid"][0]["name"], "broken");
    assert!(
        list["invalid"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("column")
    );

    let (status, error) = call(&store, "GET", "/v1/containers/broken", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not decode")
    );

    let fixed = "kind: Container\nmetadata:\n  name: broken\nspec:\n  image: busybox\n";
    let (status, report) = call(&store, "POST", "/v1/apply", fixed).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["results"][0]["action"], "configured");
    let (status, broken) = call(&store, "GET", "/v1/containers/broken", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(broken["spec"]["image"], "busybox");
}

#[tokio::test]
async fn delete_removes_the_object() {
    let store = TestStore::new().await;
    call(&store, "POST", "/v1/apply", WEB).await;
    let (status, deleted) = call(&store, "DELETE", "/v1/containers/web", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["name"], "web");
    let (status, error) = call(&store, "DELETE", "/v1/containers/web", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["message"], "container \"web\" not found");
}

#[tokio::test]
async fn accounts_are_separate() {
    let store = TestStore::new().await;
    call(&store, "POST", "/v1/apply?account=acme", WEB).await;
    let (status, _) = call(&store, "GET", "/v1/containers/web", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, web) = call(&store, "GET", "/v1/containers/web?account=acme", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(web["metadata"]["account"], "acme");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_as_json() {
    let store = TestStore::new().await;
    let huge = "#".repeat(super::MAX_BODY_BYTES + 1);
    let (status, error) = call(&store, "POST", "/v1/apply", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
}
