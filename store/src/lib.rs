//! The spec store of sdc-docker.
//!
//! Everything the Docker API wants is written here as a desired-state *spec*;
//! controllers watch the specs, reconcile real zones toward them and write
//! back *status*. This crate holds three things:
//!
//! - the raw, revisioned key-value [`Store`] trait (get, list, compare-and-swap
//!   writes, watch from a revision, leases) with two backends:
//!   [`EtcdStore`] for several instances sharing an etcd cluster, and
//!   [`EmbeddedStore`] for one machine with nothing installed;
//! - the resource model ([`model`]): every object is `{metadata, spec, status}`;
//! - typed access ([`Api`]; [`decode`] and [`encode`] for code that reads or
//!   writes the raw [`Store`] itself) and leader [`election`] built on the
//!   raw trait, so both backends share one implementation of each;
//! - [`with_kind!`] to reach generic code from a [`Kind`] known only at run
//!   time.

pub mod backend;
pub mod election;
mod error;
pub mod keys;
mod kv;
pub mod model;
mod typed;

pub use backend::{EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, connect};
pub use election::{Election, Leadership};
pub use error::{Error, Result};
pub use kv::{Event, EventKind, Fence, KeyValue, LeaseId, Store, WatchItem, WatchStream};
pub use model::{Kind, Metadata, Resource};
pub use typed::{Api, Decoded, ObjectEvent, ObjectList, decode, encode, new_uid};
