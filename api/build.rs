//! Records what this build is made of, for `GET /version`: the compiler
//! (Docker reports `GoVersion`; we say which `rustc`), the git commit and the
//! time of the build.
//!
//! `SDC_DOCKER_GIT_COMMIT` and `SOURCE_DATE_EPOCH` override the commit and the
//! time (for packagers and reproducible builds); otherwise the commit comes
//! from `git` and the time is now. Nothing here fails the build: what cannot
//! be found is reported as `unknown`.

use std::path::Path;
use std::process::Command;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SDC_DOCKER_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    watch_git_head();

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = command_output(&rustc, &["--version"])
        .unwrap_or_else(|| "rustc (version unknown)".to_string());
    println!("cargo:rustc-env=SDC_DOCKER_RUSTC_VERSION={rustc_version}");

    let commit = std::env::var("SDC_DOCKER_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| command_output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SDC_DOCKER_GIT_COMMIT={commit}");

    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let built = built
        .replace_nanosecond(0)
        .unwrap_or(built)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=SDC_DOCKER_BUILD_TIME={built}");
}

/// Rebuild when the checked-out commit changes: `.git/HEAD` and the branch
/// it points at.
fn watch_git_head() {
    let git = Path::new("../.git");
    let head = git.join("HEAD");
    if !head.exists() {
        return;
    }
    println!("cargo:rerun-if-changed={}", head.display());
    if let Ok(text) = std::fs::read_to_string(&head)
        && let Some(reference) = text.trim().strip_prefix("ref: ")
    {
        let branch = git.join(reference);
        if branch.exists() {
            println!("cargo:rerun-if-changed={}", branch.display());
        }
        let packed = git.join("packed-refs");
        if packed.exists() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}
