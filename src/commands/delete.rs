//! `sdc-docker delete KIND NAME`.

use std::process::ExitCode;

use super::object_ref;
use crate::cli::DeleteArgs;
use crate::client::AdminClient;

/// Run `delete`.
pub async fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::new(args.admin.admin_host);
    client
        .delete(args.kind, &args.admin.account, &args.name)
        .await?;
    println!("{} deleted", object_ref(args.kind, &args.name));
    Ok(ExitCode::SUCCESS)
}
