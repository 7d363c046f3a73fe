//! The operators' commands: `get`, `apply`, `edit`, `delete`. Each talks to
//! the admin API of a running server through [`crate::client`] and prints
//! for people: this module is the one place of the library that prints to
//! stdout. A failure is returned as an error (the server's own message when
//! the server refused), which `main` prints before exiting non-zero.

pub mod apply;
pub mod delete;
pub mod edit;
pub mod get;
mod table;

use sdc_docker_store::Kind;

/// `container/web`, the way objects are named in command output.
fn object_ref(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.as_str().to_ascii_lowercase())
}
