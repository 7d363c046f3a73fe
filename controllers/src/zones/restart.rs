//! The restart-policy controller: when a zone's process exits by itself
//! (not by `docker stop`), start it again if the container's restart policy
//! says so ([`RestartPolicy::restarts_after_exit`]), after
//! [`restart_delay`]`(RestartCount)` — 100, 200, 400 ms … — counted from the
//! exit the monitor recorded, and count the restart in `status.restartCount`.
//!
//! A node reboot is the same case seen from here: every monitor is gone,
//! the zones are stopped (with the exit code the process got, or Docker's
//! 255 when nothing could record one), and the user's last wish for each
//! container is still `running`; `always` and `unless-stopped` come back,
//! `on-failure` comes back when the exit was non-zero, `no` stays off —
//! the seeds' rules. A restart of the daemon is not an exit: running zones
//! are left alone.
//!
//! A zone whose platform carries the policy itself (SmartOS: the zone's
//! `docker:restartpolicy`, counted in `docker:restartcount`, reported as
//! [`ZoneInfo::restart_count`](sdc_docker_zones::ZoneInfo)) is never
//! restarted from here; provisioning copies its count into the status.
//!
//! It acts only once provisioning has realised the user's last wish
//! (`observedGeneration == generation`), so a `docker stop` is never undone.

use std::time::Duration;

use sdc_docker_store::model::{Container, DesiredState, restart_delay};
use sdc_docker_zones::{ZoneError, ZoneState};
use time::OffsetDateTime;

use super::{NodeZones, container_zone_id, observe, write_status};
use crate::{Action, Context, Controller, ObjectKey, ReconcileError, reconcile_fn};

/// The controller's name.
pub const RESTART_POLICY: &str = "restart-policy";

/// The restart-policy controller of one node. Pass the keys of
/// [`super::zone_event_keys`] with `triggered_by` so exits are seen at once.
pub fn restart_controller(zones: NodeZones) -> Controller<Container> {
    Controller::new(RESTART_POLICY, reconcile_fn(reconcile), zones)
        .node_scoped()
        .every_change()
        .concurrency(16)
        .resync(Duration::from_secs(60))
}

async fn reconcile(
    key: ObjectKey,
    ctx: Context<Container, NodeZones>,
) -> Result<Action, ReconcileError> {
    let zones = ctx.data().clone();
    let Some(cached) = ctx.get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if !zones.owns(&cached)
        || cached.spec.desired_state != DesiredState::Running
        || cached.status.observed_generation < cached.metadata.generation
    {
        return Ok(Action::AwaitChange);
    }
    let Some(id) = container_zone_id(&cached) else {
        return Ok(Action::AwaitChange);
    };
    let Some(zone) = zones
        .driver
        .get(&id)
        .await
        .map_err(ReconcileError::transient)?
    else {
        return Ok(Action::AwaitChange);
    };
    if zone.restart_count.is_some() {
        // The platform restarts this zone itself (SmartOS carries the
        // policy in `docker:restartpolicy`); provisioning records its count
        // with the rest of what it observes.
        return Ok(Action::AwaitChange);
    }
    if zone.state != ZoneState::Stopped {
        return Ok(Action::AwaitChange);
    }
    // The count decides, so it is read from the store, not the cache.
    let container = match ctx.api().get(&key.name).await {
        Ok(c) => c,
        Err(sdc_docker_store::Error::NotFound { .. }) => return Ok(Action::AwaitChange),
        Err(e) => return Err(e.into()),
    };
    let count = container.status.restart_count;
    let exit_code = zone.exit_code.unwrap_or(255);
    if !container
        .spec
        .restart_policy
        .restarts_after_exit(exit_code, count, false)
    {
        return Ok(Action::AwaitChange);
    }
    let delay = restart_delay(count);
    if let Some(finished) = zone.finished_at {
        let elapsed = OffsetDateTime::now_utc() - finished;
        let elapsed = Duration::try_from(elapsed).unwrap_or_default();
        if elapsed < delay {
            return Ok(Action::requeue(delay - elapsed));
        }
    }
    let started = match zones.driver.start(&id).await {
        Ok(zone) => zone,
        Err(ZoneError::Runtime { message, .. }) => {
            // Counted like a start that ran and failed at once; the next
            // attempt waits longer.
            tracing::warn!(container = %key.name, error = %message, "restart failed");
            write_status(ctx.api(), &key.name, |c| {
                c.status.restart_count = count + 1;
                c.status.error = format!("OCI runtime create failed: {message}");
            })
            .await?;
            return Ok(Action::requeue(restart_delay(count + 1)));
        }
        Err(e) => return Err(ReconcileError::transient(e)),
    };
    tracing::info!(
        container = %key.name,
        exit_code,
        restart_count = count + 1,
        delay_ms = delay.as_millis() as u64,
        "restarted by its policy"
    );
    write_status(ctx.api(), &key.name, |c| {
        c.status.restart_count = count + 1;
        c.status.error.clear();
        observe(&mut c.status, &started);
    })
    .await?;
    Ok(Action::AwaitChange)
}
