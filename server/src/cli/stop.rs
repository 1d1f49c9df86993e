//! `firefly stop`: stop the running cluster gracefully; `firefly drain <node>`: stop one node
//! after it handed its rooms to other nodes.

use super::admin::{self, AdminArgs};

/// Asks the master to stop (`POST /stop`); returns once it has accepted.
pub async fn stop(args: AdminArgs) -> anyhow::Result<()> {
    admin::call(&args.config, "POST", "/stop").await?;
    println!("stopping");
    Ok(())
}

/// `firefly drain <node>`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The node to drain (as named in topology.yaml).
    pub node: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Asks the master to drain `node` (`POST /nodes/<node>/drain`): the node hands every room to
/// other nodes at a tick boundary with a final snapshot, then stops and stays down.
pub async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let path = format!("/nodes/{}/drain", args.node);
    let answer = admin::call(&args.admin.config, "POST", &path).await?;
    println!("{answer}");
    Ok(())
}
