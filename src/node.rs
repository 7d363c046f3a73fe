//! This machine as a compute node: its `Node` object kept alive under a
//! lease, its zone driver, the server of its zones' streams, and the
//! node-scoped controllers (provisioning and restart policy, log
//! forwarding) added to a controller [`Manager`]. `sdc-docker serve` runs
//! it beside the APIs; `sdc-docker agent` runs it alone.
//!
//! The streams server (`sdc_docker_zones::remote`) is how an API instance
//! on another process or machine reaches a container's logs, attach, exec,
//! files and stats here: it listens on `--streams-address` and the node
//! publishes the address it bound and a token made at random at each start
//! in its `Node` object (`spec.address`, `spec.streamsToken`). Anyone who
//! reads the store can use them: the store is the trust boundary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};
use sdc_docker_controllers::Manager;
use sdc_docker_controllers::logs::{LogForwardingOptions, LogPaths, log_forwarding_controller};
use sdc_docker_controllers::nodes::{NodeAgent, NodeAgentOptions, NodeInfo, register_node};
use sdc_docker_controllers::zones::provisioning::provisioning_controller;
use sdc_docker_controllers::zones::restart::restart_controller;
use sdc_docker_controllers::zones::{NodeZones, container_zone_id, zone_event_keys};
use sdc_docker_images::registry::{Client, ClientConfig};
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::Store;
use sdc_docker_zones::remote::{Server, Token};
use sdc_docker_zones::smartos::sysinfo::Sysinfo;
use sdc_docker_zones::smartos::{Commands, PayloadOptions, Tool};
use sdc_docker_zones::{
    LinuxConfig, LinuxDriver, NicSpec, SmartosConfig, SmartosDriver, ZoneDriver, ZoneStreams,
};

/// How this machine runs zones.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// The OCI runtime the linux zone driver runs containers with.
    #[arg(long, default_value = "runc")]
    pub oci_runtime: PathBuf,
    /// This node's name (its `Node` object); default: the hostname.
    #[arg(long)]
    pub node_name: Option<String>,
    /// The monitor binary; default: `sdc-docker-monitor` next to this
    /// binary, else on PATH.
    #[arg(long)]
    pub monitor: Option<PathBuf>,
    /// How long a zone no Container wants (its spec deleted while the node
    /// was down, say) is left alone before it is deleted.
    #[arg(long, default_value = "5m", value_parser = |s: &str| humantime::parse_duration(s).map_err(|e| e.to_string()))]
    pub orphan_grace: Duration,
    /// A registry (`host` or `host:port`) reached in plain HTTP instead of
    /// HTTPS, like dockerd's flag (repeatable): for `docker pull` on a
    /// server, and for the images a node pulls itself (a container placed
    /// on it whose image another node pulled). Loopback registries always
    /// are.
    #[arg(long = "insecure-registry", action = ArgAction::Append)]
    pub insecure_registries: Vec<String>,
    /// Where this node serves its zones' streams (logs, attach, exec, cp,
    /// stats) to the API instances: `ip:port`, port 0 for any free one.
    /// The address bound is published in the node's `Node` object, so it
    /// must be one the API instances reach: the loopback default serves
    /// only those on this machine; an agent on a machine of its own needs
    /// its admin-network address (an unspecified address such as 0.0.0.0
    /// is refused, as nobody can dial it).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub streams_address: SocketAddr,
    /// How zones are made: `linux` (an OCI runtime on this machine) or
    /// `smartos` (vmadm on a SmartOS compute node).
    #[arg(long, value_enum, default_value_t = DriverKind::Linux)]
    pub driver: DriverKind,
    #[command(flatten)]
    pub smartos: SmartosArgs,
}

/// The zone drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// Containers under an OCI runtime on overlay root file systems.
    Linux,
    /// LX and joyent-minimal zones through vmadm.
    Smartos,
}

/// Where the SmartOS driver finds the platform's tools and files. Each
/// tool is a command line (split at spaces): a path, or a wrapper with its
/// arguments.
#[derive(Debug, Clone, Args)]
pub struct SmartosArgs {
    /// vmadm(8).
    #[arg(long, default_value = "/usr/sbin/vmadm")]
    pub vmadm: String,
    /// imgadm(8).
    #[arg(long, default_value = "/usr/sbin/imgadm")]
    pub imgadm: String,
    /// zfs(8).
    #[arg(long, default_value = "/usr/sbin/zfs")]
    pub zfs: String,
    /// zlogin(1).
    #[arg(long, default_value = "/usr/sbin/zlogin")]
    pub zlogin: String,
    /// sysinfo(8).
    #[arg(long, default_value = "/usr/bin/sysinfo")]
    pub sysinfo: String,
    /// A command put before every tool (`pfexec`, `ssh root@cn1`); the
    /// zones' files (logs, root file systems, imgadm's database) are still
    /// read and written on this machine.
    #[arg(long, default_value = "")]
    pub smartos_command_prefix: String,
    /// The pool of zones and images.
    #[arg(long, default_value = "zones")]
    pub zpool: String,
    /// Where zone paths are (`<zones-root>/<uuid>/root`, `…/logs`).
    #[arg(long, default_value = "/zones")]
    pub zones_root: PathBuf,
    /// imgadm's database of installed images.
    #[arg(long, default_value = "/var/imgadm/images")]
    pub imgadm_db: PathBuf,
    /// The nic tag of the DHCP nic every zone gets until the network
    /// controller allocates addresses.
    #[arg(long, default_value = "admin")]
    pub nic_tag: String,
    /// The nic tag of the DHCP nic added to zones that publish ports
    /// (`-p`/`-P`); empty adds none.
    #[arg(long, default_value = "external")]
    pub external_nic_tag: String,
    /// A name server for zones whose container gives no `--dns`
    /// (repeatable).
    #[arg(long = "resolver", action = ArgAction::Append)]
    pub resolvers: Vec<String>,
    /// `kernel_version` of lx zones.
    #[arg(long, default_value = sdc_docker_zones::smartos::payload::DEFAULT_KERNEL_VERSION)]
    pub lx_kernel_version: String,
    /// zoneadmd's log size before rotation, bytes, unless json-file's
    /// `max-size` says otherwise (sdc-docker's DEFAULT_MAX_LOG_SIZE).
    #[arg(long, default_value_t = sdc_docker_zones::smartos::payload::DEFAULT_MAX_LOG_SIZE)]
    pub default_max_log_size: u64,
}

impl SmartosArgs {
    /// The driver configuration these flags describe.
    pub fn config(&self) -> SmartosConfig {
        let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let commands = Commands {
            vmadm: split(&self.vmadm),
            imgadm: split(&self.imgadm),
            zfs: split(&self.zfs),
            zlogin: split(&self.zlogin),
            sysinfo: split(&self.sysinfo),
        }
        .with_prefix(&split(&self.smartos_command_prefix));
        SmartosConfig {
            commands,
            zpool: self.zpool.clone(),
            zones_root: self.zones_root.clone(),
            imgadm_db: self.imgadm_db.clone(),
            payload: PayloadOptions {
                kernel_version: self.lx_kernel_version.clone(),
                default_nics: vec![NicSpec {
                    nic_tag: self.nic_tag.clone(),
                    ip: "dhcp".to_owned(),
                    primary: true,
                    ..NicSpec::default()
                }],
                external_nic: (!self.external_nic_tag.is_empty()).then(|| NicSpec {
                    nic_tag: self.external_nic_tag.clone(),
                    ip: "dhcp".to_owned(),
                    primary: true,
                    ..NicSpec::default()
                }),
                default_resolvers: self.resolvers.clone(),
                default_max_log_size: self.default_max_log_size,
            },
            ..SmartosConfig::default()
        }
    }
}

/// The node while it runs: stop it to take its `Node` off the store.
pub struct RunningNode {
    agent: NodeAgent,
    sweep: tokio::task::JoinHandle<()>,
    stop_sweep: tokio::sync::watch::Sender<bool>,
    streams: Server,
    /// The node's zone driver.
    pub driver: Arc<dyn ZoneDriver>,
    /// The streaming side of the same zones (used by the API).
    pub streams_side: Arc<dyn ZoneStreams>,
}

impl RunningNode {
    /// The node's name.
    pub fn name(&self) -> &str {
        self.agent.name()
    }

    /// Revokes the node's lease (its `Node` goes at once), then stops
    /// serving streams (open sessions end). Zones keep running.
    pub async fn stop(self) {
        let _ = self.stop_sweep.send(true);
        let _ = self.sweep.await;
        self.agent.stop().await;
        self.streams.stop().await;
    }
}

/// Registers this machine as a node in `store` and adds its node-scoped
/// controllers to `manager`. Zones live under `<data_dir>/zones`; images
/// come from `images`.
pub async fn start(
    store: Arc<dyn Store>,
    data_dir: &Path,
    args: &NodeArgs,
    images: ImageStore,
    manager: &mut Manager,
) -> anyhow::Result<RunningNode> {
    let machine = match args.driver {
        DriverKind::Linux => {
            let runtime = resolve_runtime(&args.oci_runtime)?;
            let driver = Arc::new(
                LinuxDriver::new(LinuxConfig {
                    root: data_dir.join("zones"),
                    runtime,
                    runtime_root: data_dir.join("runc"),
                    monitor_binary: args.monitor.clone(),
                })
                .context("setting up the linux zone driver")?,
            );
            let info = NodeInfo::probe(data_dir, &data_dir.join("node-uuid"))
                .context("reading this machine's capacity")?;
            let logs = driver.clone();
            Machine {
                driver: driver.clone(),
                streams: driver,
                info,
                host_log: Some(Arc::new(move |id: &str| logs.log_file(id))),
            }
        }
        DriverKind::Smartos => smartos_machine(&args.smartos).await?,
    };
    let driver = machine.driver;
    let mut info = machine.info;
    if let Some(name) = &args.node_name {
        info.name = name.clone();
    }
    if args.streams_address.ip().is_unspecified() {
        anyhow::bail!(
            "--streams-address {}: give an address the API instances reach this machine at; it is published as is, and nobody can dial an unspecified one",
            args.streams_address
        );
    }
    let token = Token::generate();
    let streams = Server::bind(args.streams_address, machine.streams.clone(), token.clone())
        .await
        .with_context(|| {
            format!(
                "serving zone streams on --streams-address {}",
                args.streams_address
            )
        })?;
    info.address = streams.address().to_string();
    info.streams_token = token.as_str().to_owned();
    let agent = match register_node(store.clone(), info, NodeAgentOptions::default()).await {
        Ok(agent) => agent,
        Err(e) => {
            streams.stop().await;
            return Err(anyhow::Error::new(e).context("registering this node"));
        }
    };
    tracing::info!(node = agent.name(), streams = %streams.address(), "node registered");
    let registry = Client::new(ClientConfig {
        insecure_registries: args.insecure_registries.clone(),
        ..Default::default()
    })
    .context("setting up the node's registry client")?;
    let zones = NodeZones {
        node: agent.name().to_owned(),
        driver: driver.clone(),
        images,
        registry,
        pulls: Arc::default(),
        default_stop_timeout: Duration::from_secs(10),
    };
    let (stop_sweep, mut sweep_stopped) = tokio::sync::watch::channel(false);
    let sweep = tokio::spawn(sdc_docker_controllers::zones::orphans::sweep_orphans(
        store.clone(),
        zones.clone(),
        args.orphan_grace,
        async move {
            let _ = sweep_stopped.wait_for(|s| *s).await;
        },
    ));
    let mut keys = zone_event_keys(driver.clone(), store.clone(), 2).into_iter();
    if let (Some(provisioning), Some(restart)) = (keys.next(), keys.next()) {
        manager.add(provisioning_controller(zones.clone()).triggered_by(provisioning));
        manager.add(restart_controller(zones).triggered_by(restart));
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if let Some(host_log) = machine.host_log {
        // On SmartOS the platform forwards logs itself (zoneadmd, from the
        // zone's `docker:logdriver` and `docker:logconfig`).
        manager.add(log_forwarding_controller(
            Arc::new(ZoneLogs(host_log)),
            LogForwardingOptions::new(agent.name(), hostname),
        ));
    }
    Ok(RunningNode {
        agent,
        sweep,
        stop_sweep,
        streams,
        driver,
        streams_side: machine.streams,
    })
}

/// What a driver brings to the node.
struct Machine {
    driver: Arc<dyn ZoneDriver>,
    streams: Arc<dyn ZoneStreams>,
    info: NodeInfo,
    /// The host log of a zone, when this node forwards logs itself.
    host_log: Option<HostLog>,
}

/// The host log of zone `id`.
type HostLog = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

/// The SmartOS driver and this compute node as `sysinfo` describes it.
async fn smartos_machine(args: &SmartosArgs) -> anyhow::Result<Machine> {
    let config = args.config();
    let sysinfo = Sysinfo::read(&config.commands)
        .await
        .context("reading this compute node with sysinfo (see --sysinfo)")?;
    let pool = config
        .commands
        .run(
            Tool::Zfs,
            &["list", "-Hp", "-o", "used,available", &config.zpool],
            None,
        )
        .await
        .with_context(|| {
            format!(
                "reading the size of pool {} (see --zfs, --zpool)",
                config.zpool
            )
        })?;
    let disk_bytes = String::from_utf8_lossy(&pool.stdout)
        .split_whitespace()
        .filter_map(|n| n.parse::<i64>().ok())
        .sum();
    let info = NodeInfo {
        name: sdc_docker_controllers::nodes::node_name(&sysinfo.hostname),
        uuid: sysinfo.uuid,
        hostname: sysinfo.hostname,
        datacenter: sysinfo.datacenter,
        driver: "smartos".to_owned(),
        address: String::new(),
        streams_token: String::new(),
        memory_bytes: sysinfo.memory_mib.saturating_mul(1024 * 1024),
        cpus: sysinfo.cpus,
        disk_bytes,
    };
    let driver = SmartosDriver::new(config);
    Ok(Machine {
        driver: driver.clone(),
        streams: driver,
        info,
        host_log: None,
    })
}

/// Where a container's host log is: its zone's json-file log; the
/// forwarder keeps its position beside it (`<log>.forward.json`), where a
/// restart of the zone leaves it alone.
struct ZoneLogs(HostLog);

impl LogPaths for ZoneLogs {
    fn host_log(&self, container: &sdc_docker_store::model::Container) -> Option<PathBuf> {
        (self.0)(&container_zone_id(container)?)
    }

    fn state_dir(&self, _container: &sdc_docker_store::model::Container) -> Option<PathBuf> {
        None
    }
}

/// The runtime as a path: as given when it has a slash, else found on PATH.
fn resolve_runtime(runtime: &Path) -> anyhow::Result<PathBuf> {
    if runtime.components().count() > 1 {
        return Ok(runtime.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(runtime))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "the OCI runtime {} is not on PATH; install Debian's runc (scripts/install-deps.sh) or pass --oci-runtime",
                runtime.display()
            )
        })
}

/// `sdc-docker agent`: this machine as a node until `shutdown` completes.
pub async fn run_agent(
    args: crate::cli::AgentArgs,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    let store = sdc_docker_store::connect(&args.store, &args.data_dir)
        .await
        .with_context(|| format!("opening the store (--store {})", args.store))?;
    let images =
        ImageStore::open(args.data_dir.join("images")).context("opening the image store")?;
    let mut manager = Manager::new(store.clone(), Default::default());
    if args.node.streams_address.ip().is_loopback() {
        tracing::warn!(address = %args.node.streams_address, "zone streams are served on loopback: only API instances on this machine reach this node's logs, attach, exec and files (set --streams-address)");
    }
    let node = start(store, &args.data_dir, &args.node, images, &mut manager).await?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let controllers = tokio::spawn(manager.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = controllers.await;
    node.stop().await;
    Ok(())
}
