//! `sdc-docker get KIND [NAME] [-o yaml|json]`: a table by default; with
//! `-o`, the objects as stored (YAML documents that `apply -f` takes back,
//! or JSON). Values that do not decode are shown with their error.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;
use time::OffsetDateTime;

use super::{object_ref, table};
use crate::cli::{GetArgs, OutputFormat};
use crate::client::AdminClient;

/// Run `get`.
pub async fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(args.admin.admin_host.clone());
    let account = &args.admin.account;
    let kind = args.kind;
    if let (Some(name), Some(format)) = (&args.name, args.output) {
        let object = client.get(kind, account, name).await?;
        print!("{}", render(&[object], format, true)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list = client.list(kind, account).await?;
    let only = args.name.as_deref();
    if let Some(name) = only
        && !list
            .items
            .iter()
            .any(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        && !list.invalid.iter().any(|b| b.name == name)
    {
        anyhow::bail!("{} not found", describe(kind, account, name));
    }
    match args.output {
        Some(format) => {
            print!("{}", render(&list.items, format, false)?);
            for bad in &list.invalid {
                eprintln!(
                    "warning: {} does not decode: {}",
                    object_ref(kind, &bad.name),
                    bad.error
                );
            }
        }
        None => {
            if list.items.is_empty() && list.invalid.is_empty() {
                eprintln!("No {} found in account {account}.", kind.plural());
                return Ok(ExitCode::SUCCESS);
            }
            let (table, errors) = table::render(kind, &list, only, OffsetDateTime::now_utc());
            print!("{table}");
            if !errors.is_empty() {
                println!();
                for error in errors {
                    println!("{error}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `container "web"` (with the account when not the default), for messages.
fn describe(kind: sdc_docker_store::Kind, account: &str, name: &str) -> String {
    sdc_docker_api::admin::objects::describe(kind, account, name)
}

/// Objects as YAML documents, or as JSON (one object, or an array).
fn render(objects: &[Value], format: OutputFormat, single: bool) -> anyhow::Result<String> {
    match format {
        OutputFormat::Json => {
            let text = if single && objects.len() == 1 {
                serde_json::to_string_pretty(&objects[0])
            } else {
                serde_json::to_string_pretty(objects)
            };
            Ok(text.context("encoding JSON")? + "\n")
        }
        OutputFormat::Yaml => {
            let mut out = String::new();
            for (i, object) in objects.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_saphyr::to_string(object).context("encoding YAML")?);
            }
            Ok(out)
        }
    }
}
