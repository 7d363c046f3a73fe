//! A running `sdc-docker agent` — the node-scoped controllers of one more
//! node, on a store shared with a server — and marking a node
//! unschedulable, so a test can make containers land on the agent.

use serde_json::Value;

use super::Server;

/// A running `sdc-docker agent`: stopped, and its zones taken down, on drop.
pub struct Agent {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts an agent named `name` on the store `store` (`etcd://…`).
    pub fn start(store: &str, name: &str) -> Agent {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let child = std::process::Command::new(super::SDC_DOCKER)
            .args(["agent", "--store", store, "--node-name", name, "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sdc-docker agent");
        Agent { child, dir }
    }

    /// The agent's data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sdc-docker agent log\n{}", self.log());
        }
        super::remove_zones(&self.dir.path().join("data"));
    }
}

/// Marks node `name` unschedulable, as `sdc-docker edit node` would.
pub fn cordon(server: &Server, name: &str) {
    let out = server.sdc(&["get", "node", name, "-o", "json"]);
    assert!(out.ok, "{out:?}");
    let mut node: Value = serde_json::from_str(&out.stdout).expect("json");
    node["spec"]["unschedulable"] = Value::Bool(true);
    let file = server.write_file(&format!("{name}.json"), &node.to_string());
    let out = server.sdc(&["apply", "-f", file.to_str().expect("utf-8")]);
    assert!(out.ok, "{out:?}");
}
