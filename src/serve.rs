//! `sdc-docker serve`: open the store, bind every address, serve the Docker
//! API and the admin API (with `/metrics`), run the controllers, and stop
//! cleanly.
//!
//! Every address is bound before anything is served, so a typo in `-H`
//! fails at once. Shutdown is a `watch` channel flipped once: servers stop
//! accepting and finish open requests (for at most [`GRACE`]; long streams
//! are cut after that), the controllers drain and resign their
//! leaderships, unix socket files are removed.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use sdc_docker_controllers::{Manager, ManagerOptions};

use crate::address::Address;
use crate::cli::ServeArgs;
use crate::validation;

/// How long open connections may take to finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// A bound listener, remembering the socket file to remove.
enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Run the server until `shutdown` completes (or a listener fails).
pub async fn run(args: ServeArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    // Every address is bound before anything else takes a port: the node's
    // streams server and the store's connections use ephemeral ports, which
    // could otherwise take an address given on the command line (a port a
    // test or an operator picked as free) before it is bound.
    let mut docker_listeners = Vec::new();
    for host in &args.hosts {
        docker_listeners.push(bind(host).await?);
    }
    if let Address::Tcp(_) = args.admin_host {
        tracing::warn!(address = %args.admin_host, "the admin API has no authentication; anyone who reaches this address can change every object");
    }
    let admin_listener = bind(&args.admin_host).await?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    let store = sdc_docker_store::connect(&args.store, &args.data_dir)
        .await
        .with_context(|| format!("opening the store (--store {})", args.store))?;
    tracing::info!(store = %args.store, data_dir = %args.data_dir.display(), "store open");

    let image_store = sdc_docker_images::store::ImageStore::open(args.data_dir.join("images"))
        .context("opening the image store")?;
    let images = sdc_docker_api::docker::ImageContext::new(
        image_store.clone(),
        args.node.insecure_registries.clone(),
    )
    .context("setting up the registry client")?;
    let node_images = image_store.clone();
    let nodes = sdc_docker_api::docker::NodeStreams::new();
    let docker = sdc_docker_api::docker::router(store.clone(), images, nodes.clone());
    let instance_id = args.instance_id.clone().unwrap_or_else(default_instance_id);
    let mut manager = Manager::new(
        store.clone(),
        ManagerOptions {
            instance_id: instance_id.clone(),
            lease_ttl: args.lease_ttl,
            lease_renew: args.lease_renew,
            ..Default::default()
        },
    );
    validation::add_controllers(&mut manager);
    sdc_docker_controllers::placement::add_controllers(&mut manager, Default::default());
    let seeded = sdc_docker_controllers::packages::seed_default_packages(store.clone())
        .await
        .context("seeding the default packages")?;
    if seeded > 0 {
        tracing::info!(packages = seeded, "default packages created");
    }
    let node = crate::node::start(
        store.clone(),
        &args.data_dir,
        &args.node,
        node_images,
        &mut manager,
    )
    .await?;
    nodes.register(node.name(), node.streams_side.clone());
    let metrics = manager.metrics();
    let admin = sdc_docker_api::admin::router(store.clone(), Arc::new(move || metrics.render()));
    let mut bound = Vec::new();
    for listener in docker_listeners {
        bound.push((listener, docker.clone(), "docker"));
    }
    bound.push((admin_listener, admin, "admin"));

    let (stop, stopped) = watch::channel(false);
    let mut manager_stopped = stopped.clone();
    tracing::info!(instance = %instance_id, lease_ttl = ?args.lease_ttl, "starting controllers");
    let controllers = tokio::spawn(manager.run(async move {
        let _ = manager_stopped.wait_for(|stop| *stop).await;
    }));
    let mut sockets = Vec::new();
    let mut servers = JoinSet::new();
    for (listener, app, api) in bound {
        if let Bound::Unix(_, path) = &listener {
            sockets.push(path.clone());
        }
        servers.spawn(serve_one(listener, app, api, stopped.clone()));
    }

    let mut failure = None;
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        Some(result) = servers.join_next() => {
            failure = Some(match result {
                Ok(Ok(())) => anyhow::anyhow!("a listener stopped on its own"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a listener task failed: {e}"),
            });
        }
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(GRACE, async {
        while let Some(result) = servers.join_next().await {
            if let Ok(Err(e)) = result {
                tracing::warn!(error = %e, "listener ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?GRACE, "connections still open after the grace period; closing them");
        servers.abort_all();
    }
    match tokio::time::timeout(GRACE, controllers).await {
        Err(_) => tracing::warn!("the controllers did not stop in time"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "a controller failed"),
        Ok(_) => {}
    }
    for path in sockets {
        let _ = std::fs::remove_file(&path);
    }
    // The Node goes; its zones keep running for the next start to adopt.
    node.stop().await;
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Bind one address: TCP, or a unix socket (removing a stale socket file
/// first, refusing to take over one another server still answers on).
async fn bind(address: &Address) -> anyhow::Result<Bound> {
    match address {
        Address::Tcp(hostport) => {
            let listener = TcpListener::bind(hostport.as_str())
                .await
                .with_context(|| format!("binding {address}"))?;
            Ok(Bound::Tcp(listener))
        }
        Address::Unix(path) => {
            prepare_socket_path(path).with_context(|| format!("binding {address}"))?;
            let listener =
                UnixListener::bind(path).with_context(|| format!("binding {address}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
            Ok(Bound::Unix(listener, path.clone()))
        }
    }
}

fn prepare_socket_path(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; remove it or choose another path",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("another server is listening on {}", path.display());
    }
    std::fs::remove_file(path)
        .with_context(|| format!("removing the stale socket {}", path.display()))
}

async fn serve_one(
    listener: Bound,
    app: Router,
    api: &'static str,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    match listener {
        Bound::Tcp(listener) => {
            let address = listener.local_addr().context("reading a bound address")?;
            tracing::info!(api, address = %format!("tcp://{address}"), "listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .with_context(|| format!("serving the {api} API on tcp://{address}"))
        }
        Bound::Unix(listener, path) => {
            tracing::info!(api, address = %format!("unix://{}", path.display()), "listening");
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .with_context(|| format!("serving the {api} API on unix://{}", path.display()))
        }
    }
}

/// This instance's name in elections when `--instance-id` is not given:
/// the hostname and the process id.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sdc-docker".to_string());
    format!("{host}-{}", std::process::id())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
