//! The two implementations of [`crate::Store`], and the one function that
//! picks between them from a `--store` argument.

mod embedded;
mod etcd;

use std::path::Path;
use std::sync::Arc;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use etcd::{EtcdOptions, EtcdStore};

use crate::{Error, Result, Store};

/// Open the store named by `spec`: `embedded` (under `data_dir`) or
/// `etcd://host:port[,host:port…]`.
pub async fn connect(spec: &str, data_dir: &Path) -> Result<Arc<dyn Store>> {
    if spec == "embedded" {
        let store = EmbeddedStore::open(&data_dir.join("store.redb"), EmbeddedOptions::default())?;
        return Ok(Arc::new(store));
    }
    if let Some(list) = spec.strip_prefix("etcd://") {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("http://{s}"))
            .collect();
        if endpoints.is_empty() {
            return Err(Error::Unavailable(format!(
                "--store {spec}: no etcd endpoints given (etcd://host:port,host:port)"
            )));
        }
        return Ok(Arc::new(EtcdStore::connect(&endpoints).await?));
    }
    Err(Error::Unavailable(format!(
        "--store {spec}: expected `embedded` or `etcd://host:port[,host:port…]`"
    )))
}
