//! `GET /events`: what happened to containers and images, as `docker events`
//! and docker-compose v2 follow it.
//!
//! No handler reports what it did. [`EventLog`] follows the Container and
//! Image objects of the default account in the store and derives Docker's
//! events from the difference between successive versions of each object:
//! a new Container is `create`, `status.startedAt` moving is `start`,
//! `status.finishedAt` moving is `die`, a new `spec.request` is `kill` (then
//! `stop` or `restart` once the container died or started again), a deleted
//! one is `destroy`; a new Image is `pull`, a tag gained or lost is `tag` or
//! `untag`, a deleted one is `untag`s then `delete`. So whichever instance or
//! controller wrote a change, every instance sharing the store derives the
//! same events from it. The limits follow from that:
//!
//! - events from before this instance started are not known: the first list
//!   only seeds what was last seen. After a compaction of the store's
//!   history the relist yields the net difference, so a container that came
//!   and went meanwhile is missed.
//! - an event's time is the object's own time where it has one (created,
//!   started, finished), else the time this instance saw the change.
//! - what the store does not tell apart is reported one way: a tag added to
//!   an image already there is `tag` even when a pull added it, pulling an
//!   unchanged image again changes nothing and reports nothing, and a rename
//!   is recognised only when the new name is written before the old one is
//!   deleted (otherwise it shows as `destroy` and `create`).
//!
//! The last [`CAPACITY`] events are kept for `since`/`until` replay; live
//! subscribers get the rest through a broadcast channel.
//!
//! Deriving events needs the last seen version of every Container and
//! Image, so the log has them decoded anyway, and [`EventLog::snapshot`]
//! lends them out: `docker ps` reads them instead of listing and decoding
//! the store (the decoding was most of a listing's time). The snapshot is
//! only handed out once the log has applied every change up to the
//! store's revision at the time of the call, so a client reads its own
//! writes. That rests on every key this server writes being under
//! [`keys::ROOT`], which the log watches (in a store whose revision other
//! writers also move, the log reaches it only with the next change under
//! the root, and callers fall back to the store after their wait), and on
//! a revision changing one key, as every write here does (a revision
//! deleting several leased keys at once may be seen half applied for a
//! moment). Objects are shared (`Arc`), never copied, and one whose latest
//! value does not decode is left out, as a store listing leaves it out.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use sdc_docker_images::reference::Reference;
use sdc_docker_store::model::{Container, ContainerState, DesiredState, Image, RequestAction};
use sdc_docker_store::{Decoded, Event, EventKind, KeyValue, Kind, Store, WatchItem, decode, keys};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Sleep};

use super::DockerState;
use super::filters::Filters;
use super::images::familiar;
use crate::ApiError;

/// How many past events are kept for replay (`since`).
pub const CAPACITY: usize = 10_000;

/// How many events a live subscriber may fall behind before it misses some.
const LIVE_BACKLOG: usize = 4096;

/// How long a request waits for the log to reach the store's revision
/// before answering with what it has.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The first wait before following the store again after it failed.
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest such wait (it doubles from [`RETRY_FIRST`]).
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The filters `GET /events` takes (Docker's list; those naming kinds this
/// server has no events of simply match nothing).
const KNOWN_FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// Filters matched, like `container`, against the actor's id or name.
const NAMED_FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "network",
    "node",
    "plugin",
    "secret",
    "service",
    "volume",
];

/// One event: moby's `events.Message`, with the legacy `status`, `id` and
/// `from` fields that container and image events still carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMessage {
    /// The action again (legacy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The actor's id again (legacy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A container's image (legacy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `container` or `image`.
    #[serde(rename = "Type")]
    pub type_: String,
    /// `create`, `start`, `die`, `pull`, …
    #[serde(rename = "Action")]
    pub action: String,
    /// What it happened to.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// moby's `events.Actor`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The container's id, the image's id or reference.
    #[serde(rename = "ID")]
    pub id: String,
    /// `name`, `image`, the labels, and what the action adds (`exitCode`).
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

impl EventMessage {
    /// An event of `type_` with the legacy fields Docker fills for
    /// containers and images.
    fn new(
        type_: &str,
        action: &str,
        id: String,
        attributes: BTreeMap<String, String>,
        at: OffsetDateTime,
    ) -> EventMessage {
        let nanos = at.unix_timestamp_nanos();
        let from = (type_ == "container")
            .then(|| attributes.get("image").cloned())
            .flatten();
        EventMessage {
            status: Some(action.to_owned()),
            id: Some(id.clone()),
            from,
            type_: type_.to_owned(),
            action: action.to_owned(),
            actor: Actor { id, attributes },
            scope: "local".to_owned(),
            time: at.unix_timestamp(),
            time_nano: i64::try_from(nanos).unwrap_or(i64::MAX),
        }
    }
}

/// The events derived from the store since this instance started: the
/// recent ones for replay, and a channel for live subscribers.
pub struct EventLog {
    /// The last [`CAPACITY`] events, oldest first. Publishing holds this
    /// lock while it also broadcasts, and subscribing holds it while it
    /// copies and subscribes, so a subscriber gets every event exactly once,
    /// either replayed or live.
    recent: Mutex<VecDeque<EventMessage>>,
    /// Live events.
    live: broadcast::Sender<EventMessage>,
    /// The store revision the log has derived events up to (-1 before the
    /// first list). Advanced only once the change is applied to `objects`,
    /// so whoever sees it reach a revision finds every change up to it
    /// there.
    seen: watch::Receiver<i64>,
    /// The last seen version of every Container and Image. Only the task
    /// following the store changes it; [`EventLog::snapshot`] reads it.
    objects: Mutex<Objects>,
    /// The store, to learn which revision to catch up to.
    store: Arc<dyn Store>,
}

impl EventLog {
    /// Starts following `store`: lists the Containers and Images of the
    /// default account to learn how things stand (no events), then derives
    /// events from every change after that.
    pub fn start(store: Arc<dyn Store>) -> Arc<EventLog> {
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        let (seen_tx, seen) = watch::channel(-1);
        let log = Arc::new(EventLog {
            recent: Mutex::new(VecDeque::new()),
            live,
            seen,
            objects: Mutex::new(Objects::default()),
            store: store.clone(),
        });
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(follow(store, Arc::downgrade(&log), seen_tx));
            }
            Err(e) => tracing::error!(error = %e, "no runtime to follow the store: no events"),
        }
        log
    }

    /// Waits (for at most [`CATCH_UP`]) until the log has seen every change
    /// the store had when called, so that a client that just changed
    /// something and asks for events finds it.
    pub async fn caught_up(&self) {
        let target = match self.store.revision().await {
            Ok(revision) => revision,
            Err(e) => {
                tracing::warn!(error = %e, "events: cannot read the store's revision");
                return;
            }
        };
        let mut seen = self.seen.clone();
        let reached = tokio::time::timeout(CATCH_UP, seen.wait_for(|r| *r >= target)).await;
        if !matches!(reached, Ok(Ok(_))) {
            tracing::debug!(target, "events: answering before the log caught up");
        }
    }

    /// The Containers and Images of the default account as the store has
    /// them at least at its revision when called (later changes may be in
    /// too), or `None` when the log has not caught up within `within` or
    /// the store's revision cannot be read: the caller then reads the
    /// store itself.
    pub async fn snapshot(&self, within: Duration) -> Option<Snapshot> {
        let target = match self.store.revision().await {
            Ok(revision) => revision,
            Err(e) => {
                tracing::debug!(error = %e, "events: cannot read the store's revision; no snapshot");
                return None;
            }
        };
        let mut seen = self.seen.clone();
        if *seen.borrow() < target {
            let reached = tokio::time::timeout(within, seen.wait_for(|r| *r >= target)).await;
            if !matches!(reached, Ok(Ok(_))) {
                tracing::debug!(target, "events: the log is behind the store; no snapshot");
                return None;
            }
        }
        Some(self.objects().snapshot())
    }

    /// The objects, whoever panicked while holding them.
    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many clients follow `/events` now (`docker info`'s
    /// `NEventsListener`).
    pub fn listeners(&self) -> usize {
        self.live.receiver_count()
    }

    /// Adds `events` to the log and sends them to live subscribers.
    fn publish(&self, events: Vec<EventMessage>) {
        if events.is_empty() {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        for event in events {
            tracing::debug!(r#type = %event.type_, action = %event.action, id = %event.actor.id, "event");
            if recent.len() == CAPACITY {
                recent.pop_front();
            }
            recent.push_back(event.clone());
            // No live subscribers is not an error.
            let _ = self.live.send(event);
        }
    }

    /// The kept events between `since` and `until` (Unix nanoseconds,
    /// inclusive) that `filter` lets through (none when neither bound is
    /// given, as Docker), and a receiver of every event after them.
    fn subscribe(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: &EventFilter,
    ) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self.live.subscribe();
        if since.is_none() && until.is_none() {
            return (Vec::new(), live);
        }
        let replay = recent
            .iter()
            .filter(|e| since.is_none_or(|s| e.time_nano >= s))
            .filter(|e| until.is_none_or(|u| e.time_nano <= u))
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        (replay, live)
    }
}

/// Follows the store for `log` until the log is dropped: lists, then
/// watches from the list's revision; relists when history was compacted;
/// watches again, after a growing pause, when the store fails.
async fn follow(store: Arc<dyn Store>, log: Weak<EventLog>, seen: watch::Sender<i64>) {
    let mut retry = RETRY_FIRST;
    let mut seeded = false;
    // Waits `retry` (doubling it), or ends the task once the log is gone.
    macro_rules! pause_or_end {
        () => {{
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = seen.closed() => return,
            }
            retry = (retry * 2).min(RETRY_MAX);
        }};
    }
    'relist: loop {
        let (kvs, revision) = match store.list(keys::ROOT).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "events: listing the store failed; retrying");
                pause_or_end!();
                continue;
            }
        };
        let Some(alive) = log.upgrade() else { return };
        let events = {
            let mut objects = alive.objects();
            let events = objects.resync(&kvs, now());
            if !seeded {
                // The first list only says how things stand.
                objects.renamed.clear();
                objects.pending.clear();
            }
            events
        };
        if seeded {
            alive.publish(events);
        }
        drop(alive);
        seeded = true;
        seen.send_replace(revision);
        let mut next = revision + 1;
        loop {
            let mut stream = match store.watch(keys::ROOT, next).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "events: watching the store failed; retrying");
                    pause_or_end!();
                    continue;
                }
            };
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    _ = seen.closed() => return,
                };
                match item {
                    Some(Ok(WatchItem::Event(event))) => {
                        retry = RETRY_FIRST;
                        let Some(alive) = log.upgrade() else { return };
                        let events = alive.objects().apply(&event, now());
                        alive.publish(events);
                        next = event.revision() + 1;
                        seen.send_replace(event.revision());
                    }
                    Some(Ok(WatchItem::Compacted { compact_revision })) => {
                        tracing::info!(
                            compact_revision,
                            "events: the store's history was compacted; relisting"
                        );
                        continue 'relist;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "events: the store's watch failed; watching again");
                        break;
                    }
                    None => break,
                }
            }
            pause_or_end!();
        }
    }
}

/// The time of an event that has no time of its own.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// What [`EventLog::snapshot`] lends: the objects themselves, shared.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Every Container of the default account, in no particular order.
    pub containers: Vec<Arc<Container>>,
    /// Every Image of the default account, in no particular order.
    pub images: Arc<[Image]>,
}

/// The last seen version of each Container and Image of the default
/// account, and what a change of one means in Docker's events.
#[derive(Default)]
struct Objects {
    /// Containers by name.
    containers: HashMap<String, Arc<Container>>,
    /// Images by name.
    images: HashMap<String, Image>,
    /// The images as one list, built when a snapshot first needs it after
    /// an image changed (images change far less often than they are
    /// listed).
    image_list: Option<Arc<[Image]>>,
    /// Containers whose latest value does not decode: still known, for
    /// their events, but left out of snapshots.
    undecodable_containers: HashSet<String>,
    /// Images whose latest value does not decode, likewise.
    undecodable_images: HashSet<String>,
    /// Names whose container lives on under another name: their deletion
    /// is the end of a rename, not a `destroy`.
    renamed: HashSet<String>,
    /// Containers asked to stop or restart whose `stop` (after the `die`)
    /// or `restart` (after the `start`) is still to come.
    pending: HashMap<String, RequestAction>,
}

impl Objects {
    /// The events of one change in the store.
    fn apply(&mut self, event: &Event, now: OffsetDateTime) -> Vec<EventMessage> {
        let Some((plural, account, name)) = keys::parse(&event.kv.key) else {
            return Vec::new();
        };
        if account != keys::DEFAULT_ACCOUNT {
            return Vec::new();
        }
        let put = event.kind == EventKind::Put;
        if plural == Kind::Container.plural() {
            let new = if put { valid(&event.kv) } else { None };
            if put && new.is_none() {
                // A value that does not decode says nothing about the
                // container, but a store listing would not show it.
                self.undecodable_containers.insert(name.to_owned());
                return Vec::new();
            }
            self.container_changed(name, new, now)
        } else if plural == Kind::Image.plural() {
            let new = if put { valid(&event.kv) } else { None };
            if put && new.is_none() {
                self.undecodable_images.insert(name.to_owned());
                self.image_list = None;
                return Vec::new();
            }
            self.image_changed(name, new, now)
        } else {
            Vec::new()
        }
    }

    /// The objects a store listing would show now.
    fn snapshot(&mut self) -> Snapshot {
        let containers = if self.undecodable_containers.is_empty() {
            self.containers.values().cloned().collect()
        } else {
            self.containers
                .iter()
                .filter(|(name, _)| !self.undecodable_containers.contains(*name))
                .map(|(_, c)| c.clone())
                .collect()
        };
        let images = match &self.image_list {
            Some(list) => list.clone(),
            None => {
                let list: Arc<[Image]> = self
                    .images
                    .iter()
                    .filter(|(name, _)| !self.undecodable_images.contains(*name))
                    .map(|(_, i)| i.clone())
                    .collect();
                self.image_list = Some(list.clone());
                list
            }
        };
        Snapshot { containers, images }
    }

    /// Replaces what was seen with a fresh list of the store, returning the
    /// events of the difference.
    fn resync(&mut self, kvs: &[KeyValue], now: OffsetDateTime) -> Vec<EventMessage> {
        let mut containers = BTreeMap::new();
        let mut images = BTreeMap::new();
        for kv in kvs {
            match keys::parse(&kv.key) {
                Some((plural, account, name)) if account == keys::DEFAULT_ACCOUNT => {
                    if plural == Kind::Container.plural() {
                        if let Some(c) = valid::<Container>(kv) {
                            containers.insert(name.to_owned(), c);
                        }
                    } else if plural == Kind::Image.plural()
                        && let Some(i) = valid::<Image>(kv)
                    {
                        images.insert(name.to_owned(), i);
                    }
                }
                _ => {}
            }
        }
        let mut events = Vec::new();
        // New and changed first, so a rename is seen before its old name
        // goes.
        let gone: Vec<String> = self
            .containers
            .keys()
            .filter(|n| !containers.contains_key(*n))
            .cloned()
            .collect();
        for (name, c) in containers {
            events.extend(self.container_changed(&name, Some(c), now));
        }
        for name in gone {
            events.extend(self.container_changed(&name, None, now));
        }
        let gone: Vec<String> = self
            .images
            .keys()
            .filter(|n| !images.contains_key(*n))
            .cloned()
            .collect();
        for (name, i) in images {
            events.extend(self.image_changed(&name, Some(i), now));
        }
        for name in gone {
            events.extend(self.image_changed(&name, None, now));
        }
        events
    }

    /// The events of container `name` becoming `new` (`None`: deleted).
    fn container_changed(
        &mut self,
        name: &str,
        new: Option<Container>,
        now: OffsetDateTime,
    ) -> Vec<EventMessage> {
        self.undecodable_containers.remove(name);
        let new = new.map(Arc::new);
        let old = match &new {
            Some(c) => self.containers.insert(name.to_owned(), c.clone()),
            None => self.containers.remove(name),
        };
        match (old, new) {
            (None, Some(new)) => {
                let renamed_from = (!new.spec.id.is_empty())
                    .then(|| {
                        self.containers
                            .iter()
                            .find(|(n, c)| n.as_str() != name && c.spec.id == new.spec.id)
                            .map(|(n, c)| (n.clone(), c.clone()))
                    })
                    .flatten();
                match renamed_from {
                    Some((old_name, old)) => {
                        self.renamed.insert(old_name.clone());
                        if let Some(p) = self.pending.remove(&old_name) {
                            self.pending.insert(name.to_owned(), p);
                        }
                        let mut events = vec![container_event(
                            &new,
                            "rename",
                            now,
                            [("oldName", format!("/{old_name}"))],
                        )];
                        events.extend(self.transitions(&old, &new, now));
                        events
                    }
                    None => {
                        let created = new.metadata.creation_timestamp.unwrap_or(now);
                        let mut events = vec![container_event(&new, "create", created, [])];
                        let mut before = Container::clone(&new);
                        before.status = Default::default();
                        before.spec.request = None;
                        before.spec.desired_state = DesiredState::Created;
                        events.extend(self.transitions(&before, &new, now));
                        events
                    }
                }
            }
            (Some(old), Some(new)) => self.transitions(&old, &new, now),
            (Some(old), None) => {
                self.pending.remove(name);
                if self.renamed.remove(name) {
                    return Vec::new();
                }
                let mut events = Vec::new();
                if is_up(old.status.state) {
                    // Removed while running (`docker rm -f`): Docker kills it
                    // first, and so does the node.
                    events.push(container_event(&old, "kill", now, [("signal", "9".into())]));
                    events.push(container_event(
                        &old,
                        "die",
                        now,
                        [("exitCode", "137".into())],
                    ));
                }
                let at = old.metadata.deletion_timestamp.unwrap_or(now);
                events.push(container_event(&old, "destroy", at, []));
                events
            }
            (None, None) => Vec::new(),
        }
    }

    /// The events of a container going from `old` to `new`.
    fn transitions(
        &mut self,
        old: &Container,
        new: &Container,
        now: OffsetDateTime,
    ) -> Vec<EventMessage> {
        let name = new.metadata.name.as_str();
        let mut events = Vec::new();
        // What the user asked: a request at a new generation, or a plain
        // stop through the desired state.
        let request = new.spec.request.as_ref().filter(|r| {
            old.spec
                .request
                .as_ref()
                .is_none_or(|o| o.generation != r.generation || o.action != r.action)
        });
        let up = is_up(old.status.state);
        if let Some(request) = request {
            // A start request is told by the start the node reports.
            let default = match request.action {
                RequestAction::Kill => Some("SIGKILL"),
                RequestAction::Stop | RequestAction::Restart => Some(stop_signal(new)),
                RequestAction::Start => None,
            };
            if let Some(default) = default
                && up
            {
                let signal = if request.signal.is_empty() {
                    default
                } else {
                    &request.signal
                };
                events.push(container_event(
                    new,
                    "kill",
                    now,
                    [("signal", signal_number(signal))],
                ));
            }
            match request.action {
                RequestAction::Stop if up => {
                    self.pending.insert(name.to_owned(), RequestAction::Stop);
                }
                RequestAction::Restart => {
                    self.pending.insert(name.to_owned(), RequestAction::Restart);
                }
                RequestAction::Kill | RequestAction::Stop | RequestAction::Start => {}
            }
        } else if up
            && old.spec.desired_state != DesiredState::Stopped
            && new.spec.desired_state == DesiredState::Stopped
        {
            let signal = signal_number(stop_signal(new));
            events.push(container_event(new, "kill", now, [("signal", signal)]));
            self.pending.insert(name.to_owned(), RequestAction::Stop);
        }
        if old.spec.memory != new.spec.memory
            || old.spec.cpu_shares != new.spec.cpu_shares
            || old.spec.restart_policy != new.spec.restart_policy
        {
            events.push(container_event(new, "update", now, []));
        }

        // What the node observed, in the order it happened.
        let (was, is) = (&old.status, &new.status);
        let mut observed: Vec<(OffsetDateTime, Observed)> = Vec::new();
        if !was.oom_killed && is.oom_killed {
            observed.push((is.finished_at.unwrap_or(now), Observed::Oom));
        }
        if is.finished_at.is_some() && is.finished_at != was.finished_at {
            observed.push((is.finished_at.unwrap_or(now), Observed::Die));
        } else if is_up(was.state)
            && matches!(is.state, ContainerState::Exited | ContainerState::Dead)
        {
            observed.push((now, Observed::Die));
        }
        if is.started_at.is_some() && is.started_at != was.started_at {
            observed.push((is.started_at.unwrap_or(now), Observed::Start));
        } else if !is_up(was.state) && is.state == ContainerState::Running {
            observed.push((now, Observed::Start));
        }
        if was.state != ContainerState::Paused && is.state == ContainerState::Paused {
            observed.push((now, Observed::Pause));
        }
        if was.state == ContainerState::Paused && is.state == ContainerState::Running {
            observed.push((now, Observed::Unpause));
        }
        observed.sort_by_key(|(at, _)| *at);
        for (at, what) in observed {
            match what {
                Observed::Oom => events.push(container_event(new, "oom", at, [])),
                Observed::Die => {
                    let mut extra = vec![("exitCode", is.exit_code.to_string())];
                    if let (Some(start), Some(end)) = (is.started_at, is.finished_at)
                        && end >= start
                    {
                        extra.push(("execDuration", (end - start).whole_seconds().to_string()));
                    }
                    events.push(container_event(new, "die", at, extra));
                    if let Some(action) = self.pending.get(name).copied() {
                        events.push(container_event(new, "stop", at, []));
                        if action == RequestAction::Stop {
                            self.pending.remove(name);
                        }
                    }
                }
                Observed::Start => {
                    events.push(container_event(new, "start", at, []));
                    if self.pending.get(name) == Some(&RequestAction::Restart) {
                        self.pending.remove(name);
                        events.push(container_event(new, "restart", at, []));
                    }
                }
                Observed::Pause => events.push(container_event(new, "pause", at, [])),
                Observed::Unpause => events.push(container_event(new, "unpause", at, [])),
            }
        }
        events
    }

    /// The events of image `name` becoming `new` (`None`: deleted).
    fn image_changed(
        &mut self,
        name: &str,
        new: Option<Image>,
        now: OffsetDateTime,
    ) -> Vec<EventMessage> {
        self.undecodable_images.remove(name);
        self.image_list = None;
        let old = match &new {
            Some(i) => self.images.insert(name.to_owned(), i.clone()),
            None => self.images.remove(name),
        };
        let mut events = Vec::new();
        match (old, new) {
            (None, Some(new)) => {
                // Pulled (or loaded): one `pull` per reference, named as
                // Docker names it (`busybox:latest`, attribute `busybox`).
                let references = if new.spec.repo_tags.is_empty() {
                    &new.spec.repo_digests
                } else {
                    &new.spec.repo_tags
                };
                for reference in references {
                    let (id, short) = match Reference::parse_normalized(reference) {
                        Ok(r) => (r.familiar(), r.familiar_name()),
                        Err(_) => (reference.clone(), reference.clone()),
                    };
                    events.push(image_event(&new, "pull", id, Some(short), now));
                }
            }
            (Some(old), Some(new)) => {
                let id = image_id(&new);
                for tag in new
                    .spec
                    .repo_tags
                    .iter()
                    .filter(|t| !old.spec.repo_tags.contains(t))
                {
                    events.push(image_event(
                        &new,
                        "tag",
                        id.clone(),
                        Some(familiar(tag)),
                        now,
                    ));
                }
                let lost = old
                    .spec
                    .repo_tags
                    .iter()
                    .chain(&old.spec.repo_digests)
                    .filter(|r| {
                        !new.spec.repo_tags.contains(r) && !new.spec.repo_digests.contains(r)
                    });
                for _ in lost {
                    events.push(image_event(
                        &new,
                        "untag",
                        id.clone(),
                        Some(id.clone()),
                        now,
                    ));
                }
            }
            (Some(old), None) => {
                let id = image_id(&old);
                for _ in old.spec.repo_tags.iter().chain(&old.spec.repo_digests) {
                    events.push(image_event(
                        &old,
                        "untag",
                        id.clone(),
                        Some(id.clone()),
                        now,
                    ));
                }
                let mut delete = image_event(&old, "delete", id.clone(), Some(id.clone()), now);
                // Docker reports a deleted image without its labels.
                delete.actor.attributes.retain(|k, _| k == "name");
                events.push(delete);
            }
            (None, None) => {}
        }
        events
    }
}

/// What the node observed of a container, to be put in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Observed {
    /// Killed by the OOM killer.
    Oom,
    /// A run ended.
    Die,
    /// A run began.
    Start,
    /// Frozen.
    Pause,
    /// Thawed.
    Unpause,
}

/// The object in `kv`, when it decodes.
fn valid<K: sdc_docker_store::Resource>(kv: &KeyValue) -> Option<K> {
    match decode::<K>(kv) {
        Decoded::Valid(obj) => Some(obj),
        Decoded::Invalid { key, message, .. } => {
            tracing::debug!(%key, %message, "events: skipping a value that does not decode");
            None
        }
    }
}

/// Whether a container in `state` has a process (so a stop has something
/// to stop).
fn is_up(state: ContainerState) -> bool {
    matches!(
        state,
        ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
    )
}

/// The signal `docker stop` sends `container`.
fn stop_signal(container: &Container) -> &str {
    if container.spec.stop_signal.is_empty() {
        "SIGTERM"
    } else {
        &container.spec.stop_signal
    }
}

/// A signal as Docker's `kill` event gives it: its number.
fn signal_number(signal: &str) -> String {
    sdc_docker_zones::signal::parse(signal)
        .map(|n| n.to_string())
        .unwrap_or_else(|_| signal.to_owned())
}

/// A container event: the attributes are its labels, `image` and `name`,
/// then `extra`.
fn container_event<'a>(
    container: &Container,
    action: &str,
    at: OffsetDateTime,
    extra: impl IntoIterator<Item = (&'a str, String)>,
) -> EventMessage {
    let mut attributes = container.spec.labels.clone();
    attributes.insert("image".into(), container.spec.image.clone());
    attributes.insert("name".into(), container.metadata.name.clone());
    for (key, value) in extra {
        attributes.insert(key.to_owned(), value);
    }
    EventMessage::new("container", action, container.docker_id(), attributes, at)
}

/// An image event about `id`, with the image's labels and `name`.
fn image_event(
    image: &Image,
    action: &str,
    id: String,
    name: Option<String>,
    at: OffsetDateTime,
) -> EventMessage {
    let mut attributes: BTreeMap<String, String> = image.spec.config["config"]["Labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(name) = name {
        attributes.insert("name".into(), name);
    }
    EventMessage::new("image", action, id, attributes, at)
}

/// The image's `sha256:…` id.
fn image_id(image: &Image) -> String {
    if image.spec.id.is_empty() {
        format!("sha256:{}", image.metadata.name)
    } else {
        image.spec.id.clone()
    }
}

/// A reference without its tag or digest, as Docker's event filter
/// compares images (`busybox`).
fn strip_tag(image: &str) -> String {
    Reference::parse_normalized(image)
        .map(|r| r.familiar_name())
        .unwrap_or_else(|_| image.to_owned())
}

/// What `filters` lets through, the way moby's `daemon/events.Filter`
/// decides.
#[derive(Clone, Debug, Default)]
pub struct EventFilter(Filters);

impl EventFilter {
    /// Parses `filters`, refusing names Docker does not know.
    pub fn parse(raw: Option<&str>) -> Result<EventFilter, ApiError> {
        Filters::parse(raw, KNOWN_FILTERS).map(EventFilter)
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &EventMessage) -> bool {
        let f = &self.0;
        let exact = |key: &str, value: &str| {
            let wanted = f.get(key);
            wanted.is_empty() || wanted.iter().any(|w| w == value)
        };
        let fuzzy = |key: &str, value: &str| {
            let wanted = f.get(key);
            wanted.is_empty() || wanted.iter().any(|w| value.starts_with(w.as_str()))
        };
        let attributes = &event.actor.attributes;
        let name = attributes
            .get("name")
            .map(String::as_str)
            .unwrap_or_default();
        // Docker matches these three event names by prefix
        // (`exec_start: sh`), every other one exactly.
        let by_prefix = f
            .get("event")
            .iter()
            .any(|e| matches!(e.as_str(), "health_status" | "exec_create" | "exec_start"));
        let event_ok = if by_prefix {
            fuzzy("event", &event.action)
        } else {
            exact("event", &event.action)
        };
        let image_name = if event.type_ == "image" {
            name
        } else {
            attributes
                .get("image")
                .map(String::as_str)
                .unwrap_or_default()
        };
        let id = event.actor.id.as_str();
        let image_ok = exact("image", id)
            || exact("image", image_name)
            || exact("image", &strip_tag(id))
            || exact("image", &strip_tag(image_name));
        event_ok
            && exact("type", &event.type_)
            && exact("scope", &event.scope)
            && NAMED_FILTERS
                .iter()
                .all(|key| fuzzy(key, id) || (!name.is_empty() && fuzzy(key, name)))
            && image_ok
            && f.labels_match(attributes)
    }
}

/// The query of `GET /events`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventsQuery {
    /// Replay kept events from this time on.
    pub since: Option<String>,
    /// Stop at this time.
    pub until: Option<String>,
    /// Docker's filters, JSON.
    pub filters: Option<String>,
}

/// Docker's event times: Unix seconds with optional fraction
/// (`1700000000.123456789`, what the CLI sends), or RFC 3339. `None` for
/// empty or `-1`, Docker's "not given".
pub fn parse_time(raw: &str) -> Result<Option<i64>, ApiError> {
    if raw.trim() == "-1" {
        return Ok(None);
    }
    Ok(crate::docker::query::timestamp(raw)?.map(|at| {
        // Times past the year 2262 do not fit in nanoseconds: "never".
        let nanos = at.unix_timestamp_nanos();
        i64::try_from(nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX))).unwrap_or(i64::MAX)
    }))
}

/// The events routes.
pub fn routes() -> Router<DockerState> {
    Router::new().route("/events", get(events))
}

/// `GET /events?since=&until=&filters=`: the kept events in the window,
/// then live ones until `until` (forever without it; nothing live when
/// `until` is past), one JSON object a line.
pub async fn events(
    State(state): State<DockerState>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let since = query
        .since
        .as_deref()
        .map(parse_time)
        .transpose()?
        .flatten();
    let until = query
        .until
        .as_deref()
        .map(parse_time)
        .transpose()?
        .flatten();
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err(ApiError::bad_request(format!(
            "`since` time ({}) cannot be after `until` time ({})",
            query.since.unwrap_or_default(),
            query.until.unwrap_or_default()
        )));
    }
    let filter = EventFilter::parse(query.filters.as_deref())?;
    state.events.caught_up().await;
    let now = i64::try_from(now().unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let (replay, live) = state.events.subscribe(since, until, &filter);
    let replay = futures::stream::iter(replay).map(|e| Ok::<_, Infallible>(line(&e)));
    let body = match until {
        Some(u) if u < now => Body::from_stream(replay),
        _ => {
            let deadline = until.and_then(|u| {
                let wait = u64::try_from(u.saturating_sub(now)).unwrap_or(0);
                Instant::now().checked_add(Duration::from_nanos(wait))
            });
            Body::from_stream(replay.chain(follow_live(live, filter, deadline)))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The live events `filter` lets through, until `deadline` when given (or
/// until the client goes away and the body is dropped).
fn follow_live(
    live: broadcast::Receiver<EventMessage>,
    filter: EventFilter,
    deadline: Option<Instant>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    struct Follow {
        live: broadcast::Receiver<EventMessage>,
        filter: EventFilter,
        deadline: Option<Pin<Box<Sleep>>>,
    }
    let start = Follow {
        live,
        filter,
        deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
    };
    futures::stream::unfold(start, |mut f| async move {
        loop {
            let received = tokio::select! {
                () = async {
                    match f.deadline.as_mut() {
                        Some(sleep) => sleep.await,
                        None => std::future::pending().await,
                    }
                } => return None,
                received = f.live.recv() => received,
            };
            match received {
                Ok(event) if f.filter.matches(&event) => return Some((Ok(line(&event)), f)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "events: a slow subscriber missed events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// One event as a line of the response.
fn line(event: &EventMessage) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use sdc_docker_store::Api;
    use sdc_docker_store::Resource;
    use sdc_docker_store::model::{ContainerSpec, ImageSpec, LifecycleRequest};
    use time::macros::datetime;
    use tower::ServiceExt;

    use super::*;
    use crate::test_support::{TestStore, body_json, body_text};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: ID.into(),
            image: "busybox:latest".into(),
            labels: [("tier".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        }
    }

    fn actions(events: &[EventMessage]) -> Vec<&str> {
        events.iter().map(|e| e.action.as_str()).collect()
    }

    /// Every kept event.
    fn kept(log: &EventLog) -> Vec<EventMessage> {
        log.subscribe(Some(0), None, &EventFilter::default()).0
    }

    /// `container` with its status changed by `change`.
    fn observed(container: &Container, change: impl FnOnce(&mut Container)) -> Container {
        let mut next = container.clone();
        change(&mut next);
        next
    }

    fn nanos(at: OffsetDateTime) -> i64 {
        i64::try_from(at.unix_timestamp_nanos()).expect("in range")
    }

    #[tokio::test]
    async fn a_container_that_runs_and_exits_is_created_started_dies_and_is_destroyed() {
        let store = TestStore::new().await;
        let log = EventLog::start(store.store.clone());
        log.caught_up().await;
        let api = Api::<Container>::default_account(store.store.clone());
        let created = api
            .create(&Container::new("web", spec()))
            .await
            .expect("created");
        let started_at = datetime!(2026-01-02 03:04:05.5 UTC);
        let finished_at = datetime!(2026-01-02 03:04:09 UTC);
        let running = api
            .update_status(&observed(&created, |c| {
                c.status.state = ContainerState::Running;
                c.status.started_at = Some(started_at);
            }))
            .await
            .expect("running");
        api.update_status(&observed(&running, |c| {
            c.status.state = ContainerState::Exited;
            c.status.exit_code = 3;
            c.status.finished_at = Some(finished_at);
        }))
        .await
        .expect("exited");
        api.delete("web", None).await.expect("deleted");
        log.caught_up().await;

        let events = kept(&log);
        assert_eq!(actions(&events), ["create", "start", "die", "destroy"]);
        let [create, start, die, _] = &events[..] else {
            unreachable!("four events")
        };
        assert_eq!(create.type_, "container");
        assert_eq!(create.actor.id, ID);
        assert_eq!(create.id.as_deref(), Some(ID));
        assert_eq!(create.status.as_deref(), Some("create"));
        assert_eq!(create.from.as_deref(), Some("busybox:latest"));
        assert_eq!(create.scope, "local");
        let expected: BTreeMap<String, String> = [
            ("image".to_owned(), "busybox:latest".to_owned()),
            ("name".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "web".to_owned()),
        ]
        .into();
        assert_eq!(create.actor.attributes, expected);
        assert_eq!(
            create.time_nano,
            nanos(created.metadata.creation_timestamp.expect("stamped"))
        );
        assert_eq!(start.time_nano, nanos(started_at));
        assert_eq!(start.time, started_at.unix_timestamp());
        assert_eq!(die.time_nano, nanos(finished_at));
        assert_eq!(die.actor.attributes["exitCode"], "3");
        assert_eq!(die.actor.attributes["execDuration"], "3");
    }

    #[tokio::test]
    async fn what_stood_before_the_log_started_is_not_reported() {
        let store = TestStore::new().await;
        let api = Api::<Container>::default_account(store.store.clone());
        api.create(&Container::new("old", spec()))
            .await
            .expect("created");
        let log = EventLog::start(store.store.clone());
        log.caught_up().await;
        assert!(kept(&log).is_empty());
        api.delete("old", None).await.expect("deleted");
        log.caught_up().await;
        assert_eq!(actions(&kept(&log)), ["destroy"]);
    }

    #[test]
    fn a_stop_is_a_kill_with_the_stop_signal_then_die_then_stop() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut objects = Objects::default();
        let mut running = Container::new("web", spec());
        running.metadata.generation = 1;
        running.status.state = ContainerState::Running;
        running.status.started_at = Some(now);
        running.spec.stop_signal = "SIGQUIT".into();
        objects.container_changed("web", Some(running.clone()), now);

        let stopping = observed(&running, |c| {
            c.spec.desired_state = DesiredState::Stopped;
            c.spec.request = Some(LifecycleRequest {
                action: RequestAction::Stop,
                generation: 2,
                ..Default::default()
            });
        });
        let events = objects.container_changed("web", Some(stopping.clone()), now);
        assert_eq!(actions(&events), ["kill"]);
        assert_eq!(events[0].actor.attributes["signal"], "3");

        let exited = observed(&stopping, |c| {
            c.status.state = ContainerState::Exited;
            c.status.exit_code = 131;
            c.status.finished_at = Some(now + Duration::from_secs(1));
        });
        let events = objects.container_changed("web", Some(exited.clone()), now);
        assert_eq!(actions(&events), ["die", "stop"]);
        assert_eq!(events[0].actor.attributes["exitCode"], "131");

        // A plain desired-state stop of a container that is not running
        // says nothing; the next start is only a start.
        let started = observed(&exited, |c| {
            c.spec.desired_state = DesiredState::Running;
            c.status.state = ContainerState::Running;
            c.status.started_at = Some(now + Duration::from_secs(2));
        });
        let events = objects.container_changed("web", Some(started), now);
        assert_eq!(actions(&events), ["start"]);
    }

    #[test]
    fn a_restart_is_kill_die_stop_start_restart_and_a_kill_names_its_signal() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut objects = Objects::default();
        let mut running = Container::new("web", spec());
        running.status.state = ContainerState::Running;
        running.status.started_at = Some(now);
        objects.container_changed("web", Some(running.clone()), now);

        let restarting = observed(&running, |c| {
            c.spec.request = Some(LifecycleRequest {
                action: RequestAction::Restart,
                generation: 2,
                ..Default::default()
            });
        });
        let events = objects.container_changed("web", Some(restarting.clone()), now);
        assert_eq!(actions(&events), ["kill"]);
        assert_eq!(events[0].actor.attributes["signal"], "15");
        // The node reports the exit and the new start in one write.
        let restarted = observed(&restarting, |c| {
            c.status.finished_at = Some(now + Duration::from_secs(1));
            c.status.started_at = Some(now + Duration::from_secs(2));
            c.status.exit_code = 143;
        });
        let events = objects.container_changed("web", Some(restarted.clone()), now);
        assert_eq!(actions(&events), ["die", "stop", "start", "restart"]);

        let killed = observed(&restarted, |c| {
            c.spec.request = Some(LifecycleRequest {
                action: RequestAction::Kill,
                signal: "usr1".into(),
                generation: 3,
                ..Default::default()
            });
        });
        let events = objects.container_changed("web", Some(killed.clone()), now);
        assert_eq!(actions(&events), ["kill"]);
        assert_eq!(events[0].actor.attributes["signal"], "10");
        // The same request seen again (a status write) is not a new kill.
        let again = observed(&killed, |c| c.status.pid = 42);
        assert!(
            objects
                .container_changed("web", Some(again), now)
                .is_empty()
        );
    }

    #[test]
    fn pause_unpause_update_and_rename_are_derived_and_a_renamed_container_is_not_destroyed() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut objects = Objects::default();
        let mut running = Container::new("web", spec());
        running.status.state = ContainerState::Running;
        running.status.started_at = Some(now);
        objects.container_changed("web", Some(running.clone()), now);

        let paused = observed(&running, |c| c.status.state = ContainerState::Paused);
        let events = objects.container_changed("web", Some(paused.clone()), now);
        assert_eq!(actions(&events), ["pause"]);
        let events = objects.container_changed("web", Some(running.clone()), now);
        assert_eq!(actions(&events), ["unpause"]);
        let bigger = observed(&running, |c| c.spec.memory = 256 << 20);
        let events = objects.container_changed("web", Some(bigger.clone()), now);
        assert_eq!(actions(&events), ["update"]);

        let mut moved = bigger.clone();
        moved.metadata.name = "front".into();
        let events = objects.container_changed("front", Some(moved), now);
        assert_eq!(actions(&events), ["rename"]);
        assert_eq!(events[0].actor.attributes["oldName"], "/web");
        assert_eq!(events[0].actor.attributes["name"], "front");
        assert!(objects.container_changed("web", None, now).is_empty());
        // Removing the running container kills it first.
        let events = objects.container_changed("front", None, now);
        assert_eq!(actions(&events), ["kill", "die", "destroy"]);
    }

    #[tokio::test]
    async fn images_are_pulled_tagged_untagged_and_deleted() {
        let store = TestStore::new().await;
        let log = EventLog::start(store.store.clone());
        log.caught_up().await;
        let api = Api::<Image>::default_account(store.store.clone());
        let id = format!("sha256:{}", "e".repeat(64));
        let pulled = api
            .create(&Image::new(
                &"e".repeat(64),
                ImageSpec {
                    id: id.clone(),
                    repo_tags: vec!["docker.io/library/busybox:latest".into()],
                    repo_digests: vec![format!(
                        "docker.io/library/busybox@sha256:{}",
                        "d".repeat(64)
                    )],
                    config: serde_json::json!({"config": {"Labels": {"maintainer": "me"}}}),
                    ..Default::default()
                },
            ))
            .await
            .expect("created");
        let mut tagged = pulled.clone();
        tagged
            .spec
            .repo_tags
            .push("docker.io/library/mine:1".into());
        let tagged = api.replace(&tagged).await.expect("tagged");
        let mut untagged = tagged.clone();
        untagged.spec.repo_tags.retain(|t| !t.contains("busybox"));
        api.replace(&untagged).await.expect("untagged");
        api.delete(&"e".repeat(64), None).await.expect("deleted");
        log.caught_up().await;

        let events = kept(&log);
        assert_eq!(
            actions(&events),
            ["pull", "tag", "untag", "untag", "untag", "delete"]
        );
        let pull = &events[0];
        assert_eq!(pull.type_, "image");
        assert_eq!(pull.actor.id, "busybox:latest");
        assert_eq!(pull.actor.attributes["name"], "busybox");
        assert_eq!(pull.actor.attributes["maintainer"], "me");
        assert_eq!(pull.from, None);
        assert_eq!(events[1].actor.id, id);
        assert_eq!(events[1].actor.attributes["name"], "mine:1");
        assert_eq!(events[2].actor.attributes["name"], id);
        let delete = &events[5];
        assert_eq!(delete.actor.id, id);
        assert!(!delete.actor.attributes.contains_key("maintainer"));
    }

    fn names(snapshot: &Snapshot) -> Vec<String> {
        let mut names: Vec<String> = snapshot
            .containers
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_snapshot_taken_right_after_a_write_has_it() {
        let store = TestStore::new().await;
        let log = EventLog::start(store.store.clone());
        let api = Api::<Container>::default_account(store.store.clone());
        let within = Duration::from_secs(10);
        let empty = log.snapshot(within).await.expect("a snapshot");
        assert!(empty.containers.is_empty() && empty.images.is_empty());
        for name in ["a", "b", "c"] {
            let mut spec = spec();
            spec.id = name.repeat(64);
            let written = api
                .create(&Container::new(name, spec))
                .await
                .expect("created");
            // No waiting: the snapshot waits for the log itself.
            let snapshot = log.snapshot(within).await.expect("a snapshot");
            let seen = snapshot
                .containers
                .iter()
                .find(|c| c.metadata.name == name)
                .expect("the container just written");
            assert_eq!(
                seen.metadata.resource_version,
                written.metadata.resource_version
            );
        }
        let b = api.get("b").await.expect("b");
        let running = api
            .update_status(&observed(&b, |c| c.status.state = ContainerState::Running))
            .await
            .expect("running");
        let snapshot = log.snapshot(within).await.expect("a snapshot");
        let seen = snapshot.containers.iter().find(|c| c.metadata.name == "b");
        assert_eq!(seen.map(|c| c.status.state), Some(ContainerState::Running));
        assert_eq!(
            seen.map(|c| c.metadata.resource_version),
            Some(running.metadata.resource_version)
        );
        api.delete("a", None).await.expect("deleted");
        assert_eq!(
            names(&log.snapshot(within).await.expect("a snapshot")),
            ["b", "c"]
        );
        Api::<Image>::default_account(store.store.clone())
            .create(&Image::new("i", ImageSpec::default()))
            .await
            .expect("image");
        let snapshot = log.snapshot(within).await.expect("a snapshot");
        assert_eq!(snapshot.images.len(), 1);
    }

    #[tokio::test]
    async fn a_container_whose_value_stops_decoding_leaves_the_snapshot_as_it_leaves_a_listing() {
        let store = TestStore::new().await;
        let log = EventLog::start(store.store.clone());
        let api = Api::<Container>::default_account(store.store.clone());
        let within = Duration::from_secs(10);
        let written = api
            .create(&Container::new("web", spec()))
            .await
            .expect("created");
        assert_eq!(
            names(&log.snapshot(within).await.expect("a snapshot")),
            ["web"]
        );
        let key = keys::object(Kind::Container.plural(), keys::DEFAULT_ACCOUNT, "web");
        store
            .store
            .update(
                &key,
                b"{not json".to_vec(),
                written.metadata.resource_version,
                None,
            )
            .await
            .expect("overwritten");
        assert!(api.list().await.expect("listed").items.is_empty());
        let snapshot = log.snapshot(within).await.expect("a snapshot");
        assert!(snapshot.containers.is_empty(), "{:?}", names(&snapshot));
        // A valid value brings it back.
        let (kv, _) = store.store.list(&key).await.expect("listed");
        let revision = kv.first().map(|kv| kv.mod_revision).expect("the key");
        let value = serde_json::to_vec(&written).expect("JSON");
        store
            .store
            .update(&key, value, revision, None)
            .await
            .expect("repaired");
        assert_eq!(
            names(&log.snapshot(within).await.expect("a snapshot")),
            ["web"]
        );
    }

    fn filter(raw: &str) -> EventFilter {
        EventFilter::parse(Some(raw)).expect("valid filters")
    }

    #[test]
    fn filters_match_containers_by_id_or_name_and_images_without_their_tag() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let container = Container::new("web", spec());
        let die = container_event(&container, "die", now, [("exitCode", "0".into())]);
        let image = image_event(
            &Image::new("x", ImageSpec::default()),
            "pull",
            "busybox:latest".into(),
            Some("busybox".into()),
            now,
        );
        let passes = |raw: &str| filter(raw).matches(&die);
        assert!(EventFilter::default().matches(&die));
        assert!(passes(r#"{"container":["web"]}"#));
        assert!(passes(r#"{"container":["0123456789ab"]}"#));
        assert!(passes(r#"{"container":{"we":true}}"#));
        assert!(!passes(r#"{"container":["db"]}"#));
        assert!(passes(r#"{"event":["die","start"]}"#));
        assert!(!passes(r#"{"event":["di"]}"#));
        assert!(passes(r#"{"type":["container"]}"#));
        assert!(!passes(r#"{"type":["image"]}"#));
        assert!(passes(r#"{"image":["busybox"]}"#));
        assert!(passes(r#"{"image":["busybox:latest"]}"#));
        assert!(!passes(r#"{"image":["alpine"]}"#));
        assert!(passes(r#"{"label":["tier=web"]}"#));
        assert!(passes(r#"{"label":["tier"]}"#));
        assert!(!passes(r#"{"label":["tier=db"]}"#));
        assert!(passes(r#"{"scope":["local"]}"#));
        assert!(!passes(r#"{"scope":["swarm"]}"#));
        assert!(!passes(r#"{"network":["bridge"]}"#));

        assert!(filter(r#"{"type":["image"]}"#).matches(&image));
        assert!(filter(r#"{"image":["busybox"]}"#).matches(&image));
        assert!(!filter(r#"{"container":["web"]}"#).matches(&image));
    }

    #[test]
    fn times_are_seconds_with_a_fraction_or_rfc3339() {
        assert_eq!(parse_time("").expect("ok"), None);
        assert_eq!(parse_time("-1").expect("ok"), None);
        assert_eq!(parse_time("0").expect("ok"), Some(0));
        assert_eq!(parse_time("12").expect("ok"), Some(12_000_000_000));
        assert_eq!(
            parse_time("12.000000005").expect("ok"),
            Some(12_000_000_005)
        );
        assert_eq!(parse_time("12.5").expect("ok"), Some(12_500_000_000));
        assert_eq!(parse_time("99999999999").expect("ok"), Some(i64::MAX));
        assert_eq!(
            parse_time("1970-01-01T00:00:12.5Z").expect("ok"),
            Some(12_500_000_000)
        );
        for bad in ["12.x", "ten", "12.1234567890", "1970-13-01T00:00:00Z"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    /// The Docker router over `store`, once its event log has listed the
    /// store (an `/events` request waits for that).
    async fn app(store: &TestStore) -> Router {
        let app = crate::docker::router(
            store.store.clone(),
            store.image_context(),
            crate::docker::NodeStreams::new(),
        );
        let response = get_events(&app, "/events?until=1").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, "");
        app
    }

    async fn get_events(app: &Router, uri: &str) -> Response {
        let request = Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(request).await.expect("infallible")
    }

    fn query(raw: &str) -> String {
        raw.replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('[', "%5B")
            .replace(']', "%5D")
    }

    fn seconds(at: OffsetDateTime) -> String {
        format!("{}.{:09}", at.unix_timestamp(), at.nanosecond())
    }

    #[tokio::test]
    async fn a_past_window_replays_the_matching_events_and_ends() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let api = Api::<Container>::default_account(store.store.clone());
        let before = now();
        let created = api
            .create(&Container::new("web", spec()))
            .await
            .expect("created");
        api.update_status(&observed(&created, |c| {
            c.status.state = ContainerState::Running;
            c.status.started_at = Some(now());
        }))
        .await
        .expect("running");
        let after = now();

        let response = get_events(
            &app,
            &format!("/events?since={}&until={}", seconds(before), seconds(after)),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let text = body_text(response).await;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l["Type"].clone(), l["Action"].clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("container".into(), "create".into()),
                ("container".into(), "start".into())
            ]
        );
        assert_eq!(lines[0]["Actor"]["Attributes"]["name"], "web");
        assert_eq!(lines[0]["id"], ID);
        assert_eq!(lines[0]["from"], "busybox:latest");

        let filtered = format!(
            "/events?since={}&until={}&filters={}",
            seconds(before),
            seconds(after),
            query(r#"{"event":["start"]}"#)
        );
        let text = body_text(get_events(&app, &filtered).await).await;
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r#""Action":"start""#));

        let later = format!("/events?since={}&until={}", seconds(after), seconds(after));
        assert_eq!(body_text(get_events(&app, &later).await).await, "");
    }

    #[tokio::test]
    async fn until_before_since_and_unknown_filters_are_refused_in_dockers_words() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let response = get_events(&app, "/events?since=20&until=10").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(response).await["message"],
            "`since` time (20) cannot be after `until` time (10)"
        );
        let uri = format!("/events?filters={}", query(r#"{"colour":["red"]}"#));
        let response = get_events(&app, &uri).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(response).await["message"],
            "invalid filter 'colour'"
        );
        let response = get_events(&app, "/events?since=yesterday").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_live_subscriber_sees_matching_events_as_they_happen() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let uri = format!("/events?filters={}", query(r#"{"event":["die"]}"#));
        let response = get_events(&app, &uri).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();

        let api = Api::<Container>::default_account(store.store.clone());
        let created = api
            .create(&Container::new("web", spec()))
            .await
            .expect("created");
        let running = api
            .update_status(&observed(&created, |c| {
                c.status.state = ContainerState::Running;
                c.status.started_at = Some(now());
            }))
            .await
            .expect("running");
        api.update_status(&observed(&running, |c| {
            c.status.state = ContainerState::Exited;
            c.status.exit_code = 7;
            c.status.finished_at = Some(now());
        }))
        .await
        .expect("exited");

        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("a frame")
            .expect("no error");
        let data = frame.into_data().expect("data");
        let event: serde_json::Value = serde_json::from_slice(&data).expect("JSON");
        assert_eq!(event["Action"], "die");
        assert_eq!(event["Actor"]["Attributes"]["exitCode"], "7");
        assert!(data.ends_with(b"\n"));
    }

    #[tokio::test]
    async fn a_future_until_streams_until_then_and_ends() {
        let store = TestStore::new().await;
        let app = app(&store).await;
        let until = now() + Duration::from_millis(300);
        let response = get_events(&app, &format!("/events?until={}", seconds(until))).await;
        assert_eq!(response.status(), StatusCode::OK);
        let api = Api::<Container>::default_account(store.store.clone());
        api.create(&Container::new("web", spec()))
            .await
            .expect("created");
        let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
            .await
            .expect("the stream ends at `until`")
            .expect("no error")
            .to_bytes();
        assert!(now() >= until);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(r#""Action":"create""#), "{text}");
    }
}
