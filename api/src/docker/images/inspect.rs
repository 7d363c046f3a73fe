//! `GET /images/{name}/json` (`docker image inspect`) and
//! `GET /images/{name}/history` (`docker history`), built from the Image
//! object and the image config it keeps.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use sdc_docker_store::model::Image;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{familiar, find};
use crate::ApiError;
use crate::docker::{ApiVersion, DockerState};

/// Docker's `image.InspectResponse`, as API 1.45 has it (older versions
/// also get `VirtualSize`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// `sha256:…`.
    pub id: String,
    /// Tags, familiar form.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…`, familiar form.
    pub repo_digests: Vec<String>,
    /// The parent image (none for pulled images).
    pub parent: String,
    /// The last history entry's comment.
    pub comment: String,
    /// When the image was built (RFC 3339).
    pub created: String,
    /// The Docker version that built it, if the config says.
    pub docker_version: String,
    /// The author, if the config says.
    pub author: String,
    /// The container config the image runs with.
    pub config: Value,
    /// `amd64`, …
    pub architecture: String,
    /// `v8`, … when the config says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `linux`, …
    pub os: String,
    /// Bytes of the unpacked layers.
    pub size: i64,
    /// The same, for API versions before 1.44.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<i64>,
    /// Where the layers are on this node.
    pub graph_driver: GraphDriver,
    /// The layers' DiffIDs.
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    /// When the image was last tagged.
    pub metadata: Metadata,
}

/// Docker's `GraphDriverData`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    /// `overlay`: each layer is one overlayfs lower dir.
    pub name: String,
    /// `LowerDir`: the layer dirs, top first, `:`-separated.
    pub data: BTreeMap<String, String>,
}

/// Docker's `RootFS`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// DiffIDs, bottom first.
    pub layers: Vec<String>,
}

/// Docker's `image.Metadata`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    /// When a tag was last added (the zero time when never).
    pub last_tag_time: String,
}

/// One line of `docker history`: Docker's `image.HistoryResponseItem`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// The image id on the top line, `<missing>` below it (Docker has no
    /// ids for the steps of pulled images either).
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// The build step.
    pub created_by: String,
    /// Tags of the image, on the top line.
    pub tags: Vec<String>,
    /// Bytes of the layer this step made (0 for steps without one).
    pub size: i64,
    /// The step's comment.
    pub comment: String,
}

/// `GET /images/{name}/json`.
pub async fn inspect(
    State(state): State<DockerState>,
    name: String,
    axum::Extension(version): axum::Extension<ApiVersion>,
) -> Result<Json<ImageInspect>, ApiError> {
    let (image, _) = find(&state, &name).await?;
    let mut inspect = image_inspect(&image, &state.images.store.lower_dirs(&image));
    if version.older_than("1.44") {
        inspect.virtual_size = Some(inspect.size);
    }
    Ok(Json(inspect))
}

/// The inspect view of `image` whose layers are in `lower_dirs`.
pub fn image_inspect(image: &Image, lower_dirs: &[std::path::PathBuf]) -> ImageInspect {
    let spec = &image.spec;
    let config = &spec.config;
    let text = |key: &str| config[key].as_str().unwrap_or_default().to_owned();
    let comment = config["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|h| h["comment"].as_str())
        .unwrap_or_default()
        .to_owned();
    let lower = lower_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    ImageInspect {
        id: spec.id.clone(),
        repo_tags: spec.repo_tags.iter().map(|t| familiar(t)).collect(),
        repo_digests: spec.repo_digests.iter().map(|d| familiar(d)).collect(),
        parent: String::new(),
        comment,
        created: spec
            .created
            .and_then(|c| c.format(&Rfc3339).ok())
            .unwrap_or_else(|| text("created")),
        docker_version: text("docker_version"),
        author: text("author"),
        config: match &config["config"] {
            Value::Null => Value::Object(Default::default()),
            c => c.clone(),
        },
        architecture: spec.architecture.clone(),
        variant: config["variant"].as_str().map(str::to_owned),
        os: spec.os.clone(),
        size: spec.size,
        virtual_size: None,
        graph_driver: GraphDriver {
            name: "overlay".into(),
            data: [("LowerDir".to_owned(), lower)].into_iter().collect(),
        },
        root_fs: RootFs {
            kind: "layers".into(),
            layers: spec.diff_ids.clone(),
        },
        metadata: Metadata {
            last_tag_time: image
                .metadata
                .creation_timestamp
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
    }
}

/// `GET /images/{name}/history`.
pub async fn history(
    State(state): State<DockerState>,
    name: String,
) -> Result<Json<Vec<HistoryItem>>, ApiError> {
    let (image, _) = find(&state, &name).await?;
    let store = &state.images.store;
    let sizes: Vec<i64> = image
        .spec
        .diff_ids
        .iter()
        .map(|d| {
            sdc_docker_images::reference::Digest::parse(d)
                .map(|d| i64::try_from(store.layer_size(&d)).unwrap_or(i64::MAX))
                .unwrap_or(0)
        })
        .collect();
    Ok(Json(history_items(&image, &sizes)))
}

/// The history of `image`, newest first, each step that made a layer with
/// that layer's size (`layer_sizes`, bottom first).
pub fn history_items(image: &Image, layer_sizes: &[i64]) -> Vec<HistoryItem> {
    let steps = image.spec.config["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut layers = layer_sizes.iter();
    let mut items: Vec<HistoryItem> = steps
        .iter()
        .map(|step| {
            let empty = step["empty_layer"].as_bool().unwrap_or(false);
            HistoryItem {
                id: "<missing>".into(),
                created: step["created"]
                    .as_str()
                    .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok())
                    .map(|t| t.unix_timestamp())
                    .unwrap_or(0),
                created_by: step["created_by"].as_str().unwrap_or_default().to_owned(),
                tags: Vec::new(),
                size: if empty {
                    0
                } else {
                    layers.next().copied().unwrap_or(0)
                },
                comment: step["comment"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    if items.is_empty() {
        // A config without history: one line per layer, as Docker shows.
        items = layer_sizes
            .iter()
            .map(|size| HistoryItem {
                id: "<missing>".into(),
                created: image.spec.created.map(|c| c.unix_timestamp()).unwrap_or(0),
                created_by: String::new(),
                tags: Vec::new(),
                size: *size,
                comment: String::new(),
            })
            .collect();
    }
    items.reverse();
    if let Some(top) = items.first_mut() {
        top.id = image.spec.id.clone();
        top.tags = image.spec.repo_tags.iter().map(|t| familiar(t)).collect();
    }
    items
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::Resource;
    use sdc_docker_store::model::ImageSpec;
    use serde_json::json;

    use super::*;

    fn image() -> Image {
        Image::new(
            "abc",
            ImageSpec {
                id: "sha256:abc".into(),
                repo_tags: vec!["docker.io/library/busybox:latest".into()],
                diff_ids: vec!["sha256:l1".into(), "sha256:l2".into()],
                config: json!({
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Cmd": ["sh"]},
                    "history": [
                        {"created": "2026-01-01T00:00:00Z", "created_by": "ADD rootfs"},
                        {"created": "2026-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": true},
                        {"created": "2026-01-03T00:00:00Z", "created_by": "RUN touch x", "comment": "last"},
                    ]
                }),
                ..Default::default()
            },
        )
    }

    #[test]
    fn history_is_newest_first_with_layer_sizes_on_the_steps_that_made_layers() {
        let items = history_items(&image(), &[100, 7]);
        let lines: Vec<_> = items
            .iter()
            .map(|i| (i.id.as_str(), i.created_by.as_str(), i.size))
            .collect();
        assert_eq!(
            lines,
            [
                ("sha256:abc", "RUN touch x", 7),
                ("<missing>", "ENV A=1", 0),
                ("<missing>", "ADD rootfs", 100),
            ]
        );
        assert_eq!(items[0].tags, ["busybox:latest"]);
        assert_eq!(items[0].created, 1_767_398_400);
    }

    #[test]
    fn inspect_shows_familiar_tags_the_run_config_and_the_layers() {
        let inspect = image_inspect(&image(), &[]);
        assert_eq!(inspect.repo_tags, ["busybox:latest"]);
        assert_eq!(inspect.config, json!({"Cmd": ["sh"]}));
        assert_eq!(inspect.comment, "last");
        assert_eq!(inspect.root_fs.layers, ["sha256:l1", "sha256:l2"]);
        let wire = serde_json::to_value(&inspect).expect("json");
        assert_eq!(wire["RootFS"]["Type"], "layers");
        assert!(wire.get("VirtualSize").is_none());
    }
}
