//! `GET /containers/json`: `docker ps`, newest first, with Docker's filters
//! and Docker's human status text (`Up 3 seconds`, `Exited (1) 2 minutes
//! ago`).
//!
//! A listing reads the Container and Image objects, whatever the number
//! of containers: the image configs give the commands and labels the
//! containers inherit. It takes them, already decoded and shared, from the
//! [`EventLog`](crate::docker::events::EventLog), which follows every
//! change of the store anyway: once the log has caught up with the store's
//! revision at the time of the request, it holds at least what a store
//! listing would give (so `docker ps` right after `docker run -d` or
//! `docker rm` shows it), without reading and decoding a thousand values
//! (most of a listing's time when it read the store). When the log lags
//! (a relist after compaction, a store that cannot tell its revision) for
//! longer than [`FRESH_WITHIN`], the listing reads the store itself, as
//! it always did. The answer is then serialized once into a buffer sized
//! for it. Only `size=1` reaches the nodes (a container's writable layer is
//! measured from its zone's changes).
//!
//! What a container is shown as (its merged config, ports, mounts,
//! networks, creation time) is worked out here and shared with
//! [`super::inspect`], so `docker ps` and `docker inspect` never disagree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderValue, header};
use regex::Regex;
use sdc_docker_images::lookup::find_in;
use sdc_docker_store::model::{Container, ContainerState, Image};
use sdc_docker_zones::streams::ChangeKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::containers_api;
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::filters::Filters;
use crate::docker::images::images_api;
use crate::docker::query::bool_value;

/// The annotation keeping a container's Docker creation time when its
/// Container object is younger than the container (a `docker rename`
/// writes a new object under the new name).
pub(crate) const CREATED_ANNOTATION: &str = "sdc-docker.created";

/// Docker's `container.Summary`, one row of `docker ps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    /// The 64-hex id.
    #[serde(rename = "Id")]
    pub id: String,
    /// `["/name"]`.
    pub names: Vec<String>,
    /// The image as the user named it, or its id when that name now names
    /// another image.
    pub image: String,
    /// `sha256:…`.
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// The command line run (entrypoint and arguments).
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    /// Exposed and published ports.
    pub ports: Vec<Port>,
    /// Bytes written in the container's layer (`size=1` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<i64>,
    /// Bytes of the image and the container's layer (`size=1` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<i64>,
    /// The image's labels overridden by the container's.
    pub labels: BTreeMap<String, String>,
    /// Docker's state word (`running`, `exited`, …).
    pub state: String,
    /// Docker's human status (`Up 3 seconds`).
    pub status: String,
    /// The network mode.
    pub host_config: SummaryHostConfig,
    /// The networks attached.
    pub network_settings: SummaryNetworkSettings,
    /// Volumes and bind mounts.
    pub mounts: Vec<MountPoint>,
}

/// Docker's `Port`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// The host address of a published port.
    #[serde(rename = "IP", default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// The port in the container.
    #[serde(rename = "PrivatePort")]
    pub private_port: u16,
    /// The host port of a published port.
    #[serde(rename = "PublicPort", default, skip_serializing_if = "is_zero")]
    pub public_port: u16,
    /// `tcp`, `udp` or `sctp`.
    #[serde(rename = "Type")]
    pub type_: String,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// The summary's `HostConfig`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    /// `bridge`, or the network asked for.
    pub network_mode: String,
}

/// The summary's `NetworkSettings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryNetworkSettings {
    /// Each network by name.
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// Docker's `EndpointSettings`: what a container has on one network.
/// Addresses stay empty until networks are realised on the nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    /// Static addresses asked for.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<serde_json::Value>,
    /// Legacy links.
    pub links: Option<Vec<String>>,
    /// Other names on the network.
    pub aliases: Option<Vec<String>>,
    /// The MAC address.
    pub mac_address: String,
    /// Driver options.
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// The network's id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The gateway.
    pub gateway: String,
    /// The IPv4 address.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// The IPv4 prefix length.
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: i64,
    /// The IPv6 gateway.
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    /// The global IPv6 address.
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    /// Its prefix length.
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: i64,
    /// Names the container answers to on the network.
    #[serde(rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
}

/// Docker's `MountPoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `bind` or `volume`.
    #[serde(rename = "Type")]
    pub type_: String,
    /// The volume's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The host path (empty for a volume not yet realised).
    pub source: String,
    /// The path in the container.
    pub destination: String,
    /// The volume driver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// Mount options as given (`ro`, `z`).
    pub mode: String,
    /// Writable.
    #[serde(rename = "RW")]
    pub rw: bool,
    /// Bind propagation.
    pub propagation: String,
}

/// The query of `GET /containers/json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Show stopped containers too.
    pub all: Option<String>,
    /// The newest `limit` containers, whatever their state.
    pub limit: Option<String>,
    /// Measure the containers' layers.
    pub size: Option<String>,
    /// Docker's filters, JSON.
    pub filters: Option<String>,
    /// Before API 1.24's `before` filter.
    pub before: Option<String>,
    /// Before API 1.24's `since` filter.
    pub since: Option<String>,
}

/// The filters `docker ps` knows (moby's `acceptedPsFilterTags`).
pub(crate) const KNOWN_FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "exited",
    "expose",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];

/// How long a listing waits for the event log to catch up with the store
/// before it reads the store itself: about what reading and decoding a
/// thousand containers from the store takes, so waiting longer would be
/// slower than not waiting. The log is normally behind by one watch hop,
/// well under a millisecond.
const FRESH_WITHIN: Duration = Duration::from_millis(20);

/// Bytes of JSON a row of the answer takes, about: the answer's buffer is
/// sized from it so serializing it does not copy it as it grows.
const ROW_BYTES: usize = 768;

/// Docker's container state words.
const STATES: &[&str] = &[
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

/// Docker's health words (`none`: no health check).
const HEALTHS: &[&str] = &["starting", "healthy", "unhealthy", "none"];

/// `GET /containers/json`.
pub(super) async fn list(
    State(state): State<DockerState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let mut filters = Filters::parse(query.filters.as_deref(), KNOWN_FILTERS)?;
    for (name, value) in [("before", &query.before), ("since", &query.since)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            filters.add(name, value);
        }
    }
    let limit = match query.limit.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(n) => n
            .parse::<i64>()
            .map_err(|e| ApiError::bad_request(format!("invalid limit {n:?}: {e}")))?,
    };
    let options = ListOptions {
        all: bool_value(query.all.as_deref()),
        limit,
        filters,
    };
    let (containers, images) = match state.events.snapshot(FRESH_WITHIN).await {
        Some(snapshot) => (snapshot.containers, snapshot.images),
        None => {
            let (containers, images) = (containers_api(&state), images_api(&state));
            let (containers, images) = tokio::try_join!(containers.list(), images.list())?;
            let containers = containers.items.into_iter().map(Arc::new).collect();
            (containers, Arc::from(images.items))
        }
    };
    let mut images = Images::new(&images);
    let now = OffsetDateTime::now_utc();
    let chosen = select(&containers, &mut images, &options)?;
    let mut rows: Vec<ContainerSummary> = chosen
        .iter()
        .map(|c| summary(c, &mut images, now))
        .collect();
    if bool_value(query.size.as_deref()) {
        let owned: Vec<Arc<Container>> = chosen.iter().copied().cloned().collect();
        let sizes: Vec<i64> = futures::stream::iter(owned)
            .map(|c| {
                let state = state.clone();
                async move { size_rw(&state, &c).await }
            })
            .buffered(8)
            .collect()
            .await;
        for ((row, container), rw) in rows.iter_mut().zip(&chosen).zip(sizes) {
            let image = images.of(container).map_or(0, |i| i.spec.size);
            row.size_rw = Some(rw);
            row.size_root_fs = Some(image + rw);
        }
    }
    json(&rows)
}

/// `rows` as a JSON answer, written once into a buffer of about its size.
fn json(rows: &[ContainerSummary]) -> Result<Response, ApiError> {
    let mut body = Vec::with_capacity(rows.len().saturating_add(1).saturating_mul(ROW_BYTES));
    serde_json::to_writer(&mut body, rows)
        .map_err(|e| ApiError::internal(format!("writing the container list: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// What `docker ps` asked for.
#[derive(Debug, Default)]
pub(crate) struct ListOptions {
    /// `-a`.
    pub all: bool,
    /// `-n` (0: no limit).
    pub limit: i64,
    /// `--filter`.
    pub filters: Filters,
}

/// The account's images, with the lookups a listing repeats remembered.
pub(crate) struct Images<'a> {
    all: &'a [Image],
    by_id: HashMap<&'a str, &'a Image>,
    by_name: HashMap<String, Option<&'a Image>>,
    configs: HashMap<&'a str, Arc<ImageConfig>>,
}

impl<'a> Images<'a> {
    /// An index of `all`.
    pub(crate) fn new(all: &'a [Image]) -> Images<'a> {
        Images {
            all,
            by_id: all.iter().map(|i| (i.spec.id.as_str(), i)).collect(),
            by_name: HashMap::new(),
            configs: HashMap::new(),
        }
    }

    /// The image `name` (a reference, an id or an id prefix) names.
    fn named(&mut self, name: &str) -> Option<&'a Image> {
        if let Some(found) = self.by_name.get(name) {
            return *found;
        }
        let found = find_in(self.all, name).ok().map(|(image, _)| image);
        self.by_name.insert(name.to_owned(), found);
        found
    }

    /// The image `container` runs: by its resolved id, else by the name
    /// the user gave.
    pub(crate) fn of(&mut self, container: &Container) -> Option<&'a Image> {
        if !container.spec.image_id.is_empty() {
            return self.by_id.get(container.spec.image_id.as_str()).copied();
        }
        self.named(&container.spec.image)
    }

    /// The inheritable config of the image `container` runs, worked out
    /// once per image.
    fn config_of(&mut self, container: &Container) -> Arc<ImageConfig> {
        let Some(image) = self.of(container) else {
            return Arc::default();
        };
        self.configs
            .entry(image.spec.id.as_str())
            .or_insert_with(|| Arc::new(ImageConfig::of(image)))
            .clone()
    }

    /// What `docker ps` shows as the image: the name the user gave while
    /// it still names the same image, else the image id (moby's
    /// `refreshImage`).
    fn shown_name(&mut self, container: &Container) -> String {
        let spec = &container.spec;
        if spec.image_id.is_empty() || spec.image == spec.image_id {
            return spec.image.clone();
        }
        match self.named(&spec.image) {
            Some(image) if image.spec.id == spec.image_id => spec.image.clone(),
            _ => spec.image_id.clone(),
        }
    }
}

/// The parts of an image config a container inherits, as Docker's
/// create-time `merge` takes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: String,
    pub size: i64,
}

impl ImageConfig {
    /// What `image`'s config gives; a malformed field gives nothing.
    pub(crate) fn of(image: &Image) -> ImageConfig {
        let config = &image.spec.config["config"];
        let strings = |key: &str| -> Option<Vec<String>> {
            config[key].as_array().map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
        };
        let keys = |key: &str| -> BTreeSet<String> {
            config[key]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let text = |key: &str| config[key].as_str().unwrap_or_default().to_owned();
        ImageConfig {
            cmd: strings("Cmd"),
            entrypoint: strings("Entrypoint"),
            env: strings("Env").unwrap_or_default(),
            working_dir: text("WorkingDir"),
            user: text("User"),
            labels: config["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect()
                })
                .unwrap_or_default(),
            exposed_ports: keys("ExposedPorts"),
            volumes: keys("Volumes"),
            stop_signal: text("StopSignal"),
            size: image.spec.size,
        }
    }
}

/// When Docker says the container was created: the original creation
/// kept across a rename, else its object's.
pub(crate) fn created(container: &Container) -> OffsetDateTime {
    container
        .metadata
        .annotations
        .get(CREATED_ANNOTATION)
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .or(container.metadata.creation_timestamp)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Whether Docker counts the container as running (`State.Running`):
/// paused and restarting containers are.
pub(crate) fn is_running(container: &Container) -> bool {
    matches!(
        container.status.state,
        ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
    )
}

/// Docker's state word of `state`.
pub(crate) fn state_word(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Paused => "paused",
        ContainerState::Restarting => "restarting",
        ContainerState::Removing => "removing",
        ContainerState::Exited => "exited",
        ContainerState::Dead => "dead",
    }
}

/// Docker's `units.HumanDuration`.
pub(crate) fn human_duration(d: time::Duration) -> String {
    let seconds = d.whole_seconds();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = d.whole_minutes();
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.as_seconds_f64() / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", d.whole_hours() / 24 / 365)
}

/// Docker's `State.String()`: the STATUS column of `docker ps`.
pub(crate) fn status_text(container: &Container, now: OffsetDateTime) -> String {
    let status = &container.status;
    let since = |t: Option<OffsetDateTime>| human_duration(now - t.unwrap_or(now));
    match status.state {
        ContainerState::Running => format!("Up {}", since(status.started_at)),
        ContainerState::Paused => format!("Up {} (Paused)", since(status.started_at)),
        ContainerState::Restarting => format!(
            "Restarting ({}) {} ago",
            status.exit_code,
            since(status.finished_at)
        ),
        ContainerState::Removing => "Removal In Progress".into(),
        ContainerState::Dead => "Dead".into(),
        ContainerState::Created => "Created".into(),
        ContainerState::Exited => match (status.started_at, status.finished_at) {
            (None, _) => "Created".into(),
            (Some(_), None) => String::new(),
            (Some(_), Some(finished)) => format!(
                "Exited ({}) {} ago",
                status.exit_code,
                human_duration(now - finished)
            ),
        },
    }
}

/// The process `container` runs, as Docker's `Path` and `Args`: the
/// container's entrypoint and command merged with its image's (empty when
/// neither gives one).
pub(crate) fn path_and_args(container: &Container, image: &ImageConfig) -> (String, Vec<String>) {
    let args = sdc_docker_zones::docker::command(
        container.spec.entrypoint.as_deref(),
        &container.spec.cmd,
        image.entrypoint.as_deref(),
        image.cmd.as_deref(),
    )
    .unwrap_or_default();
    let mut args = args.into_iter();
    (args.next().unwrap_or_default(), args.collect())
}

/// The COMMAND column: the path and the arguments, those with a space
/// quoted, as moby's `transformContainer` writes it.
fn command_line(path: &str, args: &[String]) -> String {
    if args.is_empty() {
        return path.to_owned();
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    format!("{path} {}", args.join(" "))
}

/// `80/tcp` as a port and protocol; a bare number is tcp.
fn split_port(port: &str) -> Option<(u16, String)> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let proto = if proto.is_empty() { "tcp" } else { proto };
    Some((number.parse().ok()?, proto.to_ascii_lowercase()))
}

/// The ports `docker ps` shows: while the container runs, every exposed
/// port (the image's and the container's), with its bindings when
/// published.
pub(crate) fn ports(container: &Container, image: &ImageConfig) -> Vec<Port> {
    if !is_running(container) {
        return Vec::new();
    }
    let spec = &container.spec;
    let exposed: BTreeSet<&str> = image
        .exposed_ports
        .iter()
        .map(String::as_str)
        .chain(spec.exposed_ports.iter().map(String::as_str))
        .chain(spec.port_bindings.iter().map(|b| b.container_port.as_str()))
        .collect();
    let mut out = Vec::new();
    for port in exposed {
        let Some((private_port, type_)) = split_port(port) else {
            continue;
        };
        let bindings: Vec<_> = spec
            .port_bindings
            .iter()
            .filter(|b| split_port(&b.container_port) == Some((private_port, type_.clone())))
            .collect();
        if bindings.is_empty() {
            out.push(Port {
                ip: String::new(),
                private_port,
                public_port: 0,
                type_: type_.clone(),
            });
        }
        for binding in bindings {
            out.push(Port {
                ip: if binding.host_ip.is_empty() {
                    "0.0.0.0".into()
                } else {
                    binding.host_ip.clone()
                },
                private_port,
                public_port: binding.host_port.parse().unwrap_or(0),
                type_: type_.clone(),
            });
        }
    }
    out
}

/// The container's mounts, Docker's way.
pub(crate) fn mounts(container: &Container) -> Vec<MountPoint> {
    container
        .spec
        .mounts
        .iter()
        .map(|m| {
            let volume = m.type_ == "volume";
            MountPoint {
                type_: m.type_.clone(),
                name: if volume {
                    m.source.clone()
                } else {
                    String::new()
                },
                source: if volume {
                    String::new()
                } else {
                    m.source.clone()
                },
                destination: m.target.clone(),
                driver: if volume {
                    "local".into()
                } else {
                    String::new()
                },
                mode: if m.read_only {
                    "ro".into()
                } else {
                    String::new()
                },
                rw: !m.read_only,
                propagation: if volume {
                    String::new()
                } else {
                    "rprivate".into()
                },
            }
        })
        .collect()
}

/// The network mode: the first network asked for, else Docker's `bridge`.
pub(crate) fn network_mode(container: &Container) -> String {
    match container.spec.networks.first().map(String::as_str) {
        None | Some("" | "default") => "bridge".into(),
        Some(name) => name.to_owned(),
    }
}

/// The networks the container is on, by name.
pub(crate) fn networks(container: &Container) -> BTreeMap<String, EndpointSettings> {
    let names: Vec<String> = if container.spec.networks.is_empty() {
        vec![network_mode(container)]
    } else {
        container
            .spec
            .networks
            .iter()
            .map(|n| {
                if n == "default" {
                    "bridge".into()
                } else {
                    n.clone()
                }
            })
            .collect()
    };
    names
        .into_iter()
        .map(|n| (n, EndpointSettings::default()))
        .collect()
}

/// The container's labels over its image's, as Docker merges them.
pub(crate) fn merged_labels(
    container: &Container,
    image: &ImageConfig,
) -> BTreeMap<String, String> {
    let mut labels = image.labels.clone();
    labels.extend(container.spec.labels.clone());
    labels
}

fn summary(
    container: &Container,
    images: &mut Images<'_>,
    now: OffsetDateTime,
) -> ContainerSummary {
    let image = images.config_of(container);
    let (path, args) = path_and_args(container, &image);
    let image_id = if container.spec.image_id.is_empty() {
        images
            .of(container)
            .map(|i| i.spec.id.clone())
            .unwrap_or_default()
    } else {
        container.spec.image_id.clone()
    };
    ContainerSummary {
        id: container.docker_id(),
        names: vec![format!("/{}", container.metadata.name)],
        image: images.shown_name(container),
        image_id,
        command: command_line(&path, &args),
        created: created(container).unix_timestamp(),
        ports: ports(container, &image),
        size_rw: None,
        size_root_fs: None,
        labels: merged_labels(container, &image),
        state: state_word(container.status.state).into(),
        status: status_text(container, now),
        host_config: SummaryHostConfig {
            network_mode: network_mode(container),
        },
        network_settings: SummaryNetworkSettings {
            networks: networks(container),
        },
        mounts: mounts(container),
    }
}

/// Bytes of the files the container added or changed in its layer (0 when
/// its node cannot be asked), as Docker's `SizeRw`.
pub(crate) async fn size_rw(state: &DockerState, container: &Container) -> i64 {
    let Ok((streams, id)) = super::zone_streams(state, container) else {
        return 0;
    };
    let changes = match streams.changes(&id).await {
        Ok(changes) => changes,
        Err(e) => {
            tracing::debug!(container = %container.metadata.name, error = %e, "no size: the zone's changes are unreadable");
            return 0;
        }
    };
    let mut total: i64 = 0;
    for change in changes {
        if change.kind == ChangeKind::Deleted {
            continue;
        }
        if let Ok(stat) = streams.stat_path(&id, &change.path).await {
            // Go's os.ModeDir: directories add nothing, as in Docker's
            // directory.Size.
            if stat.mode & (1 << 31) == 0 {
                total = total.saturating_add(i64::try_from(stat.size).unwrap_or(i64::MAX));
            }
        }
    }
    total
}

/// A filter whose values are regular expressions matched anywhere, as
/// moby's `filters.Args.Match` does: a value equal to the text matches, a
/// value that does not compile matches nothing, no value matches all.
struct Pattern {
    values: Vec<String>,
    regexes: Vec<Regex>,
}

impl Pattern {
    fn new(values: &[String]) -> Pattern {
        Pattern {
            values: values.to_vec(),
            regexes: values.iter().filter_map(|v| Regex::new(v).ok()).collect(),
        }
    }

    /// Whether no value was given (everything matches).
    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn matches(&self, text: &str) -> bool {
        self.values.is_empty()
            || self.values.iter().any(|v| v == text)
            || self.regexes.iter().any(|r| r.is_match(text))
    }
}

/// A container of `all` by full id, exact name or unique id prefix, as
/// moby's `idOrNameFilter` finds the `before` and `since` containers.
fn find_listed<'a>(all: &'a [Arc<Container>], name: &str) -> Result<&'a Arc<Container>, ApiError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if let Some(c) = all
        .iter()
        .find(|c| c.docker_id() == bare || c.metadata.name == bare)
    {
        return Ok(c);
    }
    let wanted = bare.to_ascii_lowercase();
    let mut prefixed = all
        .iter()
        .filter(|c| !wanted.is_empty() && c.docker_id().starts_with(&wanted));
    match (prefixed.next(), prefixed.next()) {
        (Some(one), None) => Ok(one),
        _ => Err(super::no_such_container(name)),
    }
}

/// The ports a `publish` or `expose` value names (`80`, `80/udp`,
/// `8000-8080/tcp`), with moby's errors.
fn port_filter(key: &str, value: &str) -> Result<BTreeSet<(u16, String)>, ApiError> {
    if value.contains(':') {
        return Err(ApiError::bad_request(format!(
            "filter for '{key}' should not contain ':': {value}"
        )));
    }
    let (range, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    let proto = if proto.is_empty() { "tcp" } else { proto }.to_ascii_lowercase();
    let bad = |why: &str| {
        ApiError::bad_request(format!("error while looking up for {key} {value}: {why}"))
    };
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (a, b),
        None => (range, range),
    };
    let start: u16 = start
        .parse()
        .map_err(|_| bad(&format!("invalid start port '{start}'")))?;
    let end: u16 = end
        .parse()
        .map_err(|_| bad(&format!("invalid end port '{end}'")))?;
    if end < start {
        return Err(bad(&format!("invalid port range: {range}")));
    }
    Ok((start..=end).map(|p| (p, proto.clone())).collect())
}

/// The containers of `all` that `options` let through, newest first, as
/// moby's `foldFilter` and `includeContainerInList` choose them.
pub(crate) fn select<'a>(
    all: &'a [Arc<Container>],
    images: &mut Images<'_>,
    options: &ListOptions,
) -> Result<Vec<&'a Arc<Container>>, ApiError> {
    let filters = &options.filters;
    let mut show_all = options.all;

    let mut exited = Vec::new();
    for value in filters.get("exited") {
        let code: i64 = value.parse().map_err(|_| {
            ApiError::bad_request(format!("strconv.Atoi: parsing {value:?}: invalid syntax"))
        })?;
        exited.push(code);
    }
    for value in filters.get("status") {
        if !STATES.contains(&value.as_str()) {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'status={value}'"
            )));
        }
        show_all = true;
    }
    let is_task = match filters.get("is-task") {
        [] => None,
        values if values.iter().any(|v| v == "true") => Some(true),
        values if values.iter().any(|v| v == "false") => Some(false),
        values => {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'is-task=[{}]'",
                values.join(" ")
            )));
        }
    };
    for value in filters.get("health") {
        if !HEALTHS.contains(&value.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unrecognised filter value for health: {value}"
            )));
        }
    }
    let mut before = None;
    for value in filters.get("before") {
        before = Some(find_listed(all, value)?.docker_id());
    }
    let mut since = None;
    for value in filters.get("since") {
        since = Some(find_listed(all, value)?.docker_id());
    }
    let ancestors: Option<BTreeSet<String>> = filters.contains("ancestor").then(|| {
        filters
            .get("ancestor")
            .iter()
            .filter_map(|name| {
                let found = images.named(name).map(|i| i.spec.id.clone());
                if found.is_none() {
                    tracing::debug!(image = %name, "ancestor filter: no such image");
                }
                found
            })
            .collect()
    });
    let mut publish = BTreeSet::new();
    for value in filters.get("publish") {
        publish.extend(port_filter("publish", value)?);
    }
    let mut expose = BTreeSet::new();
    for value in filters.get("expose") {
        expose.extend(port_filter("expose", value)?);
    }
    let names = Pattern::new(filters.get("name"));
    let ids = Pattern::new(filters.get("id"));
    let states = Pattern::new(filters.get("status"));
    let healths = filters.get("health");
    let volumes = filters.get("volume");
    let networks_wanted = filters.get("network");

    let mut sorted: Vec<(OffsetDateTime, String, &Arc<Container>)> =
        all.iter().map(|c| (created(c), c.docker_id(), c)).collect();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));

    let mut chosen = Vec::new();
    for (_, id, container) in sorted {
        if let Some(b) = &before {
            if *b == id {
                before = None;
            }
            continue;
        }
        if since.as_deref() == Some(id.as_str()) {
            break;
        }
        let running = is_running(container);
        if !running && !show_all && options.limit <= 0 {
            continue;
        }
        let name = &container.metadata.name;
        if !names.is_empty() && !names.matches(&format!("/{name}")) && !names.matches(name) {
            continue;
        }
        if !ids.matches(&id) {
            continue;
        }
        if is_task == Some(true) {
            // No container here is a swarm task.
            continue;
        }
        let image = images.config_of(container);
        if filters.contains("label") && !filters.labels_match(&merged_labels(container, &image)) {
            continue;
        }
        if options.limit > 0 && chosen.len() as i64 == options.limit {
            break;
        }
        let exited_with_one_asked = exited.contains(&container.status.exit_code)
            && !running
            && container.status.started_at.is_some();
        if !exited.is_empty() && !exited_with_one_asked {
            continue;
        }
        if !states.matches(state_word(container.status.state)) {
            continue;
        }
        if !healths.is_empty() && !healths.iter().any(|h| h == "none") {
            continue;
        }
        if !volumes.is_empty()
            && !container
                .spec
                .mounts
                .iter()
                .any(|m| volumes.iter().any(|v| *v == m.target || *v == m.source))
        {
            continue;
        }
        if let Some(ancestors) = &ancestors {
            let image_id = images.of(container).map(|i| i.spec.id.as_str());
            let image_id = image_id.unwrap_or(container.spec.image_id.as_str());
            if !ancestors.contains(image_id) {
                continue;
            }
        }
        if !networks_wanted.is_empty() {
            let on = networks(container);
            if !networks_wanted.iter().any(|n| on.contains_key(n)) {
                continue;
            }
        }
        if !publish.is_empty() || !expose.is_empty() {
            let shown = ports(container, &image);
            let hit = shown.iter().any(|p| {
                publish.contains(&(p.public_port, p.type_.clone()))
                    || expose.contains(&(p.private_port, p.type_.clone()))
            });
            if !hit {
                continue;
            }
        }
        chosen.push(container);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::model::{ContainerSpec, ImageSpec};
    use sdc_docker_store::{Api, Resource};
    use serde_json::json;
    use time::Duration;

    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).expect("time")
    }

    fn container(n: u8, name: &str, state: ContainerState) -> Container {
        let mut c = Container::new(
            name,
            ContainerSpec {
                id: format!("{n:x}").repeat(64),
                image: "busybox".into(),
                image_id: format!("sha256:{}", "b".repeat(64)),
                cmd: vec!["sleep".into(), "100".into()],
                ..Default::default()
            },
        );
        c.metadata.creation_timestamp = Some(at(i64::from(n) * 10));
        c.status.state = state;
        if state != ContainerState::Created {
            c.status.started_at = Some(at(i64::from(n) * 10 + 1));
        }
        if state == ContainerState::Exited {
            c.status.finished_at = Some(at(i64::from(n) * 10 + 2));
            c.status.exit_code = i64::from(n);
        }
        c
    }

    fn busybox() -> Image {
        Image::new(
            &"b".repeat(64),
            ImageSpec {
                id: format!("sha256:{}", "b".repeat(64)),
                repo_tags: vec!["docker.io/library/busybox:latest".into()],
                size: 4_000_000,
                config: json!({"config": {
                    "Cmd": ["sh"],
                    "Env": ["PATH=/bin"],
                    "Labels": {"from": "image"},
                }}),
                ..Default::default()
            },
        )
    }

    fn all() -> Vec<Container> {
        let mut labelled = container(3, "web", ContainerState::Running);
        labelled.spec.labels.insert("tier".into(), "front".into());
        vec![
            container(1, "first", ContainerState::Exited),
            container(2, "second", ContainerState::Created),
            labelled,
            container(4, "paused_one", ContainerState::Paused),
        ]
    }

    fn names(filters: &str, all_flag: bool, limit: i64) -> Result<Vec<String>, ApiError> {
        let containers: Vec<Arc<Container>> = all().into_iter().map(Arc::new).collect();
        let images = vec![busybox()];
        let mut images = Images::new(&images);
        let options = ListOptions {
            all: all_flag,
            limit,
            filters: Filters::parse(Some(filters), KNOWN_FILTERS)?,
        };
        Ok(select(&containers, &mut images, &options)?
            .iter()
            .map(|c| c.metadata.name.clone())
            .collect())
    }

    #[test]
    fn human_durations_read_as_dockers() {
        let text = |s: i64| human_duration(Duration::seconds(s));
        assert_eq!(text(0), "Less than a second");
        assert_eq!(text(-5), "Less than a second");
        assert_eq!(text(1), "1 second");
        assert_eq!(text(59), "59 seconds");
        assert_eq!(text(60), "About a minute");
        assert_eq!(text(119), "About a minute");
        assert_eq!(text(120), "2 minutes");
        assert_eq!(text(3599), "59 minutes");
        assert_eq!(text(3600), "About an hour");
        assert_eq!(text(5399), "About an hour");
        assert_eq!(text(5400), "2 hours");
        assert_eq!(text(47 * 3600), "47 hours");
        assert_eq!(text(48 * 3600), "2 days");
        assert_eq!(text(14 * 24 * 3600), "2 weeks");
        assert_eq!(text(60 * 24 * 3600), "2 months");
        assert_eq!(text(730 * 24 * 3600), "2 years");
    }

    #[test]
    fn the_status_column_says_what_docker_says() {
        let now = at(1000);
        let mut c = container(1, "a", ContainerState::Running);
        c.status.started_at = Some(at(997));
        assert_eq!(status_text(&c, now), "Up 3 seconds");
        c.status.state = ContainerState::Paused;
        c.status.started_at = Some(at(880));
        assert_eq!(status_text(&c, now), "Up 2 minutes (Paused)");
        c.status.state = ContainerState::Exited;
        c.status.exit_code = 3;
        c.status.finished_at = Some(at(995));
        assert_eq!(status_text(&c, now), "Exited (3) 5 seconds ago");
        c.status.state = ContainerState::Restarting;
        c.status.exit_code = 1;
        c.status.finished_at = Some(at(998));
        assert_eq!(status_text(&c, now), "Restarting (1) 2 seconds ago");
        let created = container(2, "b", ContainerState::Created);
        assert_eq!(status_text(&created, now), "Created");
        c.status.state = ContainerState::Dead;
        assert_eq!(status_text(&c, now), "Dead");
    }

    #[test]
    fn ps_shows_running_and_paused_containers_newest_first_and_all_with_a() {
        assert_eq!(names("{}", false, 0).expect("ok"), ["paused_one", "web"]);
        assert_eq!(
            names("{}", true, 0).expect("ok"),
            ["paused_one", "web", "second", "first"]
        );
        // -n shows the newest whatever their state.
        assert_eq!(
            names("{}", false, 3).expect("ok"),
            ["paused_one", "web", "second"]
        );
    }

    #[test]
    fn status_filters_imply_all_and_bad_states_are_refused() {
        assert_eq!(
            names(r#"{"status":["exited"]}"#, false, 0).expect("ok"),
            ["first"]
        );
        assert_eq!(
            names(r#"{"status":{"created":true,"paused":true}}"#, false, 0).expect("ok"),
            ["paused_one", "second"]
        );
        let e = names(r#"{"status":["sleeping"]}"#, false, 0).expect_err("refused");
        assert_eq!(e.message(), "invalid filter 'status=sleeping'");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        let e = names(r#"{"colour":["red"]}"#, false, 0).expect_err("refused");
        assert_eq!(e.message(), "invalid filter 'colour'");
    }

    #[test]
    fn name_and_id_filters_are_regular_expressions() {
        assert_eq!(
            names(r#"{"name":["e"]}"#, true, 0).expect("ok"),
            ["paused_one", "web", "second"]
        );
        assert_eq!(
            names(r#"{"name":["^/web$"]}"#, true, 0).expect("ok"),
            ["web"]
        );
        assert_eq!(
            names(r#"{"name":["^fir"]}"#, true, 0).expect("ok"),
            ["first"]
        );
        assert_eq!(names(r#"{"id":["^333"]}"#, true, 0).expect("ok"), ["web"]);
    }

    #[test]
    fn label_exited_and_ancestor_filters_choose_as_docker_does() {
        assert_eq!(
            names(r#"{"label":["tier=front"]}"#, true, 0).expect("ok"),
            ["web"]
        );
        // The image's labels count too.
        assert_eq!(
            names(r#"{"label":["from"]}"#, false, 0).expect("ok"),
            ["paused_one", "web"]
        );
        assert_eq!(
            names(r#"{"exited":["1"]}"#, true, 0).expect("ok"),
            ["first"]
        );
        assert!(
            names(r#"{"exited":["2"]}"#, true, 0)
                .expect("ok")
                .is_empty()
        );
        assert!(names(r#"{"exited":["x"]}"#, true, 0).is_err());
        assert_eq!(
            names(r#"{"ancestor":["busybox"]}"#, false, 0).expect("ok"),
            ["paused_one", "web"]
        );
        assert!(
            names(r#"{"ancestor":["alpine"]}"#, true, 0)
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn before_and_since_cut_by_creation_and_name_a_container() {
        assert_eq!(
            names(r#"{"before":["web"]}"#, true, 0).expect("ok"),
            ["second", "first"]
        );
        assert_eq!(
            names(r#"{"since":["second"]}"#, true, 0).expect("ok"),
            ["paused_one", "web"]
        );
        assert_eq!(
            names(r#"{"since":["2222"]}"#, false, 0).expect("ok"),
            ["paused_one", "web"]
        );
        let e = names(r#"{"before":["nope"]}"#, true, 0).expect_err("refused");
        assert_eq!(e.message(), "No such container: nope");
    }

    #[test]
    fn a_summary_merges_the_image_config_and_quotes_spaced_arguments() {
        let images = vec![busybox()];
        let mut images = Images::new(&images);
        let mut c = container(3, "web", ContainerState::Running);
        c.spec.cmd = vec![];
        let row = summary(&c, &mut images, at(100));
        assert_eq!(row.command, "sh");
        assert_eq!(row.image, "busybox");
        assert_eq!(row.names, ["/web"]);
        assert_eq!(row.labels.get("from").map(String::as_str), Some("image"));
        c.spec.cmd = vec!["sh".into(), "-c".into(), "sleep 100".into()];
        c.spec.exposed_ports = vec!["80/tcp".into()];
        let row = summary(&c, &mut images, at(100));
        assert_eq!(row.command, "sh -c 'sleep 100'");
        assert_eq!(row.ports.len(), 1);
        let wire = serde_json::to_value(&row).expect("json");
        assert_eq!(wire["Ports"][0], json!({"PrivatePort": 80, "Type": "tcp"}));
        assert_eq!(wire["HostConfig"]["NetworkMode"], "bridge");
        assert!(wire.get("SizeRw").is_none());
        // A name that now names another image shows the id.
        c.spec.image_id = format!("sha256:{}", "c".repeat(64));
        let row = summary(&c, &mut images, at(100));
        assert_eq!(row.image, c.spec.image_id);
    }

    #[tokio::test]
    async fn the_listing_answers_dockers_json_through_the_router() {
        use axum::body::Body;
        use tower::ServiceExt;

        use crate::test_support::{TestStore, body_json};

        let store = TestStore::new().await;
        let api = Api::<Container>::default_account(store.store.clone());
        for c in all() {
            let written = api.create(&c).await.expect("created");
            let mut observed = written.clone();
            observed.status = c.status.clone();
            api.update_status(&observed).await.expect("status");
        }
        Api::<Image>::default_account(store.store.clone())
            .create(&busybox())
            .await
            .expect("image");
        let router = crate::docker::router(
            store.store.clone(),
            store.image_context(),
            crate::docker::NodeStreams::new(),
        );
        let request = http::Request::builder()
            .uri("/v1.45/containers/json?all=1&filters=%7B%22status%22%3A%7B%22running%22%3Atrue%7D%7D")
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), http::StatusCode::OK);
        let rows = body_json(response).await;
        assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
        assert_eq!(rows[0]["Names"], json!(["/web"]));
        assert_eq!(rows[0]["Command"], "sleep 100");
        assert_eq!(rows[0]["ImageID"], format!("sha256:{}", "b".repeat(64)));
        assert!(
            rows[0]["Status"]
                .as_str()
                .is_some_and(|s| s.starts_with("Up "))
        );
        let request = http::Request::builder()
            .uri("/containers/json?filters=%7B%22status%22%3A%5B%22asleep%22%5D%7D")
            .body(Body::empty())
            .expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(response).await["message"],
            "invalid filter 'status=asleep'"
        );
    }

    #[tokio::test]
    async fn a_listing_right_after_a_create_or_a_removal_shows_it() {
        use axum::body::Body;
        use tower::ServiceExt;

        use crate::test_support::{TestStore, body_json};

        let store = TestStore::new().await;
        let router = crate::docker::router(
            store.store.clone(),
            store.image_context(),
            crate::docker::NodeStreams::new(),
        );
        let listed = || async {
            let request = http::Request::builder()
                .uri("/containers/json?all=1")
                .body(Body::empty())
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), http::StatusCode::OK);
            assert_eq!(
                response.headers()[http::header::CONTENT_TYPE],
                "application/json"
            );
            let rows = body_json(response).await;
            let mut names: Vec<String> = rows
                .as_array()
                .expect("a list")
                .iter()
                .map(|row| row["Names"][0].as_str().unwrap_or_default().to_owned())
                .collect();
            names.sort();
            names
        };
        assert!(listed().await.is_empty());
        Api::<Image>::default_account(store.store.clone())
            .create(&busybox())
            .await
            .expect("image");
        let api = Api::<Container>::default_account(store.store.clone());
        let mut expected = Vec::new();
        for c in all() {
            // Each listing follows the write before it, without waiting.
            api.create(&c).await.expect("created");
            expected.push(format!("/{}", c.metadata.name));
            expected.sort();
            assert_eq!(listed().await, expected);
        }
        api.delete("web", None).await.expect("removed");
        expected.retain(|n| n != "/web");
        assert_eq!(listed().await, expected);
    }

    #[test]
    fn docker_booleans_are_anything_but_the_false_words() {
        assert!(bool_value(Some("1")));
        assert!(bool_value(Some("True")));
        assert!(!bool_value(Some("0")));
        assert!(!bool_value(Some("false")));
        assert!(!bool_value(None));
    }

    #[test]
    fn port_filters_take_ranges_and_refuse_host_parts() {
        assert_eq!(port_filter("publish", "80-81/udp").expect("ok").len(), 2);
        let e = port_filter("publish", "8080:80").expect_err("refused");
        assert_eq!(
            e.message(),
            "filter for 'publish' should not contain ':': 8080:80"
        );
    }
}
