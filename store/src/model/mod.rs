//! The resource model: every object is `{apiVersion, kind, metadata, spec,
//! status}`, like a Kubernetes custom resource.
//!
//! The Docker API writes `spec` only; controllers write `status` only.
//! `metadata.generation` counts spec changes (never status writes), so a
//! controller can tell "something to do" from "my own status write came
//! back". `metadata.resourceVersion` is the store revision of the last write
//! and is filled in on every read, never stored.

mod container;
mod image;
mod log_config;
mod metadata;
mod network;
mod node;
mod package;
mod restart;
mod volume;

pub use container::{
    Container, ContainerSpec, ContainerState, ContainerStatus, DesiredState, LifecycleRequest,
    LogConfig, Mount, PortBinding, RequestAction, RestartPolicy, RestartPolicyName,
};
pub use image::{Image, ImageSpec, ImageStatus};
pub use log_config::{
    DEFAULT_MAX_LOG_FILES, DEFAULT_MAX_LOG_SIZE, HostLog, LogConfigError, MAX_LOG_CONFIG_LEN,
    ValidLogConfig,
};
pub use metadata::{Condition, Metadata, set_condition};
pub use network::{Network, NetworkSpec, NetworkStatus};
pub use node::{Node, NodeSpec, NodeStatus};
pub use package::{Package, PackageSpec, PackageStatus};
pub use restart::{RESTART_BASE_DELAY, RESTART_MAX_DELAY, restart_delay};
pub use volume::{Volume, VolumeSpec, VolumeStatus};

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The `apiVersion` of every object.
pub const API_VERSION: &str = "sdc-docker/v1";

/// The kinds of object the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A Docker container: what to run and how.
    Container,
    /// A pulled image: its references, digest and config.
    Image,
    /// A network (fabric) containers attach to.
    Network,
    /// A named data volume.
    Volume,
    /// A compute node and its capacity.
    Node,
    /// A size class chosen from `docker run -m`.
    Package,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 6] = [
        Kind::Container,
        Kind::Image,
        Kind::Network,
        Kind::Volume,
        Kind::Node,
        Kind::Package,
    ];

    /// The name as written in `kind:` (`Container`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "Container",
            Kind::Image => "Image",
            Kind::Network => "Network",
            Kind::Volume => "Volume",
            Kind::Node => "Node",
            Kind::Package => "Package",
        }
    }

    /// The plural used in keys and URLs (`containers`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Container => "containers",
            Kind::Image => "images",
            Kind::Network => "networks",
            Kind::Volume => "volumes",
            Kind::Node => "nodes",
            Kind::Package => "packages",
        }
    }

    /// Parse what an operator types: `Container`, `container`, `containers`.
    pub fn parse(s: &str) -> Option<Kind> {
        let lower = s.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| lower == k.as_str().to_ascii_lowercase() || lower == k.plural())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed object of one kind.
pub trait Resource:
    Serialize + DeserializeOwned + Clone + PartialEq + fmt::Debug + Send + Sync + 'static
{
    /// The desired state.
    type Spec: Serialize + DeserializeOwned + Clone + PartialEq + Default + fmt::Debug + Send + Sync;
    /// The observed state.
    type Status: Serialize
        + DeserializeOwned
        + Clone
        + PartialEq
        + Default
        + fmt::Debug
        + Send
        + Sync;
    /// Which kind this is.
    const KIND: Kind;

    /// A new object with empty status, ready to create.
    fn new(name: &str, spec: Self::Spec) -> Self;
    /// The metadata.
    fn metadata(&self) -> &Metadata;
    /// The metadata, to change.
    fn metadata_mut(&mut self) -> &mut Metadata;
    /// The spec.
    fn spec(&self) -> &Self::Spec;
    /// The spec, to change.
    fn spec_mut(&mut self) -> &mut Self::Spec;
    /// The status.
    fn status(&self) -> &Self::Status;
    /// The status, to change.
    fn status_mut(&mut self) -> &mut Self::Status;
    /// The `kind` field as read (empty when the document left it out; the
    /// canonical spelling once [`decode`](crate::decode)d).
    fn kind_field(&self) -> &str;
    /// The `kind` field, to change.
    fn kind_field_mut(&mut self) -> &mut String;
}

/// Run `$body` with the type alias `$k` bound to the struct of `$kind`, a
/// [`Kind`] known only at run time (a URL segment, a document's `kind:`, a
/// key's prefix).
///
/// ```ignore
/// let n = with_kind!(kind, K => count::<K>(&store).await)?;
/// ```
///
/// A macro rather than a function because each arm instantiates the generic
/// code with another type, and async code awaited in each arm yields futures
/// of different types: `$body` is expanded inside each arm of a `match` in
/// the caller's own function, so it may `.await` and use `?`. It lives beside
/// [`Kind`] so that a new kind is added in one file.
#[macro_export]
macro_rules! with_kind {
    ($kind:expr, $k:ident => $body:expr) => {{
        #[allow(unused_imports)]
        use $crate::Resource as _;
        match $kind {
            $crate::Kind::Container => {
                type $k = $crate::model::Container;
                $body
            }
            $crate::Kind::Image => {
                type $k = $crate::model::Image;
                $body
            }
            $crate::Kind::Network => {
                type $k = $crate::model::Network;
                $body
            }
            $crate::Kind::Volume => {
                type $k = $crate::model::Volume;
                $body
            }
            $crate::Kind::Node => {
                type $k = $crate::model::Node;
                $body
            }
            $crate::Kind::Package => {
                type $k = $crate::model::Package;
                $body
            }
        }
    }};
}

fn default_api_version() -> String {
    API_VERSION.to_string()
}

/// Declares the struct of one kind and its [`Resource`] impl.
macro_rules! resource {
    ($(#[$doc:meta])* $name:ident, $spec:ty, $status:ty) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// Always `sdc-docker/v1`.
            #[serde(default = "crate::model::default_api_version")]
            pub api_version: String,
            /// The kind's name; may be left out when the kind is known from
            /// the key or URL.
            #[serde(default)]
            pub kind: String,
            /// Name, account, revisions, labels.
            pub metadata: crate::model::Metadata,
            /// What is wanted.
            #[serde(default)]
            pub spec: $spec,
            /// What controllers observed.
            #[serde(default)]
            pub status: $status,
        }

        impl crate::model::Resource for $name {
            type Spec = $spec;
            type Status = $status;
            const KIND: crate::model::Kind = crate::model::Kind::$name;

            fn new(name: &str, spec: $spec) -> Self {
                $name {
                    api_version: crate::model::API_VERSION.to_string(),
                    kind: stringify!($name).to_string(),
                    metadata: crate::model::Metadata::named(name),
                    spec,
                    status: Default::default(),
                }
            }
            fn metadata(&self) -> &crate::model::Metadata { &self.metadata }
            fn metadata_mut(&mut self) -> &mut crate::model::Metadata { &mut self.metadata }
            fn spec(&self) -> &$spec { &self.spec }
            fn spec_mut(&mut self) -> &mut $spec { &mut self.spec }
            fn status(&self) -> &$status { &self.status }
            fn status_mut(&mut self) -> &mut $status { &mut self.status }
            fn kind_field(&self) -> &str { &self.kind }
            fn kind_field_mut(&mut self) -> &mut String { &mut self.kind }
        }
    };
}
pub(crate) use resource;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_singular_plural_and_any_case() {
        assert_eq!(Kind::parse("containers"), Some(Kind::Container));
        assert_eq!(Kind::parse("Container"), Some(Kind::Container));
        assert_eq!(Kind::parse("PACKAGE"), Some(Kind::Package));
        assert_eq!(Kind::parse("pods"), None);
    }

    #[test]
    fn with_kind_binds_the_struct_of_each_kind() {
        for kind in Kind::ALL {
            assert_eq!(crate::with_kind!(kind, K => K::KIND), kind);
        }
    }
}
