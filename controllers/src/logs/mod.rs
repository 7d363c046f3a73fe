//! Log forwarding: the `syslog`, `gelf` and `fluentd` log drivers.
//!
//! The monitor writes every container's output to its host log in Docker's
//! json-file format, whatever the driver (except `none`). For a container
//! whose driver forwards, this node-scoped controller keeps one forwarding
//! task per container placed on this node ([`log_forwarding_controller`]):
//! a [`LogFollower`] reads the host log across rotations from a saved
//! position ([`follow`]), and the driver's [`Endpoint`] sends each line
//! ([`syslog`], [`gelf`], [`fluentd`]) through the loop in [`forward`].
//!
//! The task starts when the container is on this node with a forwarding
//! driver, follows while it runs (or is paused or restarting), and when it
//! is not running forwards what is left and ends. A change of the log
//! configuration (or anything its messages carry, such as the name)
//! restarts it from the saved position; deletion, a move to `json-file` or
//! `none`, or leaving this node stops it.
//!
//! As the seeds say of these drivers, forwarding is "limited": lines can be
//! lost while an endpoint is down (beyond the buffer, see [`forward`]) or
//! over UDP, and lines sent shortly before a crash of the daemon are sent
//! again after it. The host log keeps everything regardless.

pub mod fluentd;
pub mod follow;
pub mod forward;
pub mod gelf;
pub mod syslog;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sdc_docker_store::model::{Container, ContainerState};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use follow::{Checkpoint, FileId, LogFollower, LogLine, Position, Stream};
pub use forward::{Endpoint, ForwardOptions, ForwardStats, Mode, forward};

use crate::{Action, Context, Controller, ObjectKey, ReconcileError, reconcile_fn};

/// The controller's name.
pub const LOG_FORWARDING: &str = "log-forwarding";

/// The state file's name in a container's state directory.
pub const STATE_FILE: &str = "log-forward.json";

/// Why a container's forwarding could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// The syslog options do not make a destination.
    #[error(transparent)]
    Syslog(#[from] syslog::SyslogError),
    /// The gelf options do not make a destination.
    #[error(transparent)]
    Gelf(#[from] gelf::GelfError),
    /// The fluentd options do not make a destination.
    #[error(transparent)]
    Fluentd(#[from] fluentd::FluentdError),
}

/// Where a node keeps a container's files; the zone driver knows.
pub trait LogPaths: Send + Sync {
    /// The container's host log (`path`, rotated to `path.1`, …), if it has
    /// one on this node.
    fn host_log(&self, container: &Container) -> Option<PathBuf>;
    /// A directory for the forwarding position; `None` keeps it beside the
    /// host log.
    fn state_dir(&self, container: &Container) -> Option<PathBuf>;
}

/// What log messages say about their container, and what tag templates
/// are rendered from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The full (64 hex) id.
    pub id: String,
    /// The name, without Docker's leading `/`.
    pub name: String,
    /// The image id (`sha256:…`).
    pub image_id: String,
    /// The image as the user named it.
    pub image_name: String,
    /// Entrypoint and arguments, joined by spaces.
    pub command: String,
    /// When the container was created.
    pub created: Option<OffsetDateTime>,
}

impl ContainerInfo {
    /// The info of `container` (its uid stands in for an id not yet set).
    pub fn of(container: &Container) -> Self {
        let spec = &container.spec;
        let id = if spec.id.is_empty() {
            container.metadata.uid.clone()
        } else {
            spec.id.clone()
        };
        let command: Vec<&str> = spec
            .entrypoint
            .iter()
            .flatten()
            .chain(spec.cmd.iter())
            .map(String::as_str)
            .collect();
        ContainerInfo {
            id,
            name: container.metadata.name.clone(),
            image_id: spec.image_id.clone(),
            image_name: spec.image.clone(),
            command: command.join(" "),
            created: container.metadata.creation_timestamp,
        }
    }

    /// `template` with Docker's log tag fields replaced: `{{.ID}}` (12
    /// characters), `{{.FullID}}`, `{{.Name}}`, `{{.ImageID}}` (12),
    /// `{{.ImageFullID}}`, `{{.ImageName}}`, `{{.DaemonName}}`. Anything
    /// else is kept as written.
    pub fn render_tag(&self, template: &str) -> String {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        let image = self
            .image_id
            .strip_prefix("sha256:")
            .unwrap_or(&self.image_id);
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                out.push_str(&rest[open..]);
                return out;
            };
            let field = match after[..close].trim() {
                ".ID" => Some(short(&self.id)),
                ".FullID" => Some(self.id.clone()),
                ".Name" => Some(self.name.clone()),
                ".ImageID" => Some(short(image)),
                ".ImageFullID" => Some(self.image_id.clone()),
                ".ImageName" => Some(self.image_name.clone()),
                ".DaemonName" => Some("docker".to_owned()),
                _ => None,
            };
            match field {
                Some(value) => out.push_str(&value),
                None => out.push_str(&rest[open..open + 2 + close + 2]),
            }
            rest = &after[close + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// A forwarding driver's destination, fully worked out for one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `syslog`.
    Syslog(syslog::SyslogConfig),
    /// `gelf`.
    Gelf(gelf::GelfConfig),
    /// `fluentd`.
    Fluentd(fluentd::FluentdConfig),
}

impl Destination {
    /// The destination of `container`'s log config on a node called
    /// `hostname`; `None` when its driver does not forward (or its log
    /// config is invalid, which the API refuses anyway).
    pub fn of(container: &Container, hostname: &str) -> Result<Option<Self>, LogsError> {
        let Ok(valid) = container.spec.log_config.validate() else {
            return Ok(None);
        };
        let info = ContainerInfo::of(container);
        let option = |name: &str| valid.options.get(name).map_or("", String::as_str);
        let tag = |name: &str| {
            let template = option(name);
            info.render_tag(if template.is_empty() {
                "{{.ID}}"
            } else {
                template
            })
        };
        Ok(Some(match valid.driver.as_str() {
            "syslog" => Destination::Syslog(syslog::SyslogConfig::from_options(
                &valid.options,
                tag("syslog-tag"),
            )?),
            "gelf" => Destination::Gelf(gelf::GelfConfig::new(
                option("gelf-address"),
                hostname.to_owned(),
                tag("gelf-tag"),
                info.clone(),
            )?),
            "fluentd" => Destination::Fluentd(fluentd::FluentdConfig::new(
                option("fluentd-address"),
                tag("fluentd-tag"),
                &info,
            )?),
            _ => return Ok(None),
        }))
    }

    /// The endpoint that sends there.
    pub fn endpoint(&self) -> Box<dyn Endpoint> {
        match self {
            Destination::Syslog(c) => Box::new(syslog::SyslogEndpoint::new(c.clone())),
            Destination::Gelf(c) => Box::new(gelf::GelfEndpoint::new(c.clone())),
            Destination::Fluentd(c) => Box::new(fluentd::FluentdEndpoint::new(c.clone())),
        }
    }
}

/// The containers whose forwarding task runs, for callers to observe (a
/// task that drained a stopped container's log and ended is not listed).
#[derive(Clone, Debug, Default)]
pub struct Forwarders(Arc<Mutex<BTreeMap<ObjectKey, u64>>>);

impl Forwarders {
    /// The keys of the containers being forwarded now.
    pub fn active(&self) -> Vec<ObjectKey> {
        lock(&self.0).keys().cloned().collect()
    }
}

/// How the log forwarding controller runs.
#[derive(Clone, Debug)]
pub struct LogForwardingOptions {
    /// The name of this node: containers whose `status.node` is this.
    pub node: String,
    /// This node's hostname, for GELF's `host`.
    pub hostname: String,
    /// How often followers look for new lines.
    pub poll: Duration,
    /// The forwarding loop's buffer and retries.
    pub forward: ForwardOptions,
    /// Filled with the containers being forwarded.
    pub forwarders: Forwarders,
}

impl LogForwardingOptions {
    /// Options for node `node` with hostname `hostname` and the defaults.
    pub fn new(node: impl Into<String>, hostname: impl Into<String>) -> Self {
        LogForwardingOptions {
            node: node.into(),
            hostname: hostname.into(),
            poll: LogFollower::POLL,
            forward: ForwardOptions::default(),
            forwarders: Forwarders::default(),
        }
    }
}

/// One running forwarding task.
struct Task {
    uid: String,
    destination: Destination,
    log: PathBuf,
    mode: watch::Sender<Mode>,
    handle: JoinHandle<()>,
}

/// The controller's shared value. Dropping it (the controller ends) drops
/// every task's mode sender, which stops the tasks.
struct Forwarding {
    options: LogForwardingOptions,
    paths: Arc<dyn LogPaths>,
    tasks: Mutex<HashMap<ObjectKey, Task>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert or remove: a poisoned lock is intact.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node-scoped controller that forwards the host logs of the
/// containers on `options.node` whose driver is `syslog`, `gelf` or
/// `fluentd`; `paths` says where their logs are.
pub fn log_forwarding_controller(
    paths: Arc<dyn LogPaths>,
    options: LogForwardingOptions,
) -> Controller<Container> {
    let data = Forwarding {
        options,
        paths,
        tasks: Mutex::new(HashMap::new()),
    };
    Controller::<Container>::new(LOG_FORWARDING, reconcile_fn(reconcile), data)
        .node_scoped()
        // `status.node` and `status.state` matter, not only the spec.
        .every_change()
}

/// Tells the tasks apart in [`Forwarders`].
static NEXT_TASK: AtomicU64 = AtomicU64::new(0);

/// How long a stopping task may take to save its position.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a running container's task is checked (restarted if it died).
const CHECK_EVERY: Duration = Duration::from_secs(10);

impl Forwarding {
    /// Stops the task of `key`, waiting (briefly) for it to save its
    /// position.
    async fn stop(&self, key: &ObjectKey) {
        let task = lock(&self.tasks).remove(key);
        lock(&self.options.forwarders.0).remove(key);
        if let Some(task) = task {
            if !task.handle.is_finished() {
                tracing::info!(container = %key, "stopping log forwarding");
            }
            task.mode.send_replace(Mode::Stop);
            let mut handle = task.handle;
            if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
                handle.abort();
            }
        }
    }
}

async fn reconcile(
    key: ObjectKey,
    ctx: Context<Container, Forwarding>,
) -> Result<Action, ReconcileError> {
    let state = ctx.data();
    let Some(container) = ctx.get(&key) else {
        state.stop(&key).await;
        return Ok(Action::AwaitChange);
    };
    let wanted = if container.metadata.deletion_timestamp.is_some()
        || container.status.node != state.options.node
    {
        None
    } else {
        match Destination::of(&container, &state.options.hostname) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(container = %key, error = %e, "cannot forward logs");
                None
            }
        }
    };
    let Some(destination) = wanted else {
        state.stop(&key).await;
        return Ok(Action::AwaitChange);
    };
    let Some(log) = state.paths.host_log(&container) else {
        state.stop(&key).await;
        return Ok(Action::AwaitChange);
    };
    let running = matches!(
        container.status.state,
        ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
    );
    let mode = if running { Mode::Follow } else { Mode::Drain };
    let same = {
        let tasks = lock(&state.tasks);
        tasks.get(&key).map(|t| {
            t.uid == container.metadata.uid
                && t.destination == destination
                && t.log == log
                && !t.handle.is_finished()
        })
    };
    match same {
        Some(true) => {
            let tasks = lock(&state.tasks);
            if let Some(task) = tasks.get(&key) {
                task.mode.send_if_modified(|m| {
                    let changed = *m != mode;
                    *m = mode;
                    changed
                });
            }
        }
        Some(false) | None => {
            if same == Some(false) {
                state.stop(&key).await;
            }
            let state_file = match state.paths.state_dir(&container) {
                Some(dir) => dir.join(STATE_FILE),
                None => {
                    let mut name = log.as_os_str().to_owned();
                    name.push(".forward.json");
                    PathBuf::from(name)
                }
            };
            let checkpoint = Checkpoint::load(&state_file).await;
            let follower =
                LogFollower::new(&log, checkpoint.position()).poll_interval(state.options.poll);
            let (mode_tx, mode_rx) = watch::channel(mode);
            let endpoint = destination.endpoint();
            let options = state.options.forward.clone();
            let task_key = key.clone();
            let forwarders = state.options.forwarders.clone();
            let task_id = NEXT_TASK.fetch_add(1, Ordering::Relaxed);
            lock(&forwarders.0).insert(key.clone(), task_id);
            if mode == Mode::Follow {
                tracing::info!(container = %key, log = %log.display(), "starting log forwarding");
            } else {
                // Every trigger of a stopped container checks for lines left.
                tracing::debug!(container = %key, log = %log.display(), "draining the host log");
            }
            let handle = tokio::spawn(async move {
                let stats = Arc::new(ForwardStats::default());
                match forward(follower, checkpoint, endpoint, options, mode_rx, stats).await {
                    Ok(()) => tracing::debug!(container = %task_key, "log forwarding ended"),
                    Err(e) => {
                        tracing::warn!(container = %task_key, error = %e, "log forwarding failed")
                    }
                }
                let mut active = lock(&forwarders.0);
                if active.get(&task_key) == Some(&task_id) {
                    active.remove(&task_key);
                }
            });
            lock(&state.tasks).insert(
                key.clone(),
                Task {
                    uid: container.metadata.uid.clone(),
                    destination,
                    log,
                    mode: mode_tx,
                    handle,
                },
            );
        }
    }
    if running {
        Ok(Action::requeue(CHECK_EVERY))
    } else {
        Ok(Action::AwaitChange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_templates_render_dockers_fields_and_keep_the_rest() {
        let info = ContainerInfo {
            id: "0123456789abcdef0123".into(),
            name: "web".into(),
            image_id: "sha256:fedcba9876543210".into(),
            image_name: "nginx".into(),
            ..Default::default()
        };
        assert_eq!(info.render_tag("{{.ID}}"), "0123456789ab");
        assert_eq!(
            info.render_tag("app/{{ .Name }}/{{.FullID}}"),
            "app/web/0123456789abcdef0123"
        );
        assert_eq!(
            info.render_tag("{{.ImageName}}@{{.ImageID}} {{.Other}} {{"),
            "nginx@fedcba987654 {{.Other}} {{"
        );
    }
}
