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
use sdc_docker_zones::{LinuxConfig, LinuxDriver, ZoneDriver, ZoneStreams};

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
}

/// The node while it runs: stop it to take its `Node` off the store.
pub struct RunningNode {
    agent: NodeAgent,
    sweep: tokio::task::JoinHandle<()>,
    stop_sweep: tokio::sync::watch::Sender<bool>,
    streams: Server,
    /// The node's zone driver (also used by the API's streaming side).
    pub driver: Arc<LinuxDriver>,
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
    let mut info = NodeInfo::probe(data_dir, &data_dir.join("node-uuid"))
        .context("reading this machine's capacity")?;
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
    let streams = Server::bind(
        args.streams_address,
        driver.clone() as Arc<dyn ZoneStreams>,
        token.clone(),
    )
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
        driver: driver.clone() as Arc<dyn ZoneDriver>,
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
    let mut keys =
        zone_event_keys(driver.clone() as Arc<dyn ZoneDriver>, store.clone(), 2).into_iter();
    if let (Some(provisioning), Some(restart)) = (keys.next(), keys.next()) {
        manager.add(provisioning_controller(zones.clone()).triggered_by(provisioning));
        manager.add(restart_controller(zones).triggered_by(restart));
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    manager.add(log_forwarding_controller(
        Arc::new(ZoneLogs(driver.clone())),
        LogForwardingOptions::new(agent.name(), hostname),
    ));
    Ok(RunningNode {
        agent,
        sweep,
        stop_sweep,
        streams,
        driver,
    })
}

/// Where a container's host log is: its zone's json-file log; the
/// forwarder keeps its position beside it (`<log>.forward.json`), where a
/// restart of the zone leaves it alone.
struct ZoneLogs(Arc<LinuxDriver>);

impl LogPaths for ZoneLogs {
    fn host_log(&self, container: &sdc_docker_store::model::Container) -> Option<PathBuf> {
        self.0.log_file(&container_zone_id(container)?)
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
