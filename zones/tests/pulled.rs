//! From a pulled image to a running zone: a busybox image with whiteouts is
//! pushed to a real registry, pulled into an `ImageStore`, merged with a
//! container by `zone_spec`, and run by the linux driver on the store's
//! layer dirs. Needs root, runc, busybox, `docker-registry` and the monitor
//! binary (`cargo build -p sdc-docker-monitor`); skips otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sdc_docker_images::pull::pull;
use sdc_docker_images::reference::Reference;
use sdc_docker_images::registry::{Client, ClientConfig, Platform};
use sdc_docker_images::store::ImageStore;
use sdc_docker_store::Resource;
use sdc_docker_store::model::{Container, ContainerSpec, Image};
use sdc_docker_store::{Api, EmbeddedStore};
use sdc_docker_testkit::{Format, Registry, busybox};
use sdc_docker_zones::{LinuxConfig, LinuxDriver, ZoneDriver, ZoneState, zone_spec};

fn monitor_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.parent()?.join("sdc-docker-monitor");
    binary.is_file().then_some(binary)
}

fn missing_prerequisite() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root");
    }
    if !Path::new("/usr/bin/runc").exists() || !Path::new("/bin/busybox").exists() {
        return Some("runc or busybox is missing");
    }
    if !Path::new("/usr/bin/docker-registry").exists() {
        return Some("docker-registry is missing");
    }
    if monitor_binary().is_none() {
        return Some("the monitor binary is not built: run `cargo build -p sdc-docker-monitor`");
    }
    None
}

#[tokio::test]
async fn a_pulled_image_runs_on_the_image_stores_layers_with_its_whiteouts_applied() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start().await;
    registry
        .push(
            "library/busybox",
            "latest",
            &busybox::with_whiteout(Format::Docker),
        )
        .await;
    let store = ImageStore::open(tmp.path().join("images")).unwrap();
    let spec_store =
        EmbeddedStore::open(&tmp.path().join("store.redb"), Default::default()).unwrap();
    let images: Api<Image> = Api::default_account(Arc::new(spec_store));
    let client = Client::new(ClientConfig::default()).unwrap();
    let reference =
        Reference::parse_normalized(&format!("{}/library/busybox", registry.host())).unwrap();
    let image = pull(
        &client,
        &store,
        &images,
        &reference,
        &Platform::linux_amd64(),
        |_| {},
    )
    .await
    .unwrap();

    let container = Container::new(
        "whiteouts",
        ContainerSpec {
            id: "feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface".to_string(),
            image: "busybox".to_string(),
            cmd: [
                "sh",
                "-c",
                "ls /var/data; cat /etc/motd || echo no motd; echo $PATH",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        },
    );
    let spec = zone_spec(&container, &image, None, store.lower_dirs(&image)).unwrap();
    assert_eq!(spec.image.lower_dirs.len(), 4);

    let driver = LinuxDriver::new(LinuxConfig {
        root: tmp.path().join("zones"),
        runtime: PathBuf::from("/usr/bin/runc"),
        runtime_root: tmp.path().join("runc"),
        monitor_binary: monitor_binary(),
    })
    .unwrap();
    driver.create(&spec).await.unwrap();
    driver.start(&spec.id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = loop {
        let info = driver.get(&spec.id).await.unwrap().unwrap();
        if info.state == ZoneState::Stopped {
            break info;
        }
        assert!(Instant::now() < deadline, "the zone did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = std::fs::read_to_string(driver.log_file(&spec.id).unwrap()).unwrap();
    // stdout and stderr reach the monitor through separate pipes, so only
    // the order within one stream is defined.
    let stream = |name: &str| -> String {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["stream"] == name)
            .filter_map(|v| v["log"].as_str().map(str::to_string))
            .collect()
    };
    let (stdout, stderr) = (stream("stdout"), stream("stderr"));
    assert_eq!(info.exit_code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "b\nno motd\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    driver.delete(&spec.id).await.unwrap();
    assert!(
        store.has_layer(
            &sdc_docker_images::reference::Digest::parse(&image.spec.diff_ids[0]).unwrap()
        )
    );
}
