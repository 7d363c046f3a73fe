//! The platform's tools as this node runs them: each of `vmadm`, `imgadm`,
//! `zfs`, `zlogin` and `sysinfo` is an argv prefix, so an operator can point
//! the agent at a wrapper (`/opt/local/bin/pfexec vmadm`), at another path,
//! or prefix every tool with one command (`ssh root@cn1`).

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::driver::ZoneError;

/// One of the platform's tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `vmadm(8)`: zones.
    Vmadm,
    /// `imgadm(8)`: installed images.
    Imgadm,
    /// `zfs(8)`: datasets.
    Zfs,
    /// `zlogin(1)`: processes in a zone.
    Zlogin,
    /// `sysinfo(8)`: the compute node.
    Sysinfo,
}

impl Tool {
    /// The tool's name, as on the platform.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Vmadm => "vmadm",
            Tool::Imgadm => "imgadm",
            Tool::Zfs => "zfs",
            Tool::Zlogin => "zlogin",
            Tool::Sysinfo => "sysinfo",
        }
    }
}

/// How each tool is invoked: an argv prefix per tool (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commands {
    /// `vmadm`.
    pub vmadm: Vec<String>,
    /// `imgadm`.
    pub imgadm: Vec<String>,
    /// `zfs`.
    pub zfs: Vec<String>,
    /// `zlogin`.
    pub zlogin: Vec<String>,
    /// `sysinfo`.
    pub sysinfo: Vec<String>,
}

impl Default for Commands {
    /// The platform's own paths.
    fn default() -> Self {
        Commands {
            vmadm: vec!["/usr/sbin/vmadm".into()],
            imgadm: vec!["/usr/sbin/imgadm".into()],
            zfs: vec!["/usr/sbin/zfs".into()],
            zlogin: vec!["/usr/sbin/zlogin".into()],
            sysinfo: vec!["/usr/bin/sysinfo".into()],
        }
    }
}

/// What a finished tool printed.
#[derive(Clone, Debug)]
pub struct Output {
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error, as text.
    pub stderr: String,
}

impl Commands {
    /// The argv prefix of `tool`.
    pub fn argv(&self, tool: Tool) -> &[String] {
        match tool {
            Tool::Vmadm => &self.vmadm,
            Tool::Imgadm => &self.imgadm,
            Tool::Zfs => &self.zfs,
            Tool::Zlogin => &self.zlogin,
            Tool::Sysinfo => &self.sysinfo,
        }
    }

    /// Every tool behind `prefix` (`ssh root@cn1`, `pfexec`).
    pub fn with_prefix(mut self, prefix: &[String]) -> Commands {
        for argv in [
            &mut self.vmadm,
            &mut self.imgadm,
            &mut self.zfs,
            &mut self.zlogin,
            &mut self.sysinfo,
        ] {
            let mut full = prefix.to_vec();
            full.append(argv);
            *argv = full;
        }
        self
    }

    /// A command running `tool` with `args`, stdio not yet set (for
    /// streams: exec and attach through `zlogin`).
    pub fn command(&self, tool: Tool, args: &[&str]) -> tokio::process::Command {
        let argv = self.argv(tool);
        let mut command = tokio::process::Command::new(&argv[0]);
        command.args(&argv[1..]).args(args).kill_on_drop(true);
        command
    }

    /// Runs `tool` with `args` (and `stdin`, when given) to the end. A
    /// non-zero exit is [`ZoneError::Runtime`] with the tool's stderr (its
    /// own words); a tool that cannot be run at all says so.
    pub async fn run(
        &self,
        tool: Tool,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, ZoneError> {
        let op = format!("{} {}", tool.name(), args.first().copied().unwrap_or(""));
        let mut command = self.command(tool, args);
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::debug!(tool = tool.name(), ?args, "running");
        let mut child = command.spawn().map_err(|e| ZoneError::Runtime {
            op: op.trim().to_string(),
            message: format!("cannot run {}: {e}", self.argv(tool).join(" ")),
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A tool that exits without reading all of it is judged by its
            // exit status below, not by the broken pipe.
            let _ = pipe.write_all(input).await;
            drop(pipe);
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(ZoneError::io(format!("waiting for {}", tool.name())))?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if !output.status.success() {
            let message = if stderr.is_empty() {
                format!("exited with {}", output.status)
            } else {
                stderr
            };
            return Err(ZoneError::Runtime {
                op: op.trim().to_string(),
                message,
            });
        }
        Ok(Output {
            stdout: output.stdout,
            stderr,
        })
    }
}
