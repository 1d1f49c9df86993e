//! `firefly versions`: a module's deployed versions, as the master's registry lists them.

use std::path::PathBuf;

use clap::Args;

use firefly::hot::registry::utc_string;

use super::admin::{self, DEPLOY_WAIT};

/// Arguments of `firefly versions`.
#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// The module.
    pub module: String,
    /// The topology file (for the admin address and token).
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    pub config: PathBuf,
    /// Print the master's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// Prints the versions of a module: number, time, hash, size, where each is active, and the
/// automatic rollbacks.
pub async fn versions(args: VersionsArgs) -> anyhow::Result<()> {
    let url = format!("/modules/{}/versions", args.module);
    let answer = admin::call_json(&args.config, "GET", &url, &[], DEPLOY_WAIT).await?;
    if args.json {
        println!("{answer}");
        return Ok(());
    }
    println!(
        "module {} (registry {})",
        args.module,
        answer["registry"].as_str().unwrap_or("?")
    );
    println!(
        "{:>7}  {:<19}  {:<12}  {:>9}  ACTIVE",
        "VERSION", "TIME (UTC)", "SHA256", "SIZE"
    );
    for v in answer["versions"].as_array().into_iter().flatten() {
        let sha = v["sha256"].as_str().unwrap_or("?");
        let mut active = if v["active"] == true { "*" } else { "" }.to_owned();
        if let Some(nodes) = v["pinned_on"].as_array().filter(|n| !n.is_empty()) {
            let names: Vec<&str> = nodes.iter().filter_map(|n| n.as_str()).collect();
            active.push_str(&format!(" (on {})", names.join(", ")));
        }
        println!(
            "{:>7}  {:<19}  {:<12}  {:>9}  {active}",
            v["version"],
            utc_string(v["time"].as_u64().unwrap_or(0)),
            sha.get(..12).unwrap_or(sha),
            v["size"],
        );
    }
    for r in answer["rolled_back"].as_array().into_iter().flatten() {
        println!(
            "v{} was rolled back to v{} automatically at {}: {}",
            r["version"],
            r["to"],
            utc_string(r["time"].as_u64().unwrap_or(0)),
            r["reason"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
