//! The etcd backend: [`Store`] on an etcd v3 cluster (checked against
//! etcd 3.4), through the `etcd-client` crate.
//!
//! # Mapping
//!
//! - `get` and `list` are linearizable range reads. `list` reads in pages of
//!   [`EtcdOptions::list_page_size`] keys, every page at the revision of the
//!   first one, so the result is one consistent snapshot however large; if
//!   that revision is compacted between pages the list starts over.
//! - `create`, `update` and `delete` are single transactions comparing the
//!   key's `create_revision` (0 = absent), `mod_revision` and `version`, plus
//!   the fence key's `create_revision` when a [`Fence`] is given. Their else
//!   branch reads the key and the fence key in the same transaction, so the
//!   error names what failed at that very revision. A broken fence is
//!   reported first ([`Error::Fenced`]), before `AlreadyExists`, `NotFound` or
//!   `Conflict`: a deposed leader learns nothing else.
//! - `update` puts with `ignore_lease`: the key keeps the lease it has (a
//!   plain etcd put would detach it).
//! - `watch` asks for `prev_kv` and progress notifications; a compacted start
//!   revision yields [`WatchItem::Compacted`], a broken stream one
//!   `Err(Error::Unavailable)`, and the stream ends after either.
//! - `compact` is physical (it returns once the history is gone); compacting
//!   at or below an earlier compaction is a no-op.
//! - Leases: etcd counts TTLs in whole seconds and enforces a minimum (about
//!   1.5 × its election timeout), so a granted lease may live longer than
//!   asked; [`Store::lease_keep_alive`] returns what etcd granted.
//!
//! # Failures, deadlines and several endpoints
//!
//! The store holds one gRPC connection per endpoint and sends every request
//! to one *preferred* endpoint, moving to the next one when it fails (the
//! way etcd's Go client pins one endpoint). Each attempt has a deadline
//! ([`EtcdOptions::request_timeout`]), so a dead or frozen member cannot hang
//! a caller. A failed attempt is retried on the other endpoints:
//!
//! - always for reads, watch creation, lease grants, keep-alives and
//!   compaction (repeating them is harmless; a repeated grant at worst
//!   leaves an unused lease that expires after its TTL);
//! - for writes (`create`, `update`, `delete`, `lease_revoke`) only when the
//!   request surely never left this process (the TCP connection was
//!   refused, or found closed before the request was handed to it) or the
//!   member said "no leader" before looking at it. Otherwise the outcome is
//!   unknown and the write fails with [`Error::Unavailable`]: the caller
//!   retries, and must be ready to find its own earlier write (a retried
//!   `create` may report `AlreadyExists`, a retried `update` a `Conflict`
//!   with its own revision, a retried `lease_revoke` `LeaseNotFound`).
//!
//! When the etcd leader dies, writes that a follower had already forwarded
//! to it are lost inside etcd and answered only by etcd's own timeout (about
//! 7 s); they fail here after `request_timeout` (5 s) as outcome unknown.
//! Writes sent after the new election (about 1–2 s with etcd's defaults of
//! a 1 s election timeout) succeed at once.
//!
//! Why not etcd-client's own multi-endpoint channel: it balances every
//! request over all endpoints (power of two choices, all reported idle), and
//! a dead member stays in the set. Each request that lands on the dead one
//! fails: with one of three members killed, 13 of 60 reads failed in a test
//! here; with one frozen (`SIGSTOP`) requests hung with no end, as that
//! client sets no deadline by default.
//!
//! All requests carry etcd's "require leader" flag: a member cut off from
//! the cluster refuses them (and cancels its watches) instead of serving
//! stale data or waiting forever.
//!
//! # Limits
//!
//! - No TLS and no authentication (plain `http://` endpoints).
//! - The endpoint list is fixed at connect time (no member discovery).
//! - Keys are UTF-8 in this project; a key that is not is read lossily.
//! - etcd refuses requests over 1.5 MiB by default: such a write fails with
//!   [`Error::Invalid`].

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient,
    LeaseClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};
use futures::StreamExt;

use crate::kv::{Event, EventKind, Fence, KeyValue, LeaseId, Store, WatchItem, WatchStream};
use crate::{Error, Result};

/// Largest response accepted from etcd (a page of a list, a batch of watch
/// events); etcd itself sends at most 2 GiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Tunables of [`EtcdStore`]; [`EtcdOptions::default`] suits most uses.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Deadline of one attempt of one request (watch: until the watch is
    /// established). A request tries each endpoint at most once, so it takes
    /// at most this times the number of endpoints. Default 5 s.
    pub request_timeout: Duration,
    /// Deadline of establishing a TCP connection to an endpoint. Default 2 s.
    pub connect_timeout: Duration,
    /// Interval of HTTP/2 pings on a connection with open streams (watches),
    /// and how long to wait for the answer before declaring the connection
    /// dead. etcd closes connections that ping more often than every 5 s.
    /// Default 10 s and 5 s.
    pub keep_alive: (Duration, Duration),
    /// Keys per page of [`Store::list`]. Default 1000.
    pub list_page_size: i64,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            keep_alive: (Duration::from_secs(10), Duration::from_secs(5)),
            list_page_size: 1000,
        }
    }
}

/// One etcd member's connection.
struct Endpoint {
    url: String,
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
}

/// The etcd backend. Cheap to share behind an `Arc`; all methods take
/// `&self`.
pub struct EtcdStore {
    endpoints: Vec<Endpoint>,
    /// Index of the endpoint requests go to first.
    preferred: AtomicUsize,
    options: EtcdOptions,
}

/// Whether a request may be sent again after a failure whose outcome is
/// unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Repeating the request is harmless: retry on any transient failure.
    Always,
    /// A write: retry only when it surely did not reach etcd.
    IfNotSent,
}

/// What a failed attempt tells about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// It never reached etcd (connection refused, or refused by a member
    /// without a leader before being looked at): safe to send elsewhere.
    NotSent,
    /// The member or the connection failed with the request in flight (or
    /// the deadline passed): it may or may not have been applied.
    Unknown,
    /// etcd answered with a decision (a compare failed, no such lease, …).
    Answered,
}

/// gRPC status codes (the standard numbering), to classify etcd's answers
/// without depending on tonic directly.
mod code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

const NO_LEADER: &str = "etcdserver: no leader";
const LEASE_NOT_FOUND: &str = "requested lease not found";
const COMPACTED: &str = "required revision has been compacted";
const FUTURE_REVISION: &str = "required revision is a future revision";

/// The message of an answer etcd sent, if the error is one.
fn server_message(e: &etcd_client::Error) -> Option<&str> {
    match e {
        etcd_client::Error::GRpcStatus(status) => Some(status.message()),
        _ => None,
    }
}

/// Whether an error (or anything in its source chain) says the request
/// never left this process: no TCP connection could be made, or the
/// connection was found closed before the request was handed to it (hyper
/// then gives the request back unsent).
fn never_sent(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("tcp connect error")
            || text.contains("error trying to connect")
            || text.contains("dns error")
            || text == "connection was not ready"
            || text == "connection closed"
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A short description of an etcd error for messages and logs: etcd's own
/// message, or for a local transport failure what failed and its root
/// cause ("tcp connect error: Connection refused (os error 111)").
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let mut root = std::error::Error::source(status);
            while let Some(next) = root.and_then(|r| r.source()) {
                root = Some(next);
            }
            match root {
                Some(root) if root.to_string() != status.message() => {
                    format!("{}: {root}", status.message())
                }
                _ => status.message().to_string(),
            }
        }
        other => other.to_string(),
    }
}

fn classify(e: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            let raised_locally = std::error::Error::source(status).is_some();
            if never_sent(status) {
                return Failure::NotSent;
            }
            if raised_locally {
                // The transport failed (reset, closed connection, timeout).
                return Failure::Unknown;
            }
            if status.message().contains("larger than max") {
                // gRPC refused an oversized request before etcd saw it:
                // sending it again would not help.
                return Failure::Answered;
            }
            if status.message() == NO_LEADER {
                // Refused by the "require leader" check before any work.
                return Failure::NotSent;
            }
            match status.code() as i32 {
                code::UNAVAILABLE
                | code::DEADLINE_EXCEEDED
                | code::CANCELLED
                | code::RESOURCE_EXHAUSTED
                | code::ABORTED
                | code::INTERNAL
                | code::UNKNOWN => Failure::Unknown,
                _ => Failure::Answered,
            }
        }
        E::TransportError(err) => {
            if never_sent(err) {
                Failure::NotSent
            } else {
                Failure::Unknown
            }
        }
        E::IoError(_) | E::WatchError(_) | E::EndpointError(_) => Failure::Unknown,
        E::LeaseKeepAliveError(msg) if msg.contains("not found") => Failure::Answered,
        E::LeaseKeepAliveError(_) => Failure::Unknown,
        _ => Failure::Answered,
    }
}

/// Whether etcd said the lease does not exist (any more).
fn lease_gone(e: &etcd_client::Error) -> bool {
    match e {
        // etcd-client's keeper reports a first answer with TTL 0 this way.
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("not found"),
        _ => server_message(e).is_some_and(|m| m.contains(LEASE_NOT_FOUND)),
    }
}

/// The store error for an etcd error not handled by the operation itself:
/// `Rejected` when etcd answered no (retrying will not help), `Unavailable`
/// when it could not be reached or the outcome is unknown.
fn unavailable(op: &str, e: &etcd_client::Error) -> Error {
    match classify(e) {
        Failure::Answered => Error::Rejected(format!("etcd {op}: {}", describe(e))),
        Failure::NotSent | Failure::Unknown => {
            Error::Unavailable(format!("etcd {op}: {}", describe(e)))
        }
    }
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's
/// `range_end` for a prefix); `"\0"` (= no upper bound) for an empty or
/// all-`0xff` prefix.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The revision a successful write was committed at.
fn header_revision(op: &str, resp: &TxnResponse) -> Result<i64> {
    resp.header()
        .map(|h| h.revision())
        .filter(|rev| *rev > 0)
        .ok_or_else(|| Error::Unavailable(format!("etcd {op}: response without a revision")))
}

/// The key-value read by the `index`th operation of a transaction's branch.
fn read_in_txn(resp: &TxnResponse, index: usize) -> Option<KeyValue> {
    match resp.op_responses().get(index) {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(convert),
        _ => None,
    }
}

/// Whether the fence read at `index` of a failed transaction no longer
/// holds.
fn fence_broken(resp: &TxnResponse, index: usize, fence: &Fence) -> bool {
    read_in_txn(resp, index).is_none_or(|kv| kv.create_revision != fence.token)
}

impl EtcdStore {
    /// Connect to the etcd members at `endpoints` (`http://host:port`) with
    /// the default `EtcdOptions`, and check that one of them answers.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        Self::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// The default options, to adjust and pass to [`Self::connect_with`]
    /// (usable while `EtcdOptions` is not re-exported by the crate).
    pub fn default_options() -> EtcdOptions {
        EtcdOptions::default()
    }

    /// Connect with explicit options; fails with [`Error::Unavailable`] when
    /// no endpoint answers a read within the deadlines.
    pub async fn connect_with(endpoints: &[String], options: EtcdOptions) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(Error::Unavailable("no etcd endpoint given".into()));
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            let connect = ConnectOptions::new()
                .with_connect_timeout(options.connect_timeout)
                .with_keep_alive(options.keep_alive.0, options.keep_alive.1)
                // etcd refuses pings without an open stream ("too many pings").
                .with_keep_alive_while_idle(false)
                .with_require_leader(true);
            // Nothing is sent yet: the connection is made on first use.
            let client = Client::connect([url.as_str()], Some(connect))
                .await
                .map_err(|e| Error::Unavailable(format!("etcd endpoint {url}: {e}")))?;
            members.push(Endpoint {
                url: url.clone(),
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES),
                watch: client
                    .watch_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES),
                lease: client.lease_client(),
            });
        }
        let store = EtcdStore {
            endpoints: members,
            preferred: AtomicUsize::new(0),
            options,
        };
        let revision = store.revision().await.map_err(|e| {
            let why = match e {
                Error::Unavailable(message) => message,
                other => other.to_string(),
            };
            Error::Unavailable(format!(
                "no etcd endpoint of {} answered ({why})",
                endpoints.join(",")
            ))
        })?;
        tracing::info!(endpoints = %endpoints.join(","), revision, "connected to etcd");
        Ok(store)
    }

    /// Send a request built by `attempt` for one endpoint, to the preferred
    /// endpoint first and then, as `retry` allows, to the others. Errors
    /// etcd answered are returned as they are for the caller to map;
    /// transport failures become [`Error::Unavailable`].
    async fn call<T, F, Fut>(&self, op: &str, retry: Retry, attempt: F) -> Result<T, CallError>
    where
        F: Fn(&Endpoint) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for tried in 0..n {
            let i = (first + tried) % n;
            let endpoint = &self.endpoints[i];
            let outcome =
                tokio::time::timeout(self.options.request_timeout, attempt(endpoint)).await;
            let (failure, message) = match outcome {
                Ok(Ok(value)) => {
                    if tried > 0 {
                        tracing::debug!(
                            op,
                            endpoint = %endpoint.url,
                            "etcd request succeeded on another endpoint"
                        );
                    }
                    return Ok(value);
                }
                Ok(Err(e)) => match classify(&e) {
                    Failure::Answered => return Err(CallError::Etcd(e)),
                    failure => (failure, describe(&e)),
                },
                Err(_) => (
                    Failure::Unknown,
                    format!("no answer within {:?}", self.options.request_timeout),
                ),
            };
            self.move_away_from(i, &message);
            failures.push(format!("{}: {message}", endpoint.url));
            if failure == Failure::Unknown && retry == Retry::IfNotSent {
                tracing::debug!(
                    op,
                    endpoint = %endpoint.url,
                    error = %message,
                    "etcd write failed with unknown outcome"
                );
                break;
            }
            tracing::debug!(
                op,
                endpoint = %endpoint.url,
                error = %message,
                "etcd request failed; trying the next endpoint"
            );
        }
        Err(CallError::Unavailable(Error::Unavailable(format!(
            "etcd {op}: {}",
            failures.join("; ")
        ))))
    }

    /// After endpoint `i` failed, make the next one preferred (unless a
    /// concurrent request already moved on).
    fn move_away_from(&self, i: usize, why: &str) {
        let n = self.endpoints.len();
        if n > 1
            && self
                .preferred
                .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                from = %self.endpoints[i].url,
                to = %self.endpoints[(i + 1) % n].url,
                error = %why,
                "etcd endpoint failed; switching"
            );
        }
    }

    /// Run a transaction (a write: retried only when surely not sent).
    /// `lease` is the lease the transaction attaches, if any, to name it
    /// when etcd does not know it.
    async fn txn(
        &self,
        op: &str,
        key: &str,
        lease: Option<LeaseId>,
        txn: Txn,
    ) -> Result<TxnResponse> {
        let result = self
            .call(op, Retry::IfNotSent, |ep| {
                let mut kv = ep.kv.clone();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await;
        match result {
            Ok(resp) => Ok(resp),
            Err(CallError::Unavailable(e)) => Err(e),
            Err(CallError::Etcd(e)) => {
                let message = server_message(&e).unwrap_or_default();
                if let Some(lease) = lease
                    && message.contains(LEASE_NOT_FOUND)
                {
                    return Err(Error::LeaseNotFound(lease));
                }
                let invalid_argument = matches!(
                    &e,
                    etcd_client::Error::GRpcStatus(s) if s.code() as i32 == code::INVALID_ARGUMENT
                );
                if invalid_argument
                    || message.contains("request is too large")
                    || message.contains("larger than max")
                {
                    Err(Error::Invalid {
                        key: key.to_string(),
                        message: format!("etcd refused the {op}: {message}"),
                    })
                } else {
                    Err(unavailable(op, &e))
                }
            }
        }
    }

    /// One page of a range read (`revision` 0 = now).
    async fn range(
        &self,
        from: Vec<u8>,
        end: Vec<u8>,
        revision: i64,
    ) -> Result<etcd_client::GetResponse, CallError> {
        let limit = self.options.list_page_size.max(1);
        self.call("list", Retry::Always, |ep| {
            let mut kv = ep.kv.clone();
            let from = from.clone();
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(limit)
                .with_revision(revision);
            async move { kv.get(from, Some(options)).await }
        })
        .await
    }

    /// Apply `op` to an existing `key` in one transaction, if its
    /// `mod_revision` is `expected` (when given) and the fence holds. The
    /// else branch reads the key and the fence key at that very revision, so
    /// the error says exactly what failed: `Fenced` first, then `NotFound`
    /// or `Conflict`.
    async fn guarded_write(
        &self,
        name: &str,
        key: &str,
        expected: Option<i64>,
        fence: Option<&Fence>,
        op: TxnOp,
    ) -> Result<i64> {
        let mut compares = vec![Compare::version(key, CompareOp::Greater, 0)];
        if let Some(rev) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, rev));
        }
        let mut reads = vec![TxnOp::get(key, None)];
        if let Some(f) = fence {
            compares.push(Compare::create_revision(
                f.key.as_str(),
                CompareOp::Equal,
                f.token,
            ));
            reads.push(TxnOp::get(f.key.as_str(), None));
        }
        let txn = Txn::new().when(compares).and_then(vec![op]).or_else(reads);
        let resp = self.txn(name, key, None, txn).await?;
        if resp.succeeded() {
            return header_revision(name, &resp);
        }
        if let Some(f) = fence
            && fence_broken(&resp, 1, f)
        {
            return Err(Error::Fenced {
                fence_key: f.key.clone(),
                token: f.token,
            });
        }
        match read_in_txn(&resp, 0) {
            None => Err(Error::NotFound {
                key: key.to_string(),
            }),
            Some(kv) => Err(Error::Conflict {
                key: key.to_string(),
                expected: expected.unwrap_or_default(),
                actual: kv.mod_revision,
            }),
        }
    }

    async fn list_once(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), CallError> {
        let end = prefix_end(prefix.as_bytes());
        let start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.as_bytes().to_vec()
        };
        let mut page = self.range(start, end.clone(), 0).await?;
        let revision = page.header().map(|h| h.revision()).unwrap_or_default();
        if revision <= 0 {
            return Err(CallError::Unavailable(Error::Unavailable(
                "etcd list: response without a revision".into(),
            )));
        }
        let mut out: Vec<KeyValue> = Vec::new();
        loop {
            out.extend(page.kvs().iter().map(convert));
            let Some(last) = page.kvs().last().filter(|_| page.more()) else {
                return Ok((out, revision));
            };
            // The next page starts right after the last key (the key
            // followed by a zero byte), at the same revision.
            let mut next = last.key().to_vec();
            next.push(0);
            page = self.range(next, end.clone(), revision).await?;
        }
    }
}

/// Why [`EtcdStore::call`] failed.
enum CallError {
    /// etcd answered with an error: the operation maps it.
    Etcd(etcd_client::Error),
    /// No endpoint could be reached (or a write's outcome is unknown).
    Unavailable(Error),
}

impl CallError {
    /// The store error when the operation has no special meaning for it.
    fn into_error(self, op: &str) -> Error {
        match self {
            CallError::Etcd(e) => unavailable(op, &e),
            CallError::Unavailable(e) => e,
        }
    }
}

/// State of a watch stream: the etcd stream, and items decoded from its last
/// response not yet handed out.
struct WatchState {
    stream: Option<etcd_client::WatchStream>,
    pending: VecDeque<Result<WatchItem>>,
    prefix: String,
}

impl WatchState {
    /// Turn one etcd watch response into items; ends the stream after a
    /// compaction or a cancellation.
    fn absorb(&mut self, resp: &etcd_client::WatchResponse) {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let prev = ev.prev_kv().map(convert);
            let event = match ev.event_type() {
                EventType::Put => Event {
                    kind: EventKind::Put,
                    kv: convert(kv),
                    prev,
                },
                EventType::Delete => Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: kv.mod_revision(),
                        lease: None,
                    },
                    prev,
                },
            };
            self.pending.push_back(Ok(WatchItem::Event(event)));
        }
        if resp.compact_revision() > 0 {
            tracing::debug!(
                prefix = %self.prefix,
                compact_revision = resp.compact_revision(),
                "etcd watch compacted"
            );
            self.pending.push_back(Ok(WatchItem::Compacted {
                compact_revision: resp.compact_revision(),
            }));
            self.stream = None;
        } else if resp.canceled() {
            let reason = if resp.cancel_reason().is_empty() {
                "canceled by etcd"
            } else {
                resp.cancel_reason()
            };
            tracing::debug!(prefix = %self.prefix, reason, "etcd watch canceled");
            self.pending.push_back(Err(Error::Unavailable(format!(
                "etcd watch on {}: {reason}",
                self.prefix
            ))));
            self.stream = None;
        }
    }

    async fn next(&mut self) -> Option<Result<WatchItem>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            let stream = self.stream.as_mut()?;
            match stream.message().await {
                Ok(Some(resp)) => self.absorb(&resp),
                Ok(None) => {
                    self.stream = None;
                    return Some(Err(Error::Unavailable(format!(
                        "etcd watch on {}: stream closed by the server",
                        self.prefix
                    ))));
                }
                Err(e) => {
                    self.stream = None;
                    tracing::debug!(prefix = %self.prefix, error = %describe(&e), "etcd watch broke");
                    return Some(Err(unavailable("watch", &e)));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .call("get", Retry::Always, |ep| {
                let mut kv = ep.kv.clone();
                let key = key.to_string();
                async move { kv.get(key, None).await }
            })
            .await
            .map_err(|e| e.into_error("get"))?;
        Ok(resp.kvs().first().map(convert))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        // A compaction between two pages invalidates the snapshot: start
        // over (at most a few times; compactions are rare).
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.list_once(prefix).await {
                Ok(listed) => return Ok(listed),
                Err(CallError::Etcd(e))
                    if attempts < 3
                        && server_message(&e).is_some_and(|m| m.contains(COMPACTED)) =>
                {
                    tracing::debug!(prefix, "etcd list: snapshot compacted between pages; again");
                }
                Err(e) => return Err(e.into_error("list")),
            }
        }
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
        let mut reads = vec![TxnOp::get(key, None)];
        if let Some(f) = fence {
            compares.push(Compare::create_revision(
                f.key.as_str(),
                CompareOp::Equal,
                f.token,
            ));
            reads.push(TxnOp::get(f.key.as_str(), None));
        }
        let put = match lease {
            Some(id) => PutOptions::new().with_lease(id),
            None => PutOptions::new(),
        };
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![TxnOp::put(key, value, Some(put))])
            .or_else(reads);
        let resp = self.txn("create", key, lease, txn).await?;
        if resp.succeeded() {
            return header_revision("create", &resp);
        }
        if let Some(f) = fence
            && fence_broken(&resp, 1, f)
        {
            return Err(Error::Fenced {
                fence_key: f.key.clone(),
                token: f.token,
            });
        }
        if read_in_txn(&resp, 0).is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Err(Error::Unavailable(format!(
            "etcd create {key}: transaction failed for no visible reason"
        )))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        // Keep the key's lease: a put without one would detach it.
        let put = PutOptions::new().with_ignore_lease();
        self.guarded_write(
            "update",
            key,
            Some(expected),
            fence,
            TxnOp::put(key, value, Some(put)),
        )
        .await
    }

    async fn delete(&self, key: &str, expected: Option<i64>, fence: Option<&Fence>) -> Result<i64> {
        self.guarded_write("delete", key, expected, fence, TxnOp::delete(key, None))
            .await
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(from_revision.max(0));
        // Establish the watch (and wait until etcd confirms it, so that
        // "from now on" really starts before this returns).
        let (stream, created) = self
            .call("watch", Retry::Always, |ep| {
                let mut client = ep.watch.clone();
                let options = options.clone();
                let key = prefix.to_string();
                async move {
                    let mut stream = client.watch(key, Some(options)).await?;
                    loop {
                        match stream.message().await? {
                            Some(resp) if resp.created() => return Ok((stream, resp)),
                            Some(_) => continue,
                            None => {
                                return Err(etcd_client::Error::WatchError(
                                    "stream closed before the watch was created".into(),
                                ));
                            }
                        }
                    }
                }
            })
            .await
            .map_err(|e| e.into_error("watch"))?;
        let mut state = WatchState {
            stream: Some(stream),
            pending: VecDeque::new(),
            prefix: prefix.to_string(),
        };
        state.absorb(&created);
        tracing::debug!(prefix, from_revision, "etcd watch created");
        Ok(futures::stream::unfold(state, |mut state| async move {
            state.next().await.map(|item| (item, state))
        })
        .boxed())
    }

    async fn revision(&self) -> Result<i64> {
        // A linearizable count of one (absent) key: the cheapest read that
        // returns the cluster's current revision.
        let resp = self
            .call("revision", Retry::Always, |ep| {
                let mut kv = ep.kv.clone();
                async move {
                    kv.get(vec![0u8], Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await
            .map_err(|e| e.into_error("revision"))?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| Error::Unavailable("etcd revision: response without header".into()))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let result = self
            .call("compact", Retry::Always, |ep| {
                let mut kv = ep.kv.clone();
                async move {
                    kv.compact(revision, Some(CompactionOptions::new().with_physical()))
                        .await
                }
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(CallError::Etcd(e))
                if server_message(&e).is_some_and(|m| m.contains(COMPACTED)) =>
            {
                tracing::debug!(revision, "etcd compact: already compacted past it");
                Ok(())
            }
            Err(CallError::Etcd(e))
                if server_message(&e).is_some_and(|m| m.contains(FUTURE_REVISION)) =>
            {
                Err(Error::Rejected(format!(
                    "etcd compact: revision {revision} is in the future"
                )))
            }
            Err(e) => Err(e.into_error("compact")),
        }
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        // Whole seconds, rounded up; etcd may raise it to its minimum.
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        let resp = self
            .call("lease grant", Retry::Always, |ep| {
                let mut lease = ep.lease.clone();
                async move { lease.grant(secs, None).await }
            })
            .await
            .map_err(|e| e.into_error("lease grant"))?;
        if !resp.error().is_empty() {
            return Err(Error::Unavailable(format!(
                "etcd lease grant: {}",
                resp.error()
            )));
        }
        tracing::debug!(
            lease = format!("{:x}", resp.id()),
            ttl = resp.ttl(),
            "etcd lease granted"
        );
        Ok(resp.id())
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        let result = self
            .call("lease keep-alive", Retry::Always, |ep| {
                let mut client = ep.lease.clone();
                async move {
                    // Opening the keeper renews once (and checks the lease
                    // exists); the second renewal on the same stream reports
                    // the TTL granted.
                    let (mut keeper, mut responses) = client.keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    match responses.message().await? {
                        Some(resp) => Ok(resp.ttl()),
                        None => Err(etcd_client::Error::LeaseKeepAliveError(
                            "keep-alive stream closed".into(),
                        )),
                    }
                }
            })
            .await;
        match result {
            Ok(ttl) if ttl > 0 => Ok(Duration::from_secs(ttl.unsigned_abs())),
            Ok(_) => Err(Error::LeaseNotFound(lease)),
            Err(CallError::Etcd(e)) if lease_gone(&e) => Err(Error::LeaseNotFound(lease)),
            Err(e) => Err(e.into_error("lease keep-alive")),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        let result = self
            .call("lease revoke", Retry::IfNotSent, |ep| {
                let mut client = ep.lease.clone();
                async move { client.revoke(lease).await }
            })
            .await;
        match result {
            Ok(_) => {
                tracing::debug!(lease = format!("{lease:x}"), "etcd lease revoked");
                Ok(())
            }
            Err(CallError::Etcd(e)) if lease_gone(&e) => Err(Error::LeaseNotFound(lease)),
            Err(e) => Err(e.into_error("lease revoke")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
