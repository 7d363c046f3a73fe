//! Stats and files of real zones: a busybox image with whiteouts is pushed to
//! a real registry, pulled into an `ImageStore`, and run by the linux driver
//! under `runc`; then `ZoneStreams` reads its cgroups, copies files in and
//! out, lists its changes and exports it. Needs root, runc, busybox,
//! `docker-registry` and the monitor binary (`cargo build -p
//! sdc-docker-monitor`); skips otherwise.
//!
//! Every zone is deleted at the end of its test, and a guard takes down
//! whatever is left (runc container, monitor, rootfs mount) when a test
//! fails half way.

mod support;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use sdc_docker_testkit::{Format, busybox};
use sdc_docker_zones::streams::{ByteStream, ChangeKind, ExtractOptions};
use sdc_docker_zones::{ZoneDriver, ZoneError, ZoneState, ZoneStreams};
use support::{Node, NodeBuilder, node_or_skip};
use tokio::io::AsyncReadExt;

/// The memory limit of the zones' package.
const MEMORY: u64 = 256 * 1024 * 1024;

/// A node with the busybox image with whiteouts, its zones limited to
/// [`MEMORY`].
fn node() -> NodeBuilder {
    Node::pulled(busybox::with_whiteout(Format::Docker)).memory(MEMORY)
}

async fn read_all(mut stream: ByteStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// (name, type, contents) of every entry of a tar archive.
fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let kind = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, kind, data)
        })
        .collect()
}

fn names(tar: &[u8]) -> Vec<String> {
    entries(tar).into_iter().map(|(n, _, _)| n).collect()
}

/// A tar holding the given (raw name, contents) files, names unchecked.
fn raw_tar(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, contents) in files {
        let mut header = tar::Header::new_gnu();
        let slot = &mut header.as_gnu_mut().unwrap().name;
        slot[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, contents.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

fn stream_of(bytes: Vec<u8>) -> ByteStream {
    Box::pin(std::io::Cursor::new(bytes))
}

#[tokio::test]
async fn stats_of_a_running_zone_show_cpu_memory_its_limit_and_processes_and_a_stopped_one_has_none()
 {
    let node = node_or_skip!(node());
    let id = node
        .run("i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo > /ready; sleep 100")
        .await;
    node.wait_ready(&id).await;
    let stats = node.driver.stats(&id).await.unwrap();
    assert!(stats.cpu_total_ns > 0, "{stats:?}");
    assert!(stats.cpu_user_ns + stats.cpu_system_ns > 0, "{stats:?}");
    assert!(stats.memory_usage > 0, "{stats:?}");
    assert_eq!(stats.memory_limit, MEMORY);
    assert!(stats.pids_current >= 1, "{stats:?}");
    assert!(stats.system_cpu_ns > stats.cpu_total_ns, "{stats:?}");
    assert!(stats.online_cpus >= 1);
    assert!(!stats.memory_stats.is_empty());
    assert!(
        !stats.networks.contains_key("lo"),
        "lo is not reported: {stats:?}"
    );

    // A paused zone still has its cgroups.
    node.driver.pause(&id).await.unwrap();
    let paused = node.driver.stats(&id).await.unwrap();
    assert!(paused.cpu_total_ns >= stats.cpu_total_ns);
    node.driver.unpause(&id).await.unwrap();

    node.driver
        .stop(&id, "SIGKILL", Duration::from_secs(5))
        .await
        .unwrap();
    node.wait_for(&id, ZoneState::Stopped).await;
    let error = node.driver.stats(&id).await.unwrap_err();
    assert!(
        matches!(error, ZoneError::WrongState { op: "stats", .. }),
        "{error}"
    );
    let error = node.driver.stats("no-such-zone").await.unwrap_err();
    assert!(matches!(error, ZoneError::NotFound { .. }), "{error}");
    node.driver.delete(&id).await.unwrap();
}

#[tokio::test]
async fn a_zone_that_allocates_memory_shows_more_memory_in_use() {
    let node = node_or_skip!(node());
    let idle = node.run("echo > /ready; sleep 100").await;
    let hungry = node
        .run(
            "x=$(busybox head -c 20000000 /dev/zero | busybox tr '\\0' a); \
             echo > /ready; sleep 100; echo ${#x}",
        )
        .await;
    node.wait_ready(&idle).await;
    node.wait_ready(&hungry).await;
    let idle_usage = node.driver.stats(&idle).await.unwrap().memory_usage;
    let hungry_stats = node.driver.stats(&hungry).await.unwrap();
    assert!(
        hungry_stats.memory_usage > idle_usage + 10_000_000,
        "idle {idle_usage}, hungry {}",
        hungry_stats.memory_usage
    );
    assert!(hungry_stats.memory_max_usage.unwrap_or(u64::MAX) >= hungry_stats.memory_usage);
    node.driver.delete(&idle).await.unwrap();
    node.driver.delete(&hungry).await.unwrap();
}

#[tokio::test]
async fn stat_path_reports_files_directories_symlinks_and_missing_paths() {
    let node = node_or_skip!(node());
    let id = node.run("echo > /ready; sleep 100").await;
    node.wait_ready(&id).await;
    let d = &node.driver;

    let file = d.stat_path(&id, "/var/data/b").await.unwrap();
    assert_eq!(file.name, "b");
    assert_eq!(file.size, busybox::DATA_B.len() as u64);
    assert_eq!(file.mode, 0o644);
    assert_eq!(file.link_target, "");

    let dir = d.stat_path(&id, "/var/data").await.unwrap();
    assert_eq!(dir.name, "data");
    assert_eq!(dir.mode, (1 << 31) | 0o755);

    let link = d.stat_path(&id, "/bin/sh").await.unwrap();
    assert_eq!(link.name, "sh");
    assert_eq!(link.mode & (1 << 27), 1 << 27);
    assert_eq!(link.link_target, "/bin/busybox");

    for missing in ["/etc/motd", "/var/data/a", "/no/such/thing"] {
        let error = d.stat_path(&id, missing).await.unwrap_err();
        assert!(
            matches!(&error, ZoneError::NoSuchPath { path, .. } if path == missing),
            "{missing}: {error}"
        );
    }
    d.delete(&id).await.unwrap();
}

#[tokio::test]
async fn archives_of_a_file_and_of_a_directory_hold_what_the_zone_has() {
    let node = node_or_skip!(node());
    let id = node
        .run("mkdir -p /srv/sub; echo one > /srv/one; echo two > /srv/sub/two; echo > /ready; sleep 100")
        .await;
    node.wait_ready(&id).await;
    let d = &node.driver;

    let (stat, stream) = d.archive(&id, "/var/data/b").await.unwrap();
    assert_eq!(stat.name, "b");
    let tar = read_all(stream).await;
    let got = entries(&tar);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "b");
    assert_eq!(got[0].2, busybox::DATA_B.as_bytes());

    let (stat, stream) = d.archive(&id, "/srv").await.unwrap();
    assert_eq!(stat.name, "srv");
    let tar = read_all(stream).await;
    assert_eq!(names(&tar), ["srv/", "srv/one", "srv/sub/", "srv/sub/two"]);
    let two = entries(&tar)
        .into_iter()
        .find(|e| e.0 == "srv/sub/two")
        .unwrap();
    assert_eq!(two.2, b"two\n");

    // `/.`: the contents without the directory itself.
    let (_, stream) = d.archive(&id, "/srv/.").await.unwrap();
    assert_eq!(names(&read_all(stream).await), ["one", "sub/", "sub/two"]);

    // Symlinks inside are archived as symlinks.
    let (_, stream) = d.archive(&id, "/bin").await.unwrap();
    let tar = read_all(stream).await;
    let sh = entries(&tar).into_iter().find(|e| e.0 == "bin/sh").unwrap();
    assert_eq!(sh.1, tar::EntryType::Symlink);

    let error = d.archive(&id, "/etc/motd").await.err().unwrap();
    assert!(matches!(error, ZoneError::NoSuchPath { .. }), "{error}");
    d.delete(&id).await.unwrap();
}

#[tokio::test]
async fn archives_through_symlinks_that_point_outside_stay_inside_the_zone() {
    let node = node_or_skip!(node());
    let id = node
        .run(
            "busybox ln -s / /escape; busybox ln -s ../../../../ /up; \
             echo zone > /marker; echo > /ready; sleep 100",
        )
        .await;
    node.wait_ready(&id).await;
    let d = &node.driver;

    let (_, stream) = d.archive(&id, "/escape/marker").await.unwrap();
    let got = entries(&read_all(stream).await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2, b"zone\n");

    // The zone's /bin, not the host's (which has far more in it).
    for path in ["/up/bin", "/escape/bin", "/up/../../bin"] {
        let (_, stream) = d.archive(&id, path).await.unwrap();
        let names = names(&read_all(stream).await);
        assert!(names.contains(&"bin/busybox".to_string()), "{names:?}");
        assert_eq!(names.len(), 2 + busybox::APPLETS.len(), "{path}: {names:?}");
    }
    let stat = d.stat_path(&id, "/escape").await.unwrap();
    assert_eq!(stat.link_target, "/");
    let stat = d.stat_path(&id, "/up").await.unwrap();
    assert_eq!(stat.link_target, "/");
    d.delete(&id).await.unwrap();
}

#[tokio::test]
async fn extracting_names_that_climb_or_are_absolute_writes_nothing_outside_the_zone() {
    let node = node_or_skip!(node());
    let id = node.run("echo > /ready; sleep 100").await;
    node.wait_ready(&id).await;
    let d = &node.driver;
    let zone_dir = node.zone_dir(&id);

    let tar = raw_tar(&[("fine", "ok\n"), ("../../../../../evil", "bad\n")]);
    let error = d
        .extract(&id, "/tmp", stream_of(tar), ExtractOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ZoneError::BadRequest(_)), "{error}");
    let tar = raw_tar(&[("/abs-evil", "bad\n")]);
    let error = d
        .extract(&id, "/tmp", stream_of(tar), ExtractOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ZoneError::BadRequest(_)), "{error}");

    assert!(!Path::new("/evil").exists());
    assert!(!Path::new("/abs-evil").exists());
    assert!(!zone_dir.join("evil").exists());
    assert!(!zone_dir.join("rootfs/evil").exists());
    assert!(!node.tmp.path().join("evil").exists());
    // What came before the bad entry is there.
    let (_, stream) = d.archive(&id, "/tmp/fine").await.unwrap();
    assert_eq!(entries(&read_all(stream).await)[0].2, b"ok\n");
    d.delete(&id).await.unwrap();
}

#[tokio::test]
async fn extracting_under_a_symlink_to_the_root_lands_inside_the_zone() {
    let node = node_or_skip!(node());
    let id = node
        .run("busybox ln -s / /escape; echo > /ready; sleep 100")
        .await;
    node.wait_ready(&id).await;
    let d = &node.driver;
    let marker = format!("sdc-docker-files-test-{}", std::process::id());

    // Into a directory under the symlink, and through a symlink the
    // archive itself brings.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder.append_link(&mut header, "link", "/").unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o600);
    header.set_uid(1234);
    builder
        .append_data(&mut header, format!("link/root/{marker}"), &b"in\n"[..])
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o640);
    builder
        .append_data(&mut header, &marker, &b"up\n"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    d.extract(
        &id,
        "/escape/tmp",
        stream_of(tar),
        ExtractOptions::default(),
    )
    .await
    .unwrap();

    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(!Path::new("/root").join(&marker).exists());
    let rootfs = node.zone_dir(&id).join("rootfs");
    let direct = rootfs.join("tmp").join(&marker);
    assert_eq!(std::fs::read_to_string(&direct).unwrap(), "up\n");
    let through = rootfs.join("root").join(&marker);
    assert_eq!(std::fs::read_to_string(&through).unwrap(), "in\n");
    assert_eq!(std::fs::metadata(&through).unwrap().uid(), 0);
    let stat = d
        .stat_path(&id, &format!("/tmp/link/root/{marker}"))
        .await
        .unwrap();
    assert_eq!(stat.size, 3);
    // Without copy_uid_gid, everything belongs to the zone's root.
    assert_eq!(std::fs::metadata(&direct).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(&direct).unwrap().mode() & 0o777, 0o640);
    d.delete(&id).await.unwrap();
}

#[tokio::test]
async fn no_overwrite_dir_non_dir_refuses_to_replace_a_directory_by_a_file_and_the_reverse() {
    let node = node_or_skip!(node());
    let id = node
        .run("mkdir -p /srv/dir; echo f > /srv/file; echo > /ready; sleep 100")
        .await;
    node.wait_ready(&id).await;
    let d = &node.driver;
    let strict = ExtractOptions {
        no_overwrite_dir_non_dir: true,
        copy_uid_gid: false,
    };

    let error = d
        .extract(&id, "/srv", stream_of(raw_tar(&[("dir", "x")])), strict)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot overwrite directory \"/srv/dir\" with non-directory \"/srv\""
    );

    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o750);
    builder
        .append_data(&mut header, "file/", std::io::empty())
        .unwrap();
    let dir_tar = builder.into_inner().unwrap();
    let error = d
        .extract(&id, "/srv", stream_of(dir_tar.clone()), strict)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot overwrite non-directory \"/srv/file\" with directory \"/srv\""
    );

    // Without the option, the archive wins, as Docker does.
    d.extract(&id, "/srv", stream_of(dir_tar), ExtractOptions::default())
        .await
        .unwrap();
    assert_eq!(
        d.stat_path(&id, "/srv/file").await.unwrap().mode,
        (1 << 31) | 0o750
    );

    // The destination must be a directory.
    let error = d
        .extract(
            &id,
            "/bin/busybox",
            stream_of(raw_tar(&[("x", "x")])),
            strict,
        )
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "extraction point is not a directory");
    let error = d
        .extract(&id, "/nowhere", stream_of(raw_tar(&[("x", "x")])), strict)
        .await
        .unwrap_err();
    assert!(matches!(error, ZoneError::NoSuchPath { .. }), "{error}");
    d.delete(&id).await.unwrap();
}

#[tokio::test]
async fn changes_list_what_the_zones_process_added_modified_and_deleted() {
    let node = node_or_skip!(node());
    let id = node
        .run(
            "echo x > /etc/added; rm /bin/true; mkdir /root/d; touch /root/d/f; \
             busybox chmod 700 /tmp; rm -rf /var/data; mkdir /var/data; echo n > /var/data/n",
        )
        .await;
    node.wait_for(&id, ZoneState::Stopped).await;
    let changes = node.driver.changes(&id).await.unwrap();
    let got: Vec<(char, &str)> = changes
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ChangeKind::Modified => 'C',
                ChangeKind::Added => 'A',
                ChangeKind::Deleted => 'D',
            };
            (kind, c.path.as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            ('C', "/bin"),
            ('D', "/bin/true"),
            ('C', "/etc"),
            ('A', "/etc/added"),
            ('C', "/root"),
            ('A', "/root/d"),
            ('A', "/root/d/f"),
            ('C', "/tmp"),
            ('C', "/var"),
            ('C', "/var/data"),
            ('D', "/var/data/b"),
            ('A', "/var/data/n"),
        ]
    );
    node.driver.delete(&id).await.unwrap();
}

#[tokio::test]
async fn export_holds_the_whole_file_system_with_the_zones_new_file_and_no_proc() {
    let node = node_or_skip!(node());
    let id = node.run("echo hi > /new; echo > /ready; sleep 100").await;
    node.wait_ready(&id).await;
    let tar = read_all(node.driver.export(&id).await.unwrap()).await;
    let got = entries(&tar);
    let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
    assert!(names.contains(&"bin/busybox"), "{names:?}");
    assert!(names.contains(&"var/data/b"), "{names:?}");
    assert!(!names.contains(&"var/data/a"), "{names:?}");
    assert!(!names.contains(&"etc/motd"), "{names:?}");
    let new = got.iter().find(|e| e.0 == "new").unwrap();
    assert_eq!(new.2, b"hi\n");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("proc/") && *n != "proc/"),
        "{names:?}"
    );
    let busybox_size = std::fs::metadata(busybox::binary()).unwrap().len();
    let bin = got.iter().find(|e| e.0 == "bin/busybox").unwrap();
    assert_eq!(bin.2.len() as u64, busybox_size);
    node.driver.delete(&id).await.unwrap();
}

#[tokio::test]
async fn paths_under_a_bind_mount_are_the_mounts_host_files_and_its_symlinks_stay_in_the_zone() {
    let node = node_or_skip!(node());
    let data = node.tmp.path().join("data");
    let frozen = node.tmp.path().join("frozen");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&frozen).unwrap();
    std::fs::write(data.join("file"), "from the host\n").unwrap();
    std::os::unix::fs::symlink("/", data.join("root")).unwrap();
    let spec = node
        .zone("echo > /ready; sleep 100")
        .mount(&data, "/data", false)
        .mount(&frozen, "/data/frozen", true)
        .start()
        .await;
    let id = spec.id.clone();
    node.wait_ready(&id).await;
    let d = &node.driver;

    let (stat, stream) = d.archive(&id, "/data/file").await.unwrap();
    assert_eq!(stat.size, 14);
    assert_eq!(entries(&read_all(stream).await)[0].2, b"from the host\n");
    // The mount's symlink to `/` is the zone's root, not the host's.
    let (_, stream) = d.archive(&id, "/data/root/bin").await.unwrap();
    let listed = names(&read_all(stream).await);
    assert_eq!(listed.len(), 2 + busybox::APPLETS.len(), "{listed:?}");
    // A directory archive includes what is mounted under it.
    let (_, stream) = d.archive(&id, "/data").await.unwrap();
    let listed = names(&read_all(stream).await);
    assert!(listed.contains(&"data/file".to_string()), "{listed:?}");

    d.extract(
        &id,
        "/data",
        stream_of(raw_tar(&[("put", "in\n")])),
        ExtractOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read_to_string(data.join("put")).unwrap(), "in\n");
    let error = d
        .extract(
            &id,
            "/data/frozen",
            stream_of(raw_tar(&[("put", "in\n")])),
            ExtractOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "mounted volume is marked read-only");
    assert!(!frozen.join("put").exists());
    // The driver's own /etc files are what the zone sees.
    let (_, stream) = d.archive(&id, "/etc/hostname").await.unwrap();
    let hostname = entries(&read_all(stream).await).remove(0).2;
    assert_eq!(
        String::from_utf8(hostname).unwrap().trim(),
        spec.hostname.as_str()
    );
    d.delete(&id).await.unwrap();
}
