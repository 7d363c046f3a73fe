//! Image references (`busybox`, `user/app:v1`, `localhost:5000/x@sha256:…`)
//! parsed and normalised exactly as Docker does.
//!
//! This is a hand-written port of `github.com/distribution/reference`
//! (the grammar in `regexp.go`, `Parse` in `reference.go`,
//! `ParseNormalizedNamed` / `TagNameOnly` / `FamiliarString` in
//! `normalize.go` and `helpers.go`) together with the digest validation of
//! `github.com/opencontainers/go-digest` v1.0.0, which dockerd vendors. Error
//! messages are Docker's, word for word, because the CLI shows them to users.
//! Quirks are kept on purpose: `Foo/bar` names a registry `Foo`,
//! `localhost:5000` alone is the image `localhost` with tag `5000`, and a
//! first component that looks like a domain but is not one (`foo_bar.com/x`)
//! leaves the reference without a domain, as in Docker. Limits: only the
//! normalised ("familiar" input) form is offered, not `ParseAnyReference`'s
//! lookup of bare image ids; that belongs to the image store.

use std::fmt;
use std::str::FromStr;

/// Longest repository path (the part after the domain) Docker accepts.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// The domain of Docker Hub in normalised references.
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// The host serving Docker Hub's Registry v2 API.
pub const DOCKER_HUB_REGISTRY_HOST: &str = "registry-1.docker.io";

/// The tag given to a reference that has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// Older name of Docker Hub, rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";

/// Docker Hub's namespace for official images (`busybox` → `library/busybox`).
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// Why a reference string was refused; `Display` is Docker's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string does not follow the reference grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// A tag given on its own (see [`Reference::with_tag`]) is not `[\w][\w.-]{0,127}`.
    #[error("invalid tag format")]
    InvalidTag,
    /// The repository path has uppercase letters (found after
    /// normalisation; names the path as Docker does).
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    RepositoryNotLowercase(String),
    /// The reference would be valid if it were lowercase, but the uppercase
    /// letters are somewhere the normalising check does not look (an
    /// uppercase registry name that is not a valid domain, say).
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// The reference has no name at all.
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// The repository path is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// The whole string is 64 lowercase hex digits: an image id, which
    /// Docker refuses to read as a repository name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexadecimalName(String),
    /// The part after `@` has the digest shape but is not a valid digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// Why a digest string was refused; `Display` is go-digest's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `algorithm:encoded`, or the encoded part has the wrong characters.
    #[error("invalid checksum digest format")]
    InvalidFormat,
    /// The hex part is not as long as the algorithm's output.
    #[error("invalid checksum digest length")]
    InvalidLength,
    /// Well-formed, but not `sha256`, `sha384` or `sha512`.
    #[error("unsupported digest algorithm")]
    Unsupported,
}

/// A content digest such as `sha256:e3b0c442…`, validated as go-digest does:
/// a known algorithm (`sha256`, `sha384`, `sha512`) and exactly as many
/// lowercase hex digits as its output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// The whole `algorithm:hex` text.
    value: String,
    /// Index of the `:` in `value`.
    colon: usize,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(DigestError::InvalidFormat);
        };
        if encoded.is_empty() {
            return Err(DigestError::InvalidFormat);
        }
        let hex_len = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ if is_go_digest_shape(algorithm, encoded) => return Err(DigestError::Unsupported),
            _ => return Err(DigestError::InvalidFormat),
        };
        if encoded.len() != hex_len {
            return Err(DigestError::InvalidLength);
        }
        if !encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::InvalidFormat);
        }
        Ok(Digest {
            value: s.to_owned(),
            colon: algorithm.len(),
        })
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.value[..self.colon]
    }

    /// The hex-encoded hash after the `:`.
    pub fn hex(&self) -> &str {
        &self.value[self.colon + 1..]
    }

    /// The whole digest, `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A normalised image reference: registry domain, repository path, and an
/// optional tag and digest (both may be present, as in `name:tag@digest`).
///
/// Only [`Reference::parse_normalized`] makes one, so every value follows
/// Docker's grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses what a user types (`busybox`, `user/app:v1`,
    /// `localhost:5000/x@sha256:…`) into its full form, as Docker's
    /// `ParseNormalizedNamed`: Docker Hub is `docker.io`, official images
    /// live under `library/`, `index.docker.io` becomes `docker.io`. No
    /// default tag is added; see [`Reference::with_default_tag`].
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if is_identifier(s) {
            return Err(ReferenceError::HexadecimalName(s.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(s);
        // Docker looks only up to the first ':' here, so an uppercase digest
        // algorithm is caught as well, while an uppercase tag is allowed.
        let remote = remainder.split(':').next().unwrap_or_default();
        if go_to_lower(remote) != remote {
            return Err(ReferenceError::RepositoryNotLowercase(remote.to_owned()));
        }
        parse(&format!("{domain}/{remainder}"))
    }

    /// The same reference with tag `latest` when it has neither tag nor
    /// digest (Docker's `TagNameOnly`).
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }

    /// The same repository with `tag`, keeping any digest (Docker's
    /// `WithTag`, used by `docker tag`).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_tag(tag) {
            return Err(ReferenceError::InvalidTag);
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// The same repository with `digest`, keeping any tag (Docker's
    /// `WithDigest`).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The registry domain, e.g. `docker.io` or `localhost:5000`. Empty in
    /// the rare case Docker's grammar gives none (`foo_bar.com/x`, whose first
    /// component has a dot but is not a valid host name).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.path
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name without tag or digest,
    /// e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The short name `docker images` shows, without tag or digest:
    /// `busybox`, `user/app`, `localhost:5000/x` (Docker's `FamiliarName`).
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            _ => self.path.clone(),
        }
    }

    /// The short form with tag and digest, e.g. `busybox:latest`,
    /// `user/app:v1`, `localhost:5000/x:1` (Docker's `FamiliarString`).
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        self.push_tag_and_digest(&mut out);
        out
    }

    /// The host (and port) to pull from: Docker Hub's API host for
    /// `docker.io`, the domain itself otherwise.
    pub fn registry_host(&self) -> &str {
        if self.domain == DEFAULT_DOMAIN {
            DOCKER_HUB_REGISTRY_HOST
        } else {
            &self.domain
        }
    }

    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

/// The full normalised form, e.g. `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_tag_and_digest(&mut out);
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Reference::parse_normalized(&s).map_err(serde::de::Error::custom)
    }
}

/// Docker's `splitDockerDomain`: decides from the first `/`-separated
/// component alone whether it names a registry, and puts official images
/// under `library/`.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, remote) = if maybe_domain == "localhost" {
        (maybe_domain, maybe_remote)
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain.contains(['.', ':']) || go_to_lower(maybe_domain) != maybe_domain {
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"))
    } else {
        (domain, remote.to_owned())
    }
}

/// Docker's `Parse`: the reference grammar, without normalisation.
fn parse(s: &str) -> Result<Reference, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let Some(parts) = split_reference(s) else {
        let lower = go_to_lower(s);
        if lower != s && split_reference(&lower).is_some() {
            return Err(ReferenceError::NameContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    if parts.path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    let digest = parts.digest.map(Digest::parse).transpose()?;
    Ok(Reference {
        domain: parts.domain.to_owned(),
        path: parts.path.to_owned(),
        tag: parts.tag.map(str::to_owned),
        digest,
    })
}

/// The pieces of a reference that matched the grammar; the digest is only
/// checked for its shape.
struct ReferenceParts<'a> {
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Matches `^(name)(?::(tag))?(?:@(digest))?$` and splits the name the way
/// Go's regexp does (a domain is taken whenever the rest still matches).
/// The grammar makes each split point unambiguous: `@` only starts a
/// digest, and a `:` with no `/` after it can only start a tag, because the
/// one `:` allowed in a name (the port) must be followed by `/`.
fn split_reference(s: &str) -> Option<ReferenceParts<'_>> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if digest.is_some_and(|d| !is_digest_shape(d)) {
        return None;
    }
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) {
        return None;
    }
    let (domain, path) = split_name(name)?;
    Some(ReferenceParts {
        domain,
        path,
        tag,
        digest,
    })
}

/// Matches `^(?:(domainAndPort)/)?(remoteName)$`, preferring a domain.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if let Some((domain, path)) = name.split_once('/')
        && is_domain_and_port(domain)
        && is_remote_name(path)
    {
        return Some((domain, path));
    }
    is_remote_name(name).then_some(("", name))
}

/// `pathComponent(?:/pathComponent)*`
fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        match b.get(i) {
            None => return true,
            Some(b'.') => i += 1,
            Some(b'_') => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            Some(b'-') => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            Some(_) => return false,
        }
    }
}

/// `(?:domainName|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
fn is_domain_and_port(s: &str) -> bool {
    let port = if let Some(bracketed) = s.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return false;
        };
        let is_ipv6 =
            !address.is_empty() && address.bytes().all(|c| c.is_ascii_hexdigit() || c == b':');
        if !is_ipv6 {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => port,
            None => return after.is_empty(),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) if is_domain_name(host) => port,
            Some(_) => return false,
            None => return is_domain_name(s),
        }
    };
    !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit())
}

/// Dot-separated components of `[a-zA-Z0-9]` and inner `-`.
fn is_domain_name(s: &str) -> bool {
    s.split('.').all(|component| {
        let b = component.as_bytes();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            }
            _ => false,
        }
    })
}

/// `[\w][\w.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    match b.split_first() {
        Some((first, rest)) => {
            word(*first)
                && rest.len() <= 127
                && rest.iter().all(|c| word(*c) || matches!(c, b'.' | b'-'))
        }
        None => false,
    }
}

/// The reference grammar's digest shape:
/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}`
fn is_digest_shape(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|component| {
        let b = component.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && encoded.len() >= 32 && encoded.bytes().all(|c| c.is_ascii_hexdigit())
}

/// go-digest's `DigestRegexpAnchored`, which decides between "unsupported"
/// and "invalid format" for an unknown algorithm:
/// `^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`
fn is_go_digest_shape(algorithm: &str, encoded: &str) -> bool {
    let algorithm_ok = algorithm.split(['.', '+', '_', '-']).all(|component| {
        !component.is_empty()
            && component
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    algorithm_ok
        && !encoded.is_empty()
        && encoded
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
}

/// `^[a-f0-9]{64}$`: an image id.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Go's `strings.ToLower`: the simple per-character mapping (so `İ` becomes
/// `i`, and no context-dependent final sigma), which decides whether Docker
/// calls a name "not lowercase".
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_F: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    const SHA_BUSYBOX: &str =
        "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    const HEX_ID: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

    /// Inputs Docker accepts: (input, full normalised form, familiar form).
    /// Taken from distribution/reference's normalize_test.go and
    /// reference_test.go, run through `ParseNormalizedNamed`.
    fn valid_cases() -> Vec<(String, String, String)> {
        let same = |s: &str| (s.to_owned(), s.to_owned(), s.to_owned());
        let case = |input: &str, full: &str, familiar: &str| {
            (input.to_owned(), full.to_owned(), familiar.to_owned())
        };
        let long_path = format!("{}a", "a/".repeat(127));
        let long_name = format!("example.com/{}", "a".repeat(255));
        vec![
            case("busybox", "docker.io/library/busybox", "busybox"),
            case(
                "busybox:latest",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            case("library/busybox", "docker.io/library/busybox", "busybox"),
            case("docker.io/busybox", "docker.io/library/busybox", "busybox"),
            case(
                "docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
                "busybox:1",
            ),
            case(
                "index.docker.io/library/debian",
                "docker.io/library/debian",
                "debian",
            ),
            case(
                "index.docker.io/debian",
                "docker.io/library/debian",
                "debian",
            ),
            case(
                "index.docker.io/docker/docker",
                "docker.io/docker/docker",
                "docker/docker",
            ),
            case("docker/docker", "docker.io/docker/docker", "docker/docker"),
            case("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            case(
                "docker.io/docker/docker",
                "docker.io/docker/docker",
                "docker/docker",
            ),
            case(
                "docker.io/library/foo/bar",
                "docker.io/library/foo/bar",
                "library/foo/bar",
            ),
            case("store/foo/bar", "docker.io/store/foo/bar", "store/foo/bar"),
            case("other/library", "docker.io/other/library", "other/library"),
            case(
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
            ),
            case(
                "docker-rules/docker",
                "docker.io/docker-rules/docker",
                "docker-rules/docker",
            ),
            case(
                "docker---rules/docker",
                "docker.io/docker---rules/docker",
                "docker---rules/docker",
            ),
            case(
                "dock__er/docker",
                "docker.io/dock__er/docker",
                "dock__er/docker",
            ),
            case("d/docker", "docker.io/d/docker", "d/docker"),
            case("jess/t", "docker.io/jess/t", "jess/t"),
            case("test_com/foo", "docker.io/test_com/foo", "test_com/foo"),
            case("test_com", "docker.io/library/test_com", "test_com"),
            case("dbcc1", "docker.io/library/dbcc1", "dbcc1"),
            case(
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            ),
            // 63 hex digits are a name; 64 are only allowed with a domain.
            case(
                &HEX_ID[1..],
                &format!("docker.io/library/{}", &HEX_ID[1..]),
                &HEX_ID[1..],
            ),
            case(
                &format!("docker.io/{HEX_ID}"),
                &format!("docker.io/library/{HEX_ID}"),
                HEX_ID,
            ),
            // No '/': a host-looking name is an image, and the port a tag.
            case(
                "test.com:tag",
                "docker.io/library/test.com:tag",
                "test.com:tag",
            ),
            case(
                "test.com:5000",
                "docker.io/library/test.com:5000",
                "test.com:5000",
            ),
            case(
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
            case(
                "192.168.1.1",
                "docker.io/library/192.168.1.1",
                "192.168.1.1",
            ),
            case(
                "192.168.1.1:5000",
                "docker.io/library/192.168.1.1:5000",
                "192.168.1.1:5000",
            ),
            case(
                "foo_bar.com:8080",
                "docker.io/library/foo_bar.com:8080",
                "foo_bar.com:8080",
            ),
            case(
                "foo/foo_bar.com:8080",
                "docker.io/foo/foo_bar.com:8080",
                "foo/foo_bar.com:8080",
            ),
            // Docker hands back a tag that looks like a digest; only
            // ParseAnyReference reads this as a digest.
            case(
                "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
                "docker.io/library/sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
                "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
            ),
            case(
                "lowercase:Uppercase",
                "docker.io/library/lowercase:Uppercase",
                "lowercase:Uppercase",
            ),
            case(
                &format!("{long_path}:tag-puts-this-over-max"),
                &format!("docker.io/{long_path}:tag-puts-this-over-max"),
                &format!("{long_path}:tag-puts-this-over-max"),
            ),
            case(
                &format!("busybox:latest@{SHA_BUSYBOX}"),
                &format!("docker.io/library/busybox:latest@{SHA_BUSYBOX}"),
                &format!("busybox:latest@{SHA_BUSYBOX}"),
            ),
            case(
                &format!("redis@{SHA_F}"),
                &format!("docker.io/library/redis@{SHA_F}"),
                &format!("redis@{SHA_F}"),
            ),
            case(
                &format!("dmcgowan/myapp@{SHA_F}"),
                &format!("docker.io/dmcgowan/myapp@{SHA_F}"),
                &format!("dmcgowan/myapp@{SHA_F}"),
            ),
            case(
                &format!("validname@sha512:{}", "f".repeat(128)),
                &format!("docker.io/library/validname@sha512:{}", "f".repeat(128)),
                &format!("validname@sha512:{}", "f".repeat(128)),
            ),
            case(
                &format!("busybox:{}", "t".repeat(128)),
                &format!("docker.io/library/busybox:{}", "t".repeat(128)),
                &format!("busybox:{}", "t".repeat(128)),
            ),
            // Registries keep their name in the familiar form.
            same("localhost/fooo"),
            same("localhost/fooo/bar"),
            same("localhost/library/debian"),
            same("localhost:5000/x:1"),
            same("LOCALDOMAIN/fooo"),
            same("LOCALDOMAIN/fooo/bar"),
            same("Foo/bar"),
            same("FOO/bar"),
            same("DOCKER/docker"),
            same("Uppercase/lowercase:tag"),
            same("127.0.0.1:8000/private/moonbase"),
            same("127.0.0.1:8000/privatebase"),
            same("127.0.0.1:5000/library/debian"),
            same("192.168.0.1:8/debian"),
            same("192.168.0.2:25000/debian"),
            same("192.168.1.1/repo"),
            same("192.168.1.1:5000/repo:5050"),
            same("example.com/private/moonbase"),
            same("example.com:8000/privatebasee"),
            same("registry.example.com/x/y"),
            same("gcr.io/library/busybox"),
            same("test.com/repo:tag"),
            same("test.com:8080/foo"),
            same("test-com:8080/foo"),
            same("test:5000/repo"),
            same(&format!("test:5000/repo@{SHA_F}")),
            same(&format!("test:5000/repo:tag@{SHA_F}")),
            same("sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
            same("b.gcr.io/test.example.com/my-app:test.example.com"),
            same("xn--n3h.com/myimage:xn--n3h.com"),
            same(&format!("xn--7o8h.com/myimage:xn--7o8h.com@{SHA_F}")),
            same("xn--n3h.com:18080/foo"),
            same("[::1]:5000/x"),
            same("[fc00::1]:5000/docker/docker"),
            same("[fc00:1:2:3:4:5:6:7]:5000/library/debian"),
            same("[2001:db8::1]/repo"),
            same("[2001:db8:1:2:3:4:5:6]/repo:tag"),
            same(&format!("[2001:db8::1]:5000/repo:tag@{SHA_F}")),
            same("[2001:db8::]:5000/repo"),
            same(&format!("{long_name}:tag")),
            // A dotted first component that is no valid host: Docker's
            // grammar then reads the whole as a path with no domain.
            same("foo_bar.com/x"),
        ]
    }

    /// Inputs Docker refuses, with Docker's message.
    fn invalid_cases() -> Vec<(String, String)> {
        let bad = |s: &str| (s.to_owned(), "invalid reference format".to_owned());
        let case = |s: &str, message: &str| (s.to_owned(), message.to_owned());
        let too_long = "repository name must not be more than 255 characters";
        vec![
            bad(""),
            bad(":justtag"),
            bad(&format!("@{SHA_F}")),
            bad("busybox:"),
            bad("busybox@"),
            bad("busybox@sha256:abc"),
            bad(&format!("busybox:{}", "t".repeat(129))),
            bad("busybox:-tag"),
            bad("busybox:.tag"),
            bad("https://github.com/docker/docker"),
            bad("-docker"),
            bad("-docker/docker"),
            bad("-docker.io/docker/docker"),
            bad("docker-/docker"),
            bad("-docker-/docker"),
            bad("docker///docker"),
            bad("docker.io/docker///docker"),
            bad("____/____"),
            bad("_docker/_docker"),
            bad("dock..er/docker"),
            bad("dock_.er/docker"),
            bad("dock-.er/docker"),
            bad("docker/"),
            bad("/busybox"),
            bad("aa/asdf$$^/aa"),
            bad("a___b"),
            bad("[fc00::1]"),
            bad("[fc00::1]:5000"),
            bad("fc00::1:5000/debian"),
            bad("[fe80::1%eth0]:5000/debian"),
            bad("[2001:db8:3:4::192.0.2.33]:5000/debian"),
            bad("[2001:db8::1]"),
            bad("[2001:db8::1]:5000"),
            bad("[2001:db8::1]:tag"),
            bad("[fe80::1%@invalidzone]:5000/repo"),
            bad("[]:5000/repo"),
            bad("localhost:/repo"),
            bad("localhost:50a/repo"),
            bad("foo_bar:5000/x"),
            bad("busybox@sha256:ffff@sha256:ffff"),
            bad("busybox\n"),
            case(
                "Busybox",
                "invalid reference format: repository name (library/Busybox) must be lowercase",
            ),
            case(
                "Uppercase:tag",
                "invalid reference format: repository name (library/Uppercase) must be lowercase",
            ),
            case(
                "docker/Docker",
                "invalid reference format: repository name (docker/Docker) must be lowercase",
            ),
            case(
                "docker.io/docker/Docker",
                "invalid reference format: repository name (docker/Docker) must be lowercase",
            ),
            case(
                "test:5000/Uppercase/lowercase:tag",
                "invalid reference format: repository name (Uppercase/lowercase) must be lowercase",
            ),
            case(
                &format!("busybox@SHA256:{}", "f".repeat(64)),
                "invalid reference format: repository name (library/busybox@SHA256) must be lowercase",
            ),
            case("FOO_X/bar", "repository name must be lowercase"),
            case(
                HEX_ID,
                &format!(
                    "invalid repository name ({HEX_ID}), cannot specify 64-byte hexadecimal strings"
                ),
            ),
            case(
                &format!("repo@sha256:{}", "f".repeat(34)),
                "invalid checksum digest length",
            ),
            case(
                &format!("busybox@sha256:{}", "F".repeat(64)),
                "invalid checksum digest format",
            ),
            case(
                &format!("validname@invaliddigest:{}", "f".repeat(64)),
                "unsupported digest algorithm",
            ),
            case(&format!("domain/{}:tag", "a".repeat(256)), too_long),
            case(&"a".repeat(248), too_long),
            case(
                "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
                too_long,
            ),
        ]
    }

    #[test]
    fn every_valid_case_normalises_to_dockers_full_and_familiar_forms() {
        for (input, full, familiar) in valid_cases() {
            let reference = Reference::parse_normalized(&input)
                .unwrap_or_else(|e| panic!("{input:?} should parse, got {e}"));
            assert_eq!(reference.to_string(), full, "full form of {input:?}");
            assert_eq!(reference.familiar(), familiar, "familiar form of {input:?}");
        }
    }

    #[test]
    fn every_invalid_case_is_refused_with_dockers_message() {
        for (input, message) in invalid_cases() {
            match Reference::parse_normalized(&input) {
                Ok(reference) => panic!("{input:?} should be refused, got {reference}"),
                Err(e) => assert_eq!(e.to_string(), message, "message for {input:?}"),
            }
        }
    }

    #[test]
    fn the_full_form_parses_back_to_the_same_reference() {
        for (input, _, _) in valid_cases() {
            let reference = Reference::parse_normalized(&input).expect("valid case");
            let again = Reference::parse_normalized(&reference.to_string()).expect("full form");
            assert_eq!(again, reference, "round trip of {input:?}");
        }
    }

    #[test]
    fn domain_and_repository_are_split_as_docker_splits_them() {
        let cases = [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "docker.io", "test_com/foo"),
            ("docker/migrator", "docker.io", "docker/migrator"),
            ("test.com:8080/foo", "test.com:8080", "foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("foo", "docker.io", "library/foo"),
            ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
            ("docker.io/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
            ("localhost/fooo", "localhost", "fooo"),
            ("LOCALDOMAIN/fooo/bar", "LOCALDOMAIN", "fooo/bar"),
            ("Foo/bar", "Foo", "bar"),
            ("127.0.0.1:5000/x", "127.0.0.1:5000", "x"),
            ("[::1]:5000/x", "[::1]:5000", "x"),
            ("registry.example.com/x/y", "registry.example.com", "x/y"),
            ("foo_bar.com/x", "", "foo_bar.com/x"),
        ];
        for (input, domain, repository) in cases {
            let reference = Reference::parse_normalized(input).expect("valid case");
            assert_eq!(reference.domain(), domain, "domain of {input:?}");
            assert_eq!(
                reference.repository(),
                repository,
                "repository of {input:?}"
            );
        }
    }

    #[test]
    fn familiar_names_drop_docker_hub_and_the_library_namespace() {
        let cases = [
            ("busybox:1", "busybox"),
            ("library/foo/bar", "library/foo/bar"),
            ("user/app:v1", "user/app"),
            ("localhost:5000/x:1", "localhost:5000/x"),
        ];
        for (input, familiar_name) in cases {
            let reference = Reference::parse_normalized(input).expect("valid case");
            assert_eq!(reference.familiar_name(), familiar_name);
        }
    }

    #[test]
    fn tag_and_digest_are_both_kept_and_reported() {
        let input = format!("busybox:latest@{SHA_BUSYBOX}");
        let reference = Reference::parse_normalized(&input).expect("valid");
        assert_eq!(reference.tag(), Some("latest"));
        assert_eq!(reference.digest().map(Digest::as_str), Some(SHA_BUSYBOX));
        assert_eq!(reference.name(), "docker.io/library/busybox");
    }

    #[test]
    fn the_default_tag_is_added_only_to_a_bare_name() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1", "docker.io/library/busybox:1"),
            ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
        ];
        for (input, full) in cases {
            let reference = Reference::parse_normalized(input).expect("valid");
            assert_eq!(reference.with_default_tag().to_string(), full);
        }
        let pinned = format!("busybox@{SHA_BUSYBOX}");
        let reference = Reference::parse_normalized(&pinned).expect("valid");
        assert_eq!(
            reference.with_default_tag().to_string(),
            format!("docker.io/library/{pinned}")
        );
    }

    #[test]
    fn docker_hub_is_pulled_from_its_api_host_and_others_from_their_domain() {
        let cases = [
            ("busybox", "registry-1.docker.io"),
            ("index.docker.io/user/app", "registry-1.docker.io"),
            ("localhost:5000/x", "localhost:5000"),
            ("127.0.0.1:5000/library/busybox", "127.0.0.1:5000"),
            ("[::1]:5000/x", "[::1]:5000"),
            ("registry.example.com/x/y", "registry.example.com"),
        ];
        for (input, host) in cases {
            let reference = Reference::parse_normalized(input).expect("valid");
            assert_eq!(reference.registry_host(), host, "host of {input:?}");
        }
    }

    #[test]
    fn a_new_tag_is_validated_and_keeps_the_digest() {
        let reference = Reference::parse_normalized(&format!("busybox@{SHA_F}")).expect("valid");
        let tagged = reference.with_tag("v1.2_x-y").expect("valid tag");
        assert_eq!(
            tagged.to_string(),
            format!("docker.io/library/busybox:v1.2_x-y@{SHA_F}")
        );
        for bad in ["", "-foo", ".foo", "a/b", "a:b", &"t".repeat(129)] {
            assert_eq!(
                reference.with_tag(bad).map(|r| r.to_string()),
                Err(ReferenceError::InvalidTag),
                "tag {bad:?}"
            );
        }
        assert_eq!(ReferenceError::InvalidTag.to_string(), "invalid tag format");
    }

    #[test]
    fn a_new_digest_keeps_the_tag() {
        let reference = Reference::parse_normalized("busybox:1").expect("valid");
        let digest = Digest::parse(SHA_F).expect("valid digest");
        assert_eq!(
            reference.with_digest(digest).familiar(),
            format!("busybox:1@{SHA_F}")
        );
    }

    #[test]
    fn digests_are_validated_as_go_digest_does() {
        let digest = Digest::parse(SHA_BUSYBOX).expect("valid");
        assert_eq!(digest.algorithm(), "sha256");
        assert_eq!(digest.hex(), &SHA_BUSYBOX[7..]);
        assert_eq!(digest.to_string(), SHA_BUSYBOX);
        assert_eq!(SHA_BUSYBOX.parse::<Digest>(), Ok(digest));
        Digest::parse(&format!("sha384:{}", "0".repeat(96))).expect("sha384");
        Digest::parse(&format!("sha512:{}", "0".repeat(128))).expect("sha512");

        let cases = [
            ("sha256", DigestError::InvalidFormat),
            ("sha256:", DigestError::InvalidFormat),
            (":abc", DigestError::InvalidFormat),
            ("", DigestError::InvalidFormat),
            ("sha256:abc", DigestError::InvalidLength),
            ("md5:abc", DigestError::Unsupported),
            ("sha1+x:ab=c", DigestError::Unsupported),
            ("MD5:abc", DigestError::InvalidFormat),
            ("md5:a/c", DigestError::InvalidFormat),
        ];
        for (input, error) in cases {
            assert_eq!(Digest::parse(input), Err(error), "digest {input:?}");
        }
        let upper = format!("sha256:{}", "F".repeat(64));
        assert_eq!(Digest::parse(&upper), Err(DigestError::InvalidFormat));
        assert_eq!(
            Digest::parse("sha256:abc").map_err(|e| e.to_string()),
            Err("invalid checksum digest length".to_owned())
        );
    }

    #[test]
    fn references_and_digests_serialise_as_their_full_strings() {
        let reference = Reference::parse_normalized(&format!("busybox:1@{SHA_F}")).expect("valid");
        let json = serde_json::to_string(&reference).expect("serialise");
        assert_eq!(json, format!("\"docker.io/library/busybox:1@{SHA_F}\""));
        let back: Reference = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, reference);
        assert!(serde_json::from_str::<Reference>("\"Busybox\"").is_err());

        let digest: Digest = serde_json::from_str(&format!("\"{SHA_F}\"")).expect("digest");
        assert_eq!(
            serde_json::to_string(&digest).expect("serialise"),
            format!("\"{SHA_F}\"")
        );
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
    }

    #[test]
    fn odd_inputs_never_panic_and_accepted_ones_round_trip() {
        // A deterministic xorshift generator: reproducible without proptest.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "abcz019AZ.-_:/@[]%=+ \n\u{e9}\u{130}\u{212a}\u{3a3}\u{0}"
            .chars()
            .collect();
        let seeds: Vec<String> = valid_cases()
            .into_iter()
            .map(|(input, _, _)| input)
            .chain(invalid_cases().into_iter().map(|(input, _)| input))
            .collect();
        let pick = |n: u64, len: usize| (n % len as u64) as usize;
        for round in 0..20_000 {
            let input: String = if round % 2 == 0 {
                let len = pick(next(), 80);
                (0..len)
                    .map(|_| alphabet[pick(next(), alphabet.len())])
                    .collect()
            } else {
                // Mutate a known case: replace, insert or delete one char.
                let mut chars: Vec<char> = seeds[pick(next(), seeds.len())].chars().collect();
                for _ in 0..1 + pick(next(), 3) {
                    let at = pick(next(), chars.len() + 1);
                    let c = alphabet[pick(next(), alphabet.len())];
                    match next() % 3 {
                        0 if at < chars.len() => chars[at] = c,
                        1 if at < chars.len() => {
                            chars.remove(at);
                        }
                        _ => chars.insert(at, c),
                    }
                }
                chars.into_iter().collect()
            };
            if let Ok(reference) = Reference::parse_normalized(&input) {
                assert!(reference.repository().len() <= NAME_TOTAL_LENGTH_MAX);
                let again = Reference::parse_normalized(&reference.to_string());
                assert_eq!(again.as_ref(), Ok(&reference), "round trip of {input:?}");
                let _ = (reference.familiar(), reference.registry_host());
            }
            let _ = Digest::parse(&input);
        }
    }
}
