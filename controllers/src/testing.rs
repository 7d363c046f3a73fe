//! Test support: a store handle whose connection can be cut, to play a
//! process that was killed (`kill -9`) inside one test process.
//!
//! Aborting a manager's task is not a kill: dropping its leaderships
//! revokes their leases in the background, which is a resignation. Behind
//! a [`Severable`] store that was [`sever`](Severable::sever)ed, every call
//! fails with `Unavailable` — revocations and keep-alives included — so the
//! leases simply expire after their TTL, as they would for a dead process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sdc_docker_store::{Error, Fence, KeyValue, LeaseId, Result, Store, WatchStream};

/// A [`Store`] that forwards to another until severed, then fails every
/// call (and ends every watch it opened with an error).
pub struct Severable {
    inner: Arc<dyn Store>,
    severed: Arc<AtomicBool>,
}

impl Severable {
    /// Forward to `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Severable {
            inner,
            severed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Cut the connection for good.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> Result<()> {
        if self.severed.load(Ordering::SeqCst) {
            Err(Error::Unavailable("severed".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Store for Severable {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        self.check()?;
        self.inner.list(prefix).await
    }
    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        self.check()?;
        self.inner.create(key, value, lease, fence).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        self.check()?;
        self.inner.update(key, value, expected, fence).await
    }
    async fn delete(&self, key: &str, expected: Option<i64>, fence: Option<&Fence>) -> Result<i64> {
        self.check()?;
        self.inner.delete(key, expected, fence).await
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        use futures::StreamExt;
        self.check()?;
        let severed = self.severed.clone();
        let stream = self.inner.watch(prefix, from_revision).await?;
        Ok(Box::pin(stream.take_while(move |_| {
            let alive = !severed.load(Ordering::SeqCst);
            async move { alive }
        })))
    }
    async fn revision(&self) -> Result<i64> {
        self.check()?;
        self.inner.revision().await
    }
    async fn compact(&self, revision: i64) -> Result<()> {
        self.check()?;
        self.inner.compact(revision).await
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        self.check()?;
        self.inner.lease_grant(ttl).await
    }
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        self.check()?;
        self.inner.lease_keep_alive(lease).await
    }
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.check()?;
        self.inner.lease_revoke(lease).await
    }
}
