//! The SmartOS driver: zones are LX (`lx`) or native (`joyent-minimal`)
//! zones made and driven with the platform's own tools, the way Triton's
//! sdc-docker has them made: `vmadm` for the zone's life ([`payload`] says
//! what it is given), `zfs` and `imgadm` for the image, `zlogin` and
//! zoneadmd's `stdio.log` for streams ([`streams`]), `sysinfo` for the node.
//! Each tool is a configurable argv prefix ([`Commands`]).

pub mod commands;
pub mod payload;
pub mod streams;

use std::path::PathBuf;
use std::time::Duration;

pub use commands::{Commands, Tool};
pub use payload::{PayloadOptions, vmadm_payload};

/// Where and how the SmartOS driver works.
#[derive(Clone, Debug)]
pub struct SmartosConfig {
    /// How each platform tool is run.
    pub commands: Commands,
    /// The pool zones and images live in (`zones`).
    pub zpool: String,
    /// Where zone paths are (`/zones`): zone `U`'s root file system is
    /// `<zones_root>/U/root`, its zoneadmd logs `<zones_root>/U/logs`.
    pub zones_root: PathBuf,
    /// imgadm's database of installed images (`/var/imgadm/images`), where
    /// the manifest of each image layer installed here is written.
    pub imgadm_db: PathBuf,
    /// What goes into every payload besides the spec.
    pub payload: PayloadOptions,
    /// How often zones are listed to notice exits.
    pub poll_interval: Duration,
}

impl Default for SmartosConfig {
    /// The platform's own layout.
    fn default() -> Self {
        SmartosConfig {
            commands: Commands::default(),
            zpool: "zones".to_string(),
            zones_root: PathBuf::from("/zones"),
            imgadm_db: PathBuf::from("/var/imgadm/images"),
            payload: PayloadOptions::default(),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Zones through `vmadm` on a SmartOS compute node.
pub struct SmartosDriver {
    config: SmartosConfig,
    events: tokio::sync::broadcast::Sender<crate::ZoneEvent>,
}

impl SmartosDriver {
    /// A driver working as `config` says.
    pub fn new(config: SmartosConfig) -> SmartosDriver {
        let (events, _) = tokio::sync::broadcast::channel(1024);
        SmartosDriver { config, events }
    }

    /// Its configuration.
    pub fn config(&self) -> &SmartosConfig {
        &self.config
    }

    /// The zone path of zone `id` (`/zones/<uuid>`).
    pub fn zone_path(&self, id: &str) -> PathBuf {
        self.config.zones_root.join(id)
    }

    /// zoneadmd's current log of zone `id`
    /// (`/zones/<uuid>/logs/stdio.log`); rotated ones sit beside it with a
    /// timestamp suffix.
    pub fn log_file(&self, id: &str) -> PathBuf {
        self.zone_path(id).join("logs").join("stdio.log")
    }
}
