//! Provisioning: makes this node's zone of each Container match what the
//! user last asked, and writes what it observes into the Container's
//! status.
//!
//! What the user asks is `spec.desiredState` at `metadata.generation`; once
//! acted upon, `status.observedGeneration` records it, so a process that
//! exits later is not started again by this controller (that is the restart
//! policy's call, [`super::restart`]). Each reconcile reads the zone back
//! first and acts only on the difference, so a reconcile cut short at any
//! point converges when it runs again, without a second zone: the zone id
//! is derived from the container's id. A container whose image is missing,
//! whose spec cannot become a zone, or whose process cannot start gets the
//! reason in `status.error` and a `Provisioned=False` condition; the other
//! containers are not affected.
//!
//! When a Container is deleted, its zones on this node are deleted; a zone
//! whose deletion was missed (the node was down) is left to
//! [`super::orphans`]. A container whose image this node lacks (another
//! node pulled it) has it pulled here first, by digest, from the registry it
//! came from.

use std::time::Duration;

use sdc_docker_images::pull::pull;
use sdc_docker_images::reference::Reference;
use sdc_docker_images::registry::Platform;
use sdc_docker_store::Api;
use sdc_docker_store::model::{
    Condition, Container, DesiredState, Image, Package, RequestAction, set_condition,
};
use sdc_docker_zones::{ZoneError, ZoneInfo, ZoneState, zone_spec};

use super::{NodeZones, container_image, container_zone_id, docker_id, observe, write_status};
use crate::{Action, Context, Controller, ObjectKey, ReconcileError, reconcile_fn};

/// The controller's name.
pub const PROVISIONING: &str = "provisioning";

/// The condition provisioning records on a container.
pub const PROVISIONED: &str = "Provisioned";

/// How soon a container waiting for its image is looked at again.
const IMAGE_RETRY: Duration = Duration::from_secs(30);

/// The provisioning controller of one node. Pass the keys of
/// [`super::zone_event_keys`] with `triggered_by` so exits are seen at once.
pub fn provisioning_controller(zones: NodeZones) -> Controller<Container> {
    Controller::new(PROVISIONING, reconcile_fn(reconcile), zones)
        .node_scoped()
        // The package cache, to size zones; a package change re-sizes nothing.
        .watches::<Package>(|_| Vec::new())
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
        // A Container renamed (written under its new name, then deleted
        // under the old) still has its zone: keep the zones of the ids the
        // cache still holds.
        let kept: Vec<String> = ctx.cache().list().iter().map(|c| docker_id(c)).collect();
        remove_zones(&zones, &key, &kept).await?;
        return Ok(Action::AwaitChange);
    };
    if !zones.owns(&cached) {
        return Ok(Action::AwaitChange);
    }
    // Whether the user's last wish is still to be acted upon is read from
    // the store, not the cache: a zone's exit can trigger this reconcile
    // before the cache has seen the status the previous one wrote, and a
    // stale `observedGeneration` would start the zone a second time.
    let container = match ctx.api().get(&key.name).await {
        Ok(c) => std::sync::Arc::new(c),
        Err(sdc_docker_store::Error::NotFound { .. }) => return Ok(Action::AwaitChange),
        Err(e) => return Err(e.into()),
    };
    if !zones.owns(&container) {
        return Ok(Action::AwaitChange);
    }
    let Some(id) = container_zone_id(&container) else {
        return Err(ReconcileError::terminal(format!(
            "container {} has an id that is not hex: {:?}",
            key.name, container.spec.id
        )));
    };
    let mut zone = zones
        .driver
        .get(&id)
        .await
        .map_err(ReconcileError::transient)?;
    if zone
        .as_ref()
        .is_none_or(|z| z.state == ZoneState::Configured)
    {
        // An older zone under this name (a container deleted and created
        // again while this node missed the deletion) is left to the orphan
        // sweep: looking for it here would read every zone on the node for
        // every create, making starts O(zones).
        match create(&zones, &ctx, &container).await? {
            Ok(created) => zone = Some(created),
            Err((message, Retry::Backoff)) => {
                // The runtime refused (a failed `vmadm create`): the reason
                // goes on the status, and the controller's per-key backoff
                // paces the next attempts.
                fail(&ctx, &key, &message).await?;
                return Err(ReconcileError::transient(message));
            }
            Err((message, Retry::After(delay))) => {
                fail(&ctx, &key, &message).await?;
                return Ok(Action::requeue(delay));
            }
            Err((message, Retry::OnChange)) => {
                fail(&ctx, &key, &message).await?;
                return Ok(Action::AwaitChange);
            }
        }
    }
    let Some(mut zone) = zone else {
        return Ok(Action::AwaitChange);
    };

    let generation = container.metadata.generation;
    let pending = container.status.observed_generation < generation;
    let mut error = String::new();
    if pending {
        // The zone as the driver left it; when the action does not say,
        // read it back (a failed start may have left an exit behind).
        let after = match act(&zones, &container, &id, &zone).await {
            Ok(next) => next,
            Err(ZoneError::Runtime { message, .. }) => {
                error = format!("OCI runtime create failed: {message}");
                None
            }
            Err(ZoneError::InvalidSignal(s)) => {
                error = format!("Invalid signal: {s}");
                None
            }
            Err(e) => return Err(ReconcileError::transient(e)),
        };
        match after {
            Some(next) => zone = next,
            None => {
                if let Some(now) = zones
                    .driver
                    .get(&id)
                    .await
                    .map_err(ReconcileError::transient)?
                {
                    zone = now;
                }
            }
        }
    }
    let starting = pending && container.spec.desired_state == DesiredState::Running;
    write_status(ctx.api(), &key.name, |c| {
        observe(&mut c.status, &zone);
        if pending {
            c.status.observed_generation = generation;
            c.status.acted_desired_state = Some(container.spec.desired_state);
            c.status.error = error.clone();
            if starting && error.is_empty() {
                // A start the user asked for begins a new count, as in Docker.
                c.status.restart_count = 0;
            }
        }
        provisioned(&mut c.status.conditions, error.is_empty(), &error);
    })
    .await?;
    let failed_start = starting && !error.is_empty();
    if container.spec.auto_remove
        && container.spec.desired_state != DesiredState::Created
        && (zone.state == ZoneState::Stopped || failed_start)
    {
        // `--rm`: the container goes once its process is over (or could
        // not start), as Docker's daemon does; the zone goes with it.
        tracing::info!(container = %key.name, "removing an exited --rm container");
        match ctx.api().delete(&key.name, None).await {
            Ok(_) | Err(sdc_docker_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::AwaitChange)
}

/// Acts on the user's last wish; the zone after it, when it changed.
async fn act(
    zones: &NodeZones,
    container: &Container,
    id: &str,
    zone: &ZoneInfo,
) -> Result<Option<ZoneInfo>, ZoneError> {
    let driver = &zones.driver;
    let stop_timeout = |requested: Option<i64>| {
        requested
            .or(container.spec.stop_timeout)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(zones.default_stop_timeout)
    };
    let request = container
        .spec
        .request
        .as_ref()
        .filter(|r| r.generation > container.status.observed_generation);
    if let Some(request) = request {
        let live = zone.state.can_kill();
        let signal = if request.signal.is_empty() {
            container.spec.stop_signal.as_str()
        } else {
            request.signal.as_str()
        };
        match request.action {
            // A signal, and nothing else: the desired state the API wrote
            // with it only says whether the restart policy may bring the
            // process back.
            RequestAction::Kill => {
                if live {
                    let signal = if request.signal.is_empty() {
                        "SIGKILL"
                    } else {
                        signal
                    };
                    driver.kill(id, signal).await?;
                }
                return Ok(None);
            }
            RequestAction::Restart if container.spec.desired_state == DesiredState::Running => {
                if live {
                    driver
                        .stop(id, signal, stop_timeout(request.timeout))
                        .await?;
                }
                return driver.start(id).await.map(Some);
            }
            RequestAction::Stop if container.spec.desired_state == DesiredState::Stopped => {
                if !live {
                    return Ok(None);
                }
                return driver
                    .stop(id, signal, stop_timeout(request.timeout))
                    .await
                    .map(Some);
            }
            // A start is what the desired state says; a request the
            // desired state written since contradicts is not carried out.
            RequestAction::Start | RequestAction::Restart | RequestAction::Stop => {}
        }
    }
    match container.spec.desired_state {
        DesiredState::Created => Ok(None),
        DesiredState::Running => match zone.state {
            ZoneState::Installed => driver.start(id).await.map(Some),
            // An exited process is started again when the user asks for a
            // start, or newly asks for running; not by an edit of another
            // field (that is the restart policy's call).
            ZoneState::Stopped
                if request.is_some_and(|r| r.action == RequestAction::Start)
                    || container.status.acted_desired_state != Some(DesiredState::Running) =>
            {
                driver.start(id).await.map(Some)
            }
            ZoneState::Stopped => Ok(None),
            ZoneState::Paused => {
                driver.unpause(id).await?;
                Ok(None)
            }
            ZoneState::Running | ZoneState::Configured => Ok(None),
        },
        DesiredState::Stopped => {
            if !matches!(zone.state, ZoneState::Running | ZoneState::Paused) {
                return Ok(None);
            }
            driver
                .stop(id, &container.spec.stop_signal, stop_timeout(None))
                .await
                .map(Some)
        }
        DesiredState::Paused => {
            if zone.state == ZoneState::Running {
                driver.pause(id).await?;
            }
            Ok(None)
        }
    }
}

/// When a zone that could not be made is tried again.
enum Retry {
    /// After this delay (the image may arrive).
    After(Duration),
    /// When the spec changes (it cannot become a zone as it is).
    OnChange,
    /// With the controller's growing backoff (the runtime failed).
    Backoff,
}

/// Creates the zone of `container`: `Err((message, retry))` when it cannot
/// be made now (the message goes on its status).
async fn create(
    zones: &NodeZones,
    ctx: &Context<Container, NodeZones>,
    container: &Container,
) -> Result<Result<ZoneInfo, (String, Retry)>, ReconcileError> {
    let images = ctx.api_for::<Image>(&container.metadata.account);
    let Some(image) = container_image(&images, container).await? else {
        return Ok(Err((
            format!("No such image: {}", container.spec.image),
            Retry::After(IMAGE_RETRY),
        )));
    };
    if zones.images.lower_dirs(&image).iter().any(|d| !d.is_dir())
        && let Err(message) = fetch_image(zones, &images, &image).await
    {
        return Ok(Err((message, Retry::After(IMAGE_RETRY))));
    }
    let lower = zones.images.lower_dirs(&image);
    let package = ctx.related::<Package>().and_then(|cache| {
        cache
            .list()
            .into_iter()
            .find(|p| p.metadata.name == container.status.package)
    });
    let mut with_id = container.clone();
    with_id.spec.id = docker_id(container);
    let spec = match zone_spec(&with_id, &image, package.as_deref(), lower) {
        Ok(spec) => spec,
        Err(e) => return Ok(Err((e.to_string(), Retry::OnChange))),
    };
    match zones.driver.create(&spec).await {
        Ok(zone) => {
            tracing::info!(container = %container.metadata.name, zone = %zone.id, "zone created");
            Ok(Ok(zone))
        }
        Err(ZoneError::ImageMissing { path }) => Ok(Err((
            format!("image layer {path} is missing on node {}", zones.node),
            Retry::After(IMAGE_RETRY),
        ))),
        Err(ZoneError::InvalidSpec(message)) => Ok(Err((message, Retry::OnChange))),
        Err(e @ ZoneError::Runtime { .. }) => Ok(Err((e.to_string(), Retry::Backoff))),
        Err(e) => Err(ReconcileError::transient(e)),
    }
}

/// Pulls `image` into this node's store from the registry it came from, by
/// the digest it was pulled by, so that a container placed on a node that
/// never pulled its image (another node did) can run. An image loaded or
/// imported on another node has no registry to come from; one whose
/// registry now serves other bytes under that digest is refused. The
/// message says which.
async fn fetch_image(zones: &NodeZones, images: &Api<Image>, image: &Image) -> Result<(), String> {
    let _one_at_a_time = zones.pulls.lock().await;
    if zones.images.lower_dirs(image).iter().all(|d| d.is_dir()) {
        // Another container's pull brought it meanwhile.
        return Ok(());
    }
    let platform = Platform {
        os: non_empty(&image.spec.os, "linux"),
        architecture: non_empty(&image.spec.architecture, "amd64"),
        variant: None,
    };
    let mut failures = Vec::new();
    for source in &image.spec.repo_digests {
        let Ok(reference) = Reference::parse_normalized(source) else {
            failures.push(format!("{source}: not a reference"));
            continue;
        };
        tracing::info!(node = %zones.node, image = %image.spec.id, from = %source, "pulling an image this node lacks");
        match pull(
            &zones.registry,
            &zones.images,
            images,
            &reference,
            &platform,
            |_| {},
        )
        .await
        {
            Ok(pulled) if pulled.spec.id == image.spec.id => return Ok(()),
            Ok(pulled) => failures.push(format!("{source} is image {}", pulled.spec.id)),
            Err(e) => failures.push(format!("{source}: {e}")),
        }
    }
    if failures.is_empty() {
        Err(format!(
            "image {} is not on node {} and names no registry to pull it from (it was loaded or imported on another node)",
            image.spec.id, zones.node
        ))
    } else {
        Err(format!(
            "image {} is not on node {} and pulling it failed: {}",
            image.spec.id,
            zones.node,
            failures.join("; ")
        ))
    }
}

fn non_empty(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_owned()
}

/// Deletes this node's zones of the removed container `key`, but not those
/// whose Docker id is one of `kept` (a Container of another name has it).
async fn remove_zones(
    zones: &NodeZones,
    key: &ObjectKey,
    kept: &[String],
) -> Result<(), ReconcileError> {
    use sdc_docker_zones::docker::{LABEL_ACCOUNT, LABEL_CONTAINER_ID, LABEL_NAME};
    let all = zones
        .driver
        .list()
        .await
        .map_err(ReconcileError::transient)?;
    for zone in all {
        let ours = zone.labels.get(LABEL_ACCOUNT) == Some(&key.account)
            && zone.labels.get(LABEL_NAME) == Some(&key.name);
        let renamed = zone
            .labels
            .get(LABEL_CONTAINER_ID)
            .is_some_and(|id| kept.contains(id));
        if renamed {
            tracing::info!(container = %key.name, zone = %zone.id, "keeping the zone of a renamed container");
        } else if ours {
            tracing::info!(container = %key.name, zone = %zone.id, "deleting the zone of a removed container");
            zones
                .driver
                .delete(&zone.id)
                .await
                .map_err(ReconcileError::transient)?;
        }
    }
    Ok(())
}

/// Records why the container cannot be provisioned.
async fn fail(
    ctx: &Context<Container, NodeZones>,
    key: &ObjectKey,
    message: &str,
) -> Result<(), ReconcileError> {
    tracing::warn!(container = %key.name, error = message, "cannot provision");
    write_status(ctx.api(), &key.name, |c| {
        c.status.error = message.to_owned();
        provisioned(&mut c.status.conditions, false, message);
    })
    .await?;
    Ok(())
}

fn provisioned(conditions: &mut Vec<Condition>, ok: bool, message: &str) {
    let reason = if ok { "Provisioned" } else { "Failed" };
    set_condition(conditions, PROVISIONED, ok, reason, message.to_owned());
}
