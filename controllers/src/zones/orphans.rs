//! Garbage collection of zones no Container spec wants: a zone whose
//! Container is gone (deleted while this node's daemon was down, so no
//! deletion was ever seen), belongs to another container under the same
//! name, or was placed on another node, is deleted once it has been seen
//! orphaned for a grace period — long enough that a spec being rewritten
//! (an operator's delete and re-apply) or a store briefly unreachable never
//! costs a running container.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sdc_docker_store::model::Container;
use sdc_docker_store::{Api, Error as StoreError, Store};
use sdc_docker_zones::docker::{LABEL_ACCOUNT, LABEL_NAME};
use tokio::time::Instant;

use super::{NodeZones, container_zone_id};

/// How often the sweep looks.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Sweeps this node's zones every [`SWEEP_EVERY`] (or `grace`, if shorter)
/// until `stop` completes, deleting those orphaned for at least `grace`.
pub async fn sweep_orphans(
    store: Arc<dyn Store>,
    zones: NodeZones,
    grace: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let every = SWEEP_EVERY.min(grace.max(Duration::from_millis(100)));
    let sweeping = async {
        loop {
            if let Err(e) = sweep_once(&store, &zones, grace, &mut seen).await {
                tracing::warn!(error = %e, "orphan sweep failed; trying again later");
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::select! {
        () = stop => {}
        () = sweeping => {}
    }
}

/// One pass: notes newly orphaned zones, deletes those orphaned for
/// `grace`, forgets those that are wanted again.
pub async fn sweep_once(
    store: &Arc<dyn Store>,
    zones: &NodeZones,
    grace: Duration,
    seen: &mut HashMap<String, Instant>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let now = Instant::now();
    let all = zones.driver.list().await?;
    let mut orphans = Vec::new();
    for zone in &all {
        if !wanted(store, zones, &zone.id, &zone.labels).await? {
            orphans.push(zone.id.clone());
        }
    }
    seen.retain(|id, _| orphans.contains(id));
    for id in orphans {
        let since = *seen.entry(id.clone()).or_insert(now);
        if now.duration_since(since) >= grace {
            tracing::info!(zone = %id, ?grace, "deleting a zone no container wants");
            zones.driver.delete(&id).await?;
            seen.remove(&id);
        }
    }
    Ok(())
}

/// Whether a Container placed on this node has zone `id`.
async fn wanted(
    store: &Arc<dyn Store>,
    zones: &NodeZones,
    id: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<bool, StoreError> {
    let (Some(account), Some(name)) = (labels.get(LABEL_ACCOUNT), labels.get(LABEL_NAME)) else {
        // Not one of ours to judge.
        return Ok(true);
    };
    let containers = Api::<Container>::new(store.clone(), account);
    let wants = |container: &Container| {
        zones.owns(container) && container_zone_id(container).as_deref() == Some(id)
    };
    match containers.get(name).await {
        Ok(container) if wants(&container) => return Ok(true),
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    // A `docker rename` moves the Container to another name, not its zone:
    // look for the zone's id under any name of the account.
    Ok(containers.list().await?.items.iter().any(wants))
}
