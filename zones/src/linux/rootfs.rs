//! The zone's root file system: an overlay of the image's unpacked layers
//! (read-only, shared by every zone of the image) under the zone's own upper
//! dir, mounted on `rootfs/`.
//!
//! The mount lives in the host's mount namespace, so a reboot (or anyone's
//! `umount`) removes it: [`mount`] is called before every start, and does
//! nothing when it is already there. Overlay's options must fit in one page,
//! which bounds the number of layers to about 4096 / (length of a layer
//! path); a longer list is refused with a clear error.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

/// Why the root file system could not be mounted or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A lower dir of the image is missing.
    #[error("image layer {0} is missing")]
    MissingLayer(PathBuf),
    /// The image has no layer at all.
    #[error("the image has no layers")]
    NoLayers,
    /// A path cannot be put in overlay's options (`:` or `,` in it).
    #[error("path {0} cannot be an overlay layer (contains ':' or ',')")]
    BadPath(PathBuf),
    /// The options exceed one page.
    #[error("the image has too many layers for one overlay mount ({0} bytes of options)")]
    TooManyLayers(usize),
    /// The mount or unmount system call failed.
    #[error("{op} {path}: {source}")]
    Syscall {
        /// `mounting overlay on` or `unmounting`.
        op: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Kernel limit on mount data: one page.
const MAX_OPTIONS: usize = 4095;

/// The overlay options for `lower_dirs` (top first), `upper` and `work`.
pub fn options(lower_dirs: &[PathBuf], upper: &Path, work: &Path) -> Result<String, RootfsError> {
    if lower_dirs.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    let text = |p: &Path| {
        let s = p.to_string_lossy().into_owned();
        if s.contains([':', ',']) {
            Err(RootfsError::BadPath(p.to_path_buf()))
        } else {
            Ok(s)
        }
    };
    let lower = lower_dirs
        .iter()
        .map(|p| text(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(":");
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        text(upper)?,
        text(work)?
    );
    if options.len() > MAX_OPTIONS {
        return Err(RootfsError::TooManyLayers(options.len()));
    }
    Ok(options)
}

/// Checks that every lower dir is a directory.
pub fn check_layers(lower_dirs: &[PathBuf]) -> Result<(), RootfsError> {
    if lower_dirs.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    match lower_dirs.iter().find(|d| !d.is_dir()) {
        Some(missing) => Err(RootfsError::MissingLayer(missing.clone())),
        None => Ok(()),
    }
}

/// Whether something is mounted exactly on `target`: `statx`'s
/// `STATX_ATTR_MOUNT_ROOT` (Linux 5.8), one system call; on older kernels,
/// `/proc/self/mountinfo`, whose reading costs in proportion to the mounts
/// of the host (one overlay per zone, with long options), which made every
/// zone start slower than the one before it.
pub fn is_mounted(target: &Path) -> io::Result<bool> {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    match statx(CWD, target, AtFlags::empty(), StatxFlags::BASIC_STATS) {
        Ok(stat)
            if stat
                .stx_attributes_mask
                .contains(StatxAttributes::MOUNT_ROOT) =>
        {
            return Ok(stat.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
        }
        Ok(_) | Err(rustix::io::Errno::NOSYS) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    is_mounted_per_mountinfo(target)
}

/// [`is_mounted`] per `/proc/self/mountinfo`.
fn is_mounted_per_mountinfo(target: &Path) -> io::Result<bool> {
    let target = match target.canonicalize() {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let wanted = escape(&target.to_string_lossy());
    Ok(mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mount_point| mount_point == wanted))
}

/// mountinfo's octal escapes of space, tab, newline and backslash.
fn escape(path: &str) -> String {
    path.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012")
}

/// Mounts the overlay on `target` unless something is mounted there already.
pub fn mount(
    lower_dirs: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    let syscall = |source| RootfsError::Syscall {
        op: "mounting overlay on",
        path: target.to_path_buf(),
        source,
    };
    if is_mounted(target).map_err(syscall)? {
        return Ok(());
    }
    check_layers(lower_dirs)?;
    let options = options(lower_dirs, upper, work)?;
    let data = std::ffi::CString::new(options).map_err(|e| syscall(io::Error::other(e)))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|e| syscall(e.into()))?;
    tracing::debug!(target = %target.display(), layers = lower_dirs.len(), "mounted overlay");
    Ok(())
}

/// Unmounts `target` if something is mounted there; a busy mount is
/// detached (it goes away once its last user does).
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    let syscall = |source| RootfsError::Syscall {
        op: "unmounting",
        path: target.to_path_buf(),
        source,
    };
    while is_mounted(target).map_err(syscall)? {
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::BUSY) => {
                tracing::warn!(target = %target.display(), "root file system busy: detaching it");
                rustix::mount::unmount(target, UnmountFlags::DETACH)
                    .map_err(|e| syscall(e.into()))?;
            }
            Err(e) => return Err(syscall(e.into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_lower_dirs_top_first_then_upper_and_work() {
        let lower = vec![PathBuf::from("/l/top"), PathBuf::from("/l/base")];
        assert_eq!(
            options(&lower, Path::new("/z/upper"), Path::new("/z/work")).unwrap(),
            "lowerdir=/l/top:/l/base,upperdir=/z/upper,workdir=/z/work"
        );
    }

    #[test]
    fn options_refuse_no_layers_odd_paths_and_more_than_a_page() {
        let (u, w) = (Path::new("/u"), Path::new("/w"));
        assert!(matches!(options(&[], u, w), Err(RootfsError::NoLayers)));
        assert!(matches!(
            options(&[PathBuf::from("/a:b")], u, w),
            Err(RootfsError::BadPath(_))
        ));
        let many = vec![PathBuf::from(format!("/{}", "x".repeat(99))); 50];
        assert!(matches!(
            options(&many, u, w),
            Err(RootfsError::TooManyLayers(_))
        ));
    }

    #[test]
    fn a_missing_layer_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let error = check_layers(&[dir.path().to_path_buf(), missing.clone()]).unwrap_err();
        assert!(matches!(error, RootfsError::MissingLayer(p) if p == missing));
    }

    #[test]
    fn a_plain_directory_is_not_a_mount_point() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mounted(dir.path()).unwrap());
        assert!(!is_mounted(&dir.path().join("absent")).unwrap());
        assert!(is_mounted(Path::new("/proc")).unwrap());
    }
}
