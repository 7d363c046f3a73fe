//! The HTTP faces of sdc-docker.
//!
//! Two routers over one store:
//!
//! - [`docker::router`]: the Docker Engine API the stock `docker` CLI talks
//!   to, on `-H` (version negotiation, Docker's error shape, system,
//!   images, containers and events);
//! - [`admin::router`]: the operators' API behind `sdc-docker get/apply/edit/
//!   delete`, on `--admin-host`: raw objects by kind and name, and `apply`
//!   of YAML or JSON files.
//!
//! Both answer errors as `{"message": ...}` through one [`ApiError`]. The
//! API writes specs only; it never drives a zone's life. Streams (attach,
//! exec, logs, stats, files) reach the zone through the streaming side of
//! the node that holds it ([`docker::NodeStreams`]).

pub mod admin;
pub mod build_info;
pub mod docker;
mod error;
#[cfg(test)]
mod test_support;

pub use error::ApiError;
