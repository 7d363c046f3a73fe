//! A SmartOS zone's files, as `docker cp`, `docker diff` and `docker
//! export` see them: its root file system is the zone dataset's `root/`
//! (`/zones/<uuid>/root`), mounted from install to delete whether the zone
//! runs or not. Copying, stat and export are the linux driver's, on that
//! directory ([`crate::linux::files`]): paths resolve inside it, symlinks as
//! the zone would follow them, and nothing lands outside it. The
//! platform's own mounts in a running zone (`/native`, `/proc`, `/dev`, …)
//! are under the root like any directory; export leaves out what is under
//! them.
//!
//! `docker diff` compares the zone's root with its image's: the zone
//! dataset is a clone of the image's `@final` snapshot (`zfs get origin`),
//! whose files are read at `<image mountpoint>/.zfs/snapshot/final/root`
//! (ZFS's snapshot directory), or at `<image mountpoint>/root` where the
//! snapshot directory is not reachable (the image dataset is never written
//! after its snapshot, so both hold the same). The comparison is Docker's
//! for drivers without layers (`ChangesDirs`): a file is changed when its
//! type, mode, owner or device differs, or, not being a directory, its size
//! or modification time; a directory holding a change is changed too. The
//! files the platform writes at boot (`/etc/hosts`, `/etc/resolv.conf`,
//! `/etc/hostname`, dockerinit's logs), as Docker's bind mounts, and the
//! mount points it creates, when they hold nothing else, are left out.
//!
//! Limits: the files are read on this machine, so the tools must run here
//! too (not behind `ssh`); a zone made without a clone (no `origin`) has no
//! image to compare with and its changes cannot be told.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::SmartosDriver;
use super::commands::Tool;
use crate::driver::{ZoneDriver, ZoneError, ZoneState};
use crate::linux::files::{
    PLACEHOLDERS, ZoneRoot, archive_in, export_of, extract_in, stat_in, zone_path,
};
use crate::streams::{ByteStream, Change, ChangeKind, ExtractOptions, PathStat};

/// Files the platform writes into a zone's root at each boot, as Docker
/// bind-mounts its own: never a change of the zone's.
const PLATFORM_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/var/log/sdc-dockerinit.log",
    "/var/log/sdc-dockerexec.log",
];

/// Directories the platform creates for its mounts or its files (beyond
/// the runtime's [`PLACEHOLDERS`]): left out while nothing else is in them.
const PLATFORM_DIRS: &[&str] = &["/native", "/system", "/var", "/var/log"];

/// The root file system of zone `id`: there once the zone is installed.
async fn root(d: &SmartosDriver, id: &str, op: &'static str) -> Result<ZoneRoot, ZoneError> {
    let zone = d
        .get(id)
        .await?
        .ok_or_else(|| ZoneError::NotFound { id: id.to_string() })?;
    if zone.state == ZoneState::Configured {
        return Err(ZoneError::WrongState {
            id: id.to_string(),
            state: zone.state,
            op,
        });
    }
    Ok(ZoneRoot::at(d.zone_path(id).join("root")))
}

/// What is at `path` in zone `id`.
pub(crate) async fn stat_path(
    d: &SmartosDriver,
    id: &str,
    path: &str,
) -> Result<PathStat, ZoneError> {
    stat_in(root(d, id, "stat a path").await?, id, path).await
}

/// A tar archive of `path` in zone `id`, as `docker cp` reads it.
pub(crate) async fn archive(
    d: &SmartosDriver,
    id: &str,
    path: &str,
) -> Result<(PathStat, ByteStream), ZoneError> {
    archive_in(root(d, id, "archive a path").await?, id, path).await
}

/// Unpacks `tar` into the directory `path` of zone `id`.
pub(crate) async fn extract(
    d: &SmartosDriver,
    id: &str,
    path: &str,
    tar: ByteStream,
    options: ExtractOptions,
) -> Result<(), ZoneError> {
    let root = root(d, id, "extract an archive").await?;
    extract_in(root, id, path, tar, options).await
}

/// The whole file system of zone `id` as a tar archive.
pub(crate) async fn export(d: &SmartosDriver, id: &str) -> Result<ByteStream, ZoneError> {
    export_of(root(d, id, "export").await?).await
}

/// What changed in zone `id`'s file system against its image.
pub(crate) async fn changes(d: &SmartosDriver, id: &str) -> Result<Vec<Change>, ZoneError> {
    let vm = d
        .vm(id)
        .await?
        .ok_or_else(|| ZoneError::NotFound { id: id.to_string() })?;
    let dataset = vm
        .get("zfs_filesystem")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{}/{id}", d.config.zpool), str::to_string);
    let origin = zfs_get(d, "origin", &dataset).await?;
    let Some((image, snapshot)) = origin.split_once('@') else {
        return Err(ZoneError::Runtime {
            op: "diff".to_string(),
            message: format!(
                "dataset {dataset} is no clone of an image (origin {origin:?}): nothing to compare it with"
            ),
        });
    };
    let mountpoint = PathBuf::from(zfs_get(d, "mountpoint", image).await?);
    let image_root = image_root(&mountpoint, snapshot);
    let zone_root = d.zone_path(id).join("root");
    let context = format!(
        "comparing {} with {}",
        zone_root.display(),
        image_root.display()
    );
    crate::linux::blocking(move || diff(&zone_root, &image_root).map_err(ZoneError::io(context)))
        .await
}

/// One property of a dataset, as `zfs get` prints it.
async fn zfs_get(d: &SmartosDriver, property: &str, dataset: &str) -> Result<String, ZoneError> {
    let out = d
        .config
        .commands
        .run(
            Tool::Zfs,
            &["get", "-H", "-o", "value", property, dataset],
            None,
        )
        .await?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where the files of an image's `snapshot` are, its dataset mounted at
/// `mountpoint`; see the module documentation.
fn image_root(mountpoint: &Path, snapshot: &str) -> PathBuf {
    let in_snapshot = mountpoint.join(".zfs/snapshot").join(snapshot).join("root");
    if in_snapshot.is_dir() {
        in_snapshot
    } else {
        mountpoint.join("root")
    }
}

/// One side of the comparison: a tree and the device of its root, to
/// tell mount points (not descended into) from directories.
struct Tree<'a> {
    root: &'a Path,
    dev: u64,
}

impl Tree<'_> {
    fn host(&self, parts: &[OsString]) -> PathBuf {
        let mut host = self.root.to_path_buf();
        host.extend(parts);
        host
    }

    /// The names in directory `parts`, sorted; none when it is not a
    /// directory of this tree (missing, or another file system's).
    fn children(&self, parts: &[OsString], meta: Option<&Metadata>) -> io::Result<Vec<OsString>> {
        if !meta.is_some_and(|m| m.is_dir() && m.dev() == self.dev) {
            return Ok(Vec::new());
        }
        let mut names: Vec<OsString> = match std::fs::read_dir(self.host(parts)) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        names.sort();
        Ok(names)
    }

    fn meta(&self, parts: &[OsString]) -> Option<Metadata> {
        std::fs::symlink_metadata(self.host(parts)).ok()
    }
}

/// Docker's `statDifferent`: type, permissions, owner and device, and for
/// anything but a directory its size and modification time.
fn differs(old: &Metadata, new: &Metadata) -> bool {
    old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || old.rdev() != new.rdev()
        || (!old.is_dir()
            && (old.size() != new.size()
                || old.mtime() != new.mtime()
                || old.mtime_nsec() != new.mtime_nsec()))
}

/// The changes of the tree `zone` against `image`, sorted by path; see
/// the module documentation.
fn diff(zone: &Path, image: &Path) -> io::Result<Vec<Change>> {
    let zone = Tree {
        root: zone,
        dev: std::fs::symlink_metadata(zone)?.dev(),
    };
    let image = Tree {
        root: image,
        dev: std::fs::symlink_metadata(image)?.dev(),
    };
    let mut changes = BTreeMap::new();
    let zone_meta = zone.meta(&[]);
    let image_meta = image.meta(&[]);
    compare(
        &zone,
        &image,
        &mut Vec::new(),
        zone_meta.as_ref(),
        image_meta.as_ref(),
        &mut changes,
    )?;
    Ok(changes
        .into_iter()
        .map(|(parts, kind)| Change {
            path: zone_path(&parts),
            kind,
        })
        .collect())
}

/// Compares the children of directory `parts` (in the zone: `new`, in the
/// image: `old`) and records what differs; returns whether anything under
/// it was recorded.
fn compare(
    zone: &Tree,
    image: &Tree,
    parts: &mut Vec<OsString>,
    new: Option<&Metadata>,
    old: Option<&Metadata>,
    changes: &mut BTreeMap<Vec<OsString>, ChangeKind>,
) -> io::Result<bool> {
    let new_names = zone.children(parts, new)?;
    // As Docker: the image's children count only while both are (the
    // zone's own) directories; a directory replaced by a file is one
    // change, not one per file it held.
    let old_names = if new.is_some_and(|m| m.is_dir() && m.dev() == zone.dev) {
        image.children(parts, old)?
    } else {
        Vec::new()
    };
    let mut recorded = false;
    for name in &old_names {
        if new_names.binary_search(name).is_err() {
            parts.push(name.clone());
            if !PLATFORM_FILES.contains(&zone_path(parts).as_str()) {
                changes.insert(parts.clone(), ChangeKind::Deleted);
                recorded = true;
            }
            parts.pop();
        }
    }
    for name in new_names {
        let in_image = old_names.binary_search(&name).is_ok();
        parts.push(name);
        let path = zone_path(parts);
        if PLATFORM_FILES.contains(&path.as_str()) {
            parts.pop();
            continue;
        }
        let Some(new_child) = zone.meta(parts) else {
            // Gone meanwhile.
            parts.pop();
            continue;
        };
        let old_child = if in_image { image.meta(parts) } else { None };
        let below = compare(
            zone,
            image,
            parts,
            Some(&new_child),
            old_child.as_ref(),
            changes,
        )?;
        let placeholder = (PLACEHOLDERS.contains(&path.as_str())
            || PLATFORM_DIRS.contains(&path.as_str()))
            && (new_child.is_dir() || (new_child.is_file() && new_child.len() == 0));
        let kind = match &old_child {
            None if placeholder && !below => None,
            None => Some(ChangeKind::Added),
            // A mount point: what the platform mounted, not the zone's.
            Some(_) if new_child.dev() != zone.dev => None,
            Some(old) if differs(old, &new_child) => Some(ChangeKind::Modified),
            // A directory holding a change changed too.
            Some(_) if below => Some(ChangeKind::Modified),
            Some(_) => None,
        };
        if let Some(kind) = kind {
            changes.insert(parts.clone(), kind);
            recorded = true;
        }
        recorded |= below;
        parts.pop();
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// The changes of `zone` against `image` as `(path, kind)` pairs.
    fn changes_of(zone: &Path, image: &Path) -> Vec<(String, ChangeKind)> {
        diff(zone, image)
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect()
    }

    /// Copies `from` to `to` keeping modes and times (a ZFS clone keeps
    /// every attribute of its snapshot).
    fn clone_tree(from: &Path, to: &Path) {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn an_untouched_clone_has_no_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("image");
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::fs::write(image.join("etc/motd"), "hi").unwrap();
        symlink("motd", image.join("etc/link")).unwrap();
        clone_tree(&image, &tmp.path().join("zone"));
        assert!(changes_of(&tmp.path().join("zone"), &image).is_empty());
    }

    #[test]
    fn changes_are_dockers_added_modified_deleted_with_parents_modified() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("image");
        for d in ["etc", "usr/lib", "srv/old", "opt"] {
            std::fs::create_dir_all(image.join(d)).unwrap();
        }
        std::fs::write(image.join("usr/lib/kept"), "k").unwrap();
        std::fs::write(image.join("usr/lib/edited"), "e").unwrap();
        std::fs::write(image.join("srv/old/file"), "f").unwrap();
        std::fs::write(image.join("opt/gone"), "g").unwrap();
        let zone = tmp.path().join("zone");
        clone_tree(&image, &zone);

        std::fs::write(zone.join("usr/lib/edited"), "edited, longer").unwrap();
        std::fs::create_dir_all(zone.join("usr/lib/deep")).unwrap();
        std::fs::write(zone.join("usr/lib/deep/new"), "n").unwrap();
        std::fs::remove_dir_all(zone.join("srv/old")).unwrap();
        std::fs::remove_file(zone.join("opt/gone")).unwrap();
        std::fs::set_permissions(zone.join("opt"), std::fs::Permissions::from_mode(0o700)).unwrap();
        // What the platform writes and mounts at boot is not the zone's.
        for d in ["proc", "native", "dev"] {
            std::fs::create_dir_all(zone.join(d)).unwrap();
        }
        std::fs::write(zone.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(zone.join("etc/resolv.conf"), "nameserver 8.8.8.8\n").unwrap();
        std::fs::create_dir_all(zone.join("var/log")).unwrap();
        std::fs::write(zone.join("var/log/sdc-dockerinit.log"), "booted\n").unwrap();

        assert_eq!(
            changes_of(&zone, &image),
            [
                ("/opt".to_string(), ChangeKind::Modified),
                ("/opt/gone".to_string(), ChangeKind::Deleted),
                ("/srv".to_string(), ChangeKind::Modified),
                ("/srv/old".to_string(), ChangeKind::Deleted),
                ("/usr".to_string(), ChangeKind::Modified),
                ("/usr/lib".to_string(), ChangeKind::Modified),
                ("/usr/lib/deep".to_string(), ChangeKind::Added),
                ("/usr/lib/deep/new".to_string(), ChangeKind::Added),
                ("/usr/lib/edited".to_string(), ChangeKind::Modified),
            ]
        );
    }

    #[test]
    fn a_platform_directory_the_zone_wrote_into_is_an_addition() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("image");
        std::fs::create_dir_all(&image).unwrap();
        let zone = tmp.path().join("zone");
        clone_tree(&image, &zone);
        std::fs::create_dir_all(zone.join("var/log")).unwrap();
        std::fs::write(zone.join("var/log/app.log"), "x").unwrap();
        assert_eq!(
            changes_of(&zone, &image),
            [
                ("/var".to_string(), ChangeKind::Added),
                ("/var/log".to_string(), ChangeKind::Added),
                ("/var/log/app.log".to_string(), ChangeKind::Added),
            ]
        );
    }

    #[test]
    fn a_directory_replaced_by_a_file_is_modified_without_its_old_contents_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("image");
        std::fs::create_dir_all(image.join("data/sub")).unwrap();
        std::fs::write(image.join("data/sub/file"), "f").unwrap();
        let zone = tmp.path().join("zone");
        clone_tree(&image, &zone);
        std::fs::remove_dir_all(zone.join("data")).unwrap();
        std::fs::write(zone.join("data"), "now a file").unwrap();
        assert_eq!(
            changes_of(&zone, &image),
            [("/data".to_string(), ChangeKind::Modified)]
        );
    }

    #[test]
    fn the_image_is_read_in_its_snapshot_directory_when_there_is_one() {
        let tmp = tempfile::tempdir().unwrap();
        let mountpoint = tmp.path();
        assert_eq!(image_root(mountpoint, "final"), mountpoint.join("root"));
        std::fs::create_dir_all(mountpoint.join(".zfs/snapshot/final/root")).unwrap();
        assert_eq!(
            image_root(mountpoint, "final"),
            mountpoint.join(".zfs/snapshot/final/root")
        );
    }
}
