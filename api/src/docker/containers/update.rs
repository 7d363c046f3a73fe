//! `docker update`, `docker pause` and `docker unpause`.
//!
//! Update changes what the spec holds and the node can honour: the restart
//! policy, and memory while the container waits for placement. A container
//! is sized by its package (memory, CPU shares, disk), chosen once when it
//! is placed, and its zone is built to that size; nothing resizes a zone
//! afterwards. So a memory change after placement, and a CPU shares change
//! ever (the package's shares always win), are refused with the reason
//! rather than stored where they would change nothing. Every other
//! resource Docker can update is refused by name.
//!
//! Pause and unpause write the desired state and follow the Container until
//! the node reports it acted on that generation, as start and stop do.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use sdc_docker_store::model::{
    Container, ContainerState, DesiredState, RestartPolicy, RestartPolicyName,
};
use serde::{Deserialize, Serialize};

use super::labels::PACKAGE as PACKAGE_LABEL;
use super::{Seen, containers_api, find, update_spec, watch_until};
use crate::ApiError;
use crate::docker::DockerState;

/// How long pause and unpause wait for the node.
const PAUSE_DEADLINE: Duration = Duration::from_secs(30);

/// Docker's smallest memory limit (`linuxMinMemory`).
const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;

/// Docker's `UpdateConfig`: `Resources` (flattened) and `RestartPolicy`.
/// Only the fields sdc-docker can update are typed; the rest are kept to be
/// refused when set.
#[derive(Debug, Default, Deserialize)]
struct UpdateBody {
    #[serde(rename = "Memory", default)]
    memory: Option<i64>,
    #[serde(rename = "CpuShares", default)]
    cpu_shares: Option<i64>,
    #[serde(rename = "RestartPolicy", default)]
    restart_policy: Option<RestartPolicyBody>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// Docker's `RestartPolicy` as sent.
#[derive(Debug, Default, Deserialize)]
struct RestartPolicyBody {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "MaximumRetryCount", default)]
    maximum_retry_count: Option<i64>,
}

/// What an update asks, validated.
#[derive(Debug, Default, PartialEq, Eq)]
struct Update {
    /// A new memory limit, bytes.
    memory: Option<i64>,
    /// A new restart policy.
    restart_policy: Option<RestartPolicy>,
}

/// Docker's answer to an update.
#[derive(Debug, Serialize)]
struct UpdateResponse {
    #[serde(rename = "Warnings")]
    warnings: Vec<String>,
}

/// Whether a JSON value is Go's zero value (what the CLI sends for a flag
/// not given).
pub(super) fn is_zero(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

/// Validates a restart policy the way moby's `ValidateRestartPolicy` does;
/// `None` for an empty name (no change).
fn restart_policy(body: &RestartPolicyBody) -> Result<Option<RestartPolicy>, ApiError> {
    validate_restart_policy(
        body.name.as_deref().unwrap_or(""),
        body.maximum_retry_count.unwrap_or(0),
    )
}

/// Validates a restart policy's name and retry count the way moby's
/// `ValidateRestartPolicy` does (create and update share it); `None` for an
/// empty name.
pub(super) fn validate_restart_policy(
    name: &str,
    count: i64,
) -> Result<Option<RestartPolicy>, ApiError> {
    let name = match name {
        // An empty name with any count: no change (older clients send it).
        "" => return Ok(None),
        "no" => RestartPolicyName::No,
        "always" => RestartPolicyName::Always,
        "unless-stopped" => RestartPolicyName::UnlessStopped,
        "on-failure" => RestartPolicyName::OnFailure,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )));
        }
    };
    match name {
        RestartPolicyName::OnFailure if count < 0 => Err(ApiError::bad_request(
            "invalid restart policy: maximum retry count cannot be negative",
        )),
        RestartPolicyName::OnFailure => Ok(Some(RestartPolicy {
            name,
            maximum_retry_count: count,
        })),
        _ if count != 0 => {
            let mut message =
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                    .to_string();
            if count < 0 {
                message.push_str(" and cannot be negative");
            }
            Err(ApiError::bad_request(message))
        }
        _ => Ok(Some(RestartPolicy {
            name,
            maximum_retry_count: 0,
        })),
    }
}

/// Parses and validates an update body, independently of any container.
fn parse_update(body: &[u8]) -> Result<Update, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    let body: UpdateBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    if let Some((field, _)) = body.other.iter().find(|(_, v)| !is_zero(v)) {
        return Err(ApiError::bad_request(format!(
            "sdc-docker does not support updating {field}"
        )));
    }
    if body.cpu_shares.is_some_and(|shares| shares != 0) {
        return Err(ApiError::bad_request(
            "sdc-docker does not support updating CpuShares: a container's CPU shares are those of its package",
        ));
    }
    let memory = body.memory.filter(|m| *m != 0);
    if memory.is_some_and(|m| m < MIN_MEMORY_BYTES) {
        return Err(ApiError::bad_request("Minimum memory limit allowed is 6MB"));
    }
    let restart_policy = match &body.restart_policy {
        Some(policy) => restart_policy(policy)?,
        None => None,
    };
    Ok(Update {
        memory,
        restart_policy,
    })
}

/// Applies a validated update to `container`'s spec, or refuses it for this
/// container with Docker's `Cannot update container ID: …`.
fn apply(container: &mut Container, update: &Update) -> Result<(), ApiError> {
    let id = container.docker_id();
    let cannot = |status: fn(String) -> ApiError, why: String| {
        status(format!("Cannot update container {id}: {why}"))
    };
    if matches!(
        container.status.state,
        ContainerState::Removing | ContainerState::Dead
    ) || container.metadata.deletion_timestamp.is_some()
    {
        return Err(cannot(
            ApiError::conflict,
            "container is marked for removal and cannot be \"update\"".to_string(),
        ));
    }
    if let Some(memory) = update.memory
        && memory != container.spec.memory
    {
        if !container.status.package.is_empty() {
            return Err(cannot(
                ApiError::bad_request,
                format!(
                    "its memory is that of package {}, chosen when it was placed, and sdc-docker does not resize a placed container; create a new container with -m instead",
                    container.status.package
                ),
            ));
        }
        if container.spec.labels.contains_key(PACKAGE_LABEL) || !container.spec.package.is_empty() {
            return Err(cannot(
                ApiError::bad_request,
                format!(
                    "its package is named by the {PACKAGE_LABEL} label, which decides its memory"
                ),
            ));
        }
        // Not placed yet: placement will choose the package from this.
        container.spec.memory = memory;
    }
    if let Some(policy) = &update.restart_policy {
        if container.spec.auto_remove && policy.name != RestartPolicyName::No {
            return Err(cannot(
                ApiError::conflict,
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .to_string(),
            ));
        }
        container.spec.restart_policy = policy.clone();
    }
    Ok(())
}

/// `POST /containers/{name}/update`.
pub(super) async fn update(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let update = parse_update(&body)?;
    let container = find(&state, &name).await?;
    let api = containers_api(&state);
    let written = update_spec(&api, &container.metadata.name, |c| apply(c, &update)).await?;
    tracing::info!(
        container = %written.metadata.name,
        memory = ?update.memory,
        restart_policy = ?update.restart_policy,
        "container updated"
    );
    Ok(Json(UpdateResponse {
        warnings: Vec::new(),
    })
    .into_response())
}

/// Whether `container` is paused or about to be.
fn is_paused(container: &Container) -> bool {
    container.status.state == ContainerState::Paused
        || container.spec.desired_state == DesiredState::Paused
}

/// Docker's refusals of a pause.
fn check_pause(container: &Container) -> Result<(), ApiError> {
    let id = container.docker_id();
    if is_paused(container) {
        return Err(ApiError::conflict(format!(
            "Container {id} is already paused"
        )));
    }
    match container.status.state {
        ContainerState::Restarting => Err(ApiError::conflict(format!(
            "Container {id} is restarting, wait until the container is running"
        ))),
        ContainerState::Running if container.spec.desired_state == DesiredState::Running => Ok(()),
        _ => Err(ApiError::conflict(format!("container {id} is not running"))),
    }
}

/// Docker's refusal of an unpause.
fn check_unpause(container: &Container) -> Result<(), ApiError> {
    if is_paused(container) {
        Ok(())
    } else {
        Err(ApiError::conflict(format!(
            "Container {} is not paused",
            container.docker_id()
        )))
    }
}

/// Writes `desired` after `check` (again on every write attempt, so a
/// concurrent change is checked too), then waits until the node acted on
/// it and reports `expected`.
async fn set_paused(
    state: &DockerState,
    name: &str,
    check: fn(&Container) -> Result<(), ApiError>,
    desired: DesiredState,
    expected: ContainerState,
) -> Result<Response, ApiError> {
    let container = find(state, name).await?;
    check(&container)?;
    let api = containers_api(state);
    let written = update_spec(&api, &container.metadata.name, |c| {
        check(c)?;
        c.spec.desired_state = desired;
        Ok(())
    })
    .await?;
    let generation = written.metadata.generation;
    let what = match desired {
        DesiredState::Paused => "the container to pause",
        _ => "the container to unpause",
    };
    let seen = watch_until(
        &api,
        &written.metadata.name,
        written.metadata.resource_version,
        Some(PAUSE_DEADLINE),
        what,
        |c| c.status.observed_generation >= generation,
    )
    .await?;
    match seen {
        Seen::Now(c) if c.status.state == expected => Ok(StatusCode::NO_CONTENT.into_response()),
        Seen::Now(c) if !c.status.error.is_empty() => Err(ApiError::internal(format!(
            "Cannot {} container {}: {}",
            if desired == DesiredState::Paused {
                "pause"
            } else {
                "unpause"
            },
            c.docker_id(),
            c.status.error
        ))),
        // It exited meanwhile.
        Seen::Now(c) => Err(ApiError::conflict(format!(
            "container {} is not running",
            c.docker_id()
        ))),
        Seen::Removed(_) => Err(super::no_such_container(name)),
    }
}

/// `POST /containers/{name}/pause`: freezes every process of the container.
pub(super) async fn pause(
    State(state): State<DockerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(
        &state,
        &name,
        check_pause,
        DesiredState::Paused,
        ContainerState::Paused,
    )
    .await
}

/// `POST /containers/{name}/unpause`.
pub(super) async fn unpause(
    State(state): State<DockerState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(
        &state,
        &name,
        check_unpause,
        DesiredState::Running,
        ContainerState::Running,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Result<Update, ApiError> {
        parse_update(body.as_bytes())
    }

    fn message(body: &str) -> String {
        match parsed(body) {
            Ok(update) => panic!("{body} was accepted: {update:?}"),
            Err(e) => e.message().to_string(),
        }
    }

    /// What the docker CLI 28 sends for `docker update --restart always`:
    /// every resource at its zero value.
    const CLI_RESTART_ALWAYS: &str = r#"{"BlkioWeight":0,"BlkioWeightDevice":null,"BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"BlkioDeviceReadIOps":null,"BlkioDeviceWriteIOps":null,"CpuShares":0,"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","CgroupParent":"","Devices":null,"DeviceCgroupRules":null,"DeviceRequests":null,"KernelMemory":0,"KernelMemoryTCP":0,"Memory":0,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"NanoCpus":0,"OomKillDisable":null,"PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"RestartPolicy":{"Name":"always","MaximumRetryCount":0}}"#;

    #[test]
    fn the_clis_restart_update_asks_only_for_the_policy() {
        let update = parsed(CLI_RESTART_ALWAYS).expect("accepted");
        assert_eq!(
            update,
            Update {
                memory: None,
                restart_policy: Some(RestartPolicy {
                    name: RestartPolicyName::Always,
                    maximum_retry_count: 0
                }),
            }
        );
    }

    #[test]
    fn on_failure_keeps_its_retry_count() {
        let update = parsed(r#"{"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}"#)
            .expect("accepted");
        assert_eq!(
            update.restart_policy,
            Some(RestartPolicy {
                name: RestartPolicyName::OnFailure,
                maximum_retry_count: 3
            })
        );
    }

    #[test]
    fn an_empty_policy_name_changes_nothing() {
        let update =
            parsed(r#"{"RestartPolicy":{"Name":"","MaximumRetryCount":5}}"#).expect("accepted");
        assert_eq!(update, Update::default());
    }

    #[test]
    fn restart_policies_are_refused_in_dockers_words() {
        assert_eq!(
            message(r#"{"RestartPolicy":{"Name":"sometimes"}}"#),
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        );
        assert_eq!(
            message(r#"{"RestartPolicy":{"Name":"always","MaximumRetryCount":2}}"#),
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        );
        assert_eq!(
            message(r#"{"RestartPolicy":{"Name":"no","MaximumRetryCount":-1}}"#),
            "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"
        );
        assert_eq!(
            message(r#"{"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":-2}}"#),
            "invalid restart policy: maximum retry count cannot be negative"
        );
    }

    #[test]
    fn resources_sdc_docker_cannot_change_are_refused_by_name() {
        assert_eq!(
            message(r#"{"CpuQuota":50000}"#),
            "sdc-docker does not support updating CpuQuota"
        );
        assert_eq!(
            message(r#"{"PidsLimit":100}"#),
            "sdc-docker does not support updating PidsLimit"
        );
        assert_eq!(
            message(r#"{"CpusetCpus":"0-1"}"#),
            "sdc-docker does not support updating CpusetCpus"
        );
        assert!(message(r#"{"CpuShares":512}"#).contains("CpuShares"));
    }

    #[test]
    fn memory_below_dockers_minimum_is_refused() {
        assert_eq!(
            message(r#"{"Memory":1024}"#),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            parsed(r#"{"Memory":268435456}"#).map(|u| u.memory),
            Ok(Some(268_435_456))
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused() {
        assert_eq!(
            parsed("").map_err(|e| e.status()),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parsed("{\"Memory\": \"lots\"}").map_err(|e| e.status()),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    fn container() -> Container {
        use sdc_docker_store::model::{ContainerSpec, Resource};
        Container::new(
            "web",
            ContainerSpec {
                id: "ab".repeat(32),
                ..ContainerSpec::default()
            },
        )
    }

    #[test]
    fn a_placed_containers_memory_cannot_change() {
        let mut c = container();
        c.status.package = "sample-1G".into();
        let update = Update {
            memory: Some(512 << 20),
            restart_policy: None,
        };
        let e = apply(&mut c, &update).expect_err("refused");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains("sample-1G"), "{e}");
        assert_eq!(c.spec.memory, 0);
    }

    #[test]
    fn an_unplaced_containers_memory_is_what_placement_will_read() {
        let mut c = container();
        let update = Update {
            memory: Some(512 << 20),
            restart_policy: None,
        };
        apply(&mut c, &update).expect("applied");
        assert_eq!(c.spec.memory, 512 << 20);
    }

    #[test]
    fn an_auto_remove_container_keeps_no_restart_policy() {
        let mut c = container();
        c.spec.auto_remove = true;
        let always = Update {
            memory: None,
            restart_policy: Some(RestartPolicy {
                name: RestartPolicyName::Always,
                maximum_retry_count: 0,
            }),
        };
        let e = apply(&mut c, &always).expect_err("refused");
        assert_eq!(
            e.message(),
            format!(
                "Cannot update container {}: Restart policy cannot be updated because AutoRemove is enabled for the container",
                "ab".repeat(32)
            )
        );
        let no = Update {
            memory: None,
            restart_policy: Some(RestartPolicy::default()),
        };
        apply(&mut c, &no).expect("no is allowed");
    }

    #[test]
    fn only_a_running_container_can_be_paused() {
        let mut c = container();
        c.status.state = ContainerState::Exited;
        assert_eq!(
            check_pause(&c).map_err(|e| e.message().to_string()),
            Err(format!("container {} is not running", "ab".repeat(32)))
        );
        c.status.state = ContainerState::Running;
        c.spec.desired_state = DesiredState::Running;
        assert!(check_pause(&c).is_ok());
        c.status.state = ContainerState::Paused;
        c.spec.desired_state = DesiredState::Paused;
        assert_eq!(
            check_pause(&c).map_err(|e| e.status()),
            Err(StatusCode::CONFLICT)
        );
        assert!(check_unpause(&c).is_ok());
        c.status.state = ContainerState::Running;
        c.spec.desired_state = DesiredState::Running;
        assert_eq!(
            check_unpause(&c).map_err(|e| e.message().to_string()),
            Err(format!("Container {} is not paused", "ab".repeat(32)))
        );
    }
}
