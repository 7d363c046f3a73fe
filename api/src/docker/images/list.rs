//! `GET /images/json`: `docker images`, newest first, with Docker's filters
//! `reference`, `dangling`, `label`, `before` and `since`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use sdc_docker_images::lookup::find_in;
use sdc_docker_store::model::Image;
use serde::{Deserialize, Serialize};

use super::{familiar, images_api, lookup_error};
use crate::ApiError;
use crate::docker::filters::{Filters, glob_match};
use crate::docker::{ApiVersion, DockerState};

/// Docker's `image.Summary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// `sha256:…`.
    pub id: String,
    /// The parent (none for pulled images).
    pub parent_id: String,
    /// Tags, familiar form; empty for a dangling image.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…`, familiar form.
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// Bytes of the unpacked layers.
    pub size: i64,
    /// Bytes shared with other images (-1: not computed, as Docker
    /// answers without `shared-size`).
    pub shared_size: i64,
    /// The same as `Size`, for API versions before 1.44.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<i64>,
    /// The image's labels.
    pub labels: BTreeMap<String, String>,
    /// Containers using the image (-1: not computed).
    pub containers: i64,
}

/// The query of `GET /images/json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Show intermediate images too (there are none here: pulled and
    /// loaded images have no parents).
    pub all: Option<String>,
    /// Docker's filters, JSON.
    pub filters: Option<String>,
    /// Only images whose tag matches this (API < 1.41's `filter`).
    pub filter: Option<String>,
}

const KNOWN_FILTERS: &[&str] = &["reference", "dangling", "label", "before", "since"];

/// `GET /images/json`.
pub async fn list(
    State(state): State<DockerState>,
    Query(query): Query<ListQuery>,
    axum::Extension(version): axum::Extension<ApiVersion>,
) -> Result<Json<Vec<ImageSummary>>, ApiError> {
    let mut filters = Filters::parse(query.filters.as_deref(), KNOWN_FILTERS)?;
    if let Some(reference) = query.filter.filter(|f| !f.is_empty()) {
        filters.add("reference", reference);
    }
    let all = images_api(&state).list().await?.items;
    let mut chosen = select(&all, &filters)?;
    chosen.sort_by(|a, b| created(b).cmp(&created(a)).then(a.spec.id.cmp(&b.spec.id)));
    let old = version.older_than("1.44");
    Ok(Json(
        chosen
            .into_iter()
            .map(|image| summary(image, &filters, old))
            .collect(),
    ))
}

fn created(image: &Image) -> i64 {
    image.spec.created.map(|c| c.unix_timestamp()).unwrap_or(0)
}

fn labels(image: &Image) -> BTreeMap<String, String> {
    image.spec.config["config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The images `filters` let through.
pub fn select<'a>(all: &'a [Image], filters: &Filters) -> Result<Vec<&'a Image>, ApiError> {
    let dangling = filters.boolean("dangling")?;
    let mut before = None;
    for name in filters.get("before") {
        let (image, _) = find_in(all, name).map_err(lookup_error)?;
        before = Some(created(image));
    }
    let mut since = None;
    for name in filters.get("since") {
        let (image, _) = find_in(all, name).map_err(lookup_error)?;
        since = Some(created(image));
    }
    let patterns = filters.get("reference");
    Ok(all
        .iter()
        .filter(|image| {
            // Docker's dangling: neither a tag nor a digest names it.
            let is_dangling = image.spec.repo_tags.is_empty() && image.spec.repo_digests.is_empty();
            if dangling.is_some_and(|d| d != is_dangling) {
                return false;
            }
            if !filters.labels_match(&labels(image)) {
                return false;
            }
            if before.is_some_and(|b| created(image) >= b) {
                return false;
            }
            if since.is_some_and(|s| created(image) <= s) {
                return false;
            }
            patterns.is_empty() || !matching_tags(image, patterns).is_empty()
        })
        .collect())
}

/// The familiar tags and digests of `image` matching any of `patterns`
/// (Docker's `FamiliarMatch`: the whole `name:tag`, or the name alone).
fn matching_tags(image: &Image, patterns: &[String]) -> Vec<String> {
    image
        .spec
        .repo_tags
        .iter()
        .chain(&image.spec.repo_digests)
        .map(|t| familiar(t))
        .filter(|t| {
            let name = name_of(t);
            patterns
                .iter()
                .any(|p| glob_match(p, t) || glob_match(p, name))
        })
        .collect()
}

/// `busybox` of `busybox:latest`, `127.0.0.1:5000/app` of `…/app@sha256:…`.
fn name_of(familiar: &str) -> &str {
    if let Some((name, _)) = familiar.split_once('@') {
        return name;
    }
    match familiar.rfind(':') {
        Some(i) if !familiar[i..].contains('/') => &familiar[..i],
        _ => familiar,
    }
}

fn summary(image: &Image, filters: &Filters, old_api: bool) -> ImageSummary {
    let patterns = filters.get("reference");
    let (repo_tags, repo_digests) = if patterns.is_empty() {
        (
            image.spec.repo_tags.iter().map(|t| familiar(t)).collect(),
            image
                .spec
                .repo_digests
                .iter()
                .map(|t| familiar(t))
                .collect(),
        )
    } else {
        // With a reference filter Docker lists only the matching tags.
        let matching = matching_tags(image, patterns);
        let (digests, tags): (Vec<String>, Vec<String>) =
            matching.into_iter().partition(|t| t.contains('@'));
        (tags, digests)
    };
    ImageSummary {
        id: image.spec.id.clone(),
        parent_id: String::new(),
        repo_tags,
        repo_digests,
        created: created(image),
        size: image.spec.size,
        shared_size: -1,
        virtual_size: old_api.then_some(image.spec.size),
        labels: labels(image),
        containers: -1,
    }
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::Resource;
    use sdc_docker_store::model::ImageSpec;
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;

    fn image(n: u8, tags: &[&str], label: Option<&str>) -> Image {
        let hex = format!("{n:0>64}");
        Image::new(
            &hex,
            ImageSpec {
                id: format!("sha256:{hex}"),
                repo_tags: tags.iter().map(|t| t.to_string()).collect(),
                created: OffsetDateTime::from_unix_timestamp(i64::from(n) * 1000).ok(),
                config: json!({"config": {"Labels": label.map(|l| json!({l: "yes"}))}}),
                ..Default::default()
            },
        )
    }

    fn all() -> Vec<Image> {
        vec![
            image(
                1,
                &[
                    "docker.io/library/busybox:latest",
                    "docker.io/library/busybox:1",
                ],
                None,
            ),
            image(2, &["127.0.0.1:5000/app:v1"], Some("team")),
            image(3, &[], None),
        ]
    }

    fn ids(chosen: &[&Image]) -> Vec<u8> {
        chosen
            .iter()
            .map(|i| i.spec.id.as_bytes()[i.spec.id.len() - 1] - b'0')
            .collect()
    }

    fn filters(json: &str) -> Filters {
        Filters::parse(Some(json), KNOWN_FILTERS).expect("filters")
    }

    #[test]
    fn the_reference_filter_matches_names_and_name_tag_globs() {
        let all = all();
        assert_eq!(
            ids(&select(&all, &filters(r#"{"reference":["busybox"]}"#)).expect("ok")),
            [1]
        );
        assert_eq!(
            ids(&select(&all, &filters(r#"{"reference":["*/app:v*"]}"#)).expect("ok")),
            [2]
        );
        let only = summary(&all[0], &filters(r#"{"reference":["busybox:1"]}"#), false);
        assert_eq!(only.repo_tags, ["busybox:1"]);
    }

    #[test]
    fn dangling_label_before_and_since_filter_as_docker_does() {
        let all = all();
        assert_eq!(
            ids(&select(&all, &filters(r#"{"dangling":["true"]}"#)).expect("ok")),
            [3]
        );
        assert_eq!(
            ids(&select(&all, &filters(r#"{"dangling":["false"]}"#)).expect("ok")),
            [1, 2]
        );
        assert_eq!(
            ids(&select(&all, &filters(r#"{"label":["team"]}"#)).expect("ok")),
            [2]
        );
        assert_eq!(
            ids(&select(&all, &filters(r#"{"before":["127.0.0.1:5000/app:v1"]}"#)).expect("ok")),
            [1]
        );
        assert_eq!(
            ids(&select(&all, &filters(r#"{"since":["busybox"]}"#)).expect("ok")),
            [2, 3]
        );
        let e = select(&all, &filters(r#"{"since":["nope"]}"#)).expect_err("refused");
        assert_eq!(e.message(), "No such image: nope");
        let e = select(&all, &filters(r#"{"dangling":["maybe"]}"#)).expect_err("refused");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_summary_has_familiar_tags_and_virtual_size_only_for_old_clients() {
        let s = summary(&all()[0], &Filters::default(), true);
        assert_eq!(s.repo_tags, ["busybox:latest", "busybox:1"]);
        assert_eq!(s.virtual_size, Some(0));
        let wire =
            serde_json::to_value(summary(&all()[0], &Filters::default(), false)).expect("json");
        assert!(wire.get("VirtualSize").is_none());
        assert_eq!(wire["SharedSize"], -1);
    }
}
