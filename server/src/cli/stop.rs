//! `firefly stop`: stop the running cluster gracefully.

use super::admin::{self, AdminArgs};

/// Asks the master to stop (`POST /stop`); returns once it has accepted.
pub async fn stop(args: AdminArgs) -> anyhow::Result<()> {
    admin::call(&args.config, "POST", "/stop").await?;
    println!("stopping");
    Ok(())
}
