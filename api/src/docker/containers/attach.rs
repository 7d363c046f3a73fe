//! `POST /containers/{name}/attach` and `/resize`: a client connected to a
//! container's main process, over a hijacked connection ([`super::hijack`]).
//!
//! Attach works before the container runs: `docker run` and `docker start
//! -a` attach first, then start. Such an attach holds its connection and
//! follows the container in the store until its next run began (or the
//! start failed, or it was removed). A process may write before any client
//! could connect to it (`echo hi` is over in a millisecond), and the zone's
//! monitor hands a client only what is written after it connected; so an
//! attach that waited for the start reads the output of this run from the
//! zone's log, from the run's start on, following it until the process
//! exits (input, if asked, still goes to the process directly). That needs
//! a log (not the `none` driver), and is not done for a terminal session
//! (`-it`): its output must come as it is written (a prompt has no
//! newline, and the log holds partial lines back), so it is attached live,
//! and what the process wrote before the connection is only recovered when
//! the process already ended (from the log).
//!
//! An attach to a running container is live from now on, after the log so
//! far when `logs=1`. Detach keys (default ctrl-p ctrl-q) apply to a tty
//! client: typing them closes the connection and leaves the process alone.

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::StatusCode;
use sdc_docker_store::model::{Container, ContainerState};
use sdc_docker_zones::streams::{AttachOptions, LogOptions, Output, OutputChunk, Session};
use tokio::io::AsyncWriteExt;

use super::hijack::{
    AtEnd, Client, DetachKeys, Ended, Framing, Stdin, bad_detach_keys, hijack, last, pump,
};
use super::{Seen, containers_api, find, watch_until, zone_error, zone_streams};
use crate::ApiError;
use crate::docker::query::bool_value;
use crate::docker::{ApiVersion, DockerState};

/// What an attach client asked for.
#[derive(Clone, Copy, Debug)]
struct Wanted {
    /// Live output (and input) rather than only the log so far.
    stream: bool,
    /// The log so far first.
    logs: bool,
    /// Its input goes to the process.
    stdin: bool,
    /// It reads standard output.
    stdout: bool,
    /// It reads standard error.
    stderr: bool,
}

impl Wanted {
    /// Whether any output is wanted.
    fn output(self) -> bool {
        self.stdout || self.stderr
    }

    /// The log entries of the wanted streams.
    fn log(self, since: Option<time::OffsetDateTime>, follow: bool) -> LogOptions {
        LogOptions {
            stdout: self.stdout,
            stderr: self.stderr,
            since,
            until: None,
            tail: None,
            follow,
        }
    }
}

/// Attaches a client to a container's process.
pub(super) async fn attach(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    axum::Extension(version): axum::Extension<ApiVersion>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let wanted = Wanted {
        stream: bool_value(last(&query, "stream")),
        logs: bool_value(last(&query, "logs")),
        stdin: bool_value(last(&query, "stdin")),
        stdout: bool_value(last(&query, "stdout")),
        stderr: bool_value(last(&query, "stderr")),
    };
    let container = find(&state, &name).await?;
    match container.status.state {
        ContainerState::Paused => {
            return Err(ApiError::conflict(
                "You cannot attach to a paused container, unpause it first",
            ));
        }
        ContainerState::Restarting => {
            return Err(ApiError::conflict(
                "You cannot attach to a restarting container, wait until it is running",
            ));
        }
        _ => {}
    }
    let keys = match last(&query, "detachKeys").filter(|k| !k.is_empty()) {
        Some(keys) => Some(DetachKeys::parse(keys).map_err(|_| bad_detach_keys(keys))?),
        None => None,
    };
    let detach = container
        .spec
        .tty
        .then(|| keys.unwrap_or_else(DetachKeys::default_keys));
    let framing = Framing::for_tty(container.spec.tty);
    let hijack = hijack(&mut request, framing.content_type(&version));
    tokio::spawn(async move {
        let client = match hijack.client.await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(error = %e, "an attach connection was not handed over");
                return;
            }
        };
        serve(state, container, wanted, client, framing, detach).await;
    });
    Ok(hijack.response)
}

/// Runs one attach session on its hijacked connection.
async fn serve(
    state: DockerState,
    mut container: Container,
    wanted: Wanted,
    client: Client,
    framing: Framing,
    detach: Option<DetachKeys>,
) {
    let name = container.metadata.name.clone();
    let waited = wanted.stream && container.status.state != ContainerState::Running;
    if waited {
        match next_run(&state, &container).await {
            Some(run) => container = run,
            None => return finish(client, &name).await,
        }
    }
    let (streams, id) = match zone_streams(&state, &container) {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(container = %name, error = e.message(), "cannot attach");
            return finish(client, &name).await;
        }
    };
    let keeps_log = container.spec.log_config.driver() != "none";
    let started_at = container.status.started_at;

    // Only the log so far.
    if !wanted.stream {
        if wanted.logs && keeps_log && wanted.output() {
            match streams.logs(&id, wanted.log(None, false)).await {
                Ok(log) => {
                    return run(client, Stdin::Ignored, log_output(log), framing, &name).await;
                }
                Err(e) => tracing::debug!(container = %name, error = %e, "reading the log"),
            }
        }
        return finish(client, &name).await;
    }

    // This run's output from its log, input straight to the process (not
    // for a terminal session, whose output must come as it is written).
    if waited && keeps_log && wanted.output() && !(container.spec.tty && wanted.stdin) {
        let since = if wanted.logs { None } else { started_at };
        let log = match streams.logs(&id, wanted.log(since, true)).await {
            Ok(log) => log,
            Err(e) => {
                tracing::debug!(container = %name, error = %e, "following the log");
                return finish(client, &name).await;
            }
        };
        let mut input_session = None;
        if wanted.stdin {
            let options = AttachOptions {
                stdin: true,
                stdout: false,
                stderr: false,
                stdin_once: container.spec.stdin_once,
            };
            match streams.attach(&id, options).await {
                Ok(session) => input_session = Some(session),
                // Over already: the log has all there is.
                Err(e) => tracing::debug!(container = %name, error = %e, "attaching stdin"),
            }
        }
        let (input, _keep) = match input_session {
            Some(Session { input, output }) => (input, Some(output)),
            None => (None, None),
        };
        let stdin = if wanted.stdin {
            Stdin::Forwarded {
                input,
                at_end: AtEnd::of(container.spec.stdin_once, false),
                detach: None,
            }
        } else {
            Stdin::Ignored
        };
        return run(client, stdin, log_output(log), framing, &name).await;
    }

    // Live, after the log so far when asked.
    let options = AttachOptions {
        stdin: wanted.stdin,
        stdout: wanted.stdout,
        stderr: wanted.stderr,
        stdin_once: container.spec.stdin_once,
    };
    let session = match streams.attach(&id, options).await {
        Ok(session) => session,
        Err(e) => {
            tracing::debug!(container = %name, error = %e, "attaching");
            // The process ended before the connection: what it wrote this
            // run is in the log.
            if waited && keeps_log && wanted.output() {
                let since = if wanted.logs { None } else { started_at };
                if let Ok(log) = streams.logs(&id, wanted.log(since, false)).await {
                    return run(client, Stdin::Ignored, log_output(log), framing, &name).await;
                }
            }
            return finish(client, &name).await;
        }
    };
    let output: Output = if wanted.logs && keeps_log && wanted.output() {
        match streams.logs(&id, wanted.log(None, false)).await {
            Ok(log) => Box::pin(log_output(log).chain(session.output)),
            Err(e) => {
                tracing::debug!(container = %name, error = %e, "reading the log");
                session.output
            }
        }
    } else {
        session.output
    };
    let stdin = if wanted.stdin {
        Stdin::Forwarded {
            input: session.input,
            at_end: AtEnd::of(container.spec.stdin_once, container.spec.tty),
            detach,
        }
    } else {
        Stdin::Ignored
    };
    run(client, stdin, output, framing, &name).await;
}

/// The container's next run, once it began: followed in the store from
/// `container` until a start changed its start time (or made it run), or
/// failed; `None` when it will not run (a failed start, removed unrun).
async fn next_run(state: &DockerState, container: &Container) -> Option<Container> {
    let name = &container.metadata.name;
    let before = container.status.started_at;
    let generation = container.status.observed_generation;
    let began = move |c: &Container| {
        c.status.state == ContainerState::Running || c.status.started_at != before
    };
    let seen = watch_until(
        &containers_api(state),
        name,
        container.metadata.resource_version,
        None,
        "the container to start",
        |c| {
            began(c)
                || c.status.state == ContainerState::Dead
                || (c.status.observed_generation > generation && !c.status.error.is_empty())
        },
    )
    .await;
    match seen {
        Ok(Seen::Now(c)) if began(&c) => Some(*c),
        // Ran and was removed (`--rm`): its log may still be there.
        Ok(Seen::Removed(Some(c))) if began(&c) => Some(*c),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(container = %name, error = e.message(), "waiting for a container to start");
            None
        }
    }
}

/// Log entries as output chunks.
fn log_output(log: sdc_docker_zones::streams::LogStream) -> Output {
    Box::pin(log.map(|entry| {
        entry.map(|entry| OutputChunk {
            stream: entry.stream,
            data: entry.data,
        })
    }))
}

/// Pumps one session and closes the connection.
async fn run(client: Client, stdin: Stdin, output: Output, framing: Framing, name: &str) {
    let (ended, mut out) = pump(client, stdin, output, framing).await;
    tracing::debug!(container = %name, ?ended, "attach ended");
    if ended != Ended::ClientGone
        && let Err(e) = out.shutdown().await
    {
        tracing::debug!(container = %name, error = %e, "closing an attach connection");
    }
}

/// Closes a connection that gets no output.
async fn finish(client: Client, name: &str) {
    let mut output = client.output;
    if let Err(e) = output.shutdown().await {
        tracing::debug!(container = %name, error = %e, "closing an attach connection");
    }
}

/// `POST /containers/{name}/resize?h=&w=`: the size of the container's tty.
pub(super) async fn resize(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let (height, width) = tty_size(&query)?;
    let container = find(&state, &name).await?;
    if container.status.state != ContainerState::Running {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            container.docker_id()
        )));
    }
    let (streams, id) = zone_streams(&state, &container)?;
    streams
        .resize(&id, height, width)
        .await
        .map_err(|e| zone_error(&container, e))?;
    Ok(StatusCode::OK.into_response())
}

/// The `h` and `w` of a resize: 400 unless both are numbers.
pub(super) fn tty_size(query: &[(String, String)]) -> Result<(u16, u16), ApiError> {
    let number = |key: &str| -> Result<u16, ApiError> {
        let value = last(query, key).unwrap_or_default();
        value.trim().parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid value for {key}: {value:?}: expected a number from 0 to 65535"
            ))
        })
    };
    Ok((number("h")?, number("w")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_resize_needs_two_numbers() {
        assert_eq!(
            tty_size(&query(&[("h", "24"), ("w", "80")])).ok(),
            Some((24, 80))
        );
        let err = tty_size(&query(&[("h", "x"), ("w", "80")])).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(tty_size(&query(&[("h", "24")])).is_err());
        assert!(tty_size(&query(&[("h", "-1"), ("w", "80")])).is_err());
    }
}
