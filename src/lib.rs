//! sdc-docker: a Docker Engine for a data center of compute nodes, in one
//! binary.
//!
//! `sdc-docker serve` ([`serve`]) runs the Docker API and the operators'
//! admin API (both from the `sdc-docker-api` crate) over the spec store,
//! with the [`validation`] loop and every controller beside them, and this
//! machine as a compute [`node`]. `sdc-docker agent` runs the node alone. `sdc-docker get/apply/edit/
//! delete` ([`commands`]) are the operators' commands, talking to a running
//! server through the admin [`client`].

pub mod address;
pub mod cli;
pub mod client;
pub mod commands;
pub mod logging;
pub mod node;
pub mod serve;
pub mod validation;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Run one command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            logging::init(args.log_format);
            serve::run(args, serve::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(args) => {
            logging::init(args.log_format);
            node::run_agent(args, serve::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(args) => commands::get::run(args).await,
        Command::Apply(args) => commands::apply::run(args).await,
        Command::Edit(args) => commands::edit::run(args).await,
        Command::Delete(args) => commands::delete::run(args).await,
    }
}
