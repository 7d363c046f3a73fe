//! From Docker's terms to a zone: [`zone_spec`] merges a container with its
//! image and package exactly as Docker's daemon merges a create body with
//! the image config, and [`zone_id`] names the zone after the container.
//!
//! It is pure: nothing here touches the machine or the store. Volume mounts
//! (named volumes) are refused until the volumes controller turns them into
//! host paths; bind mounts pass through.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use sdc_docker_store::Resource;
use sdc_docker_store::model::{Container, Image, Package, RestartPolicyName};
use serde::Deserialize;

use crate::signal;
use crate::spec::{
    BindMount, DockerConfig, ImageLayers, LogSpec, PackageSizing, ProcessSpec, ZoneSpec,
};

/// Label of a zone carrying its container's account.
pub const LABEL_ACCOUNT: &str = "sdc-docker.account";
/// Label of a zone carrying its container's name.
pub const LABEL_NAME: &str = "sdc-docker.name";
/// Label of a zone carrying its container's 64-hex Docker id.
pub const LABEL_CONTAINER_ID: &str = "sdc-docker.container-id";

/// The `PATH` Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a container cannot become a zone spec; the messages are Docker's
/// where Docker has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Neither the container nor the image gives a command.
    #[error("No command specified")]
    NoCommand,
    /// The container has no usable Docker id (at least 32 hex digits).
    #[error("container id {0:?} is not a Docker id")]
    BadId(String),
    /// The image config is not Docker's shape.
    #[error("image {image}: invalid config: {message}")]
    BadImageConfig {
        /// The image id.
        image: String,
        /// What is wrong.
        message: String,
    },
    /// The working directory is relative.
    #[error("the working directory '{0}' is invalid, it needs to be an absolute path")]
    RelativeWorkingDir(String),
    /// A mount is malformed or of a kind not supported yet.
    #[error("invalid mount config: {0}")]
    Mount(String),
    /// An `--add-host` entry is malformed.
    #[error("invalid argument {0:?} for add-host: {1}")]
    ExtraHost(String, String),
    /// The stop signal is not a signal.
    #[error(transparent)]
    StopSignal(#[from] signal::InvalidSignal),
    /// A `--log-opt` is unknown or malformed.
    #[error("{0}")]
    LogOption(String),
}

/// The zone id of the container with Docker id `docker_id`: its first 32 hex
/// digits as a UUID, the way Triton's sdc-docker relates VM UUIDs to Docker
/// ids (`0123…cdef…` → `01234567-89ab-cdef-…`).
pub fn zone_id(docker_id: &str) -> Result<String, SpecError> {
    uuid_of_hex(docker_id).ok_or_else(|| SpecError::BadId(docker_id.to_string()))
}

/// The first 32 hex digits of `hex` as a lowercase UUID; `None` when it does
/// not start with 32 hex digits.
pub fn uuid_of_hex(hex: &str) -> Option<String> {
    let hex = hex.get(..32)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// The parts of Docker's image `config` object a container inherits.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ImageConfig {
    labels: Option<BTreeMap<String, String>>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    stop_signal: Option<String>,
}

fn image_config(image: &Image) -> Result<ImageConfig, SpecError> {
    let config = &image.spec.config["config"];
    if config.is_null() {
        return Ok(ImageConfig::default());
    }
    ImageConfig::deserialize(config).map_err(|e| SpecError::BadImageConfig {
        image: image.spec.id.clone(),
        message: e.to_string(),
    })
}

/// The zone spec of `container` made from `image` (whose unpacked layers are
/// `lower_dirs`, top first) and sized by `package` when one was chosen.
///
/// The command is merged as Docker's daemon does: a container that sets an
/// entrypoint runs it with its own Cmd only (the image's Cmd is not used);
/// otherwise the image's entrypoint runs with the container's Cmd, or the
/// image's when the container gives none. An entrypoint of `[""]`
/// (`--entrypoint ""`) clears the image's; `[]` keeps none and still takes
/// the image's Cmd. The environment is Docker's: `PATH` (the image's or the
/// default), `HOSTNAME`, `TERM=xterm` with a tty, then the container's
/// variables, then the image's not overridden by key.
pub fn zone_spec(
    container: &Container,
    image: &Image,
    package: Option<&Package>,
    lower_dirs: Vec<PathBuf>,
) -> Result<ZoneSpec, SpecError> {
    let spec = container.spec();
    let config = image_config(image)?;

    let args = command(
        spec.entrypoint.as_deref(),
        &spec.cmd,
        config.entrypoint.as_deref(),
        config.cmd.as_deref(),
    )?;

    let hostname = if spec.hostname.is_empty() {
        spec.id.chars().take(12).collect()
    } else {
        spec.hostname.clone()
    };
    let id = zone_id(&spec.id)?;

    let config_env = merge_env(&spec.env, config.env.as_deref().unwrap_or_default());
    let env = daemon_env(&hostname, spec.tty, &config_env);

    let workdir = first_set(&spec.working_dir, config.working_dir.as_deref()).unwrap_or_default();
    let cwd = if workdir.is_empty() { "/" } else { workdir };
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir(cwd.to_string()));
    }
    let user = first_set(&spec.user, config.user.as_deref())
        .unwrap_or_default()
        .to_string();

    let stop_signal = first_set(&spec.stop_signal, config.stop_signal.as_deref())
        .unwrap_or("SIGTERM")
        .to_string();
    signal::parse(&stop_signal)?;

    let (memory_bytes, cpu_shares) = match package {
        Some(p) => (
            mib(p.spec().memory_mib),
            u64::try_from(p.spec().cpu_shares).unwrap_or(0),
        ),
        None => (
            u64::try_from(spec.memory).unwrap_or(0),
            u64::try_from(spec.cpu_shares).unwrap_or(0),
        ),
    };

    let mounts = spec
        .mounts
        .iter()
        .map(|m| {
            if m.type_ != "bind" {
                return Err(SpecError::Mount(format!(
                    "mounts of type {:?} ({} on {}) are not supported yet: only bind mounts are",
                    m.type_, m.source, m.target
                )));
            }
            if !m.source.starts_with('/') {
                return Err(SpecError::Mount(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            if !m.target.starts_with('/') {
                return Err(SpecError::Mount(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.target
                )));
            }
            Ok(BindMount {
                source: PathBuf::from(&m.source),
                target: m.target.clone(),
                read_only: m.read_only,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let extra_hosts = spec
        .extra_hosts
        .iter()
        .map(|entry| extra_host(entry))
        .collect::<Result<Vec<_>, _>>()?;

    let docker = docker_config(container, image, &config, &config_env, workdir, &user);
    let package = package.map(|p| {
        let p = p.spec();
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        PackageSizing {
            name: container.status.package.clone(),
            uuid: p.uuid.clone(),
            memory_mib: n(p.memory_mib),
            swap_mib: n(p.swap_mib),
            disk_mib: n(p.disk_mib),
            cpu_cap: n(p.cpu_cap),
            cpu_shares: n(p.cpu_shares),
            max_lwps: n(p.max_lwps),
            zfs_io_priority: n(p.zfs_io_priority),
        }
    });

    let metadata = container.metadata();
    let labels = BTreeMap::from([
        (LABEL_ACCOUNT.to_string(), metadata.account.clone()),
        (LABEL_NAME.to_string(), metadata.name.clone()),
        (LABEL_CONTAINER_ID.to_string(), spec.id.clone()),
    ]);

    Ok(ZoneSpec {
        id,
        hostname,
        domainname: spec.domainname.clone(),
        process: ProcessSpec {
            args,
            env,
            cwd: cwd.to_string(),
            user,
            tty: spec.tty,
            open_stdin: spec.open_stdin,
        },
        image: ImageLayers {
            id: image.spec.id.clone(),
            lower_dirs,
        },
        memory_bytes,
        cpu_shares,
        mounts,
        dns: spec.dns.clone(),
        dns_search: spec.dns_search.clone(),
        extra_hosts,
        labels,
        log: log_spec(&spec.log_config.type_, &spec.log_config.config)?,
        stop_signal,
        docker,
        package,
        nics: Vec::new(),
    })
}

/// Docker's view of the container once the image's defaults apply (what
/// `docker inspect` shows as `Config`, plus the host config a platform
/// needs): [`ZoneSpec::docker`].
fn docker_config(
    container: &Container,
    image: &Image,
    config: &ImageConfig,
    env: &[String],
    workdir: &str,
    user: &str,
) -> DockerConfig {
    let spec = container.spec();
    let (entrypoint, cmd) = merged_command(
        spec.entrypoint.as_deref(),
        &spec.cmd,
        config.entrypoint.as_deref(),
        config.cmd.as_deref(),
    );
    let policy = &spec.restart_policy;
    let restart_policy = match policy.name {
        RestartPolicyName::No => "no".to_string(),
        RestartPolicyName::Always => "always".to_string(),
        RestartPolicyName::UnlessStopped => "unless-stopped".to_string(),
        RestartPolicyName::OnFailure if policy.maximum_retry_count > 0 => {
            format!("on-failure:{}", policy.maximum_retry_count)
        }
        RestartPolicyName::OnFailure => "on-failure".to_string(),
    };
    let mut labels = config.labels.clone().unwrap_or_default();
    labels.extend(spec.labels.clone());
    let mut exposed_ports: Vec<String> = config
        .exposed_ports
        .as_ref()
        .map(|ports| ports.keys().cloned().collect())
        .unwrap_or_default();
    for port in &spec.exposed_ports {
        if !exposed_ports.contains(port) {
            exposed_ports.push(port.clone());
        }
    }
    DockerConfig {
        id: spec.id.clone(),
        name: container
            .metadata()
            .name
            .trim_start_matches('/')
            .to_string(),
        image_name: spec.image.clone(),
        image_os: if image.spec.os.is_empty() {
            "linux".to_string()
        } else {
            image.spec.os.clone()
        },
        cmd,
        entrypoint,
        env: env.to_vec(),
        workdir: workdir.to_string(),
        user: user.to_string(),
        tty: spec.tty,
        attach_stdin: spec.attach_stdin,
        attach_stdout: spec.attach_stdout,
        attach_stderr: spec.attach_stderr,
        open_stdin: spec.open_stdin,
        restart_policy,
        log_driver: if spec.log_config.type_.is_empty() {
            "json-file".to_string()
        } else {
            spec.log_config.type_.clone()
        },
        log_options: spec.log_config.config.clone(),
        labels,
        exposed_ports,
        port_bindings: spec
            .port_bindings
            .iter()
            .map(|b| (b.container_port.clone(), b.host_port.clone()))
            .collect(),
        publish_all_ports: spec.publish_all_ports,
    }
}

/// `container` when set, else `image` when set.
fn first_set<'a>(container: &'a str, image: Option<&'a str>) -> Option<&'a str> {
    Some(container)
        .filter(|s| !s.is_empty())
        .or(image.filter(|s| !s.is_empty()))
}

fn mib(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0).saturating_mul(1024 * 1024)
}

/// Docker's `merge` of Entrypoint and Cmd, then `[""]` reset, then the
/// "No command specified" check: the process's arguments.
pub fn command(
    entrypoint: Option<&[String]>,
    cmd: &[String],
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
) -> Result<Vec<String>, SpecError> {
    let (mut entrypoint, cmd) = merged_command(entrypoint, cmd, image_entrypoint, image_cmd);
    entrypoint.extend(cmd);
    if entrypoint.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(entrypoint)
}

/// Docker's `merge` of Entrypoint and Cmd with the image's, then the `[""]`
/// reset: `(Config.Entrypoint, Config.Cmd)` as `docker inspect` shows them.
/// A container's entrypoint drops the image's Cmd; otherwise each comes
/// from the container, else the image.
fn merged_command(
    entrypoint: Option<&[String]>,
    cmd: &[String],
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
) -> (Vec<String>, Vec<String>) {
    let (mut entrypoint, mut cmd) = (entrypoint.map(<[String]>::to_vec), cmd.to_vec());
    if entrypoint.as_ref().is_none_or(Vec::is_empty) {
        if cmd.is_empty() {
            cmd = image_cmd.unwrap_or_default().to_vec();
        }
        if entrypoint.is_none() {
            entrypoint = image_entrypoint.map(<[String]>::to_vec);
        }
    }
    let mut entrypoint = entrypoint.unwrap_or_default();
    if entrypoint.len() == 1 && entrypoint[0].is_empty() {
        entrypoint.clear();
    }
    (entrypoint, cmd)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Docker's create-time merge: the container's variables, then the image's
/// whose key the container does not set.
pub fn merge_env(container: &[String], image: &[String]) -> Vec<String> {
    let mut env = container.to_vec();
    for entry in image {
        if !container.iter().any(|c| env_key(c) == env_key(entry)) {
            env.push(entry.clone());
        }
    }
    env
}

/// Docker's start-time environment: `PATH`, `HOSTNAME`, `TERM` with a tty,
/// replaced or extended by the merged config's variables (a bare `KEY`
/// unsets one).
fn daemon_env(hostname: &str, tty: bool, config_env: &[String]) -> Vec<String> {
    let mut env = vec![
        Some(format!("PATH={DEFAULT_PATH}")),
        Some(format!("HOSTNAME={hostname}")),
    ];
    if tty {
        env.push(Some("TERM=xterm".to_string()));
    }
    let defaults = env.len();
    for entry in config_env {
        let key = env_key(entry);
        let slot = env[..defaults]
            .iter()
            .position(|e| e.as_deref().is_some_and(|e| env_key(e) == key));
        match (entry.contains('='), slot) {
            (true, Some(i)) => env[i] = Some(entry.clone()),
            (true, None) => env.push(Some(entry.clone())),
            (false, Some(i)) => env[i] = None,
            (false, None) => {}
        }
    }
    env.into_iter().flatten().collect()
}

/// `host:ip` (or `host=ip`) of `--add-host`.
fn extra_host(entry: &str) -> Result<(String, String), SpecError> {
    let bad = |why: &str| SpecError::ExtraHost(entry.to_string(), why.to_string());
    let (host, ip) = entry
        .split_once('=')
        .or_else(|| entry.split_once(':'))
        .ok_or_else(|| bad("expected host:ip"))?;
    if host.is_empty() {
        return Err(bad("empty host name"));
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map_err(|_| bad(&format!("invalid IP address {ip:?}")))?;
    Ok((host.to_string(), ip.to_string()))
}

/// `--log-driver` and `--log-opt` (json-file's `max-size`, `max-file`).
fn log_spec(driver: &str, options: &BTreeMap<String, String>) -> Result<LogSpec, SpecError> {
    let driver = if driver.is_empty() {
        "json-file"
    } else {
        driver
    };
    let mut log = LogSpec {
        driver: driver.to_string(),
        ..LogSpec::default()
    };
    if driver != "json-file" {
        return Ok(log);
    }
    for (key, value) in options {
        match key.as_str() {
            "max-size" => log.max_size = parse_size(value)?,
            "max-file" => {
                log.max_files = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        SpecError::LogOption("max-file cannot be less than 1".to_string())
                    })?;
            }
            "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {}
            other => {
                return Err(SpecError::LogOption(format!(
                    "unknown log opt '{other}' for json-file log driver"
                )));
            }
        }
    }
    if log.max_files > 1 && log.max_size.is_none() {
        return Err(SpecError::LogOption(
            "max-file can only be set if max-size is set".to_string(),
        ));
    }
    Ok(log)
}

/// Docker's `RAMInBytes`: `1024`, `10k`, `10m`, `1.5g`, `10MiB`, binary
/// units; `-1` means unlimited.
fn parse_size(value: &str) -> Result<Option<u64>, SpecError> {
    if value.trim() == "-1" {
        return Ok(None);
    }
    let bad = || SpecError::LogOption(format!("invalid size: '{value}'"));
    let lower = value.trim().to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_start);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let bytes = number * f64::from(1u32 << 10).powi(shift / 10);
    if !bytes.is_finite() || bytes < 0.0 {
        return Err(bad());
    }
    // Sizes are far below 2^53, where f64 holds integers exactly.
    Ok(Some(bytes as u64))
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::model::{ContainerSpec, ImageSpec, LogConfig, Mount, PackageSpec};
    use serde_json::json;

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn container(f: impl FnOnce(&mut ContainerSpec)) -> Container {
        let mut spec = ContainerSpec {
            id: ID.to_string(),
            image: "busybox".to_string(),
            ..Default::default()
        };
        f(&mut spec);
        Container::new("web", spec)
    }

    fn image(config: serde_json::Value) -> Image {
        Image::new(
            "abc",
            ImageSpec {
                id: "sha256:abc".to_string(),
                config: json!({ "config": config }),
                ..Default::default()
            },
        )
    }

    fn spec_of(c: &Container, i: &Image) -> Result<ZoneSpec, SpecError> {
        zone_spec(c, i, None, vec![PathBuf::from("/layers/top")])
    }

    #[test]
    fn commands_merge_with_the_image_as_dockers_daemon_merges_them() {
        struct Case {
            name: &'static str,
            entrypoint: Option<&'static [&'static str]>,
            cmd: &'static [&'static str],
            image_entrypoint: Option<&'static [&'static str]>,
            image_cmd: Option<&'static [&'static str]>,
            want: Result<&'static [&'static str], SpecError>,
        }
        let cases = [
            Case {
                name: "image cmd only",
                entrypoint: None,
                cmd: &[],
                image_entrypoint: None,
                image_cmd: Some(&["sh"]),
                want: Ok(&["sh"]),
            },
            Case {
                name: "container cmd replaces image cmd",
                entrypoint: None,
                cmd: &["echo", "hi"],
                image_entrypoint: None,
                image_cmd: Some(&["sh"]),
                want: Ok(&["echo", "hi"]),
            },
            Case {
                name: "image entrypoint with image cmd",
                entrypoint: None,
                cmd: &[],
                image_entrypoint: Some(&["/entry", "-x"]),
                image_cmd: Some(&["serve"]),
                want: Ok(&["/entry", "-x", "serve"]),
            },
            Case {
                name: "image entrypoint with container cmd",
                entrypoint: None,
                cmd: &["debug"],
                image_entrypoint: Some(&["/entry"]),
                image_cmd: Some(&["serve"]),
                want: Ok(&["/entry", "debug"]),
            },
            Case {
                name: "container entrypoint drops the image cmd",
                entrypoint: Some(&["/bin/echo"]),
                cmd: &[],
                image_entrypoint: Some(&["/entry"]),
                image_cmd: Some(&["serve"]),
                want: Ok(&["/bin/echo"]),
            },
            Case {
                name: "container entrypoint with container cmd",
                entrypoint: Some(&["/bin/echo"]),
                cmd: &["a", "b"],
                image_entrypoint: Some(&["/entry"]),
                image_cmd: Some(&["serve"]),
                want: Ok(&["/bin/echo", "a", "b"]),
            },
            Case {
                name: "--entrypoint '' with a cmd runs the cmd alone",
                entrypoint: Some(&[""]),
                cmd: &["ls", "/"],
                image_entrypoint: Some(&["/entry"]),
                image_cmd: Some(&["serve"]),
                want: Ok(&["ls", "/"]),
            },
            Case {
                name: "--entrypoint '' without a cmd has no command",
                entrypoint: Some(&[""]),
                cmd: &[],
                image_entrypoint: Some(&["/entry"]),
                image_cmd: Some(&["serve"]),
                want: Err(SpecError::NoCommand),
            },
            Case {
                name: "an empty entrypoint array keeps none but takes the image cmd",
                entrypoint: Some(&[]),
                cmd: &[],
                image_entrypoint: Some(&["/entry"]),
                image_cmd: Some(&["serve"]),
                want: Ok(&["serve"]),
            },
            Case {
                name: "nothing anywhere",
                entrypoint: None,
                cmd: &[],
                image_entrypoint: None,
                image_cmd: None,
                want: Err(SpecError::NoCommand),
            },
            Case {
                name: "image entrypoint without any cmd",
                entrypoint: None,
                cmd: &[],
                image_entrypoint: Some(&["/entry"]),
                image_cmd: None,
                want: Ok(&["/entry"]),
            },
        ];
        for case in cases {
            let c = container(|s| {
                s.entrypoint = case.entrypoint.map(strings);
                s.cmd = strings(case.cmd);
            });
            let i = image(json!({
                "Entrypoint": case.image_entrypoint,
                "Cmd": case.image_cmd,
            }));
            let got = spec_of(&c, &i).map(|s| s.process.args);
            let want = case.want.map(strings);
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn no_command_is_dockers_error_message() {
        let error = spec_of(&container(|_| {}), &image(json!({}))).unwrap_err();
        assert_eq!(error.to_string(), "No command specified");
    }

    #[test]
    fn environment_is_path_hostname_then_container_then_image_variables() {
        let c = container(|s| {
            s.cmd = strings(&["sh"]);
            s.env = strings(&["A=container", "C=3"]);
        });
        let i = image(json!({
            "Env": ["PATH=/image/bin", "A=image", "B=2"],
        }));
        let env = spec_of(&c, &i).unwrap().process.env;
        assert_eq!(
            env,
            strings(&[
                "PATH=/image/bin",
                "HOSTNAME=0123456789ab",
                "A=container",
                "C=3",
                "B=2"
            ])
        );
    }

    #[test]
    fn environment_has_the_default_path_when_nobody_sets_one_and_term_with_a_tty() {
        let c = container(|s| {
            s.cmd = strings(&["sh"]);
            s.tty = true;
            s.hostname = "box".to_string();
        });
        let env = spec_of(&c, &image(json!({}))).unwrap().process.env;
        assert_eq!(
            env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box".to_string(),
                "TERM=xterm".to_string()
            ]
        );
    }

    #[test]
    fn a_bare_key_in_the_environment_unsets_a_default() {
        let c = container(|s| {
            s.cmd = strings(&["sh"]);
            s.env = strings(&["HOSTNAME", "X"]);
        });
        let env = spec_of(&c, &image(json!({}))).unwrap().process.env;
        assert_eq!(env, vec![format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn working_dir_user_and_stop_signal_default_to_the_images() {
        let i = image(json!({
            "Cmd": ["sh"], "WorkingDir": "/srv", "User": "www:www", "StopSignal": "SIGQUIT",
        }));
        let spec = spec_of(&container(|_| {}), &i).unwrap();
        assert_eq!(spec.process.cwd, "/srv");
        assert_eq!(spec.process.user, "www:www");
        assert_eq!(spec.stop_signal, "SIGQUIT");

        let c = container(|s| {
            s.working_dir = "/tmp".to_string();
            s.user = "1000".to_string();
            s.stop_signal = "USR1".to_string();
        });
        let spec = spec_of(&c, &i).unwrap();
        assert_eq!(spec.process.cwd, "/tmp");
        assert_eq!(spec.process.user, "1000");
        assert_eq!(spec.stop_signal, "USR1");

        let spec = spec_of(&container(|_| {}), &image(json!({"Cmd": ["sh"]}))).unwrap();
        assert_eq!(spec.process.cwd, "/");
        assert_eq!(spec.process.user, "");
        assert_eq!(spec.stop_signal, "SIGTERM");
    }

    #[test]
    fn a_relative_working_dir_or_a_bad_stop_signal_is_refused() {
        let i = image(json!({"Cmd": ["sh"]}));
        let c = container(|s| s.working_dir = "srv".to_string());
        assert_eq!(
            spec_of(&c, &i),
            Err(SpecError::RelativeWorkingDir("srv".to_string()))
        );
        let c = container(|s| s.stop_signal = "SIGFOO".to_string());
        assert_eq!(
            spec_of(&c, &i).unwrap_err().to_string(),
            "Invalid signal: SIGFOO"
        );
    }

    #[test]
    fn hostname_defaults_to_the_first_twelve_of_the_id_and_the_zone_id_is_a_uuid() {
        let spec = spec_of(&container(|_| {}), &image(json!({"Cmd": ["sh"]}))).unwrap();
        assert_eq!(spec.hostname, "0123456789ab");
        assert_eq!(spec.id, "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(spec.labels[LABEL_NAME], "web");
        assert_eq!(spec.labels[LABEL_ACCOUNT], "default");
        assert_eq!(spec.labels[LABEL_CONTAINER_ID], ID);
        assert_eq!(spec.image.id, "sha256:abc");
        assert_eq!(spec.image.lower_dirs, vec![PathBuf::from("/layers/top")]);
    }

    #[test]
    fn ids_shorter_than_32_hex_digits_are_refused() {
        assert!(matches!(zone_id("abc"), Err(SpecError::BadId(_))));
        assert!(matches!(
            zone_id("zz23456789abcdef0123456789abcdef"),
            Err(SpecError::BadId(_))
        ));
    }

    #[test]
    fn memory_and_shares_come_from_the_package_when_one_is_given() {
        let c = container(|s| {
            s.cmd = strings(&["sh"]);
            s.memory = 64 * 1024 * 1024;
            s.cpu_shares = 512;
        });
        let i = image(json!({}));
        let spec = spec_of(&c, &i).unwrap();
        assert_eq!((spec.memory_bytes, spec.cpu_shares), (64 << 20, 512));
        let package = Package::new(
            "small",
            PackageSpec {
                memory_mib: 128,
                cpu_shares: 100,
                ..Default::default()
            },
        );
        let spec = zone_spec(&c, &i, Some(&package), vec![]).unwrap();
        assert_eq!((spec.memory_bytes, spec.cpu_shares), (128 << 20, 100));
    }

    #[test]
    fn bind_mounts_pass_through_and_volumes_are_refused_for_now() {
        let i = image(json!({"Cmd": ["sh"]}));
        let c = container(|s| {
            s.mounts = vec![Mount {
                type_: "bind".to_string(),
                source: "/srv/data".to_string(),
                target: "/data".to_string(),
                read_only: true,
            }]
        });
        assert_eq!(
            spec_of(&c, &i).unwrap().mounts,
            vec![BindMount {
                source: PathBuf::from("/srv/data"),
                target: "/data".to_string(),
                read_only: true
            }]
        );
        let c = container(|s| {
            s.mounts = vec![Mount {
                type_: "volume".to_string(),
                source: "data".to_string(),
                target: "/data".to_string(),
                read_only: false,
            }]
        });
        assert!(matches!(spec_of(&c, &i), Err(SpecError::Mount(_))));
    }

    #[test]
    fn extra_hosts_accept_colon_or_equals_and_ipv6() {
        let i = image(json!({"Cmd": ["sh"]}));
        let c = container(|s| {
            s.extra_hosts = strings(&["db:10.0.0.2", "v6=::1", "br:[fe80::1]"]);
        });
        assert_eq!(
            spec_of(&c, &i).unwrap().extra_hosts,
            vec![
                ("db".to_string(), "10.0.0.2".to_string()),
                ("v6".to_string(), "::1".to_string()),
                ("br".to_string(), "fe80::1".to_string()),
            ]
        );
        let c = container(|s| s.extra_hosts = strings(&["db:nope"]));
        assert!(matches!(spec_of(&c, &i), Err(SpecError::ExtraHost(..))));
    }

    #[test]
    fn log_options_follow_json_files_rules() {
        let i = image(json!({"Cmd": ["sh"]}));
        let with = |driver: &str, opts: &[(&str, &str)]| {
            let c = container(|s| {
                s.log_config = LogConfig {
                    type_: driver.to_string(),
                    config: opts
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }
            });
            spec_of(&c, &i).map(|s| s.log)
        };
        assert_eq!(with("", &[]), Ok(LogSpec::default()));
        assert_eq!(
            with("json-file", &[("max-size", "10m"), ("max-file", "3")]),
            Ok(LogSpec {
                driver: "json-file".to_string(),
                max_size: Some(10 << 20),
                max_files: 3
            })
        );
        assert_eq!(
            with("json-file", &[("max-size", "1.5k")]).map(|l| l.max_size),
            Ok(Some(1536))
        );
        assert_eq!(
            with("json-file", &[("max-size", "2MiB")]).map(|l| l.max_size),
            Ok(Some(2 << 20))
        );
        assert!(!with("none", &[]).unwrap().keeps_output());
        assert!(with("json-file", &[("max-file", "0")]).is_err());
        assert!(with("json-file", &[("max-file", "2")]).is_err());
        assert!(with("json-file", &[("max-size", "ten")]).is_err());
        assert_eq!(
            with("json-file", &[("bogus", "1")])
                .unwrap_err()
                .to_string(),
            "unknown log opt 'bogus' for json-file log driver"
        );
    }

    #[test]
    fn a_malformed_image_config_is_reported_with_the_image() {
        let i = image(json!({"Cmd": "sh -c true"}));
        assert!(matches!(
            spec_of(&container(|_| {}), &i),
            Err(SpecError::BadImageConfig { .. })
        ));
    }
}
