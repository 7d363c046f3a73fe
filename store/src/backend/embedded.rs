//! TEMPORARY placeholder: being written (embedded backend).
use std::time::Duration;
use crate::kv::{Fence, KeyValue, LeaseId, Store, WatchStream};
use crate::{Error, Result};

/// The embedded backend.
pub struct EmbeddedStore;

/// Options.
#[derive(Clone, Debug, Default)]
pub struct EmbeddedOptions;

impl EmbeddedStore {
    /// Open.
    pub fn open(_path: &std::path::Path, _o: EmbeddedOptions) -> Result<Self> { Err(Error::Unavailable("not yet".into())) }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, _key: &str) -> Result<Option<KeyValue>> { todo!() }
    async fn list(&self, _prefix: &str) -> Result<(Vec<KeyValue>, i64)> { todo!() }
    async fn create(&self, _key: &str, _value: Vec<u8>, _lease: Option<LeaseId>, _fence: Option<&Fence>) -> Result<i64> { todo!() }
    async fn update(&self, _key: &str, _value: Vec<u8>, _expected: i64, _fence: Option<&Fence>) -> Result<i64> { todo!() }
    async fn delete(&self, _key: &str, _expected: Option<i64>, _fence: Option<&Fence>) -> Result<i64> { todo!() }
    async fn watch(&self, _prefix: &str, _from_revision: i64) -> Result<WatchStream> { todo!() }
    async fn revision(&self) -> Result<i64> { todo!() }
    async fn compact(&self, _revision: i64) -> Result<()> { todo!() }
    async fn lease_grant(&self, _ttl: Duration) -> Result<LeaseId> { todo!() }
    async fn lease_keep_alive(&self, _lease: LeaseId) -> Result<Duration> { todo!() }
    async fn lease_revoke(&self, _lease: LeaseId) -> Result<()> { todo!() }
}
