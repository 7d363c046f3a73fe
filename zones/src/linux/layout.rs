//! Where a zone's files live under the driver's root: one directory per
//! zone id, laid out as below. Pure path arithmetic; nothing here touches
//! the disk.
//!
//! ```text
//! <root>/<id>/spec.json           the ZoneSpec (written first: "configured")
//!             bundle/config.json  the OCI runtime spec (written last: "installed")
//!             upper/ work/        overlay upper and work dirs (the zone's writes)
//!             rootfs/             the overlay mount point
//!             hosts resolv.conf hostname   bind-mounted into /etc
//!             run/                the monitor's state dir
//!             logs/container.log  stdout and stderr (json-file)
//! ```

use std::path::{Path, PathBuf};

/// The paths of one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneDir {
    dir: PathBuf,
}

impl ZoneDir {
    /// The zone `id` under `root`; `id` must be a [valid](valid_id) name.
    pub fn new(root: &Path, id: &str) -> ZoneDir {
        ZoneDir { dir: root.join(id) }
    }

    /// `<root>/<id>`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The stored [`ZoneSpec`](crate::ZoneSpec).
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }

    /// The OCI bundle directory.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    /// The OCI runtime spec.
    pub fn config(&self) -> PathBuf {
        self.bundle().join("config.json")
    }

    /// Overlay's upper dir.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// Overlay's work dir.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The mounted root file system.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The zone's `/etc/hosts`.
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// The zone's `/etc/resolv.conf`.
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// The zone's `/etc/hostname`.
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    /// The monitor's state directory.
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The log directory.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The json-file log.
    pub fn log_file(&self) -> PathBuf {
        self.logs().join("container.log")
    }
}

/// Whether `id` can name a zone directory and a runc container: letters,
/// digits, `-`, `_` and `.`, not `.` or `..`, at most 128 bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_root_are_not_valid() {
        assert!(valid_id("01234567-89ab-cdef-0123-456789abcdef"));
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
