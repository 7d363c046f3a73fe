//! Placement: the cluster-scoped controller that gives each new container a
//! package and a node.
//!
//! For a Container with no node in its status and no deletion asked for,
//! it chooses the package ([`choose_package`], from `spec.memory` and the
//! `com.joyent.package` label — or `spec.package` when the label is absent)
//! and then a node ([`choose_node`]): among the live Nodes of the default
//! account (a Node exists only while its agent keeps its lease) that are
//! not `unschedulable`, the one with the most free memory that still fits
//! the package, ties going to the lower name. Free memory is the node's
//! memory less the memory of every container already placed there, counted
//! by its package ([`memory_in_use`]). It writes `status.node`,
//! `status.package` and a `Scheduled` condition — status only — or, when
//! nothing fits, `Scheduled=False` with a reason and a message such as
//! `no node has 2 GiB free (largest free: 512 MiB on node cn1)`, and looks
//! again every [`PlacementOptions::retry_unplaced`]; a new or changed Node
//! or Package triggers the waiting containers at once.
//!
//! Placement is decided one container at a time (concurrency 1, and one
//! leader in the cluster), so two decisions never spend the same free
//! memory; the containers it placed but the cache has not caught up with
//! yet are remembered until it has. A placed container keeps its node for
//! good: nothing here moves a container, and when its Node disappears (an
//! agent restarting, a store outage) the container stays placed there, as
//! the node may well come back — deciding that a node is dead and moving
//! its containers is a separate decision this controller does not make.
//!
//! A second small controller, [`node_allocation_controller`], writes what
//! is placed on each Node into its status (`allocatedMemoryBytes`,
//! `containers`) for operators; placement never reads those back.
//!
//! Limits: the scan of every container per decision is O(containers);
//! only memory is accounted (not disk or CPU); Nodes and Packages of
//! accounts other than `default` are ignored. Right after a change of
//! leader, the new leader's caches may briefly trail placements its
//! predecessor wrote, which it does not remember: a container placed in
//! that window can overcommit a node by what was placed in the last
//! moments.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sdc_docker_store::keys::DEFAULT_ACCOUNT;
use sdc_docker_store::model::{Container, Node, Package, set_condition};
use sdc_docker_store::{Error as StoreError, Resource};

use crate::packages::{
    DEFAULT_MEMORY_BYTES, PACKAGE_LABEL, PackageError, choose_package, format_bytes, package_bytes,
};
use crate::{Action, Context, Controller, Manager, ObjectKey, ReconcileError, reconcile_fn};

/// The controller's name (and its election's).
pub const PLACEMENT: &str = "placement";

/// The condition type placement records on a container.
pub const SCHEDULED: &str = "Scheduled";

/// The reason of a `Scheduled=True` condition.
pub const PLACED: &str = "Placed";

/// How placement runs.
#[derive(Clone, Debug)]
pub struct PlacementOptions {
    /// How often a container that could not be placed is looked at again,
    /// besides the triggers from Node and Package changes.
    pub retry_unplaced: Duration,
}

impl Default for PlacementOptions {
    /// Retry unplaced containers every 30 s.
    fn default() -> Self {
        PlacementOptions {
            retry_unplaced: Duration::from_secs(30),
        }
    }
}

/// Why a container could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// No package fits the request.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// There is no node to place on at all.
    #[error("no node is available: {0}")]
    NoNodes(String),
    /// Nodes exist, but none has enough free memory.
    #[error(
        "no node has {} free (largest free: {} on node {node})",
        format_bytes(*needed),
        format_bytes(*largest_free)
    )]
    NoCapacity {
        /// The memory the container's package needs, bytes.
        needed: i64,
        /// The most free memory of any schedulable node, bytes.
        largest_free: i64,
        /// That node.
        node: String,
    },
}

impl PlacementError {
    /// A CamelCase reason for the `Scheduled=False` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            PlacementError::Package(e) => e.reason(),
            PlacementError::NoNodes(_) => "NoNodes",
            PlacementError::NoCapacity { .. } => "Unschedulable",
        }
    }
}

/// Memory a placed container holds on its node: its package's, or (when
/// that package is gone) what it asked for, or the default.
fn held_bytes(container: &Container, packages: &HashMap<&str, &Package>) -> i64 {
    match packages.get(container.status.package.as_str()) {
        Some(p) => package_bytes(p),
        None if container.spec.memory > 0 => container.spec.memory,
        None => DEFAULT_MEMORY_BYTES,
    }
}

/// Memory in use per node name: the sum over containers placed there
/// (`status.node` set) of their package's memory.
pub fn memory_in_use<'a>(
    containers: impl IntoIterator<Item = &'a Container>,
    packages: &[&Package],
) -> HashMap<String, i64> {
    let by_name: HashMap<&str, &Package> = packages
        .iter()
        .map(|p| (p.metadata.name.as_str(), *p))
        .collect();
    let mut used: HashMap<String, i64> = HashMap::new();
    for c in containers {
        if c.status.node.is_empty() {
            continue;
        }
        *used.entry(c.status.node.clone()).or_default() += held_bytes(c, &by_name);
    }
    used
}

/// Whether placement may use `node` at all.
fn schedulable(node: &Node) -> bool {
    node.metadata.account == DEFAULT_ACCOUNT
        && node.metadata.deletion_timestamp.is_none()
        && !node.spec.unschedulable
}

/// The node for a container needing `needed` bytes: among the schedulable
/// `nodes`, the one with the most free memory (its memory less `in_use`)
/// that is at least `needed`; ties go to the lower name.
pub fn choose_node<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    in_use: &HashMap<String, i64>,
    needed: i64,
) -> Result<&'a Node, PlacementError> {
    let all: Vec<&Node> = nodes.into_iter().collect();
    let mut candidates: Vec<(i64, &Node)> = all
        .iter()
        .filter(|n| schedulable(n))
        .map(|n| {
            let used = in_use.get(&n.metadata.name).copied().unwrap_or(0);
            (n.spec.memory_bytes.saturating_sub(used), *n)
        })
        .collect();
    if candidates.is_empty() {
        return Err(PlacementError::NoNodes(if all.is_empty() {
            "none is registered".to_string()
        } else {
            format!(
                "{} node(s) registered, none schedulable (cordoned or being deleted)",
                all.len()
            )
        }));
    }
    // Most free first, then by name.
    candidates.sort_by(|(fa, a), (fb, b)| {
        fb.cmp(fa)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let (largest_free, best) = candidates[0];
    if largest_free >= needed {
        Ok(best)
    } else {
        Err(PlacementError::NoCapacity {
            needed,
            largest_free: largest_free.max(0),
            node: best.metadata.name.clone(),
        })
    }
}

/// The package and node for `container`, given the packages, the nodes and
/// the memory in use per node.
pub fn place<'a>(
    container: &Container,
    packages: &[&'a Package],
    nodes: &[&'a Node],
    in_use: &HashMap<String, i64>,
) -> Result<(&'a Package, &'a Node), PlacementError> {
    let label = container
        .spec
        .labels
        .get(PACKAGE_LABEL)
        .map(String::as_str)
        .or(Some(container.spec.package.as_str()).filter(|p| !p.is_empty()));
    let package = choose_package(packages.iter().copied(), container.spec.memory, label)?;
    let node = choose_node(nodes.iter().copied(), in_use, package_bytes(package))?;
    Ok((package, node))
}

/// A placement this leader wrote that the cache may not show yet.
struct Written {
    uid: String,
    node: String,
    bytes: i64,
}

/// The controller's shared value.
struct Placement {
    options: PlacementOptions,
    /// Containers left unplaced, which Node and Package changes trigger.
    waiting: Arc<Mutex<BTreeSet<ObjectKey>>>,
    /// Placements written, until the cache shows them (or their container
    /// is gone).
    written: Mutex<HashMap<ObjectKey, Written>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert or remove: a poisoned lock is intact.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Placement {
    fn settled(&self, key: &ObjectKey) {
        lock(&self.waiting).remove(key);
    }

    /// Memory in use per node: what the cache shows plus what we wrote
    /// that it does not show yet.
    fn in_use(
        &self,
        containers: &crate::Cache<Container>,
        packages: &[&Package],
    ) -> HashMap<String, i64> {
        // One snapshot for both: the reflector updates the cache meanwhile,
        // and a placement it applied between a list and a later look-up
        // would be counted neither from the cache nor as written.
        let all = containers.list();
        let mut used = memory_in_use(all.iter().map(|c| c.as_ref()), packages);
        let snapshot: HashMap<(&str, &str), &Container> = all
            .iter()
            .map(|c| {
                (
                    (c.metadata.account.as_str(), c.metadata.name.as_str()),
                    c.as_ref(),
                )
            })
            .collect();
        let mut written = lock(&self.written);
        written.retain(|key, w| {
            match snapshot.get(&(key.account.as_str(), key.name.as_str())) {
                Some(c) if c.metadata.uid == w.uid && c.status.node.is_empty() => {
                    *used.entry(w.node.clone()).or_default() += w.bytes;
                    true
                }
                // Shown by the cache now, or deleted (and maybe re-created).
                _ => false,
            }
        });
        used
    }
}

/// The placement controller (cluster-scoped, one decision at a time),
/// watching Nodes and Packages so that waiting containers are retried as
/// soon as capacity or packages change.
pub fn placement_controller(options: PlacementOptions) -> Controller<Container> {
    let waiting: Arc<Mutex<BTreeSet<ObjectKey>>> = Arc::default();
    let waiting_keys = |waiting: Arc<Mutex<BTreeSet<ObjectKey>>>| {
        move || lock(&waiting).iter().cloned().collect::<Vec<_>>()
    };
    let on_node = waiting_keys(waiting.clone());
    let on_package = waiting_keys(waiting.clone());
    let data = Placement {
        options,
        waiting,
        written: Mutex::new(HashMap::new()),
    };
    Controller::<Container>::new(PLACEMENT, reconcile_fn(reconcile), data)
        .cluster_scoped()
        .concurrency(1)
        .watches::<Node>(move |_| on_node())
        .watches::<Package>(move |_| on_package())
}

/// The controller that keeps each Node's `status.allocatedMemoryBytes`
/// and `status.containers` equal to what is placed on it (cluster-scoped),
/// for operators to read: placement itself counts from the containers.
/// A container's placement, removal or package change triggers its node.
pub fn node_allocation_controller() -> Controller<Node> {
    Controller::<Node>::new(NODE_ALLOCATION, reconcile_fn(allocate), ())
        .cluster_scoped()
        .watches::<Container>(|c: &Container| {
            if c.status.node.is_empty() {
                Vec::new()
            } else {
                vec![ObjectKey::new(
                    Node::KIND,
                    DEFAULT_ACCOUNT,
                    c.status.node.clone(),
                )]
            }
        })
        // Only for its cache: a package's size change shows at the resync.
        .watches::<Package>(|_| Vec::new())
}

/// Add the placement and node-allocation controllers to `manager`.
pub fn add_controllers(manager: &mut Manager, options: PlacementOptions) {
    manager.add(placement_controller(options));
    manager.add(node_allocation_controller());
}

/// The node-allocation controller's name (and its election's).
pub const NODE_ALLOCATION: &str = "node-allocation";

async fn allocate(key: ObjectKey, ctx: Context<Node, ()>) -> Result<Action, ReconcileError> {
    let Some(cached) = ctx.get(&key) else {
        return Ok(Action::AwaitChange);
    };
    if cached.metadata.account != DEFAULT_ACCOUNT {
        return Ok(Action::AwaitChange);
    }
    let containers: Vec<Arc<Container>> = ctx
        .related::<Container>()
        .map(|c| c.list())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.status.node == key.name)
        .collect();
    let packages: Vec<Arc<Package>> = ctx
        .related::<Package>()
        .map(|c| c.list())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.account == DEFAULT_ACCOUNT)
        .collect();
    let packages: Vec<&Package> = packages.iter().map(|p| p.as_ref()).collect();
    let bytes = memory_in_use(containers.iter().map(|c| c.as_ref()), &packages)
        .get(&key.name)
        .copied()
        .unwrap_or(0);
    let count = containers.len() as i64;
    let fits = |n: &Node| n.status.allocated_memory_bytes == bytes && n.status.containers == count;
    if fits(&cached) {
        return Ok(Action::AwaitChange);
    }
    let mut node = match ctx.api().get(&key.name).await {
        Ok(n) => n,
        Err(StoreError::NotFound { .. }) => return Ok(Action::AwaitChange),
        Err(e) => return Err(e.into()),
    };
    if fits(&node) {
        return Ok(Action::AwaitChange);
    }
    node.status.allocated_memory_bytes = bytes;
    node.status.containers = count;
    // A concurrent write (the agent's heartbeat) is a conflict: retried.
    ctx.api().update_status(&node).await?;
    Ok(Action::AwaitChange)
}

async fn reconcile(
    key: ObjectKey,
    ctx: Context<Container, Placement>,
) -> Result<Action, ReconcileError> {
    let state = ctx.data();
    let done = |state: &Placement| {
        state.settled(&key);
        Ok(Action::AwaitChange)
    };
    let Some(cached) = ctx.get(&key) else {
        return done(state);
    };
    if cached.metadata.deletion_timestamp.is_some() || !cached.status.node.is_empty() {
        return done(state);
    }
    // The cache may not show a placement we just wrote: read the object.
    let container = match ctx.api().get(&key.name).await {
        Ok(c) => c,
        Err(StoreError::NotFound { .. }) => return done(state),
        Err(e) => return Err(e.into()),
    };
    if container.metadata.deletion_timestamp.is_some() || !container.status.node.is_empty() {
        return done(state);
    }

    let packages: Vec<Arc<Package>> = ctx
        .related::<Package>()
        .map(|c| c.list())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.account == DEFAULT_ACCOUNT)
        .collect();
    let packages: Vec<&Package> = packages.iter().map(|p| p.as_ref()).collect();
    let nodes: Vec<Arc<Node>> = ctx.related::<Node>().map(|c| c.list()).unwrap_or_default();
    let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let in_use = state.in_use(ctx.cache(), &packages);

    let mut next = container.clone();
    let placed = match place(&container, &packages, &nodes, &in_use) {
        Ok((package, node)) => {
            let bytes = package_bytes(package);
            next.status.node = node.metadata.name.clone();
            next.status.package = package.metadata.name.clone();
            set_condition(
                &mut next.status.conditions,
                SCHEDULED,
                true,
                PLACED,
                format!(
                    "placed on node {} with package {} ({})",
                    node.metadata.name,
                    package.metadata.name,
                    format_bytes(bytes)
                ),
            );
            Some(Written {
                uid: container.metadata.uid.clone(),
                node: node.metadata.name.clone(),
                bytes,
            })
        }
        Err(e) => {
            set_condition(
                &mut next.status.conditions,
                SCHEDULED,
                false,
                e.reason(),
                e.to_string(),
            );
            if next.status != container.status {
                tracing::info!(container = %key, reason = e.reason(), error = %e, "container not placed");
            }
            None
        }
    };
    // A concurrent write is a conflict: retried (with backoff) on a fresh read.
    ctx.api().update_status(&next).await?;
    match placed {
        Some(written) => {
            tracing::info!(container = %key, node = %written.node, package = %next.status.package, "container placed");
            lock(&state.written).insert(key.clone(), written);
            state.settled(&key);
            Ok(Action::AwaitChange)
        }
        None => {
            lock(&state.waiting).insert(key.clone());
            Ok(Action::RequeueAfter(state.options.retry_unplaced))
        }
    }
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::model::{ContainerSpec, NodeSpec};

    use super::*;
    use crate::packages::{GIB, MIB, default_packages};

    fn node(name: &str, memory_bytes: i64) -> Node {
        Node::new(
            name,
            NodeSpec {
                memory_bytes,
                ..Default::default()
            },
        )
    }

    fn placed_on(name: &str, node: &str, package: &str, memory: i64) -> Container {
        let mut c = Container::new(
            name,
            ContainerSpec {
                memory,
                ..Default::default()
            },
        );
        c.status.node = node.into();
        c.status.package = package.into();
        c
    }

    #[test]
    fn memory_in_use_counts_placed_containers_by_their_package() {
        let packages = default_packages();
        let refs: Vec<&Package> = packages.iter().collect();
        let containers = [
            placed_on("a", "cn1", "sample-1G", 0),
            placed_on("b", "cn1", "sample-512M", 0),
            // The package is gone: what it asked for counts.
            placed_on("c", "cn2", "retired", 300 * MIB),
            // Neither: the default.
            placed_on("d", "cn2", "", 0),
            placed_on("unplaced", "", "", 8 * GIB),
        ];
        let used = memory_in_use(&containers, &refs);
        assert_eq!(used.get("cn1"), Some(&(GIB + 512 * MIB)));
        assert_eq!(used.get("cn2"), Some(&(300 * MIB + GIB)));
        assert_eq!(used.len(), 2);
    }

    #[test]
    fn the_node_with_the_most_free_memory_wins_and_ties_go_to_the_lower_name() {
        let nodes = [node("b", 4 * GIB), node("a", 4 * GIB), node("c", 8 * GIB)];
        let mut used = HashMap::new();
        assert_eq!(
            choose_node(&nodes, &used, GIB)
                .map(|n| n.metadata.name.as_str())
                .ok(),
            Some("c")
        );
        used.insert("c".to_string(), 5 * GIB);
        assert_eq!(
            choose_node(&nodes, &used, GIB)
                .map(|n| n.metadata.name.as_str())
                .ok(),
            Some("a")
        );
    }

    #[test]
    fn unschedulable_nodes_are_skipped_and_no_fit_says_the_largest_free() {
        let mut cordoned = node("big", 64 * GIB);
        cordoned.spec.unschedulable = true;
        let nodes = [cordoned.clone(), node("x", GIB)];
        let mut used = HashMap::new();
        used.insert("x".to_string(), 512 * MIB);
        let e = choose_node(&nodes, &used, 2 * GIB).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no node has 2 GiB free (largest free: 512 MiB on node x)"
        );
        assert_eq!(e.reason(), "Unschedulable");
        let e = choose_node([&cordoned], &used, GIB).unwrap_err();
        assert_eq!(e.reason(), "NoNodes");
        assert!(e.to_string().contains("none schedulable"), "{e}");
        let none: [Node; 0] = [];
        let e = choose_node(&none, &used, GIB).unwrap_err();
        assert_eq!(e.to_string(), "no node is available: none is registered");
    }

    #[test]
    fn the_label_or_spec_package_chooses_the_package_before_the_node() {
        let packages = default_packages();
        let refs: Vec<&Package> = packages.iter().collect();
        let n = node("cn1", 16 * GIB);
        let nodes = [&n];
        let used = HashMap::new();
        let mut c = Container::new("web", ContainerSpec::default());
        let (p, _) = place(&c, &refs, &nodes, &used).expect("placed");
        assert_eq!(p.metadata.name, "sample-1G");
        c.spec.package = "sample-2G".into();
        assert_eq!(
            place(&c, &refs, &nodes, &used)
                .expect("placed")
                .0
                .metadata
                .name,
            "sample-2G"
        );
        c.spec
            .labels
            .insert(PACKAGE_LABEL.into(), "sample-4G".into());
        assert_eq!(
            place(&c, &refs, &nodes, &used)
                .expect("placed")
                .0
                .metadata
                .name,
            "sample-4G"
        );
        c.spec
            .labels
            .insert(PACKAGE_LABEL.into(), "sample-32G".into());
        let e = place(&c, &refs, &nodes, &used).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no node has 32 GiB free (largest free: 16 GiB on node cn1)"
        );
    }
}
