//! `POST /images/{name}/tag` (`docker tag`) and `DELETE /images/{name}`
//! (`docker rmi`), with Docker's rules for what untags, what deletes, and
//! what a container's use of an image forbids.
//!
//! Deleting an image removes its Image object, then every layer of it that
//! no remaining image uses from this node's disk (with the blob it came
//! from). Other nodes' copies are theirs to collect. Pulled and loaded
//! images have no parent images, so `noprune` changes nothing.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use sdc_docker_images::lookup::Found;
use sdc_docker_images::reference::Digest;
use sdc_docker_store::model::{Container, ContainerState, Image};
use sdc_docker_store::{Api, Error as StoreError};
use serde::{Deserialize, Serialize};

use super::{familiar, find, images_api, parse_reference};
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::query::bool_value;

/// The query of `POST /images/{name}/tag`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TagQuery {
    /// The repository to tag into.
    pub repo: Option<String>,
    /// The tag (`latest` when empty).
    pub tag: Option<String>,
}

/// `POST /images/{name}/tag?repo=&tag=`: 201 on success.
pub async fn tag(
    State(state): State<DockerState>,
    name: String,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query: TagQuery = serde_urlencoded_query(raw.as_deref())?;
    let repo = query.repo.unwrap_or_default();
    if repo.is_empty() {
        return Err(ApiError::bad_request(
            "repository name must have at least one component",
        ));
    }
    let reference = parse_reference(&repo)?;
    if reference.digest().is_some() {
        return Err(ApiError::bad_request(
            "refusing to create a tag with a digest reference",
        ));
    }
    let reference = match query.tag.as_deref().filter(|t| !t.is_empty()) {
        Some(tag) => reference
            .with_tag(tag)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => reference.with_default_tag(),
    };
    let new_tag = reference.to_string();
    let images = images_api(&state);
    for _ in 0..5 {
        let (mut image, _) = find(&state, &name).await?;
        if !image.spec.repo_tags.contains(&new_tag) {
            image.spec.repo_tags.push(new_tag.clone());
        }
        match images.replace(&image).await {
            Ok(_) => {
                untag_others(&images, &image.metadata.name, &new_tag).await?;
                tracing::info!(image = %image.spec.id, tag = %new_tag, "tagged");
                return Ok(StatusCode::CREATED.into_response());
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "the image kept changing while being tagged; try again",
    ))
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned + Default>(
    raw: Option<&str>,
) -> Result<T, ApiError> {
    match raw {
        None => Ok(T::default()),
        Some(raw) => axum::extract::Query::<T>::try_from_uri(
            &format!("/?{raw}")
                .parse()
                .map_err(|_| ApiError::bad_request("invalid query"))?,
        )
        .map(|q| q.0)
        .map_err(ApiError::from),
    }
}

/// A tag names one image: takes `tag` off every image but `keep`.
async fn untag_others(images: &Api<Image>, keep: &str, tag: &str) -> Result<(), ApiError> {
    for mut other in images.list().await?.items {
        if other.metadata.name != keep && other.spec.repo_tags.iter().any(|t| t == tag) {
            other.spec.repo_tags.retain(|t| t != tag);
            images.replace(&other).await?;
        }
    }
    Ok(())
}

/// The query of `DELETE /images/{name}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteQuery {
    /// Untag everything and delete despite stopped containers.
    pub force: Option<String>,
    /// Keep untagged parents (there are none here).
    pub noprune: Option<String>,
}

/// One line of `docker rmi`'s answer: Docker's `image.DeleteResponse`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteItem {
    /// A tag or digest removed.
    #[serde(rename = "Untagged", skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    /// An image or layer deleted.
    #[serde(rename = "Deleted", skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

fn short(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn remove(
    State(state): State<DockerState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<Json<Vec<DeleteItem>>, ApiError> {
    let force = bool_value(query.force.as_deref());
    let images = images_api(&state);
    let (mut image, found) = find(&state, &name).await?;
    let users = containers_using(&state, &image).await?;
    let running = users.iter().find(|c| {
        matches!(
            c.status.state,
            ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
        )
    });
    let id = short(&image.spec.id);
    let mut records = Vec::new();

    match found {
        Found::Tag(reference) | Found::Digest(reference) => {
            let last = image.spec.repo_tags.len() + image.spec.repo_digests.len() <= 1
                || only_digests_left(&image, &reference);
            if last
                && !force
                && let Some(container) = users.first()
            {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {id}",
                    short(&container.spec.id)
                )));
            }
            image.spec.repo_tags.retain(|t| *t != reference);
            image.spec.repo_digests.retain(|d| *d != reference);
            records.push(DeleteItem {
                untagged: Some(familiar(&reference)),
                ..Default::default()
            });
            if image.spec.repo_tags.is_empty() {
                // Only digests of the image are left: they go too, as in
                // Docker, so they do not keep it alive.
                for digest in std::mem::take(&mut image.spec.repo_digests) {
                    records.push(DeleteItem {
                        untagged: Some(familiar(&digest)),
                        ..Default::default()
                    });
                }
            }
            if !image.spec.repo_tags.is_empty()
                || running.is_some()
                || (!force && !users.is_empty())
            {
                images.replace(&image).await?;
                return Ok(Json(records));
            }
        }
        Found::Id => {
            let repositories: HashSet<String> = image
                .spec
                .repo_tags
                .iter()
                .chain(&image.spec.repo_digests)
                .map(|r| repository_of(r))
                .collect();
            if let Some(container) = running {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to delete {id} (cannot be forced) - image is being used by running container {}",
                    short(&container.spec.id)
                )));
            }
            if !force {
                if repositories.len() > 1 {
                    return Err(ApiError::conflict(format!(
                        "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories"
                    )));
                }
                if let Some(container) = users.first() {
                    return Err(ApiError::conflict(format!(
                        "conflict: unable to delete {id} (must be forced) - image is being used by stopped container {}",
                        short(&container.spec.id)
                    )));
                }
            }
            for reference in image.spec.repo_tags.iter().chain(&image.spec.repo_digests) {
                records.push(DeleteItem {
                    untagged: Some(familiar(reference)),
                    ..Default::default()
                });
            }
        }
    }

    images
        .delete(&image.metadata.name, Some(image.metadata.resource_version))
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::conflict(format!(
                "conflict: unable to delete {id}: the image changed meanwhile; try again"
            )),
            e => e.into(),
        })?;
    records.push(DeleteItem {
        deleted: Some(image.spec.id.clone()),
        ..Default::default()
    });
    records.extend(release_layers(&state, &image).await?);
    tracing::info!(image = %image.spec.id, "image deleted");
    Ok(Json(records))
}

/// Whether, once `reference` is gone, the image keeps only digests (of
/// its own repositories) and no tag: then the reference was its last name.
fn only_digests_left(image: &Image, reference: &str) -> bool {
    image.spec.repo_tags.iter().all(|t| t == reference)
}

/// `docker.io/library/busybox` of a tag or digested name.
fn repository_of(reference: &str) -> String {
    parse_reference(reference)
        .map(|r| r.name())
        .unwrap_or_else(|_| reference.to_owned())
}

/// The containers whose spec runs `image`.
async fn containers_using(state: &DockerState, image: &Image) -> Result<Vec<Container>, ApiError> {
    let containers: Api<Container> = Api::default_account(state.store.clone());
    Ok(containers
        .list()
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.image_id == image.spec.id)
        .collect())
}

/// Removes from this node the layers of `deleted` no remaining image uses;
/// the `Deleted` lines for them.
async fn release_layers(state: &DockerState, deleted: &Image) -> Result<Vec<DeleteItem>, ApiError> {
    let remaining = images_api(state).list().await?.items;
    let in_use: HashSet<&String> = remaining.iter().flat_map(|i| &i.spec.diff_ids).collect();
    let store = &state.images.store;
    if let Ok(config) = Digest::parse(&deleted.spec.id)
        && !remaining.iter().any(|i| i.spec.id == deleted.spec.id)
    {
        store
            .remove_blob(&config)
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    let mut records = Vec::new();
    for diff_id in deleted.spec.diff_ids.iter().rev() {
        if in_use.contains(diff_id) {
            continue;
        }
        let Ok(digest) = Digest::parse(diff_id) else {
            continue;
        };
        if store
            .remove_layer(&digest)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            records.push(DeleteItem {
                deleted: Some(diff_id.clone()),
                ..Default::default()
            });
        }
    }
    Ok(records)
}
