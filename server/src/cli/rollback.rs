//! `firefly rollback`: go back to an earlier version of a module.

use std::path::PathBuf;

use clap::Args;

use super::admin::{self, DEPLOY_WAIT};
use super::deploy::report;

/// Arguments of `firefly rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The module to roll back.
    pub module: String,
    /// The version to go back to (default: the one before the active version).
    #[arg(long)]
    pub to: Option<u32>,
    /// Roll back only these nodes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// The topology file (for the admin address and token).
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    pub config: PathBuf,
    /// Print the master's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// Asks the master to activate an earlier version again; prints each node's result as a
/// deploy does.
pub async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(to) = args.to {
        query.push(format!("to={to}"));
    }
    if !args.nodes.is_empty() {
        query.push(format!("nodes={}", args.nodes.join(",")));
    }
    let mut url = format!("/modules/{}/rollback", args.module);
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    let answer = admin::call_json(&args.config, "POST", &url, &[], DEPLOY_WAIT).await?;
    report(&answer, args.json)
}
