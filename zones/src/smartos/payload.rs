//! The `vmadm create` payload of a zone spec: [`vmadm_payload`].
//!
//! The payload is the one Triton's sdc-docker has VMAPI hand to `vmadm`
//! (`buildVmPayload` in `lib/backends/sdc/containers.js`), with the sizing
//! VMAPI would fill in from the package written out, since nothing stands
//! between us and `vmadm`. Property names and types are vmadm(8)'s. It is
//! pure: the same spec, image and options always give the same JSON (objects
//! are `serde_json` maps, sorted by key).
//!
//! What goes where:
//!
//! - **Brand.** `lx` with `kernel_version` ([`PayloadOptions::kernel_version`])
//!   and `/native/usr/vm/sbin/dockerinit` as init, unless the image's os is
//!   `smartos`: then `joyent-minimal` with `/usr/vm/sbin/dockerinit`.
//! - **Sizing** from the package (MiB as vmadm wants them):
//!   `max_physical_memory` = `max_locked_memory` = memory; `max_swap` = the
//!   largest of swap, memory and 256 (vmadm refuses less than either);
//!   `quota` in GiB, the disk rounded up, at least 1; `cpu_shares`,
//!   `cpu_cap`, `zfs_io_priority`, `max_lwps`; `billing_id` (not
//!   `package_name`, which vmadm deprecates). A value of 0 leaves the
//!   property out, so vmadm's default applies (a `cpu_cap` of 0 means no
//!   cap). Without a package, `-m` (rounded up to MiB) and `--cpu-shares`
//!   when given.
//! - **Networks.** `nics` in vmadm's current form: `ips` with routing prefix
//!   (the netmask turned into one; `dhcp` as is) and `gateways`, rather than
//!   the deprecated `ip`/`netmask`/`gateway`. The spec's nics, else
//!   [`PayloadOptions::default_nics`]; a container that publishes ports
//!   (`-p`, `-P`) also gets [`PayloadOptions::external_nic`] unless it
//!   already has a nic on that tag, as sdc-docker gives such containers an
//!   external address, and that nic is the primary. vmadm accepts only
//!   `primary: true` and exactly one of them: it is written on one nic (the
//!   first marked, else the first) and left out of the others.
//! - **DNS.** `hostname`; `dns_domain` when set; `resolvers` from `--dns`,
//!   else [`PayloadOptions::default_resolvers`], left out when empty.
//! - **Mounts.** `filesystems`: one `lofs` per bind mount, `options: ["ro"]`
//!   when read-only (always present, possibly empty).
//! - **Logs.** zoneadmd keeps `/zones/<uuid>/logs/stdio.log` for every log
//!   driver but `none` (sdc-docker's documented divergence from Docker), and
//!   rotates it at `zlog_max_size` bytes: json-file's `max-size` (Docker's
//!   binary units, where sdc-docker counted `10m` as 10,000,000), else
//!   [`PayloadOptions::default_max_log_size`], sdc-docker's 50,000,000. It
//!   is left out (no rotation) for `none`, which keeps nothing, and for
//!   `max-size=-1`, Docker's "unlimited".
//! - **`internal_metadata`**, what `dockerinit` and vmadmd read:
//!   `docker:id`; `docker:cmd`, `docker:entrypoint`, `docker:env` as JSON
//!   array strings (`"[]"` when empty); `docker:workdir` and `docker:user`
//!   when set; `docker:tty`, `docker:attach_stdin`, `docker:attach_stdout`,
//!   `docker:attach_stderr`, `docker:open_stdin` as `true` only when set
//!   (absent is false, as sdc-docker writes them); `docker:restartpolicy`
//!   (`always`, `unless-stopped`, `on-failure`, `on-failure:N`; absent for
//!   `no`); `docker:logdriver` and `docker:logconfig` (a JSON object string
//!   of the log options with sdc-docker's defaults: syslog's facility
//!   `daemon` and tag, gelf's and fluentd's tag, the short id; a syslog
//!   address without a port gets `:514`; `{{.ID}}`, `{{.FullID}}` and
//!   `{{.Name}}` in `fluentd-tag` are substituted); `docker:imageid`,
//!   `docker:imagename`; `docker:noipmgmtd` (lx); `docker:extraHosts`
//!   (`host:ip` JSON array string) and `docker:dnssearch` when any;
//!   `docker:publish_all_ports` with `-P`; `docker:tcp_unpublished_ports`
//!   and `docker:udp_unpublished_ports` (exposed, not published: kept for
//!   links, as sdc-docker does) and our own `docker:tcp_published_ports` /
//!   `docker:udp_published_ports` (JSON arrays of container ports, sorted):
//!   sdc-docker keeps published ports only in firewall rules and reads them
//!   back from FWAPI for `docker inspect`; we have no FWAPI, so they are
//!   written here for whoever makes the firewall rules and for inspect.
//!   The zone's identity, [`ZoneSpec::labels`] (`sdc-docker.account`,
//!   `sdc-docker.name`, `sdc-docker.container-id`), is written under the
//!   same keys: the driver reads them back from `vmadm get` to map zones to
//!   containers. `docker:restartcount` is the platform's to write.
//! - **`tags`**: `sdc_docker: true`, for sdc-docker's firewall rules
//!   (`FROM tag sdc_docker TO tag sdc_docker`); Docker labels (the image's,
//!   then the container's) as `docker:label:<key>`, except `triton.*` labels,
//!   which are tags of their own name (CNS reads them; `triton.cns.disable`
//!   becomes a boolean when it is `true` or `false`, as sdc-docker parses
//!   it), and `com.joyent.package`, which chose the package and, as in
//!   sdc-docker, is not kept as a tag.
//! - Always: `uuid` (the spec's id), `alias` (the container name),
//!   `image_uuid`, `autoboot: false` (Docker creates and starts
//!   separately), `docker: true`, `restart_init: false` (restarts are the
//!   restart policy's, not zoneadmd's), `tmpfs: 0` (no tmpfs `/tmp`, as in
//!   Docker) and `firewall_enabled: true`.
//!
//! Limits: no `owner_uuid` (accounts are names here, not UUIDs), no
//! `--volumes-from` and no named volumes (the spec has bind mounts only),
//! no `affinity`, and no validation: the API validated the container, and
//! vmadm refuses what it cannot take (a static address without a netmask is
//! passed without a prefix for vmadm to judge).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::spec::{NicSpec, PackageSizing, ZoneSpec};

/// The Linux version lx zones emulate unless told otherwise (sdc-docker's
/// `VM_DEFAULT_KERNEL_VERSION`).
pub const DEFAULT_KERNEL_VERSION: &str = "3.13.0";

/// Where zoneadmd rotates a zone's `stdio.log` unless json-file's
/// `max-size` says otherwise: sdc-docker's default `DEFAULT_MAX_LOG_SIZE`,
/// 50,000,000 bytes (its "50M").
pub const DEFAULT_MAX_LOG_SIZE: u64 = 50_000_000;

/// The label that chooses a package; consumed, not kept as a tag.
const PACKAGE_LABEL: &str = "com.joyent.package";

/// The prefix of the tag a Docker label becomes.
const LABEL_TAG_PREFIX: &str = "docker:label:";

/// The smallest `max_swap` vmadm accepts, MiB.
const MIN_SWAP_MIB: u64 = 256;

/// What goes into every payload besides the spec: the node's networks and
/// the operator's defaults.
#[derive(Clone, Debug)]
pub struct PayloadOptions {
    /// `kernel_version` of lx zones (`3.13.0`).
    pub kernel_version: String,
    /// The nics of a zone whose spec has none: one DHCP nic on the `admin`
    /// tag, the one tag every SmartOS node has.
    pub default_nics: Vec<NicSpec>,
    /// The nic added to a zone that publishes ports and has none on its tag
    /// (`external`, DHCP), made the primary; `None` adds nothing.
    pub external_nic: Option<NicSpec>,
    /// `resolvers` of a zone whose container gives no `--dns` (empty: none
    /// written, the image's own `/etc/resolv.conf` stays).
    pub default_resolvers: Vec<String>,
    /// `zlog_max_size`, bytes, unless json-file's `max-size` says otherwise.
    pub default_max_log_size: u64,
}

impl Default for PayloadOptions {
    /// sdc-docker's defaults on a node with an `admin` and an `external`
    /// nic tag.
    fn default() -> Self {
        PayloadOptions {
            kernel_version: DEFAULT_KERNEL_VERSION.to_string(),
            default_nics: vec![NicSpec {
                nic_tag: "admin".to_string(),
                ip: "dhcp".to_string(),
                primary: true,
                ..NicSpec::default()
            }],
            external_nic: Some(NicSpec {
                nic_tag: "external".to_string(),
                ip: "dhcp".to_string(),
                primary: true,
                ..NicSpec::default()
            }),
            default_resolvers: Vec::new(),
            default_max_log_size: DEFAULT_MAX_LOG_SIZE,
        }
    }
}

/// The `vmadm create` payload of `spec`, its root file system cloned from
/// the installed image `image_uuid`; the module documentation says what
/// each property is and where it comes from.
pub fn vmadm_payload(spec: &ZoneSpec, image_uuid: &str, options: &PayloadOptions) -> Value {
    let docker = &spec.docker;
    let lx = docker.image_os != "smartos";
    let mut payload = Map::new();
    let mut set = |key: &str, value: Value| {
        payload.insert(key.to_string(), value);
    };

    set("uuid", json!(spec.id));
    set("alias", json!(docker.name));
    set("hostname", json!(spec.hostname));
    if !spec.domainname.is_empty() {
        set("dns_domain", json!(spec.domainname));
    }
    let resolvers = if spec.dns.is_empty() {
        &options.default_resolvers
    } else {
        &spec.dns
    };
    if !resolvers.is_empty() {
        set("resolvers", json!(resolvers));
    }
    set("image_uuid", json!(image_uuid));
    if lx {
        set("brand", json!("lx"));
        set("kernel_version", json!(options.kernel_version));
        set("init_name", json!("/native/usr/vm/sbin/dockerinit"));
    } else {
        set("brand", json!("joyent-minimal"));
        set("init_name", json!("/usr/vm/sbin/dockerinit"));
    }
    set("autoboot", json!(false));
    set("docker", json!(true));
    set("restart_init", json!(false));
    set("tmpfs", json!(0));
    set("firewall_enabled", json!(true));

    for (key, value) in sizing(spec) {
        set(key, value);
    }

    let ports = Ports::of(spec);
    let publishing = !docker.port_bindings.is_empty() || docker.publish_all_ports;
    set("nics", nics(spec, publishing, options));
    set(
        "filesystems",
        spec.mounts
            .iter()
            .map(|m| {
                json!({
                    "type": "lofs",
                    "source": m.source.to_string_lossy(),
                    "target": m.target,
                    "options": if m.read_only { vec!["ro"] } else { Vec::new() },
                })
            })
            .collect(),
    );
    if let Some(size) = zlog_max_size(spec, options) {
        set("zlog_max_size", json!(size));
    }
    set("internal_metadata", internal_metadata(spec, lx, &ports));
    set("tags", tags(spec));
    Value::Object(payload)
}

/// The sizing properties, from the package or else `-m`/`--cpu-shares`.
fn sizing(spec: &ZoneSpec) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    match &spec.package {
        Some(PackageSizing {
            name: _,
            uuid,
            memory_mib,
            swap_mib,
            disk_mib,
            cpu_cap,
            cpu_shares,
            max_lwps,
            zfs_io_priority,
        }) => {
            memory(&mut out, *memory_mib, *swap_mib);
            out.push(("quota", json!(disk_mib.div_ceil(1024).max(1))));
            nonzero(&mut out, "cpu_shares", *cpu_shares);
            nonzero(&mut out, "cpu_cap", *cpu_cap);
            nonzero(&mut out, "zfs_io_priority", *zfs_io_priority);
            nonzero(&mut out, "max_lwps", *max_lwps);
            if !uuid.is_empty() {
                out.push(("billing_id", json!(uuid)));
            }
        }
        None => {
            let memory_mib = spec.memory_bytes.div_ceil(1024 * 1024);
            memory(&mut out, memory_mib, memory_mib);
            nonzero(&mut out, "cpu_shares", spec.cpu_shares);
        }
    }
    out
}

/// The memory caps for `memory` MiB of memory and `swap` of swap (none for
/// 0): `max_swap` is raised to what vmadm accepts.
fn memory(out: &mut Vec<(&'static str, Value)>, memory: u64, swap: u64) {
    if memory > 0 {
        out.push(("max_physical_memory", json!(memory)));
        out.push(("max_locked_memory", json!(memory)));
        out.push(("max_swap", json!(swap.max(memory).max(MIN_SWAP_MIB))));
    }
}

/// `key` when `value` is not 0 (0 leaves vmadm's default).
fn nonzero(out: &mut Vec<(&'static str, Value)>, key: &'static str, value: u64) {
    if value > 0 {
        out.push((key, json!(value)));
    }
}

/// The zone's nics in vmadm's form, exactly one of them primary.
fn nics(spec: &ZoneSpec, publishing: bool, options: &PayloadOptions) -> Value {
    let mut nics: Vec<NicSpec> = if spec.nics.is_empty() {
        options.default_nics.clone()
    } else {
        spec.nics.clone()
    };
    let mut primary = nics.iter().position(|n| n.primary);
    if publishing && let Some(external) = &options.external_nic {
        let on_tag = nics.iter().position(|n| n.nic_tag == external.nic_tag);
        primary = Some(on_tag.unwrap_or_else(|| {
            nics.push(external.clone());
            nics.len() - 1
        }));
    }
    let primary = primary.unwrap_or(0);
    nics.iter()
        .enumerate()
        .map(|(i, nic)| {
            let mut out = Map::new();
            out.insert("nic_tag".to_string(), json!(nic.nic_tag));
            out.insert("ips".to_string(), json!([address(nic)]));
            if !nic.gateway.is_empty() {
                out.insert("gateways".to_string(), json!([nic.gateway]));
            }
            if nic.vlan_id != 0 {
                out.insert("vlan_id".to_string(), json!(nic.vlan_id));
            }
            if i == primary {
                out.insert("primary".to_string(), json!(true));
            }
            Value::Object(out)
        })
        .collect()
}

/// A nic's address as `nics.*.ips` wants it: with its routing prefix, or
/// `dhcp`/`addrconf`.
fn address(nic: &NicSpec) -> String {
    let ip = nic.ip.as_str();
    if ip == "dhcp" || ip == "addrconf" || ip.contains('/') {
        return ip.to_string();
    }
    match prefix_len(&nic.netmask) {
        Some(prefix) => format!("{ip}/{prefix}"),
        None => ip.to_string(),
    }
}

/// The prefix length of a dotted-quad netmask (`255.255.255.0` → 24), if
/// it is one.
fn prefix_len(netmask: &str) -> Option<u32> {
    let mask = u32::from(netmask.parse::<Ipv4Addr>().ok()?);
    (mask.leading_ones() + mask.trailing_zeros() == 32).then_some(mask.leading_ones())
}

/// The container's ports by protocol: published (`-p`, or every exposed
/// one with `-P`) and exposed but not published.
#[derive(Default)]
struct Ports {
    published: [BTreeSet<u16>; 2],
    unpublished: [BTreeSet<u16>; 2],
}

/// The protocols sdc-docker keeps ports of, in [`Ports`]' index order.
const PROTOCOLS: [&str; 2] = ["tcp", "udp"];

impl Ports {
    fn of(spec: &ZoneSpec) -> Ports {
        let docker = &spec.docker;
        let mut ports = Ports::default();
        for (port, _) in &docker.port_bindings {
            if let Some((proto, range)) = parse_port(port) {
                ports.published[proto].extend(range);
            }
        }
        for port in &docker.exposed_ports {
            if let Some((proto, range)) = parse_port(port) {
                let into = if docker.publish_all_ports {
                    &mut ports.published[proto]
                } else {
                    &mut ports.unpublished[proto]
                };
                into.extend(range);
            }
        }
        for (unpublished, published) in ports.unpublished.iter_mut().zip(&ports.published) {
            unpublished.retain(|p| !published.contains(p));
        }
        ports
    }
}

/// `80/tcp`, `53/udp`, `80` (tcp) or a range `8000-8010/tcp`: the index of
/// its protocol in [`PROTOCOLS`] and its ports; `None` for another protocol
/// or a malformed port.
fn parse_port(port: &str) -> Option<(usize, std::ops::RangeInclusive<u16>)> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let proto = PROTOCOLS
        .iter()
        .position(|p| p.eq_ignore_ascii_case(proto))?;
    let (first, last) = number.split_once('-').unwrap_or((number, number));
    let (first, last) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    Some((proto, first..=last))
}

/// `zlog_max_size`: json-file's `max-size`, else the default; none for
/// `--log-driver none` or `max-size=-1`.
fn zlog_max_size(spec: &ZoneSpec, options: &PayloadOptions) -> Option<u64> {
    if !spec.log.keeps_output() {
        return None;
    }
    if spec.log.driver == "json-file" {
        let unlimited = spec
            .docker
            .log_options
            .get("max-size")
            .is_some_and(|v| v.trim() == "-1");
        if unlimited {
            return None;
        }
        return Some(spec.log.max_size.unwrap_or(options.default_max_log_size));
    }
    Some(options.default_max_log_size)
}

/// A JSON array as a string, the way sdc-docker stores arrays in metadata.
fn json_string<T: serde::Serialize + ?Sized>(value: &T) -> Value {
    Value::String(serde_json::to_string(value).unwrap_or_else(|_| "[]".to_string()))
}

/// `internal_metadata`: `docker:*` for `dockerinit`, and the zone's
/// identity.
fn internal_metadata(spec: &ZoneSpec, lx: bool, ports: &Ports) -> Value {
    let docker = &spec.docker;
    let mut meta = Map::new();
    let mut set = |key: &str, value: Value| {
        meta.insert(key.to_string(), value);
    };
    set("docker:id", json!(docker.id));
    set("docker:cmd", json_string(&docker.cmd));
    set("docker:entrypoint", json_string(&docker.entrypoint));
    set("docker:env", json_string(&docker.env));
    if !docker.workdir.is_empty() {
        set("docker:workdir", json!(docker.workdir));
    }
    if !docker.user.is_empty() {
        set("docker:user", json!(docker.user));
    }
    for (key, on) in [
        ("docker:tty", docker.tty),
        ("docker:attach_stdin", docker.attach_stdin),
        ("docker:attach_stdout", docker.attach_stdout),
        ("docker:attach_stderr", docker.attach_stderr),
        ("docker:open_stdin", docker.open_stdin),
    ] {
        if on {
            set(key, json!(true));
        }
    }
    let policy = docker.restart_policy.as_str();
    if !policy.is_empty() && policy != "no" {
        set("docker:restartpolicy", json!(policy));
    }
    let driver = if docker.log_driver.is_empty() {
        spec.log.driver.as_str()
    } else {
        docker.log_driver.as_str()
    };
    set("docker:logdriver", json!(driver));
    set(
        "docker:logconfig",
        Value::String(log_config(spec, driver).to_string()),
    );
    set("docker:imageid", json!(spec.image.id));
    if !docker.image_name.is_empty() {
        set("docker:imagename", json!(docker.image_name));
    }
    if lx {
        set("docker:noipmgmtd", json!(true));
    }
    if !spec.extra_hosts.is_empty() {
        let hosts: Vec<String> = spec
            .extra_hosts
            .iter()
            .map(|(host, ip)| format!("{host}:{ip}"))
            .collect();
        set("docker:extraHosts", json_string(&hosts));
    }
    if !spec.dns_search.is_empty() {
        set("docker:dnssearch", json_string(&spec.dns_search));
    }
    if docker.publish_all_ports {
        set("docker:publish_all_ports", json!(true));
    }
    for (i, proto) in PROTOCOLS.iter().enumerate() {
        if !ports.published[i].is_empty() {
            set(
                &format!("docker:{proto}_published_ports"),
                json_string(&ports.published[i]),
            );
        }
        if !ports.unpublished[i].is_empty() {
            set(
                &format!("docker:{proto}_unpublished_ports"),
                json_string(&ports.unpublished[i]),
            );
        }
    }
    for (key, value) in &spec.labels {
        set(key, json!(value));
    }
    Value::Object(meta)
}

/// The log driver's options with sdc-docker's defaults applied.
fn log_config(spec: &ZoneSpec, driver: &str) -> Value {
    let docker = &spec.docker;
    let full_id = docker.id.as_str();
    let short_id = full_id.get(..12).unwrap_or(full_id);
    let mut config: Map<String, Value> = docker
        .log_options
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let defaults: &[(&str, &str)] = match driver {
        "syslog" => &[("syslog-facility", "daemon"), ("syslog-tag", short_id)],
        "gelf" => &[("gelf-tag", short_id)],
        "fluentd" => &[("fluentd-tag", short_id)],
        _ => &[],
    };
    for (key, value) in defaults {
        config
            .entry(key.to_string())
            .or_insert_with(|| json!(value));
    }
    if driver == "syslog"
        && let Some(Value::String(address)) = config.get_mut("syslog-address")
        && let Some(with_port) = syslog_default_port(address)
    {
        *address = with_port;
    }
    if driver == "fluentd"
        && let Some(Value::String(tag)) = config.get_mut("fluentd-tag")
    {
        *tag = tag
            .replace("{{.ID}}", short_id)
            .replace("{{.FullID}}", full_id)
            .replace("{{.Name}}", &docker.name);
    }
    Value::Object(config)
}

/// A network syslog address without a port, with syslog's 514
/// (`udp://10.0.0.1` → `udp://10.0.0.1:514`); `None` when it has a port or
/// is a socket path.
fn syslog_default_port(address: &str) -> Option<String> {
    let (scheme, host) = address.split_once("://").unwrap_or(("udp", address));
    if scheme.starts_with("unix") {
        return None;
    }
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host.contains(':'),
    };
    (!has_port && !host.is_empty()).then(|| format!("{address}:514"))
}

/// `tags`: `sdc_docker`, and the Docker labels.
fn tags(spec: &ZoneSpec) -> Value {
    let mut tags = Map::new();
    tags.insert("sdc_docker".to_string(), json!(true));
    for (key, value) in &spec.docker.labels {
        if key == PACKAGE_LABEL {
            continue;
        }
        if key.starts_with("triton.") {
            let value = match (key.as_str(), value.as_str()) {
                ("triton.cns.disable", "true") => json!(true),
                ("triton.cns.disable", "false") => json!(false),
                _ => json!(value),
            };
            tags.insert(key.clone(), value);
        } else {
            tags.insert(format!("{LABEL_TAG_PREFIX}{key}"), json!(value));
        }
    }
    Value::Object(tags)
}
