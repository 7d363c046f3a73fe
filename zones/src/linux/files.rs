//! A zone's files, as `docker cp`, `docker diff` and `docker export` see
//! them: through the zone's mounted root file system (`rootfs/`, the
//! overlay), its bind mounts and its overlay upper dir.
//!
//! Every path is resolved inside the zone ([`ZoneRoot::resolve`]): symlinks
//! are followed as the zone would follow them, absolute ones from the
//! zone's root, `..` stops at the root, and a path under a bind mount's
//! target lands in the mount's host source. Nothing a zone puts in its file
//! system can make the daemon read or write outside the zone.
//!
//! Each operation has a form working on any root directory ([`ZoneRoot`]),
//! which the SmartOS driver uses on `/zones/<uuid>/root`.
//!
//! Limits: resolution happens in user space, so a zone that swaps a
//! directory for a symlink *while* a copy runs could race it (Docker has the
//! same window); files are created with `O_NOFOLLOW | O_EXCL`, which closes
//! it for the last element. Extended attributes are neither archived nor
//! extracted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::future::Future as _;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use time::OffsetDateTime;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::SyncIoBridge;

use super::layout::ZoneDir;
use super::{LinuxDriver, blocking, rootfs};
use crate::driver::{ZoneError, ZoneState};
use crate::spec::ZoneSpec;
use crate::streams::{ByteStream, Change, ChangeKind, ExtractOptions, PathStat};

/// Symlinks followed in one resolution before giving up (Linux's `ELOOP`).
const MAX_HOPS: usize = 40;

/// Go's `os.FileMode` type bits, as Docker sends them.
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// `st_mode` file type bits.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFCHR: u32 = 0o020_000;

/// Go's `os.FileMode` of a Unix `st_mode`.
pub(crate) fn go_file_mode(mode: u32) -> u32 {
    let mut go = mode & 0o777;
    go |= match mode & S_IFMT {
        S_IFDIR => go_mode::DIR,
        S_IFLNK => go_mode::SYMLINK,
        S_IFIFO => go_mode::NAMED_PIPE,
        S_IFSOCK => go_mode::SOCKET,
        S_IFBLK => go_mode::DEVICE,
        S_IFCHR => go_mode::DEVICE | go_mode::CHAR_DEVICE,
        _ => 0,
    };
    if mode & 0o4000 != 0 {
        go |= go_mode::SETUID;
    }
    if mode & 0o2000 != 0 {
        go |= go_mode::SETGID;
    }
    if mode & 0o1000 != 0 {
        go |= go_mode::STICKY;
    }
    go
}

/// The components of `path` (`/`-separated), without empty ones and `.`;
/// `..` is kept.
pub(crate) fn split(path: &[u8]) -> Vec<OsString> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect()
}

/// `/a/b` of the components `[a, b]`.
pub(crate) fn zone_path(parts: &[OsString]) -> String {
    let mut path = String::new();
    for part in parts {
        path.push('/');
        path.push_str(&part.to_string_lossy());
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// A bind mount of the zone.
#[derive(Clone, Debug)]
struct Mount {
    /// The target in the zone, as components.
    target: Vec<OsString>,
    /// The host path.
    source: PathBuf,
    read_only: bool,
}

/// A zone's file system as the zone sees it: its root plus its bind mounts.
#[derive(Clone, Debug)]
pub(crate) struct ZoneRoot {
    root: PathBuf,
    mounts: Vec<Mount>,
}

/// A path resolved inside a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The path in the zone, clean and with symlinks resolved, as components.
    pub zone: Vec<OsString>,
    /// Where it is on the host.
    pub host: PathBuf,
    /// Whether it is on a read-only bind mount.
    pub read_only: bool,
}

impl Resolved {
    fn zone_path(&self) -> String {
        zone_path(&self.zone)
    }
}

/// Resolves `path` inside `root` (no bind mounts): every symlink on the way
/// is followed relative to `root` (the last one only with `follow_last`),
/// `..` at the root stays at the root, more than 40 symlinks fail with
/// `ELOOP`. Missing components are kept as they are.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    ZoneRoot::new(root.to_path_buf(), Vec::new())
        .resolve(path, follow_last)
        .map(|r| r.host)
}

impl ZoneRoot {
    fn new(root: PathBuf, mounts: Vec<Mount>) -> ZoneRoot {
        ZoneRoot { root, mounts }
    }

    /// The file system whose root directory is `root`, with no bind mounts
    /// (a SmartOS zone's: the platform's own mounts are under its root).
    pub(crate) fn at(root: PathBuf) -> ZoneRoot {
        ZoneRoot::new(root, Vec::new())
    }

    /// The file system of the zone in `dir` with `spec`: the root file
    /// system, the driver's `/etc` files and the spec's bind mounts (later
    /// ones over earlier ones, as the runtime mounts them).
    fn of_zone(dir: &ZoneDir, spec: &ZoneSpec) -> ZoneRoot {
        let mut mounts = Vec::new();
        for (target, source) in [
            ("/etc/resolv.conf", dir.resolv_conf()),
            ("/etc/hostname", dir.hostname()),
            ("/etc/hosts", dir.hosts()),
        ] {
            mounts.push(Mount {
                target: split(target.as_bytes()),
                source,
                read_only: false,
            });
        }
        for bind in &spec.mounts {
            let target = split(bind.target.as_bytes());
            if target.is_empty() || target.iter().any(|c| c == "..") {
                continue;
            }
            mounts.push(Mount {
                target,
                source: bind
                    .source
                    .canonicalize()
                    .unwrap_or_else(|_| bind.source.clone()),
                read_only: bind.read_only,
            });
        }
        ZoneRoot::new(dir.rootfs(), mounts)
    }

    /// The mount `zone` is under (the longest target; the last of equals).
    fn mount_of(&self, zone: &[OsString]) -> Option<&Mount> {
        let mut best: Option<&Mount> = None;
        for mount in &self.mounts {
            if zone.starts_with(&mount.target)
                && best.is_none_or(|b| mount.target.len() >= b.target.len())
            {
                best = Some(mount);
            }
        }
        best
    }

    /// Where the clean zone path `zone` is on the host, and whether it is
    /// read-only; no symlink is followed.
    fn host_of(&self, zone: &[OsString]) -> (PathBuf, bool) {
        match self.mount_of(zone) {
            Some(mount) => {
                let mut host = mount.source.clone();
                host.extend(&zone[mount.target.len()..]);
                (host, mount.read_only)
            }
            None => {
                let mut host = self.root.clone();
                host.extend(zone);
                (host, false)
            }
        }
    }

    /// Whether `zone` is exactly a mount's target.
    fn is_mount_point(&self, zone: &[OsString]) -> bool {
        self.mounts.iter().any(|m| m.target == zone)
    }

    /// Resolves `path` (absolute, or relative to the zone's root).
    pub(crate) fn resolve(&self, path: &str, follow_last: bool) -> io::Result<Resolved> {
        self.resolve_parts(split(path.as_bytes()), follow_last)
    }

    fn resolve_parts(&self, parts: Vec<OsString>, follow_last: bool) -> io::Result<Resolved> {
        let mut done: Vec<OsString> = Vec::new();
        let mut todo: Vec<OsString> = parts.into_iter().rev().collect();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == "." {
                continue;
            }
            if part == ".." {
                done.pop();
                continue;
            }
            done.push(part);
            if todo.is_empty() && !follow_last {
                break;
            }
            let (host, _) = self.host_of(&done);
            let meta = match std::fs::symlink_metadata(&host) {
                Ok(meta) => meta,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            hops += 1;
            if hops > MAX_HOPS {
                return Err(rustix::io::Errno::LOOP.into());
            }
            let target = std::fs::read_link(&host)?.into_os_string().into_vec();
            done.pop();
            if target.starts_with(b"/") {
                done.clear();
            }
            todo.extend(split(&target).into_iter().rev());
        }
        let (host, read_only) = self.host_of(&done);
        Ok(Resolved {
            zone: done,
            host,
            read_only,
        })
    }

    /// Docker's stat of `path`: its last element is not followed, unless
    /// the path ends with `/` or `/.`.
    fn stat(&self, path: &str) -> io::Result<(Resolved, Metadata, PathStat)> {
        let follow_last = path.ends_with('/') || path.ends_with("/.") || path == ".";
        let resolved = self.resolve(path, follow_last)?;
        let meta = std::fs::symlink_metadata(&resolved.host)?;
        let mut lexical: Vec<OsString> = Vec::new();
        for part in split(path.as_bytes()) {
            if part == ".." {
                lexical.pop();
            } else {
                lexical.push(part);
            }
        }
        let name = lexical
            .last()
            .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
        let link_target = if meta.file_type().is_symlink() {
            self.resolve(path, true)?.zone_path()
        } else {
            String::new()
        };
        let stat = PathStat {
            name,
            size: meta.len(),
            mode: go_file_mode(meta.mode()),
            mtime: mtime(&meta),
            link_target,
        };
        Ok((resolved, meta, stat))
    }
}

pub(crate) fn mtime(meta: &Metadata) -> OffsetDateTime {
    meta.modified()
        .map(OffsetDateTime::from)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Maps an error about `path` of zone `id`: missing → `NoSuchPath`.
fn path_error(id: &str, path: &str) -> impl FnOnce(io::Error) -> ZoneError {
    let (id, path) = (id.to_string(), path.to_string());
    move |e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            ZoneError::NoSuchPath { id, path }
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            ZoneError::BadRequest(format!("{path}: too many levels of symbolic links"))
        }
        _ => ZoneError::Io {
            context: format!("{path} in zone {id}"),
            source: e,
        },
    }
}

/// The zone's file system, its root file system mounted (as it is from
/// create to delete; again after a reboot). A zone whose create did not
/// finish has none yet.
async fn open_root(d: &LinuxDriver, id: &str, op: &'static str) -> Result<ZoneRoot, ZoneError> {
    let lock = d.lock(id);
    let _guard = lock.lock().await;
    let (spec, info) = d.require(id).await?;
    if info.state == ZoneState::Configured {
        return Err(ZoneError::WrongState {
            id: id.to_string(),
            state: info.state,
            op,
        });
    }
    let dir = d.dir(id)?;
    blocking(move || {
        rootfs::mount(
            &spec.image.lower_dirs,
            &dir.upper(),
            &dir.work(),
            &dir.rootfs(),
        )?;
        Ok(ZoneRoot::of_zone(&dir, &spec))
    })
    .await
}

/// What is at `path` in zone `id`.
pub(crate) async fn stat_path(
    d: &LinuxDriver,
    id: &str,
    path: &str,
) -> Result<PathStat, ZoneError> {
    let root = open_root(d, id, "stat a path").await?;
    stat_in(root, id, path).await
}

/// What is at `path` in the file system `root` of zone `id`.
pub(crate) async fn stat_in(root: ZoneRoot, id: &str, path: &str) -> Result<PathStat, ZoneError> {
    let (id, path) = (id.to_string(), path.to_string());
    blocking(move || {
        root.stat(&path)
            .map(|(_, _, stat)| stat)
            .map_err(path_error(&id, &path))
    })
    .await
}

/// A tar archive of `path` in zone `id`, as `docker cp` reads it.
pub(crate) async fn archive(
    d: &LinuxDriver,
    id: &str,
    path: &str,
) -> Result<(PathStat, ByteStream), ZoneError> {
    let root = open_root(d, id, "archive a path").await?;
    archive_in(root, id, path).await
}

/// A tar archive of `path` in the file system `root` of zone `id`.
pub(crate) async fn archive_in(
    root: ZoneRoot,
    id: &str,
    path: &str,
) -> Result<(PathStat, ByteStream), ZoneError> {
    let dot = path == "." || path.ends_with("/.");
    let (id, path) = (id.to_string(), path.to_string());
    let (root, resolved, meta, stat) = blocking(move || {
        let (resolved, meta, stat) = root.stat(&path).map_err(path_error(&id, &path))?;
        Ok((root, resolved, meta, stat))
    })
    .await?;
    let contents_only = meta.is_dir() && (resolved.zone.is_empty() || dot);
    let name = PathBuf::from(&stat.name);
    let stream = produce(move |out| {
        let mut walk = TarWalk::new(out, &root, true);
        if contents_only {
            walk.contents(&resolved.zone, &resolved.host, None, &meta)?;
        } else {
            walk.entry(&resolved.host, &name, &meta)?;
            if meta.is_dir() {
                walk.contents(&resolved.zone, &resolved.host, Some(&name), &meta)?;
            }
        }
        walk.finish()
    });
    Ok((stat, stream))
}

/// The whole file system of zone `id` as a tar archive (`docker export`):
/// the root file system without bind mounts, and without what is under
/// `/proc`, `/sys` or any other mount point.
pub(crate) async fn export(d: &LinuxDriver, id: &str) -> Result<ByteStream, ZoneError> {
    let root = open_root(d, id, "export").await?;
    export_of(root).await
}

/// The file system `root` as a tar archive, without what is under `/proc`,
/// `/sys` or any other mount point.
pub(crate) async fn export_of(root: ZoneRoot) -> Result<ByteStream, ZoneError> {
    let host = root.root.clone();
    let meta = {
        let host = host.clone();
        blocking(move || {
            std::fs::symlink_metadata(&host)
                .map_err(ZoneError::io(format!("reading {}", host.display())))
        })
        .await?
    };
    Ok(produce(move |out| {
        let mut walk = TarWalk::new(out, &root, false);
        walk.contents(&[], &host, None, &meta)?;
        walk.finish()
    }))
}

/// Writes a tree of the zone into a tar archive.
struct TarWalk<'a, W: Write> {
    builder: tar::Builder<W>,
    root: &'a ZoneRoot,
    /// Follow the zone's bind mounts (copy) or not (export).
    mounts: bool,
    /// Files with more than one link already archived: (dev, ino) → name.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<'a, W: Write> TarWalk<'a, W> {
    fn new(out: W, root: &'a ZoneRoot, mounts: bool) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        TarWalk {
            builder,
            root,
            mounts,
            links: HashMap::new(),
        }
    }

    fn finish(self) -> io::Result<()> {
        let mut out = self.builder.into_inner()?;
        out.flush()
    }

    /// Archives what is in the directory `zone` (at `host`), named under
    /// `prefix`.
    fn contents(
        &mut self,
        zone: &[OsString],
        host: &Path,
        prefix: Option<&Path>,
        meta: &Metadata,
    ) -> io::Result<()> {
        if !self.mounts {
            // Export: what the runtime mounts is not the zone's.
            let top = zone.len() == 1 && (zone[0] == "proc" || zone[0] == "sys");
            if top {
                return Ok(());
            }
        }
        let mut names: Vec<OsString> = match std::fs::read_dir(host) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        names.sort();
        for name in names {
            let mut child_zone = zone.to_vec();
            child_zone.push(name.clone());
            let child_host = if self.mounts {
                self.root.host_of(&child_zone).0
            } else {
                host.join(&name)
            };
            let child_meta = match std::fs::symlink_metadata(&child_host) {
                Ok(m) => m,
                // Gone meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let child_name = match prefix {
                Some(prefix) => prefix.join(&name),
                None => PathBuf::from(&name),
            };
            self.entry(&child_host, &child_name, &child_meta)?;
            if child_meta.is_dir() {
                // Export skips the contents of mount points.
                if !self.mounts && child_meta.dev() != meta.dev() {
                    continue;
                }
                self.contents(&child_zone, &child_host, Some(&child_name), &child_meta)?;
            }
        }
        Ok(())
    }

    /// Archives one entry (a directory without its contents).
    fn entry(&mut self, host: &Path, name: &Path, meta: &Metadata) -> io::Result<()> {
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        header.set_mode(meta.mode() & 0o7777);
        if kind.is_dir() {
            header.set_size(0);
            let mut dir_name = name.as_os_str().to_os_string();
            dir_name.push("/");
            self.builder
                .append_data(&mut header, Path::new(&dir_name), io::empty())
        } else if kind.is_symlink() {
            header.set_size(0);
            let target = std::fs::read_link(host)?;
            self.builder.append_link(&mut header, name, target)
        } else if kind.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    let first = first.clone();
                    return self.builder.append_link(&mut header, name, first);
                }
                self.links.insert(key, name.to_path_buf());
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(host)?;
            let size = meta.len();
            // Exactly `size` bytes, whatever the file does meanwhile.
            let data = (&file).take(size).chain(io::repeat(0)).take(size);
            self.builder.append_data(&mut header, name, data)
        } else if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
            header.set_size(0);
            let rdev = meta.rdev();
            header.set_device_major(rustix::fs::major(rdev))?;
            header.set_device_minor(rustix::fs::minor(rdev))?;
            self.builder.append_data(&mut header, name, io::empty())
        } else {
            // Sockets cannot be archived (Docker skips them too).
            Ok(())
        }
    }
}

/// A byte stream produced by `f` on a blocking thread, through a bounded
/// pipe: nothing is held in memory beyond the pipe's buffer. An error of `f`
/// reaches the reader at the end instead of a silent truncation.
fn produce(f: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static) -> ByteStream {
    let (reader, writer) = tokio::io::duplex(64 * 1024);
    let (done, result) = tokio::sync::oneshot::channel();
    let mut bridge = SyncIoBridge::new(writer);
    tokio::task::spawn_blocking(move || {
        let outcome = f(&mut bridge).and_then(|()| bridge.shutdown());
        if let Err(e) = &outcome
            && e.kind() != io::ErrorKind::BrokenPipe
        {
            tracing::warn!(error = %e, "writing an archive failed");
        }
        drop(bridge);
        let _ = done.send(outcome);
    });
    Box::pin(Produced {
        reader,
        result: Some(result),
    })
}

/// The reading end of [`produce`].
struct Produced {
    reader: tokio::io::DuplexStream,
    result: Option<tokio::sync::oneshot::Receiver<io::Result<()>>>,
}

impl AsyncRead for Produced {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.reader).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {}
            other => return other,
        }
        let Some(result) = self.result.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let outcome = ready!(Pin::new(result).poll(cx));
        self.result = None;
        Poll::Ready(match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("the archive's writer failed")),
        })
    }
}

/// Unpacks the tar archive `tar` into the directory `path` of zone `id`.
pub(crate) async fn extract(
    d: &LinuxDriver,
    id: &str,
    path: &str,
    tar: ByteStream,
    options: ExtractOptions,
) -> Result<(), ZoneError> {
    let root = open_root(d, id, "extract an archive").await?;
    extract_in(root, id, path, tar, options).await
}

/// Unpacks the tar archive `tar` into the directory `path` of the file
/// system `root` of zone `id`.
pub(crate) async fn extract_in(
    root: ZoneRoot,
    id: &str,
    path: &str,
    tar: ByteStream,
    options: ExtractOptions,
) -> Result<(), ZoneError> {
    let (id, path) = (id.to_string(), path.to_string());
    let reader = SyncIoBridge::new(tar);
    blocking(move || unpack(&root, &id, &path, reader, options)).await
}

/// The components of a tar entry's name, `None` when it is absolute or has
/// a `..`.
fn entry_parts(name: &[u8]) -> Option<Vec<OsString>> {
    if name.starts_with(b"/") {
        return None;
    }
    let parts = split(name);
    (!parts.iter().any(|p| p == "..")).then_some(parts)
}

/// What an archive entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

fn unpack(
    root: &ZoneRoot,
    id: &str,
    path: &str,
    reader: impl Read,
    options: ExtractOptions,
) -> Result<(), ZoneError> {
    let dest = root.resolve(path, true).map_err(path_error(id, path))?;
    let meta = std::fs::symlink_metadata(&dest.host).map_err(path_error(id, path))?;
    if !meta.is_dir() {
        return Err(ZoneError::BadRequest(
            "extraction point is not a directory".to_string(),
        ));
    }
    let dest_path = dest.zone_path();
    let reading = || ZoneError::io("reading the archive");
    let mut archive = tar::Archive::new(reader);
    // Directories get their mtime once everything in them is written.
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries().map_err(reading())? {
        let mut entry = entry.map_err(reading())?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let outside =
            || ZoneError::BadRequest(format!("\"{shown}\" is outside of \"{dest_path}\""));
        let parts = entry_parts(&raw).ok_or_else(outside)?;
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            t if t.is_dir() => Kind::Dir,
            t if t.is_file() && raw.ends_with(b"/") => Kind::Dir,
            t if t.is_file() => Kind::File,
            t if t.is_symlink() => Kind::Symlink,
            t if t.is_hard_link() => Kind::HardLink,
            t if t.is_character_special() => Kind::Char,
            t if t.is_block_special() => Kind::Block,
            t if t.is_fifo() => Kind::Fifo,
            t => {
                tracing::debug!(entry = %shown, kind = ?t, "skipping an archive entry");
                continue;
            }
        };
        let Some((last, parents)) = parts.split_last() else {
            // `.`: the destination itself.
            continue;
        };
        let io_err = |what: &str| ZoneError::io(format!("{what} {shown} in zone {id}"));

        // Parents, created as needed, each resolved inside the zone.
        let mut dir = dest.zone.clone();
        for part in parents {
            let mut next = dir.clone();
            next.push(part.clone());
            let parent = root
                .resolve_parts(next, true)
                .map_err(io_err("resolving"))?;
            match std::fs::symlink_metadata(&parent.host) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(io_err("extracting")(io::Error::from(
                        io::ErrorKind::NotADirectory,
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if parent.read_only {
                        return Err(read_only());
                    }
                    std::fs::create_dir(&parent.host).map_err(io_err("creating a parent of"))?;
                }
                Err(e) => return Err(io_err("extracting")(e)),
            }
            dir = parent.zone;
        }
        dir.push(last.clone());
        let target = root
            .resolve_parts(dir, false)
            .map_err(io_err("resolving"))?;
        if target.read_only {
            return Err(read_only());
        }
        let host = target.host.clone();

        // What is there already.
        match std::fs::symlink_metadata(&host) {
            Ok(existing) => {
                let target_path = target.zone_path();
                if options.no_overwrite_dir_non_dir {
                    if existing.is_dir() && kind != Kind::Dir {
                        return Err(ZoneError::BadRequest(format!(
                            "cannot overwrite directory \"{target_path}\" with non-directory \"{dest_path}\""
                        )));
                    }
                    if !existing.is_dir() && kind == Kind::Dir {
                        return Err(ZoneError::BadRequest(format!(
                            "cannot overwrite non-directory \"{target_path}\" with directory \"{dest_path}\""
                        )));
                    }
                }
                if !(existing.is_dir() && kind == Kind::Dir) {
                    if root.is_mount_point(&target.zone) {
                        return Err(ZoneError::BadRequest(format!(
                            "cannot replace the mount point \"{target_path}\""
                        )));
                    }
                    if existing.is_dir() {
                        std::fs::remove_dir_all(&host)
                    } else {
                        std::fs::remove_file(&host)
                    }
                    .map_err(io_err("replacing"))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("extracting")(e)),
        }

        let mode = header.mode().map_err(reading())? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let (uid, gid) = if options.copy_uid_gid {
            (
                header.uid().map_err(reading())? as u32,
                header.gid().map_err(reading())? as u32,
            )
        } else {
            (0, 0)
        };
        let chown = |p: &Path| {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))
                .map_err(io_err("changing the owner of"))
        };
        let chmod = |p: &Path| chmod_nofollow(p, mode).map_err(io_err("changing the mode of"));
        match kind {
            Kind::Dir => {
                if std::fs::symlink_metadata(&host).is_err() {
                    std::fs::create_dir(&host).map_err(io_err("creating"))?;
                }
                chown(&host)?;
                chmod(&host)?;
                dir_times.push((host, mtime));
            }
            Kind::File => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&host)
                    .map_err(io_err("creating"))?;
                io::copy(&mut entry, &mut file).map_err(io_err("writing"))?;
                chown(&host)?;
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(io_err("changing the mode of"))?;
                set_mtime(&host, mtime).map_err(io_err("setting the time of"))?;
            }
            Kind::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| OsString::from_vec(l.into_owned()))
                    .unwrap_or_default();
                std::os::unix::fs::symlink(&link, &host).map_err(io_err("creating"))?;
                chown(&host)?;
                set_mtime(&host, mtime).map_err(io_err("setting the time of"))?;
            }
            Kind::HardLink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let link_parts = entry_parts(&link)
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        ZoneError::BadRequest(format!(
                            "invalid hardlink \"{}\" -> \"{}\"",
                            shown,
                            String::from_utf8_lossy(&link)
                        ))
                    })?;
                let mut source = dest.zone.clone();
                source.extend(link_parts);
                let source = root
                    .resolve_parts(source, false)
                    .map_err(io_err("resolving the link of"))?;
                std::fs::hard_link(&source.host, &host).map_err(io_err("linking"))?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let file_type = match kind {
                    Kind::Char => rustix::fs::FileType::CharacterDevice,
                    Kind::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &host,
                    file_type,
                    rustix::fs::Mode::from_raw_mode(mode),
                    dev,
                )
                .map_err(|e| io_err("creating")(e.into()))?;
                chown(&host)?;
                chmod(&host)?;
                set_mtime(&host, mtime).map_err(io_err("setting the time of"))?;
            }
        }
    }
    for (dir, mtime) in dir_times.into_iter().rev() {
        set_mtime(&dir, mtime).map_err(ZoneError::io(format!(
            "setting the time of {}",
            dir.display()
        )))?;
    }
    Ok(())
}

/// Sets the permission bits of `path` without following it if it is (or
/// became, by the zone's hand) a symlink: through an `O_PATH` descriptor.
fn chmod_nofollow(path: &Path, mode: u32) -> io::Result<()> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::os::fd::AsRawFd;
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
        return Ok(());
    }
    rustix::fs::chmod(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        Mode::from_raw_mode(mode),
    )?;
    Ok(())
}

fn read_only() -> ZoneError {
    ZoneError::BadRequest("mounted volume is marked read-only".to_string())
}

/// Sets the access and modification times of `path` (not following it).
fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let time = rustix::fs::Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Paths the runtime creates in the root file system for its own mounts
/// (Docker keeps them in an init layer, so `docker diff` never shows them):
/// left out of [`changes`] when they are only empty placeholders.
pub(crate) const PLACEHOLDERS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/etc",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
];

/// What changed in zone `id`'s file system against its image.
pub(crate) async fn changes(d: &LinuxDriver, id: &str) -> Result<Vec<Change>, ZoneError> {
    let (spec, _) = d.require(id).await?;
    let dir = d.dir(id)?;
    let upper = dir.upper();
    blocking(move || {
        diff(&upper, &spec.image.lower_dirs)
            .map_err(ZoneError::io(format!("comparing {}", upper.display())))
    })
    .await
}

/// Whether `meta` is an overlay whiteout (a 0/0 character device).
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the directory `path` is opaque (`trusted.overlay.opaque=y`).
fn is_opaque(path: &Path) -> bool {
    let mut value = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut value[..]),
        Ok(1) if value[0] == b'y'
    )
}

/// What one lower layer holds at a path.
enum InLayer {
    /// Deleted here (a whiteout, or a non-directory on the way): nothing
    /// below counts.
    Hidden,
    /// Not here; `opaque`: nor below (an opaque directory on the way).
    Absent { opaque: bool },
    /// Here, with its metadata; `opaque`: an opaque directory on the way.
    Present { meta: Metadata, opaque: bool },
}

fn in_layer(layer: &Path, parts: &[OsString]) -> InLayer {
    let Some((last, parents)) = parts.split_last() else {
        return match std::fs::symlink_metadata(layer) {
            Ok(meta) => InLayer::Present {
                meta,
                opaque: false,
            },
            Err(_) => InLayer::Absent { opaque: false },
        };
    };
    let mut path = layer.to_path_buf();
    let mut opaque = false;
    for part in parents {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if is_whiteout(&m) => return InLayer::Hidden,
            Ok(m) if m.is_dir() => opaque |= is_opaque(&path),
            Ok(_) => return InLayer::Hidden,
            Err(_) => return InLayer::Absent { opaque },
        }
    }
    path.push(last);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if is_whiteout(&m) => InLayer::Hidden,
        Ok(meta) => InLayer::Present { meta, opaque },
        Err(_) => InLayer::Absent { opaque },
    }
}

/// The path `parts` in the union of `lowers` (top first), as overlay
/// shows it.
fn lower_lookup(lowers: &[PathBuf], parts: &[OsString]) -> Option<Metadata> {
    for layer in lowers {
        match in_layer(layer, parts) {
            InLayer::Hidden => return None,
            InLayer::Present { meta, .. } => return Some(meta),
            InLayer::Absent { opaque: true } => return None,
            InLayer::Absent { opaque: false } => {}
        }
    }
    None
}

/// The names in directory `parts` of the union of `lowers`.
fn lower_children(lowers: &[PathBuf], parts: &[OsString]) -> BTreeSet<OsString> {
    let mut seen: BTreeMap<OsString, bool> = BTreeMap::new();
    for layer in lowers {
        let opaque = match in_layer(layer, parts) {
            InLayer::Hidden | InLayer::Absent { opaque: true } => break,
            InLayer::Absent { opaque: false } => continue,
            InLayer::Present { meta, .. } if !meta.is_dir() => break,
            InLayer::Present { opaque, .. } => opaque,
        };
        let mut dir = layer.to_path_buf();
        dir.extend(parts);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let present = entry.metadata().map(|m| !is_whiteout(&m)).unwrap_or(false);
                seen.entry(entry.file_name()).or_insert(present);
            }
        }
        if opaque || is_opaque(&dir) {
            break;
        }
    }
    seen.into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect()
}

/// The changes recorded in `upper` against `lowers` (top first), sorted by
/// path; see [`changes`].
fn diff(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    let mut changes: BTreeMap<Vec<OsString>, ChangeKind> = BTreeMap::new();
    if upper.is_dir() {
        walk_upper(upper, &mut Vec::new(), lowers, &mut changes)?;
    }
    // Every directory holding a change changed too.
    let found: Vec<Vec<OsString>> = changes.keys().cloned().collect();
    for path in found {
        for len in 1..path.len() {
            let parent = &path[..len];
            if !changes.contains_key(parent) {
                let kind = if lower_lookup(lowers, parent).is_some() {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                };
                changes.insert(parent.to_vec(), kind);
            }
        }
    }
    let mut list: Vec<Change> = changes
        .into_iter()
        .map(|(parts, kind)| Change {
            path: zone_path(&parts),
            kind,
        })
        .collect();
    list.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(list)
}

fn walk_upper(
    dir: &Path,
    zone: &mut Vec<OsString>,
    lowers: &[PathBuf],
    changes: &mut BTreeMap<Vec<OsString>, ChangeKind>,
) -> io::Result<()> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for name in names {
        let host = dir.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        zone.push(name.clone());
        if is_whiteout(&meta) {
            changes.insert(zone.clone(), ChangeKind::Deleted);
            zone.pop();
            continue;
        }
        let lower = lower_lookup(lowers, zone);
        let placeholder = lower.is_none()
            && PLACEHOLDERS.contains(&zone_path(zone).as_str())
            && (meta.is_dir() || (meta.is_file() && meta.len() == 0));
        if meta.is_dir() {
            let lower_dir = lower.as_ref().is_some_and(|l| l.is_dir());
            if lower_dir && is_opaque(&host) {
                // Replaced: what the image had in it is gone, unless the
                // upper dir has it again.
                changes.insert(zone.clone(), ChangeKind::Modified);
                for child in lower_children(lowers, zone) {
                    if std::fs::symlink_metadata(host.join(&child)).is_err() {
                        let mut deleted = zone.clone();
                        deleted.push(child);
                        changes.insert(deleted, ChangeKind::Deleted);
                    }
                }
            } else if !placeholder {
                match &lower {
                    None => {
                        changes.insert(zone.clone(), ChangeKind::Added);
                    }
                    Some(l)
                        if !l.is_dir()
                            || l.mode() != meta.mode()
                            || l.uid() != meta.uid()
                            || l.gid() != meta.gid() =>
                    {
                        changes.insert(zone.clone(), ChangeKind::Modified);
                    }
                    // Copied up only to hold a change below.
                    Some(_) => {}
                }
            }
            walk_upper(&host, zone, lowers, changes)?;
        } else if !placeholder {
            let kind = if lower.is_some() {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            changes.insert(zone.clone(), kind);
        }
        zone.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_with(build: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        build(&root);
        (dir, root)
    }

    #[test]
    fn go_file_modes_carry_docker_type_and_special_bits() {
        assert_eq!(go_file_mode(0o040_755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(0o120_777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(0o100_644), 0o644);
        assert_eq!(go_file_mode(0o010_600), (1 << 25) | 0o600);
        assert_eq!(go_file_mode(0o140_755), (1 << 24) | 0o755);
        assert_eq!(go_file_mode(0o060_660), (1 << 26) | 0o660);
        assert_eq!(go_file_mode(0o020_666), (1 << 26) | (1 << 21) | 0o666);
        assert_eq!(go_file_mode(0o104_755), (1 << 23) | 0o755);
        assert_eq!(go_file_mode(0o102_755), (1 << 22) | 0o755);
        assert_eq!(go_file_mode(0o041_777), (1 << 31) | (1 << 20) | 0o777);
    }

    #[test]
    fn symlinks_to_the_hosts_root_resolve_to_the_zones_root() {
        let (_tmp, root) = root_with(|root| {
            symlink("/", root.join("escape")).unwrap();
            symlink("../../../../", root.join("up")).unwrap();
            symlink("/etc/passwd", root.join("abs")).unwrap();
            symlink("../../../etc/shadow-of-host", root.join("etc/rel")).unwrap();
        });
        assert_eq!(
            resolve_in_root(&root, "/escape/etc/passwd", false).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, "/up/etc/passwd", false).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, "/../../etc/passwd", false).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, "/abs", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(&root, "/abs", false).unwrap(),
            root.join("abs")
        );
        assert_eq!(
            resolve_in_root(&root, "etc/rel", true).unwrap(),
            root.join("etc/shadow-of-host")
        );
        assert_eq!(resolve_in_root(&root, "/escape", true).unwrap(), root);
    }

    #[test]
    fn symlink_loops_fail_with_eloop_after_forty_hops() {
        let (_tmp, root) = root_with(|root| {
            symlink("b", root.join("a")).unwrap();
            symlink("a", root.join("b")).unwrap();
        });
        let error = resolve_in_root(&root, "/a/x", false).unwrap_err();
        assert_eq!(
            error.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
    }

    #[test]
    fn missing_components_resolve_lexically_inside_the_root() {
        let (_tmp, root) = root_with(|_| {});
        assert_eq!(
            resolve_in_root(&root, "/no/such/../file", true).unwrap(),
            root.join("no/file")
        );
    }

    #[test]
    fn paths_under_a_bind_mount_land_in_its_source_longest_target_first() {
        let (tmp, root) = root_with(|_| {});
        let outer = tmp.path().join("outer");
        let inner = tmp.path().join("inner");
        std::fs::create_dir_all(&outer).unwrap();
        std::fs::create_dir_all(&inner).unwrap();
        symlink("/etc", inner.join("up")).unwrap();
        let zone = ZoneRoot::new(
            root.clone(),
            vec![
                Mount {
                    target: split(b"/data"),
                    source: outer.clone(),
                    read_only: false,
                },
                Mount {
                    target: split(b"/data/in"),
                    source: inner.clone(),
                    read_only: true,
                },
            ],
        );
        let r = zone.resolve("/data/x", false).unwrap();
        assert_eq!((r.host, r.read_only), (outer.join("x"), false));
        let r = zone.resolve("/data/in/x", false).unwrap();
        assert_eq!((r.host, r.read_only), (inner.join("x"), true));
        // A symlink in a mount is the zone's: `/etc` is the zone's /etc.
        let r = zone.resolve("/data/in/up/passwd", false).unwrap();
        assert_eq!(r.host, root.join("etc/passwd"));
        assert_eq!(r.zone_path(), "/etc/passwd");
    }

    #[test]
    fn stat_reports_a_symlinks_target_as_the_zone_resolves_it() {
        let (_tmp, root) = root_with(|root| {
            symlink("../etc/passwd", root.join("etc/link")).unwrap();
        });
        let zone = ZoneRoot::new(root, Vec::new());
        let (_, _, stat) = zone.stat("/etc/link").unwrap();
        assert_eq!(stat.name, "link");
        assert_eq!(stat.link_target, "/etc/passwd");
        assert_ne!(stat.mode & go_mode::SYMLINK, 0);
        let (_, _, stat) = zone.stat("/etc").unwrap();
        assert_eq!(stat.mode & go_mode::DIR, go_mode::DIR);
        assert_eq!(zone.stat("/").unwrap().2.name, "/");
        assert_eq!(
            zone.stat("/nope").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn a_produced_stream_ends_with_the_writers_error_not_a_silent_truncation() {
        use tokio::io::AsyncReadExt;
        let mut ok = produce(|out| out.write_all(&[7; 100_000]));
        let mut bytes = Vec::new();
        ok.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(bytes, vec![7; 100_000]);

        let mut failing = produce(|out| {
            out.write_all(b"partial")?;
            Err(io::Error::other("disk on fire"))
        });
        let mut bytes = Vec::new();
        let error = failing.read_to_end(&mut bytes).await.unwrap_err();
        assert_eq!(error.to_string(), "disk on fire");
        assert_eq!(bytes, b"partial");
    }

    #[test]
    fn changes_mark_parents_modified_and_leave_out_runtime_placeholders() {
        let tmp = tempfile::tempdir().unwrap();
        let (upper, lower) = (tmp.path().join("upper"), tmp.path().join("lower"));
        for d in ["etc", "usr/lib", "srv"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::fs::write(lower.join("usr/lib/old"), "o").unwrap();
        for d in ["etc", "usr/lib/deep", "proc", "dev", "srv"] {
            std::fs::create_dir_all(upper.join(d)).unwrap();
        }
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        std::fs::write(upper.join("usr/lib/old"), "changed").unwrap();
        std::fs::write(upper.join("usr/lib/deep/new"), "n").unwrap();
        std::fs::set_permissions(upper.join("srv"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let got: Vec<(String, ChangeKind)> = diff(&upper, &[lower])
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("/srv".to_string(), ChangeKind::Modified),
                ("/usr".to_string(), ChangeKind::Modified),
                ("/usr/lib".to_string(), ChangeKind::Modified),
                ("/usr/lib/deep".to_string(), ChangeKind::Added),
                ("/usr/lib/deep/new".to_string(), ChangeKind::Added),
                ("/usr/lib/old".to_string(), ChangeKind::Modified),
            ]
        );
    }

    #[test]
    fn a_tree_archived_and_extracted_again_keeps_hard_links_symlinks_and_modes() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: extraction chowns to root");
            return;
        }
        let (_tmp, from) = root_with(|root| {
            std::fs::create_dir_all(root.join("srv/sub")).unwrap();
            std::fs::write(root.join("srv/sub/file"), "data").unwrap();
            std::fs::hard_link(root.join("srv/sub/file"), root.join("srv/hard")).unwrap();
            symlink("/etc/passwd", root.join("srv/link")).unwrap();
            std::fs::set_permissions(root.join("srv/sub"), std::fs::Permissions::from_mode(0o710))
                .unwrap();
        });
        let source = ZoneRoot::new(from.clone(), Vec::new());
        let (resolved, meta, stat) = source.stat("/srv").unwrap();
        assert_eq!(stat.name, "srv");
        let mut walk = TarWalk::new(Vec::new(), &source, false);
        walk.entry(&resolved.host, Path::new("srv"), &meta).unwrap();
        walk.contents(
            &resolved.zone,
            &resolved.host,
            Some(Path::new("srv")),
            &meta,
        )
        .unwrap();
        let tar = walk.builder.into_inner().unwrap();

        let (_tmp2, to) = root_with(|root| std::fs::create_dir(root.join("dest")).unwrap());
        let target = ZoneRoot::new(to.clone(), Vec::new());
        unpack(&target, "z", "/dest", &tar[..], ExtractOptions::default()).unwrap();
        let out = to.join("dest/srv");
        assert_eq!(
            std::fs::read_to_string(out.join("sub/file")).unwrap(),
            "data"
        );
        let hard = std::fs::metadata(out.join("hard")).unwrap();
        assert_eq!(hard.nlink(), 2);
        assert_eq!(
            hard.ino(),
            std::fs::metadata(out.join("sub/file")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(
            std::fs::metadata(out.join("sub")).unwrap().mode() & 0o7777,
            0o710
        );
    }

    #[test]
    fn entry_names_that_are_absolute_or_climb_are_refused() {
        assert_eq!(entry_parts(b"a/./b/"), Some(split(b"a/b")));
        assert_eq!(entry_parts(b"./"), Some(Vec::new()));
        assert_eq!(entry_parts(b"../evil"), None);
        assert_eq!(entry_parts(b"a/../../evil"), None);
        assert_eq!(entry_parts(b"/etc/passwd"), None);
    }

    #[test]
    fn lower_layers_hide_what_whiteouts_and_opaque_dirs_delete() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: whiteouts need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (top, base) = (tmp.path().join("top"), tmp.path().join("base"));
        for d in [&top, &base] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
            std::fs::create_dir_all(d.join("var/data")).unwrap();
        }
        std::fs::write(base.join("etc/motd"), "m").unwrap();
        std::fs::write(base.join("var/data/a"), "a").unwrap();
        std::fs::write(top.join("var/data/b"), "b").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            top.join("etc/motd"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        rustix::fs::lsetxattr(
            top.join("var/data"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let lowers = vec![top, base];
        assert!(lower_lookup(&lowers, &split(b"etc/motd")).is_none());
        assert!(lower_lookup(&lowers, &split(b"var/data/a")).is_none());
        assert!(lower_lookup(&lowers, &split(b"var/data/b")).is_some());
        assert!(lower_lookup(&lowers, &split(b"etc")).is_some());
        assert_eq!(
            lower_children(&lowers, &split(b"var/data")),
            BTreeSet::from([OsString::from("b")])
        );
        assert!(lower_children(&lowers, &split(b"etc")).is_empty());
    }
}
