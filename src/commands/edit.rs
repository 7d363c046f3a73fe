//! `sdc-docker edit KIND NAME`: the object as YAML in `$EDITOR` (`vi` when
//! unset), stored back guarded by the `resourceVersion` read, so a change
//! made meanwhile is reported as a conflict and never overwritten. When the
//! edit cannot be stored, the edited file is kept and its path printed, so
//! no work is lost.

use std::process::ExitCode;

use anyhow::{Context, bail};
use http::StatusCode;
use serde_json::Value;

use super::object_ref;
use crate::cli::EditArgs;
use crate::client::AdminClient;

const HEADER: &str = "\
# Edit the object below; save and quit to store it, or quit without saving to cancel.
# Only metadata.labels, metadata.annotations and spec are stored; lines starting with '#' are ignored.
# If the object changes before you save, the edit is refused and this file is kept.
#
";

/// Run `edit`.
pub async fn run(args: EditArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(args.admin.admin_host.clone());
    let account = &args.admin.account;
    let what = object_ref(args.kind, &args.name);
    let object = client.get(args.kind, account, &args.name).await?;
    let read = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_i64)
        .context("the admin API sent an object without metadata.resourceVersion")?;
    let original = format!(
        "{HEADER}{}",
        serde_saphyr::to_string(&object).context("encoding the object as YAML")?
    );

    let file = tempfile::Builder::new()
        .prefix(&format!(
            "sdc-docker-edit-{}-{}-",
            args.kind.plural(),
            sanitize(&args.name)
        ))
        .suffix(".yaml")
        .tempfile()
        .context("creating a temporary file to edit")?;
    std::fs::write(file.path(), &original)
        .with_context(|| format!("writing {}", file.path().display()))?;

    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    // Through the shell, so EDITOR may carry arguments (`code --wait`).
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sdc-docker-edit")
        .arg(file.path())
        .status()
        .await
        .with_context(|| format!("running the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}); nothing was changed");
    }
    let edited = std::fs::read_to_string(file.path())
        .with_context(|| format!("reading back {}", file.path().display()))?;
    if edited == original {
        println!("Edit cancelled, no changes made.");
        return Ok(ExitCode::SUCCESS);
    }
    let changed: Value = match serde_saphyr::from_str(&edited) {
        Ok(value) => value,
        Err(e) => {
            let (_, path) = file.keep().context("keeping the edited file")?;
            bail!(
                "the edited file is not valid YAML: {}\nnothing was changed; your edit is kept in {}",
                e.without_snippet(),
                path.display()
            );
        }
    };
    let before: Value = serde_saphyr::from_str(&original).unwrap_or(Value::Null);
    if changed == before {
        println!("Edit cancelled, no changes made.");
        return Ok(ExitCode::SUCCESS);
    }
    // The file goes as it is, so errors point at its lines; the guard is
    // what we read, whatever the file now says.
    match client
        .replace_text(args.kind, account, &args.name, &edited, read)
        .await
    {
        Ok(stored) => {
            let now = stored
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_i64);
            if now == Some(read) {
                println!(
                    "{what} unchanged (only metadata.labels, metadata.annotations and spec are stored)"
                );
            } else {
                println!("{what} edited");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let (_, path) = file.keep().context("keeping the edited file")?;
            if e.status() == Some(StatusCode::CONFLICT) {
                bail!(
                    "{e}\nyour edit was not stored; it is kept in {} (run `sdc-docker edit {} {}` again and redo it there)",
                    path.display(),
                    args.kind.plural(),
                    args.name
                );
            }
            bail!(
                "{e}\nyour edit was not stored; it is kept in {}",
                path.display()
            );
        }
    }
}

/// A name made safe for a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
