//! Which node holds a zone's streams: the API reaches a running
//! container's output, input, log, files and processes through the
//! [`ZoneStreams`] of the node its Container was placed on
//! (`status.node`).
//!
//! A node this instance runs itself (the all-in-one `serve`'s own) is
//! registered here and reached directly. Any other node — an `sdc-docker
//! agent`, another server — is reached over the network as a
//! [`RemoteStreams`], at the address and with the token its `Node` object
//! publishes (`spec.address`, `spec.streamsToken`; see
//! `sdc_docker_zones::remote`). The Node is read when a stream is asked
//! for, so a node that restarted on another port or with another token is
//! found again; the client is kept per node while neither changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use sdc_docker_store::model::Node;
use sdc_docker_store::{Api, Error as StoreError, Store};
use sdc_docker_zones::remote::Token;
use sdc_docker_zones::streams::{
    AttachOptions, ByteStream, Change, ExecProcess, ExecSpec, ExtractOptions, LogOptions,
    LogStream, PathStat, Session, ZoneStats,
};
use sdc_docker_zones::{RemoteStreams, ZoneError, ZoneStreams};

/// Why a node's streams cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// No Node object has the name: its agent stopped (or never ran).
    #[error("the node is not registered (its agent is not running)")]
    NotRegistered,
    /// The Node publishes no streams address or token (an agent older than
    /// the streams server, or one that failed to bind).
    #[error("the node publishes no streams address")]
    NoAddress,
    /// Reading the Node failed.
    #[error("reading the node: {0}")]
    Store(#[from] StoreError),
}

/// The streaming side of every node this instance reaches, by node name.
#[derive(Default)]
pub struct NodeStreams {
    /// The nodes this instance runs itself.
    local: RwLock<BTreeMap<String, Arc<dyn ZoneStreams>>>,
    /// The clients of other nodes, each for the address and token last read.
    remote: Mutex<BTreeMap<String, Arc<RemoteStreams>>>,
}

impl NodeStreams {
    /// An empty registry.
    pub fn new() -> Arc<NodeStreams> {
        Arc::new(NodeStreams::default())
    }

    /// Makes `node`'s zones reachable through `streams`, directly.
    pub fn register(&self, node: &str, streams: Arc<dyn ZoneStreams>) {
        if let Ok(mut local) = self.local.write() {
            local.insert(node.to_owned(), streams);
        }
    }

    /// Forgets `node` (it stopped).
    pub fn unregister(&self, node: &str) {
        if let Ok(mut local) = self.local.write() {
            local.remove(node);
        }
    }

    /// The streams of `node` when this instance runs it itself.
    pub fn get(&self, node: &str) -> Option<Arc<dyn ZoneStreams>> {
        self.local.read().ok()?.get(node).cloned()
    }

    /// The streams of `node`: its registered driver, else the client of its
    /// streams server as its Node object publishes it now.
    pub async fn resolve(
        &self,
        store: &Arc<dyn Store>,
        node: &str,
    ) -> Result<Arc<dyn ZoneStreams>, Unreachable> {
        if let Some(local) = self.get(node) {
            return Ok(local);
        }
        let found = match Api::<Node>::default_account(store.clone()).get(node).await {
            Ok(found) => found,
            Err(StoreError::NotFound { .. }) => return Err(Unreachable::NotRegistered),
            Err(e) => return Err(e.into()),
        };
        let (address, token) = (&found.spec.address, &found.spec.streams_token);
        if address.is_empty() || token.is_empty() {
            return Err(Unreachable::NoAddress);
        }
        let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = remote.get(node).filter(|c| c.reaches(address, token)) {
            return Ok(client.clone());
        }
        tracing::debug!(node, %address, "reaching a node's zone streams");
        let client = Arc::new(RemoteStreams::new(
            address.clone(),
            Token::new(token.clone()),
        ));
        remote.insert(node.to_owned(), client.clone());
        Ok(client)
    }

    /// The streams of `node` for code that cannot wait here: its registered
    /// driver, else streams that [`resolve`](Self::resolve) the node at
    /// each call (an unreachable node fails that call with a
    /// [`ZoneError::Runtime`] saying why).
    pub fn reach(self: &Arc<Self>, store: &Arc<dyn Store>, node: &str) -> Arc<dyn ZoneStreams> {
        match self.get(node) {
            Some(local) => local,
            None => Arc::new(NodeByName {
                nodes: self.clone(),
                store: store.clone(),
                node: node.to_owned(),
            }),
        }
    }
}

impl std::fmt::Debug for NodeStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .local
            .read()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("NodeStreams")
            .field("local", &names)
            .finish()
    }
}

/// A node's streams found by its name when used ([`NodeStreams::reach`]).
struct NodeByName {
    nodes: Arc<NodeStreams>,
    store: Arc<dyn Store>,
    node: String,
}

impl NodeByName {
    async fn streams(&self) -> Result<Arc<dyn ZoneStreams>, ZoneError> {
        self.nodes
            .resolve(&self.store, &self.node)
            .await
            .map_err(|e| ZoneError::Runtime {
                op: format!("reaching compute node {}", self.node),
                message: e.to_string(),
            })
    }
}

#[async_trait::async_trait]
impl ZoneStreams for NodeByName {
    async fn attach(&self, id: &str, options: AttachOptions) -> Result<Session, ZoneError> {
        self.streams().await?.attach(id, options).await
    }

    async fn resize(&self, id: &str, height: u16, width: u16) -> Result<(), ZoneError> {
        self.streams().await?.resize(id, height, width).await
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecProcess, ZoneError> {
        self.streams().await?.exec(id, spec).await
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<LogStream, ZoneError> {
        self.streams().await?.logs(id, options).await
    }

    async fn stats(&self, id: &str) -> Result<ZoneStats, ZoneError> {
        self.streams().await?.stats(id).await
    }

    async fn stat_path(&self, id: &str, path: &str) -> Result<PathStat, ZoneError> {
        self.streams().await?.stat_path(id, path).await
    }

    async fn archive(&self, id: &str, path: &str) -> Result<(PathStat, ByteStream), ZoneError> {
        self.streams().await?.archive(id, path).await
    }

    async fn extract(
        &self,
        id: &str,
        path: &str,
        tar: ByteStream,
        options: ExtractOptions,
    ) -> Result<(), ZoneError> {
        self.streams().await?.extract(id, path, tar, options).await
    }

    async fn changes(&self, id: &str) -> Result<Vec<Change>, ZoneError> {
        self.streams().await?.changes(id).await
    }

    async fn export(&self, id: &str) -> Result<ByteStream, ZoneError> {
        self.streams().await?.export(id).await
    }
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::Resource;
    use sdc_docker_store::model::NodeSpec;

    use super::*;
    use crate::test_support::TestStore;

    async fn add_node(store: &Arc<dyn Store>, name: &str, address: &str, token: &str) {
        let api = Api::<Node>::default_account(store.clone());
        let spec = NodeSpec {
            address: address.into(),
            streams_token: token.into(),
            ..Default::default()
        };
        match api.get(name).await {
            Ok(mut node) => {
                node.spec = spec;
                api.replace(&node).await.unwrap();
            }
            Err(_) => {
                api.create(&Node::new(name, spec)).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn another_node_is_reached_at_the_address_its_node_publishes_and_found_again_when_it_moves()
     {
        let test = TestStore::new().await;
        let store = test.store.clone();
        let nodes = NodeStreams::new();
        add_node(&store, "cn2", "10.0.0.2:4000", "secret").await;
        let first = nodes.resolve(&store, "cn2").await.unwrap();
        let again = nodes.resolve(&store, "cn2").await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the client is kept");

        add_node(&store, "cn2", "10.0.0.2:4001", "other").await;
        let moved = nodes.resolve(&store, "cn2").await.unwrap();
        assert!(!Arc::ptr_eq(&first, &moved), "a new address, a new client");
        let remote = nodes.remote.lock().unwrap();
        assert!(remote["cn2"].reaches("10.0.0.2:4001", "other"));
    }

    #[tokio::test]
    async fn a_node_unregistered_or_without_an_address_is_unreachable_with_the_reason() {
        let test = TestStore::new().await;
        let store = test.store.clone();
        let nodes = NodeStreams::new();
        let err = nodes.resolve(&store, "gone").await.err().unwrap();
        assert!(matches!(err, Unreachable::NotRegistered), "{err:?}");
        add_node(&store, "old", "", "").await;
        let err = nodes.resolve(&store, "old").await.err().unwrap();
        assert!(matches!(err, Unreachable::NoAddress), "{err:?}");

        // Through `reach`, the reason is the call's error.
        let err = nodes.reach(&store, "gone").stats("zone").await.unwrap_err();
        assert!(
            matches!(&err, ZoneError::Runtime { op, message } if op.contains("gone") && message.contains("not registered")),
            "{err:?}"
        );
    }
}
