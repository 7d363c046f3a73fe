//! Unpacking one image layer — a tar stream, plain or compressed with gzip or
//! zstd — into a directory, the way Docker's `archive.ApplyLayer` does.
//!
//! Two modes. [`Mode::Flatten`] applies the layer on top of a directory that
//! already holds the layers below it, so that after the last layer the
//! directory is the image's rootfs: OCI whiteouts delete (`.wh.NAME` removes
//! `NAME`, `.wh..wh..opq` empties its directory of everything the lower
//! layers put there, keeping what this layer adds, whichever order the tar
//! lists them in). [`Mode::OverlayLower`] unpacks the layer into its own
//! empty directory to serve as an overlayfs lower dir: whiteouts become
//! overlay whiteouts (a 0/0 character device, the `trusted.overlay.opaque=y`
//! xattr). While unpacking, the uncompressed stream is hashed into the
//! layer's DiffID; the caller compares it with the image config's
//! `rootfs.diff_ids` and throws the directory away on a mismatch — the
//! layer has been applied by then, since nothing is buffered.
//!
//! Safety: every entry is resolved below the root by directory file
//! descriptors. Leading `/` is stripped; a `..` that climbs above the root
//! is refused. Symlinks already in the root are never followed for the
//! entry itself (whatever is there is removed and replaced) and are
//! resolved *inside* the root, as under Docker's chroot, when they appear
//! among an entry's parents. Hard links must name a target inside the root.
//! Symlinks in the layer are data: created, never followed.
//!
//! Limits: device nodes are created only when running as root (otherwise,
//! or without `CAP_MKNOD`, they are skipped with a debug log, as Docker does
//! in a user namespace); ownership is applied only as root; xattrs the
//! filesystem refuses (`ENOTSUP`, `EPERM`) are skipped, and `trusted.overlay.*`
//! xattrs carried by the layer are dropped, since only whiteouts may speak to
//! overlayfs. AUFS metadata (`.wh..wh.plnk` and friends) is ignored. bzip2 and
//! xz layers are refused. A layer is trusted to be well-formed no further than
//! its tar headers: a stream that is cut short at a header boundary looks
//! complete to the tar reader, and only the DiffID shows it.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use sha2::{Digest, Sha256};
use tar::EntryType;
use tracing::debug;

/// How whiteouts in the layer are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apply the layer onto the union of the layers below: whiteouts delete
    /// from the directory. The result after the last layer is the rootfs.
    Flatten,
    /// Unpack the layer alone, as an overlayfs lower dir: `.wh.NAME` becomes
    /// a 0/0 character device `NAME`, `.wh..wh..opq` sets
    /// `trusted.overlay.opaque=y` on its directory.
    OverlayLower,
}

/// The compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    Uncompressed,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// The compression a layer media type names: OCI
    /// (`application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]`, also the
    /// non-distributable ones) and Docker schema2
    /// (`application/vnd.docker.image.rootfs[.foreign].diff.tar[.gzip]`).
    /// `None` for a media type that is not a tar layer this module reads.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        // Parameters (`; charset=…`) never change the compression.
        let media_type = media_type.split(';').next().unwrap_or_default().trim();
        if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("+zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::Uncompressed)
        } else {
            None
        }
    }

    /// The compression the first bytes of a blob show. Streams that are
    /// neither gzip nor zstd are taken as plain tar, except bzip2 and xz,
    /// which are recognised and refused.
    pub fn detect(magic: &[u8]) -> Result<Compression, LayerError> {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Ok(Compression::Zstd)
        } else if magic.starts_with(b"BZh") {
            Err(LayerError::UnsupportedCompression("bzip2"))
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Err(LayerError::UnsupportedCompression("xz"))
        } else {
            Ok(Compression::Uncompressed)
        }
    }
}

/// What unpacking one layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `sha256:` and the hex digest of the uncompressed tar stream (all of
    /// it, trailing padding included): the layer's DiffID, to compare with
    /// the image config's `rootfs.diff_ids`.
    pub diff_id: String,
    /// Length of the uncompressed tar stream in bytes.
    pub tar_size: u64,
    /// Bytes of regular-file content written.
    pub file_bytes: u64,
    /// Tar entries applied, whiteouts included, skipped ones not.
    pub entries: u64,
}

/// Why a layer could not be unpacked. Variants about an entry name it as
/// the archive does.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The blob is compressed with something other than gzip or zstd.
    #[error("layer is compressed with {0}, which is not supported (only gzip and zstd are)")]
    UnsupportedCompression(&'static str),
    /// The directory to unpack into could not be opened as a directory.
    #[error("cannot open the layer root {}: {source}", root.display())]
    Root {
        /// The directory given.
        root: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Reading, decompressing or parsing the stream failed: the blob is
    /// corrupt or truncated, or the reader failed.
    #[error("reading the layer stream: {0}")]
    Read(#[source] io::Error),
    /// The entry would reach outside the root: `..` above it, a hard link
    /// to outside it, a whiteout naming `..`, or a symlink loop among its
    /// parents.
    #[error("layer entry {path:?} refused: {reason}")]
    Unsafe {
        /// The entry's path as the archive gives it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The entry is not something a layer can hold: an unknown type, a bad
    /// header field, data shorter than its header says.
    #[error("layer entry {path:?} is malformed: {reason}")]
    Malformed {
        /// The entry's path as the archive gives it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem operation for the entry failed.
    #[error("layer entry {path:?}: {op}: {source}")]
    Io {
        /// The entry's path as the archive gives it.
        path: String,
        /// The operation that failed.
        op: &'static str,
        /// What the OS said.
        source: io::Error,
    },
}

/// Unpacks the layer read from `layer` into the directory `root`, which
/// must exist. `compression` `None` detects it from the first bytes. In
/// [`Mode::Flatten`], `root` holds the layers below (or nothing, for the
/// first); in [`Mode::OverlayLower`] it should be empty. The stream is read
/// to its end, so [`Summary::diff_id`] covers all of it.
///
/// On an error the directory is left half-applied: throw it away.
pub fn unpack(
    layer: impl Read,
    root: &Path,
    mode: Mode,
    compression: Option<Compression>,
) -> Result<Summary, LayerError> {
    let root_fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )
    .map_err(|e| LayerError::Root {
        root: root.to_path_buf(),
        source: e.into(),
    })?;
    let stream = decompress(layer, compression)?;
    // The buffer sits above the hasher: the tar reader asks for 512-byte
    // blocks, which should not each be a call into the decompressor.
    let mut archive = tar::Archive::new(BufReader::with_capacity(
        64 * 1024,
        DigestingReader::new(stream),
    ));
    let mut unpacker = Unpacker::new(root_fd, mode);
    for entry in archive.entries().map_err(LayerError::Read)? {
        let mut entry = entry.map_err(LayerError::Read)?;
        unpacker.apply(&mut entry)?;
    }
    unpacker.finish_directories()?;

    // The DiffID covers the whole stream, including the end-of-archive
    // blocks and any padding after them, which the tar reader leaves unread.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(LayerError::Read)?;
    let digesting = rest.into_inner();
    Ok(Summary {
        diff_id: format!("sha256:{}", hex::encode(digesting.hasher.finalize())),
        tar_size: digesting.len,
        file_bytes: unpacker.file_bytes,
        entries: unpacker.entries,
    })
}

/// Wraps `layer` in the decoder its compression needs.
fn decompress<'a>(
    mut layer: impl Read + 'a,
    compression: Option<Compression>,
) -> Result<Box<dyn Read + 'a>, LayerError> {
    let mut magic = [0u8; 6];
    let mut seen = 0;
    while seen < magic.len() {
        match layer.read(&mut magic[seen..]) {
            Ok(0) => break,
            Ok(n) => seen += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::Read(e)),
        }
    }
    let compression = match compression {
        Some(given) => given,
        None => Compression::detect(&magic[..seen])?,
    };
    let stream = io::Cursor::new(magic[..seen].to_vec()).chain(layer);
    Ok(match compression {
        Compression::Uncompressed => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::Decoder::new(stream).map_err(LayerError::Read)?),
    })
}

/// Hashes and counts what passes through it.
struct DigestingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R> DigestingReader<R> {
    fn new(inner: R) -> Self {
        DigestingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }
}

impl<R: Read> Read for DigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A path below the root, one name per component, no `.` or `..`.
type RelPath = Vec<OsString>;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: u32 = 40;
/// Deepest directory nesting removed or walked; deeper is refused rather
/// than risking the stack.
const MAX_DEPTH: usize = 4096;

/// An entry's metadata, read from its header before its data.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// A directory whose mode and mtime are applied once all entries are in,
/// since creating its contents would change the mtime and a read-only mode
/// could forbid them.
struct DeferredDir {
    path: RelPath,
    label: String,
    mode: u32,
    mtime: Timespec,
}

/// The state of one layer being applied.
struct Unpacker {
    root: OwnedFd,
    mode: Mode,
    privileged: bool,
    /// Paths (resolved, below the root) this layer created or merged into:
    /// what an opaque marker keeps. Only kept in [`Mode::Flatten`].
    unpacked: HashSet<RelPath>,
    dirs: Vec<DeferredDir>,
    file_bytes: u64,
    entries: u64,
}

impl Unpacker {
    fn new(root: OwnedFd, mode: Mode) -> Self {
        Unpacker {
            root,
            mode,
            privileged: rustix::process::geteuid().is_root(),
            unpacked: HashSet::new(),
            dirs: Vec::new(),
            file_bytes: 0,
            entries: 0,
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw_path = entry.path().map_err(LayerError::Read)?.into_owned();
        let label = raw_path.display().to_string();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            debug!(entry = label, "ignoring a PAX global header");
            return Ok(());
        }
        let Some(rel) = clean(&raw_path) else {
            return Err(unsafe_entry(&label, "its `..` climbs above the root"));
        };
        if let Some(first) = rel.first()
            && first.as_bytes().starts_with(AUFS_META_PREFIX)
            && !(rel.len() == 1 && first.as_bytes() == OPAQUE_MARKER)
        {
            debug!(entry = label, "ignoring AUFS metadata");
            return Ok(());
        }

        if let Some((name, parent)) = rel.split_last()
            && let Some(target) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX)
        {
            let meta = self.meta(entry, &label)?;
            if name.as_bytes() == OPAQUE_MARKER {
                self.opaque(parent, &label)?;
            } else {
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(unsafe_entry(&label, "a whiteout must name a file"));
                }
                self.whiteout(parent, OsStr::from_bytes(target), &meta, &label)?;
            }
            self.entries += 1;
            return Ok(());
        }

        let meta = self.meta(entry, &label)?;
        let Some((name, parent)) = rel.split_last() else {
            // The root itself: only its metadata can change.
            if kind != EntryType::Directory {
                return Err(malformed(&label, "the root can only be a directory"));
            }
            let root = self.reopen_root(&label)?;
            self.own_and_label(Target::Fd(root.as_fd()), &meta, &label)?;
            self.defer_dir(Vec::new(), &label, &meta);
            self.entries += 1;
            return Ok(());
        };

        let Some((dir, mut path)) = self.resolve_dir(parent, true, &label)? else {
            return Err(io_error(&label, "creating parents", Errno::NOENT.into()));
        };
        path.push(name.clone());
        let existing = match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(io_error(&label, "looking at what is there", e.into())),
        };
        // Whatever is in the way goes — a symlink included, which is thus
        // never followed — except a directory a directory merges into.
        let merge = existing == Some(FileType::Directory) && kind == EntryType::Directory;
        if existing.is_some() && !merge {
            remove_all_at(dir.as_fd(), name, 0)
                .map_err(|e| io_error(&label, "removing what is in the way", e))?;
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(entry, &dir, name, &meta, &label)?;
            }
            EntryType::Directory => {
                if !merge {
                    rfs::mkdirat(&dir, name, rfs::Mode::from_raw_mode(0o700))
                        .map_err(|e| io_error(&label, "creating directory", e.into()))?;
                }
                let fd = open_dir_at(dir.as_fd(), name)
                    .map_err(|e| io_error(&label, "opening directory", e.into()))?;
                self.own_and_label(Target::Fd(fd.as_fd()), &meta, &label)?;
                self.defer_dir(path.clone(), &label, &meta);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(LayerError::Read)?
                    .ok_or_else(|| malformed(&label, "a symlink without a target"))?;
                rfs::symlinkat(target.as_ref(), &dir, name)
                    .map_err(|e| io_error(&label, "creating symlink", e.into()))?;
                self.own_and_label(Target::At(dir.as_fd(), name), &meta, &label)?;
                set_times_at(dir.as_fd(), name, &meta, &label)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(LayerError::Read)?
                    .ok_or_else(|| malformed(&label, "a hard link without a target"))?;
                self.hard_link(&target, dir.as_fd(), name, &label)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.make_node(entry, kind, dir.as_fd(), name, &meta, &label)? {
                    return Ok(());
                }
            }
            other => {
                return Err(malformed(
                    &label,
                    &format!("unsupported entry type {other:?}"),
                ));
            }
        }
        if self.mode == Mode::Flatten {
            self.unpacked.insert(path);
        }
        self.entries += 1;
        Ok(())
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        label: &str,
    ) -> Result<Meta, LayerError> {
        let header = entry.header();
        let field = |what: &str, e: io::Error| malformed(label, &format!("bad {what}: {e}"));
        let mode = header.mode().map_err(|e| field("mode", e))? & 0o7777;
        let id = |what: &str, value: io::Result<u64>| -> Result<u32, LayerError> {
            let value = value.map_err(|e| field(what, e))?;
            u32::try_from(value)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| malformed(label, &format!("{what} {value} out of range")))
        };
        let uid = id("uid", header.uid())?;
        let gid = id("gid", header.gid())?;
        let header_mtime = header.mtime().map_err(|e| field("mtime", e))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(header_mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(LayerError::Read)? {
            for record in pax {
                let record = record.map_err(LayerError::Read)?;
                let key = record.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if name.starts_with(b"trusted.overlay.") {
                        debug!(entry = label, xattr = %String::from_utf8_lossy(name), "dropping an overlay xattr the layer carries");
                        continue;
                    }
                    xattrs.push((
                        OsString::from_vec(name.to_vec()),
                        record.value_bytes().to_vec(),
                    ));
                } else if key == b"mtime"
                    && let Some(precise) = record.value().ok().and_then(parse_pax_time)
                {
                    mtime = precise;
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// Opens the directory `components` names below the root, resolving
    /// symlinks among them as if the root were `/` (a `..` stops at the
    /// root). Missing directories are created (0755) when `create`, else
    /// the answer is `None`. Also returns the path as resolved.
    fn resolve_dir(
        &mut self,
        components: &[OsString],
        create: bool,
        label: &str,
    ) -> Result<Option<(OwnedFd, RelPath)>, LayerError> {
        let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
        let mut pending: Vec<OsString> = components.iter().rev().cloned().collect();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            match name.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let current = stack.last().map_or(self.root.as_fd(), |(fd, _)| fd.as_fd());
            match open_dir_at(current, &name) {
                Ok(fd) => stack.push((fd, name)),
                Err(Errno::NOENT) if create => {
                    rfs::mkdirat(current, &name, rfs::Mode::from_raw_mode(0o755))
                        .map_err(|e| io_error(label, "creating a parent directory", e.into()))?;
                    let fd = open_dir_at(current, &name)
                        .map_err(|e| io_error(label, "opening a parent directory", e.into()))?;
                    stack.push((fd, name));
                    if self.mode == Mode::Flatten {
                        self.unpacked
                            .insert(stack.iter().map(|(_, n)| n.clone()).collect());
                    }
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let target = match rfs::readlinkat(current, &name, Vec::new()) {
                        Ok(target) => target,
                        Err(Errno::INVAL) => {
                            return Err(io_error(
                                label,
                                "a parent is not a directory",
                                Errno::NOTDIR.into(),
                            ));
                        }
                        Err(e) => {
                            return Err(io_error(label, "reading a parent symlink", e.into()));
                        }
                    };
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(unsafe_entry(
                            label,
                            "too many symlinks among its parents (a loop?)",
                        ));
                    }
                    let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                    if target.is_absolute() {
                        stack.clear();
                    }
                    for component in target.components().rev() {
                        match component {
                            Component::Normal(n) => pending.push(n.to_os_string()),
                            Component::ParentDir => pending.push(OsString::from("..")),
                            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                        }
                    }
                }
                Err(e) => return Err(io_error(label, "opening a parent directory", e.into())),
            }
        }
        let path: RelPath = stack.iter().map(|(_, n)| n.clone()).collect();
        let fd = match stack.pop() {
            Some((fd, _)) => fd,
            None => self.reopen_root(label)?,
        };
        Ok(Some((fd, path)))
    }

    fn reopen_root(&self, label: &str) -> Result<OwnedFd, LayerError> {
        open_dir_at(self.root.as_fd(), ".")
            .map_err(|e| io_error(label, "opening the root", e.into()))
    }

    fn whiteout(
        &mut self,
        parent: &[OsString],
        target: &OsStr,
        meta: &Meta,
        label: &str,
    ) -> Result<(), LayerError> {
        match self.mode {
            Mode::Flatten => {
                // Nothing below the missing parent to delete.
                if let Some((dir, _)) = self.resolve_dir(parent, false, label)? {
                    remove_all_at(dir.as_fd(), target, 0)
                        .map_err(|e| io_error(label, "removing the whited-out path", e))?;
                }
            }
            Mode::OverlayLower => {
                let Some((dir, _)) = self.resolve_dir(parent, true, label)? else {
                    return Err(io_error(label, "creating parents", Errno::NOENT.into()));
                };
                remove_all_at(dir.as_fd(), target, 0)
                    .map_err(|e| io_error(label, "removing what is in the way", e))?;
                rfs::mknodat(
                    &dir,
                    target,
                    FileType::CharacterDevice,
                    rfs::Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(|e| io_error(label, "creating the overlay whiteout device", e.into()))?;
                if self.privileged {
                    rfs::chownat(
                        &dir,
                        target,
                        Some(Uid::from_raw(meta.uid)),
                        Some(Gid::from_raw(meta.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_error(label, "chown of the whiteout device", e.into()))?;
                }
            }
        }
        Ok(())
    }

    fn opaque(&mut self, parent: &[OsString], label: &str) -> Result<(), LayerError> {
        let Some((dir, mut path)) = self.resolve_dir(parent, true, label)? else {
            return Err(io_error(label, "creating parents", Errno::NOENT.into()));
        };
        match self.mode {
            Mode::Flatten => self
                .clear_opaque(dir.as_fd(), &mut path, 0)
                .map_err(|e| io_error(label, "emptying the opaque directory", e)),
            Mode::OverlayLower => {
                rfs::fsetxattr(&dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(|e| io_error(label, "setting trusted.overlay.opaque", e.into()))
            }
        }
    }

    /// Removes from `dir` everything this layer did not put there, keeping
    /// (and descending into) what it did.
    fn clear_opaque(
        &self,
        dir: BorrowedFd<'_>,
        path: &mut RelPath,
        depth: usize,
    ) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(io::Error::other("directories nested too deep"));
        }
        for name in list_dir(dir)? {
            path.push(name.clone());
            let name = name.as_os_str();
            if self.unpacked.contains(path) {
                match open_dir_at(dir, name) {
                    Ok(sub) => self.clear_opaque(sub.as_fd(), path, depth + 1)?,
                    Err(Errno::LOOP | Errno::NOTDIR) => {}
                    Err(e) => return Err(e.into()),
                }
            } else {
                remove_all_at(dir, name, 0)?;
            }
            path.pop();
        }
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        label: &str,
    ) -> Result<(), LayerError> {
        // EXCL|NOFOLLOW: whatever was there is gone, and nothing put there
        // since may redirect the write.
        let fd = rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rfs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_error(label, "creating file", e.into()))?;
        let mut file = File::from(fd);
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::Read(e)),
            };
            file.write_all(&buf[..n])
                .map_err(|e| io_error(label, "writing file data", e))?;
            written += n as u64;
        }
        if entry.header().entry_type() != EntryType::GNUSparse && written != entry.size() {
            return Err(malformed(
                label,
                &format!(
                    "truncated: the header says {} bytes, the stream held {written}",
                    entry.size()
                ),
            ));
        }
        self.file_bytes += written;
        let fd = file.as_fd();
        self.own_and_label(Target::Fd(fd), meta, label)?;
        rfs::fchmod(fd, rfs::Mode::from_raw_mode(meta.mode))
            .map_err(|e| io_error(label, "setting mode", e.into()))?;
        rfs::futimens(fd, &timestamps(meta))
            .map_err(|e| io_error(label, "setting mtime", e.into()))?;
        Ok(())
    }

    fn hard_link(
        &mut self,
        target: &Path,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        label: &str,
    ) -> Result<(), LayerError> {
        let target_display = target.display().to_string();
        let refuse = || {
            unsafe_entry(
                label,
                &format!("its hard link target {target_display:?} is outside the root"),
            )
        };
        let target = clean(target).ok_or_else(refuse)?;
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(malformed(label, "a hard link to the root"));
        };
        let Some((target_dir, _)) = self.resolve_dir(target_parent, false, label)? else {
            return Err(io_error(
                label,
                "hard link target missing",
                Errno::NOENT.into(),
            ));
        };
        // No AT_SYMLINK_FOLLOW: a symlink as target is linked, not followed.
        rfs::linkat(&target_dir, target_name, dir, name, AtFlags::empty())
            .map_err(|e| io_error(label, "creating hard link", e.into()))
    }

    /// Creates a device node or FIFO; `false` when skipped.
    fn make_node<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        kind: EntryType,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        label: &str,
    ) -> Result<bool, LayerError> {
        let header = entry.header();
        let (file_type, dev) = match kind {
            EntryType::Fifo => (FileType::Fifo, rfs::makedev(0, 0)),
            _ => {
                if !self.privileged {
                    debug!(entry = label, "skipping a device node: not running as root");
                    return Ok(false);
                }
                let number = |n: io::Result<Option<u32>>| {
                    n.map_err(|e| malformed(label, &format!("bad device number: {e}")))
                        .map(Option::unwrap_or_default)
                };
                let dev = rfs::makedev(
                    number(header.device_major())?,
                    number(header.device_minor())?,
                );
                let file_type = if kind == EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                (file_type, dev)
            }
        };
        match rfs::mknodat(dir, name, file_type, rfs::Mode::from_raw_mode(0o600), dev) {
            Ok(()) => {}
            Err(Errno::PERM) if kind != EntryType::Fifo => {
                debug!(entry = label, "skipping a device node: mknod not permitted");
                return Ok(false);
            }
            Err(e) => return Err(io_error(label, "mknod", e.into())),
        }
        self.own_and_label(Target::At(dir, name), meta, label)?;
        // A device or FIFO is not a symlink: chmodat cannot be redirected.
        rfs::chmodat(
            dir,
            name,
            rfs::Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(|e| io_error(label, "setting mode", e.into()))?;
        set_times_at(dir, name, meta, label)?;
        Ok(true)
    }

    /// Sets owner (as root) and xattrs. Owner first: chown clears setuid.
    fn own_and_label(
        &self,
        target: Target<'_>,
        meta: &Meta,
        label: &str,
    ) -> Result<(), LayerError> {
        if self.privileged {
            let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
            match target {
                Target::Fd(fd) => rfs::fchown(fd, uid, gid),
                Target::At(dir, name) => {
                    rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                }
            }
            .map_err(|e| io_error(label, "setting owner", e.into()))?;
        }
        for (key, value) in &meta.xattrs {
            let set = match target {
                Target::Fd(fd) => rfs::fsetxattr(fd, key.as_os_str(), value, XattrFlags::empty()),
                // lsetxattr does not follow the last component; the magic
                // link names the parent directory we hold.
                Target::At(dir, name) => {
                    let mut path = PathBuf::from(format!(
                        "/proc/self/fd/{}",
                        std::os::fd::AsRawFd::as_raw_fd(&dir)
                    ));
                    path.push(name);
                    rfs::lsetxattr(&path, key.as_os_str(), value, XattrFlags::empty())
                }
            };
            match set {
                Ok(()) => {}
                Err(e @ (Errno::NOTSUP | Errno::PERM)) => {
                    debug!(entry = label, xattr = ?key, error = %e, "skipping an xattr the filesystem refuses");
                }
                Err(e) => return Err(io_error(label, "setting xattr", e.into())),
            }
        }
        Ok(())
    }

    fn defer_dir(&mut self, path: RelPath, label: &str, meta: &Meta) {
        self.dirs.push(DeferredDir {
            path,
            label: label.to_owned(),
            mode: meta.mode,
            mtime: meta.mtime,
        });
    }

    /// Applies the directories' modes and mtimes, last entry for a path
    /// winning, deepest (latest in the tar) first.
    fn finish_directories(&mut self) -> Result<(), LayerError> {
        let dirs = std::mem::take(&mut self.dirs);
        let mut done: HashSet<&RelPath> = HashSet::new();
        for dir in dirs.iter().rev() {
            if !done.insert(&dir.path) {
                continue;
            }
            let fd = match dir.path.split_last() {
                None => self.reopen_root(&dir.label)?,
                Some((name, parent)) => {
                    let Some((parent, _)) = self.resolve_dir(parent, false, &dir.label)? else {
                        continue; // whited out since
                    };
                    match open_dir_at(parent.as_fd(), name) {
                        Ok(fd) => fd,
                        // Replaced by something else, or removed, since.
                        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => continue,
                        Err(e) => return Err(io_error(&dir.label, "opening directory", e.into())),
                    }
                }
            };
            rfs::fchmod(&fd, rfs::Mode::from_raw_mode(dir.mode))
                .map_err(|e| io_error(&dir.label, "setting mode", e.into()))?;
            let times = Timestamps {
                last_access: dir.mtime,
                last_modification: dir.mtime,
            };
            rfs::futimens(&fd, &times)
                .map_err(|e| io_error(&dir.label, "setting mtime", e.into()))?;
        }
        Ok(())
    }
}

/// Where metadata goes: an open file or directory, or a name in a
/// directory for what cannot be opened (symlinks, devices, FIFOs).
#[derive(Clone, Copy)]
enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

/// The lexically clean form of an entry path: leading `/` and `.` dropped,
/// `..` applied; `None` when `..` climbs above the root.
fn clean(path: &Path) -> Option<RelPath> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name.to_os_string()),
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Opens a directory `name` in `dir` without following a symlink there.
fn open_dir_at<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )
}

fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    let mut reader = rfs::Dir::read_from(dir)?;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    Ok(names)
}

/// Removes `name` from `dir`, recursively, never following a symlink;
/// nothing there is fine.
fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    if depth > MAX_DEPTH {
        return Err(io::Error::other("directories nested too deep"));
    }
    let sub = open_dir_at(dir, name)?;
    for child in list_dir(sub.as_fd())? {
        remove_all_at(sub.as_fd(), &child, depth + 1)?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

fn set_times_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    label: &str,
) -> Result<(), LayerError> {
    rfs::utimensat(dir, name, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_error(label, "setting mtime", e.into()))
}

fn timestamps(meta: &Meta) -> Timestamps {
    Timestamps {
        last_access: meta.mtime,
        last_modification: meta.mtime,
    }
}

/// A PAX time, `seconds[.fraction]`, to nanosecond precision.
fn parse_pax_time(value: &str) -> Option<Timespec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    if tv_sec < 0 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(Timespec {
        tv_sec,
        tv_nsec: digits.parse().ok()?,
    })
}

fn unsafe_entry(path: &str, reason: &str) -> LayerError {
    LayerError::Unsafe {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn malformed(path: &str, reason: &str) -> LayerError {
    LayerError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

fn io_error(path: &str, op: &'static str, source: io::Error) -> LayerError {
    LayerError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    const MTIME: u64 = 1_600_000_000;

    /// Builds layer tarballs entry by entry, writing names raw so hostile
    /// paths (`..`, absolute) go in as they are.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }

        fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> tar::Header {
            let mut header = tar::Header::new_gnu();
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(size);
            header.set_mtime(MTIME);
            header.set_uid(0);
            header.set_gid(0);
            header
        }

        fn push(mut self, mut header: tar::Header, data: &[u8]) -> Self {
            header.set_cksum();
            self.0
                .append(&header, data)
                .expect("append to an in-memory tar");
            self
        }

        fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
            let header = Self::header(path, EntryType::Regular, mode, data.len() as u64);
            self.push(header, data)
        }

        fn owned_file(self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
            let mut header = Self::header(path, EntryType::Regular, mode, 0);
            header.set_uid(uid);
            header.set_gid(gid);
            self.push(header, b"")
        }

        fn dir(self, path: &str, mode: u32) -> Self {
            let header = Self::header(path, EntryType::Directory, mode, 0);
            self.push(header, b"")
        }

        fn link(self, kind: EntryType, path: &str, target: &str) -> Self {
            let mut header = Self::header(path, kind, 0o777, 0);
            header
                .set_link_name_literal(target)
                .expect("a link name that fits");
            self.push(header, b"")
        }

        fn symlink(self, path: &str, target: &str) -> Self {
            self.link(EntryType::Symlink, path, target)
        }

        fn hard_link(self, path: &str, target: &str) -> Self {
            self.link(EntryType::Link, path, target)
        }

        fn char_device(self, path: &str, major: u32, minor: u32) -> Self {
            let mut header = Self::header(path, EntryType::Char, 0o666, 0);
            header.set_device_major(major).expect("a GNU header");
            header.set_device_minor(minor).expect("a GNU header");
            self.push(header, b"")
        }

        /// A PAX header carrying `records` for the entry that follows.
        fn pax(self, records: &[(&str, &[u8])]) -> Self {
            let mut data = Vec::new();
            for (key, value) in records {
                let body = [b" ", key.as_bytes(), b"=", value, b"\n"].concat();
                // The length prefix counts itself.
                let mut len = body.len() + 1;
                while len.to_string().len() + body.len() != len {
                    len += 1;
                }
                data.extend_from_slice(len.to_string().as_bytes());
                data.extend_from_slice(&body);
            }
            let header = Self::header("pax", EntryType::XHeader, 0o644, data.len() as u64);
            self.push(header, &data)
        }

        fn finish(self) -> Vec<u8> {
            self.0.into_inner().expect("finish an in-memory tar")
        }
    }

    fn gzip(tar: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(tar).expect("gzip in memory");
        encoder.finish().expect("gzip in memory")
    }

    fn zstd(tar: &[u8]) -> Vec<u8> {
        zstd::encode_all(tar, 1).expect("zstd in memory")
    }

    fn flatten(root: &Path, tar: &[u8]) -> Result<Summary, LayerError> {
        unpack(tar, root, Mode::Flatten, None)
    }

    fn xattr(path: &Path, name: &str) -> Result<Vec<u8>, Errno> {
        let mut buf = [0u8; 256];
        let len = rfs::lgetxattr(path, name, &mut buf[..])?;
        Ok(buf[..len].to_vec())
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path)
            .expect("lstat")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn files_dirs_symlinks_and_hard_links_land_with_their_modes() {
        let root = tempfile::tempdir().expect("tempdir");
        let tar = Layer::new()
            .dir("etc/", 0o750)
            .file("etc/hosts", b"127.0.0.1 localhost\n", 0o640)
            .file("bin/tool", b"#!/bin/sh\n", 0o755)
            .symlink("etc/link", "/etc/hosts")
            .hard_link("etc/hosts2", "etc/hosts")
            .dir("ro/", 0o555)
            .file("ro/inside", b"x", 0o600)
            .finish();
        let summary = flatten(root.path(), &tar).expect("unpack");
        let r = root.path();

        assert_eq!(
            fs::read(r.join("etc/hosts")).expect("read"),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(mode_of(&r.join("etc")), 0o750);
        assert_eq!(mode_of(&r.join("etc/hosts")), 0o640);
        assert_eq!(mode_of(&r.join("bin/tool")), 0o755);
        assert_eq!(mode_of(&r.join("bin")), 0o755, "an implied parent is 0755");
        assert_eq!(
            fs::read_link(r.join("etc/link")).expect("readlink"),
            Path::new("/etc/hosts")
        );
        let hosts = fs::metadata(r.join("etc/hosts")).expect("stat");
        let hosts2 = fs::metadata(r.join("etc/hosts2")).expect("stat");
        assert_eq!(hosts.ino(), hosts2.ino(), "a hard link shares the inode");
        assert_eq!(hosts.nlink(), 2);
        assert_eq!(hosts.mtime(), MTIME as i64);
        // A read-only directory still received its file, and its mode and
        // mtime survived that.
        assert_eq!(fs::read(r.join("ro/inside")).expect("read"), b"x");
        assert_eq!(mode_of(&r.join("ro")), 0o555);
        assert_eq!(
            fs::metadata(r.join("ro")).expect("stat").mtime(),
            MTIME as i64
        );
        assert_eq!(
            fs::metadata(r.join("etc")).expect("stat").mtime(),
            MTIME as i64
        );
        assert_eq!(summary.entries, 7);
        assert_eq!(summary.file_bytes, 20 + 10 + 1);
    }

    #[test]
    fn pax_xattrs_and_precise_mtimes_land_on_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let tar = Layer::new()
            .pax(&[
                ("SCHILY.xattr.user.colour", b"blue"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("mtime", b"1600000000.25"),
            ])
            .file("f", b"data", 0o644)
            .finish();
        flatten(root.path(), &tar).expect("unpack");
        let path = root.path().join("f");
        let value = xattr(&path, "user.colour").expect("the user xattr");
        assert_eq!(value, b"blue");
        assert_eq!(
            xattr(&path, OVERLAY_OPAQUE_XATTR).err(),
            Some(Errno::NODATA),
            "overlay xattrs from the layer are dropped"
        );
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (MTIME as i64, 250_000_000)
        );
    }

    #[test]
    fn the_diff_id_is_the_sha256_of_the_uncompressed_tar() {
        let mut tar = Layer::new().file("a", b"hello", 0o644).finish();
        // Padding after the end-of-archive blocks is part of the DiffID.
        tar.extend_from_slice(&[0u8; 4096]);
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        for blob in [tar.clone(), gzip(&tar), zstd(&tar)] {
            let root = tempfile::tempdir().expect("tempdir");
            let summary = flatten(root.path(), &blob).expect("unpack");
            assert_eq!(summary.diff_id, expected);
            assert_eq!(summary.tar_size, tar.len() as u64);
        }
    }

    #[test]
    fn gzip_zstd_and_plain_layers_all_unpack_detected_or_by_media_type() {
        let tar = Layer::new().file("dir/file", b"content", 0o644).finish();
        let cases = [
            (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            (
                gzip(&tar),
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (zstd(&tar), "application/vnd.oci.image.layer.v1.tar+zstd"),
        ];
        for (blob, media_type) in cases {
            let compression = Compression::from_media_type(media_type);
            assert!(compression.is_some(), "{media_type} is a layer media type");
            for given in [None, compression] {
                let root = tempfile::tempdir().expect("tempdir");
                unpack(&blob[..], root.path(), Mode::Flatten, given).expect("unpack");
                assert_eq!(
                    fs::read(root.path().join("dir/file")).expect("read"),
                    b"content"
                );
            }
        }
    }

    #[test]
    fn media_types_name_their_compression() {
        use Compression::*;
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Some(Uncompressed)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Some(Zstd),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/vnd.oci.image.config.v1+json", None),
        ];
        for (media_type, expected) in cases {
            assert_eq!(
                Compression::from_media_type(media_type),
                expected,
                "{media_type}"
            );
        }
        assert!(matches!(
            Compression::detect(b"BZh91AY"),
            Err(LayerError::UnsupportedCompression("bzip2"))
        ));
    }

    #[test]
    fn a_whiteout_deletes_a_file_and_a_directory_from_a_lower_layer() {
        let root = tempfile::tempdir().expect("tempdir");
        let lower = Layer::new()
            .file("a/x", b"x", 0o644)
            .file("a/d/inner/deep", b"deep", 0o644)
            .file("a/keep", b"keep", 0o644)
            .finish();
        flatten(root.path(), &lower).expect("lower");
        let upper = Layer::new()
            .file("a/.wh.x", b"", 0o644)
            .file("a/.wh.d", b"", 0o644)
            .finish();
        let summary = flatten(root.path(), &upper).expect("upper");
        assert_eq!(names(&root.path().join("a")), ["keep"]);
        assert_eq!(summary.entries, 2);
    }

    #[test]
    fn an_opaque_directory_keeps_only_this_layers_entries_with_the_marker_first_or_last() {
        for marker_first in [true, false] {
            let root = tempfile::tempdir().expect("tempdir");
            let lower = Layer::new()
                .file("d/old", b"old", 0o644)
                .file("d/sub/old", b"old", 0o644)
                .file("other/file", b"other", 0o644)
                .finish();
            flatten(root.path(), &lower).expect("lower");
            let mut upper = Layer::new().dir("d/", 0o755);
            if marker_first {
                upper = upper.file("d/.wh..wh..opq", b"", 0o644);
            }
            upper = upper
                .file("d/new", b"new", 0o644)
                .dir("d/sub/", 0o755)
                .file("d/sub/new", b"n", 0o644);
            if !marker_first {
                upper = upper.file("d/.wh..wh..opq", b"", 0o644);
            }
            flatten(root.path(), &upper.finish()).expect("upper");
            let r = root.path();
            assert_eq!(
                names(&r.join("d")),
                ["new", "sub"],
                "marker first: {marker_first}"
            );
            assert_eq!(
                names(&r.join("d/sub")),
                ["new"],
                "marker first: {marker_first}"
            );
            assert_eq!(names(&r.join("other")), ["file"], "siblings are untouched");
        }
    }

    #[test]
    fn overlay_lower_mode_makes_whiteout_devices_and_opaque_xattrs() {
        if !is_root() {
            eprintln!("skipped: overlay whiteouts need root (mknod, trusted.* xattrs)");
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let tar = Layer::new()
            .file("a/.wh.gone", b"", 0o644)
            .dir("d/", 0o755)
            .file("d/.wh..wh..opq", b"", 0o644)
            .file("d/f", b"f", 0o644)
            .file("e/.wh..wh..opq", b"", 0o644)
            .dir("e/", 0o711)
            .finish();
        unpack(&tar[..], root.path(), Mode::OverlayLower, None).expect("unpack");
        let r = root.path();
        let gone = fs::symlink_metadata(r.join("a/gone")).expect("the whiteout device");
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        assert_eq!(names(&r.join("a")), ["gone"]);
        for dir in ["d", "e"] {
            let value = xattr(&r.join(dir), OVERLAY_OPAQUE_XATTR).expect("the opaque xattr");
            assert_eq!(value, b"y", "{dir}");
        }
        assert_eq!(names(&r.join("d")), ["f"]);
        assert_eq!(mode_of(&r.join("e")), 0o711);
    }

    #[test]
    fn dot_dot_and_absolute_paths_never_write_outside_the_root() {
        let parent = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("root");
        fs::create_dir(&root).expect("mkdir root");

        for hostile in ["../../escape", "../escape", "a/../../escape"] {
            let tar = Layer::new().file(hostile, b"pwned", 0o644).finish();
            let err = flatten(&root, &tar).expect_err(hostile);
            assert!(matches!(err, LayerError::Unsafe { .. }), "{hostile}: {err}");
            assert!(
                err.to_string().contains(hostile),
                "the error names the entry: {err}"
            );
        }
        let tar = Layer::new().file("/abs/path", b"inside", 0o644).finish();
        flatten(&root, &tar).expect("an absolute path is taken as below the root");
        assert_eq!(fs::read(root.join("abs/path")).expect("read"), b"inside");

        assert_eq!(names(parent.path()), ["root"], "nothing beside the root");
        assert!(!parent.path().parent().expect("tmp").join("escape").exists());
    }

    #[test]
    fn a_symlink_to_outside_followed_by_an_entry_through_it_does_not_write_outside() {
        let parent = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("root");
        let outside = parent.path().join("outside");
        fs::create_dir(&root).expect("mkdir root");
        fs::create_dir(&outside).expect("mkdir outside");
        fs::write(outside.join("victim"), b"precious").expect("write victim");
        let outside_abs = outside.to_str().expect("utf-8 temp path");

        let tar = Layer::new()
            .symlink("a", outside_abs)
            .file("a/passwd", b"pwned", 0o644)
            .symlink("b", "../../../../outside")
            .file("b/passwd", b"pwned", 0o644)
            .symlink("c", &format!("{outside_abs}/victim"))
            .finish();
        flatten(&root, &tar).expect("unpack");
        // A later layer: the symlinks are already in the root.
        let tar = Layer::new()
            .file("a/later", b"pwned", 0o644)
            .file("a/.wh.victim", b"", 0o644)
            .file("c", b"replaces the symlink", 0o644)
            .finish();
        flatten(&root, &tar).expect("unpack on top");

        assert_eq!(
            names(&outside),
            ["victim"],
            "nothing written or removed outside"
        );
        assert_eq!(fs::read(outside.join("victim")).expect("read"), b"precious");
        // The entries landed where a chroot would have put them.
        let contained = root.join(outside_abs.trim_start_matches('/'));
        assert_eq!(names(&contained), ["later", "passwd"]);
        assert_eq!(names(&root.join("outside")), ["passwd"]);
        assert!(
            fs::symlink_metadata(root.join("c"))
                .expect("lstat")
                .is_file()
        );
    }

    #[test]
    fn a_hard_link_to_a_path_outside_the_root_is_refused() {
        let parent = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("root");
        fs::create_dir(&root).expect("mkdir root");

        let tar = Layer::new().hard_link("evil", "../../etc/passwd").finish();
        let err = flatten(&root, &tar).expect_err("an escaping hard link");
        assert!(matches!(err, LayerError::Unsafe { .. }), "{err}");
        assert!(err.to_string().contains("evil"), "{err}");

        // Through a symlink, the target is looked for inside the root.
        let tar = Layer::new()
            .symlink("a", "/etc")
            .hard_link("evil2", "a/passwd")
            .finish();
        let err = flatten(&root, &tar).expect_err("no etc/passwd in the root");
        assert!(matches!(err, LayerError::Io { .. }), "{err}");
        assert_eq!(names(&root), ["a"]);
    }

    #[test]
    fn a_whiteout_naming_dot_dot_is_refused() {
        let parent = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("root");
        fs::create_dir_all(root.join("a")).expect("mkdir");
        let tar = Layer::new().file("a/.wh..", b"", 0o644).finish();
        let err = flatten(&root, &tar).expect_err("a whiteout of ..");
        assert!(matches!(err, LayerError::Unsafe { .. }), "{err}");
        assert_eq!(names(&root), ["a"]);
    }

    #[test]
    fn setuid_and_setgid_bits_and_ownership_are_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let tar = Layer::new()
            .owned_file("bin/su", 0o4755, 1234, 5678)
            .owned_file("bin/wall", 0o2755, 0, 5)
            .char_device("dev/null", 1, 3)
            .finish();
        flatten(root.path(), &tar).expect("unpack");
        let r = root.path();
        assert_eq!(mode_of(&r.join("bin/su")), 0o4755);
        if !is_root() {
            eprintln!("skipped the ownership and device checks: not root");
            return;
        }
        assert_eq!(mode_of(&r.join("bin/wall")), 0o2755);
        let su = fs::metadata(r.join("bin/su")).expect("stat");
        assert_eq!((su.uid(), su.gid()), (1234, 5678));
        let null = fs::symlink_metadata(r.join("dev/null")).expect("the device");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rfs::makedev(1, 3));
        assert_eq!(mode_of(&r.join("dev/null")), 0o666);
    }

    #[test]
    fn a_truncated_or_corrupt_archive_is_an_error_not_a_panic() {
        let tar = Layer::new().file("big", &vec![7u8; 10_000], 0o644).finish();
        let compressed = gzip(&tar);
        let mut bad_checksum = tar.clone();
        bad_checksum[0] ^= 0x20;
        let mut garbage_gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        garbage_gzip.extend_from_slice(&[0xff; 64]);
        let mut garbage_zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
        garbage_zstd.extend_from_slice(&[0xff; 64]);
        let cases: [(&str, &[u8]); 5] = [
            ("truncated tar", &tar[..3000]),
            ("truncated gzip", &compressed[..compressed.len() / 2]),
            ("bad header checksum", &bad_checksum),
            ("garbage gzip", &garbage_gzip),
            ("garbage zstd", &garbage_zstd),
        ];
        for (what, blob) in cases {
            let root = tempfile::tempdir().expect("tempdir");
            match flatten(root.path(), blob) {
                Ok(summary) => panic!("{what}: unpacked as {summary:?}"),
                Err(err) => eprintln!("{what}: {err}"),
            }
        }
    }
}
