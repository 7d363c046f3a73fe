//! The boundary to real machines: everything that creates, runs, signals or
//! removes a zone goes through the [`ZoneDriver`] trait, the way youki keeps
//! every system call behind its `Syscall` trait.
//!
//! - [`ZoneSpec`] says what to run, in terms no driver owns;
//!   [`docker::zone_spec`] makes one from a container, its image and its
//!   package, merging them exactly as Docker does;
//! - [`ZoneDriver`] creates, starts, stops, signals, pauses and removes zones
//!   and reports them as [`ZoneInfo`]; every call is idempotent so a
//!   controller can repeat any of them after a crash;
//! - [`linux::LinuxDriver`] runs zones as OCI containers under `runc` on an
//!   overlay root file system, through the per-container monitor;
//! - [`remote`] serves a node's [`ZoneStreams`] over HTTP and reaches
//!   another node's as [`RemoteStreams`].

#![warn(missing_docs)]

pub mod docker;
pub mod driver;
pub mod linux;
pub mod remote;
pub mod signal;
pub mod smartos;
pub mod spec;
pub mod streams;

pub use docker::{SpecError, zone_id, zone_spec};
pub use driver::{ZoneDriver, ZoneError, ZoneEvent, ZoneInfo, ZoneState};
pub use linux::{LinuxConfig, LinuxDriver};
pub use remote::RemoteStreams;
pub use smartos::{SmartosConfig, SmartosDriver};
pub use spec::{
    BindMount, DockerConfig, ImageLayers, LogSpec, NicSpec, PackageSizing, ProcessSpec, ZoneSpec,
};
pub use streams::ZoneStreams;
