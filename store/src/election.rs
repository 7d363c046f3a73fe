//! Leader election on top of the raw [`Store`] trait, so both backends share
//! one implementation (the algorithm of etcd's `concurrency.Election`).
//!
//! Each candidate grants a lease and creates `elections/<name>/<lease>` on
//! it. The candidate whose key has the lowest create revision leads; the
//! others each wait for the deletion of the key just before theirs (no
//! thundering herd). The leader's create revision is its fencing token: a
//! write guarded by the [`Fence`] succeeds only while that very key exists.
//!
//! Leadership is lost — and [`Leadership::lost`] fires — when the key is
//! deleted (lease expired or revoked, an operator deleted it), when a
//! keep-alive is refused, or when no keep-alive succeeded for a whole TTL
//! less a small margin (the store unreachable): at the TTL the store may
//! expire the lease and elect someone else, so we must have stopped by
//! then. The TTL is counted from before each request was sent, so it errs
//! on the early side.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::kv::{EventKind, Fence, LeaseId, Store, WatchItem};
use crate::{Error, Result, keys};

/// One named election.
#[derive(Clone)]
pub struct Election {
    store: Arc<dyn Store>,
    name: String,
    ttl: Duration,
    renew: Duration,
}

/// The current leader of an election, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    /// Its election key.
    pub key: String,
    /// What it announced (usually its instance id).
    pub value: String,
    /// Its fencing token.
    pub token: i64,
}

/// Held leadership. Dropping it resigns (in the background).
pub struct Leadership {
    store: Arc<dyn Store>,
    fence: Fence,
    lease: LeaseId,
    lost_rx: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    resigned: bool,
}

impl Election {
    /// An election called `name` whose leases live `ttl`, renewed every
    /// third of it.
    pub fn new(store: Arc<dyn Store>, name: &str, ttl: Duration) -> Self {
        Election {
            store,
            name: name.to_string(),
            ttl,
            renew: ttl / 3,
        }
    }

    /// Renew the lease every `interval` instead (kept between 10 ms and
    /// half the TTL, so one missed renewal never loses the lease).
    pub fn renew_every(mut self, interval: Duration) -> Self {
        self.renew = interval.clamp(Duration::from_millis(10), self.ttl / 2);
        self
    }

    fn prefix(&self) -> String {
        keys::election(&self.name)
    }

    /// The current leader, if any.
    pub async fn leader(&self) -> Result<Option<Leader>> {
        let (kvs, _) = self.store.list(&self.prefix()).await?;
        Ok(kvs
            .into_iter()
            .min_by_key(|kv| kv.create_revision)
            .map(|kv| Leader {
                key: kv.key,
                value: String::from_utf8_lossy(&kv.value).into_owned(),
                token: kv.create_revision,
            }))
    }

    /// Stand as a candidate announcing `value`, and wait until elected.
    /// If this future is dropped before it returns, the candidacy's lease is
    /// revoked in the background.
    pub async fn campaign(&self, value: &str) -> Result<Leadership> {
        // Measured before asking: the store starts the TTL when it grants,
        // which is later, so our deadline errs on the early side.
        let asked_at = Instant::now();
        let lease = self.store.lease_grant(self.ttl).await?;
        // Revoke the lease if we are cancelled or fail before leading.
        let mut guard = RevokeOnDrop {
            store: Some(self.store.clone()),
            lease,
        };
        let (lost_tx, lost_rx) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(
            self.store.clone(),
            lease,
            self.renew,
            self.ttl,
            asked_at + self.ttl,
            lost_tx.clone(),
        ));
        let mut keeper = AbortOnDrop(Some(keeper));
        let key = format!("{}{lease:016x}", self.prefix());
        let token = self
            .store
            .create(&key, value.as_bytes().to_vec(), Some(lease), None)
            .await?;
        loop {
            if *lost_rx.borrow() {
                return Err(Error::LeaseNotFound(lease));
            }
            let (kvs, revision) = self.store.list(&self.prefix()).await?;
            if !kvs.iter().any(|kv| kv.key == key) {
                return Err(Error::LeaseNotFound(lease));
            }
            let ahead = kvs
                .iter()
                .filter(|kv| kv.create_revision < token)
                .max_by_key(|kv| kv.create_revision);
            let Some(ahead) = ahead else { break };
            let ahead_key = ahead.key.clone();
            tracing::debug!(election = %self.name, waiting_on = %ahead_key, "candidate waiting");
            let mut events = self.store.watch(&ahead_key, revision + 1).await?;
            let mut lost = lost_rx.clone();
            loop {
                tokio::select! {
                    item = events.next() => match item {
                        Some(Ok(WatchItem::Event(ev))) if ev.kind == EventKind::Delete && ev.kv.key == ahead_key => break,
                        Some(Ok(WatchItem::Event(_))) => continue,
                        // Compacted, error or end: look again.
                        _ => break,
                    },
                    _ = lost.wait_for(|l| *l) => return Err(Error::LeaseNotFound(lease)),
                }
            }
        }
        // Leading: watch our own key so its deletion is noticed at once.
        let store = self.store.clone();
        let own_key = key.clone();
        let watcher = tokio::spawn(async move {
            loop {
                let Ok(mut events) = store.watch(&own_key, token).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                while let Some(item) = events.next().await {
                    match item {
                        Ok(WatchItem::Event(ev)) if ev.kind == EventKind::Delete => {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Ok(WatchItem::Event(_)) => {}
                        Ok(WatchItem::Compacted { .. }) | Err(_) => break,
                    }
                }
                // The watch broke: check the key is still ours, then re-watch.
                match store.get(&own_key).await {
                    Ok(Some(kv)) if kv.create_revision == token => {}
                    Ok(_) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tracing::info!(election = %self.name, token, "became leader");
        guard.store = None;
        let keeper = keeper.0.take().into_iter();
        Ok(Leadership {
            store: self.store.clone(),
            fence: Fence { key, token },
            lease,
            lost_rx,
            tasks: keeper.chain(std::iter::once(watcher)).collect(),
            resigned: false,
        })
    }
}

/// Renew `lease` every `period`. Signals `lost` when a renewal is refused,
/// or when `deadline` (the latest instant the lease is surely still alive,
/// measured from before each successful renewal was sent) comes close
/// without a successful renewal. "Close" is a margin of a twentieth of the
/// TTL (at most 250 ms): the store expires the lease at the deadline at the
/// earliest and may elect someone else right then, so this leader must
/// have stopped before, not a retry interval after.
async fn keep_alive(
    store: Arc<dyn Store>,
    lease: LeaseId,
    period: Duration,
    ttl: Duration,
    mut deadline: Instant,
    lost: watch::Sender<bool>,
) {
    let margin = (ttl / 20).min(Duration::from_millis(250));
    let give_up = |deadline: Instant| deadline.checked_sub(margin).unwrap_or(deadline);
    let signal_lost = |why: &str| {
        tracing::warn!(lease = format!("{lease:x}"), why, "leadership lease lost");
        let _ = lost.send(true);
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = tokio::time::sleep_until(give_up(deadline)) => {
                signal_lost("no renewal in time");
                return;
            }
            _ = lost.closed() => return,
        }
        loop {
            let sent = Instant::now();
            match tokio::time::timeout_at(give_up(deadline), store.lease_keep_alive(lease)).await {
                Ok(Ok(granted)) => {
                    deadline = sent + granted.min(ttl);
                    break;
                }
                Ok(Err(Error::LeaseNotFound(_))) => {
                    signal_lost("the store ended the lease");
                    return;
                }
                Err(_) => {
                    signal_lost("no renewal in time");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "lease keep-alive failed; retrying");
                    let now = Instant::now();
                    if now >= give_up(deadline) {
                        signal_lost("no renewal in time");
                        return;
                    }
                    let retry = Duration::from_millis(100).min(period);
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = tokio::time::sleep_until(give_up(deadline)) => {}
                    }
                }
            }
        }
    }
}

impl Leadership {
    /// The fencing token to guard writes with.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The lease leadership is held under.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Whether leadership is already lost.
    pub fn is_lost(&self) -> bool {
        *self.lost_rx.borrow()
    }

    /// Resolves the moment leadership is lost.
    pub async fn lost(&self) {
        let mut rx = self.lost_rx.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// A receiver that turns `true` when leadership is lost, for tasks that
    /// must stop with it.
    pub fn lost_signal(&self) -> watch::Receiver<bool> {
        self.lost_rx.clone()
    }

    /// Give up leadership: delete the key and revoke the lease.
    pub async fn resign(mut self) -> Result<()> {
        self.resigned = true;
        for task in &self.tasks {
            task.abort();
        }
        self.store.lease_revoke(self.lease).await
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if !self.resigned {
            revoke_in_background(self.store.clone(), self.lease);
        }
    }
}

struct RevokeOnDrop {
    store: Option<Arc<dyn Store>>,
    lease: LeaseId,
}

impl Drop for RevokeOnDrop {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            revoke_in_background(store, self.lease);
        }
    }
}

struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

fn revoke_in_background(store: Arc<dyn Store>, lease: LeaseId) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = store.lease_revoke(lease).await {
                tracing::debug!(error = %e, "revoking an abandoned lease");
            }
        });
    }
}
