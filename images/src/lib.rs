//! Images for sdc-docker: what `docker pull`, `docker images` and the zone
//! drivers stand on.
//!
//! - [`reference`]: image references parsed and normalised exactly as
//!   Docker does (`busybox` → `docker.io/library/busybox:latest`).
//! - [`layer`]: unpacking a layer tarball (gzip, zstd or plain) into a
//!   rootfs directory, applying OCI whiteouts, never writing outside it.
//! - [`registry`]: the Registry v2 client: resolves manifests, streams verified blobs, uploads
//!   blobs and manifests, checks logins, searches.
//! - [`store`]: the content-addressed image store: verified blobs, layers unpacked once each.
//! - [`lookup`]: finding an image by id, id prefix, tag or digest, as Docker does.
//! - [`pull`]: `docker pull`, tying the client, the store and the `Image` objects together.
//! - [`archive`]: `docker save`, `docker load` and `docker import`: images to and from tar archives.
//! - [`push`]: `docker push`, sending the blobs an image was unpacked from and its manifest.

pub mod archive;
pub mod layer;
pub mod lookup;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod store;
