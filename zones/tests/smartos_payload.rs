//! The `vmadm create` payload of the SmartOS driver, from containers built
//! the way the API stores them: each is turned into a zone spec by
//! `zone_spec`, then into a payload, and compared with a reviewed golden
//! file under `tests/golden/smartos/`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p sdc-docker-zones --test smartos_payload`
//! rewrites the golden files; review the diff before committing it. Ids,
//! UUIDs and the package are fixed so that the files are stable.

use std::path::{Path, PathBuf};

use sdc_docker_store::Resource;
use sdc_docker_store::model::{
    Container, ContainerSpec, Image, ImageSpec, LogConfig, Mount, Package, PackageSpec,
    PortBinding, RestartPolicy, RestartPolicyName,
};
use sdc_docker_zones::smartos::{PayloadOptions, vmadm_payload};
use sdc_docker_zones::{NicSpec, ZoneSpec, zone_spec};
use serde_json::{Value, json};

/// The container's Docker id; its zone is `01234567-89ab-cdef-0123-456789abcdef`.
const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The installed image the zone is cloned from.
const IMAGE_UUID: &str = "7b5981c4-1889-11e7-b4c5-3f3bdfc9b88b";

/// busybox's config digest.
const BUSYBOX_ID: &str = "sha256:6d5fcfe5ff170471fcc3c8b47631d6d71202a1fd44cf3c147e50c8de21cf0648";

/// One of the default packages (`controllers/src/packages.rs`,
/// `default_packages`): the one a container without `-m` gets (1 GiB).
fn sample_package(name: &str, memory_mib: i64, uuid: &str) -> Package {
    Package::new(
        name,
        PackageSpec {
            uuid: uuid.to_string(),
            memory_mib,
            swap_mib: 2 * memory_mib,
            disk_mib: 16 * memory_mib,
            cpu_cap: (memory_mib * 100 / 1024).max(20),
            cpu_shares: memory_mib,
            max_lwps: 4000,
            zfs_io_priority: 100,
            active: true,
        },
    )
}

fn sample_1g() -> Package {
    sample_package("sample-1G", 1024, "624c4b27-f684-4991-914a-be6a3a29ebbb")
}

fn sample_512m() -> Package {
    sample_package("sample-512M", 512, "f38fd439-f50d-432b-95e1-2b45ef9b6365")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `docker run --name web busybox` as the API stores it, changed by `f`,
/// given `package`.
fn container(package: &Package, f: impl FnOnce(&mut ContainerSpec)) -> Container {
    let mut spec = ContainerSpec {
        id: ID.to_string(),
        image: "busybox".to_string(),
        image_id: BUSYBOX_ID.to_string(),
        attach_stdout: true,
        attach_stderr: true,
        ..Default::default()
    };
    f(&mut spec);
    let mut container = Container::new("web", spec);
    container.status.package = package.metadata().name.clone();
    container
}

/// busybox as pulled: `sh`, the default `PATH`.
fn busybox() -> Image {
    image(
        BUSYBOX_ID,
        "linux",
        json!({
            "Cmd": ["sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        }),
    )
}

fn image(id: &str, os: &str, config: Value) -> Image {
    Image::new(
        id.trim_start_matches("sha256:"),
        ImageSpec {
            id: id.to_string(),
            os: os.to_string(),
            config: json!({ "config": config }),
            ..Default::default()
        },
    )
}

fn spec_of(container: &Container, image: &Image, package: Option<&Package>) -> ZoneSpec {
    zone_spec(container, image, package, Vec::new()).expect("a valid container")
}

fn payload_of(container: &Container, image: &Image, package: Option<&Package>) -> Value {
    vmadm_payload(
        &spec_of(container, image, package),
        IMAGE_UUID,
        &PayloadOptions::default(),
    )
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/smartos")
        .join(name)
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON");
    text.push('\n');
    text
}

/// Compares `actual` with the golden file `name`, or rewrites the file when
/// `UPDATE_GOLDEN=1`.
fn assert_golden(name: &str, actual: &Value) {
    let path = golden_path(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, pretty(actual)).expect("golden file written");
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to write it, then review it",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    if &expected != actual {
        panic!(
            "the payload differs from {} in {} (UPDATE_GOLDEN=1 rewrites it)\n\
             --- expected\n{}+++ actual\n{}",
            path.display(),
            differing_keys(&expected, actual).join(", "),
            pretty(&expected),
            pretty(actual)
        );
    }
    assert_eq!(
        text,
        pretty(actual),
        "{} is not pretty-printed",
        path.display()
    );
}

/// The top-level keys whose values differ, to read first.
fn differing_keys(expected: &Value, actual: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (e, a) = (
        expected.as_object().unwrap_or(&empty),
        actual.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> = e.keys().chain(a.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| e.get(k) != a.get(k));
    keys
}

fn with_log(driver: &str, options: &[(&str, &str)]) -> Value {
    let package = sample_1g();
    let c = container(&package, |s| {
        s.log_config = LogConfig {
            type_: driver.to_string(),
            config: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
    });
    payload_of(&c, &busybox(), Some(&package))
}

fn metadata<'a>(payload: &'a Value, key: &str) -> &'a Value {
    &payload["internal_metadata"][key]
}

/// A metadata value that is a JSON string holding JSON, decoded.
fn metadata_json(payload: &Value, key: &str) -> Value {
    let text = metadata(payload, key)
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{key}: {e}"))
}

// Golden payloads.

#[test]
fn an_lx_busybox_container_gives_the_reviewed_payload() {
    let package = sample_1g();
    let c = container(&package, |_| {});
    assert_golden(
        "lx-busybox.json",
        &payload_of(&c, &busybox(), Some(&package)),
    );
}

#[test]
fn a_smartos_image_gives_a_joyent_minimal_zone_as_reviewed() {
    let package = sample_512m();
    let c = container(&package, |s| {
        s.image = "joyent/base-64:latest".to_string();
        s.image_id =
            "sha256:1f0b0b2fe0d6bb1a5b5a2e7d2fdc12a3b70d4c2f77ca54bb16c89e8e0b3d8e4a".to_string();
        s.cmd = strings(&["/usr/bin/bash", "-l"]);
        s.hostname = "shell".to_string();
        s.domainname = "example.com".to_string();
        s.tty = true;
        s.open_stdin = true;
        s.attach_stdin = true;
        s.user = "admin".to_string();
        s.working_dir = "/home/admin".to_string();
        s.env = strings(&["TERM=vt100", "LANG=C"]);
        s.restart_policy = RestartPolicy {
            name: RestartPolicyName::OnFailure,
            maximum_retry_count: 3,
        };
        s.dns = strings(&["8.8.8.8", "8.8.4.4"]);
        s.dns_search = strings(&["example.com"]);
        s.extra_hosts = strings(&["db:10.0.0.2"]);
        s.labels = [
            ("com.joyent.package", "sample-512M"),
            ("com.example.team", "ops"),
            ("triton.cns.services", "shell,admin"),
            ("triton.cns.disable", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    });
    let image = image(
        "sha256:1f0b0b2fe0d6bb1a5b5a2e7d2fdc12a3b70d4c2f77ca54bb16c89e8e0b3d8e4a",
        "smartos",
        json!({ "Cmd": ["/usr/bin/bash"], "Labels": { "com.example.base": "base-64" } }),
    );
    assert_golden(
        "joyent-minimal.json",
        &payload_of(&c, &image, Some(&package)),
    );
}

#[test]
fn bind_mounts_become_lofs_filesystems_as_reviewed() {
    let package = sample_1g();
    let c = container(&package, |s| {
        s.mounts = vec![
            Mount {
                type_: "bind".to_string(),
                source: "/zones/data/web".to_string(),
                target: "/srv/www".to_string(),
                read_only: false,
            },
            Mount {
                type_: "bind".to_string(),
                source: "/zones/data/config".to_string(),
                target: "/etc/web".to_string(),
                read_only: true,
            },
        ];
    });
    assert_golden("volumes.json", &payload_of(&c, &busybox(), Some(&package)));
}

#[test]
fn published_ports_give_an_external_nic_and_port_metadata_as_reviewed() {
    let package = sample_1g();
    let c = container(&package, |s| {
        s.image = "web:1".to_string();
        s.exposed_ports = strings(&["53/udp"]);
        s.port_bindings = vec![
            PortBinding {
                container_port: "80/tcp".to_string(),
                host_ip: String::new(),
                host_port: "80".to_string(),
            },
            PortBinding {
                container_port: "53/udp".to_string(),
                host_ip: String::new(),
                host_port: "53".to_string(),
            },
        ];
    });
    let image = image(
        BUSYBOX_ID,
        "linux",
        json!({
            "Cmd": ["httpd", "-f"],
            "ExposedPorts": { "80/tcp": {}, "8080/tcp": {} },
        }),
    );
    assert_golden(
        "published-ports.json",
        &payload_of(&c, &image, Some(&package)),
    );
}

#[test]
fn json_file_logs_rotate_at_their_max_size_as_reviewed() {
    let payload = with_log("json-file", &[("max-size", "10m"), ("max-file", "3")]);
    assert_golden("log-json-file.json", &payload);
}

#[test]
fn syslog_logs_get_sdc_dockers_defaults_as_reviewed() {
    let payload = with_log("syslog", &[("syslog-address", "udp://10.0.0.5")]);
    assert_golden("log-syslog.json", &payload);
}

#[test]
fn gelf_logs_get_the_short_id_as_tag_as_reviewed() {
    let payload = with_log(
        "gelf",
        &[("gelf-address", "udp://graylog.example.com:12201")],
    );
    assert_golden("log-gelf.json", &payload);
}

#[test]
fn fluentd_tag_templates_are_substituted_as_reviewed() {
    let payload = with_log(
        "fluentd",
        &[
            ("fluentd-address", "10.0.0.6:24224"),
            ("fluentd-tag", "docker.{{.Name}}.{{.ID}}.{{.FullID}}"),
        ],
    );
    assert_golden("log-fluentd.json", &payload);
}

#[test]
fn no_logs_keep_no_stdio_log_as_reviewed() {
    assert_golden("log-none.json", &with_log("none", &[]));
}

// Focused properties.

#[test]
fn the_brand_follows_the_images_os() {
    let package = sample_1g();
    let c = container(&package, |_| {});
    let lx = payload_of(&c, &busybox(), Some(&package));
    assert_eq!(lx["brand"], "lx");
    assert_eq!(lx["kernel_version"], "3.13.0");
    assert_eq!(lx["init_name"], "/native/usr/vm/sbin/dockerinit");
    assert_eq!(metadata(&lx, "docker:noipmgmtd"), &json!(true));

    let native = image(BUSYBOX_ID, "smartos", json!({ "Cmd": ["/bin/sh"] }));
    let smartos = payload_of(&c, &native, Some(&package));
    assert_eq!(smartos["brand"], "joyent-minimal");
    assert_eq!(smartos["init_name"], "/usr/vm/sbin/dockerinit");
    assert!(smartos.get("kernel_version").is_none());
    assert!(metadata(&smartos, "docker:noipmgmtd").is_null());

    let options = PayloadOptions {
        kernel_version: "4.4.0".to_string(),
        ..PayloadOptions::default()
    };
    let spec = spec_of(&c, &busybox(), Some(&package));
    assert_eq!(
        vmadm_payload(&spec, IMAGE_UUID, &options)["kernel_version"],
        "4.4.0"
    );
}

#[test]
fn max_swap_is_never_below_memory_nor_256_mib() {
    let c = container(&sample_1g(), |_| {});
    let mut package = sample_1g();
    package.spec.swap_mib = 512;
    let payload = payload_of(&c, &busybox(), Some(&package));
    assert_eq!(payload["max_physical_memory"], 1024);
    assert_eq!(payload["max_locked_memory"], 1024);
    assert_eq!(payload["max_swap"], 1024);

    package.spec.memory_mib = 128;
    package.spec.swap_mib = 128;
    let payload = payload_of(&c, &busybox(), Some(&package));
    assert_eq!(payload["max_physical_memory"], 128);
    assert_eq!(payload["max_swap"], 256);

    package.spec.swap_mib = 4096;
    assert_eq!(payload_of(&c, &busybox(), Some(&package))["max_swap"], 4096);
}

#[test]
fn the_quota_is_the_disk_in_gib_rounded_up_and_at_least_one() {
    let c = container(&sample_1g(), |_| {});
    let mut package = sample_1g();
    package.spec.disk_mib = 1500;
    assert_eq!(payload_of(&c, &busybox(), Some(&package))["quota"], 2);
    package.spec.disk_mib = 0;
    assert_eq!(payload_of(&c, &busybox(), Some(&package))["quota"], 1);
    package.spec.disk_mib = 16384;
    assert_eq!(payload_of(&c, &busybox(), Some(&package))["quota"], 16);
}

#[test]
fn without_a_package_memory_and_shares_come_from_the_container() {
    let c = container(&sample_1g(), |s| {
        s.memory = 100 * 1024 * 1024 + 1;
        s.cpu_shares = 512;
    });
    let payload = payload_of(&c, &busybox(), None);
    assert_eq!(payload["max_physical_memory"], 101);
    assert_eq!(payload["max_locked_memory"], 101);
    assert_eq!(payload["max_swap"], 256);
    assert_eq!(payload["cpu_shares"], 512);
    for absent in [
        "quota",
        "cpu_cap",
        "billing_id",
        "max_lwps",
        "zfs_io_priority",
    ] {
        assert!(payload.get(absent).is_none(), "{absent}");
    }

    let bare = payload_of(&container(&sample_1g(), |_| {}), &busybox(), None);
    for absent in ["max_physical_memory", "max_swap", "cpu_shares"] {
        assert!(bare.get(absent).is_none(), "{absent}");
    }
}

#[test]
fn a_syslog_address_without_a_port_gets_514() {
    let address = |given: &str| {
        let payload = with_log("syslog", &[("syslog-address", given)]);
        metadata_json(&payload, "docker:logconfig")["syslog-address"].clone()
    };
    assert_eq!(address("udp://10.0.0.5"), "udp://10.0.0.5:514");
    assert_eq!(
        address("tcp://logs.example.com"),
        "tcp://logs.example.com:514"
    );
    assert_eq!(address("tcp://10.0.0.5:1514"), "tcp://10.0.0.5:1514");
    assert_eq!(address("udp://[fe80::1]"), "udp://[fe80::1]:514");
    assert_eq!(address("udp://[fe80::1]:601"), "udp://[fe80::1]:601");
    assert_eq!(address("unix:///dev/log"), "unix:///dev/log");
}

#[test]
fn log_options_the_user_gives_win_over_the_defaults() {
    let payload = with_log(
        "syslog",
        &[
            ("syslog-address", "udp://10.0.0.5:514"),
            ("syslog-facility", "local0"),
            ("syslog-tag", "web"),
        ],
    );
    assert_eq!(
        metadata_json(&payload, "docker:logconfig"),
        json!({
            "syslog-address": "udp://10.0.0.5:514",
            "syslog-facility": "local0",
            "syslog-tag": "web",
        })
    );
}

#[test]
fn triton_labels_are_unprefixed_tags_and_others_are_docker_labels() {
    let package = sample_1g();
    let c = container(&package, |s| {
        s.labels = [
            ("triton.cns.services", "web"),
            ("triton.cns.disable", "false"),
            ("triton.network.public", "internet"),
            ("com.example.tier", "front"),
            ("com.joyent.package", "sample-1G"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    });
    let tags = &payload_of(&c, &busybox(), Some(&package))["tags"];
    assert_eq!(
        tags,
        &json!({
            "sdc_docker": true,
            "triton.cns.services": "web",
            "triton.cns.disable": false,
            "triton.network.public": "internet",
            "docker:label:com.example.tier": "front",
        })
    );
}

#[test]
fn the_zones_identity_is_in_its_internal_metadata() {
    let package = sample_1g();
    let payload = payload_of(&container(&package, |_| {}), &busybox(), Some(&package));
    assert_eq!(metadata(&payload, "sdc-docker.account"), "default");
    assert_eq!(metadata(&payload, "sdc-docker.name"), "web");
    assert_eq!(metadata(&payload, "sdc-docker.container-id"), ID);
    assert_eq!(metadata(&payload, "docker:id"), ID);
    assert_eq!(payload["uuid"], "01234567-89ab-cdef-0123-456789abcdef");
}

#[test]
fn allocated_nics_are_written_with_prefixes_and_exactly_one_primary() {
    let package = sample_1g();
    let c = container(&package, |s| {
        s.port_bindings = vec![PortBinding {
            container_port: "80/tcp".to_string(),
            host_ip: String::new(),
            host_port: String::new(),
        }];
    });
    let mut spec = spec_of(&c, &busybox(), Some(&package));
    spec.nics = vec![
        NicSpec {
            nic_tag: "sdc_overlay".to_string(),
            ip: "192.168.128.5".to_string(),
            netmask: "255.255.252.0".to_string(),
            gateway: "192.168.128.1".to_string(),
            vlan_id: 4,
            primary: true,
        },
        NicSpec {
            nic_tag: "external".to_string(),
            ip: "10.88.88.50".to_string(),
            netmask: "255.255.255.0".to_string(),
            gateway: "10.88.88.1".to_string(),
            vlan_id: 0,
            primary: false,
        },
    ];
    let payload = vmadm_payload(&spec, IMAGE_UUID, &PayloadOptions::default());
    assert_eq!(
        payload["nics"],
        json!([
            {
                "nic_tag": "sdc_overlay",
                "ips": ["192.168.128.5/22"],
                "gateways": ["192.168.128.1"],
                "vlan_id": 4,
            },
            {
                "nic_tag": "external",
                "ips": ["10.88.88.50/24"],
                "gateways": ["10.88.88.1"],
                "primary": true,
            },
        ]),
        "publishing makes the existing external nic the primary, adding none"
    );

    spec.docker.port_bindings.clear();
    spec.nics[0].primary = false;
    let payload = vmadm_payload(&spec, IMAGE_UUID, &PayloadOptions::default());
    assert_eq!(
        payload["nics"][0]["primary"], true,
        "the first when none is"
    );
    assert!(payload["nics"][1].get("primary").is_none());
}

#[test]
fn the_default_nics_and_resolvers_are_the_options() {
    let package = sample_1g();
    let spec = spec_of(&container(&package, |_| {}), &busybox(), Some(&package));
    let options = PayloadOptions {
        default_nics: vec![NicSpec {
            nic_tag: "internal".to_string(),
            ip: "dhcp".to_string(),
            ..NicSpec::default()
        }],
        external_nic: None,
        default_resolvers: strings(&["10.0.0.53"]),
        default_max_log_size: 1_000_000,
        ..PayloadOptions::default()
    };
    let payload = vmadm_payload(&spec, IMAGE_UUID, &options);
    assert_eq!(
        payload["nics"],
        json!([{ "nic_tag": "internal", "ips": ["dhcp"], "primary": true }])
    );
    assert_eq!(payload["resolvers"], json!(["10.0.0.53"]));
    assert_eq!(payload["zlog_max_size"], 1_000_000);

    let with_dns = container(&package, |s| s.dns = strings(&["1.1.1.1"]));
    let payload = vmadm_payload(
        &spec_of(&with_dns, &busybox(), Some(&package)),
        IMAGE_UUID,
        &options,
    );
    assert_eq!(payload["resolvers"], json!(["1.1.1.1"]));
}

#[test]
fn publish_all_publishes_every_exposed_port() {
    let package = sample_1g();
    let c = container(&package, |s| {
        s.publish_all_ports = true;
        s.exposed_ports = strings(&["8000-8002/tcp", "53/udp"]);
    });
    let payload = payload_of(&c, &busybox(), Some(&package));
    assert_eq!(metadata(&payload, "docker:publish_all_ports"), &json!(true));
    assert_eq!(
        metadata_json(&payload, "docker:tcp_published_ports"),
        json!([8000, 8001, 8002])
    );
    assert_eq!(
        metadata_json(&payload, "docker:udp_published_ports"),
        json!([53])
    );
    assert!(metadata(&payload, "docker:tcp_unpublished_ports").is_null());
    assert_eq!(payload["nics"][1]["nic_tag"], "external");
    assert_eq!(payload["nics"][1]["primary"], true);
}

#[test]
fn restart_policies_are_written_as_sdc_docker_spells_them() {
    let package = sample_1g();
    let policy = |name: RestartPolicyName, maximum_retry_count: i64| {
        let c = container(&package, |s| {
            s.restart_policy = RestartPolicy {
                name,
                maximum_retry_count,
            }
        });
        metadata(
            &payload_of(&c, &busybox(), Some(&package)),
            "docker:restartpolicy",
        )
        .clone()
    };
    assert_eq!(policy(RestartPolicyName::No, 0), Value::Null);
    assert_eq!(policy(RestartPolicyName::Always, 0), "always");
    assert_eq!(
        policy(RestartPolicyName::UnlessStopped, 0),
        "unless-stopped"
    );
    assert_eq!(policy(RestartPolicyName::OnFailure, 0), "on-failure");
    assert_eq!(policy(RestartPolicyName::OnFailure, 5), "on-failure:5");
}

#[test]
fn json_file_max_size_minus_one_means_no_rotation() {
    let payload = with_log("json-file", &[("max-size", "-1")]);
    assert!(payload.get("zlog_max_size").is_none());
    let payload = with_log("json-file", &[]);
    assert_eq!(payload["zlog_max_size"], 50_000_000);
}
