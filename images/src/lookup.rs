//! Finding an image the way Docker's `GetImage(refOrID)` does: by full id
//! (`sha256:…` or the bare 64 hex digits), by tag (`busybox` meaning
//! `docker.io/library/busybox:latest`), by digest (`repo@sha256:…`), and
//! last by a unique prefix of the id (`docker rmi 3f57`).
//!
//! Lookups list the Image objects of the account and search them; an
//! account holds tens to hundreds of images, not millions.

use sdc_docker_store::model::Image;
use sdc_docker_store::{Api, Error as StoreError};

use crate::reference::Reference;

/// Why a lookup found nothing usable. `Display` is Docker's message.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Nothing has that name, tag, digest or id prefix.
    #[error("No such image: {0}")]
    NotFound(String),
    /// An id prefix matching several images.
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    /// Reading the Image objects failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How `name` found its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// By id or id prefix.
    Id,
    /// By this normalised tag (`docker.io/library/busybox:latest`).
    Tag(String),
    /// By this digested name (`docker.io/library/busybox@sha256:…`).
    Digest(String),
}

/// The image `name` names, and how it was found.
pub async fn find(images: &Api<Image>, name: &str) -> Result<(Image, Found), LookupError> {
    let all = images.list().await?.items;
    find_in(&all, name).map(|(image, found)| (image.clone(), found))
}

/// [`find`] over images already listed.
pub fn find_in<'a>(all: &'a [Image], name: &str) -> Result<(&'a Image, Found), LookupError> {
    let not_found = || LookupError::NotFound(name.to_owned());
    if name.is_empty() {
        return Err(not_found());
    }
    // A full id, with or without its algorithm.
    let bare = name.strip_prefix("sha256:").unwrap_or(name);
    if bare.len() == 64 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        return all
            .iter()
            .find(|i| i.spec.id.strip_prefix("sha256:").unwrap_or(&i.spec.id) == bare)
            .map(|i| (i, Found::Id))
            .ok_or_else(not_found);
    }
    // An image whose id is not a digest (a SmartOS image, known by its
    // UUID, as the seeds' `docker run <UUID>` names it): the id as is.
    if let Some(image) = all.iter().find(|i| i.spec.id == name) {
        return Ok((image, Found::Id));
    }
    if let Ok(reference) = Reference::parse_normalized(name) {
        if reference.digest().is_some() {
            let digested = format!(
                "{}@{}",
                reference.name(),
                reference.digest().map(|d| d.as_str()).unwrap_or_default()
            );
            if let Some(image) = all.iter().find(|i| i.spec.repo_digests.contains(&digested)) {
                return Ok((image, Found::Digest(digested)));
            }
            // `repo:tag@digest` and `repo@digest` both name the digest
            // only; a digest not known is not looked up as an id.
            return Err(not_found());
        }
        let tagged = reference.with_default_tag().to_string();
        if let Some(image) = all.iter().find(|i| i.spec.repo_tags.contains(&tagged)) {
            return Ok((image, Found::Tag(tagged)));
        }
    }
    // A prefix of an id.
    if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut matches = all.iter().filter(|i| {
            i.spec
                .id
                .strip_prefix("sha256:")
                .unwrap_or(&i.spec.id)
                .starts_with(bare)
        });
        if let Some(first) = matches.next() {
            if matches.any(|other| other.spec.id != first.spec.id) {
                return Err(LookupError::Ambiguous(bare.to_owned()));
            }
            return Ok((first, Found::Id));
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::Resource;
    use sdc_docker_store::model::{Image, ImageSpec};

    use super::*;

    /// An image whose id is `prefix` padded with zeros to 64 hex digits.
    fn image(prefix: &str, tags: &[&str], digests: &[&str]) -> Image {
        let hex = format!("{prefix:0<64}");
        Image::new(
            &hex,
            ImageSpec {
                id: format!("sha256:{hex}"),
                repo_tags: tags.iter().map(|t| t.to_string()).collect(),
                repo_digests: digests.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    fn fixtures() -> Vec<Image> {
        vec![
            image("aaaa1", &["docker.io/library/busybox:latest"], &[]),
            image(
                "bbbb",
                &["127.0.0.1:5000/app:v1"],
                &[&format!("127.0.0.1:5000/app@sha256:{}", "c".repeat(64))],
            ),
            image("aaaa2", &[], &[]),
            image("d", &[], &[]),
        ]
    }

    #[test]
    fn a_familiar_name_finds_the_image_tagged_with_its_normalised_latest_tag() {
        let all = fixtures();
        let (found, how) = find_in(&all, "busybox").expect("found");
        assert!(found.spec.id.starts_with("sha256:aaaa1"));
        assert_eq!(how, Found::Tag("docker.io/library/busybox:latest".into()));
        assert!(find_in(&all, "docker.io/library/busybox:latest").is_ok());
        assert!(matches!(
            find_in(&all, "busybox:1.36"),
            Err(LookupError::NotFound(n)) if n == "busybox:1.36"
        ));
    }

    #[test]
    fn a_full_id_with_or_without_its_algorithm_finds_the_image() {
        let all = fixtures();
        let id = all[1].spec.id.clone();
        assert_eq!(find_in(&all, &id).expect("found").0.spec.id, id);
        assert_eq!(find_in(&all, &id[7..]).expect("found").0.spec.id, id);
    }

    #[test]
    fn a_digested_name_finds_the_image_pulled_by_that_digest() {
        let all = fixtures();
        let name = format!("127.0.0.1:5000/app@sha256:{}", "c".repeat(64));
        let (found, how) = find_in(&all, &name).expect("found");
        assert!(found.spec.id.starts_with("sha256:bbb"));
        assert_eq!(how, Found::Digest(name));
        let unknown = format!("127.0.0.1:5000/app@sha256:{}", "e".repeat(64));
        assert!(matches!(
            find_in(&all, &unknown),
            Err(LookupError::NotFound(_))
        ));
    }

    #[test]
    fn a_unique_id_prefix_finds_the_image_and_a_shared_one_is_ambiguous() {
        let all = fixtures();
        assert!(
            find_in(&all, "bbbb")
                .expect("found")
                .0
                .spec
                .id
                .starts_with("sha256:bbb")
        );
        assert!(find_in(&all, "sha256:bbbb").is_ok());
        assert!(find_in(&all, "d").is_ok());
        assert!(matches!(find_in(&all, "aaaa"), Err(LookupError::Ambiguous(p)) if p == "aaaa"));
        assert!(matches!(
            find_in(&all, "ffff"),
            Err(LookupError::NotFound(_))
        ));
    }
}
