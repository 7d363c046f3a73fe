//! `GET /containers/{name}/json` (`docker inspect`) and
//! `GET /containers/{name}/top` (`docker top`).
//!
//! Inspect shows Docker's `ContainerInspectResponse`: the config as Docker
//! keeps it after merging the create body with the image config (the
//! image's command, environment and labels when the container gives none),
//! the state the node observed, and the host config asked for. What only
//! sdc knows (the node and package) is under `Sdc`.
//!
//! Top runs `ps` on the node, as Docker runs it on its host, and keeps the
//! rows of the zone's processes: those in the cgroup of the zone's first
//! process. It works only for a zone on this machine.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use sdc_docker_images::lookup::find_in;
use sdc_docker_store::model::{Container, ContainerState, Image};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::list::{
    self, EndpointSettings, ImageConfig, MountPoint, created, is_running, merged_labels, mounts,
    network_mode, networks, path_and_args, state_word,
};
use super::{find, zone_id};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::images::images_api;
use crate::docker::query::bool_value;

/// Docker's time zero, shown for a time never set.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Docker's `ContainerInspectResponse`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    /// The 64-hex id.
    #[serde(rename = "Id")]
    pub id: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// The program run.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// What the node observed.
    pub state: ContainerStateView,
    /// The image id.
    pub image: String,
    /// Paths Docker keeps on its host; zones keep theirs on the node.
    pub resolv_conf_path: String,
    /// See `ResolvConfPath`.
    pub hostname_path: String,
    /// See `ResolvConfPath`.
    pub hosts_path: String,
    /// See `ResolvConfPath`.
    pub log_path: String,
    /// `/name`.
    pub name: String,
    /// Restarts done by the restart policy.
    pub restart_count: i64,
    /// `sdc`.
    pub driver: String,
    /// `linux`.
    pub platform: String,
    /// SELinux labels (none).
    pub mount_label: String,
    /// See `MountLabel`.
    pub process_label: String,
    /// The AppArmor profile (none).
    pub app_armor_profile: String,
    /// Running execs (`null` when none).
    #[serde(rename = "ExecIDs")]
    pub exec_ids: Option<Vec<String>>,
    /// What the user asked of the host.
    pub host_config: HostConfig,
    /// The storage driver.
    pub graph_driver: GraphDriver,
    /// Bytes written in the container's layer (`size=1` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<i64>,
    /// Bytes of the image and the layer (`size=1` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<i64>,
    /// Volumes and bind mounts.
    pub mounts: Vec<MountPoint>,
    /// The merged config.
    pub config: ContainerConfig,
    /// Networks and ports.
    pub network_settings: NetworkSettings,
    /// Where sdc placed the container.
    pub sdc: SdcPlacement,
}

/// Docker's `ContainerState`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerStateView {
    /// The state word.
    pub status: String,
    /// Running, paused or restarting.
    pub running: bool,
    /// Frozen.
    pub paused: bool,
    /// Being restarted by its policy.
    pub restarting: bool,
    /// Killed by the OOM killer.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Could not be realised.
    pub dead: bool,
    /// The main process on its node (0 when not running).
    pub pid: i64,
    /// The last exit code.
    pub exit_code: i64,
    /// Why the last start failed.
    pub error: String,
    /// RFC 3339 with nanoseconds, or Docker's zero time.
    pub started_at: String,
    /// RFC 3339 with nanoseconds, or Docker's zero time.
    pub finished_at: String,
}

/// Docker's `HostConfig`, the parts sdc honours or Docker always shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `src:dst[:ro]` of the bind mounts (`null` when none).
    pub binds: Option<Vec<String>>,
    /// `--cidfile` (not kept).
    #[serde(rename = "ContainerIDFile")]
    pub container_id_file: String,
    /// The log driver.
    pub log_config: LogConfigView,
    /// `bridge`, or the network asked for.
    pub network_mode: String,
    /// `-p`, by container port.
    pub port_bindings: BTreeMap<String, Vec<PortBindingView>>,
    /// `--restart`.
    pub restart_policy: RestartPolicyView,
    /// `--rm`.
    pub auto_remove: bool,
    /// Volume driver.
    pub volume_driver: String,
    /// `--volumes-from` (none).
    pub volumes_from: Option<Vec<String>>,
    /// Terminal size at creation.
    pub console_size: [u16; 2],
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--add-host` (`null` when none).
    pub extra_hosts: Option<Vec<String>>,
    /// IPC namespace mode.
    pub ipc_mode: String,
    /// PID namespace mode.
    pub pid_mode: String,
    /// Privileged (never here).
    pub privileged: bool,
    /// `-P`.
    pub publish_all_ports: bool,
    /// Read-only root filesystem.
    pub readonly_rootfs: bool,
    /// The OCI runtime.
    pub runtime: String,
    /// `--cpu-shares`.
    pub cpu_shares: i64,
    /// `-m`, bytes.
    pub memory: i64,
    /// `--cpus` × 10⁹.
    pub nano_cpus: i64,
    /// Isolation technology.
    pub isolation: String,
}

/// Docker's `LogConfig`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfigView {
    /// The driver (`json-file`).
    #[serde(rename = "Type")]
    pub type_: String,
    /// Its options.
    pub config: BTreeMap<String, String>,
}

/// Docker's `PortBinding`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBindingView {
    /// The host address.
    pub host_ip: String,
    /// The host port.
    pub host_port: String,
}

/// Docker's `RestartPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicyView {
    /// `no`, `always`, `on-failure`, `unless-stopped`.
    pub name: String,
    /// For `on-failure`.
    pub maximum_retry_count: i64,
}

/// Docker's `DriverData`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    /// The driver.
    pub name: String,
    /// What it says of the container.
    pub data: BTreeMap<String, String>,
}

/// Docker's container `Config`, merged with the image's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// The hostname (the short id unless given).
    pub hostname: String,
    /// The domain.
    pub domainname: String,
    /// `user[:group]`.
    pub user: String,
    /// Attach stdin on start.
    pub attach_stdin: bool,
    /// Attach stdout on start.
    pub attach_stdout: bool,
    /// Attach stderr on start.
    pub attach_stderr: bool,
    /// Exposed ports, `{"80/tcp": {}}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// A terminal.
    pub tty: bool,
    /// Stdin kept open.
    pub open_stdin: bool,
    /// Stdin closed after the first attach.
    pub stdin_once: bool,
    /// `KEY=value`.
    pub env: Vec<String>,
    /// The command (`null` when none).
    pub cmd: Option<Vec<String>>,
    /// The image as the user named it.
    pub image: String,
    /// Anonymous volumes (`null` when none).
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// The working directory.
    pub working_dir: String,
    /// The entrypoint (`null` when none).
    pub entrypoint: Option<Vec<String>>,
    /// Build triggers (none).
    pub on_build: Option<Vec<String>>,
    /// The image's labels overridden by the container's.
    pub labels: BTreeMap<String, String>,
    /// `--stop-signal`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub stop_signal: String,
    /// `--stop-timeout`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stop_timeout: Option<i64>,
}

/// Docker's `NetworkSettings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// The bridge (none).
    pub bridge: String,
    /// The sandbox.
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    /// The sandbox's namespace path.
    pub sandbox_key: String,
    /// Exposed ports and their bindings while running.
    pub ports: BTreeMap<String, Option<Vec<PortBindingView>>>,
    /// The default network's address (deprecated by Docker, still shown).
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// The default network's gateway.
    pub gateway: String,
    /// The default network's MAC address.
    pub mac_address: String,
    /// Each network by name.
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// Where sdc placed the container (not Docker's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SdcPlacement {
    /// The compute node (empty until placed).
    pub node: String,
    /// The package that sizes it.
    pub package: String,
    /// The zone's id.
    pub zone: String,
}

/// Docker's config of `container`: its create body merged with `image`'s
/// config as Docker's `merge` does at create time.
pub(crate) fn merged_config(container: &Container, image: &ImageConfig) -> ContainerConfig {
    let spec = &container.spec;
    let (mut entrypoint, mut cmd) = (
        spec.entrypoint.clone(),
        (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
    );
    if entrypoint.as_ref().is_none_or(Vec::is_empty) {
        if cmd.is_none() {
            cmd = image.cmd.clone();
        }
        if entrypoint.is_none() {
            entrypoint = image.entrypoint.clone();
        }
    }
    let exposed: BTreeSet<&String> = image
        .exposed_ports
        .iter()
        .chain(&spec.exposed_ports)
        .chain(spec.port_bindings.iter().map(|b| &b.container_port))
        .collect();
    let volumes: BTreeMap<String, serde_json::Value> = image
        .volumes
        .iter()
        .cloned()
        .chain(
            spec.mounts
                .iter()
                .filter(|m| m.type_ == "volume" && m.source.is_empty())
                .map(|m| m.target.clone()),
        )
        .map(|v| (v, serde_json::json!({})))
        .collect();
    let first = |mine: &str, theirs: &str| if mine.is_empty() { theirs } else { mine }.to_owned();
    ContainerConfig {
        hostname: if spec.hostname.is_empty() {
            container.docker_id().chars().take(12).collect()
        } else {
            spec.hostname.clone()
        },
        domainname: spec.domainname.clone(),
        user: first(&spec.user, &image.user),
        attach_stdin: spec.attach_stdin,
        attach_stdout: spec.attach_stdout,
        attach_stderr: spec.attach_stderr,
        exposed_ports: exposed
            .into_iter()
            .map(|p| {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                (p, serde_json::json!({}))
            })
            .collect(),
        tty: spec.tty,
        open_stdin: spec.open_stdin,
        stdin_once: spec.stdin_once,
        env: sdc_docker_zones::docker::merge_env(&spec.env, &image.env),
        cmd,
        image: spec.image.clone(),
        volumes: (!volumes.is_empty()).then_some(volumes),
        working_dir: first(&spec.working_dir, &image.working_dir),
        entrypoint,
        on_build: None,
        labels: merged_labels(container, image),
        stop_signal: first(&spec.stop_signal, &image.stop_signal),
        stop_timeout: spec.stop_timeout,
    }
}

/// RFC 3339 with nanoseconds (trailing zeros dropped) in UTC, as Go's
/// `time.RFC3339Nano`; Docker's zero time for none.
pub(crate) fn rfc3339_nano(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
        .unwrap_or_else(|| ZERO_TIME.to_owned())
}

/// The `docker inspect` view of `container` running `image` (when its
/// Image object is still there).
pub fn inspect_view(container: &Container, image: Option<&Image>) -> ContainerInspect {
    let image_config = image.map(ImageConfig::of).unwrap_or_default();
    let (path, args) = path_and_args(container, &image_config);
    let spec = &container.spec;
    let status = &container.status;
    let state = status.state;
    let running = is_running(container);
    let ports_shown = list::ports(container, &image_config);
    let config = merged_config(container, &image_config);
    let mut net_ports: BTreeMap<String, Option<Vec<PortBindingView>>> = BTreeMap::new();
    if running {
        for port in config.exposed_ports.keys() {
            net_ports.insert(port.clone(), None);
        }
        for p in &ports_shown {
            let key = format!("{}/{}", p.private_port, p.type_);
            let entry = net_ports.entry(key).or_insert(None);
            if p.public_port != 0 {
                entry.get_or_insert_with(Vec::new).push(PortBindingView {
                    host_ip: p.ip.clone(),
                    host_port: p.public_port.to_string(),
                });
            }
        }
    }
    let mut port_bindings: BTreeMap<String, Vec<PortBindingView>> = BTreeMap::new();
    for b in &spec.port_bindings {
        let key = if b.container_port.contains('/') {
            b.container_port.clone()
        } else {
            format!("{}/tcp", b.container_port)
        };
        port_bindings.entry(key).or_default().push(PortBindingView {
            host_ip: b.host_ip.clone(),
            host_port: b.host_port.clone(),
        });
    }
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .filter(|m| m.type_ == "bind")
        .map(|m| {
            if m.read_only {
                format!("{}:{}:ro", m.source, m.target)
            } else {
                format!("{}:{}", m.source, m.target)
            }
        })
        .collect();
    let restart_name = serde_json::to_value(spec.restart_policy.name)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "no".into());
    let zone = zone_id(&container.docker_id()).unwrap_or_default();
    ContainerInspect {
        id: container.docker_id(),
        created: rfc3339_nano(Some(created(container))),
        path,
        args,
        state: ContainerStateView {
            status: state_word(state).into(),
            running,
            paused: state == ContainerState::Paused,
            restarting: state == ContainerState::Restarting,
            oom_killed: status.oom_killed,
            dead: state == ContainerState::Dead,
            pid: if running { status.pid } else { 0 },
            exit_code: status.exit_code,
            error: status.error.clone(),
            started_at: rfc3339_nano(status.started_at),
            finished_at: rfc3339_nano(status.finished_at),
        },
        image: if spec.image_id.is_empty() {
            image.map(|i| i.spec.id.clone()).unwrap_or_default()
        } else {
            spec.image_id.clone()
        },
        resolv_conf_path: String::new(),
        hostname_path: String::new(),
        hosts_path: String::new(),
        log_path: String::new(),
        name: format!("/{}", container.metadata.name),
        restart_count: status.restart_count,
        driver: "sdc".into(),
        platform: "linux".into(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        exec_ids: None,
        host_config: HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            container_id_file: String::new(),
            log_config: LogConfigView {
                type_: if spec.log_config.type_.is_empty() {
                    "json-file".into()
                } else {
                    spec.log_config.type_.clone()
                },
                config: spec.log_config.config.clone(),
            },
            network_mode: network_mode(container),
            port_bindings,
            restart_policy: RestartPolicyView {
                name: restart_name,
                maximum_retry_count: spec.restart_policy.maximum_retry_count,
            },
            auto_remove: spec.auto_remove,
            volume_driver: String::new(),
            volumes_from: None,
            console_size: [0, 0],
            dns: spec.dns.clone(),
            dns_options: Vec::new(),
            dns_search: spec.dns_search.clone(),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            ipc_mode: "private".into(),
            pid_mode: String::new(),
            privileged: false,
            publish_all_ports: spec.publish_all_ports,
            readonly_rootfs: false,
            runtime: "runc".into(),
            cpu_shares: spec.cpu_shares,
            memory: spec.memory,
            nano_cpus: 0,
            isolation: String::new(),
        },
        graph_driver: GraphDriver {
            name: "sdc".into(),
            data: BTreeMap::new(),
        },
        size_rw: None,
        size_root_fs: None,
        mounts: mounts(container),
        config,
        network_settings: NetworkSettings {
            bridge: String::new(),
            sandbox_id: String::new(),
            sandbox_key: String::new(),
            ports: net_ports,
            ip_address: String::new(),
            gateway: String::new(),
            mac_address: String::new(),
            networks: networks(container),
        },
        sdc: SdcPlacement {
            node: status.node.clone(),
            package: if status.package.is_empty() {
                spec.package.clone()
            } else {
                status.package.clone()
            },
            zone,
        },
    }
}

/// The query of `GET /containers/{name}/json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct InspectQuery {
    /// Measure the container's layer.
    size: Option<String>,
}

/// `GET /containers/{name}/json`.
pub(super) async fn inspect(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<InspectQuery>,
) -> Result<Json<ContainerInspect>, ApiError> {
    let container = find(&state, &name).await?;
    let image = image_of(&state, &container).await?;
    let mut view = inspect_view(&container, image.as_ref());
    if bool_value(query.size.as_deref()) {
        let rw = list::size_rw(&state, &container).await;
        view.size_rw = Some(rw);
        view.size_root_fs = Some(image.as_ref().map_or(0, |i| i.spec.size) + rw);
    }
    Ok(Json(view))
}

/// The Image object `container` runs, when it is still there: one read by
/// id, a search only for a container whose image was never resolved.
async fn image_of(state: &DockerState, container: &Container) -> Result<Option<Image>, ApiError> {
    let images = images_api(state);
    if let Some(hex) = container.spec.image_id.strip_prefix("sha256:") {
        return match images.get(hex).await {
            Ok(image) => Ok(Some(image)),
            Err(sdc_docker_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
    let all = images.list().await?.items;
    Ok(find_in(&all, &container.spec.image)
        .ok()
        .map(|(image, _)| image.clone()))
}

/// The query of `GET /containers/{name}/top`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TopQuery {
    /// `ps` options (`-ef` when none).
    ps_args: Option<String>,
}

/// Docker's `ContainerTopOKBody`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TopBody {
    /// `ps`'s column titles.
    pub titles: Vec<String>,
    /// One row per process of the container.
    pub processes: Vec<Vec<String>>,
}

/// `GET /containers/{name}/top`.
pub(super) async fn top(
    State(state): State<DockerState>,
    Path(name): Path<String>,
    Query(query): Query<TopQuery>,
) -> Result<Json<TopBody>, ApiError> {
    let container = find(&state, &name).await?;
    if container.status.state == ContainerState::Restarting {
        return Err(ApiError::conflict(format!(
            "Container {} is restarting, wait until the container is running",
            container.docker_id()
        )));
    }
    if !is_running(&container) || container.status.pid <= 0 {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            container.docker_id()
        )));
    }
    // ps runs here, so the zone must be on this machine (a node this
    // instance registered itself, not one reached over the network).
    if state.nodes.get(&container.status.node).is_none() {
        return Err(ApiError::conflict(format!(
            "Container {} runs on compute node {}, where this instance cannot run ps; use docker exec CONTAINER ps",
            container.docker_id(),
            container.status.node
        )));
    }
    let ps_args = query
        .ps_args
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "-ef".to_owned());
    validate_ps_args(&ps_args)?;
    let pids = zone_pids(container.status.pid);
    let args: Vec<&str> = ps_args.split(' ').collect();
    let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let quick = format!("-q{}", pid_list.join(","));
    let output = match run_ps(&args, Some(&quick)).await {
        Ok(output) => output,
        // Some options (such as f) cannot go with -q: ps everything.
        Err(_) => run_ps(&args, None).await?,
    };
    Ok(Json(parse_ps_output(&output, &pids)?))
}

/// Refuses `ps` options that rename the PID column (moby's
/// `validatePSArgs`): the rows are chosen by it.
fn validate_ps_args(ps_args: &str) -> Result<(), ApiError> {
    let re = regex::Regex::new(r"\s+([^\s]*)=\s*(PID[^\s]*)")
        .map_err(|e| ApiError::internal(e.to_string()))?;
    for group in re.captures_iter(ps_args) {
        let (k, v) = (&group[1], &group[2]);
        if k != "pid" {
            return Err(ApiError::internal(format!(
                "specifying \"{k}={v}\" is not allowed"
            )));
        }
    }
    Ok(())
}

/// Runs `ps ARGS [EXTRA]`; its first line of stderr is the error, as
/// Docker reports it.
async fn run_ps(args: &[&str], extra: Option<&str>) -> Result<String, ApiError> {
    let mut command = tokio::process::Command::new("ps");
    command.args(args.iter().filter(|a| !a.is_empty()));
    if let Some(extra) = extra {
        command.arg(extra);
    }
    let output = command
        .output()
        .await
        .map_err(|e| ApiError::internal(format!("ps: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr.lines().next().unwrap_or_default();
        let why = if line.is_empty() {
            output.status.to_string()
        } else {
            line.to_owned()
        };
        return Err(ApiError::internal(format!("ps: {why}")));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The processes of the zone whose first process is `init`: those in its
/// cgroup (execs included), or, when cgroups cannot be read, its
/// descendants.
fn zone_pids(init: i64) -> Vec<u32> {
    let Ok(init) = u32::try_from(init) else {
        return Vec::new();
    };
    let read = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok();
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            {
                all.push(pid);
            }
        }
    }
    if let Some(cgroup) = read(init).filter(|c| !c.trim().is_empty() && c.trim() != "0::/") {
        let mut pids: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&pid| read(pid).as_deref() == Some(cgroup.as_str()))
            .collect();
        if !pids.contains(&init) {
            pids.push(init);
        }
        pids.sort_unstable();
        return pids;
    }
    // Descendants, by each process's parent.
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(1)?.parse().ok()
    };
    let parents: Vec<(u32, Option<u32>)> = all.iter().map(|&p| (p, parent(p))).collect();
    let mut pids = vec![init];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid) in &parents {
            if !pids.contains(pid) && ppid.is_some_and(|pp| pids.contains(&pp)) {
                pids.push(*pid);
                grew = true;
            }
        }
    }
    pids.sort_unstable();
    pids
}

/// Keeps the rows of `ps` output whose PID is one of `pids` (and the
/// thread rows under them), as moby's `parsePSOutput`.
fn parse_ps_output(output: &str, pids: &[u32]) -> Result<TopBody, ApiError> {
    let mut lines = output.split('\n');
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let mut body = TopBody {
        titles,
        processes: Vec::new(),
    };
    let mut previous_ours = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(pid) = fields.get(pid_index) else {
            continue;
        };
        if *pid == "-" {
            if previous_ours {
                append_row(&mut body, &fields);
            }
            continue;
        }
        let pid: u32 = pid
            .parse()
            .map_err(|e| ApiError::internal(format!("Unexpected pid '{pid}': {e}")))?;
        previous_ours = pids.contains(&pid);
        if previous_ours {
            append_row(&mut body, &fields);
        }
    }
    Ok(body)
}

/// One row with as many fields as titles, the overhanging ones (the
/// command's arguments) joined into the last.
fn append_row(body: &mut TopBody, fields: &[&str]) {
    let last = body.titles.len().saturating_sub(1);
    let mut row: Vec<String> = fields.iter().take(last).map(|f| (*f).to_owned()).collect();
    row.push(fields.get(last..).unwrap_or_default().join(" "));
    body.processes.push(row);
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::Resource;
    use sdc_docker_store::model::{ContainerSpec, ImageSpec, RestartPolicyName};
    use serde_json::json;

    use super::*;

    fn busybox() -> Image {
        Image::new(
            &"b".repeat(64),
            ImageSpec {
                id: format!("sha256:{}", "b".repeat(64)),
                config: json!({"config": {
                    "Cmd": ["sh"],
                    "Env": ["PATH=/usr/bin", "A=image"],
                    "WorkingDir": "/srv",
                }}),
                ..Default::default()
            },
        )
    }

    fn web() -> Container {
        Container::new(
            "web",
            ContainerSpec {
                id: "a".repeat(64),
                image: "busybox".into(),
                image_id: format!("sha256:{}", "b".repeat(64)),
                env: vec!["A=mine".into()],
                ..Default::default()
            },
        )
    }

    #[test]
    fn inspect_shows_the_config_merged_with_the_image() {
        let view = inspect_view(&web(), Some(&busybox()));
        assert_eq!(view.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(view.config.entrypoint, None);
        assert_eq!(view.config.env, ["A=mine", "PATH=/usr/bin"]);
        assert_eq!(view.config.working_dir, "/srv");
        assert_eq!(view.config.hostname, "aaaaaaaaaaaa");
        assert_eq!(view.path, "sh");
        assert!(view.args.is_empty());
        // An entrypoint of the container's own drops the image's Cmd.
        let mut c = web();
        c.spec.entrypoint = Some(vec!["echo".into()]);
        let view = inspect_view(&c, Some(&busybox()));
        assert_eq!(view.config.cmd, None);
        assert_eq!(view.path, "echo");
    }

    #[test]
    fn inspect_has_dockers_shape_and_zero_times() {
        let mut c = web();
        c.spec.restart_policy.name = RestartPolicyName::OnFailure;
        let wire = serde_json::to_value(inspect_view(&c, Some(&busybox()))).expect("json");
        assert_eq!(wire["Name"], "/web");
        assert_eq!(wire["State"]["Status"], "created");
        assert_eq!(wire["State"]["StartedAt"], ZERO_TIME);
        assert_eq!(wire["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
        assert_eq!(wire["HostConfig"]["LogConfig"]["Type"], "json-file");
        assert_eq!(wire["Config"]["Volumes"], serde_json::Value::Null);
        assert_eq!(wire["Id"].as_str().map(str::len), Some(64));
        assert_eq!(
            wire["NetworkSettings"]["Networks"]["bridge"]["IPAddress"],
            ""
        );
    }

    #[test]
    fn times_are_rfc3339_with_nanoseconds_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_120_000_000).expect("time");
        assert_eq!(rfc3339_nano(Some(t)), "2023-11-14T22:13:20.12Z");
        assert_eq!(rfc3339_nano(None), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn top_keeps_the_rows_of_the_zones_pids() {
        let output = "UID PID PPID C STIME TTY TIME CMD\n\
                      root 1 0 0 10:00 ? 00:00:01 /sbin/init splash\n\
                      root 42 1 0 10:00 ? 00:00:00 sleep 100\n\
                      root 43 42 0 10:00 ? 00:00:00 sh -c echo hi\n";
        let body = parse_ps_output(output, &[42, 43]).expect("parsed");
        assert_eq!(body.titles.len(), 8);
        assert_eq!(body.processes.len(), 2);
        assert_eq!(body.processes[0][1], "42");
        assert_eq!(body.processes[1][7], "sh -c echo hi");
        assert!(parse_ps_output("UID CMD\nroot x\n", &[1]).is_err());
    }

    #[test]
    fn ps_args_may_not_rename_the_pid_column() {
        assert!(validate_ps_args("-ef").is_ok());
        assert!(validate_ps_args("-o pid=PID").is_ok());
        let e = validate_ps_args("-o user=PID").expect_err("refused");
        assert_eq!(e.message(), "specifying \"user=PID\" is not allowed");
    }

    #[test]
    fn the_zones_pids_include_its_first_process() {
        let me = std::process::id();
        let pids = zone_pids(i64::from(me));
        assert!(pids.contains(&me), "{pids:?}");
    }
}
