//! The name of one object across every kind and account: what the work
//! queue holds and what a reconciler is handed.

use std::fmt;

use sdc_docker_store::{Kind, Resource, keys};

/// Identifies one object: its kind, its account (tenant) and its name.
///
/// This is all a reconciler is told; it reads everything else from the
/// cache, so its logic stays level-triggered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The object's kind.
    pub kind: Kind,
    /// The account the object belongs to.
    pub account: String,
    /// The object's name within kind and account.
    pub name: String,
}

impl ObjectKey {
    /// The key of `name` of kind `kind` in `account`.
    pub fn new(kind: Kind, account: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            account: account.into(),
            name: name.into(),
        }
    }

    /// The key of a decoded object (its account and name come from its
    /// metadata, which [`sdc_docker_store::decode`] fills in from the store key).
    pub fn of<K: Resource>(obj: &K) -> Self {
        let meta = obj.metadata();
        ObjectKey::new(K::KIND, meta.account.clone(), meta.name.clone())
    }

    /// The key of the object stored under `store_key`, when it is an object
    /// key of a known kind.
    pub fn parse(store_key: &str) -> Option<Self> {
        let (plural, account, name) = keys::parse(store_key)?;
        Some(ObjectKey::new(Kind::parse(plural)?, account, name))
    }

    /// The store key this object lives under.
    pub fn store_key(&self) -> String {
        keys::object(self.kind.plural(), &self.account, &self.name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.plural(), self.account, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_key_parses_into_an_object_key_and_back() {
        let key = ObjectKey::new(Kind::Volume, "acme", "data");
        assert_eq!(ObjectKey::parse(&key.store_key()), Some(key.clone()));
        assert_eq!(key.to_string(), "volumes/acme/data");
        assert_eq!(ObjectKey::parse("/sdc-docker/v1/pods/acme/x"), None);
    }
}
