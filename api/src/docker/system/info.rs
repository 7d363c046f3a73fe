//! `GET /info`: Docker's `SystemInfo` for the whole data center, which is
//! the one Docker host sdc-docker presents (the sdc-docker divergence
//! document's `docker info`: storage driver `sdc`, the operating system
//! `SmartDataCenter`, the account in `SDCAccount`, the data center's name
//! as `Name`).
//!
//! Counts come from the store: Container objects by their observed state
//! (as moby counts them: restarting is running, everything not running or
//! paused is stopped), Image objects, and the capacity of every registered
//! Node. Only when no node has registered yet does the answer fall back to
//! this machine's CPUs and memory, so a fresh server still says something
//! true about where its containers would run.
//!
//! Fields sdc-docker has no counterpart for are present with Docker's
//! empty values, so clients that decode them strictly (docker-py, the Go
//! client) find what they expect; nothing goes in `Warnings`, so `docker
//! info` prints no warning.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use sdc_docker_store::Api;
use sdc_docker_store::model::{Container, ContainerState, LogConfig, LogConfigError, Node};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::DockerState;
use super::super::images::images_api;
use crate::ApiError;
use crate::build_info::{VERSION, kernel_version};

/// The storage driver `docker info` shows: containers are zones on
/// SmartDataCenter nodes, not layers in a local graph driver.
pub const STORAGE_DRIVER: &str = "sdc";

/// The operating system `docker info` shows, as the divergence document
/// says: the Docker host is the data center.
pub const OPERATING_SYSTEM: &str = "SmartDataCenter";

/// The registry Docker Hub is reached through, as Docker reports it.
pub const INDEX_SERVER_ADDRESS: &str = "https://index.docker.io/v1/";

/// The log drivers Docker knows; `Plugins.Log` lists those sdc-docker
/// runs, as decided by [`LogConfig::validate`]. Alphabetical, as Docker
/// lists them.
const DOCKER_LOG_DRIVERS: [&str; 11] = [
    "awslogs",
    "fluentd",
    "gcplogs",
    "gelf",
    "journald",
    "json-file",
    "local",
    "logentries",
    "none",
    "splunk",
    "syslog",
];

/// Docker's `system.Info` (swagger `SystemInfo`), the fields the API
/// version 1.45 defines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    /// Identifies the Docker host: the data center's name, shared by every
    /// sdc-docker instance serving it.
    #[serde(rename = "ID")]
    pub id: String,
    /// All containers of the account.
    pub containers: u64,
    /// Running (or restarting) containers.
    pub containers_running: u64,
    /// Paused containers.
    pub containers_paused: u64,
    /// The others: created, exited, dead, being removed.
    pub containers_stopped: u64,
    /// Images.
    pub images: u64,
    /// [`STORAGE_DRIVER`].
    pub driver: String,
    /// Pairs `docker info` prints under the storage driver.
    pub driver_status: Vec<[String; 2]>,
    /// Pairs printed at the top level (swarm classic's; always null).
    pub system_status: Option<Vec<[String; 2]>>,
    /// Where this server keeps its data.
    pub docker_root_dir: String,
    /// The volume, network and log drivers available.
    pub plugins: PluginsInfo,
    /// `-m` is enforced.
    pub memory_limit: bool,
    /// `--memory-swap` is enforced.
    pub swap_limit: bool,
    /// `--cpu-period` is honoured.
    pub cpu_cfs_period: bool,
    /// `--cpu-quota` is honoured.
    pub cpu_cfs_quota: bool,
    /// `--cpu-shares` is honoured.
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    /// `--cpuset-cpus` is honoured.
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    /// `--pids-limit` is honoured.
    pub pids_limit: bool,
    /// `--oom-kill-disable` is honoured.
    pub oom_kill_disable: bool,
    /// Containers' traffic is forwarded.
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    /// The server logs at debug level.
    pub debug: bool,
    /// File descriptors this server has open.
    #[serde(rename = "NFd")]
    pub n_fd: i64,
    /// Tasks alive in this server (Docker counts goroutines).
    pub n_goroutines: i64,
    /// Now, RFC 3339 with nanoseconds.
    pub system_time: String,
    /// The log driver a container gets without `--log-driver`.
    pub logging_driver: String,
    /// How container cgroups are managed.
    pub cgroup_driver: String,
    /// `1` or `2`.
    pub cgroup_version: String,
    /// Clients following `/events`.
    pub n_events_listener: i64,
    /// `uname -r` of this server.
    pub kernel_version: String,
    /// [`OPERATING_SYSTEM`].
    pub operating_system: String,
    /// `linux`.
    #[serde(rename = "OSType")]
    pub os_type: String,
    /// `uname -m` of this server, as Docker reports it (`x86_64`).
    pub architecture: String,
    /// [`INDEX_SERVER_ADDRESS`].
    pub index_server_address: String,
    /// How registries are reached.
    pub registry_config: RegistryConfig,
    /// CPUs of all nodes.
    #[serde(rename = "NCPU")]
    pub ncpu: i64,
    /// Memory of all nodes, bytes.
    pub mem_total: i64,
    /// Swarm generic resources (none).
    pub generic_resources: Option<Vec<serde_json::Value>>,
    /// This server's `HTTP_PROXY`.
    pub http_proxy: String,
    /// This server's `HTTPS_PROXY`.
    pub https_proxy: String,
    /// This server's `NO_PROXY`.
    pub no_proxy: String,
    /// The data center's name (this machine's hostname when no node says).
    pub name: String,
    /// Engine labels (none).
    pub labels: Vec<String>,
    /// Never experimental.
    pub experimental_build: bool,
    /// sdc-docker's version.
    pub server_version: String,
    /// Swarm mode (inactive: sdc-docker is not a swarm).
    pub swarm: SwarmInfo,
    /// Containers keep running while the server restarts: each has its own
    /// monitor on its node.
    pub live_restore_enabled: bool,
    /// Windows isolation (empty).
    pub isolation: String,
    /// The init binary for `--init` (none).
    pub init_binary: String,
    /// containerd's commit (none).
    pub containerd_commit: Commit,
    /// runc's commit (not known here: it is each node's).
    pub runc_commit: Commit,
    /// The init binary's commit (none).
    pub init_commit: Commit,
    /// Security features, `name=…` strings (none reported).
    pub security_options: Vec<String>,
    /// Warnings `docker info` prints (none).
    pub warnings: Vec<String>,
    /// CDI spec directories (none).
    #[serde(rename = "CDISpecDirs")]
    pub cdi_spec_dirs: Vec<String>,
}

/// Docker's `system.PluginsInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginsInfo {
    /// Volume drivers.
    pub volume: Vec<String>,
    /// Network drivers.
    pub network: Vec<String>,
    /// Authorization plugins (none).
    pub authorization: Option<Vec<String>>,
    /// Log drivers.
    pub log: Vec<String>,
}

/// Docker's `registry.ServiceConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfig {
    /// Networks whose registries are spoken to in plain HTTP.
    #[serde(rename = "InsecureRegistryCIDRs")]
    pub insecure_registry_cidrs: Vec<String>,
    /// Per-registry settings, by name.
    pub index_configs: BTreeMap<String, IndexInfo>,
    /// Registry mirrors (none).
    pub mirrors: Vec<String>,
}

/// Docker's `registry.IndexInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexInfo {
    /// The registry's name.
    pub name: String,
    /// Its mirrors.
    pub mirrors: Vec<String>,
    /// Spoken to over TLS.
    pub secure: bool,
    /// Docker Hub.
    pub official: bool,
}

/// Docker's `swarm.Info`, as a node outside any swarm reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    /// Empty.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// Empty.
    pub node_addr: String,
    /// `inactive`.
    pub local_node_state: String,
    /// False.
    pub control_available: bool,
    /// Empty.
    pub error: String,
    /// None.
    pub remote_managers: Option<Vec<serde_json::Value>>,
}

/// Docker's `system.Commit`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// The commit.
    #[serde(rename = "ID")]
    pub id: String,
}

/// What the store says about the account and the data center.
#[derive(Clone, Debug, Default, PartialEq)]
struct Census {
    /// The account counted.
    account: String,
    /// Containers by Docker's three buckets.
    running: u64,
    paused: u64,
    stopped: u64,
    /// Image objects.
    images: u64,
    /// Registered nodes.
    nodes: u64,
    /// Their CPUs and memory, summed.
    cpus: i64,
    memory_bytes: i64,
    /// The first data center name a node reports.
    datacenter: Option<String>,
}

impl Census {
    /// Count the account's containers and images and the nodes' capacity.
    async fn take(state: &DockerState) -> Result<Census, ApiError> {
        let containers = super::super::containers::containers_api(state);
        let mut census = Census {
            account: containers.account().to_string(),
            ..Census::default()
        };
        for container in containers.list().await?.items {
            census.count(&container);
        }
        census.images = images_api(state).list().await?.items.len() as u64;
        let mut nodes = Api::<Node>::default_account(state.store.clone())
            .list()
            .await?
            .items;
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        census.nodes = nodes.len() as u64;
        for node in &nodes {
            census.cpus += node.spec.cpus.max(0);
            census.memory_bytes += node.spec.memory_bytes.max(0);
        }
        census.datacenter = nodes
            .iter()
            .map(|n| n.spec.datacenter.trim())
            .find(|dc| !dc.is_empty())
            .map(str::to_string);
        Ok(census)
    }

    /// Put `container` in moby's bucket for it.
    fn count(&mut self, container: &Container) {
        match container.status.state {
            ContainerState::Running | ContainerState::Restarting => self.running += 1,
            ContainerState::Paused => self.paused += 1,
            ContainerState::Created
            | ContainerState::Removing
            | ContainerState::Exited
            | ContainerState::Dead => self.stopped += 1,
        }
    }
}

/// What is known of the machine this server runs on.
#[derive(Clone, Debug, PartialEq)]
struct Host {
    hostname: String,
    machine: String,
    cpus: i64,
    memory_bytes: i64,
    cgroup_version: &'static str,
    root_dir: String,
    open_files: i64,
    tasks: i64,
    insecure_registries: Vec<String>,
    events_listeners: i64,
}

impl Host {
    /// Look at this machine.
    fn current(state: &DockerState) -> Host {
        let uname = rustix::system::uname();
        let images_root = state.images.store.root();
        Host {
            hostname: uname.nodename().to_string_lossy().into_owned(),
            machine: uname.machine().to_string_lossy().into_owned(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as i64),
            memory_bytes: mem_total().unwrap_or(0),
            cgroup_version: if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "2"
            } else {
                "1"
            },
            root_dir: images_root
                .parent()
                .unwrap_or(images_root)
                .display()
                .to_string(),
            open_files: std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64),
            tasks: tokio::runtime::Handle::try_current()
                .map_or(0, |h| h.metrics().num_alive_tasks() as i64),
            insecure_registries: state.images.insecure_registries.clone(),
            events_listeners: i64::try_from(state.events.listeners()).unwrap_or(i64::MAX),
        }
    }
}

/// This machine's memory in bytes, from `/proc/meminfo`.
fn mem_total() -> Option<i64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The log drivers sdc-docker runs, in Docker's order.
fn log_drivers() -> Vec<String> {
    DOCKER_LOG_DRIVERS
        .iter()
        .filter(|name| {
            let config = LogConfig {
                type_: name.to_string(),
                ..LogConfig::default()
            };
            !matches!(config.validate(), Err(LogConfigError::UnsupportedDriver(_)))
        })
        .map(|name| name.to_string())
        .collect()
}

/// The registry settings as dockerd shows them: Docker Hub over TLS,
/// loopback registries in plain HTTP (as sdc-docker's registry client
/// treats them), and each `--insecure-registry` host as an insecure index.
fn registry_config(insecure: &[String]) -> RegistryConfig {
    let hub = IndexInfo {
        name: "docker.io".to_string(),
        mirrors: Vec::new(),
        secure: true,
        official: true,
    };
    let mut index_configs = BTreeMap::from([(hub.name.clone(), hub)]);
    for host in insecure {
        index_configs.insert(
            host.clone(),
            IndexInfo {
                name: host.clone(),
                mirrors: Vec::new(),
                secure: false,
                official: false,
            },
        );
    }
    RegistryConfig {
        insecure_registry_cidrs: vec!["::1/128".to_string(), "127.0.0.0/8".to_string()],
        index_configs,
        mirrors: Vec::new(),
    }
}

/// A proxy variable of this server, upper or lower case.
fn proxy_env(name: &str) -> String {
    std::env::var(name)
        .or_else(|_| std::env::var(name.to_ascii_lowercase()))
        .unwrap_or_default()
}

impl Info {
    /// The answer for `census` taken on `host`.
    fn new(census: Census, host: Host) -> Info {
        let name = census.datacenter.clone().unwrap_or(host.hostname);
        let (ncpu, mem_total) = if census.nodes == 0 {
            (host.cpus, host.memory_bytes)
        } else {
            (census.cpus, census.memory_bytes)
        };
        let system_time = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        Info {
            id: name.clone(),
            containers: census.running + census.paused + census.stopped,
            containers_running: census.running,
            containers_paused: census.paused,
            containers_stopped: census.stopped,
            images: census.images,
            driver: STORAGE_DRIVER.to_string(),
            driver_status: vec![
                ["SDCAccount".to_string(), census.account],
                ["Nodes".to_string(), census.nodes.to_string()],
            ],
            system_status: None,
            docker_root_dir: host.root_dir,
            plugins: PluginsInfo {
                volume: vec!["local".to_string()],
                network: vec!["bridge".to_string(), "overlay".to_string()],
                authorization: None,
                log: log_drivers(),
            },
            memory_limit: true,
            swap_limit: true,
            cpu_cfs_period: true,
            cpu_cfs_quota: true,
            cpu_shares: true,
            cpu_set: true,
            pids_limit: true,
            oom_kill_disable: false,
            ipv4_forwarding: true,
            debug: tracing::enabled!(tracing::Level::DEBUG),
            n_fd: host.open_files,
            n_goroutines: host.tasks,
            system_time,
            logging_driver: "json-file".to_string(),
            cgroup_driver: "cgroupfs".to_string(),
            cgroup_version: host.cgroup_version.to_string(),
            n_events_listener: host.events_listeners,
            kernel_version: kernel_version(),
            operating_system: OPERATING_SYSTEM.to_string(),
            os_type: "linux".to_string(),
            architecture: host.machine,
            index_server_address: INDEX_SERVER_ADDRESS.to_string(),
            registry_config: registry_config(&host.insecure_registries),
            ncpu,
            mem_total,
            generic_resources: None,
            http_proxy: proxy_env("HTTP_PROXY"),
            https_proxy: proxy_env("HTTPS_PROXY"),
            no_proxy: proxy_env("NO_PROXY"),
            name,
            labels: Vec::new(),
            experimental_build: false,
            server_version: VERSION.to_string(),
            swarm: SwarmInfo {
                local_node_state: "inactive".to_string(),
                ..SwarmInfo::default()
            },
            live_restore_enabled: true,
            isolation: String::new(),
            init_binary: String::new(),
            containerd_commit: Commit::default(),
            runc_commit: Commit::default(),
            init_commit: Commit::default(),
            security_options: Vec::new(),
            warnings: Vec::new(),
            cdi_spec_dirs: Vec::new(),
        }
    }
}

/// Answer `GET /info`.
pub async fn info(State(state): State<DockerState>) -> Result<Json<Info>, ApiError> {
    let census = Census::take(&state).await?;
    Ok(Json(Info::new(census, Host::current(&state))))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use sdc_docker_store::Resource;
    use sdc_docker_store::model::{ContainerSpec, Image, ImageSpec, NodeSpec};
    use tower::ServiceExt;

    use super::*;
    use crate::test_support::{TestStore, body_json};

    /// `GET /info` against `store`, decoded.
    async fn get_info(store: &TestStore) -> Info {
        let request = Request::builder()
            .uri("/v1.45/info")
            .body(Body::empty())
            .expect("request");
        let response = crate::docker::router(
            store.store.clone(),
            store.image_context(),
            crate::docker::NodeStreams::new(),
        )
        .oneshot(request)
        .await
        .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_value(body_json(response).await).expect("an Info")
    }

    async fn add_container(store: &TestStore, name: &str, state: ContainerState) {
        let api = Api::<Container>::default_account(store.store.clone());
        let mut container = api
            .create(&Container::new(name, ContainerSpec::default()))
            .await
            .expect("created");
        container.status.state = state;
        api.update_status(&container).await.expect("status written");
    }

    async fn add_node(store: &TestStore, name: &str, datacenter: &str, cpus: i64, gib: i64) {
        Api::<Node>::default_account(store.store.clone())
            .create(&Node::new(
                name,
                NodeSpec {
                    uuid: name.to_string(),
                    hostname: name.to_string(),
                    datacenter: datacenter.to_string(),
                    driver: "linux".to_string(),
                    cpus,
                    memory_bytes: gib << 30,
                    ..NodeSpec::default()
                },
            ))
            .await
            .expect("node created");
    }

    #[tokio::test]
    async fn containers_are_counted_by_state_as_moby_counts_them() {
        let store = TestStore::new().await;
        add_container(&store, "up", ContainerState::Running).await;
        add_container(&store, "bouncing", ContainerState::Restarting).await;
        add_container(&store, "frozen", ContainerState::Paused).await;
        add_container(&store, "new", ContainerState::Created).await;
        add_container(&store, "done", ContainerState::Exited).await;
        add_container(&store, "gone", ContainerState::Dead).await;
        let info = get_info(&store).await;
        assert_eq!(info.containers, 6);
        assert_eq!(info.containers_running, 2);
        assert_eq!(info.containers_paused, 1);
        assert_eq!(info.containers_stopped, 3);
    }

    #[tokio::test]
    async fn images_are_counted() {
        let store = TestStore::new().await;
        assert_eq!(get_info(&store).await.images, 0);
        let images = Api::<Image>::default_account(store.store.clone());
        for n in 1..=2u8 {
            let hex = format!("{n:0>64}");
            let spec = ImageSpec {
                id: format!("sha256:{hex}"),
                ..ImageSpec::default()
            };
            images.create(&Image::new(&hex, spec)).await.expect("image");
        }
        assert_eq!(get_info(&store).await.images, 2);
    }

    #[tokio::test]
    async fn capacity_and_name_are_the_data_centers() {
        let store = TestStore::new().await;
        add_node(&store, "cn1", "", 8, 16).await;
        add_node(&store, "cn2", "us-east-1", 4, 32).await;
        let info = get_info(&store).await;
        assert_eq!(info.ncpu, 12);
        assert_eq!(info.mem_total, 48 << 30);
        assert_eq!(info.name, "us-east-1");
        assert_eq!(info.id, "us-east-1");
        assert!(
            info.driver_status
                .contains(&["Nodes".to_string(), "2".to_string()])
        );
    }

    #[tokio::test]
    async fn without_nodes_capacity_and_name_are_this_machines() {
        let store = TestStore::new().await;
        let info = get_info(&store).await;
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        assert_eq!(info.name, hostname);
        assert_eq!(info.mem_total, mem_total().expect("/proc/meminfo"));
        assert!(info.ncpu >= 1);
        assert!(
            info.driver_status
                .contains(&["Nodes".to_string(), "0".to_string()])
        );
    }

    #[tokio::test]
    async fn it_describes_sdc_docker_in_dockers_shape() {
        let store = TestStore::new().await;
        let info = get_info(&store).await;
        assert_eq!(info.driver, "sdc");
        assert_eq!(
            info.driver_status[0],
            ["SDCAccount".to_string(), "default".to_string()]
        );
        assert_eq!(info.operating_system, "SmartDataCenter");
        assert_eq!(info.os_type, "linux");
        assert_eq!(info.server_version, VERSION);
        assert_eq!(info.kernel_version, kernel_version());
        assert_eq!(info.index_server_address, "https://index.docker.io/v1/");
        assert_eq!(info.swarm.local_node_state, "inactive");
        assert_eq!(info.logging_driver, "json-file");
        assert!(info.warnings.is_empty());
        assert!(info.registry_config.index_configs["docker.io"].official);
        assert!(!info.experimental_build);
        assert!(OffsetDateTime::parse(&info.system_time, &Rfc3339).is_ok());
    }

    #[tokio::test]
    async fn the_log_plugins_are_the_drivers_sdc_docker_runs() {
        let info = get_info(&TestStore::new().await).await;
        assert_eq!(
            info.plugins.log,
            ["fluentd", "gelf", "json-file", "none", "syslog"]
        );
    }

    #[tokio::test]
    async fn the_json_has_dockers_field_names() {
        let store = TestStore::new().await;
        let request = Request::builder()
            .uri("/info")
            .body(Body::empty())
            .expect("request");
        let response = crate::docker::router(
            store.store.clone(),
            store.image_context(),
            crate::docker::NodeStreams::new(),
        )
        .oneshot(request)
        .await
        .expect("infallible");
        let json = body_json(response).await;
        for field in [
            "ID",
            "NCPU",
            "NFd",
            "CPUShares",
            "CPUSet",
            "IPv4Forwarding",
            "OSType",
            "CDISpecDirs",
            "ContainersRunning",
            "DockerRootDir",
        ] {
            assert!(json.get(field).is_some(), "{field} missing: {json}");
        }
        assert_eq!(json["Swarm"]["NodeID"], "");
        assert_eq!(json["RuncCommit"]["ID"], "");
        assert_eq!(
            json["RegistryConfig"]["InsecureRegistryCIDRs"],
            serde_json::json!(["::1/128", "127.0.0.0/8"])
        );
    }

    #[test]
    fn insecure_registries_show_as_insecure_indexes_beside_docker_hub() {
        let config = registry_config(&["myreg.local:5000".to_string()]);
        let json = serde_json::to_value(&config).expect("json");
        assert_eq!(json["IndexConfigs"]["docker.io"]["Secure"], true);
        assert_eq!(json["IndexConfigs"]["myreg.local:5000"]["Secure"], false);
        assert_eq!(json["IndexConfigs"]["myreg.local:5000"]["Official"], false);
    }
}
