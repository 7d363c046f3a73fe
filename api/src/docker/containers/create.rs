//! `POST /containers/create`: Docker's create body (Config, HostConfig,
//! NetworkingConfig) becomes a Container spec.
//!
//! Every option of the body is either carried into the spec or refused
//! with a 400 naming it; none is silently dropped. Options left at their
//! zero value (the CLI sends most of them every time) are accepted. The
//! spec is checked the way the node will use it (merged with the image,
//! [`zone_spec`]) before anything is stored, so a create that would never
//! start (no command, a relative working directory, a bad stop signal or
//! log option) fails here with Docker's message and stores nothing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use bytes::Bytes;
use http::StatusCode;
use rand::RngCore as _;
use sdc_docker_images::lookup::{self, LookupError};
use sdc_docker_store::Error as StoreError;
use sdc_docker_store::Resource;
use sdc_docker_store::model::{
    Container, ContainerSpec, LogConfig, Mount, PortBinding, RestartPolicy, RestartPolicyName,
};
use sdc_docker_zones::zone_spec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::update::{is_zero, validate_restart_policy};
use super::{containers_api, labels, names, valid_name};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::images::images_api;

/// The query of a create.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CreateQuery {
    /// The container's name (generated when absent).
    #[serde(default)]
    name: Option<String>,
    /// `os[/arch[/variant]]`; only the image's own platform is accepted.
    #[serde(default)]
    platform: Option<String>,
}

/// The answer to a create.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateResponse {
    /// The new container's 64-hex id.
    pub id: String,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

/// Docker's `container.Config`, the parts carried into the spec; the rest
/// lands in `other` and must be zero.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Config {
    hostname: String,
    domainname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    exposed_ports: Option<BTreeMap<String, Value>>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Option<Vec<String>>,
    cmd: Option<StringOrList>,
    image: String,
    working_dir: String,
    entrypoint: Option<StringOrList>,
    labels: Option<Value>,
    stop_signal: String,
    stop_timeout: Option<i64>,
    host_config: Option<HostConfig>,
    networking_config: Option<NetworkingConfig>,
    /// Only meaningful to Windows images and builds.
    args_escaped: Value,
    /// Only meaningful to builds.
    on_build: Value,
    /// Only meaningful to builds.
    shell: Value,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Docker accepts `Cmd` and `Entrypoint` as a string too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    List(Vec<String>),
    One(String),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::List(list) => list,
            StringOrList::One(one) => vec![one],
        }
    }
}

/// Docker's `container.HostConfig`, the parts carried into the spec.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfig {
    binds: Option<Vec<String>>,
    log_config: Option<WireLogConfig>,
    network_mode: String,
    port_bindings: Option<BTreeMap<String, Option<Vec<WirePortBinding>>>>,
    restart_policy: Option<WireRestartPolicy>,
    auto_remove: bool,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    publish_all_ports: bool,
    memory: i64,
    cpu_shares: i64,
    mounts: Option<Vec<WireMount>>,
    /// The terminal's size at start: the attach resizes to it.
    console_size: Value,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct WireLogConfig {
    #[serde(rename = "Type")]
    type_: String,
    config: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct WirePortBinding {
    host_ip: String,
    host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct WireRestartPolicy {
    name: String,
    maximum_retry_count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct WireMount {
    #[serde(rename = "Type")]
    type_: String,
    source: String,
    target: String,
    read_only: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkingConfig {
    endpoints_config: Option<BTreeMap<String, Value>>,
}

/// Host options the platform does not offer (the seeds' list), with what
/// to tell the user.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("CapAdd", "--cap-add"),
    ("CapDrop", "--cap-drop"),
    ("CpusetCpus", "--cpuset-cpus"),
    ("CpusetMems", "--cpuset-mems"),
    ("Devices", "--device"),
    ("DeviceRequests", "--gpus"),
    ("DeviceCgroupRules", "--device-cgroup-rule"),
    ("IpcMode", "--ipc"),
    ("Privileged", "--privileged"),
    ("SecurityOpt", "--security-opt"),
    ("ReadonlyRootfs", "--read-only"),
    ("Links", "--link"),
    ("VolumesFrom", "--volumes-from"),
    ("VolumeDriver", "--volume-driver"),
    ("PidMode", "--pid"),
    ("UTSMode", "--uts"),
    ("UsernsMode", "--userns"),
    ("CgroupnsMode", "--cgroupns"),
    ("Cgroup", "--cgroup"),
    ("CgroupParent", "--cgroup-parent"),
    ("Sysctls", "--sysctl"),
    ("Tmpfs", "--tmpfs"),
    ("Ulimits", "--ulimit"),
    ("ShmSize", "--shm-size"),
    ("GroupAdd", "--group-add"),
    ("OomScoreAdj", "--oom-score-adj"),
    ("OomKillDisable", "--oom-kill-disable"),
    ("PidsLimit", "--pids-limit"),
    ("NanoCpus", "--cpus (sizes come from packages: use -m)"),
    (
        "CpuPeriod",
        "--cpu-period (sizes come from packages: use -m)",
    ),
    ("CpuQuota", "--cpu-quota (sizes come from packages: use -m)"),
    ("CpuRealtimePeriod", "--cpu-rt-period"),
    ("CpuRealtimeRuntime", "--cpu-rt-runtime"),
    ("CpuCount", "--cpu-count"),
    ("CpuPercent", "--cpu-percent"),
    (
        "MemoryReservation",
        "--memory-reservation (sizes come from packages: use -m)",
    ),
    (
        "MemorySwap",
        "--memory-swap (sizes come from packages: use -m)",
    ),
    ("MemorySwappiness", "--memory-swappiness"),
    ("KernelMemory", "--kernel-memory"),
    ("KernelMemoryTCP", "--kernel-memory-tcp"),
    ("BlkioWeight", "--blkio-weight"),
    ("BlkioWeightDevice", "--blkio-weight-device"),
    ("BlkioDeviceReadBps", "--device-read-bps"),
    ("BlkioDeviceWriteBps", "--device-write-bps"),
    ("BlkioDeviceReadIOps", "--device-read-iops"),
    ("BlkioDeviceWriteIOps", "--device-write-iops"),
    ("IOMaximumIOps", "--io-maxiops"),
    ("IOMaximumBandwidth", "--io-maxbandwidth"),
    ("Init", "--init"),
    ("Runtime", "--runtime"),
    ("Isolation", "--isolation"),
    ("StorageOpt", "--storage-opt"),
    ("DnsOptions", "--dns-option"),
    ("ContainerIDFile", "--cidfile"),
    ("MaskedPaths", "masked paths"),
    ("ReadonlyPaths", "read-only paths"),
    ("Annotations", "--annotation"),
];

/// Config options the platform does not offer.
const UNSUPPORTED_CONFIG: &[(&str, &str)] = &[
    ("Healthcheck", "--health-cmd (health checks)"),
    ("Volumes", "-v <container path> (data volumes)"),
    ("MacAddress", "--mac-address"),
    ("NetworkDisabled", "--network none"),
];

/// Refuses every option in `other` that is set, naming it.
fn refuse_set(
    other: &BTreeMap<String, Value>,
    known: &[(&str, &str)],
    section: &str,
) -> Result<(), ApiError> {
    for (key, value) in other {
        // -1 is how the CLI says "unset" for swappiness.
        let unset = key == "MemorySwappiness" && value.as_i64() == Some(-1);
        if is_zero(value) || unset {
            continue;
        }
        return Err(match known.iter().find(|(k, _)| k == key) {
            Some((_, flag)) => ApiError::bad_request(format!(
                "{flag} is not supported by sdc-docker ({section}.{key})"
            )),
            None => {
                ApiError::bad_request(format!("{section}.{key} is not supported by sdc-docker"))
            }
        });
    }
    Ok(())
}

/// Why ports and networks are refused for now.
const NO_NETWORK: &str = "containers get a network namespace with loopback only until the networking controller gives them interfaces";

/// A fresh 64-hex id.
fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The restart policy of the body, with Docker's checks (an empty name is
/// `no`).
fn restart_policy(wire: Option<WireRestartPolicy>) -> Result<RestartPolicy, ApiError> {
    let Some(wire) = wire else {
        return Ok(RestartPolicy::default());
    };
    Ok(validate_restart_policy(&wire.name, wire.maximum_retry_count)?.unwrap_or_default())
}

/// `-v` entries: the seeds' host volumes are URLs, data volumes come with
/// the volumes controller; host paths are never offered.
fn binds(binds: &[String]) -> Result<Vec<Mount>, ApiError> {
    match binds.first() {
        None => Ok(Vec::new()),
        Some(bind) if bind.starts_with('/') => Err(ApiError::bad_request(format!(
            "invalid volume {bind:?}: host volumes must be http[s] URLs, not paths on the docker host"
        ))),
        Some(bind) => Err(ApiError::bad_request(format!(
            "invalid volume {bind:?}: data volumes and URL host volumes are not supported by this sdc-docker yet"
        ))),
    }
}

/// `--mount` entries, refused like [`binds`].
fn mounts(wire: &[WireMount]) -> Result<Vec<Mount>, ApiError> {
    match wire.first() {
        None => Ok(Vec::new()),
        Some(m) if m.type_ == "bind" => Err(ApiError::bad_request(format!(
            "invalid mount {}: host volumes must be http[s] URLs, not paths on the docker host",
            m.source
        ))),
        Some(m) => Err(ApiError::bad_request(format!(
            "invalid mount {} (type {}): data volumes are not supported by this sdc-docker yet",
            m.target, m.type_
        ))),
    }
}

/// The networks of the body: the default one, or one named network.
fn networks(
    mode: &str,
    endpoints: Option<&BTreeMap<String, Value>>,
) -> Result<Vec<String>, ApiError> {
    let mut names = Vec::new();
    for (network, settings) in endpoints.into_iter().flatten() {
        if let Some(settings) = settings.as_object() {
            let settings: BTreeMap<String, Value> = settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            refuse_set(
                &settings,
                &[
                    ("IPAMConfig", "--ip"),
                    ("Aliases", "--network-alias"),
                    ("Links", "--link"),
                    ("MacAddress", "--mac-address"),
                    ("DriverOpts", "--network driver options"),
                ],
                &format!("EndpointsConfig.{network}"),
            )?;
        }
        names.push(network.clone());
    }
    match mode {
        "" | "default" | "bridge" => {}
        "host" | "none" => {
            return Err(ApiError::bad_request(format!(
                "--network {mode} is not supported by sdc-docker: every container has its own network stack"
            )));
        }
        m if m.starts_with("container:") => {
            return Err(ApiError::bad_request(format!(
                "--network {m} is not supported by sdc-docker"
            )));
        }
        other => {
            if !names.iter().any(|n| n == other) {
                names.insert(0, other.to_owned());
            }
        }
    }
    names.retain(|n| !matches!(n.as_str(), "bridge" | "default"));
    if let Some(name) = names.first() {
        return Err(ApiError::bad_request(format!(
            "--network {name} is not supported by this sdc-docker yet: {NO_NETWORK}"
        )));
    }
    Ok(names)
}

/// Turns the create body into a spec (without the image's resolution).
fn spec_of(config: Config) -> Result<ContainerSpec, ApiError> {
    refuse_set(&config.other, UNSUPPORTED_CONFIG, "Config")?;
    let host = config.host_config.unwrap_or_default();
    refuse_set(&host.other, UNSUPPORTED, "HostConfig")?;
    let labels = match &config.labels {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(value) => labels::from_json(value)?,
    };
    labels::validate(&labels)?;
    let restart_policy = restart_policy(host.restart_policy)?;
    if host.auto_remove && restart_policy.name != RestartPolicyName::No {
        return Err(ApiError::bad_request(
            "conflicting options: cannot specify both --restart and --rm",
        ));
    }
    let mut mounts_ = binds(host.binds.as_deref().unwrap_or_default())?;
    mounts_.extend(mounts(host.mounts.as_deref().unwrap_or_default())?);
    let endpoints = config.networking_config.and_then(|n| n.endpoints_config);
    let networks = networks(&host.network_mode, endpoints.as_ref())?;
    let mut port_bindings = Vec::new();
    for (port, bindings) in host.port_bindings.unwrap_or_default() {
        let port = normalize_port(&port)?;
        for binding in bindings.unwrap_or_default() {
            port_bindings.push(PortBinding {
                container_port: port.clone(),
                host_ip: binding.host_ip,
                host_port: binding.host_port,
            });
        }
    }
    if !port_bindings.is_empty() || host.publish_all_ports {
        let flag = if port_bindings.is_empty() {
            "-P/--publish-all"
        } else {
            "-p/--publish"
        };
        return Err(ApiError::bad_request(format!(
            "{flag} is not supported by this sdc-docker yet: {NO_NETWORK}"
        )));
    }
    if host.cpu_shares != 0 {
        return Err(ApiError::bad_request(
            "--cpu-shares is not supported by sdc-docker: a container's CPU share comes from its package (chosen by -m or the com.joyent.package label)",
        ));
    }
    let mut exposed_ports: Vec<String> = config
        .exposed_ports
        .unwrap_or_default()
        .keys()
        .map(|p| normalize_port(p))
        .collect::<Result<_, _>>()?;
    for binding in &port_bindings {
        if !exposed_ports.contains(&binding.container_port) {
            exposed_ports.push(binding.container_port.clone());
        }
    }
    if host.memory < 0 {
        return Err(ApiError::bad_request("Memory cannot be negative"));
    }
    if host.memory > 0 && host.memory < 6 * 1024 * 1024 {
        return Err(ApiError::bad_request("Minimum memory limit allowed is 6MB"));
    }
    if host.cpu_shares < 0 {
        return Err(ApiError::bad_request("CPU shares cannot be negative"));
    }
    if let Some(timeout) = config.stop_timeout
        && timeout < -1
    {
        return Err(ApiError::bad_request(
            "invalid stop timeout: must be -1 or more",
        ));
    }
    let log_config = match host.log_config {
        None => LogConfig::default(),
        Some(wire) => LogConfig {
            type_: wire.type_,
            config: wire.config.unwrap_or_default(),
        },
    };
    log_config
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let package = labels
        .get("com.joyent.package")
        .cloned()
        .unwrap_or_default();
    Ok(ContainerSpec {
        id: String::new(),
        image: config.image,
        image_id: String::new(),
        cmd: config.cmd.map(StringOrList::into_vec).unwrap_or_default(),
        entrypoint: config.entrypoint.map(StringOrList::into_vec),
        env: config.env.unwrap_or_default(),
        working_dir: config.working_dir,
        user: config.user,
        hostname: config.hostname,
        domainname: config.domainname,
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        labels,
        restart_policy,
        log_config,
        memory: host.memory,
        package,
        cpu_shares: host.cpu_shares,
        exposed_ports,
        port_bindings,
        publish_all_ports: host.publish_all_ports,
        mounts: mounts_,
        networks,
        dns: host.dns.unwrap_or_default(),
        dns_search: host.dns_search.unwrap_or_default(),
        extra_hosts: host.extra_hosts.unwrap_or_default(),
        stop_signal: config.stop_signal,
        stop_timeout: config.stop_timeout.filter(|t| *t >= 0),
        auto_remove: host.auto_remove,
        desired_state: Default::default(),
        request: None,
    })
}

/// `80` → `80/tcp`; refuses what is not a port.
fn normalize_port(port: &str) -> Result<String, ApiError> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let valid_number = number
        .split_once('-')
        .map_or_else(|| vec![number], |(a, b)| vec![a, b])
        .iter()
        .all(|n| n.parse::<u16>().is_ok_and(|n| n > 0));
    if !valid_number || !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(ApiError::bad_request(format!("invalid port {port:?}")));
    }
    Ok(format!("{number}/{proto}"))
}

/// `POST /containers/create`.
pub(super) async fn create(
    State(state): State<DockerState>,
    Query(query): Query<CreateQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateResponse>), ApiError> {
    let config: Config = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the create body: {e}")))?;
    if config.image.is_empty() {
        return Err(ApiError::bad_request("No image was specified"));
    }
    let _ = (&config.args_escaped, &config.on_build, &config.shell);
    let mut spec = spec_of(config)?;
    let images = images_api(&state);
    let (image, _) = lookup::find(&images, &spec.image)
        .await
        .map_err(|e| match e {
            LookupError::Store(e) => ApiError::from(e),
            LookupError::Ambiguous(_) => ApiError::bad_request(e.to_string()),
            LookupError::NotFound(_) => {
                ApiError::not_found(format!("No such image: {}", display_image(&spec.image)))
            }
        })?;
    if let Some(platform) = query.platform.as_deref().filter(|p| !p.is_empty()) {
        let mut parts = platform.split('/');
        let os = parts.next().unwrap_or_default();
        let arch = parts.next();
        let image_os = if image.spec.os.is_empty() {
            "linux"
        } else {
            &image.spec.os
        };
        if os != image_os || arch.is_some_and(|a| a != image.spec.architecture) {
            return Err(ApiError::not_found(format!(
                "image with reference {} was found but does not match the specified platform: wanted {platform}, actual: {}/{}",
                spec.image, image_os, image.spec.architecture
            )));
        }
    }
    spec.image_id = image.spec.id.clone();
    spec.id = new_id();

    let api = containers_api(&state);
    let explicit = query.name.as_deref().filter(|n| !n.is_empty());
    if let Some(name) = explicit {
        let bare = name.strip_prefix('/').unwrap_or(name);
        if !valid_name(bare) {
            return Err(ApiError::bad_request(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
    }
    let mut container = Container::new("", spec);
    // Checked as the node will use it, before anything is stored.
    zone_spec(&container, &image, None, Vec::new())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for attempt in 0..10u32 {
        let name = match explicit {
            Some(name) => name.strip_prefix('/').unwrap_or(name).to_owned(),
            None if attempt == 0 => names::generate(),
            None => names::generate_with_retry(attempt),
        };
        container.metadata.name = name.clone();
        match api.create(&container).await {
            Ok(created) => {
                tracing::info!(container = %name, id = %created.spec.id, image = %created.spec.image, "container created");
                return Ok((
                    StatusCode::CREATED,
                    Json(CreateResponse {
                        id: created.spec.id,
                        warnings: Vec::new(),
                    }),
                ));
            }
            Err(StoreError::AlreadyExists { .. }) if explicit.is_some() => {
                let holder = api
                    .get(&name)
                    .await
                    .map(|c| c.docker_id())
                    .unwrap_or_default();
                return Err(ApiError::conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal(
        "could not find a free generated name in 10 tries",
    ))
}

/// The image as Docker names it in "No such image" (`busybox:latest`).
fn display_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<ContainerSpec, ApiError> {
        spec_of(serde_json::from_value(body).expect("a create body"))
    }

    #[test]
    fn the_clis_zero_valued_options_are_accepted() {
        let spec = parse(serde_json::json!({
            "Image": "busybox", "Cmd": ["echo", "hi"], "Entrypoint": null,
            "Volumes": {}, "Healthcheck": null, "MacAddress": "",
            "HostConfig": {"Privileged": false, "CapAdd": null, "NanoCpus": 0,
                "Isolation": "", "NetworkMode": "default", "ConsoleSize": [24, 80],
                "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                "LogConfig": {"Type": "", "Config": {}}, "Ulimits": [], "Mounts": null},
            "NetworkingConfig": {"EndpointsConfig": {}}
        }))
        .expect("accepted");
        assert_eq!(spec.cmd, ["echo", "hi"]);
        assert_eq!(spec.entrypoint, None);
        assert!(spec.networks.is_empty());
    }

    #[test]
    fn an_option_the_platform_lacks_is_refused_by_its_flag() {
        let e = parse(serde_json::json!({"Image": "b", "HostConfig": {"Privileged": true}}))
            .expect_err("refused");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains("--privileged"), "{}", e.message());
        let e = parse(serde_json::json!({"Image": "b", "HostConfig": {"SomethingNew": 3}}))
            .expect_err("refused");
        assert!(
            e.message().contains("HostConfig.SomethingNew"),
            "{}",
            e.message()
        );
        let e = parse(serde_json::json!({"Image": "b", "Healthcheck": {"Test": ["CMD", "true"]}}))
            .expect_err("refused");
        assert!(e.message().contains("--health-cmd"), "{}", e.message());
    }

    #[test]
    fn host_path_volumes_and_host_networking_are_refused_with_the_seeds_reason() {
        let e = parse(serde_json::json!({"Image": "b", "HostConfig": {"Binds": ["/etc:/x"]}}))
            .expect_err("refused");
        assert!(e.message().contains("http[s] URLs"), "{}", e.message());
        let e = parse(serde_json::json!({"Image": "b", "HostConfig": {"NetworkMode": "host"}}))
            .expect_err("refused");
        assert!(e.message().contains("--network host"), "{}", e.message());
    }

    #[test]
    fn restart_policies_are_checked_as_docker_checks_them() {
        let e = parse(serde_json::json!({"Image": "b",
            "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}))
        .expect_err("refused");
        assert!(
            e.message().contains("unknown policy 'sometimes'"),
            "{}",
            e.message()
        );
        let e = parse(serde_json::json!({"Image": "b",
            "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}}))
        .expect_err("refused");
        assert!(
            e.message().contains("only be used with 'on-failure'"),
            "{}",
            e.message()
        );
        let e = parse(serde_json::json!({"Image": "b",
            "HostConfig": {"AutoRemove": true, "RestartPolicy": {"Name": "always"}}}))
        .expect_err("refused");
        assert!(
            e.message().contains("--restart and --rm"),
            "{}",
            e.message()
        );
        let spec = parse(serde_json::json!({"Image": "b",
            "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}}))
        .expect("accepted");
        assert_eq!(spec.restart_policy.name, RestartPolicyName::OnFailure);
        assert_eq!(spec.restart_policy.maximum_retry_count, 3);
    }

    #[test]
    fn exposed_ports_are_normalised_and_publishing_or_networks_are_refused_by_flag() {
        let spec =
            parse(serde_json::json!({"Image": "b", "ExposedPorts": {"53/udp": {}, "80": {}}}))
                .expect("accepted");
        assert_eq!(spec.exposed_ports, ["53/udp", "80/tcp"]);
        assert!(normalize_port("http").is_err());
        let e = parse(serde_json::json!({"Image": "b",
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}}))
        .expect_err("refused");
        assert!(
            e.message().starts_with("-p/--publish is not supported"),
            "{}",
            e.message()
        );
        let e = parse(serde_json::json!({"Image": "b", "HostConfig": {"PublishAllPorts": true}}))
            .expect_err("refused");
        assert!(
            e.message().starts_with("-P/--publish-all"),
            "{}",
            e.message()
        );
        let e = parse(serde_json::json!({"Image": "b", "HostConfig": {"NetworkMode": "backend"}}))
            .expect_err("refused");
        assert!(
            e.message().starts_with("--network backend"),
            "{}",
            e.message()
        );
        let e = parse(serde_json::json!({"Image": "b", "HostConfig": {"CpuShares": 512}}))
            .expect_err("refused");
        assert!(e.message().contains("package"), "{}", e.message());
    }

    #[test]
    fn a_string_cmd_is_one_argument_and_an_empty_entrypoint_clears_the_images() {
        let spec = parse(serde_json::json!({"Image": "b", "Cmd": "true", "Entrypoint": [""]}))
            .expect("accepted");
        assert_eq!(spec.cmd, ["true"]);
        assert_eq!(spec.entrypoint, Some(vec![String::new()]));
    }

    #[test]
    fn ids_are_64_lowercase_hex_digits() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(id, new_id());
    }
}
