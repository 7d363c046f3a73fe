//! Start, stop, kill, restart, wait and remove.
//!
//! Each writes what the user asked into the Container's spec — the desired
//! state and, for what the desired state cannot say (a signal, a stop's
//! timeout, a restart), a one-off [`LifecycleRequest`] stamped with the
//! generation it is written at — and then follows the Container until the
//! node reports it acted on that generation (`status.observedGeneration`).
//! The reply comes from what the node observed: a start that failed answers
//! the runtime's error, as Docker does.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sdc_docker_store::Error as StoreError;
use sdc_docker_store::model::{
    Container, ContainerState, DesiredState, LifecycleRequest, RequestAction,
};
use serde::{Deserialize, Serialize};

use super::{Seen, containers_api, find, update_spec, watch_until};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::query::bool_value;

/// How long a start waits for the node (image pulls on another node
/// included) before answering.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// Beyond a stop's own timeout, how long to wait for the node.
const STOP_MARGIN: Duration = Duration::from_secs(30);

fn is_live(container: &Container) -> bool {
    matches!(
        container.status.state,
        ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
    )
}

/// Writes `desired` and `action` (stamped with the next generation) into
/// the Container `name`; the written Container.
async fn request(
    state: &DockerState,
    name: &str,
    desired: Option<DesiredState>,
    action: RequestAction,
    signal: &str,
    timeout: Option<i64>,
) -> Result<Container, ApiError> {
    let api = containers_api(state);
    update_spec(&api, name, |c| {
        if let Some(desired) = desired {
            c.spec.desired_state = desired;
        }
        c.spec.request = Some(LifecycleRequest {
            action,
            signal: signal.to_owned(),
            timeout,
            // `replace` bumps the generation by one for a changed spec,
            // and the stamp itself always changes it.
            generation: c.metadata.generation + 1,
        });
        Ok(())
    })
    .await
}

/// Follows `written` until the node acted on its generation.
async fn acted(
    state: &DockerState,
    written: &Container,
    deadline: Duration,
    what: &str,
) -> Result<Seen, ApiError> {
    let generation = written.metadata.generation;
    watch_until(
        &containers_api(state),
        &written.metadata.name,
        written.metadata.resource_version,
        Some(deadline),
        what,
        |c| c.status.observed_generation >= generation,
    )
    .await
}

/// The error a failed start answers: the runtime's message; a missing or
/// unrunnable executable is the user's (400), as Docker says.
fn start_failure(message: &str) -> ApiError {
    let user_error = [
        "executable file not found",
        "no such file or directory",
        "permission denied",
        "not a directory",
        "No command specified",
    ]
    .iter()
    .any(|needle| message.contains(needle));
    if user_error {
        ApiError::bad_request(message)
    } else {
        ApiError::internal(message)
    }
}

/// `POST /containers/{name}/start`.
pub(super) async fn start(
    State(state): State<DockerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let container = find(&state, &name).await?;
    match container.status.state {
        ContainerState::Paused => {
            return Err(ApiError::conflict(
                "cannot start a paused container, try unpause instead",
            ));
        }
        ContainerState::Running if container.spec.desired_state == DesiredState::Running => {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
        _ => {}
    }
    let written = request(
        &state,
        &container.metadata.name,
        Some(DesiredState::Running),
        RequestAction::Start,
        "",
        None,
    )
    .await?;
    let after = match acted(&state, &written, START_DEADLINE, "the container to start").await? {
        Seen::Now(c) => Some(c),
        // `--rm` takes a container that could not start away at once.
        Seen::Removed(last) => last,
    };
    if let Some(after) = after
        && !after.status.error.is_empty()
    {
        return Err(start_failure(&after.status.error));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The query of stop and restart.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StopQuery {
    /// Seconds to wait before SIGKILL.
    #[serde(default)]
    t: Option<String>,
    /// The signal to stop with.
    #[serde(default)]
    signal: Option<String>,
}

impl StopQuery {
    fn timeout(&self) -> Result<Option<i64>, ApiError> {
        match self.t.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => t
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for t: {t}"))),
        }
    }

    fn signal(&self) -> Result<String, ApiError> {
        let signal = self.signal.clone().unwrap_or_default();
        if !signal.is_empty() {
            sdc_docker_zones::signal::parse(&signal)
                .map_err(|_| ApiError::bad_request(format!("Invalid signal: {signal}")))?;
        }
        Ok(signal)
    }
}

/// How long to wait for a stop with `timeout` seconds (`-1`: forever).
fn stop_deadline(container: &Container, timeout: Option<i64>) -> Duration {
    let seconds = timeout.or(container.spec.stop_timeout).unwrap_or(10);
    if seconds < 0 {
        Duration::from_secs(u64::from(u32::MAX))
    } else {
        Duration::from_secs(seconds.unsigned_abs()) + STOP_MARGIN
    }
}

/// `POST /containers/{name}/stop`.
pub(super) async fn stop(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<StopQuery>,
) -> Result<Response, ApiError> {
    let timeout = query.timeout()?;
    let signal = query.signal()?;
    let container = find(&state, &name).await?;
    if !is_live(&container) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let written = request(
        &state,
        &container.metadata.name,
        Some(DesiredState::Stopped),
        RequestAction::Stop,
        &signal,
        timeout,
    )
    .await?;
    acted(
        &state,
        &written,
        stop_deadline(&container, timeout),
        "the container to stop",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The query of kill.
#[derive(Debug, Default, Deserialize)]
pub(super) struct KillQuery {
    #[serde(default)]
    signal: Option<String>,
}

/// `POST /containers/{name}/kill`.
pub(super) async fn kill(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<KillQuery>,
) -> Result<Response, ApiError> {
    let raw = query
        .signal
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "SIGKILL".to_owned());
    let number = sdc_docker_zones::signal::parse(&raw)
        .map_err(|_| ApiError::bad_request(format!("Invalid signal: {raw}")))?;
    let container = find(&state, &name).await?;
    if !matches!(
        container.status.state,
        ContainerState::Running | ContainerState::Paused
    ) {
        return Err(ApiError::conflict(format!(
            "cannot kill container: {name}: container {} is not running",
            container.docker_id()
        )));
    }
    // Docker: SIGKILL, or the container's own stop signal, ends the
    // process for good — the restart policy does not bring it back.
    let stop_signal = if container.spec.stop_signal.is_empty() {
        "SIGTERM"
    } else {
        container.spec.stop_signal.as_str()
    };
    let ends = number == 9 || sdc_docker_zones::signal::parse(stop_signal).ok() == Some(number);
    let written = request(
        &state,
        &container.metadata.name,
        ends.then_some(DesiredState::Stopped),
        RequestAction::Kill,
        &sdc_docker_zones::signal::name(number),
        None,
    )
    .await?;
    acted(&state, &written, STOP_MARGIN, "the signal to be sent").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{name}/restart`.
pub(super) async fn restart(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<StopQuery>,
) -> Result<Response, ApiError> {
    let timeout = query.timeout()?;
    let signal = query.signal()?;
    let container = find(&state, &name).await?;
    let written = request(
        &state,
        &container.metadata.name,
        Some(DesiredState::Running),
        RequestAction::Restart,
        &signal,
        timeout,
    )
    .await?;
    let deadline = stop_deadline(&container, timeout) + START_DEADLINE;
    if let Seen::Now(after) = acted(&state, &written, deadline, "the container to restart").await?
        && !after.status.error.is_empty()
    {
        return Err(start_failure(&after.status.error));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The query of wait.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WaitQuery {
    #[serde(default)]
    condition: Option<String>,
}

/// Docker's wait answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitResponse {
    /// The exit code.
    pub status_code: i64,
    /// Why waiting failed, if it did.
    pub error: Option<WaitError>,
}

/// Docker's wait error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitError {
    /// What went wrong.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    NotRunning,
    NextExit,
    Removed,
}

/// `POST /containers/{name}/wait`: the headers go at once (`docker run`
/// waits for them before it starts the container), the exit code when the
/// condition is met.
pub(super) async fn wait(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    let condition = match query.condition.as_deref().unwrap_or("") {
        "" | "not-running" => Condition::NotRunning,
        "next-exit" => Condition::NextExit,
        "removed" => Condition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: \"{other}\""
            )));
        }
    };
    let container = find(&state, &name).await?;
    let api = containers_api(&state);
    let from = container.metadata.resource_version;
    let first_finish = container.status.finished_at;
    let first_exit_count = container.status.restart_count;
    if condition == Condition::NotRunning && !is_live(&container) {
        return Ok(wait_reply(futures::future::ready(Ok(container
            .status
            .exit_code))));
    }
    let name = container.metadata.name.clone();
    let outcome = async move {
        let seen = watch_until(&api, &name, from, None, "the container to exit", |c| {
            let exited = !is_live(c) && c.status.state != ContainerState::Created;
            let new_exit =
                c.status.finished_at != first_finish || c.status.restart_count != first_exit_count;
            match condition {
                Condition::NotRunning => !is_live(c),
                Condition::NextExit => exited && new_exit,
                Condition::Removed => false,
            }
        })
        .await?;
        Ok(match seen {
            Seen::Now(c) => c.status.exit_code,
            Seen::Removed(last) => last.map_or(0, |c| c.status.exit_code),
        })
    };
    Ok(wait_reply(outcome))
}

/// A 200 whose headers are sent now and whose body is Docker's wait answer
/// once `outcome` resolves.
fn wait_reply(
    outcome: impl std::future::Future<Output = Result<i64, ApiError>> + Send + 'static,
) -> Response {
    let body = futures::stream::once(async move {
        let reply = match outcome.await {
            Ok(code) => WaitResponse {
                status_code: code,
                error: None,
            },
            Err(e) => WaitResponse {
                status_code: -1,
                error: Some(WaitError {
                    message: e.message().to_owned(),
                }),
            },
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The query of remove.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RemoveQuery {
    #[serde(default)]
    force: Option<String>,
    #[serde(default)]
    v: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

/// `DELETE /containers/{name}`.
pub(super) async fn remove(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> Result<Response, ApiError> {
    let force = bool_value(query.force.as_deref());
    // Anonymous volumes go with their container (`v`): there are none yet.
    let _volumes = bool_value(query.v.as_deref());
    if bool_value(query.link.as_deref()) {
        return Err(ApiError::bad_request(
            "--link is not supported by sdc-docker",
        ));
    }
    let api = containers_api(&state);
    let mut attempts = 0;
    let container = loop {
        attempts += 1;
        let container = find(&state, &name).await?;
        if is_live(&container) && !force {
            let why = if container.status.state == ContainerState::Paused {
                "container is paused and must be unpaused first"
            } else {
                "container is running: stop the container before removing or force remove"
            };
            return Err(ApiError::conflict(format!(
                "cannot remove container \"/{}\": {why}",
                container.metadata.name
            )));
        }
        // Guarded by the revision read, so a container started meanwhile
        // is not removed without force; a status write in between (the
        // node reporting) only means looking again.
        let expected = (!force).then_some(container.metadata.resource_version);
        match api.delete(&container.metadata.name, expected).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => break container,
            Err(StoreError::Conflict { .. }) if attempts < 20 => continue,
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(container = %container.metadata.name, force, "container removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_executable_is_the_users_error_and_anything_else_the_servers() {
        assert_eq!(
            start_failure("exec: \"nope\": executable file not found in $PATH").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            start_failure("cgroup trouble").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

/// The query of prune.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PruneQuery {
    #[serde(default)]
    filters: Option<String>,
}

/// Docker's prune answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneResponse {
    /// The ids removed.
    pub containers_deleted: Vec<String>,
    /// Bytes freed (the containers' writable layers live on their nodes;
    /// not counted).
    pub space_reclaimed: u64,
}

/// Go's duration syntax as `docker container prune --filter until=24h`
/// sends it (`1h30m`, `90s`, `1.5h`); `None` when it is not one.
fn go_duration(raw: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = raw;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The `until` of a prune as a time: a duration back from now, or an
/// absolute time as the events endpoint reads them.
fn prune_until(raw: &str) -> Result<time::OffsetDateTime, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    if let Some(ago) = go_duration(raw) {
        return Ok(now - ago);
    }
    match crate::docker::events::parse_time(raw)? {
        Some(nanos) => time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .map_err(|_| ApiError::bad_request(format!("invalid until: {raw}"))),
        None => Ok(now),
    }
}

/// `POST /containers/prune`: removes every container that is not running
/// (filters `until`, `label`, `label!`).
pub(super) async fn prune(
    State(state): State<DockerState>,
    Query(query): Query<PruneQuery>,
) -> Result<axum::Json<PruneResponse>, ApiError> {
    let filters = crate::docker::filters::Filters::parse(
        query.filters.as_deref(),
        &["until", "label", "label!"],
    )?;
    let until = match filters.get("until") {
        [] => None,
        [one] => Some(prune_until(one)?),
        _ => {
            return Err(ApiError::bad_request(
                "more than one until filter specified",
            ));
        }
    };
    let mut negated = crate::docker::filters::Filters::default();
    for label in filters.get("label!") {
        negated.add("label", label.clone());
    }
    let api = containers_api(&state);
    let mut deleted = Vec::new();
    for container in api.list().await?.items {
        let old_enough = until.is_none_or(|until| {
            container
                .metadata
                .creation_timestamp
                .is_some_and(|created| created < until)
        });
        let labels = &container.spec.labels;
        let excluded = !filters.get("label!").is_empty() && negated.labels_match(labels);
        if is_live(&container) || !old_enough || !filters.labels_match(labels) || excluded {
            continue;
        }
        // Guarded by the revision read: one started meanwhile stays.
        match api
            .delete(
                &container.metadata.name,
                Some(container.metadata.resource_version),
            )
            .await
        {
            Ok(_) => deleted.push(container.docker_id()),
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(removed = deleted.len(), "containers pruned");
    Ok(axum::Json(PruneResponse {
        containers_deleted: deleted,
        space_reclaimed: 0,
    }))
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    #[test]
    fn go_durations_are_read_as_the_cli_sends_them() {
        assert_eq!(go_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration("2023-01-01"), None);
    }
}
