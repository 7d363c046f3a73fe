//! The command line of `sdc-docker`: `serve` runs the server; `get`,
//! `apply`, `edit` and `delete` are the operators' commands, talking to a
//! running server's admin API the way kubectl talks to its API server.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use sdc_docker_store::Kind;

use crate::address::{Address, DEFAULT_ADMIN_HOST, DEFAULT_HOST};

/// A Docker Engine for a data center.
#[derive(Debug, Parser)]
#[command(name = "sdc-docker", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the Docker API on -H, the admin API on --admin-host,
    /// every controller, and this machine as a node.
    Serve(ServeArgs),
    /// Run only this machine as a compute node (its Node object and the
    /// node-scoped controllers), against the store the servers use.
    Agent(AgentArgs),
    /// Show objects: a table, or YAML/JSON with -o.
    Get(GetArgs),
    /// Create or update the objects of a YAML or JSON file.
    Apply(ApplyArgs),
    /// Edit an object in $EDITOR and store it back (refused if it changed meanwhile).
    Edit(EditArgs),
    /// Delete an object.
    Delete(DeleteArgs),
}

/// How the server logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// `sdc-docker serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The store: `embedded`, or `etcd://host:port[,host:port…]`.
    #[arg(long, default_value = "embedded", env = "SDC_DOCKER_STORE")]
    pub store: String,
    /// Where the embedded store (and other local state) lives; created if missing.
    #[arg(long, default_value = "/var/lib/sdc-docker")]
    pub data_dir: PathBuf,
    /// Where the Docker API listens (repeatable): unix:///path or tcp://addr:port.
    #[arg(short = 'H', long = "host", action = ArgAction::Append, default_value = DEFAULT_HOST)]
    pub hosts: Vec<Address>,
    /// Where the operators' admin API listens.
    #[arg(long, default_value = DEFAULT_ADMIN_HOST)]
    pub admin_host: Address,
    /// Log format (the level comes from RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How long a cluster-scoped controller's leadership lease lives without
    /// renewal (renewed every third of it): after this long without reaching
    /// the store an instance stops leading, and another takes over.
    #[arg(long, default_value = "10s", value_parser = parse_lease_ttl)]
    pub lease_ttl: std::time::Duration,
    /// How often a leader renews its lease (default: a third of
    /// --lease-ttl; at most half of it).
    #[arg(long, value_parser = parse_duration)]
    pub lease_renew: Option<std::time::Duration>,
    /// This instance's name in leader elections and logs (default: the
    /// hostname and process id).
    #[arg(long)]
    pub instance_id: Option<String>,
    /// How this machine runs zones.
    #[command(flatten)]
    pub node: crate::node::NodeArgs,
}

/// `sdc-docker agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The store: `embedded`, or `etcd://host:port[,host:port…]`.
    #[arg(long, default_value = "embedded", env = "SDC_DOCKER_STORE")]
    pub store: String,
    /// Where zones, images and local state live; created if missing.
    #[arg(long, default_value = "/var/lib/sdc-docker")]
    pub data_dir: PathBuf,
    /// Log format (the level comes from RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How this machine runs zones.
    #[command(flatten)]
    pub node: crate::node::NodeArgs,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_lease_ttl(s: &str) -> Result<std::time::Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if ttl < std::time::Duration::from_secs(1) {
        return Err(format!(
            "{s:?}: at least 1s (etcd counts leases in whole seconds)"
        ));
    }
    Ok(ttl)
}

/// Where the admin API is, and which account to work in.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The admin API of a running server.
    #[arg(long, env = "SDC_DOCKER_ADMIN_HOST", default_value = DEFAULT_ADMIN_HOST)]
    pub admin_host: Address,
    /// The account (tenant) the objects belong to.
    #[arg(long, default_value = "default")]
    pub account: String,
}

/// How `get` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The objects as YAML documents.
    Yaml,
    /// The object (or an array of them) as JSON.
    Json,
}

/// `sdc-docker get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind: container(s), image(s), network(s), volume(s), node(s), package(s).
    #[arg(value_parser = parse_kind)]
    pub kind: Kind,
    /// One object; all of the kind when left out.
    pub name: Option<String>,
    /// Print YAML or JSON instead of a table.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    /// The admin API and account.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `sdc-docker apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The file to apply; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// The admin API and account.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `sdc-docker edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The kind.
    #[arg(value_parser = parse_kind)]
    pub kind: Kind,
    /// The object.
    pub name: String,
    /// The admin API and account.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `sdc-docker delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The kind.
    #[arg(value_parser = parse_kind)]
    pub kind: Kind,
    /// The object.
    pub name: String,
    /// The admin API and account.
    #[command(flatten)]
    pub admin: AdminArgs,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
        format!("unknown kind {s:?}; known kinds: {}", known.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_several_hosts_and_defaults_to_the_unix_sockets() {
        let cli = Cli::try_parse_from(["sdc-docker", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            args.hosts,
            vec![DEFAULT_HOST.parse::<Address>().expect("default")]
        );
        assert_eq!(args.store, "embedded");

        let cli = Cli::try_parse_from([
            "sdc-docker",
            "serve",
            "-H",
            "tcp://127.0.0.1:2375",
            "--host",
            "unix:///tmp/d.sock",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.hosts.len(), 2);
    }

    #[test]
    fn kinds_are_accepted_in_any_spelling() {
        for spelling in ["container", "containers", "Container"] {
            let cli = Cli::try_parse_from(["sdc-docker", "get", spelling]).expect("parses");
            let Command::Get(args) = cli.command else {
                panic!("not get")
            };
            assert_eq!(args.kind, Kind::Container);
        }
        assert!(Cli::try_parse_from(["sdc-docker", "get", "pods"]).is_err());
    }
}
