//! What this server is: its name and version, the API versions it speaks,
//! and what it was built with (recorded by `build.rs`).
//!
//! Docker reports Go's `GOOS`/`GOARCH` spellings, so the architecture is
//! translated (`x86_64` → `amd64`); the kernel version comes from `uname`
//! at the time of asking.

/// The product name `docker version` shows after `Server:`.
pub const PLATFORM_NAME: &str = "sdc-docker";

/// The version of sdc-docker.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The newest Docker Engine API version served (and advertised in
/// `Api-Version`).
pub const API_VERSION: &str = "1.45";

/// The oldest Docker Engine API version served.
pub const MIN_API_VERSION: &str = "1.24";

/// The compiler this binary was built with (`rustc 1.90.0 (…)`), reported
/// where Docker reports its Go version.
pub const RUSTC_VERSION: &str = env!("SDC_DOCKER_RUSTC_VERSION");

/// The git commit built (`unknown` outside a checkout).
pub const GIT_COMMIT: &str = env!("SDC_DOCKER_GIT_COMMIT");

/// When it was built, RFC 3339.
pub const BUILD_TIME: &str = env!("SDC_DOCKER_BUILD_TIME");

/// The value of the `Server` header: `sdc-docker/0.1.0 (linux)`, in the shape
/// of Docker's `Docker/28.2.2 (linux)`.
pub fn server_header() -> String {
    format!("{PLATFORM_NAME}/{VERSION} ({})", os())
}

/// The operating system, as Go's `GOOS` spells it.
pub fn os() -> &'static str {
    std::env::consts::OS
}

/// The architecture, as Go's `GOARCH` spells it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_version() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_header_names_sdc_docker_and_the_os() {
        let header = server_header();
        assert!(header.starts_with("sdc-docker/"), "{header}");
        assert!(header.ends_with(&format!("({})", os())), "{header}");
    }

    #[test]
    fn the_kernel_version_is_known() {
        assert!(!kernel_version().is_empty());
    }
}
