//! The key layout: `/sdc-docker/v1/<kind>/<account>/<name>`.
//!
//! One prefix per kind, then the account (tenant), then the name, so a list
//! of one kind for one account is a prefix scan, and an operator with
//! `etcdctl get --prefix /sdc-docker/v1/containers/` sees every container.

/// The root every key of this project lives under.
pub const ROOT: &str = "/sdc-docker/v1/";

/// The account used until authentication exists.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Key of one object.
pub fn object(plural: &str, account: &str, name: &str) -> String {
    format!("{ROOT}{plural}/{account}/{name}")
}

/// Prefix of every object of a kind in one account (or all accounts when `None`).
pub fn prefix(plural: &str, account: Option<&str>) -> String {
    match account {
        Some(account) => format!("{ROOT}{plural}/{account}/"),
        None => format!("{ROOT}{plural}/"),
    }
}

/// Prefix of the candidates of one election.
pub fn election(name: &str) -> String {
    format!("{ROOT}elections/{name}/")
}

/// The parts of an object key: `(plural, account, name)`, or `None` when the
/// key is not an object key (too few segments, or outside the root).
pub fn parse(key: &str) -> Option<(&str, &str, &str)> {
    let rest = key.strip_prefix(ROOT)?;
    let mut parts = rest.splitn(3, '/');
    let plural = parts.next().filter(|s| !s.is_empty())?;
    let account = parts.next().filter(|s| !s.is_empty())?;
    let name = parts.next().filter(|s| !s.is_empty() && !s.contains('/'))?;
    Some((plural, account, name))
}

/// Whether a name is acceptable as the last segment of a key: not empty, no
/// slash, no control characters, at most 253 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.contains('/')
        && !name.chars().any(char::is_control)
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_key_parses_back_into_its_parts() {
        let k = object("containers", "default", "web");
        assert_eq!(k, "/sdc-docker/v1/containers/default/web");
        assert_eq!(parse(&k), Some(("containers", "default", "web")));
    }

    #[test]
    fn keys_outside_the_layout_do_not_parse() {
        assert_eq!(parse("/other/containers/default/web"), None);
        assert_eq!(parse("/sdc-docker/v1/containers/default/"), None);
        assert_eq!(parse("/sdc-docker/v1/containers/default/a/b"), None);
    }

    #[test]
    fn names_with_slashes_or_control_characters_are_rejected() {
        assert!(valid_name("web-1"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(".."));
    }
}
