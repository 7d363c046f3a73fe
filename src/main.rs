//! The `sdc-docker` binary: parse the command line, run it (see the
//! library), print an error and exit non-zero when it fails.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = sdc_docker::cli::Cli::parse();
    match sdc_docker::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
