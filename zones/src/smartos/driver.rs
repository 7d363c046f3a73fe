//! [`ZoneDriver`] for SmartOS: each call is one or a few `vmadm` commands,
//! and what a zone is comes back from `vmadm get` / `vmadm lookup -j`.
//!
//! States map from vmadm's: `configured`, `provisioning`, `incomplete`,
//! `receiving` and `failed` are [`ZoneState::Configured`] (a create that did
//! not finish: `create` deletes such a zone and makes it again, under the
//! same UUID, so a zone is never made twice); `running`, `ready`,
//! `shutting_down` and `stopping` are live; `stopped`/`installed`/`down` are
//! [`ZoneState::Installed`] before the first boot and [`ZoneState::Stopped`]
//! after. The platform keeps `exit_status`/`exit_timestamp` of docker zones,
//! carries their restart policy itself and counts restarts in
//! `docker:restartcount`, reported as [`ZoneInfo::restart_count`].
//!
//! SmartOS has no freezer for zones: pause stops every process of the zone
//! with SIGSTOP (the init through `vmadm kill`, the rest through `zlogin`)
//! and marks the zone `sdc-docker:paused` in its internal metadata; unpause
//! continues them.
//!
//! Exits are noticed by listing the zones every `poll_interval` (vmadm has
//! no event stream on every platform image); the poller starts with the
//! first call to [`ZoneDriver::events`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::SmartosDriver;
use super::commands::Tool;
use super::images::{Installer, chain};
use super::payload::vmadm_payload;
use crate::docker::{LABEL_ACCOUNT, LABEL_CONTAINER_ID, LABEL_NAME};
use crate::driver::{ZoneDriver, ZoneError, ZoneEvent, ZoneInfo, ZoneState};
use crate::signal;
use crate::spec::ZoneSpec;

/// The internal-metadata key marking a zone paused by this driver.
pub const PAUSED_KEY: &str = "sdc-docker:paused";

/// The internal-metadata key where the driver records when it started the
/// zone (RFC 3339).
pub const STARTED_KEY: &str = "sdc-docker:started_at";

/// The identity labels a zone carries in its internal metadata.
const IDENTITY: [&str; 3] = [LABEL_ACCOUNT, LABEL_NAME, LABEL_CONTAINER_ID];

/// What `vmadm lookup -j -o` asks for: all [`zone_info`] reads.
const FIELDS: &str =
    "uuid,state,zone_state,pid,exit_status,exit_timestamp,boot_timestamp,internal_metadata,tags";

/// The zone `vm` (a vmadm VM object) as the trait reports it.
pub fn zone_info(vm: &Value) -> Option<ZoneInfo> {
    let id = vm.get("uuid")?.as_str()?.to_string();
    let metadata = vm.get("internal_metadata");
    let meta = |key: &str| metadata.and_then(|m| m.get(key));
    let timestamp = |key: &str| {
        vm.get(key)
            .and_then(Value::as_str)
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    };
    // vmadm reports `boot_timestamp` only while the zone runs; the driver
    // records each start it makes, so a zone that already exited still
    // says when it started.
    let recorded = meta(STARTED_KEY)
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok());
    let started_at = timestamp("boot_timestamp").max(recorded);
    let finished_at = timestamp("exit_timestamp");
    let paused = meta(PAUSED_KEY).is_some_and(|v| v == &json!(true) || v == &json!("true"));
    let state = match vm.get("state").and_then(Value::as_str).unwrap_or_default() {
        "running" | "ready" | "shutting_down" | "stopping" if paused => ZoneState::Paused,
        "running" | "ready" | "shutting_down" | "stopping" => ZoneState::Running,
        "stopped" | "installed" | "down" if started_at.is_none() && finished_at.is_none() => {
            ZoneState::Installed
        }
        "stopped" | "installed" | "down" => ZoneState::Stopped,
        _ => ZoneState::Configured,
    };
    let live = matches!(state, ZoneState::Running | ZoneState::Paused);
    let restart_count = meta("docker:restartcount")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0);
    let labels: BTreeMap<String, String> = IDENTITY
        .iter()
        .filter_map(|key| Some((key.to_string(), meta(key)?.as_str()?.to_string())))
        .collect();
    Some(ZoneInfo {
        id,
        state,
        pid: vm.get("pid").and_then(Value::as_i64).filter(|_| live),
        exit_code: vm
            .get("exit_status")
            .and_then(Value::as_i64)
            .filter(|_| state == ZoneState::Stopped),
        started_at,
        finished_at: finished_at.filter(|_| state == ZoneState::Stopped),
        oom_killed: false,
        labels,
        restart_count: Some(restart_count),
    })
}

fn not_found(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("not found") || lower.contains("no such") || lower.contains("does not exist")
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl SmartosDriver {
    async fn vmadm(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, ZoneError> {
        Ok(self
            .config
            .commands
            .run(Tool::Vmadm, args, stdin)
            .await?
            .stdout)
    }

    /// The VM object of zone `id`, or `None`.
    pub async fn vm(&self, id: &str) -> Result<Option<Value>, ZoneError> {
        match self.vmadm(&["get", id], None).await {
            Ok(out) => serde_json::from_slice(&out)
                .map(Some)
                .map_err(|e| ZoneError::Corrupt {
                    path: format!("vmadm get {id}"),
                    source: e,
                }),
            Err(ZoneError::Runtime { message, .. }) if not_found(&message) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn require(&self, id: &str) -> Result<ZoneInfo, ZoneError> {
        self.get(id)
            .await?
            .ok_or_else(|| ZoneError::NotFound { id: id.to_string() })
    }

    /// The `image_uuid` of `spec`'s zone, installing the image first: the
    /// chain of its Docker layers, or, for an image named by UUID with no
    /// layers here (a SmartOS image), `imgadm import` of it.
    async fn image_uuid(&self, spec: &ZoneSpec) -> Result<String, ZoneError> {
        if spec.image.lower_dirs.is_empty() {
            let uuid = spec.image.id.trim_start_matches("uuid:");
            if !is_uuid(uuid) {
                return Err(ZoneError::InvalidSpec(format!(
                    "image {} has no layers on this node and is not a SmartOS image UUID",
                    spec.image.id
                )));
            }
            let imgadm = &self.config.commands;
            let installed = imgadm
                .run(Tool::Imgadm, &["get", "-P", &self.config.zpool, uuid], None)
                .await;
            if installed.is_err() {
                imgadm
                    .run(
                        Tool::Imgadm,
                        &["import", "-P", &self.config.zpool, uuid],
                        None,
                    )
                    .await
                    .map_err(|e| match e {
                        ZoneError::Runtime { message, .. } => ZoneError::ImageMissing {
                            path: format!("{uuid} ({message})"),
                        },
                        other => other,
                    })?;
            }
            return Ok(uuid.to_string());
        }
        let layers = chain(&spec.image.lower_dirs)?;
        Installer {
            commands: &self.config.commands,
            zpool: &self.config.zpool,
            imgadm_db: &self.config.imgadm_db,
        }
        .install(&layers, &spec.docker.image_name, &spec.docker.image_os)
        .await
    }

    async fn set_metadata(&self, id: &str, set: Value, remove: &[&str]) -> Result<(), ZoneError> {
        let mut update = json!({});
        if set.as_object().is_some_and(|m| !m.is_empty()) {
            update["set_internal_metadata"] = set;
        }
        if !remove.is_empty() {
            update["remove_internal_metadata"] = json!(remove);
        }
        let body = serde_json::to_vec(&update).unwrap_or_default();
        self.vmadm(&["update", id], Some(&body)).await.map(|_| ())
    }

    /// Waits until zone `id` is no longer live, up to `timeout`.
    async fn wait_down(&self, id: &str, timeout: Duration) -> Result<Option<ZoneInfo>, ZoneError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let zone = self.require(id).await?;
            if !zone.state.can_kill() {
                return Ok(Some(zone));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` to every process of zone `id` but its init.
    async fn signal_processes(&self, id: &str, signal: &str) -> Result<(), ZoneError> {
        self.config
            .commands
            .run(
                Tool::Zlogin,
                // The shell's own `kill`: images need not have a kill
                // binary. A zone with no process but its init has nobody
                // to signal, which is not a failure.
                &[
                    "-Q",
                    id,
                    "sh",
                    "-c",
                    &format!("kill -{signal} -1 2>/dev/null; exit 0"),
                ],
                None,
            )
            .await
            .map(|_| ())
    }

    /// Lists the zones of this driver and sends [`ZoneEvent::Exited`] for
    /// each that stopped (or was restarted by the platform) since the last
    /// look, until the driver is dropped.
    async fn poll_exits(driver: std::sync::Weak<SmartosDriver>) {
        let mut seen: HashMap<String, (ZoneState, Option<OffsetDateTime>, Option<i64>)> =
            HashMap::new();
        loop {
            let Some(d) = driver.upgrade() else { return };
            let interval = d.config.poll_interval;
            match d.list().await {
                Ok(zones) => {
                    for zone in zones {
                        let now = (zone.state, zone.finished_at, zone.restart_count);
                        let before = seen.insert(zone.id.clone(), now);
                        let exited = before.is_some_and(|(state, finished, restarts)| {
                            (state.can_kill() && zone.state == ZoneState::Stopped)
                                || finished != now.1
                                || restarts != now.2
                        });
                        if exited {
                            let _ = d.events.send(ZoneEvent::Exited { id: zone.id });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing zones to notice exits failed"),
            }
            drop(d);
            tokio::time::sleep(interval).await;
        }
    }
}

#[async_trait::async_trait]
impl ZoneDriver for SmartosDriver {
    fn kind(&self) -> &'static str {
        "smartos"
    }

    async fn create(&self, spec: &ZoneSpec) -> Result<ZoneInfo, ZoneError> {
        if let Some(zone) = self.get(&spec.id).await? {
            if zone.state != ZoneState::Configured {
                return Ok(zone);
            }
            // A create that failed or was cut short: vmadm leaves the zone
            // `failed` or half made; make it again under the same UUID.
            tracing::info!(zone = %spec.id, "deleting a zone whose create did not finish");
            self.vmadm(&["delete", &spec.id], None).await?;
        }
        let image_uuid = self.image_uuid(spec).await?;
        let payload = vmadm_payload(spec, &image_uuid, &self.config.payload);
        let body = serde_json::to_vec(&payload).map_err(|e| ZoneError::Corrupt {
            path: "the vmadm payload".into(),
            source: e,
        })?;
        self.vmadm(&["create"], Some(&body))
            .await
            .map_err(|e| match e {
                ZoneError::Runtime { message, .. } => ZoneError::Runtime {
                    op: "vmadm create".into(),
                    message,
                },
                other => other,
            })?;
        tracing::info!(zone = %spec.id, %image_uuid, "zone created with vmadm");
        self.require(&spec.id).await
    }

    async fn start(&self, id: &str) -> Result<ZoneInfo, ZoneError> {
        let zone = self.require(id).await?;
        match zone.state {
            ZoneState::Running | ZoneState::Paused => return Ok(zone),
            ZoneState::Configured => {
                return Err(ZoneError::WrongState {
                    id: id.into(),
                    state: zone.state,
                    op: "start",
                });
            }
            ZoneState::Installed | ZoneState::Stopped => {}
        }
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut record = json!({ STARTED_KEY: now });
        if zone.restart_count.is_some_and(|n| n > 0) {
            // A start the user asks for begins a new count, as in Docker.
            record["docker:restartcount"] = json!(0);
        }
        self.set_metadata(id, record, &[]).await?;
        self.vmadm(&["start", id], None).await?;
        self.require(id).await
    }

    async fn stop(&self, id: &str, signal: &str, timeout: Duration) -> Result<ZoneInfo, ZoneError> {
        let zone = self.require(id).await?;
        if !zone.state.can_kill() {
            return Ok(zone);
        }
        if zone.state == ZoneState::Paused {
            self.unpause(id).await?;
        }
        let number = signal::parse(if signal.is_empty() { "SIGTERM" } else { signal })
            .map_err(|e| ZoneError::InvalidSignal(e.0))?;
        let seconds = timeout.as_secs().max(1).to_string();
        if number == 15 {
            // vmadm's own stop: SIGTERM to the init, SIGKILL after -t.
            self.vmadm(&["stop", id, "-t", &seconds], None).await?;
        } else {
            let name = signal::name(number);
            self.vmadm(&["kill", "-s", &name, id], None).await?;
            if self.wait_down(id, timeout).await?.is_none() {
                self.vmadm(&["stop", id, "-F"], None).await?;
            }
        }
        match self.wait_down(id, Duration::from_secs(10)).await? {
            Some(zone) => Ok(zone),
            None => Err(ZoneError::Timeout {
                id: id.into(),
                what: "stop",
                after: timeout + Duration::from_secs(10),
            }),
        }
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<(), ZoneError> {
        let number = signal::parse(signal).map_err(|e| ZoneError::InvalidSignal(e.0))?;
        let zone = self.require(id).await?;
        if !zone.state.can_kill() {
            return Err(ZoneError::WrongState {
                id: id.into(),
                state: zone.state,
                op: "kill",
            });
        }
        self.vmadm(&["kill", "-s", &signal::name(number), id], None)
            .await
            .map(|_| ())
    }

    async fn pause(&self, id: &str) -> Result<(), ZoneError> {
        let zone = self.require(id).await?;
        match zone.state {
            ZoneState::Paused => return Ok(()),
            ZoneState::Running => {}
            state => {
                return Err(ZoneError::WrongState {
                    id: id.into(),
                    state,
                    op: "pause",
                });
            }
        }
        self.set_metadata(id, json!({ PAUSED_KEY: true }), &[])
            .await?;
        self.signal_processes(id, "STOP").await?;
        self.vmadm(&["kill", "-s", "SIGSTOP", id], None)
            .await
            .map(|_| ())
    }

    async fn unpause(&self, id: &str) -> Result<(), ZoneError> {
        let zone = self.require(id).await?;
        if zone.state != ZoneState::Paused {
            return Err(ZoneError::WrongState {
                id: id.into(),
                state: zone.state,
                op: "unpause",
            });
        }
        self.vmadm(&["kill", "-s", "SIGCONT", id], None).await?;
        self.signal_processes(id, "CONT").await?;
        self.set_metadata(id, json!({}), &[PAUSED_KEY]).await
    }

    async fn delete(&self, id: &str) -> Result<(), ZoneError> {
        if self.vm(id).await?.is_none() {
            return Ok(());
        }
        match self.vmadm(&["delete", id], None).await {
            Ok(_) => Ok(()),
            Err(ZoneError::Runtime { message, .. }) if not_found(&message) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ZoneInfo>, ZoneError> {
        Ok(self.vm(id).await?.as_ref().and_then(zone_info))
    }

    async fn list(&self) -> Result<Vec<ZoneInfo>, ZoneError> {
        let out = self
            .vmadm(
                &["lookup", "-j", "-o", FIELDS, "tags.sdc_docker=true"],
                None,
            )
            .await?;
        let vms: Vec<Value> = serde_json::from_slice(&out).map_err(|e| ZoneError::Corrupt {
            path: "vmadm lookup -j".into(),
            source: e,
        })?;
        Ok(vms.iter().filter_map(zone_info).collect())
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<ZoneEvent> {
        let receiver = self.events.subscribe();
        if let Some(me) = self.me.get()
            && !self
                .poller_started
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(SmartosDriver::poll_exits(me.clone()));
        }
        receiver
    }
}

/// Makes the driver able to start its exit poller (it holds a weak
/// reference to itself for that).
pub fn shared(driver: SmartosDriver) -> Arc<SmartosDriver> {
    let driver = Arc::new(driver);
    let _ = driver.me.set(Arc::downgrade(&driver));
    driver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmadm_states_map_to_zone_states_with_first_boot_telling_installed_from_stopped() {
        let vm = |state: &str, extra: Value| {
            let mut vm = json!({ "uuid": "0f5cba1c-5c9f-4d8e-9c1e-3a3b2a1c0d0e", "state": state });
            if let (Some(vm), Some(extra)) = (vm.as_object_mut(), extra.as_object()) {
                vm.extend(extra.clone());
            }
            zone_info(&vm).unwrap()
        };
        assert_eq!(vm("provisioning", json!({})).state, ZoneState::Configured);
        assert_eq!(vm("failed", json!({})).state, ZoneState::Configured);
        assert_eq!(vm("stopped", json!({})).state, ZoneState::Installed);
        let exited = vm(
            "stopped",
            json!({
                "boot_timestamp": "2026-11-23T10:00:00.000Z",
                "exit_timestamp": "2026-11-23T10:00:01.000Z",
                "exit_status": 3,
                "internal_metadata": { "docker:restartcount": 2, "sdc-docker.name": "web" },
            }),
        );
        assert_eq!(exited.state, ZoneState::Stopped);
        assert_eq!(exited.exit_code, Some(3));
        assert_eq!(exited.restart_count, Some(2));
        assert_eq!(exited.labels[LABEL_NAME], "web");
        let running = vm(
            "running",
            json!({ "pid": 42, "boot_timestamp": "2026-11-23T10:00:00Z" }),
        );
        assert_eq!((running.state, running.pid), (ZoneState::Running, Some(42)));
        let paused = vm(
            "running",
            json!({ "internal_metadata": { PAUSED_KEY: true } }),
        );
        assert_eq!(paused.state, ZoneState::Paused);
    }
}
