//! The Docker side of `sdc-docker serve`, as the stock `docker` CLI and a
//! plain HTTP client see it.

mod common;

use common::{Server, docker_at, http_tcp, http_unix};

#[tokio::test]
async fn docker_version_shows_sdc_docker_as_the_server_speaking_api_1_45() {
    let server = Server::start("embedded").await;
    let out = server.docker(&["version"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("Server: sdc-docker"), "{out:?}");
    assert!(
        out.stdout
            .contains("API version:      1.45 (minimum version 1.24)"),
        "{out:?}"
    );
    assert!(out.stdout.contains("Go version:       rustc "), "{out:?}");
    let api = server.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(api.stdout.trim(), "1.45", "{api:?}");
}

#[tokio::test]
async fn docker_reaches_the_server_on_its_unix_socket_too() {
    let server = Server::start("embedded").await;
    let host = format!("unix://{}", server.docker_socket.display());
    let out = docker_at(
        &host,
        server.dir(),
        &["version", "--format", "{{.Server.Platform.Name}}"],
    );
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout.trim(), "sdc-docker");
}

#[tokio::test]
async fn ping_answers_ok_with_the_headers_docker_clients_read() {
    let server = Server::start("embedded").await;
    for path in ["/_ping", "/v1.45/_ping", "/v1.24/_ping"] {
        let reply = http_tcp(server.port, "GET", path).expect("an answer");
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(reply.body, "OK");
        assert_eq!(reply.header("Api-Version"), Some("1.45"));
        assert_eq!(reply.header("Ostype"), Some("linux"));
        assert_eq!(reply.header("Docker-Experimental"), Some("false"));
        assert_eq!(reply.header("Builder-Version"), Some("1"));
        assert_eq!(reply.header("Swarm"), Some("inactive"));
        assert_eq!(
            reply.header("Cache-Control"),
            Some("no-cache, no-store, must-revalidate")
        );
        assert_eq!(reply.header("Pragma"), Some("no-cache"));
        assert!(
            reply
                .header("Server")
                .is_some_and(|s| s.starts_with("sdc-docker/")),
            "{reply:?}"
        );
    }
    let head = http_tcp(server.port, "HEAD", "/_ping").expect("an answer");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Api-Version"), Some("1.45"));
}

#[tokio::test]
async fn a_versioned_path_newer_than_ours_is_refused_with_dockers_message_as_json() {
    let server = Server::start("embedded").await;
    let reply = http_tcp(server.port, "GET", "/v1.99/version").expect("an answer");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.header("Api-Version"), Some("1.45"));
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON body");
    assert_eq!(
        body,
        serde_json::json!({"message": "client version 1.99 is too new. Maximum supported API version is 1.45"})
    );
}

#[tokio::test]
async fn a_versioned_path_older_than_the_minimum_is_refused_in_dockers_words() {
    let server = Server::start("embedded").await;
    let reply = http_tcp(server.port, "GET", "/v1.12/version").expect("an answer");
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body.trim_end(),
        "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
    );
}

#[tokio::test]
async fn an_unknown_route_is_page_not_found() {
    let server = Server::start("embedded").await;
    for path in ["/no/such/route", "/v1.45/no/such/route"] {
        let reply = http_tcp(server.port, "GET", path).expect("an answer");
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON body");
        assert_eq!(body, serde_json::json!({"message": "page not found"}));
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_and_removes_its_sockets() {
    let mut server = Server::start("embedded").await;
    assert!(server.admin_socket.exists());
    let status = server
        .stop()
        .expect("the server stopped within the grace period");
    assert!(status.success(), "exit status {status}\n{}", server.log());
    assert!(!server.admin_socket.exists(), "admin socket removed");
    assert!(!server.docker_socket.exists(), "docker socket removed");
    assert!(http_unix(&server.admin_socket, "GET", "/v1/containers").is_none());
}
