//! `user[:group]` to numeric ids, resolved in the zone's own `/etc/passwd`
//! and `/etc/group` the way runc's `GetExecUser` does for Docker.
//!
//! Numbers need no entry (`1000:1000` works in an image without a passwd
//! file); names must have one. A user found by name or number also gets the
//! groups that list it as a member, unless a group was given. The files are
//! read through the mounted root file system and ignored when a symlink
//! would lead out of it.

use std::path::Path;

/// Numeric identity of a zone's init process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// A user or group name with no entry; the words are runc's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No passwd entry for a user name.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// No group entry for a group name.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// `spec` (`user[:group]`, empty for root) resolved against the contents of
/// `passwd` and `group` (absent files count as empty).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let user_number = user_arg.parse::<u32>().ok();

    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .find(|f| f[0] == user_arg || (user_number.is_some() && f[2].parse().ok() == user_number));
    let mut user = ExecUser::default();
    let mut name = None;
    match (entry, user_number) {
        (Some(f), _) => {
            user.uid = f[2].parse().unwrap_or(0);
            user.gid = f[3].parse().unwrap_or(0);
            name = Some(f[0].to_string());
        }
        (None, Some(n)) => user.uid = n,
        (None, None) => return Err(UserError::NoUser(user_arg.to_string())),
    }

    let groups = || {
        group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 3)
    };
    match group_arg.filter(|g| !g.is_empty()) {
        Some(group_arg) => {
            let number = group_arg.parse::<u32>().ok();
            let entry = groups()
                .find(|f| f[0] == group_arg || (number.is_some() && f[2].parse().ok() == number));
            user.gid = match (entry, number) {
                (Some(f), _) => f[2].parse().unwrap_or(0),
                (None, Some(n)) => n,
                (None, None) => return Err(UserError::NoGroup(group_arg.to_string())),
            };
        }
        None => {
            if let Some(name) = name {
                user.additional_gids = groups()
                    .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|m| m == name)))
                    .filter_map(|f| f[2].parse().ok())
                    .filter(|g| *g != user.gid)
                    .collect();
            }
        }
    }
    Ok(user)
}

/// The contents of `rootfs/etc/<name>`, or empty when it is missing,
/// unreadable, or a symlink out of `rootfs`.
pub fn read_etc(rootfs: &Path, name: &str) -> String {
    let path = rootfs.join("etc").join(name);
    let (Ok(root), Ok(real)) = (rootfs.canonicalize(), path.canonicalize()) else {
        return String::new();
    };
    if !real.starts_with(&root) {
        tracing::warn!(path = %path.display(), "ignoring a symlink out of the zone's root");
        return String::new();
    }
    std::fs::read_to_string(real).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwww:x:33:\nbob:x:1000:\nwheel:x:10:root,bob\ndocker:x:999:bob\n";

    fn user(uid: u32, gid: u32, additional: &[u32]) -> ExecUser {
        ExecUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
        }
    }

    #[test]
    fn users_resolve_like_runcs_get_exec_user() {
        let cases: &[(&str, Result<ExecUser, UserError>)] = &[
            ("", Ok(user(0, 0, &[10]))),
            ("root", Ok(user(0, 0, &[10]))),
            ("www", Ok(user(33, 33, &[]))),
            ("bob", Ok(user(1000, 1000, &[10, 999]))),
            ("1000", Ok(user(1000, 1000, &[10, 999]))),
            ("4242", Ok(user(4242, 0, &[]))),
            ("4242:4343", Ok(user(4242, 4343, &[]))),
            ("bob:www", Ok(user(1000, 33, &[]))),
            ("www:10", Ok(user(33, 10, &[]))),
            ("nobody", Err(UserError::NoUser("nobody".into()))),
            ("bob:nogroup", Err(UserError::NoGroup("nogroup".into()))),
        ];
        for (spec, want) in cases {
            assert_eq!(&resolve(spec, PASSWD, GROUP), want, "{spec}");
        }
    }

    #[test]
    fn numbers_work_without_any_passwd_file() {
        assert_eq!(resolve("1000:1000", "", ""), Ok(user(1000, 1000, &[])));
        assert_eq!(resolve("", "", ""), Ok(user(0, 0, &[])));
    }

    #[test]
    fn etc_files_behind_a_symlink_out_of_the_root_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(dir.path().join("outside"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("etc/passwd")).unwrap();
        std::fs::write(root.join("etc/group"), GROUP).unwrap();
        assert_eq!(read_etc(&root, "passwd"), "");
        assert_eq!(read_etc(&root, "group"), GROUP);
        assert_eq!(read_etc(&root, "shadow"), "");
    }
}
