//! A node that runs real containers, for the end-to-end tests of the
//! container API: `sdc-docker serve` on this machine as its only node, with
//! busybox pulled from a fresh local registry. Needs root and runc;
//! [`can_run_zones`] says so (and why not) so a test can skip.

use std::path::{Path, PathBuf};

use sdc_docker_testkit::{Format, Registry, busybox};

use super::Server;

/// Whether zones can run here (root and runc); prints why not.
pub fn can_run_zones() -> bool {
    let root = super::is_root();
    let runc = Path::new("/usr/bin/runc").exists() || Path::new("/usr/sbin/runc").exists();
    if !(root && runc) {
        eprintln!("skipped: running zones needs root and runc (scripts/install-deps.sh)");
    }
    root && runc
}

/// Stops and removes every zone of a test's server when dropped, even when
/// the test failed: zones outlive their server by design, so a test takes
/// its own down. It also holds the test's turn (see [`TURN`]).
pub struct ZoneCleanup(
    PathBuf,
    #[allow(dead_code)] Option<tokio::sync::OwnedMutexGuard<()>>,
);

impl ZoneCleanup {
    /// Takes down the zones under the data dir `data` when dropped, holding
    /// `turn` until then.
    pub fn new(data: PathBuf, turn: Option<tokio::sync::OwnedMutexGuard<()>>) -> ZoneCleanup {
        ZoneCleanup(data, turn)
    }
}

impl Drop for ZoneCleanup {
    fn drop(&mut self) {
        super::remove_zones(&self.0);
    }
}

/// Whose turn it is among one test binary's zone tests: they run one at a
/// time, as two cores running several servers with tens of zones each
/// would measure the machine, not the code.
pub static TURN: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

/// A test's node: bind it whole (`let node = …`); fields drop in order, so
/// the server stops before its zones are taken down and no restart policy
/// brings them back meanwhile.
pub struct Node {
    /// The server.
    pub server: Server,
    /// The registry busybox came from.
    pub registry: Registry,
    /// busybox's reference (`127.0.0.1:PORT/library/busybox:latest`), pulled.
    pub image: String,
    _cleanup: ZoneCleanup,
}

impl Node {
    /// A server on the embedded store with busybox pulled.
    pub async fn start() -> Node {
        Node::start_with("embedded", &[]).await
    }

    /// A server on `store` with more `serve` arguments, busybox pulled.
    pub async fn start_with(store: &str, extra: &[&str]) -> Node {
        let turn = TURN.clone().lock_owned().await;
        let registry = Registry::start().await;
        registry
            .push(
                "library/busybox",
                "latest",
                &busybox::layered(Format::Docker),
            )
            .await;
        let server = Server::start_with(store, extra).await;
        let image = format!("{}/library/busybox:latest", registry.host());
        let cleanup = ZoneCleanup::new(server.dir().join("data"), Some(turn));
        let pulled = server.docker(&["pull", "-q", &image]);
        assert!(pulled.ok, "{pulled:?}");
        Node {
            server,
            registry,
            image,
            _cleanup: cleanup,
        }
    }

    /// Runs the docker CLI against the server.
    pub fn docker(&self, args: &[&str]) -> super::Ran {
        self.server.docker(args)
    }

    /// Runs `docker inspect -f format name` until `want` holds (30 s at
    /// most); what it printed then.
    pub async fn until_inspect(
        &self,
        name: &str,
        format: &str,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let start = std::time::Instant::now();
        loop {
            let out = self.docker(&["inspect", "-f", format, name]);
            let now = out.stdout.trim().to_owned();
            if out.ok && want(&now) {
                return now;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "{name}: {format} is {now:?}; {out:?}\n{}",
                self.server.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
