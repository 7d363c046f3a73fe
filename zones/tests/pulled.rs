//! From a pulled image to a running zone: a busybox image with whiteouts is
//! pushed to a real registry, pulled into an `ImageStore`, merged with a
//! container by `zone_spec`, and run by the linux driver on the store's
//! layer dirs. Needs root, runc, busybox, `docker-registry` and the monitor
//! binary (`cargo build -p sdc-docker-monitor`); skips otherwise.

mod support;

use sdc_docker_testkit::{Format, busybox};
use sdc_docker_zones::{ZoneDriver, ZoneState};
use support::{Node, node_or_skip};

#[tokio::test]
async fn a_pulled_image_runs_on_the_image_stores_layers_with_its_whiteouts_applied() {
    let node = node_or_skip!(Node::pulled(busybox::with_whiteout(Format::Docker)));
    let spec = node.spec("ls /var/data; cat /etc/motd || echo no motd; echo $PATH");
    assert_eq!(spec.image.lower_dirs.len(), 4);

    node.start(&spec).await;
    let info = node.wait_for(&spec.id, ZoneState::Stopped).await;
    // stdout and stderr reach the monitor through separate pipes, so only
    // the order within one stream is defined.
    let stdout = node.output_of(&spec.id, Some("stdout"));
    let stderr = node.output_of(&spec.id, Some("stderr"));
    assert_eq!(info.exit_code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "b\nno motd\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    node.driver.delete(&spec.id).await.unwrap();
    let pulled = node.pulled_image();
    assert!(pulled.store.has_layer(
        &sdc_docker_images::reference::Digest::parse(&pulled.image.spec.diff_ids[0]).unwrap()
    ));
}
