//! `docker exec`: `POST /containers/{name}/exec` makes an exec instance,
//! `POST /exec/{id}/start` runs it in the container's zone
//! ([`ZoneStreams::exec`](sdc_docker_zones::ZoneStreams::exec)) over a
//! hijacked connection ([`super::hijack`]) or detached, `GET
//! /exec/{id}/json` inspects it and `POST /exec/{id}/resize` sizes its tty.
//!
//! Exec instances are not specs: they live in the memory of the API
//! instance that created them ([`Execs`]), so a client must start and
//! inspect an exec through the same instance (behind a load balancer,
//! sticky connections). The process itself is a child of the node that
//! runs the zone. An instance is forgotten [`KEEP_FINISHED`] after its
//! process exited, or [`KEEP_UNSTARTED`] after its creation if it never
//! started.
//!
//! The exit code is recorded before the stream closes: the CLI inspects the
//! exec as soon as its output ends, and exits with that code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes as BodyBytes;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;
use http::StatusCode;
use sdc_docker_store::model::ContainerState;
use sdc_docker_zones::streams::{ExecSpec, Output, ResizeFn, StdStream};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::attach::tty_size;
use super::hijack::{AtEnd, DetachKeys, Ended, Framing, Stdin, hijack, pump};
use super::{find, zone_streams};
use crate::ApiError;
use crate::docker::{ApiVersion, DockerState};

/// How long an exited exec can still be inspected.
pub const KEEP_FINISHED: Duration = Duration::from_secs(5 * 60);
/// How long an exec that was never started is kept.
pub const KEEP_UNSTARTED: Duration = Duration::from_secs(60 * 60);
/// How long output may go on after the exec'd process exited (children it
/// left behind holding its stdout) before the stream is closed.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// The most JSON an exec body may hold.
const MAX_BODY: usize = 1024 * 1024;

/// The exec instances this API instance created, by id.
#[derive(Default)]
pub struct Execs {
    entries: Mutex<HashMap<String, Arc<Mutex<Exec>>>>,
}

/// One exec instance.
struct Exec {
    /// 64 hex digits.
    id: String,
    /// The container's store name.
    container_name: String,
    /// The container's Docker id.
    container_id: String,
    /// What to run.
    spec: ExecSpec,
    /// The client reads standard output.
    stdout: bool,
    /// The client reads standard error.
    stderr: bool,
    /// As given at creation (empty: the default).
    detach_keys: String,
    /// The tty's size at creation, `[height, width]`.
    console_size: Option<[u16; 2]>,
    /// When it was created.
    created: Instant,
    /// Where it is in its life.
    phase: Phase,
    /// The process's pid on its node, once started.
    pid: i64,
    /// Sets its tty's size, while it runs with one.
    resize: Option<Arc<ResizeFn>>,
}

/// Where an exec is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Made, not started.
    Created,
    /// Started, not yet exited.
    Running,
    /// Exited with this code, at this time.
    Exited(i64, Instant),
}

impl Execs {
    /// No execs.
    pub fn new() -> Arc<Execs> {
        Arc::new(Execs::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Mutex<Exec>>>> {
        // A panic while holding the lock leaves a usable map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `exec`, forgetting those past their keeping time.
    fn insert(&self, exec: Exec) {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, e| {
            let e = lock(e);
            match e.phase {
                Phase::Created => now.duration_since(e.created) < KEEP_UNSTARTED,
                Phase::Running => true,
                Phase::Exited(_, at) => now.duration_since(at) < KEEP_FINISHED,
            }
        });
        entries.insert(exec.id.clone(), Arc::new(Mutex::new(exec)));
    }

    /// The exec `id`, or Docker's 404.
    fn get(&self, id: &str) -> Result<Arc<Mutex<Exec>>, ApiError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }
}

/// Locks one exec (see [`Execs::lock`]).
fn lock(exec: &Mutex<Exec>) -> MutexGuard<'_, Exec> {
    exec.lock().unwrap_or_else(|e| e.into_inner())
}

/// Docker's `ExecConfig`, the body of `POST /containers/{name}/exec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecConfig {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    detach_keys: String,
    tty: bool,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    privileged: bool,
    user: String,
    working_dir: String,
    console_size: Option<[u16; 2]>,
}

/// Docker's `ExecStartCheck`, the body of `POST /exec/{id}/start`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStart {
    detach: bool,
    #[allow(
        dead_code,
        reason = "the exec's own tty decides; the client's copy is only read"
    )]
    tty: bool,
    console_size: Option<[u16; 2]>,
}

/// `{"Id": ...}`.
#[derive(Serialize)]
struct Created {
    #[serde(rename = "Id")]
    id: String,
}

/// A JSON body, Docker's 400 when it does not parse.
fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Makes an exec instance in a running container.
pub(super) async fn create(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    body: BodyBytes,
) -> Result<Response, ApiError> {
    let config: ExecConfig = parse_body(&body)?;
    let cmd = config.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if !config.detach_keys.is_empty() && DetachKeys::parse(&config.detach_keys).is_err() {
        return Err(ApiError::bad_request(format!(
            "Invalid escape keys ({}) provided",
            config.detach_keys
        )));
    }
    let container = find(&state, &name).await?;
    let id = container.docker_id();
    match container.status.state {
        ContainerState::Running => {}
        ContainerState::Paused => {
            return Err(ApiError::conflict(format!(
                "Container {id} is paused, unpause the container before exec"
            )));
        }
        ContainerState::Restarting => {
            return Err(ApiError::conflict(format!(
                "Container {id} is restarting, wait until the container is running"
            )));
        }
        _ => {
            return Err(ApiError::conflict(format!("Container {id} is not running")));
        }
    }
    let exec_id = new_id();
    tracing::info!(container = %container.metadata.name, exec = %exec_id, ?cmd, "exec created");
    state.execs.insert(Exec {
        id: exec_id.clone(),
        container_name: container.metadata.name.clone(),
        container_id: id,
        spec: ExecSpec {
            args: cmd,
            env: config.env.unwrap_or_default(),
            user: config.user,
            workdir: config.working_dir,
            tty: config.tty,
            stdin: config.attach_stdin,
            privileged: config.privileged,
        },
        stdout: config.attach_stdout,
        stderr: config.attach_stderr,
        detach_keys: config.detach_keys,
        console_size: config.console_size,
        created: Instant::now(),
        phase: Phase::Created,
        pid: 0,
        resize: None,
    });
    Ok((StatusCode::CREATED, Json(Created { id: exec_id })).into_response())
}

/// A new exec id: 64 random hex digits.
fn new_id() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts an exec: attached over a hijacked connection, or detached.
pub(super) async fn start(
    State(state): State<DockerState>,
    Path(exec_id): Path<String>,
    axum::Extension(version): axum::Extension<ApiVersion>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let exec = state.execs.get(&exec_id)?;
    // Taken before the body is read (the connection's upgrade is hyper's
    // once the request is consumed); dropped unused when detached.
    let tty = lock(&exec).spec.tty;
    let hijacked = hijack(&mut request, Framing::for_tty(tty).content_type(&version));
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    let check: ExecStart = parse_body(&body)?;
    let (spec, container_name, console_size, tty, detach_keys, stdout, stderr) = {
        let mut e = lock(&exec);
        match e.phase {
            Phase::Created => {}
            Phase::Running => {
                return Err(ApiError::conflict(format!(
                    "Error: Exec command {exec_id} is already running"
                )));
            }
            Phase::Exited(..) => {
                return Err(ApiError::conflict(format!(
                    "Error: Exec command {exec_id} has already run"
                )));
            }
        }
        e.phase = Phase::Running;
        (
            e.spec.clone(),
            e.container_name.clone(),
            check.console_size.or(e.console_size),
            e.spec.tty,
            e.detach_keys.clone(),
            e.stdout,
            e.stderr,
        )
    };
    let spec_stdin = spec.stdin;
    let execs = state.execs.clone();
    let started = async move {
        let container = find(&state, &container_name).await?;
        if container.status.state != ContainerState::Running {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                container.docker_id()
            )));
        }
        let (streams, zone) = zone_streams(&state, &container)?;
        streams
            .exec(&zone, &spec)
            .await
            .map_err(|e| super::zone_error(&container, e))
    };
    let finished = move |code: i64| {
        let mut e = lock(&exec);
        e.phase = Phase::Exited(code, Instant::now());
        e.resize = None;
    };

    if check.detach {
        // Detached: run it with its output read and dropped.
        let process = match started.await {
            Ok(process) => process,
            Err(e) => {
                finished(126);
                return Err(e);
            }
        };
        record_pid(&execs, &exec_id, process.pid);
        resize_at_start(process.resize.as_ref(), console_size);
        let output = process.session.output;
        tokio::spawn(output.for_each(|_| std::future::ready(())));
        let exit = process.exit;
        tokio::spawn(async move {
            let code = exit_code(exit.await, &exec_id);
            finished(code);
        });
        return Ok(StatusCode::OK.into_response());
    }

    let framing = Framing::for_tty(tty);
    let detach = tty.then(|| {
        DetachKeys::parse(&detach_keys)
            .ok()
            .filter(|_| !detach_keys.is_empty())
            .unwrap_or_else(DetachKeys::default_keys)
    });
    let client_future = hijacked.client;
    tokio::spawn(async move {
        let client = match client_future.await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(exec = %exec_id, error = %e, "an exec connection was not handed over");
                finished(126);
                return;
            }
        };
        let process = match started.await {
            Ok(process) => process,
            Err(e) => {
                // Too late for a status: the message goes in the stream, as
                // Docker does, and the exit code says it did not run.
                finished(126);
                let mut out = client.output;
                let mut message = BytesMut::new();
                framing.encode(
                    StdStream::Stderr,
                    format!("{}\r\n", e.message()).as_bytes(),
                    &mut message,
                );
                let _ = out.write_all(&message).await;
                let _ = out.shutdown().await;
                return;
            }
        };
        record_pid(&execs, &exec_id, process.pid);
        resize_at_start(process.resize.as_ref(), console_size);
        if let (Some(resize), Ok(exec)) = (process.resize, execs.get(&exec_id)) {
            let mut e = lock(&exec);
            if e.phase == Phase::Running {
                e.resize = Some(Arc::new(resize));
            }
        }
        let (exit_tx, mut exit_rx) = watch::channel(None::<i64>);
        let exit = process.exit;
        let waiting_id = exec_id.clone();
        tokio::spawn(async move {
            let code = exit_code(exit.await, &waiting_id);
            // Recorded before anyone hears of the exit: the stream closes
            // only after this.
            finished(code);
            let _ = exit_tx.send(Some(code));
        });
        let mut exited = exit_rx.clone();
        let grace = async move {
            if exited.wait_for(Option::is_some).await.is_ok() {
                tokio::time::sleep(OUTPUT_GRACE).await;
            }
        };
        let output: Output = Box::pin(
            process
                .session
                .output
                .filter(move |chunk| {
                    let keep = match chunk {
                        Ok(chunk) => match chunk.stream {
                            StdStream::Stdout => stdout,
                            StdStream::Stderr => stderr,
                        },
                        Err(_) => true,
                    };
                    std::future::ready(keep)
                })
                .take_until(grace),
        );
        let stdin = if spec_stdin {
            Stdin::Forwarded {
                input: process.session.input,
                // Docker closes an exec's stdin at the client's end.
                at_end: AtEnd::of(true, tty),
                detach,
            }
        } else {
            Stdin::Ignored
        };
        let (ended, mut out) = pump(client, stdin, output, framing).await;
        tracing::debug!(exec = %exec_id, ?ended, "exec stream ended");
        if ended == Ended::Output {
            // The exit code first, then the end of the stream.
            let _ = exit_rx.wait_for(Option::is_some).await;
            if let Err(e) = out.shutdown().await {
                tracing::debug!(exec = %exec_id, error = %e, "closing an exec connection");
            }
        }
    });
    Ok(hijacked.response)
}

/// The exit code of an exec'd process; a failure to learn it is logged and
/// counted as 126 (could not run).
fn exit_code(exit: Result<i64, sdc_docker_zones::ZoneError>, id: &str) -> i64 {
    exit.unwrap_or_else(|e| {
        tracing::warn!(exec = %id, error = %e, "waiting for an exec'd process");
        126
    })
}

/// Notes the pid of exec `id`'s process.
fn record_pid(execs: &Execs, id: &str, pid: Option<i64>) {
    if let (Ok(exec), Some(pid)) = (execs.get(id), pid) {
        lock(&exec).pid = pid;
    }
}

/// Sets the tty's size the client asked for at start.
fn resize_at_start(resize: Option<&ResizeFn>, size: Option<[u16; 2]>) {
    if let (Some(resize), Some([height, width])) = (resize, size)
        && height > 0
        && width > 0
        && let Err(e) = resize(height, width)
    {
        tracing::debug!(error = %e, "sizing an exec's tty");
    }
}

/// `POST /exec/{id}/resize?h=&w=`: the size of a running exec's tty.
pub(super) async fn resize(
    State(state): State<DockerState>,
    Path(exec_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let (height, width) = tty_size(&query)?;
    let exec = state.execs.get(&exec_id)?;
    let resize = {
        let e = lock(&exec);
        if e.phase != Phase::Running {
            return Err(ApiError::conflict(format!("Exec {exec_id} is not running")));
        }
        e.resize
            .clone()
            .ok_or_else(|| ApiError::conflict(format!("Exec {exec_id} has no tty to resize")))?
    };
    resize(height, width)
        .map_err(|e| ApiError::internal(format!("resizing exec {exec_id}: {e}")))?;
    Ok(StatusCode::OK.into_response())
}

/// Docker's `ExecInspect`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct ExecInspect {
    #[serde(rename = "ID")]
    id: String,
    running: bool,
    exit_code: Option<i64>,
    process_config: ProcessConfig,
    open_stdin: bool,
    open_stderr: bool,
    open_stdout: bool,
    can_remove: bool,
    #[serde(rename = "ContainerID")]
    container_id: String,
    detach_keys: String,
    pid: i64,
}

/// Docker's `ExecProcessConfig` (lower-case keys, as Docker sends them).
#[derive(Debug, Serialize, PartialEq)]
struct ProcessConfig {
    tty: bool,
    entrypoint: String,
    arguments: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privileged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

impl ExecInspect {
    /// What `GET /exec/{id}/json` says of `e`.
    fn of(e: &Exec) -> ExecInspect {
        let (running, exit_code) = match e.phase {
            Phase::Created => (false, None),
            Phase::Running => (true, None),
            Phase::Exited(code, _) => (false, Some(code)),
        };
        ExecInspect {
            id: e.id.clone(),
            running,
            exit_code,
            process_config: ProcessConfig {
                tty: e.spec.tty,
                entrypoint: e.spec.args.first().cloned().unwrap_or_default(),
                arguments: e.spec.args.iter().skip(1).cloned().collect(),
                privileged: Some(e.spec.privileged),
                user: (!e.spec.user.is_empty()).then(|| e.spec.user.clone()),
            },
            open_stdin: e.spec.stdin,
            open_stderr: e.stderr,
            open_stdout: e.stdout,
            can_remove: false,
            container_id: e.container_id.clone(),
            detach_keys: e.detach_keys.clone(),
            pid: e.pid,
        }
    }
}

/// `GET /exec/{id}/json`.
pub(super) async fn inspect(
    State(state): State<DockerState>,
    Path(exec_id): Path<String>,
) -> Result<Response, ApiError> {
    let exec = state.execs.get(&exec_id)?;
    let inspect = ExecInspect::of(&lock(&exec));
    Ok(Json(inspect).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(phase: Phase) -> Exec {
        Exec {
            id: "e".repeat(64),
            container_name: "web".to_string(),
            container_id: "c".repeat(64),
            spec: ExecSpec {
                args: vec!["sh".to_string(), "-c".to_string(), "exit 5".to_string()],
                tty: true,
                ..ExecSpec::default()
            },
            stdout: true,
            stderr: false,
            detach_keys: String::new(),
            console_size: None,
            created: Instant::now(),
            phase,
            pid: 42,
            resize: None,
        }
    }

    #[test]
    fn an_exec_reports_no_exit_code_until_it_exited() {
        let running = serde_json::to_value(ExecInspect::of(&exec(Phase::Running))).unwrap();
        assert_eq!(running["Running"], true);
        assert!(running["ExitCode"].is_null());
        assert_eq!(running["ProcessConfig"]["entrypoint"], "sh");
        assert_eq!(
            running["ProcessConfig"]["arguments"],
            serde_json::json!(["-c", "exit 5"])
        );
        assert_eq!(running["ID"], "e".repeat(64));
        assert_eq!(running["ContainerID"], "c".repeat(64));
        let exited =
            serde_json::to_value(ExecInspect::of(&exec(Phase::Exited(5, Instant::now())))).unwrap();
        assert_eq!(exited["Running"], false);
        assert_eq!(exited["ExitCode"], 5);
    }

    #[test]
    fn execs_past_their_keeping_time_are_forgotten_when_another_is_made() {
        let execs = Execs::default();
        let mut old = exec(Phase::Exited(
            0,
            Instant::now() - KEEP_FINISHED - Duration::from_secs(1),
        ));
        old.id = "old".to_string();
        execs.insert(old);
        let mut live = exec(Phase::Running);
        live.id = "live".to_string();
        execs.insert(live);
        assert!(execs.get("old").is_err());
        assert!(execs.get("live").is_ok());
        let err = execs.get("nope").err().unwrap();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(err.message(), "No such exec instance: nope");
    }

    #[test]
    fn an_exec_id_is_64_hex_digits() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
    }

    #[test]
    fn an_exec_config_reads_dockers_field_names() {
        let config: ExecConfig = parse_body(
            br#"{"AttachStdin":true,"Tty":true,"Cmd":["ls","-l"],"Env":["A=1"],"WorkingDir":"/tmp","ConsoleSize":[30,100]}"#,
        )
        .unwrap();
        assert!(config.attach_stdin && config.tty);
        assert_eq!(config.cmd.unwrap(), vec!["ls", "-l"]);
        assert_eq!(config.console_size, Some([30, 100]));
        let start: ExecStart = parse_body(b"").unwrap();
        assert!(!start.detach);
    }
}
