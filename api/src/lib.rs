//! The HTTP faces of sdc-docker.
//!
//! Two routers over one store:
//!
//! - [`docker::router`]: the Docker Engine API the stock `docker` CLI talks
//!   to, on `-H` (version negotiation, Docker's error shape, and for now
//!   `/_ping` and `/version`; containers and images slot in as folders of
//!   [`docker`]);
//! - [`admin::router`]: the operators' API behind `sdc-docker get/apply/edit/
//!   delete`, on `--admin-host`: raw objects by kind and name, and `apply`
//!   of YAML or JSON files.
//!
//! Both answer errors as `{"message": ...}` through one [`ApiError`]. The
//! API writes specs only; it never calls a zone driver.

pub mod admin;
pub mod build_info;
pub mod docker;
mod error;
#[cfg(test)]
mod test_support;

pub use error::ApiError;
