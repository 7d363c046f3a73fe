//! `sdc-docker apply -f FILE`: send the file as it is (the server parses
//! it, so errors name lines of this very file) and print one line per
//! object: `container/web created`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use sdc_docker_store::Kind;

use super::object_ref;
use crate::cli::ApplyArgs;
use crate::client::AdminClient;

/// Run `apply`.
pub async fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let file = if args.file.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buffer)
            .context("reading standard input")?;
        buffer
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?
    };
    let client = AdminClient::new(args.admin.admin_host);
    let report = client.apply(&args.admin.account, file).await?;
    for applied in report.results {
        let name = match Kind::parse(&applied.kind) {
            Some(kind) => object_ref(kind, &applied.name),
            None => format!("{}/{}", applied.kind.to_ascii_lowercase(), applied.name),
        };
        println!("{name} {}", applied.action);
    }
    Ok(ExitCode::SUCCESS)
}
