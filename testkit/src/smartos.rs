//! Stand-ins for SmartOS's `vmadm`, `zfs`, `imgadm`, `zlogin` and
//! `sysinfo`, so the SmartOS zone driver can be tested on Linux.
//!
//! [`Standins::new`] makes a temporary directory ROOT and writes
//! `ROOT/bin/{vmadm,zfs,imgadm,zlogin,sysinfo}`: `#!/bin/sh` wrappers that run
//! `testkit/smartos/standin.py` (one Python 3 program, standard library only)
//! with `SDC_STANDIN_ROOT=ROOT`, so a caller needs no environment. The
//! program behaves as the platform's tools do (their messages, output
//! formats and exit codes, taken from smartos-live's sources) and keeps all
//! state under ROOT:
//!
//! - the pool `zones`: dataset `zones/NAME` is the directory `ROOT/zones/NAME`
//!   (its mountpoint, as `/zones/NAME` on SmartOS), a snapshot a full `cp -a`
//!   copy under `ROOT/.zfs/snapshots`, origins and properties in
//!   `ROOT/.zfs/datasets.json`;
//! - imgadm's database `ROOT/var/imgadm/images/zones-UUID.json`
//!   (`{"manifest": …, "zpool": "zones"}`, [`Standins::imgadm_db`]), and a
//!   local image source `ROOT/imgapi` for `imgadm import`
//!   ([`Standins::add_source_image`]);
//! - VM objects `ROOT/.vmadm/UUID.json` ([`Standins::vm`]); a zone's path is
//!   `ROOT/zones/UUID` ([`Standins::zones_root`]), its root file system
//!   `ROOT/zones/UUID/root`, zoneadmd's log of its init
//!   `ROOT/zones/UUID/logs/stdio.log`;
//! - `ROOT/sysinfo.json`, what `sysinfo` prints: fixed [`SERVER_UUID`],
//!   [`HOSTNAME`] and [`DATACENTER`], this machine's memory and CPUs;
//! - `ROOT/calls.jsonl`: every invocation with its arguments, the payload
//!   it read on stdin and its exit code ([`Standins::calls`]).
//!
//! A started zone really runs: its init is PID 1 of new PID, mount and UTS
//! namespaces, chrooted into the zone root, under a supervisor process that
//! logs its output as zoneadmd does and applies Docker restart policies as
//! vmadmd does; `zlogin` enters those namespaces. The full contract is the
//! docstring of `standin.py` and of each tool's entry point there.
//!
//! Dropping [`Standins`] kills every process it started (supervisors, zone
//! inits, everything inside the zones, stand-in calls still running) and
//! removes ROOT. Running zones needs root (namespaces, chroot, mounts):
//! these tests run as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The stand-in tools, by name.
pub const TOOLS: [&str; 5] = ["vmadm", "zfs", "imgadm", "zlogin", "sysinfo"];

/// The compute node's UUID in `sysinfo` (and `server_uuid` of VMs).
pub const SERVER_UUID: &str = "44454c4c-3300-1034-8052-b3c04f4b4e31";

/// The compute node's `Hostname` in `sysinfo`.
pub const HOSTNAME: &str = "sdc-docker-test-cn0";

/// The `Datacenter Name` in `sysinfo`.
pub const DATACENTER: &str = "sdc-docker-test-1";

/// The NIC tags `sysinfo` lists (what `nics[].nic_tag` may name).
pub const NIC_TAGS: [&str; 2] = ["admin", "external"];

/// The applets linked to busybox in [`busybox_tree`].
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "echo", "cat", "sleep", "true", "false", "env", "id", "ls", "mkdir", "rm",
    "touch", "kill", "ps", "hostname", "pwd", "printf", "tty", "wc", "head",
];

/// Path of `standin.py`.
pub fn standin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("smartos")
        .join("standin.py")
}

/// One invocation of a stand-in, from `ROOT/calls.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `vmadm`, `zfs`, `imgadm`, `zlogin` or `sysinfo`.
    pub tool: String,
    /// Its arguments (without the tool's name).
    pub args: Vec<String>,
    /// The payload it read on standard input (`vmadm create`/`update`), if
    /// it read one.
    pub stdin: Option<String>,
    /// Its exit code.
    pub exit: i32,
}

impl Call {
    /// The first argument (the subcommand), or "".
    pub fn subcommand(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }

    /// The payload as JSON, when one was read.
    pub fn payload(&self) -> Option<Value> {
        self.stdin
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// The stand-ins with their own state directory; see the module docs.
pub struct Standins {
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Standins {
    /// A fresh ROOT with the wrappers and `sysinfo.json`.
    ///
    /// # Panics
    /// When `/usr/bin/python3` is missing or ROOT cannot be written.
    pub fn new() -> Standins {
        let python = Path::new("/usr/bin/python3");
        assert!(
            python.is_file(),
            "/usr/bin/python3 is missing: the SmartOS stand-ins are a Python 3 program \
             (on Debian: apt-get install python3)"
        );
        let script = standin_script();
        assert!(script.is_file(), "{} is missing", script.display());
        let dir = tempfile::Builder::new()
            .prefix("sdc-docker-smartos-")
            .tempdir()
            .expect("creating a temporary directory for the SmartOS stand-ins");
        let root = dir
            .path()
            .canonicalize()
            .expect("canonicalizing the stand-ins' directory");
        let bin = root.join("bin");
        fs::create_dir(&bin).expect("creating ROOT/bin");
        for tool in TOOLS {
            let path = bin.join(tool);
            fs::write(
                &path,
                format!(
                    "#!/bin/sh\nSDC_STANDIN_ROOT='{}' exec /usr/bin/python3 '{}' {tool} \"$@\"\n",
                    root.display(),
                    script.display()
                ),
            )
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
        let sysinfo = serde_json::to_vec_pretty(&sysinfo()).expect("sysinfo as JSON");
        fs::write(root.join("sysinfo.json"), sysinfo).expect("writing ROOT/sysinfo.json");
        Standins {
            root,
            dir: Some(dir),
        }
    }

    /// ROOT.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The wrapper of `tool` (`ROOT/bin/TOOL`).
    ///
    /// # Panics
    /// When `tool` is not one of [`TOOLS`].
    pub fn bin(&self, tool: &str) -> PathBuf {
        assert!(
            TOOLS.contains(&tool),
            "no stand-in for {tool:?}: there are {TOOLS:?}"
        );
        self.root.join("bin").join(tool)
    }

    /// A command running `tool` (its wrapper), arguments and stdio not set.
    pub fn command(&self, tool: &str) -> Command {
        Command::new(self.bin(tool))
    }

    /// Where zone paths are: `ROOT/zones` (zone `U`'s root file system is
    /// `ROOT/zones/U/root`, its logs `ROOT/zones/U/logs`).
    pub fn zones_root(&self) -> PathBuf {
        self.root.join("zones")
    }

    /// imgadm's database of installed images: `ROOT/var/imgadm/images`
    /// (created empty if missing).
    pub fn imgadm_db(&self) -> PathBuf {
        let db = self.root.join("var").join("imgadm").join("images");
        fs::create_dir_all(&db).expect("creating imgadm's database directory");
        db
    }

    /// Every invocation so far, in order.
    ///
    /// # Panics
    /// On a line that is not a call record.
    pub fn calls(&self) -> Vec<Call> {
        let text = match fs::read_to_string(self.root.join("calls.jsonl")) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("reading calls.jsonl: {e}"),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("calls.jsonl line {line:?}: {e}"));
                Call {
                    tool: v["tool"].as_str().unwrap_or_default().to_string(),
                    args: v["args"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|s| s.as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                    stdin: v["stdin"].as_str().map(str::to_string),
                    exit: v["exit"].as_i64().unwrap_or(-1) as i32,
                }
            })
            .collect()
    }

    /// The VM object of `uuid` (what `vmadm get` prints), if it exists.
    pub fn vm(&self, uuid: &str) -> Option<Value> {
        let path = self.root.join(".vmadm").join(format!("{uuid}.json"));
        let bytes = fs::read(&path).ok()?;
        Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display())),
        )
    }

    /// Every VM object.
    pub fn vms(&self) -> Vec<Value> {
        let Ok(entries) = fs::read_dir(self.root.join(".vmadm")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.len() == 41 && n.ends_with(".json"))
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.vm(&n[..36])).collect()
    }

    /// Waits until VM `uuid` exists and `predicate` holds for it, polling
    /// every 20 ms; returns it.
    ///
    /// # Panics
    /// After `timeout`, with `what` and the VM as it last was.
    pub fn wait_for_vm(
        &self,
        uuid: &str,
        timeout: Duration,
        what: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let vm = self.vm(uuid);
            if let Some(vm) = &vm
                && predicate(vm)
            {
                return vm.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for VM {uuid}: {what}; it is {}",
                    vm.map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
                        .unwrap_or_else(|| "absent".into())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The entries of zone `uuid`'s current `stdio.log` (not the rotated
    /// ones), each `{"log", "stream", "time"}`.
    pub fn log_entries(&self, uuid: &str) -> Vec<Value> {
        let path = self.zones_root().join(uuid).join("logs").join("stdio.log");
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Makes the next `n` `vmadm create` calls fail with `message` (exit 1)
    /// before they change anything (`ROOT/.fail/vmadm-create`).
    pub fn fail_next_creates(&self, n: u32, message: &str) {
        self.write_failure(&format!("{n}\n{message}\n"));
    }

    /// Makes the next `n` `vmadm create` calls fail with `message` (exit 1)
    /// after cloning the image and writing the VM in state `failed`, as a
    /// provision cut short leaves it behind.
    pub fn fail_next_creates_leaving_vm(&self, n: u32, message: &str) {
        self.write_failure(&format!("{n} failed\n{message}\n"));
    }

    fn write_failure(&self, text: &str) {
        let dir = self.root.join(".fail");
        fs::create_dir_all(&dir).expect("creating ROOT/.fail");
        fs::write(dir.join("vmadm-create"), text).expect("writing ROOT/.fail/vmadm-create");
    }

    /// Puts image `uuid` in the local image source `imgadm import` reads:
    /// `manifest` (its `uuid` is set to `uuid`) and the directory tree
    /// `files`, copied with `cp -a`, which becomes the image dataset's
    /// `root/`.
    ///
    /// # Panics
    /// When `files` cannot be copied.
    pub fn add_source_image(&self, uuid: &str, manifest: Value, files: &Path) {
        let source = self.root.join("imgapi");
        fs::create_dir_all(&source).expect("creating ROOT/imgapi");
        let mut manifest = manifest;
        manifest["uuid"] = json!(uuid);
        fs::write(
            source.join(format!("{uuid}.json")),
            serde_json::to_vec_pretty(&manifest).expect("manifest as JSON"),
        )
        .expect("writing the source manifest");
        let tree = source.join(uuid);
        fs::create_dir_all(&tree).expect("creating the source image's tree");
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", files.display()))
            .arg(format!("{}/", tree.display()))
            .status()
            .expect("running cp -a");
        assert!(
            status.success(),
            "cp -a {} {} failed",
            files.display(),
            tree.display()
        );
    }

    /// Puts a busybox image ([`busybox_tree`]) of `image_type`
    /// (`lx-dataset`, `zone-dataset`, `docker`) in the image source under
    /// `uuid`, and returns its manifest. `imgadm import UUID` installs it.
    pub fn add_busybox_source_image(&self, uuid: &str, image_type: &str) -> Value {
        let tree = tempfile::tempdir().expect("a temporary directory for the busybox tree");
        busybox_tree(tree.path());
        let manifest = json!({
            "v": 2,
            "uuid": uuid,
            "name": "busybox",
            "version": "1.35.0",
            "type": image_type,
            "os": if image_type == "zone-dataset" { "smartos" } else { "linux" },
            "state": "active",
            "disabled": false,
            "public": true,
            "published_at": "2024-01-01T00:00:00Z",
        });
        self.add_source_image(uuid, manifest.clone(), tree.path());
        manifest
    }

    /// The pids of processes that belong to these stand-ins: any with
    /// `SDC_STANDIN_ROOT=ROOT` in its environment (stand-in calls,
    /// supervisors) or whose root directory is under ROOT (zone processes).
    pub fn processes(&self) -> Vec<u32> {
        let marker = format!("SDC_STANDIN_ROOT={}", self.root.display());
        let me = std::process::id();
        let mut pids = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let proc = entry.path();
            let in_env = fs::read(proc.join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
                .unwrap_or(false);
            let in_root = fs::read_link(proc.join("root"))
                .map(|r| r.starts_with(&self.root))
                .unwrap_or(false);
            if in_env || in_root {
                pids.push(pid);
            }
        }
        pids
    }

    /// SIGKILLs every process of [`Self::processes`] until none is left (a
    /// supervisor may start a zone meanwhile), for up to 10 s.
    pub fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.processes();
            if pids.is_empty() || Instant::now() >= deadline {
                return;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(u32::to_string))
                .stderr(std::process::Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for Standins {
    fn default() -> Self {
        Standins::new()
    }
}

impl Drop for Standins {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            for path in fs::read_dir(self.root.join(".vmadm"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".supervisor.log"))
            {
                let text = fs::read_to_string(&path).unwrap_or_default();
                if !text.trim().is_empty() {
                    eprintln!("--- {} ---\n{text}---", path.display());
                }
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Fills `dest` with a tiny root file system: Debian's static busybox as
/// `/bin/busybox` with [`BUSYBOX_APPLETS`] linked to it, `/etc/passwd` and
/// `/etc/group` (root, and `nobody` 65534), `/tmp` and `/root`.
pub fn busybox_tree(dest: &Path) {
    let bin = dest.join("bin");
    fs::create_dir_all(&bin).expect("creating bin/");
    fs::copy(crate::busybox::binary(), bin.join("busybox")).expect("copying busybox");
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))
        .expect("chmod busybox");
    for applet in BUSYBOX_APPLETS {
        let link = bin.join(applet);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("busybox", &link).expect("linking an applet");
    }
    let etc = dest.join("etc");
    fs::create_dir_all(&etc).expect("creating etc/");
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("writing etc/passwd");
    fs::write(etc.join("group"), "root:x:0:\nnogroup:x:65534:\n").expect("writing etc/group");
    for dir in ["tmp", "root"] {
        fs::create_dir_all(dest.join(dir)).expect("creating a directory");
    }
    fs::set_permissions(dest.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
}

/// What `sysinfo` prints: the fixed identity, this machine's memory and
/// CPUs, with sysinfo's own types (`MiB of Memory` and `Boot Time` are
/// strings, CPU counts numbers).
fn sysinfo() -> Value {
    let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(1024 * 1024);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let boot_time: u64 = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("btime "))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0);
    let mut info = json!({
        "Live Image": "20240101T000000Z",
        "System Type": "SunOS",
        "Boot Time": boot_time.to_string(),
        "Datacenter Name": DATACENTER,
        "Manufacturer": "sdc-docker",
        "Product": "stand-in",
        "Serial Number": "standin-0",
        "Setup": "true",
        "VM Capable": true,
        "Bhyve Capable": false,
        "Bhyve Max Vcpus": 0,
        "HVM API": false,
        "CPU Type": "stand-in",
        "CPU Virtualization": "none",
        "CPU Physical Cores": 1,
        "Admin NIC Tag": "admin",
        "Admin IP": "127.0.0.1",
    });
    let more = json!({
        "UUID": SERVER_UUID,
        "Hostname": HOSTNAME,
        "CPU Total Cores": cpus,
        "CPU Socket Count": 1,
        "CPU Core Count": cpus,
        "CPU Online Count": cpus,
        "CPU Count": cpus,
        "MiB of Memory": (mem_kib / 1024).to_string(),
        "Zpool": "zones",
        "Zpool Encrypted": false,
        "Zpool Profile": "striped",
        "Zpool Creation": boot_time,
        "Zpool Size in GiB": 100,
        "Disks": {},
        "Boot Parameters": {},
        "Network Interfaces": {
            "vioif0": {
                "MAC Address": "90:b8:d0:00:00:01",
                "ip4addr": "127.0.0.1",
                "Link Status": "up",
                "NIC Names": NIC_TAGS,
            }
        },
        "Virtual Network Interfaces": {},
        "Link Aggregations": {},
    });
    if let (Value::Object(info), Value::Object(more)) = (&mut info, more) {
        info.extend(more);
    }
    info
}
