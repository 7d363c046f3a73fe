//! A container's files: `docker cp` (`HEAD`, `GET` and `PUT
//! /containers/{name}/archive?path=`), `docker diff` (`GET …/changes`) and
//! `docker export` (`GET …/export`), through the zone's
//! [`ZoneStreams`](sdc_docker_zones::ZoneStreams).
//!
//! A zone's file system exists from the moment its node created it until
//! it is removed, so these work on a stopped container as on a running one,
//! as in Docker; only a container whose zone is not created yet (not placed,
//! or its image still arriving) is refused, with 409. Archives stream both
//! ways: nothing is held in memory, and the upload has no body limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sdc_docker_store::model::Container;
use sdc_docker_zones::ZoneError;
use sdc_docker_zones::streams::{ByteStream, ChangeKind, ExtractOptions, PathStat};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::{find, zone_error, zone_streams};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::query::bool_value;

/// The header carrying a path's stat, base64 of its JSON.
const PATH_STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// Bytes read from an archive at a time.
const CHUNK: usize = 64 * 1024;

/// The query of the archive routes.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ArchiveQuery {
    /// The path in the container.
    #[serde(default)]
    path: Option<String>,
    /// Refuse to replace a directory with a non-directory or the reverse.
    #[serde(default, rename = "noOverwriteDirNonDir")]
    no_overwrite_dir_non_dir: Option<String>,
    /// Keep the archive's owners.
    #[serde(default, rename = "copyUIDGID")]
    copy_uid_gid: Option<String>,
}

impl ArchiveQuery {
    /// The path, which Docker requires (its message, sic).
    fn path(&self) -> Result<&str, ApiError> {
        match self.path.as_deref() {
            Some(path) if !path.is_empty() => Ok(path),
            _ => Err(ApiError::bad_request("bad parameter: pathcannot be empty")),
        }
    }
}

/// Docker's `container.PathStat`, as the CLI decodes the header.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PathStatJson {
    name: String,
    size: u64,
    mode: u32,
    mtime: String,
    #[serde(rename = "linkTarget")]
    link_target: String,
}

/// The `X-Docker-Container-Path-Stat` value of `stat`.
fn path_stat_header(stat: &PathStat) -> Result<HeaderValue, ApiError> {
    let json = PathStatJson {
        name: stat.name.clone(),
        size: stat.size,
        mode: stat.mode,
        mtime: stat
            .mtime
            .format(&Rfc3339)
            .map_err(|e| ApiError::internal(format!("formatting a file's time: {e}")))?,
        link_target: stat.link_target.clone(),
    };
    let text = serde_json::to_vec(&json)
        .map_err(|e| ApiError::internal(format!("encoding a path's stat: {e}")))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    HeaderValue::from_str(&encoded)
        .map_err(|e| ApiError::internal(format!("encoding a path's stat: {e}")))
}

/// A zone error of a file request on the container the user called
/// `name`, in Docker's words.
fn file_error(name: &str, container: &Container, path: &str, e: ZoneError) -> ApiError {
    match e {
        ZoneError::NoSuchPath { .. } => ApiError::not_found(format!(
            "Could not find the file {path} in container {name}"
        )),
        // The zone is not there yet, or its create has not finished.
        ZoneError::NotFound { .. } | ZoneError::WrongState { .. } => ApiError::conflict(format!(
            "Container {} has no file system yet: its zone is still being created",
            container.docker_id()
        )),
        other => zone_error(container, other),
    }
}

/// The headers of an answer about `stat`.
fn stat_headers(stat: &PathStat) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    headers.insert(PATH_STAT_HEADER, path_stat_header(stat)?);
    Ok(headers)
}

/// `HEAD /containers/{name}/archive?path=`: what is at the path.
pub(super) async fn stat(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<ArchiveQuery>,
) -> Result<Response, ApiError> {
    let path = query.path()?;
    let container = find(&state, &name).await?;
    let (streams, id) = zone_streams(&state, &container)?;
    let stat = streams
        .stat_path(&id, path)
        .await
        .map_err(|e| file_error(&name, &container, path, e))?;
    Ok((StatusCode::OK, stat_headers(&stat)?).into_response())
}

/// A tar stream as a response body; a read error ends the body with an
/// error, so the client sees a broken transfer rather than a short archive.
fn tar_body(reader: ByteStream) -> Body {
    let chunks = futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = BytesMut::with_capacity(CHUNK);
        match reader.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(reader))),
            Err(e) => {
                tracing::warn!(error = %e, "an archive ended early");
                Some((Err(e), None))
            }
        }
    });
    Body::from_stream(chunks)
}

/// A tar answer with `headers`.
fn tar_response(mut headers: HeaderMap, reader: ByteStream) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    (StatusCode::OK, headers, tar_body(reader)).into_response()
}

/// `GET /containers/{name}/archive?path=`: a tar of the path.
pub(super) async fn archive(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<ArchiveQuery>,
) -> Result<Response, ApiError> {
    let path = query.path()?;
    let container = find(&state, &name).await?;
    let (streams, id) = zone_streams(&state, &container)?;
    let (stat, reader) = streams
        .archive(&id, path)
        .await
        .map_err(|e| file_error(&name, &container, path, e))?;
    Ok(tar_response(stat_headers(&stat)?, reader))
}

/// The request body as an `AsyncRead`.
struct BodyReader {
    stream: BodyDataStream,
    current: Bytes,
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            match self.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(Some(Ok(chunk))) => self.current = chunk,
            }
        }
        let n = self.current.len().min(buf.remaining());
        let chunk = self.current.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// `PUT /containers/{name}/archive?path=`: unpacks the body, a tar, into
/// the directory at the path.
pub(super) async fn extract(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<ArchiveQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let path = query.path()?;
    let options = ExtractOptions {
        no_overwrite_dir_non_dir: bool_value(query.no_overwrite_dir_non_dir.as_deref()),
        copy_uid_gid: bool_value(query.copy_uid_gid.as_deref()),
    };
    let container = find(&state, &name).await?;
    let (streams, id) = zone_streams(&state, &container)?;
    let tar: ByteStream = Box::pin(BodyReader {
        stream: body.into_data_stream(),
        current: Bytes::new(),
    });
    streams
        .extract(&id, path, tar, options)
        .await
        .map_err(|e| file_error(&name, &container, path, e))?;
    tracing::info!(container = %container.metadata.name, path, "archive extracted");
    Ok(StatusCode::OK.into_response())
}

/// Docker's `container.FilesystemChange`.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct ChangeJson {
    #[serde(rename = "Path")]
    path: String,
    #[serde(rename = "Kind")]
    kind: u8,
}

/// Docker's number for a change kind.
fn kind_number(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Modified => 0,
        ChangeKind::Added => 1,
        ChangeKind::Deleted => 2,
    }
}

/// `GET /containers/{name}/changes`: what changed against the image.
pub(super) async fn changes(
    State(state): State<DockerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let container = find(&state, &name).await?;
    let (streams, id) = zone_streams(&state, &container)?;
    let changes = streams
        .changes(&id)
        .await
        .map_err(|e| file_error(&name, &container, "/", e))?;
    let changes: Vec<ChangeJson> = changes
        .into_iter()
        .map(|c| ChangeJson {
            path: c.path,
            kind: kind_number(c.kind),
        })
        .collect();
    Ok(Json(changes).into_response())
}

/// `GET /containers/{name}/export`: the whole file system as a tar.
pub(super) async fn export(
    State(state): State<DockerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let container = find(&state, &name).await?;
    let (streams, id) = zone_streams(&state, &container)?;
    let reader = streams
        .export(&id)
        .await
        .map_err(|e| file_error(&name, &container, "/", e))?;
    Ok(tar_response(HeaderMap::new(), reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    #[test]
    fn the_path_stat_header_is_base64_of_dockers_json() {
        let stat = PathStat {
            name: "hostname".to_string(),
            size: 13,
            mode: 0o644,
            mtime: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_500_000_000)
                .expect("a valid time"),
            link_target: String::new(),
        };
        let header = path_stat_header(&stat).expect("encodes");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header.as_bytes())
            .expect("base64");
        let json: serde_json::Value = serde_json::from_slice(&decoded).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "hostname",
                "size": 13,
                "mode": 0o644,
                "mtime": "2023-11-14T22:13:20.5Z",
                "linkTarget": ""
            })
        );
    }

    #[test]
    fn a_symlinks_stat_names_its_target_and_type_bits() {
        let stat = PathStat {
            name: "sh".to_string(),
            size: 7,
            mode: (1 << 27) | 0o777,
            mtime: OffsetDateTime::UNIX_EPOCH,
            link_target: "/bin/busybox".to_string(),
        };
        let header = path_stat_header(&stat).expect("encodes");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header.as_bytes())
            .expect("base64");
        let json: PathStatJson = serde_json::from_slice(&decoded).expect("json");
        assert_eq!(json.link_target, "/bin/busybox");
        assert_eq!(json.mode, 134_218_239);
        assert_eq!(json.mtime, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_missing_path_is_refused_in_dockers_words() {
        let query = ArchiveQuery::default();
        let e = query.path().expect_err("refused");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.message(), "bad parameter: pathcannot be empty");
    }

    #[test]
    fn change_kinds_are_dockers_numbers() {
        assert_eq!(kind_number(ChangeKind::Modified), 0);
        assert_eq!(kind_number(ChangeKind::Added), 1);
        assert_eq!(kind_number(ChangeKind::Deleted), 2);
    }

    #[tokio::test]
    async fn a_tar_body_carries_every_byte_of_the_archive() {
        use http_body_util::BodyExt;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let reader: ByteStream = Box::pin(io::Cursor::new(data.clone()));
        let body = tar_body(reader).collect().await.expect("read").to_bytes();
        assert_eq!(body.as_ref(), data.as_slice());
    }
}
