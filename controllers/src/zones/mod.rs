//! The node-scoped controllers that turn Container specs placed on this node
//! into zones and keep them the way the specs and their restart policies
//! say, through the node's [`ZoneDriver`]:
//!
//! - [`provisioning`]: makes the zone match what the user last asked
//!   (create, start, stop, pause, delete) and writes what it observes into
//!   the Container's status;
//! - [`restart`]: starts again, after the seeds' `2^n × 100 ms` delay, the
//!   zones whose process exited when their restart policy says so, counting
//!   the restarts in status; and on a node boot starts what the seeds say
//!   comes back.
//!
//! - [`orphans`]: deletes zones no Container wants any more, after a grace
//!   period.
//!
//! Both controllers run on every node for the containers whose `status.node` is this
//! node (placement chooses it); both are woken at once by the driver's
//! [`ZoneEvent`]s. A restart of the daemon touches no zone: the controllers
//! read the zones back and only act on a difference.

pub mod orphans;
pub mod provisioning;
pub mod restart;

use std::sync::Arc;
use std::time::Duration;

use sdc_docker_images::lookup;
use sdc_docker_images::registry::Client;
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::model::{Container, ContainerState, ContainerStatus, Image};
use sdc_docker_store::{Api, Error as StoreError, Resource, Store};
use sdc_docker_zones::{ZoneDriver, ZoneEvent, ZoneInfo, ZoneState, zone_id};
use tokio::sync::mpsc;

use crate::ObjectKey;

/// What the zone controllers of one node share.
#[derive(Clone)]
pub struct NodeZones {
    /// This node's name (its Node object).
    pub node: String,
    /// The machine's zones.
    pub driver: Arc<dyn ZoneDriver>,
    /// This node's images (blobs and unpacked layers).
    pub images: ImageStore,
    /// The client this node pulls with when a container placed on it runs
    /// an image another node pulled.
    pub registry: Client,
    /// One such pull at a time on this node: two containers wanting the
    /// same missing image must not unpack its layers twice at once.
    pub pulls: Arc<tokio::sync::Mutex<()>>,
    /// How long `stop` waits before SIGKILL when the spec says nothing
    /// (Docker's 10 s).
    pub default_stop_timeout: Duration,
}

impl NodeZones {
    /// Whether `container` was placed on this node.
    pub fn owns(&self, container: &Container) -> bool {
        container.status.node == self.node
    }
}

/// The Docker id of a container: its `spec.id`, or, for a spec written
/// without one (by an operator), one derived from its uid so that its zone
/// id is stable.
pub fn docker_id(container: &Container) -> String {
    container.docker_id()
}

/// The zone id of `container` (`None` when its id is not hex).
pub fn container_zone_id(container: &Container) -> Option<String> {
    zone_id(&docker_id(container)).ok()
}

/// The image a container runs: by `spec.imageId` when set, else by
/// `spec.image` the way `docker run` finds it.
pub async fn container_image(
    images: &Api<Image>,
    container: &Container,
) -> Result<Option<Image>, StoreError> {
    let name = if container.spec.image_id.is_empty() {
        container.spec.image.as_str()
    } else {
        container.spec.image_id.as_str()
    };
    match lookup::find(images, name).await {
        Ok((image, _)) => Ok(Some(image)),
        Err(lookup::LookupError::Store(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

/// Docker's state word for a zone's state.
pub fn container_state(zone: &ZoneInfo) -> ContainerState {
    match zone.state {
        ZoneState::Configured | ZoneState::Installed => ContainerState::Created,
        ZoneState::Running => ContainerState::Running,
        ZoneState::Paused => ContainerState::Paused,
        ZoneState::Stopped => ContainerState::Exited,
    }
}

/// Copies what the zone says into `status` (state, pid, exit code, times,
/// OOM), keeping what other controllers own (node, package, restart count,
/// conditions).
pub fn observe(status: &mut ContainerStatus, zone: &ZoneInfo) {
    status.state = container_state(zone);
    status.pid = if zone.state == ZoneState::Running || zone.state == ZoneState::Paused {
        zone.pid.unwrap_or(0)
    } else {
        0
    };
    if zone.state == ZoneState::Stopped {
        // A monitor that died without recording: Docker's 255.
        status.exit_code = zone.exit_code.unwrap_or(255);
        status.oom_killed = zone.oom_killed;
    }
    status.started_at = zone.started_at.or(status.started_at);
    if zone.state == ZoneState::Stopped {
        status.finished_at = zone.finished_at.or(status.finished_at);
    }
    if let Some(count) = zone.restart_count {
        // The platform restarts the zone by itself and counts it.
        status.restart_count = count;
    }
}

/// Reads the Container `name` afresh, lets `change` edit its status, and
/// writes it if it changed, again on a conflict with another writer (the
/// other zone controller, placement). `None` when the Container is gone.
pub async fn write_status(
    api: &Api<Container>,
    name: &str,
    mut change: impl FnMut(&mut Container),
) -> Result<Option<Container>, StoreError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut container = match api.get(name).await {
            Ok(c) => c,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let before = container.status.clone();
        change(&mut container);
        if container.status == before {
            return Ok(Some(container));
        }
        match api.update_status(&container).await {
            Ok(written) => return Ok(Some(written)),
            Err(StoreError::Conflict { .. }) if attempts < 10 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Turns the driver's events into Container keys, one receiver per
/// controller (pass them to [`Controller::triggered_by`](crate::Controller::triggered_by)).
/// The key is that of the Container with the zone's Docker id
/// ([`zone_container_key`]), which a `docker rename` may have moved to
/// another name since the zone was made.
pub fn zone_event_keys(
    driver: Arc<dyn ZoneDriver>,
    store: Arc<dyn Store>,
    receivers: usize,
) -> Vec<mpsc::UnboundedReceiver<ObjectKey>> {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..receivers).map(|_| mpsc::unbounded_channel()).unzip();
    let mut events = driver.events();
    tokio::spawn(async move {
        loop {
            let id = match events.recv().await {
                Ok(ZoneEvent::Exited { id }) => id,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "zone events lagged; the resync catches up");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Ok(Some(zone)) = driver.get(&id).await else {
                continue;
            };
            let Some(key) = zone_container_key(&store, &zone).await else {
                continue;
            };
            for sender in &senders {
                let _ = sender.send(key.clone());
            }
        }
    });
    receivers
}

/// The key of the Container whose zone `zone` is: the one its name label
/// names while that one has the zone's Docker id, else the one of the
/// account that has the id now (the container was renamed), else the
/// label's (the container is gone; its controllers see that). `None` for a
/// zone without our labels.
pub async fn zone_container_key(store: &Arc<dyn Store>, zone: &ZoneInfo) -> Option<ObjectKey> {
    use sdc_docker_zones::docker::{LABEL_ACCOUNT, LABEL_CONTAINER_ID, LABEL_NAME};
    let account = zone.labels.get(LABEL_ACCOUNT)?;
    let name = zone.labels.get(LABEL_NAME)?;
    let labelled = ObjectKey::new(Container::KIND, account.clone(), name.clone());
    let Some(id) = zone.labels.get(LABEL_CONTAINER_ID) else {
        return Some(labelled);
    };
    let containers = Api::<Container>::new(store.clone(), account);
    match containers.get(name).await {
        Ok(c) if c.docker_id() == *id => return Some(labelled),
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => {
            tracing::warn!(zone = %zone.id, error = %e, "cannot read the zone's container");
            return Some(labelled);
        }
    }
    match containers.list().await {
        Ok(list) => Some(
            list.items
                .iter()
                .find(|c| c.docker_id() == *id)
                .map(ObjectKey::of)
                .unwrap_or(labelled),
        ),
        Err(e) => {
            tracing::warn!(zone = %zone.id, error = %e, "cannot list the account's containers");
            Some(labelled)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sdc_docker_store::model::ContainerSpec;
    use sdc_docker_store::{EmbeddedOptions, EmbeddedStore};
    use sdc_docker_zones::docker::{LABEL_ACCOUNT, LABEL_CONTAINER_ID, LABEL_NAME};

    use super::*;

    fn zone_of(account: &str, name: &str, id: &str) -> ZoneInfo {
        ZoneInfo {
            id: zone_id(id).unwrap_or_default(),
            state: ZoneState::Stopped,
            pid: None,
            exit_code: Some(0),
            started_at: None,
            finished_at: None,
            oom_killed: false,
            labels: BTreeMap::from([
                (LABEL_ACCOUNT.to_owned(), account.to_owned()),
                (LABEL_NAME.to_owned(), name.to_owned()),
                (LABEL_CONTAINER_ID.to_owned(), id.to_owned()),
            ]),
            restart_count: None,
        }
    }

    #[tokio::test]
    async fn a_zones_exit_is_keyed_to_the_container_that_has_its_id_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default())
                .expect("store"),
        );
        let api = Api::<Container>::default_account(store.clone());
        let id = "ab".repeat(32);
        let renamed = api
            .create(&Container::new(
                "new-name",
                ContainerSpec {
                    id: id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("created");
        let account = renamed.metadata.account.clone();
        // The zone still says the name it was made under.
        let key = zone_container_key(&store, &zone_of(&account, "old-name", &id)).await;
        assert_eq!(key.map(|k| k.name), Some("new-name".to_owned()));
        // Unrenamed, and gone: the label's name.
        let key = zone_container_key(&store, &zone_of(&account, "new-name", &id)).await;
        assert_eq!(key.map(|k| k.name), Some("new-name".to_owned()));
        let gone = "cd".repeat(32);
        let key = zone_container_key(&store, &zone_of(&account, "gone", &gone)).await;
        assert_eq!(key.map(|k| k.name), Some("gone".to_owned()));
    }
}
