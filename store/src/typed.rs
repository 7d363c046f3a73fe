//! Typed access to one kind in one account: `Api<Container>` and friends.
//!
//! This is the only place that turns bytes into objects and back, and the
//! only place that enforces the rules of the model: the key names the
//! object (name and account in the body are overwritten from it); create
//! sets `uid`, `creationTimestamp` and `generation = 1`; a spec change bumps
//! `generation`; a status write keeps the stored spec and generation.
//! A value that does not decode is reported as [`Decoded::Invalid`] and
//! never stops a list or a watch.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::kv::{EventKind, Fence, KeyValue, Store, WatchItem};
use crate::model::{API_VERSION, Kind, Resource};
use crate::{Error, Result, keys};

/// Typed operations on one kind, in one account.
pub struct Api<K> {
    store: Arc<dyn Store>,
    account: String,
    fence: Option<Fence>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            store: self.store.clone(),
            account: self.account.clone(),
            fence: self.fence.clone(),
            _kind: PhantomData,
        }
    }
}

/// A stored value that is either a well-formed object or the reason it is not.
#[derive(Clone, Debug)]
pub enum Decoded<K> {
    /// A well-formed object.
    Valid(K),
    /// A value that does not decode as this kind.
    Invalid {
        /// Where it is stored.
        key: String,
        /// The object's name (the last segment of its key).
        name: String,
        /// The decoder's message.
        message: String,
        /// Its revision.
        resource_version: i64,
        /// The raw bytes, for tools that show or repair them.
        raw: Vec<u8>,
    },
}

/// A list read at one revision.
#[derive(Clone, Debug)]
pub struct ObjectList<K> {
    /// Every object that decoded, in key order.
    pub items: Vec<K>,
    /// Every value that did not.
    pub invalid: Vec<Decoded<K>>,
    /// The revision the list was read at; watch from `revision + 1`.
    pub revision: i64,
}

/// A change to an object, as [`Api::watch`] reports it.
#[derive(Clone, Debug)]
pub enum ObjectEvent<K> {
    /// Created or changed (the new object, or why it does not decode).
    Applied(Decoded<K>),
    /// Deleted; the last stored value when it decoded.
    Deleted {
        /// Its name.
        name: String,
        /// Its last value, if that decoded.
        last: Option<K>,
        /// Revision of the delete.
        revision: i64,
    },
    /// History before the watch's revision is gone: relist.
    Compacted {
        /// The compaction revision.
        compact_revision: i64,
    },
}

/// Decode a stored value as `K`, taking name, account and resource version
/// from the key and revision.
///
/// Tolerant by design: fields `K` does not know are dropped, since a newer
/// instance sharing the store may have written them. `kind` may be any
/// spelling [`Kind::parse`] accepts (`container`, `containers`, as someone
/// with `etcdctl` may write it) and is read back as the canonical one. The
/// message of a value that does not decode names the field, then the line
/// and column: ``spec.image: invalid type: integer `42`, expected a string
/// at line 1 column 45``.
pub fn decode<K: Resource>(kv: &KeyValue) -> Decoded<K> {
    let (name, account) = match keys::parse(&kv.key) {
        Some((_, account, name)) => (name.to_string(), account.to_string()),
        None => (kv.key.clone(), keys::DEFAULT_ACCOUNT.to_string()),
    };
    let invalid = |message: String| Decoded::Invalid {
        key: kv.key.clone(),
        name: name.clone(),
        message,
        resource_version: kv.mod_revision,
        raw: kv.value.clone(),
    };
    match from_json::<K>(&kv.value) {
        Ok(mut obj) => {
            let kind = obj.kind_field();
            if !kind.is_empty() && Kind::parse(kind) != Some(K::KIND) {
                return invalid(format!(
                    "kind is {kind:?}, but {} holds {} objects",
                    kv.key,
                    K::KIND
                ));
            }
            *obj.kind_field_mut() = K::KIND.as_str().to_string();
            let meta = obj.metadata_mut();
            meta.name = name;
            meta.account = account;
            meta.resource_version = kv.mod_revision;
            Decoded::Valid(obj)
        }
        Err(message) => invalid(message),
    }
}

/// `serde_json::from_slice`, with the path of the offending field in front
/// of the message.
fn from_json<K: Resource>(bytes: &[u8]) -> std::result::Result<K, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let obj = serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())?;
    // Trailing bytes after the object are an error, as in `from_slice`.
    de.end().map_err(|e| e.to_string())?;
    Ok(obj)
}

/// Encode an object for storage: `resourceVersion` is never stored, and
/// `kind`/`apiVersion` always are.
pub fn encode<K: Resource>(obj: &K) -> Result<Vec<u8>> {
    let mut value = serde_json::to_value(obj).map_err(|e| Error::Invalid {
        key: obj.metadata().name.clone(),
        message: e.to_string(),
    })?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), API_VERSION.into());
        map.insert("kind".into(), K::KIND.as_str().into());
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("resourceVersion");
        }
    }
    serde_json::to_vec(&value).map_err(|e| Error::Unavailable(e.to_string()))
}

impl<K: Resource> Api<K> {
    /// Access `K` objects of `account`.
    pub fn new(store: Arc<dyn Store>, account: &str) -> Self {
        Api {
            store,
            account: account.to_string(),
            fence: None,
            _kind: PhantomData,
        }
    }

    /// Access `K` objects of the default account.
    pub fn default_account(store: Arc<dyn Store>) -> Self {
        Self::new(store, keys::DEFAULT_ACCOUNT)
    }

    /// The same access, with every write guarded by a leader's fence.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The account this handle works in.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The raw store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The key of `name`.
    pub fn key(&self, name: &str) -> String {
        keys::object(K::KIND.plural(), &self.account, name)
    }

    fn prefix(&self) -> String {
        keys::prefix(K::KIND.plural(), Some(&self.account))
    }

    fn check_name(name: &str) -> Result<()> {
        if keys::valid_name(name) {
            Ok(())
        } else {
            Err(Error::Invalid {
                key: name.to_string(),
                message: format!(
                    "invalid name {name:?}: must be 1 to 253 characters, with no '/' or control characters"
                ),
            })
        }
    }

    async fn get_raw(&self, name: &str) -> Result<(KeyValue, K)> {
        let key = self.key(name);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::NotFound { key: key.clone() })?;
        match decode::<K>(&kv) {
            Decoded::Valid(obj) => Ok((kv, obj)),
            Decoded::Invalid { message, .. } => Err(Error::Invalid { key, message }),
        }
    }

    /// The object named `name`; `NotFound` or `Invalid` otherwise.
    pub async fn get(&self, name: &str) -> Result<K> {
        Ok(self.get_raw(name).await?.1)
    }

    /// The object named `name`, or why it does not decode; `None` when absent.
    pub async fn get_decoded(&self, name: &str) -> Result<Option<Decoded<K>>> {
        Ok(self.store.get(&self.key(name)).await?.map(|kv| decode(&kv)))
    }

    /// Every object of the kind in the account.
    pub async fn list(&self) -> Result<ObjectList<K>> {
        let (kvs, revision) = self.store.list(&self.prefix()).await?;
        let mut items = Vec::with_capacity(kvs.len());
        let mut invalid = Vec::new();
        for kv in &kvs {
            if keys::parse(&kv.key).is_none() {
                continue;
            }
            match decode::<K>(kv) {
                Decoded::Valid(obj) => items.push(obj),
                bad => invalid.push(bad),
            }
        }
        Ok(ObjectList {
            items,
            invalid,
            revision,
        })
    }

    /// Store a new object. Sets `uid`, `creationTimestamp`, `generation = 1`
    /// and the account; `AlreadyExists` if the name is taken.
    pub async fn create(&self, obj: &K) -> Result<K> {
        let mut obj = obj.clone();
        Self::check_name(&obj.metadata().name)?;
        let meta = obj.metadata_mut();
        meta.account = self.account.clone();
        meta.uid = new_uid();
        meta.generation = 1;
        meta.creation_timestamp = Some(now());
        meta.deletion_timestamp = None;
        let key = self.key(&obj.metadata().name);
        let revision = self
            .store
            .create(&key, encode(&obj)?, None, self.fence.as_ref())
            .await?;
        obj.metadata_mut().resource_version = revision;
        Ok(obj)
    }

    /// Replace the spec, labels, annotations and finalizers of a stored
    /// object. Guarded by `metadata.resourceVersion` when it is set (a
    /// concurrent change is a `Conflict`); the stored status, uid and
    /// creation time are kept; `generation` is bumped when the spec changed.
    pub async fn replace(&self, obj: &K) -> Result<K> {
        let name = obj.metadata().name.clone();
        Self::check_name(&name)?;
        let (kv, current) = self.get_raw(&name).await?;
        let expected = match obj.metadata().resource_version {
            0 => kv.mod_revision,
            rv => rv,
        };
        if expected != kv.mod_revision {
            return Err(Error::Conflict {
                key: kv.key,
                expected,
                actual: kv.mod_revision,
            });
        }
        let mut next = current.clone();
        *next.spec_mut() = obj.spec().clone();
        {
            let want = obj.metadata();
            let meta = next.metadata_mut();
            meta.labels = want.labels.clone();
            meta.annotations = want.annotations.clone();
            meta.finalizers = want.finalizers.clone();
            if current.spec() != obj.spec() {
                meta.generation += 1;
            }
        }
        if next == current {
            return Ok(current);
        }
        let revision = self
            .store
            .update(&kv.key, encode(&next)?, expected, self.fence.as_ref())
            .await?;
        next.metadata_mut().resource_version = revision;
        Ok(next)
    }

    /// Write the status of `obj`, keeping the stored spec and metadata.
    /// Guarded by `metadata.resourceVersion` (required); never changes
    /// `generation`.
    pub async fn update_status(&self, obj: &K) -> Result<K> {
        let name = obj.metadata().name.clone();
        let (kv, current) = self.get_raw(&name).await?;
        let expected = obj.metadata().resource_version;
        if expected != kv.mod_revision {
            return Err(Error::Conflict {
                key: kv.key,
                expected,
                actual: kv.mod_revision,
            });
        }
        if current.status() == obj.status() {
            return Ok(current);
        }
        let mut next = current;
        *next.status_mut() = obj.status().clone();
        let revision = self
            .store
            .update(&kv.key, encode(&next)?, expected, self.fence.as_ref())
            .await?;
        next.metadata_mut().resource_version = revision;
        Ok(next)
    }

    /// Delete `name`, guarded by `expected` when given. Returns the revision
    /// of the delete.
    pub async fn delete(&self, name: &str, expected: Option<i64>) -> Result<i64> {
        self.store
            .delete(&self.key(name), expected, self.fence.as_ref())
            .await
    }

    /// Follow changes to the kind in the account from `from_revision`
    /// (inclusive; 0 means from now on).
    pub async fn watch(
        &self,
        from_revision: i64,
    ) -> Result<impl Stream<Item = Result<ObjectEvent<K>>> + Send + use<K>> {
        let stream = self.store.watch(&self.prefix(), from_revision).await?;
        Ok(stream.filter_map(|item| async move {
            match item {
                Err(e) => Some(Err(e)),
                Ok(WatchItem::Compacted { compact_revision }) => {
                    Some(Ok(ObjectEvent::Compacted { compact_revision }))
                }
                Ok(WatchItem::Event(ev)) => {
                    let (_, _, name) = keys::parse(&ev.kv.key)?;
                    let name = name.to_string();
                    Some(Ok(match ev.kind {
                        EventKind::Put => ObjectEvent::Applied(decode(&ev.kv)),
                        EventKind::Delete => ObjectEvent::Deleted {
                            name,
                            last: ev.prev.as_ref().and_then(|p| match decode::<K>(p) {
                                Decoded::Valid(obj) => Some(obj),
                                Decoded::Invalid { .. } => None,
                            }),
                            revision: ev.kv.mod_revision,
                        },
                    }))
                }
            }
        }))
    }
}

/// A fresh object uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Container;

    fn stored(value: &str) -> KeyValue {
        KeyValue {
            key: "/sdc-docker/v1/containers/acme/web".into(),
            value: value.as_bytes().to_vec(),
            create_revision: 3,
            mod_revision: 4,
            lease: None,
        }
    }

    fn message(decoded: Decoded<Container>) -> String {
        match decoded {
            Decoded::Invalid { message, .. } => message,
            Decoded::Valid(obj) => panic!("expected invalid, decoded {obj:?}"),
        }
    }

    #[test]
    fn a_decode_error_names_the_field_then_the_line_and_column() {
        let decoded = decode::<Container>(&stored(
            r#"{"metadata":{"name":"web"},"spec":{"image":42}}"#,
        ));
        assert_eq!(
            message(decoded),
            "spec.image: invalid type: integer `42`, expected a string at line 1 column 45"
        );
        let decoded = decode::<Container>(&stored(r#"{"metadata":{"name":"web"}} trailing"#));
        assert_eq!(message(decoded), "trailing characters at line 1 column 29");
    }

    #[test]
    fn kind_may_be_any_spelling_kind_parse_accepts_and_reads_back_canonical() {
        for kind in ["Container", "container", "containers", "CONTAINERS", ""] {
            let value = format!(r#"{{"kind":"{kind}","metadata":{{"name":"x"}}}}"#);
            match decode::<Container>(&stored(&value)) {
                Decoded::Valid(obj) => {
                    assert_eq!(obj.kind, "Container", "{kind:?}");
                    assert_eq!(
                        (obj.metadata.name.as_str(), obj.metadata.account.as_str()),
                        ("web", "acme"),
                        "the key names the object"
                    );
                    assert_eq!(obj.metadata.resource_version, 4);
                }
                bad => panic!("{kind:?} does not decode: {bad:?}"),
            }
        }
        let decoded = decode::<Container>(&stored(r#"{"kind":"image","metadata":{"name":"x"}}"#));
        assert!(message(decoded).starts_with("kind is \"image\""));
    }

    #[test]
    fn fields_the_model_does_not_know_are_dropped_as_a_newer_instance_may_write_them() {
        let value = r#"{"metadata":{"name":"web","ownerReferences":[]},"spec":{"image":"nginx","gpus":1},"status":{"newer":true}}"#;
        match decode::<Container>(&stored(value)) {
            Decoded::Valid(obj) => assert_eq!(obj.spec.image, "nginx"),
            bad => panic!("does not decode: {bad:?}"),
        }
    }
}
