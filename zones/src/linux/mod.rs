//! The linux driver: a zone is an OCI container run by `runc` (or any
//! runtime with its command line) on an overlay of the image's layers,
//! supervised by one `sdc-docker-monitor` process per zone.
//!
//! Everything the driver knows is on disk under its root (see [`layout`]),
//! so a restarted daemon finds every zone again: `spec.json` says what the
//! zone is, the monitor's state directory how its last run went, and
//! `runc state` fills in what a dead monitor could not record. The monitor
//! (not the daemon) is the runtime's parent, so zones keep running across
//! daemon restarts. Calls on one zone are serialised inside one driver;
//! two daemons must not drive the same root.
//!
//! Limits: no seccomp or AppArmor profile, no swap limit, no network beyond
//! `lo` (see [`oci`]), bind mounts only.

pub mod etc;
pub(crate) mod exec;
pub(crate) mod files;
mod freezer;
pub mod install;
pub mod layout;
pub(crate) mod logs;
pub mod oci;
pub mod rootfs;
pub mod runc;
mod stats;
mod streams;
pub mod user;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sdc_docker_monitor::{LogConfig, MonitorConfig, MonitorError, MonitorState};
use time::OffsetDateTime;
use tokio::time::Instant;

use self::layout::{ZoneDir, valid_id};
use self::runc::{Runc, RuncError};
use crate::driver::{ZoneDriver, ZoneError, ZoneEvent, ZoneInfo, ZoneState};
use crate::signal;
use crate::spec::ZoneSpec;

/// How long to wait for a zone to die after `SIGKILL`.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How long a monitor may take to go once its zone is gone.
const MONITOR_GRACE: Duration = Duration::from_secs(5);
/// How often to look again while waiting for an exit.
const POLL: Duration = Duration::from_millis(50);

/// Where the linux driver keeps zones and which runtime it uses.
#[derive(Clone, Debug)]
pub struct LinuxConfig {
    /// One directory per zone (`<data-dir>/zones`).
    pub root: PathBuf,
    /// The OCI runtime binary (`runc`, or `--oci-runtime`).
    pub runtime: PathBuf,
    /// The runtime's own state root (`runc --root`), so that our containers
    /// are not mixed with anyone else's.
    pub runtime_root: PathBuf,
    /// The monitor binary; `None`: `sdc-docker-monitor` next to the current
    /// executable, else on `PATH`.
    pub monitor_binary: Option<PathBuf>,
}

/// Zones as OCI containers; see the module documentation.
pub struct LinuxDriver {
    config: LinuxConfig,
    runc: Runc,
    /// One lock per zone id, so that two calls on one zone never interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where [`ZoneEvent`]s go.
    events: tokio::sync::broadcast::Sender<ZoneEvent>,
    /// Zones whose monitor is being watched for its exit.
    watched: Arc<Mutex<HashSet<String>>>,
}

impl From<RuncError> for ZoneError {
    fn from(e: RuncError) -> Self {
        let op = match &e {
            RuncError::Failed { op, .. } | RuncError::Timeout { op } => format!("runc {op}"),
            RuncError::Spawn { .. } => "runc".to_string(),
            RuncError::BadState(_) => "runc state".to_string(),
        };
        let message = match e {
            RuncError::Failed { stderr, .. } => stderr,
            other => other.to_string(),
        };
        ZoneError::Runtime { op, message }
    }
}

impl From<MonitorError> for ZoneError {
    fn from(e: MonitorError) -> Self {
        match e {
            MonitorError::RuntimeFailed { stderr } => ZoneError::Runtime {
                op: "start".to_string(),
                message: stderr,
            },
            other => ZoneError::Runtime {
                op: "monitor".to_string(),
                message: other.to_string(),
            },
        }
    }
}

impl From<signal::InvalidSignal> for ZoneError {
    fn from(e: signal::InvalidSignal) -> Self {
        ZoneError::InvalidSignal(e.0)
    }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ZoneError> + Send + 'static,
) -> Result<T, ZoneError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ZoneError::Runtime {
            op: "blocking task".to_string(),
            message: e.to_string(),
        })?
}

fn offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

impl LinuxDriver {
    /// A driver keeping its zones under `config.root` (created if missing).
    pub fn new(config: LinuxConfig) -> Result<LinuxDriver, ZoneError> {
        for dir in [&config.root, &config.runtime_root] {
            std::fs::create_dir_all(dir)
                .map_err(ZoneError::io(format!("creating {}", dir.display())))?;
        }
        Ok(LinuxDriver {
            runc: Runc::new(config.runtime.clone(), config.runtime_root.clone()),
            config,
            locks: Mutex::new(HashMap::new()),
            events: tokio::sync::broadcast::channel(1024).0,
            watched: Arc::default(),
        })
    }

    /// The monitor's state directory of zone `id`, for
    /// `sdc_docker_monitor::attach` and `resize` (`None` for an id that is
    /// not a plain name). It exists once the zone was started.
    pub fn monitor_dir(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| ZoneDir::new(&self.config.root, id).run())
    }

    /// The json-file log of zone `id` (rotated files are `.1`, `.2`, …);
    /// `None` for an id that is not a plain name.
    pub fn log_file(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| ZoneDir::new(&self.config.root, id).log_file())
    }

    /// The paths of zone `id`, refusing ids that are not plain names.
    fn dir(&self, id: &str) -> Result<ZoneDir, ZoneError> {
        if !valid_id(id) {
            return Err(ZoneError::NotFound { id: id.to_string() });
        }
        Ok(ZoneDir::new(&self.config.root, id))
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// Drops the lock of a deleted zone unless someone else waits on it
    /// (the map's reference and the caller's are the only two).
    fn forget_lock(&self, id: &str, held: &Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(held) <= 2 {
            locks.remove(id);
        }
    }

    /// The monitor's view of the zone's last run, `None` before the first.
    async fn monitor_state(&self, dir: &ZoneDir) -> Result<Option<MonitorState>, ZoneError> {
        let run = dir.run();
        blocking(move || {
            if !run.exists() {
                return Ok(None);
            }
            match sdc_docker_monitor::state(&run) {
                Ok(state) => Ok(Some(state)),
                Err(MonitorError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// What zone `id` is now, read from disk, the monitor and the runtime.
    async fn observe(&self, id: &str) -> Result<Option<(ZoneSpec, ZoneInfo)>, ZoneError> {
        let dir = self.dir(id)?;
        let spec = {
            let dir = dir.clone();
            blocking(move || install::read_spec(&dir)).await?
        };
        let Some(spec) = spec else {
            return Ok(None);
        };
        let mut info = ZoneInfo {
            id: id.to_string(),
            state: ZoneState::Configured,
            pid: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            oom_killed: false,
            labels: spec.labels.clone(),
            restart_count: None,
        };
        if !dir.config().exists() {
            return Ok(Some((spec, info)));
        }
        info.state = ZoneState::Installed;
        let Some(monitor) = self.monitor_state(&dir).await? else {
            return Ok(Some((spec, info)));
        };
        let Some(started_at) = monitor.started_at else {
            // A start that never got as far as running anything.
            return Ok(Some((spec, info)));
        };
        info.started_at = Some(offset(started_at));
        if let Some(exit) = &monitor.exit {
            info.state = ZoneState::Stopped;
            info.exit_code = Some(i64::from(exit.exit_code));
            info.finished_at = Some(offset(exit.finished_at));
            info.oom_killed = exit.oom_killed;
            return Ok(Some((spec, info)));
        }
        if monitor.monitor_alive {
            // The monitor writes the exit record as soon as the init is
            // reaped, so the zone runs (or its output is still draining):
            // no need to ask the runtime, which costs a process per call.
            if let Some(pid) = monitor.monitor_pid {
                self.watch_monitor(id, pid);
            }
            let pid = monitor.init_pid.map(i64::from);
            let paused = match pid.and_then(freezer::frozen) {
                Some(frozen) => frozen,
                // The cgroup is not where we look: the runtime knows.
                None => matches!(self.runc.state(id).await?, Some(s) if s.status == "paused"),
            };
            info.state = if paused {
                ZoneState::Paused
            } else {
                ZoneState::Running
            };
            info.pid = pid;
            return Ok(Some((spec, info)));
        }
        // A monitor that died without a record (killed, or the node
        // rebooted): the runtime knows whether the process still runs.
        match self.runc.state(id).await? {
            Some(state) if state.status == "running" || state.status == "paused" => {
                info.state = if state.status == "paused" {
                    ZoneState::Paused
                } else {
                    ZoneState::Running
                };
                info.pid = Some(state.pid)
                    .filter(|p| *p > 0)
                    .or(monitor.init_pid.map(i64::from));
            }
            _ => {
                tracing::warn!(zone = id, "monitor gone without an exit record");
                info.state = ZoneState::Stopped;
            }
        }
        Ok(Some((spec, info)))
    }

    /// Reports [`ZoneEvent::Exited`] for zone `id` when its monitor (pid
    /// `pid`, checked alive by the caller) exits, which it does right after
    /// recording the exit status. One watch per zone; a pidfd makes the wait
    /// a readiness event, with no polling.
    fn watch_monitor(&self, id: &str, pid: i32) {
        {
            let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            if !watched.insert(id.to_string()) {
                return;
            }
        }
        let (id, events, watched) = (id.to_string(), self.events.clone(), self.watched.clone());
        tokio::spawn(async move {
            let exited = async {
                let pid = rustix::process::Pid::from_raw(pid)?;
                let fd =
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
                // SAFETY: the AsyncFd owns the OwnedFd, which stays open and
                // answers the same descriptor until the AsyncFd is dropped.
                let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok()?;
                let _ = fd.readable().await;
                Some(())
            };
            // A monitor gone before the pidfd was opened has exited too.
            let _ = exited.await;
            watched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            tracing::debug!(zone = %id, "zone exited");
            let _ = events.send(ZoneEvent::Exited { id });
        });
    }

    async fn require(&self, id: &str) -> Result<(ZoneSpec, ZoneInfo), ZoneError> {
        self.observe(id)
            .await?
            .ok_or_else(|| ZoneError::NotFound { id: id.to_string() })
    }

    /// Waits until the zone is neither running nor paused, up to `limit`;
    /// `None` when it still runs.
    async fn wait_exit(&self, id: &str, limit: Duration) -> Result<Option<ZoneInfo>, ZoneError> {
        let deadline = Instant::now() + limit;
        loop {
            let (_, info) = self.require(id).await?;
            if !info.state.can_kill() {
                return Ok(Some(info));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends `signal` to a zone that runs; one that exited meanwhile is fine.
    async fn signal(&self, id: &str, signal: i32) -> Result<(), ZoneError> {
        match self.runc.kill(id, signal).await {
            Err(e) if e.is_not_running() || e.is_not_found() => Ok(()),
            other => other.map_err(ZoneError::from),
        }
    }

    /// Kills the zone and waits for it to go, resuming it if paused so the
    /// signal is delivered.
    async fn kill_and_wait(&self, id: &str, info: &ZoneInfo) -> Result<ZoneInfo, ZoneError> {
        self.signal(id, 9).await?;
        if info.state == ZoneState::Paused {
            let _ = self.runc.resume(id).await;
        }
        self.wait_exit(id, KILL_GRACE)
            .await?
            .ok_or_else(|| ZoneError::Timeout {
                id: id.to_string(),
                what: "exit after SIGKILL",
                after: KILL_GRACE,
            })
    }
}

#[async_trait::async_trait]
impl ZoneDriver for LinuxDriver {
    fn kind(&self) -> &'static str {
        "linux"
    }

    async fn create(&self, spec: &ZoneSpec) -> Result<ZoneInfo, ZoneError> {
        if !valid_id(&spec.id) {
            return Err(ZoneError::InvalidSpec(format!(
                "zone id {:?} is not a plain name",
                spec.id
            )));
        }
        let lock = self.lock(&spec.id);
        let _guard = lock.lock().await;
        if let Some((_, info)) = self.observe(&spec.id).await?
            && info.state != ZoneState::Configured
        {
            return Ok(info);
        }
        let dir = self.dir(&spec.id)?;
        let owned = spec.clone();
        blocking(move || install::install(&dir, &owned)).await?;
        tracing::info!(zone = %spec.id, "zone created");
        let (_, info) = self.require(&spec.id).await?;
        Ok(info)
    }

    async fn start(&self, id: &str) -> Result<ZoneInfo, ZoneError> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let (spec, info) = self.require(id).await?;
        match info.state {
            ZoneState::Running | ZoneState::Paused => return Ok(info),
            ZoneState::Configured => {
                return Err(ZoneError::WrongState {
                    id: id.to_string(),
                    state: info.state,
                    op: "start before its create finished",
                });
            }
            ZoneState::Installed | ZoneState::Stopped => {}
        }
        let dir = self.dir(id)?;
        let began = std::time::Instant::now();
        {
            let (dir, spec) = (dir.clone(), spec.clone());
            blocking(move || {
                install::validate(&spec)?;
                install::prepare(&dir, &spec)
            })
            .await?;
        }
        let prepared = began.elapsed();

        // The runtime still holds the previous run's container (and an
        // orphan may even be half created): it must go before `runc run`.
        if self.runc.knows(id) {
            self.runc.delete(id).await?;
        }

        let monitor = MonitorConfig {
            id: id.to_string(),
            bundle: dir.bundle(),
            state_dir: dir.run(),
            runtime: self.config.runtime.clone(),
            runtime_root: Some(self.config.runtime_root.clone()),
            tty: spec.process.tty,
            open_stdin: spec.process.open_stdin,
            log: spec.log.keeps_output().then(|| LogConfig {
                path: dir.log_file(),
                max_size: spec.log.max_size.unwrap_or(0),
                max_files: spec.log.max_files.max(1),
            }),
            monitor_binary: self.config.monitor_binary.clone(),
        };
        let spawned = blocking(move || Ok(sdc_docker_monitor::spawn(&monitor)?)).await?;
        tracing::info!(
            took = ?began.elapsed(),
            ?prepared,
            runtime = ?spawned.runtime_took,
            zone = id,
            pid = spawned.init_pid,
            monitor = spawned.monitor_pid,
            "zone started"
        );
        let (_, info) = self.require(id).await?;
        Ok(info)
    }

    async fn stop(&self, id: &str, signal: &str, timeout: Duration) -> Result<ZoneInfo, ZoneError> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let (spec, info) = self.require(id).await?;
        if !info.state.can_kill() {
            return Ok(info);
        }
        let raw = if signal.is_empty() {
            spec.stop_signal.as_str()
        } else {
            signal
        };
        let number = signal::parse(if raw.is_empty() { "SIGTERM" } else { raw })?;
        tracing::info!(zone = id, signal = %signal::name(number), ?timeout, "stopping zone");
        self.signal(id, number).await?;
        if info.state == ZoneState::Paused {
            // A frozen process cannot act on the signal; Docker thaws it.
            let _ = self.runc.resume(id).await;
        }
        if let Some(info) = self.wait_exit(id, timeout).await? {
            return Ok(info);
        }
        tracing::info!(
            zone = id,
            ?timeout,
            "zone ignored its stop signal: killing it"
        );
        self.kill_and_wait(id, &info).await
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<(), ZoneError> {
        let number = signal::parse(signal)?;
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let (_, info) = self.require(id).await?;
        if !info.state.can_kill() {
            return Err(ZoneError::WrongState {
                id: id.to_string(),
                state: info.state,
                op: "kill",
            });
        }
        self.runc.kill(id, number).await.map_err(ZoneError::from)
    }

    async fn pause(&self, id: &str) -> Result<(), ZoneError> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let (_, info) = self.require(id).await?;
        match info.state {
            ZoneState::Paused => Ok(()),
            ZoneState::Running => Ok(self.runc.pause(id).await?),
            state => Err(ZoneError::WrongState {
                id: id.to_string(),
                state,
                op: "pause",
            }),
        }
    }

    async fn unpause(&self, id: &str) -> Result<(), ZoneError> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let (_, info) = self.require(id).await?;
        match info.state {
            ZoneState::Running => Ok(()),
            ZoneState::Paused => Ok(self.runc.resume(id).await?),
            state => Err(ZoneError::WrongState {
                id: id.to_string(),
                state,
                op: "unpause",
            }),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), ZoneError> {
        let dir = self.dir(id)?;
        let lock = self.lock(id);
        let guard = lock.lock().await;
        if !dir.path().exists() {
            return Ok(());
        }
        if let Some((_, info)) = self.observe(id).await?
            && info.state.can_kill()
        {
            self.kill_and_wait(id, &info).await?;
        }
        self.runc.delete(id).await?;
        // The monitor goes by itself once the zone is gone; one that lingers
        // (wedged on a client) must not keep files open in a removed dir.
        if let Some(monitor) = self.monitor_state(&dir).await?
            && monitor.monitor_alive
        {
            let deadline = Instant::now() + MONITOR_GRACE;
            let mut alive = true;
            while alive && Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
                alive = self
                    .monitor_state(&dir)
                    .await?
                    .is_some_and(|m| m.monitor_alive);
            }
            if alive && let Some(pid) = monitor.monitor_pid.and_then(rustix::process::Pid::from_raw)
            {
                tracing::warn!(
                    zone = id,
                    pid = pid.as_raw_nonzero().get(),
                    "killing a lingering monitor"
                );
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        blocking(move || install::remove(&dir)).await?;
        tracing::info!(zone = id, "zone deleted");
        drop(guard);
        self.forget_lock(id, &lock);
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ZoneInfo>, ZoneError> {
        if !valid_id(id) {
            return Ok(None);
        }
        Ok(self.observe(id).await?.map(|(_, info)| info))
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<ZoneEvent> {
        self.events.subscribe()
    }

    async fn list(&self) -> Result<Vec<ZoneInfo>, ZoneError> {
        let root = self.config.root.clone();
        let ids = blocking(move || {
            let entries = std::fs::read_dir(&root)
                .map_err(ZoneError::io(format!("listing {}", root.display())))?;
            let mut ids = Vec::new();
            for entry in entries {
                let entry = entry.map_err(ZoneError::io(format!("listing {}", root.display())))?;
                if let Some(name) = entry.file_name().to_str()
                    && valid_id(name)
                {
                    ids.push(name.to_string());
                }
            }
            ids.sort();
            Ok(ids)
        })
        .await?;
        let mut zones = Vec::new();
        for id in ids {
            if let Some((_, info)) = self.observe(&id).await? {
                zones.push(info);
            }
        }
        Ok(zones)
    }
}
