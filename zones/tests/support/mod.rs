//! Fixtures shared by the zone tests that run the linux driver against the
//! real `runc` and the real monitor: the prerequisites check, a [`Node`]
//! (a driver on a temp root, with a busybox image either pulled from a real
//! registry or made by the test) and the [`Cleanup`] guard that takes down
//! whatever zones a failed test left behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sdc_docker_images::pull::pull;
use sdc_docker_images::reference::Reference;
use sdc_docker_images::registry::{Client, ClientConfig, Platform};
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::Resource;
use sdc_docker_store::model::{Container, ContainerSpec, Image};
use sdc_docker_store::{Api, EmbeddedStore};
use sdc_docker_testkit::Registry;
use sdc_docker_zones::linux::layout::ZoneDir;
use sdc_docker_zones::streams::{LogEntry, LogOptions, ZoneStreams};
use sdc_docker_zones::{
    BindMount, LinuxConfig, LinuxDriver, ZoneDriver, ZoneInfo, ZoneSpec, ZoneState, zone_spec,
};

pub const RUNC: &str = "/usr/bin/runc";
pub const BUSYBOX: &str = "/bin/busybox";
const REGISTRY: &str = "/usr/bin/docker-registry";
/// How long a test waits for a zone to get somewhere.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The monitor binary cargo built next to this test's `deps/` dir.
pub fn monitor_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.parent()?.join("sdc-docker-monitor");
    binary.is_file().then_some(binary)
}

/// Why these tests cannot run here, if they cannot: not root, or runc,
/// busybox, the monitor binary or (when `registry`) `docker-registry` is
/// missing.
pub fn missing_prerequisite(registry: bool) -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root");
    }
    if !Path::new(RUNC).exists() || !Path::new(BUSYBOX).exists() {
        return Some("runc or busybox is missing");
    }
    if registry && !Path::new(REGISTRY).exists() {
        return Some("docker-registry is missing");
    }
    if monitor_binary().is_none() {
        return Some("the monitor binary is not built: run `cargo build -p sdc-docker-monitor`");
    }
    None
}

/// `let node = node_or_skip!(builder);`: builds the [`Node`], or returns
/// from the test (saying why) when a prerequisite is missing.
macro_rules! node_or_skip {
    ($builder:expr) => {
        match $builder.build().await {
            Some(node) => node,
            None => return,
        }
    };
}
pub(crate) use node_or_skip;

/// Takes down every zone under `zones` that a failed test left: the init
/// killed, runc's container deleted, the monitor waited for (killed after
/// 10 s), the rootfs unmounted.
pub struct Cleanup {
    pub zones: PathBuf,
    pub runc: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.zones) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let run = entry.path().join("run");
            if let Ok(pid) = std::fs::read_to_string(run.join("init.pid")) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).output();
            }
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&self.runc)
                .args(["delete", "--force", &id])
                .output();
            if let Ok(pid) = std::fs::read_to_string(run.join("monitor.pid")) {
                let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
                let ours = || {
                    std::fs::read(proc.join("cmdline")).is_ok_and(|c| {
                        String::from_utf8_lossy(&c).contains(&*run.to_string_lossy())
                    })
                };
                let deadline = Instant::now() + Duration::from_secs(10);
                while ours() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if ours() {
                    let _ = Command::new("kill").args(["-9", pid.trim()]).output();
                }
            }
            let rootfs = entry.path().join("rootfs");
            for _ in 0..50 {
                let mounted = std::fs::read_to_string("/proc/self/mounts")
                    .map(|m| m.contains(&format!(" {} ", rootfs.display())))
                    .unwrap_or(false);
                if !mounted {
                    break;
                }
                let _ = Command::new("umount").arg("-l").arg(&rootfs).output();
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Where a node's image comes from.
enum Source {
    /// Pushed to a real registry and pulled into an `ImageStore`.
    Pulled(sdc_docker_testkit::Image),
    /// Layer dirs the test makes under the node's temp dir (top first).
    Layers(fn(&Path) -> Vec<PathBuf>),
}

/// How to make a [`Node`]: [`Node::pulled`] or [`Node::layers`], then
/// [`NodeBuilder::build`] (through [`node_or_skip!`]).
pub struct NodeBuilder {
    source: Source,
    memory: Option<u64>,
}

impl NodeBuilder {
    /// Limits every zone of [`Node::zone`] to `bytes` of memory.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// The node, or `None` (after saying why) when a prerequisite is
    /// missing.
    pub async fn build(self) -> Option<Node> {
        let registry = matches!(self.source, Source::Pulled(_));
        if let Some(why) = missing_prerequisite(registry) {
            eprintln!("skipping: {why}");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (pulled, lower_dirs) = match self.source {
            Source::Pulled(image) => {
                let pulled = Pulled::new(tmp.path(), &image).await;
                let lower_dirs = pulled.store.lower_dirs(&pulled.image);
                (Some(pulled), lower_dirs)
            }
            Source::Layers(make) => (None, make(tmp.path())),
        };
        let cleanup = Cleanup {
            zones: tmp.path().join("zones"),
            runc: tmp.path().join("runc"),
        };
        let driver = LinuxDriver::new(LinuxConfig {
            root: tmp.path().join("zones"),
            runtime: PathBuf::from(RUNC),
            runtime_root: tmp.path().join("runc"),
            monitor_binary: monitor_binary(),
        })
        .unwrap();
        Some(Node {
            _cleanup: cleanup,
            driver,
            lower_dirs,
            pulled,
            memory: self.memory,
            tmp,
        })
    }
}

/// A busybox image pulled from a registry of its own.
pub struct Pulled {
    pub image: Image,
    pub store: ImageStore,
    _registry: Registry,
}

impl Pulled {
    async fn new(tmp: &Path, archive: &sdc_docker_testkit::Image) -> Pulled {
        let registry = Registry::start().await;
        registry.push("library/busybox", "latest", archive).await;
        let store = ImageStore::open(tmp.join("images")).unwrap();
        let spec_store = EmbeddedStore::open(&tmp.join("store.redb"), Default::default()).unwrap();
        let images: Api<Image> = Api::default_account(Arc::new(spec_store));
        let client = Client::new(ClientConfig::default()).unwrap();
        let reference =
            Reference::parse_normalized(&format!("{}/library/busybox", registry.host())).unwrap();
        let image = pull(
            &client,
            &store,
            &images,
            &reference,
            &Platform::linux_amd64(),
            |_| {},
        )
        .await
        .unwrap();
        Pulled {
            image,
            store,
            _registry: registry,
        }
    }
}

/// A driver with its own root and runc root in a temp dir, and an image.
/// Fields drop in order: the zones go before the registry and the temp dir.
pub struct Node {
    _cleanup: Cleanup,
    pub driver: LinuxDriver,
    /// The image's layer dirs, top first.
    pub lower_dirs: Vec<PathBuf>,
    pulled: Option<Pulled>,
    memory: Option<u64>,
    pub tmp: tempfile::TempDir,
}

impl Node {
    /// A node running `image`, pushed to a real registry and pulled.
    pub fn pulled(image: sdc_docker_testkit::Image) -> NodeBuilder {
        NodeBuilder {
            source: Source::Pulled(image),
            memory: None,
        }
    }

    /// A node whose image is the layer dirs `make` lays out under the
    /// temp dir it is given.
    pub fn layers(make: fn(&Path) -> Vec<PathBuf>) -> NodeBuilder {
        NodeBuilder {
            source: Source::Layers(make),
            memory: None,
        }
    }

    /// The pulled image and its store (a node of [`Node::pulled`]).
    pub fn pulled_image(&self) -> &Pulled {
        self.pulled.as_ref().expect("the node pulled its image")
    }

    /// The driver's root.
    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("zones")
    }

    /// The zone's directory under the driver's root.
    pub fn zone_dir(&self, id: &str) -> PathBuf {
        self.root().join(id)
    }

    /// A zone of the pulled image running `sh -c script`, with a fresh id.
    pub fn zone(&self, script: &str) -> ZoneBuilder<'_> {
        let mut zone = ZoneBuilder {
            node: self,
            script: script.to_string(),
            env: Vec::new(),
            edits: Vec::new(),
        };
        if let Some(bytes) = self.memory {
            zone = zone.memory(bytes);
        }
        zone
    }

    /// The spec of a zone running `sh -c script` (see [`Node::zone`]).
    pub fn spec(&self, script: &str) -> ZoneSpec {
        self.zone(script).spec()
    }

    /// Creates and starts `spec`.
    pub async fn start(&self, spec: &ZoneSpec) {
        self.driver.create(spec).await.unwrap();
        self.driver.start(&spec.id).await.unwrap();
    }

    /// Creates and starts a zone running `sh -c script`; its id.
    pub async fn run(&self, script: &str) -> String {
        self.zone(script).start().await.id
    }

    pub async fn get(&self, id: &str) -> ZoneInfo {
        self.driver.get(id).await.unwrap().expect("the zone exists")
    }

    /// Waits until the zone is in `state`.
    pub async fn wait_for(&self, id: &str, state: ZoneState) -> ZoneInfo {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let info = self.get(id).await;
            if info.state == state {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "zone {id} still {:?}, wanted {state:?}",
                info.state
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the zone's script wrote `/ready`.
    pub async fn wait_ready(&self, id: &str) {
        let deadline = Instant::now() + DEADLINE;
        while self.driver.stat_path(id, "/ready").await.is_err() {
            assert!(Instant::now() < deadline, "the zone never got ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the zone wrote to `stream` (`stdout`, `stderr`, or both when
    /// `None`), read from its json-file log; empty when there is none yet.
    pub fn output_of(&self, id: &str, stream: Option<&str>) -> String {
        let log = ZoneDir::new(&self.root(), id).log_file();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| stream.is_none_or(|name| v["stream"] == name))
            .filter_map(|v| v["log"].as_str().map(str::to_string))
            .collect()
    }

    /// What the zone wrote to stdout and stderr.
    pub fn output(&self, id: &str) -> String {
        self.output_of(id, None)
    }

    /// The zone's log through the driver, to its end.
    pub async fn logs(&self, id: &str, options: LogOptions) -> Vec<LogEntry> {
        let stream = self.driver.logs(id, options).await.unwrap();
        tokio::time::timeout(DEADLINE, stream.map(|e| e.unwrap()).collect::<Vec<_>>())
            .await
            .expect("the log ends")
    }

    /// Deletes every zone through the driver (the guard is for failures).
    pub async fn delete_all(&self) {
        for info in self.driver.list().await.unwrap() {
            self.driver.delete(&info.id).await.unwrap();
        }
    }
}

/// A zone spec in the making: [`Node::zone`], the options where tests
/// differ, then [`ZoneBuilder::spec`] or [`ZoneBuilder::start`].
pub struct ZoneBuilder<'a> {
    node: &'a Node,
    script: String,
    env: Vec<String>,
    edits: Vec<Edit<'a>>,
}

/// One option of a [`ZoneBuilder`], applied to the spec `zone_spec` made.
type Edit<'a> = Box<dyn FnOnce(&mut ZoneSpec) + 'a>;

impl<'a> ZoneBuilder<'a> {
    /// The container's environment (`NAME=value`), merged with the image's.
    pub fn env(mut self, env: &[&str]) -> Self {
        self.env = env.iter().map(|e| e.to_string()).collect();
        self
    }

    fn edit(mut self, edit: impl FnOnce(&mut ZoneSpec) + 'a) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    pub fn memory(self, bytes: u64) -> Self {
        self.edit(move |spec| spec.memory_bytes = bytes)
    }

    pub fn tty(self) -> Self {
        self.edit(|spec| spec.process.tty = true)
    }

    pub fn open_stdin(self) -> Self {
        self.edit(|spec| spec.process.open_stdin = true)
    }

    /// Rotates the json-file log at `bytes`, keeping `files` files.
    pub fn log_max_size(self, bytes: u64, files: u32) -> Self {
        self.edit(move |spec| {
            spec.log.max_size = Some(bytes);
            spec.log.max_files = files;
        })
    }

    pub fn log_driver(self, driver: &str) -> Self {
        let driver = driver.to_string();
        self.edit(move |spec| spec.log.driver = driver)
    }

    pub fn mount(self, source: &Path, target: &str, read_only: bool) -> Self {
        let mount = BindMount {
            source: source.to_path_buf(),
            target: target.to_string(),
            read_only,
        };
        self.edit(move |spec| spec.mounts.push(mount))
    }

    /// The spec: the container turned into a zone by `zone_spec`, then the
    /// options.
    pub fn spec(self) -> ZoneSpec {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let id = format!("{:08x}{n:08x}{nanos:016x}{:032x}", std::process::id(), 0);
        let container = Container::new(
            &format!("zone{n}"),
            ContainerSpec {
                id,
                image: "busybox".to_string(),
                cmd: ["sh", "-c", &self.script].map(String::from).to_vec(),
                env: self.env,
                ..Default::default()
            },
        );
        let pulled = self.node.pulled_image();
        let mut spec = zone_spec(
            &container,
            &pulled.image,
            None,
            self.node.lower_dirs.clone(),
        )
        .unwrap();
        for edit in self.edits {
            edit(&mut spec);
        }
        spec
    }

    /// Creates and starts the zone; its spec.
    pub async fn start(self) -> ZoneSpec {
        let node = self.node;
        let spec = self.spec();
        node.start(&spec).await;
        spec
    }
}
