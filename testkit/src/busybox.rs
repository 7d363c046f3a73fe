//! Ready-made busybox images from Debian's `busybox-static` (`/bin/busybox`,
//! a static x86-64 binary), so a container made from them really runs `sh`.
//!
//! - [`layered`]: three layers — the binary; symlinks for [`APPLETS`] plus
//!   the usual top-level directories; `/etc/motd` ([`MOTD`]) and
//!   `/var/data/a`;
//! - [`with_whiteout`]: the same plus a fourth layer that deletes
//!   `/etc/motd` (`etc/.wh.motd`), makes `/var/data` opaque
//!   (`var/data/.wh..wh..opq`) and adds `/var/data/b`: unpacked, the image has
//!   no `/etc/motd` and `/var/data` holds only `b`;
//! - [`mixed_compression`]: the layered image with a zstd, an uncompressed
//!   and a gzip'd layer;
//! - [`multi_arch`]: an index of linux/amd64 and linux/arm64/v8 images. The
//!   arm64 one carries the same x86-64 busybox bytes with an `arm64` config:
//!   right for testing platform selection, not for running on arm64.
//!
//! The busybox layer is built once per process (gzip of ~2 MB) and shared.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::image::{Entry, Format, Image, ImageBuilder, ImageIndex, Layer, LayerCompression};

/// The applets linked to `/bin/busybox` in the second layer.
pub const APPLETS: &[&str] = &[
    "sh", "ls", "echo", "cat", "sleep", "true", "false", "env", "id", "mkdir", "rm", "touch",
];

/// Contents of `/etc/motd` in the third layer.
pub const MOTD: &str = "hello from the sdc-docker test busybox\n";

/// Contents of `/var/data/a` (third layer) and `/var/data/b` (the whiteout
/// layer of [`with_whiteout`]).
pub const DATA_A: &str = "a\n";
/// See [`DATA_A`].
pub const DATA_B: &str = "b\n";

/// Path of Debian's static busybox: `/bin/busybox`, else `/usr/bin/busybox`.
///
/// # Panics
/// When neither exists, telling the reader how to install it.
pub fn binary() -> PathBuf {
    for candidate in ["/bin/busybox", "/usr/bin/busybox"] {
        let path = PathBuf::from(candidate);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "busybox is not installed: the test images are built from Debian's static busybox. \
         Run `bash scripts/install-deps.sh` (it installs `busybox-static`, which provides \
         /bin/busybox) and run the tests again."
    );
}

/// Layer 1: `/bin/busybox`.
fn busybox_layer() -> Layer {
    static LAYER: OnceLock<Layer> = OnceLock::new();
    LAYER
        .get_or_init(|| {
            let path = binary();
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            Layer::new(
                "COPY busybox /bin/busybox",
                &[Entry::dir("bin"), Entry::executable("bin/busybox", bytes)],
            )
        })
        .clone()
}

/// Layer 2: applet symlinks and the usual directories.
fn applets_layer() -> Layer {
    let mut entries = vec![
        Entry::dir("etc"),
        Entry::Dir {
            path: "tmp".into(),
            mode: 0o1777,
        },
        Entry::dir("var"),
        Entry::dir("root"),
    ];
    entries.extend(
        APPLETS
            .iter()
            .map(|applet| Entry::symlink(&format!("bin/{applet}"), "busybox")),
    );
    Layer::new("RUN busybox --install (some applets)", &entries)
}

/// Layer 3: `/etc/motd` and `/var/data/a`.
fn motd_layer() -> Layer {
    Layer::new(
        "COPY motd /etc/motd",
        &[
            Entry::file("etc/motd", MOTD),
            Entry::dir("var/data"),
            Entry::file("var/data/a", DATA_A),
        ],
    )
}

fn layered_builder() -> ImageBuilder {
    ImageBuilder::new()
        .layer(busybox_layer())
        .layer(applets_layer())
        .layer(motd_layer())
}

/// A three-layer busybox image for linux/amd64 (see the module docs).
pub fn layered(format: Format) -> Image {
    layered_builder().build(format)
}

/// The layered image plus a layer deleting `/etc/motd` and making
/// `/var/data` opaque (see the module docs).
pub fn with_whiteout(format: Format) -> Image {
    let whiteouts = Layer::new(
        "RUN rm /etc/motd && rm -rf /var/data && mkdir /var/data && echo b > /var/data/b",
        &[
            Entry::whiteout("etc/motd"),
            Entry::dir("var/data"),
            Entry::opaque("var/data"),
            Entry::file("var/data/b", DATA_B),
        ],
    );
    layered_builder().layer(whiteouts).build(format)
}

/// The layered image with its layers compressed three ways: busybox zstd,
/// the applets uncompressed, the motd gzip'd (same diff ids, same image id
/// as [`layered`]; other blobs, so another manifest digest).
pub fn mixed_compression(format: Format) -> Image {
    ImageBuilder::new()
        .layer(busybox_layer().compressed(LayerCompression::Zstd))
        .layer(applets_layer().compressed(LayerCompression::None))
        .layer(motd_layer())
        .build(format)
}

/// An index of the layered image for linux/amd64 and for linux/arm64/v8
/// (see the module docs); the images and the index use `format`.
pub fn multi_arch(format: Format) -> ImageIndex {
    let amd64 = layered(format);
    let arm64 = layered_builder()
        .architecture("arm64", Some("v8"))
        .build(format);
    ImageIndex::new(format, vec![amd64, arm64])
}
