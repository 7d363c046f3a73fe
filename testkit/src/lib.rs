//! Test harness of sdc-docker: REAL services started on loopback for the
//! duration of a test and stopped when their handle is dropped.
//!
//! - [`Etcd`]: one etcd member on free loopback ports in its own temporary
//!   directory;
//! - [`EtcdCluster`]: several members forming one cluster, with helpers to find
//!   the leader and to kill (`SIGKILL`) or freeze (`SIGSTOP`) a member;
//! - [`free_port`], and [`wait_for`] / [`wait_for_value`] to wait for a
//!   condition with a deadline instead of sleeping "long enough";
//! - [`Registry`]: Debian's `docker-registry` (Distribution 2.8) on a free
//!   loopback port with its own storage, optionally behind htpasswd, with a
//!   push of images and indexes;
//! - [`image`]: real images built in memory ([`Image`], [`ImageIndex`],
//!   Docker schema2 or OCI), and [`busybox`]: ready-made busybox images
//!   (layered, with whiteouts, multi-arch) from Debian's `busybox-static`;
//!   [`Image::random`] for the pull benchmark;
//! - [`http`]: the small HTTP client the fixtures (and tests) talk with.
//! - [`smartos`]: [`Standins`], stand-ins for SmartOS's `vmadm`, `zfs`,
//!   `imgadm`, `zlogin` and `sysinfo` with their state in a temporary
//!   directory, zones really running (namespaces, chroot), for the SmartOS
//!   zone driver's tests on Linux.
//!
//! The etcd binary is `etcd` on `PATH` or `/usr/bin/etcd` (Debian's
//! `etcd-server` package); a test panics with a clear message when it is
//! missing. Starting waits until the member answers `/health` (which on etcd
//! 3.4 means: it has a leader and serves a linearizable read), polling, never
//! sleeping blindly. When a test panics while a member is running, the tail of
//! that member's log is printed to stderr as the member is dropped.
//!
//! Everything here panics on failure: it is for tests only. Missing
//! binaries (`etcd`, `docker-registry`, `busybox`) are installed by
//! `bash scripts/install-deps.sh`.

pub mod busybox;
pub mod http;
pub mod image;
mod registry;
pub mod smartos;

pub use image::{Format, Image, ImageBuilder, ImageIndex, LayerCompression};
pub use registry::{REALM, Registry, registry_binary};
pub use smartos::{Call, Standins};

use std::collections::HashSet;
use std::fmt::Display;
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long a member (or a whole cluster) may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times to pick new ports when a member could not bind its own
/// (another process grabbed a port between [`free_port`] and etcd's bind).
const START_ATTEMPTS: usize = 3;

/// Ports already handed out by [`free_port`] in this process, so two
/// concurrent tests never get the same one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that is free right now and that this process has
/// not handed out before.
///
/// The port is released before it is returned, so another process may still
/// take it; the starters of this crate retry with new ports when that happens.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("local address of a bound listener")
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Wait until `condition` returns true, polling every 20 ms; panics with
/// `what` when `timeout` passes first.
pub async fn wait_for<F, Fut>(timeout: Duration, what: impl Display, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_value(timeout, what, move || {
        let fut = condition();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Wait until `probe` returns `Some(value)`, polling every 20 ms, and return
/// the value; panics with `what` when `timeout` passes first.
pub async fn wait_for_value<T, F, Fut>(timeout: Duration, what: impl Display, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(value)) = tokio::time::timeout_at(deadline, probe()).await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Path of the etcd binary: `etcd` on `PATH`, else `/usr/bin/etcd`.
///
/// # Panics
/// When neither exists, telling the reader how to install it.
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("etcd");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let fallback = PathBuf::from("/usr/bin/etcd");
    if fallback.is_file() {
        return fallback;
    }
    panic!(
        "etcd is not installed: these tests start a real etcd server. \
         Run the project's setup (on Debian/Ubuntu: `apt-get install etcd-server`, \
         which provides /usr/bin/etcd) and run the tests again."
    );
}

/// One etcd member process (of a single-node or a larger cluster).
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Start `etcd` for this member with `initial_cluster` (`name=peer,…`).
    fn spawn(&mut self, initial_cluster: &str, token: &str) {
        let data_dir = self.dir.join(format!("{}.etcd", self.name));
        let log = File::create(&self.log).expect("creating the etcd log file");
        let log_err = log.try_clone().expect("cloning the etcd log file handle");
        let mut cmd = Command::new(etcd_binary());
        // A developer's ETCD_* environment must not reconfigure test members.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen-client-urls")
            .arg(self.client_url())
            .arg("--advertise-client-urls")
            .arg(self.client_url())
            .arg("--listen-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-cluster")
            .arg(initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(token)
            // Fast elections; the minimum lease TTL follows (about 2 s).
            .arg("--heartbeat-interval")
            .arg("100")
            .arg("--election-timeout")
            .arg("1000")
            // History is compacted only when a test asks for it.
            .arg("--auto-compaction-retention")
            .arg("0")
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", etcd_binary().display()));
        self.child = Some(child);
    }

    /// Whether the process exited on its own (it could not bind, say).
    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else {
            panic!("etcd member {} is not running", self.name);
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("running kill(1)");
        assert!(status.success(), "kill -{signal} {} failed", child.id());
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn bind_failed(&self) -> bool {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.contains("address already in use")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.child.is_some() && std::thread::panicking() {
            eprintln!(
                "--- last lines of etcd member {} ({}) ---\n{}\n---",
                self.name,
                self.log.display(),
                self.log_tail(15)
            );
        }
        self.kill();
    }
}

/// Whether `GET /health` on `client_port` says the member is healthy.
async fn healthy(client_port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", client_port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        Some(text.starts_with("HTTP/1.") && text.contains("200") && text.contains("\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(true))
    )
}

/// Every member started on fresh ports; `Err(())` when one failed to bind
/// (the caller retries with new ports).
async fn start_members(dir: &Path, n: usize) -> Result<Vec<Member>, ()> {
    static CLUSTERS: AtomicU64 = AtomicU64::new(0);
    let token = format!(
        "sdc-docker-test-{}-{}",
        std::process::id(),
        CLUSTERS.fetch_add(1, Ordering::Relaxed)
    );
    let mut members: Vec<Member> = (0..n)
        .map(|i| {
            let name = format!("m{i}");
            Member {
                log: dir.join(format!("{name}.log")),
                name,
                client_port: free_port(),
                peer_port: free_port(),
                dir: dir.to_path_buf(),
                child: None,
            }
        })
        .collect();
    let initial_cluster = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for member in &mut members {
        member.spawn(&initial_cluster, &token);
    }
    let deadline = Instant::now() + START_TIMEOUT;
    let mut ready = vec![false; n];
    loop {
        for (i, member) in members.iter_mut().enumerate() {
            if ready[i] {
                continue;
            }
            if member.exited() {
                if member.bind_failed() {
                    return Err(());
                }
                panic!(
                    "etcd member {} exited while starting; its log ends with:\n{}",
                    member.name,
                    member.log_tail(40)
                );
            }
            ready[i] = healthy(member.client_port).await;
        }
        if ready.iter().all(|r| *r) {
            return Ok(members);
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> = members
                .iter()
                .map(|m| format!("--- {} ---\n{}", m.name, m.log_tail(20)))
                .collect();
            panic!(
                "etcd did not become healthy within {START_TIMEOUT:?}:\n{}",
                tails.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_with_retries(n: usize) -> (tempfile::TempDir, Vec<Member>) {
    for _ in 0..START_ATTEMPTS {
        let dir = tempfile::Builder::new()
            .prefix("sdc-docker-etcd-")
            .tempdir()
            .expect("creating a temporary directory for etcd");
        if let Ok(members) = start_members(dir.path(), n).await {
            return (dir, members);
        }
    }
    panic!("etcd could not bind its ports in {START_ATTEMPTS} attempts");
}

async fn connect_one(endpoint: &str) -> Option<etcd_client::Client> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    etcd_client::Client::connect([endpoint], Some(options))
        .await
        .ok()
}

/// Whether the member at `endpoint` says it is the leader.
async fn is_leader(endpoint: &str) -> bool {
    let Some(mut client) = connect_one(endpoint).await else {
        return false;
    };
    let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), client.status()).await else {
        return false;
    };
    match status.header() {
        Some(header) => status.leader() != 0 && status.leader() == header.member_id(),
        None => false,
    }
}

/// One etcd server (a single-member cluster) on loopback, in its own
/// temporary directory. Dropping it kills the process and removes the
/// directory.
pub struct Etcd {
    // Declared before `_dir` so the process dies before its directory goes.
    member: Member,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Start etcd on free loopback ports and wait until it serves.
    ///
    /// # Panics
    /// When etcd is not installed, or does not serve within 30 s.
    pub async fn start() -> Etcd {
        let (dir, mut members) = start_with_retries(1).await;
        let member = members.remove(0);
        Etcd { member, _dir: dir }
    }

    /// The client endpoint, as `http://127.0.0.1:PORT`, in a list (the form
    /// etcd clients take).
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.member.client_url()]
    }

    /// The `--store` argument of sdc-docker for this server:
    /// `etcd://127.0.0.1:PORT`.
    pub fn store_url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.member.client_port)
    }

    /// Kill the server (`SIGKILL`) now; its directory stays until drop.
    pub fn kill(&mut self) {
        self.member.kill();
    }

    /// The directory holding the data and the log (`m0.log`).
    pub fn dir(&self) -> &Path {
        &self.member.dir
    }
}

/// Several etcd members forming one cluster on loopback. Dropping it kills
/// every member and removes their directory.
pub struct EtcdCluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Start an `n`-member cluster and wait until every member is healthy
    /// (which implies a leader was elected).
    ///
    /// # Panics
    /// When etcd is not installed, or the cluster does not form within 30 s.
    pub async fn start(n: usize) -> EtcdCluster {
        assert!(n > 0, "a cluster needs at least one member");
        let (dir, members) = start_with_retries(n).await;
        EtcdCluster { members, _dir: dir }
    }

    /// The number of members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Client endpoints of every member (also of killed ones), in member
    /// order: `http://127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// The client endpoint of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// Client endpoints of the members still running.
    pub fn running_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(Member::client_url)
            .collect()
    }

    /// The `--store` argument of sdc-docker for the whole cluster:
    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,…`.
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Index of the member that currently says it is the leader, asking
    /// each running member's status; `None` when none does (an election is
    /// under way).
    pub async fn leader_index(&self) -> Option<usize> {
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_some() && is_leader(&member.client_url()).await {
                return Some(i);
            }
        }
        None
    }

    /// Wait until some running member is the leader, and return its index.
    ///
    /// # Panics
    /// When no leader is elected within `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> usize {
        wait_for_value(timeout, "an etcd leader", || self.leader_index()).await
    }

    /// Kill member `i` with `SIGKILL` (no goodbye to its peers or clients).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Freeze member `i` with `SIGSTOP`: its sockets stay open but it answers
    /// nothing — the nastiest failure for a client. Undo with [`Self::resume`].
    pub fn pause(&self, i: usize) {
        self.members[i].signal("STOP");
    }

    /// Let a member frozen by [`Self::pause`] run again (`SIGCONT`).
    pub fn resume(&self, i: usize) {
        self.members[i].signal("CONT");
    }

    /// Whether member `i` is running (not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }
}
