//! A Docker image as SmartOS zones use it: a chain of ZFS datasets, one per
//! layer, each a clone of the one below with its layer applied, snapshotted
//! `@final`, and known to imgadm by a manifest, so that `vmadm create`
//! takes the top one as `image_uuid` and clones it for the zone. Layers
//! shared between images are installed once: a layer's dataset is named
//! after its chain id (the OCI `ChainID`: the layer and everything under
//! it), so the same stack always gives the same datasets.
//!
//! Installing is idempotent and safe to repeat after a crash: a layer is
//! done when its `@final` snapshot exists (taken last); a dataset without
//! it is a half-applied layer and is destroyed and made again.
//!
//! Layers come from the node's image store, unpacked for overlay (see
//! `sdc_docker_images::layer`): whiteouts are 0/0 character devices and
//! opaque directories carry `trusted.overlay.opaque=y`. Applying one to a
//! clone deletes what a whiteout names and empties an opaque directory
//! before copying the layer's own entries, as Docker's `ApplyLayer` does.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::commands::{Commands, Tool};
use crate::docker::uuid_of_hex;
use crate::driver::ZoneError;

/// One layer of a chain: its unpacked directory and its dataset's UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLayer {
    /// The unpacked layer (an overlay lower directory).
    pub dir: PathBuf,
    /// The layer's DiffID (`sha256:…`).
    pub diff_id: String,
    /// The UUID of its dataset and imgadm image: from its chain id.
    pub uuid: String,
}

/// The chain of `lower_dirs` (top first, named by their DiffID's hex as
/// the image store names them), bottom first.
pub fn chain(lower_dirs: &[PathBuf]) -> Result<Vec<ChainLayer>, ZoneError> {
    let mut chain_id = String::new();
    let mut layers = Vec::with_capacity(lower_dirs.len());
    for dir in lower_dirs.iter().rev() {
        let hex = dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                ZoneError::InvalidSpec(format!(
                    "image layer directory {} is not named by its DiffID",
                    dir.display()
                ))
            })?;
        let diff_id = format!("sha256:{hex}");
        chain_id = if chain_id.is_empty() {
            diff_id.clone()
        } else {
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{chain_id} {diff_id}")))
            )
        };
        let uuid = uuid_of_hex(chain_id.trim_start_matches("sha256:")).ok_or_else(|| {
            ZoneError::InvalidSpec(format!("chain id {chain_id} is not a sha256 digest"))
        })?;
        layers.push(ChainLayer {
            dir: dir.clone(),
            diff_id,
            uuid,
        });
    }
    Ok(layers)
}

/// Where the chain is installed and how.
pub struct Installer<'a> {
    /// The platform tools.
    pub commands: &'a Commands,
    /// The pool (`zones`).
    pub zpool: &'a str,
    /// imgadm's database directory.
    pub imgadm_db: &'a Path,
}

impl Installer<'_> {
    /// Installs every layer of `layers` (bottom first) not installed yet;
    /// the UUID of the top one, the zone's `image_uuid`. `image` names the
    /// Docker image in the manifests; `os` is its `os`.
    pub async fn install(
        &self,
        layers: &[ChainLayer],
        image: &str,
        os: &str,
    ) -> Result<String, ZoneError> {
        let mut parent: Option<&ChainLayer> = None;
        for layer in layers {
            if !layer.dir.is_dir() {
                return Err(ZoneError::ImageMissing {
                    path: layer.dir.display().to_string(),
                });
            }
            let dataset = self.dataset(&layer.uuid);
            if !self.exists(&format!("{dataset}@final")).await? {
                self.install_layer(layer, parent, image, os).await?;
            }
            parent = Some(layer);
        }
        parent
            .map(|top| top.uuid.clone())
            .ok_or_else(|| ZoneError::InvalidSpec(format!("image {image} has no layers")))
    }

    fn dataset(&self, uuid: &str) -> String {
        format!("{}/{uuid}", self.zpool)
    }

    async fn exists(&self, name: &str) -> Result<bool, ZoneError> {
        match self
            .commands
            .run(
                Tool::Zfs,
                &["list", "-H", "-o", "name", "-t", "all", name],
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(ZoneError::Runtime { message, .. }) if message.contains("does not exist") => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn install_layer(
        &self,
        layer: &ChainLayer,
        parent: Option<&ChainLayer>,
        image: &str,
        os: &str,
    ) -> Result<(), ZoneError> {
        let dataset = self.dataset(&layer.uuid);
        if self.exists(&dataset).await? {
            tracing::info!(%dataset, "destroying a layer dataset left half applied");
            self.commands
                .run(Tool::Zfs, &["destroy", "-r", &dataset], None)
                .await?;
        }
        match parent {
            None => {
                self.commands
                    .run(Tool::Zfs, &["create", &dataset], None)
                    .await?
            }
            Some(parent) => {
                let origin = format!("{}@final", self.dataset(&parent.uuid));
                self.commands
                    .run(Tool::Zfs, &["clone", &origin, &dataset], None)
                    .await?
            }
        };
        let mountpoint = self
            .commands
            .run(
                Tool::Zfs,
                &["get", "-H", "-o", "value", "mountpoint", &dataset],
                None,
            )
            .await?;
        let mountpoint = PathBuf::from(String::from_utf8_lossy(&mountpoint.stdout).trim());
        let root = mountpoint.join("root");
        let source = layer.dir.clone();
        tokio::task::spawn_blocking(move || apply_layer(&source, &root))
            .await
            .map_err(|e| ZoneError::Runtime {
                op: "applying a layer".into(),
                message: e.to_string(),
            })?
            .map_err(ZoneError::io(format!(
                "applying layer {} to dataset {dataset}",
                layer.diff_id
            )))?;
        self.write_manifest(layer, parent, image, os)?;
        self.commands
            .run(Tool::Zfs, &["snapshot", &format!("{dataset}@final")], None)
            .await?;
        tracing::info!(%dataset, diff_id = %layer.diff_id, "image layer installed");
        Ok(())
    }

    /// imgadm's record of the layer's image: a `docker` image whose origin
    /// is the layer below, as Triton's IMGAPI describes Docker layers.
    fn write_manifest(
        &self,
        layer: &ChainLayer,
        parent: Option<&ChainLayer>,
        image: &str,
        os: &str,
    ) -> Result<(), ZoneError> {
        let mut manifest = json!({
            "v": 2,
            "uuid": layer.uuid,
            "name": "docker-layer",
            "version": layer.diff_id.trim_start_matches("sha256:").get(..12).unwrap_or_default(),
            // vmadm takes `docker` (and `lx-dataset`) images for lx zones,
            // `zone-dataset` ones for joyent-minimal.
            "type": if os == "smartos" { "zone-dataset" } else { "docker" },
            "os": if os.is_empty() { "linux" } else { os },
            "state": "active",
            "disabled": false,
            "public": false,
            "tags": {
                "docker:repo": image,
                "docker:diffid": layer.diff_id,
            },
        });
        if let Some(parent) = parent {
            manifest["origin"] = json!(parent.uuid);
        }
        let record = json!({ "manifest": manifest, "zpool": self.zpool });
        std::fs::create_dir_all(self.imgadm_db).map_err(ZoneError::io(format!(
            "creating {}",
            self.imgadm_db.display()
        )))?;
        let path = self
            .imgadm_db
            .join(format!("{}-{}.json", self.zpool, layer.uuid));
        let temp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| ZoneError::Corrupt {
            path: path.display().to_string(),
            source: e,
        })?;
        std::fs::write(&temp, bytes)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(ZoneError::io(format!("writing {}", path.display())))
    }
}

/// Applies the unpacked layer `source` onto `root`: whiteouts delete,
/// opaque directories are emptied first, everything else is copied with
/// its mode, owner and times.
pub fn apply_layer(source: &Path, root: &Path) -> io::Result<()> {
    std::fs::create_dir_all(root)?;
    apply_dir(source, root)
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut [0u8; 1][..]).is_ok_and(|n| n == 1)
}

fn apply_dir(source: &Path, target: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(source)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = target.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        if is_whiteout(&meta) {
            remove_any(&to)?;
            continue;
        }
        let existing = std::fs::symlink_metadata(&to).ok();
        if meta.is_dir() {
            match &existing {
                Some(m) if m.is_dir() => {
                    if is_opaque(&from) {
                        for old in std::fs::read_dir(&to)? {
                            remove_any(&old?.path())?;
                        }
                    }
                }
                Some(_) => {
                    remove_any(&to)?;
                    std::fs::create_dir(&to)?;
                }
                None => std::fs::create_dir(&to)?,
            }
            apply_dir(&from, &to)?;
            copy_attributes(&meta, &to)?;
            continue;
        }
        if existing.is_some() {
            remove_any(&to)?;
        }
        let kind = meta.file_type();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            rustix::fs::chownat(
                rustix::fs::CWD,
                &to,
                Some(rustix::process::Uid::from_raw(meta.uid())),
                Some(rustix::process::Gid::from_raw(meta.gid())),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?;
            continue;
        }
        if kind.is_file() {
            std::fs::copy(&from, &to)?;
        } else if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
            let file_type = if kind.is_fifo() {
                rustix::fs::FileType::Fifo
            } else if kind.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &to,
                file_type,
                rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        } else {
            // Sockets are not part of images.
            continue;
        }
        copy_attributes(&meta, &to)?;
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid bits), then times.
fn copy_attributes(meta: &std::fs::Metadata, to: &Path) -> io::Result<()> {
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let times = std::fs::FileTimes::new()
        .set_accessed(meta.accessed()?)
        .set_modified(meta.modified()?);
    if let Ok(file) = std::fs::File::options().read(true).open(to)
        && !meta.file_type().is_fifo()
    {
        let _ = file.set_times(times);
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_each_layer_after_everything_under_it() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let top_first = vec![
            PathBuf::from(format!("/l/{b}")),
            PathBuf::from(format!("/l/{a}")),
        ];
        let layers = chain(&top_first).unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].diff_id, format!("sha256:{a}"));
        assert_eq!(layers[0].uuid, uuid_of_hex(&a).unwrap());
        // The same top layer over another base is another dataset.
        let other = chain(&[
            PathBuf::from(format!("/l/{b}")),
            PathBuf::from(format!("/l/{}", "c".repeat(64))),
        ])
        .unwrap();
        assert_ne!(layers[1].uuid, other[1].uuid);
        assert_eq!(layers[1].uuid.len(), 36);
    }

    #[test]
    fn a_layer_directory_not_named_by_a_digest_is_refused() {
        assert!(matches!(
            chain(&[PathBuf::from("/l/busybox")]),
            Err(ZoneError::InvalidSpec(_))
        ));
    }

    #[test]
    fn applying_a_layer_deletes_whiteouts_and_empties_opaque_directories() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper, root) = (
            dir.path().join("lower"),
            dir.path().join("upper"),
            dir.path().join("root"),
        );
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(lower.join("var/data")).unwrap();
        std::fs::write(lower.join("etc/motd"), "hi").unwrap();
        std::fs::write(lower.join("etc/keep"), "keep").unwrap();
        std::fs::write(lower.join("var/data/a"), "a").unwrap();
        std::os::unix::fs::symlink("keep", lower.join("etc/link")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("var/data")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("etc/motd"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0),
            0,
        )
        .unwrap();
        rustix::fs::setxattr(
            upper.join("var/data"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        std::fs::write(upper.join("var/data/b"), "b").unwrap();

        apply_layer(&lower, &root).unwrap();
        apply_layer(&upper, &root).unwrap();

        assert!(!root.join("etc/motd").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/keep")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_link(root.join("etc/link")).unwrap(),
            Path::new("keep")
        );
        assert!(!root.join("var/data/a").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("var/data/b")).unwrap(),
            "b"
        );
    }
}
