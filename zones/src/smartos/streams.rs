//! [`ZoneStreams`] for SmartOS zones, with the platform's own means:
//!
//! - **attach** is `zlogin -Q -I <uuid>`: zoneadmd's connection to the
//!   zone init's stdio (its zfd devices). zlogin's stdout and stderr are the
//!   two streams; its stdin is the init's, and closing it ends the init's
//!   stdin only with `stdin_once` (otherwise `-N`: this client's input ends,
//!   the init's stays open). The output ends when the zone stops.
//! - **exec** is `zlogin -Q <uuid> <argv>`, run by the daemon (the
//!   caller's process: it dies with its streams); with a tty, `zlogin -Q -E
//!   -i <uuid> <argv>` on a pty of ours, which zlogin takes for its
//!   terminal: it gives the process a pty in the zone, copies between the
//!   two (`-E`: without taking `~.` for its escape), and copies our pty's
//!   size to the zone's on `SIGWINCH`, which is how the exec's `resize`
//!   works (as the linux driver's does with runc).
//!
//!   zlogin gives the process root's login environment; Docker's exec gets
//!   the zone's own (`docker:env`, `docker:workdir` and `docker:user` in its
//!   internal metadata) with the exec's over it. So the argv is a small
//!   launcher: `sh -c 'cd -- "$1" || exit 126; shift; exec "$@"' sh <dir>
//!   env -i K=V… <args…>`. The shell and `env` are the platform's
//!   (`/native/usr/bin/{sh,env}` in lx zones, `/usr/bin/…` in native ones)
//!   whenever the zone has them, so an image without a shell can be exec'd
//!   into; otherwise the image's (`/bin/sh`, `/usr/bin/env`). The
//!   platform's own `dockerexec` is not used: it takes the user, directory
//!   and environment from the zone's metadata and cannot be given an
//!   exec's own.
//!
//!   A user other than root is `zlogin -l <name>`, which zlogin carries out
//!   with the zone's `su`, and only without a tty: such an exec needs `su`
//!   in the image, a passwd entry for the user, its primary group, and no
//!   tty (refused otherwise). Without a tty, when the zone has `su`, zlogin
//!   runs the command as one shell command line (`su root -c '…'`): the
//!   launcher is then handed over as one argument, quoted for that shell,
//!   so every argument arrives as it was.
//! - **resize** of the zone's own tty has nothing to act on: zlogin -I
//!   would pass its terminal's size to zoneadmd, but an attach has no
//!   terminal of its own here, and a resize is no call on an attach. A
//!   resize of a running zone answers OK (logged), so `docker attach` and
//!   `docker run -it` go on with the size the zone has.
//! - **logs** are zoneadmd's `stdio.log` (`smartos/logs.rs`).
//! - **stats**: the platform keeps a zone's usage in kstats, which none of
//!   the configured tools reads, so a reading has what `vmadm get` knows —
//!   the memory limit (`max_physical_memory`) — and zeros elsewhere: `docker
//!   stats` shows the limit and no usage. Honest, if thin; a kstat reader is
//!   the next step.
//! - **files** are the zone's root file system (`smartos/files.rs`).
//!
//! Limits: the exit code of an exec is zlogin's, which is the process's
//! own, but also 1 when zlogin itself fails (its message on stderr).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use futures::StreamExt;
use serde_json::Value;
use time::OffsetDateTime;

use super::commands::Tool;
use super::{SmartosDriver, files, logs, zone_info};
use crate::driver::{ZoneError, ZoneState};
use crate::linux::exec::{
    ClosingWriter, Started, env_key, exit_code, merge_env, reader, spawn_with_pipes, spawn_with_pty,
};
use crate::linux::files::ZoneRoot;
use crate::linux::user;
use crate::streams::{
    AttachOptions, ByteStream, Change, ExecProcess, ExecSpec, ExtractOptions, Input, LogOptions,
    LogStream, OutputChunk, PathStat, Session, StdStream, ZoneStats, ZoneStreams,
};

/// The launcher's script: its `$1` is the working directory, the rest the
/// command. 126 when the directory cannot be entered, as Docker answers a
/// process that cannot be started.
const LAUNCHER: &str = r#"cd -- "$1" || exit 126; shift; exec "$@""#;

/// Where an exec's shell may be in the zone, best first: the platform's
/// (always there in an lx zone, whatever the image), then the image's.
const SHELLS: &[&str] = &["/native/usr/bin/sh", "/bin/sh", "/usr/bin/sh"];

/// Where an exec's `env` may be in the zone, best first.
const ENVS: &[&str] = &["/native/usr/bin/env", "/usr/bin/env", "/bin/env"];

/// Where zlogin looks for `su` in the zone; with one, it runs commands as
/// `su <user> -c "<command line>"`.
const SU_PATHS: &[&str] = &["usr/bin/su", "bin/su"];

/// Docker's `PATH` for a process whose environment has none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[async_trait::async_trait]
impl ZoneStreams for SmartosDriver {
    async fn attach(&self, id: &str, options: AttachOptions) -> Result<Session, ZoneError> {
        attach(self, id, options).await
    }

    async fn resize(&self, id: &str, height: u16, width: u16) -> Result<(), ZoneError> {
        running(self, id, "resize").await?;
        tracing::debug!(
            zone = id,
            height,
            width,
            "resize: zlogin sizes no pty for us"
        );
        Ok(())
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecProcess, ZoneError> {
        exec(self, id, spec).await
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<LogStream, ZoneError> {
        logs::logs(self, id, options).await
    }

    async fn stats(&self, id: &str) -> Result<ZoneStats, ZoneError> {
        let vm = self
            .vm(id)
            .await?
            .ok_or_else(|| ZoneError::NotFound { id: id.to_string() })?;
        let state = zone_info(&vm).map_or(ZoneState::Configured, |z| z.state);
        if !state.can_kill() {
            return Err(ZoneError::WrongState {
                id: id.to_string(),
                state,
                op: "read stats",
            });
        }
        Ok(stats_of(&vm, OffsetDateTime::now_utc()))
    }

    async fn stat_path(&self, id: &str, path: &str) -> Result<PathStat, ZoneError> {
        files::stat_path(self, id, path).await
    }

    async fn archive(&self, id: &str, path: &str) -> Result<(PathStat, ByteStream), ZoneError> {
        files::archive(self, id, path).await
    }

    async fn extract(
        &self,
        id: &str,
        path: &str,
        tar: ByteStream,
        options: ExtractOptions,
    ) -> Result<(), ZoneError> {
        files::extract(self, id, path, tar, options).await
    }

    async fn changes(&self, id: &str) -> Result<Vec<Change>, ZoneError> {
        files::changes(self, id).await
    }

    async fn export(&self, id: &str) -> Result<ByteStream, ZoneError> {
        files::export(self, id).await
    }
}

/// The VM object of zone `id`, checked to be running.
async fn running(d: &SmartosDriver, id: &str, op: &'static str) -> Result<Value, ZoneError> {
    let vm = d
        .vm(id)
        .await?
        .ok_or_else(|| ZoneError::NotFound { id: id.to_string() })?;
    let state = zone_info(&vm).map_or(ZoneState::Configured, |z| z.state);
    if state != ZoneState::Running {
        return Err(ZoneError::WrongState {
            id: id.to_string(),
            state,
            op,
        });
    }
    Ok(vm)
}

/// A reading of what `vmadm get` knows of zone `vm`'s resources (see the
/// module documentation).
fn stats_of(vm: &Value, read: OffsetDateTime) -> ZoneStats {
    let mib = vm
        .get("max_physical_memory")
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        .unwrap_or(0);
    ZoneStats {
        read,
        cpu_total_ns: 0,
        cpu_per_cpu_ns: Vec::new(),
        cpu_user_ns: 0,
        cpu_system_ns: 0,
        system_cpu_ns: 0,
        online_cpus: 0,
        memory_usage: 0,
        memory_max_usage: None,
        memory_limit: mib.saturating_mul(1024 * 1024),
        memory_stats: BTreeMap::new(),
        pids_current: 0,
        pids_limit: None,
        networks: BTreeMap::new(),
        blkio_read_bytes: 0,
        blkio_write_bytes: 0,
    }
}

/// Connects to the running zone's init through `zlogin -I`.
async fn attach(d: &SmartosDriver, id: &str, options: AttachOptions) -> Result<Session, ZoneError> {
    running(d, id, "attach").await?;
    let args = attach_args(id, options);
    let mut child = d
        .config
        .commands
        .command(Tool::Zlogin, &args)
        // Always a pipe: zlogin's end of input would be the init's.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("attach", d, e))?;
    let stdin = child.stdin.take();
    let (input, keep): (Option<Input>, _) = if options.stdin {
        (
            stdin.map(|w| Box::pin(ClosingWriter(Some(w))) as Input),
            None,
        )
    } else {
        // Held with the output, never written: the init sees no end.
        (None, stdin)
    };
    let wanted = move |chunk: &std::io::Result<OutputChunk>| match chunk {
        Ok(c) => match c.stream {
            StdStream::Stdout => options.stdout,
            StdStream::Stderr => options.stderr,
        },
        Err(_) => true,
    };
    // Both pipes are drained whatever is wanted, or zlogin would block.
    let stdout = child.stdout.take().map(|r| reader(r, StdStream::Stdout));
    let stderr = child.stderr.take().map(|r| reader(r, StdStream::Stderr));
    let merged = futures::stream::select(
        futures::stream::iter(stdout).flatten(),
        futures::stream::iter(stderr).flatten(),
    )
    .filter(move |chunk| std::future::ready(wanted(chunk)));
    // zlogin (killed when dropped) and the unused stdin live as long as
    // the output is read.
    let output = futures::stream::unfold(
        (Box::pin(merged), child, keep),
        |(mut merged, child, keep)| async move {
            merged
                .next()
                .await
                .map(|chunk| (chunk, (merged, child, keep)))
        },
    );
    tracing::debug!(zone = id, ?options, "attached through zlogin -I");
    Ok(Session {
        input,
        output: Box::pin(output),
    })
}

/// zlogin's arguments for an attach.
fn attach_args(id: &str, options: AttachOptions) -> Vec<&str> {
    let mut args = vec!["-Q", "-I"];
    if !(options.stdin && options.stdin_once) {
        // No hang-up: the end of this client's input is not the init's.
        args.push("-N");
    }
    args.push(id);
    args
}

/// How an exec is run: zlogin's arguments after its own prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ExecCommand {
    args: Vec<String>,
}

/// What the zone's own process is, from its internal metadata: the
/// defaults of an exec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ZoneProcess {
    env: Vec<String>,
    workdir: String,
    user: String,
}

impl ZoneProcess {
    fn of(vm: &Value) -> ZoneProcess {
        let meta = |key: &str| vm.get("internal_metadata").and_then(|m| m.get(key));
        let text = |key: &str| {
            meta(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        // A JSON array, or (as sdc-docker writes it) a string holding one.
        let env = match meta("docker:env") {
            Some(Value::String(s)) => serde_json::from_str::<Vec<String>>(s).unwrap_or_default(),
            Some(v @ Value::Array(_)) => {
                serde_json::from_value::<Vec<String>>(v.clone()).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        ZoneProcess {
            env,
            workdir: text("docker:workdir"),
            user: text("docker:user"),
        }
    }
}

/// The zlogin arguments running `exec` in the zone `id` whose root file
/// system is `root` and whose own process is `zone`.
fn exec_command(
    id: &str,
    root: &Path,
    zone: &ZoneProcess,
    exec: &ExecSpec,
) -> Result<ExecCommand, ZoneError> {
    let files = ZoneRoot::at(root.to_path_buf());
    let find = |candidates: &[&str]| {
        candidates
            .iter()
            .find(|path| {
                files
                    .resolve(path, true)
                    .is_ok_and(|r| r.host.metadata().is_ok_and(|m| m.is_file()))
            })
            .map(|path| path.to_string())
    };
    let (Some(shell), Some(env_tool)) = (find(SHELLS), find(ENVS)) else {
        return Err(ZoneError::BadRequest(format!(
            "cannot exec in zone {id}: it has no shell and env to start the process with (looked for {} and {})",
            SHELLS.join(", "),
            ENVS.join(", ")
        )));
    };

    // The user, as runc would resolve it for Docker; zlogin needs a name.
    let user_spec = if exec.user.is_empty() {
        zone.user.as_str()
    } else {
        exec.user.as_str()
    };
    let passwd = user::read_etc(root, "passwd");
    let group = user::read_etc(root, "group");
    let resolved = user::resolve(user_spec, &passwd, &group)
        .map_err(|e| ZoneError::BadRequest(e.to_string()))?;
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 6)
        .find(|f| f[2].parse::<u32>().ok() == Some(resolved.uid));
    let home = entry.as_ref().map_or("/", |f| f[5]).to_string();
    let login = if resolved.uid == 0 {
        None
    } else {
        match &entry {
            Some(f) if f[3].parse::<u32>().ok() == Some(resolved.gid) => Some(f[0].to_string()),
            Some(_) => {
                return Err(ZoneError::BadRequest(format!(
                    "cannot exec as {user_spec} in zone {id}: zlogin switches to a user with su, which gives the user's own group only"
                )));
            }
            None => {
                return Err(ZoneError::BadRequest(format!(
                    "cannot exec as {user_spec} in zone {id}: zlogin switches users by name and uid {} has none in /etc/passwd",
                    resolved.uid
                )));
            }
        }
    };
    // zlogin looks for su as it does, following symlinks from here.
    let has_su = SU_PATHS.iter().any(|p| root.join(p).exists());
    if login.is_some() && (exec.tty || !has_su) {
        return Err(ZoneError::BadRequest(format!(
            "cannot exec as {user_spec} in zone {id}: zlogin switches users only without a tty and with su in the zone{}",
            if has_su { "" } else { ", which has none" }
        )));
    }

    // Docker's environment: the zone's, the exec's over it.
    let mut env = merge_env(&zone.env, &exec.env);
    for (key, default) in [
        ("PATH", DEFAULT_PATH.to_string()),
        ("HOME", format!("HOME={home}")),
    ] {
        if !env.iter().any(|e| env_key(e) == key) {
            env.push(default);
        }
    }
    if exec.tty && !env.iter().any(|e| env_key(e) == "TERM") {
        env.push("TERM=xterm".to_string());
    }
    let workdir = [exec.workdir.as_str(), zone.workdir.as_str(), "/"]
        .into_iter()
        .find(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string();

    let mut launcher = vec![
        shell,
        "-c".to_string(),
        LAUNCHER.to_string(),
        "sh".to_string(),
        workdir,
        env_tool,
        "-i".to_string(),
    ];
    launcher.extend(env);
    launcher.extend(exec.args.iter().cloned());

    let mut args = vec!["-Q".to_string()];
    if exec.tty {
        // Interactive: zlogin gives the process a pty in the zone, copies it
        // to and from its own terminal (ours) without taking `~.` for its
        // escape, and runs the argv as it is.
        args.extend(["-E".to_string(), "-i".to_string()]);
    }
    if let Some(login) = login {
        args.push("-l".to_string());
        args.push(login);
    }
    args.push(id.to_string());
    if has_su && !exec.tty {
        // zlogin hands a lone argument to `su -c` as it is.
        args.push(shell_line(&launcher));
    } else {
        args.extend(launcher);
    }
    Ok(ExecCommand { args })
}

/// `words` as one POSIX shell command line that gives them back.
fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts `spec` in the running zone `id` through zlogin.
async fn exec(d: &SmartosDriver, id: &str, spec: &ExecSpec) -> Result<ExecProcess, ZoneError> {
    if spec.args.is_empty() {
        return Err(ZoneError::BadRequest(
            "No exec command specified".to_string(),
        ));
    }
    let vm = running(d, id, "exec").await?;
    let zone = ZoneProcess::of(&vm);
    let root = d.zone_path(id).join("root");
    let command = {
        let (id, spec) = (id.to_string(), spec.clone());
        crate::linux::blocking(move || exec_command(&id, &root, &zone, &spec)).await?
    };
    let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
    let zlogin = d.config.commands.command(Tool::Zlogin, &args);
    let failed = |e| spawn_error("exec", d, e);
    let Started {
        mut child,
        input,
        output,
        resize,
        alive,
    } = if spec.tty {
        spawn_with_pty(zlogin, spec.stdin, failed)?
    } else {
        spawn_with_pipes(zlogin, spec.stdin, failed)?
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let status = child.wait().await;
        alive.store(false, std::sync::atomic::Ordering::Release);
        let result = status.map(exit_code).map_err(|e| ZoneError::Runtime {
            op: "exec".to_string(),
            message: format!("waiting for zlogin: {e}"),
        });
        let _ = tx.send(result);
    });
    let exit = async move {
        rx.await.unwrap_or_else(|_| {
            Err(ZoneError::Runtime {
                op: "exec".to_string(),
                message: "zlogin's reaper went away".to_string(),
            })
        })
    };
    tracing::debug!(zone = id, args = ?spec.args, tty = spec.tty, "exec started through zlogin");
    Ok(ExecProcess {
        pid: None,
        session: Session { input, output },
        exit: Box::pin(exit),
        resize,
    })
}

/// zlogin could not be started for `op`.
fn spawn_error(op: &str, d: &SmartosDriver, e: std::io::Error) -> ZoneError {
    ZoneError::Runtime {
        op: op.to_string(),
        message: format!(
            "cannot run {}: {e}",
            d.config.commands.argv(Tool::Zlogin).join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::symlink;

    const ID: &str = "0f5cba1c-5c9f-4d8e-9c1e-3a3b2a1c0d0e";

    /// A zone root with busybox-like tools and a passwd file.
    fn zone_root(extra: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("bin/busybox"), "").unwrap();
        for tool in ["sh", "env"].iter().chain(extra) {
            symlink("busybox", root.join("bin").join(tool)).unwrap();
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nbob:x:1000:\n").unwrap();
        dir
    }

    fn exec(args: &[&str]) -> ExecSpec {
        ExecSpec {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..ExecSpec::default()
        }
    }

    fn zone() -> ZoneProcess {
        ZoneProcess {
            env: vec!["PATH=/bin".to_string(), "A=1".to_string()],
            workdir: "/srv".to_string(),
            user: String::new(),
        }
    }

    #[test]
    fn an_exec_runs_the_zones_environment_and_directory_through_the_images_shell_and_env() {
        let root = zone_root(&[]);
        let mut spec = exec(&["echo", "it's", "$HOME"]);
        spec.env = vec!["A=2".to_string()];
        let command = exec_command(ID, root.path(), &zone(), &spec).unwrap();
        assert_eq!(
            command.args,
            [
                "-Q",
                ID,
                "/bin/sh",
                "-c",
                LAUNCHER,
                "sh",
                "/srv",
                "/bin/env",
                "-i",
                "PATH=/bin",
                "A=2",
                "HOME=/root",
                "echo",
                "it's",
                "$HOME",
            ]
        );
    }

    #[test]
    fn the_platforms_shell_and_env_are_preferred_to_the_images() {
        let root = zone_root(&[]);
        let native = root.path().join("native/usr/bin");
        std::fs::create_dir_all(&native).unwrap();
        std::fs::write(native.join("sh"), "").unwrap();
        std::fs::write(native.join("env"), "").unwrap();
        let mut spec = exec(&["ls"]);
        spec.workdir = "/tmp".to_string();
        spec.tty = true;
        let args = exec_command(ID, root.path(), &ZoneProcess::default(), &spec)
            .unwrap()
            .args;
        assert_eq!(&args[..5], ["-Q", "-E", "-i", ID, "/native/usr/bin/sh"]);
        assert_eq!(args[8], "/tmp");
        assert_eq!(args[9], "/native/usr/bin/env");
        assert!(args.contains(&"TERM=xterm".to_string()));
        assert!(args.contains(&DEFAULT_PATH.to_string()));
    }

    #[test]
    fn with_su_in_the_zone_the_launcher_is_one_quoted_command_line() {
        let root = zone_root(&["su"]);
        let spec = exec(&["echo", "it's", "a b"]);
        let args = exec_command(ID, root.path(), &zone(), &spec).unwrap().args;
        assert_eq!(args.len(), 3);
        let line = &args[2];
        assert!(line.starts_with("'/bin/sh' '-c' 'cd -- \"$1\" || exit 126; shift; exec \"$@\"' "));
        assert!(line.ends_with(r"'echo' 'it'\''s' 'a b'"));
        // A POSIX shell gives the words back.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", shell_line(&spec.args)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "echo\nit's\na b\n");
    }

    #[test]
    fn another_user_is_a_zlogin_login_and_needs_su() {
        let with_su = zone_root(&["su"]);
        let mut spec = exec(&["id"]);
        spec.user = "1000".to_string();
        let args = exec_command(ID, with_su.path(), &zone(), &spec)
            .unwrap()
            .args;
        assert_eq!(&args[..4], ["-Q", "-l", "bob", ID]);
        assert!(args[4].contains("'HOME=/home/bob'"));

        let without = zone_root(&[]);
        let error = exec_command(ID, without.path(), &zone(), &spec).unwrap_err();
        assert!(matches!(error, ZoneError::BadRequest(m) if m.contains("su")));
        spec.user = "bob:0".to_string();
        let error = exec_command(ID, with_su.path(), &zone(), &spec).unwrap_err();
        assert!(matches!(error, ZoneError::BadRequest(m) if m.contains("group")));
        spec.user = "nobody".to_string();
        let error = exec_command(ID, with_su.path(), &zone(), &spec).unwrap_err();
        assert!(
            matches!(error, ZoneError::BadRequest(m) if m.contains("unable to find user nobody"))
        );
    }

    #[test]
    fn with_a_tty_the_argv_goes_as_it_is_and_only_as_root() {
        let root = zone_root(&["su"]);
        let mut spec = exec(&["sh"]);
        spec.tty = true;
        let args = exec_command(ID, root.path(), &zone(), &spec).unwrap().args;
        assert_eq!(&args[..5], ["-Q", "-E", "-i", ID, "/bin/sh"]);
        assert_eq!(args.last().map(String::as_str), Some("sh"));
        spec.user = "bob".to_string();
        let error = exec_command(ID, root.path(), &zone(), &spec).unwrap_err();
        assert!(matches!(error, ZoneError::BadRequest(m) if m.contains("tty")));
    }

    #[test]
    fn a_zone_without_shell_or_env_cannot_be_execd_into() {
        let dir = tempfile::tempdir().unwrap();
        let error = exec_command(ID, dir.path(), &zone(), &exec(&["ls"])).unwrap_err();
        assert!(matches!(error, ZoneError::BadRequest(m) if m.contains("no shell")));
    }

    #[test]
    fn the_zones_process_is_read_from_its_internal_metadata() {
        let vm = json!({ "internal_metadata": {
            "docker:env": "[\"PATH=/bin\",\"A=1\"]",
            "docker:workdir": "/srv",
            "docker:user": "bob",
        }});
        assert_eq!(
            ZoneProcess::of(&vm),
            ZoneProcess {
                env: vec!["PATH=/bin".to_string(), "A=1".to_string()],
                workdir: "/srv".to_string(),
                user: "bob".to_string(),
            }
        );
        let array = json!({ "internal_metadata": { "docker:env": ["B=2"] } });
        assert_eq!(ZoneProcess::of(&array).env, ["B=2"]);
        assert_eq!(ZoneProcess::of(&json!({})), ZoneProcess::default());
    }

    #[test]
    fn attach_hangs_up_the_inits_stdin_only_for_stdin_once() {
        let once = AttachOptions {
            stdin: true,
            stdin_once: true,
            stdout: true,
            stderr: true,
        };
        assert_eq!(attach_args(ID, once), ["-Q", "-I", ID]);
        let shared = AttachOptions {
            stdin_once: false,
            ..once
        };
        assert_eq!(attach_args(ID, shared), ["-Q", "-I", "-N", ID]);
        assert_eq!(
            attach_args(ID, AttachOptions::default()),
            ["-Q", "-I", "-N", ID]
        );
    }

    #[test]
    fn stats_carry_the_memory_limit_vmadm_knows_and_no_usage() {
        let now = OffsetDateTime::now_utc();
        let stats = stats_of(&json!({ "max_physical_memory": 256 }), now);
        assert_eq!(stats.memory_limit, 256 * 1024 * 1024);
        assert_eq!((stats.memory_usage, stats.cpu_total_ns), (0, 0));
        assert_eq!(stats.read, now);
        assert_eq!(stats_of(&json!({}), now).memory_limit, 0);
    }
}
