//! The admin router as the operator CLI sees it, through `Router::oneshot`
//! on a real embedded store.

use std::sync::Arc;

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
    let response = router(store.store.clone(), Arc::new(|| "# metrics\n".to_string()))
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    (status, body_json(response).await)
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text_from_their_source() {
    let store = TestStore::new().await;
    let source: super::MetricsSource =
        Arc::new(|| "sdc_docker_controller_leader{controller=\"x\"} 1\n".to_string());
    let response = router(store.store.clone(), source)
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        &body[..],
        b"sdc_docker_controller_leader{controller=\"x\"} 1\n"
    );
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
    assert_eq!(
        message,
        "document 2 (line 9): spec.memory: invalid i64 at line 14, column 11"
    );

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

/// The message of an error answer.
fn message(error: &Value) -> &str {
    error["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_typo_in_a_field_name_in_apply_is_refused_naming_it_and_nothing_is_stored() {
    let store = TestStore::new().await;
    let file = format!(
        "{WEB}---\nkind: Container\nmetadata:\n  name: db\n  lables: {{team: data}}\nspec:\n  imgae: postgres\n"
    );
    let (status, error) = call(&store, "POST", "/v1/apply", &file).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&error),
        "document 2 (line 9): unknown field metadata.lables at line 12, column 3; unknown field spec.imgae at line 14, column 3"
    );
    let (_, list) = call(&store, "GET", "/v1/containers", "").await;
    assert_eq!(
        list["items"],
        Value::Array(vec![]),
        "nothing stored: {list}"
    );
}

#[tokio::test]
async fn a_typo_in_a_field_name_in_a_replace_is_refused_and_the_object_is_kept() {
    let store = TestStore::new().await;
    call(&store, "POST", "/v1/apply", WEB).await;
    let (_, web) = call(&store, "GET", "/v1/containers/web", "").await;

    let mut typo = web.clone();
    typo["spec"]["restartPolicy"]["maximumRetryCuont"] = 3.into();
    let body = serde_json::to_string_pretty(&typo).expect("JSON");
    let (status, error) = call(&store, "PUT", "/v1/containers/web", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = message(&error);
    assert!(
        message.starts_with(
            "document 1 (line 1): unknown field spec.restartPolicy.maximumRetryCuont at line "
        ),
        "{message}"
    );

    let (_, now) = call(&store, "GET", "/v1/containers/web", "").await;
    assert_eq!(now, web, "the stored object is unchanged");
}

#[tokio::test]
async fn an_object_as_get_answers_it_is_accepted_back_unchanged_by_apply_and_replace() {
    let store = TestStore::new().await;
    call(&store, "POST", "/v1/apply", WEB).await;
    let (_, mut web) = call(&store, "GET", "/v1/containers/web", "").await;
    for field in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
        assert!(
            !web["metadata"][field].is_null(),
            "GET shows metadata.{field}: {web}"
        );
    }
    // As a newer instance sharing the store might show it.
    web["status"]["observedByANewerVersion"] = true.into();

    let yaml = serde_saphyr::to_string(&web).expect("YAML");
    let (status, report) = call(&store, "POST", "/v1/apply", &yaml).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["results"][0]["action"], "unchanged");

    let (status, stored) = call(&store, "PUT", "/v1/containers/web", &web.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(
        stored["metadata"]["resourceVersion"],
        web["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn a_value_stored_with_a_lower_case_or_plural_kind_decodes_as_its_kind() {
    let store = TestStore::new().await;
    for (name, kind) in [("lower", "container"), ("plural", "containers")] {
        let value = format!(
            r#"{{"kind":"{kind}","metadata":{{"name":"{name}"}},"spec":{{"image":"busybox"}}}}"#
        );
        store
            .store
            .create(
                &format!("/sdc-docker/v1/containers/default/{name}"),
                value.into_bytes(),
                None,
                None,
            )
            .await
            .expect("raw create");
    }
    store
        .store
        .create(
            "/sdc-docker/v1/containers/default/image",
            br#"{"kind":"image","metadata":{"name":"image"}}"#.to_vec(),
            None,
            None,
        )
        .await
        .expect("raw create");

    let (status, list) = call(&store, "GET", "/v1/containers", "").await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<(&str, &str)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap_or_default(),
                o["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(kinds, [("lower", "Container"), ("plural", "Container")]);
    assert_eq!(list["invalid"][0]["name"], "image");
    assert_eq!(
        list["invalid"][0]["error"],
        "kind is \"image\", but /sdc-docker/v1/containers/default/image holds Container objects"
    );
}

#[tokio::test]
async fn a_stored_value_of_the_wrong_type_is_listed_with_the_path_of_the_field() {
    let store = TestStore::new().await;
    store
        .store
        .create(
            "/sdc-docker/v1/containers/default/bad",
            br#"{"metadata":{"name":"bad"},"spec":{"image":42}}"#.to_vec(),
            None,
            None,
        )
        .await
        .expect("raw create");
    let (_, list) = call(&store, "GET", "/v1/containers", "").await;
    assert_eq!(
        list["invalid"][0]["error"],
        "spec.image: invalid type: integer `42`, expected a string at line 1 column 45"
    );
}
