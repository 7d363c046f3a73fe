//! The blocking file work of the linux driver: laying out a zone's
//! directory, (re)writing its runtime spec, and taking it all away again.
//!
//! Each step is idempotent and ordered so that a crash between any two
//! leaves something the next call finishes: `spec.json` is written first
//! (the zone exists, "configured") and `bundle/config.json` last
//! ("installed"); removal takes `spec.json` last, after the root file system
//! is unmounted, so a half-removed zone is still listed and removable.
//! Callers run these in `spawn_blocking`.

use std::io;
use std::path::Path;

use super::etc;
use super::layout::ZoneDir;
use super::oci;
use super::rootfs::{self, RootfsError};
use super::user::{self, UserError};
use crate::driver::ZoneError;
use crate::spec::ZoneSpec;

/// The host's resolver configuration, the base of every zone's.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

impl From<RootfsError> for ZoneError {
    fn from(e: RootfsError) -> Self {
        match e {
            RootfsError::MissingLayer(path) => ZoneError::ImageMissing {
                path: path.display().to_string(),
            },
            RootfsError::Syscall { .. } => ZoneError::Runtime {
                op: "mount".to_string(),
                message: e.to_string(),
            },
            other => ZoneError::InvalidSpec(other.to_string()),
        }
    }
}

impl From<UserError> for ZoneError {
    fn from(e: UserError) -> Self {
        ZoneError::InvalidSpec(e.to_string())
    }
}

/// Writes `bytes` to `path` through a temp file and a rename, so readers
/// see the old content or the new, never a part; a file that already
/// holds `bytes` is left alone (a zone's start rewrites what its create
/// wrote, and every new file is an inode to allocate).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ZoneError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(ZoneError::io(format!("writing {}", path.display())))
}

/// Writes `bytes` to `path` in place, unless it already holds them: for
/// files nobody reads before the zone's `config.json` (written last,
/// atomically) says it is installed, which a crash mid-write leaves to be
/// rewritten by the next install.
fn write_in_place(path: &Path, bytes: &[u8]) -> Result<(), ZoneError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(ZoneError::io(format!("writing {}", path.display())))
}

/// The stored spec, or `None` when the zone has none (never created, or
/// removed).
pub fn read_spec(dir: &ZoneDir) -> Result<Option<ZoneSpec>, ZoneError> {
    let path = dir.spec();
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ZoneError::Corrupt {
                    path: path.display().to_string(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ZoneError::io(format!("reading {}", path.display()))(e)),
    }
}

/// Checks what can be checked of `spec` before anything is written.
pub fn validate(spec: &ZoneSpec) -> Result<(), ZoneError> {
    if spec.process.args.is_empty() {
        return Err(ZoneError::InvalidSpec("no command to run".to_string()));
    }
    if !spec.process.cwd.starts_with('/') {
        return Err(ZoneError::InvalidSpec(format!(
            "the working directory '{}' is not absolute",
            spec.process.cwd
        )));
    }
    if let Some(m) = spec.mounts.iter().find(|m| !m.target.starts_with('/')) {
        return Err(ZoneError::InvalidSpec(format!(
            "mount target '{}' is not absolute",
            m.target
        )));
    }
    rootfs::check_layers(&spec.image.lower_dirs)?;
    Ok(())
}

/// Lays out the zone of `spec` in `dir`, mounts its root file system and
/// writes its runtime spec; every step is skipped or redone harmlessly when
/// it was done before.
pub fn install(dir: &ZoneDir, spec: &ZoneSpec) -> Result<(), ZoneError> {
    validate(spec)?;
    let mkdir = |path: &Path| {
        std::fs::create_dir_all(path).map_err(ZoneError::io(format!("creating {}", path.display())))
    };
    mkdir(dir.path())?;
    let json = serde_json::to_vec_pretty(spec).map_err(|source| ZoneError::Corrupt {
        path: dir.spec().display().to_string(),
        source,
    })?;
    write_atomic(&dir.spec(), &json)?;
    for path in [
        dir.bundle(),
        dir.upper(),
        dir.work(),
        dir.rootfs(),
        dir.logs(),
    ] {
        mkdir(&path)?;
    }
    let host_resolv = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    write_in_place(&dir.hosts(), etc::hosts(spec).as_bytes())?;
    write_in_place(&dir.hostname(), etc::hostname(spec).as_bytes())?;
    write_in_place(
        &dir.resolv_conf(),
        etc::resolv_conf(spec, &host_resolv).as_bytes(),
    )?;
    prepare(dir, spec)
}

/// Mounts the root file system if it is not (after a reboot) and writes the
/// runtime spec with the user resolved in the zone's current `/etc/passwd`.
pub fn prepare(dir: &ZoneDir, spec: &ZoneSpec) -> Result<(), ZoneError> {
    rootfs::mount(
        &spec.image.lower_dirs,
        &dir.upper(),
        &dir.work(),
        &dir.rootfs(),
    )?;
    let root = dir.rootfs();
    let exec_user = user::resolve(
        &spec.process.user,
        &user::read_etc(&root, "passwd"),
        &user::read_etc(&root, "group"),
    )?;
    let config = oci::runtime_config(spec, dir, &exec_user, oci::nofile_limit());
    let json = serde_json::to_vec_pretty(&config).map_err(|source| ZoneError::Corrupt {
        path: dir.config().display().to_string(),
        source,
    })?;
    write_atomic(&dir.config(), &json)
}

/// Unmounts the root file system and removes the zone's directory,
/// `spec.json` last. Nothing is removed while the root file system is still
/// mounted: removing through the mount would be removing the zone's files
/// one by one, not the directory.
pub fn remove(dir: &ZoneDir) -> Result<(), ZoneError> {
    if !dir.path().exists() {
        return Ok(());
    }
    rootfs::unmount(&dir.rootfs())?;
    let entries = std::fs::read_dir(dir.path())
        .map_err(ZoneError::io(format!("listing {}", dir.path().display())))?;
    let spec = dir.spec();
    for entry in entries {
        let entry = entry.map_err(ZoneError::io(format!("listing {}", dir.path().display())))?;
        let path = entry.path();
        if path == spec {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ZoneError::io(format!("removing {}", path.display()))(e)),
        }
    }
    for (path, result) in [
        (spec.clone(), std::fs::remove_file(&spec)),
        (dir.path().to_path_buf(), std::fs::remove_dir(dir.path())),
    ] {
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ZoneError::io(format!("removing {}", path.display()))(e)),
        }
    }
    Ok(())
}
