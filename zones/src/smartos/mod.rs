//! The SmartOS driver: zones are LX (`lx`) or native (`joyent-minimal`)
//! zones made and driven with the platform's own tools, the way Triton's
//! sdc-docker has them made: `vmadm` for the zone's life ([`payload`] says
//! what it is given), `zfs` and `imgadm` for the image, `zlogin` and
//! zoneadmd's `stdio.log` for streams ([`streams`]), `sysinfo` for the node.
//! Each tool is a configurable argv prefix ([`Commands`]).

pub mod commands;
mod driver;
mod files;
pub mod images;
mod logs;
pub mod payload;
pub mod streams;
pub mod sysinfo;

use std::path::PathBuf;
use std::time::Duration;

pub use commands::{Commands, Tool};
pub use driver::{PAUSED_KEY, shared, zone_info};
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

/// Zones through `vmadm` on a SmartOS compute node. Make it with
/// [`SmartosDriver::new`]: exits are noticed by a poller that needs the
/// driver shared.
pub struct SmartosDriver {
    config: SmartosConfig,
    events: tokio::sync::broadcast::Sender<crate::ZoneEvent>,
    /// Itself, for the exit poller (set by [`shared`]).
    me: std::sync::OnceLock<std::sync::Weak<SmartosDriver>>,
    poller_started: std::sync::atomic::AtomicBool,
}

impl SmartosDriver {
    /// A driver working as `config` says, shared.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(config: SmartosConfig) -> std::sync::Arc<SmartosDriver> {
        let (events, _) = tokio::sync::broadcast::channel(1024);
        shared(SmartosDriver {
            config,
            events,
            me: std::sync::OnceLock::new(),
            poller_started: std::sync::atomic::AtomicBool::new(false),
        })
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
