//! `firefly deploy`, `firefly rollback`, `firefly versions`: hot update through the master's
//! admin API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use firefly::builder;
use firefly::config::{ModuleSource, Topology};
use firefly::hot::registry::utc_string;

use super::admin;

/// How long the master may take to validate a module and have every node swap it in.
const DEPLOY_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// A module crate directory (built first) or a `.wasm` file.
    pub path: PathBuf,
    /// The topology file (for the admin address and token).
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    pub config: PathBuf,
    /// The module to deploy as (default: the topology module built from this crate, else the
    /// file's name).
    #[arg(long)]
    pub module: Option<String>,
    /// Deploy only to these nodes (comma-separated); default: every node hosting the module.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Keep watching the crate's sources; rebuild and deploy on every change.
    #[arg(long)]
    pub watch: bool,
    /// Print the master's JSON answer.
    #[arg(long)]
    pub json: bool,
}

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

/// The module name `path` deploys as.
fn module_name(topology: Option<&Topology>, path: &Path, wasm: &Path) -> anyhow::Result<String> {
    if let (Some(topology), Ok(dir)) = (topology, path.canonicalize()) {
        for (name, spec) in &topology.modules {
            if let ModuleSource::Crate(c) = &spec.source
                && c.canonicalize().is_ok_and(|c| c == dir)
            {
                return Ok(name.clone());
            }
        }
    }
    wasm.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
        .context("cannot tell the module's name: pass --module")
}

/// Builds `path` if it is a crate; returns the wasm file.
pub(super) fn wasm_of(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_dir() {
        builder::build_module(path)
    } else if path.extension().is_some_and(|e| e == "wasm") {
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        Ok(path.to_path_buf())
    } else {
        bail!(
            "{}: expected a module crate directory or a .wasm file",
            path.display()
        )
    }
}

/// Builds (if needed) and deploys once; returns the master's answer.
pub(super) async fn deploy_once(args: &DeployArgs) -> anyhow::Result<serde_json::Value> {
    let path = args.path.clone();
    let wasm = tokio::task::spawn_blocking(move || wasm_of(&path)).await??;
    let topology = Topology::load(&args.config).ok();
    let module = match &args.module {
        Some(m) => m.clone(),
        None => module_name(topology.as_ref(), &args.path, &wasm)?,
    };
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let mut url = format!("/modules/{module}/deploy");
    if !args.nodes.is_empty() {
        url.push_str(&format!("?nodes={}", args.nodes.join(",")));
    }
    admin::call_json(&args.config, "POST", &url, &bytes, DEPLOY_WAIT)
        .await
        .with_context(|| format!("deploying `{module}` ({})", wasm.display()))
}

/// Prints a deploy or rollback answer; fails when a node failed to load the version.
pub(super) fn report(answer: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{answer}");
    } else {
        let sha = answer["sha256"].as_str().unwrap_or("?");
        println!(
            "{} v{} (sha256 {}, {} bytes)",
            answer["module"].as_str().unwrap_or("?"),
            answer["version"],
            sha.get(..12).unwrap_or(sha),
            answer["size"],
        );
    }
    let mut failed = Vec::new();
    for n in answer["nodes"].as_array().into_iter().flatten() {
        let node = n["node"].as_str().unwrap_or("?");
        let line = match n["result"].as_str() {
            Some("ok") => format!("  {node}: ok (was v{})", n["previous"]),
            Some("failed") => {
                failed.push(node.to_owned());
                format!(
                    "  {node}: FAILED, keeps serving v{}: {}",
                    n["serving"],
                    n["error"].as_str().unwrap_or("?")
                )
            }
            _ => format!(
                "  {node}: down ({}); {}",
                n["error"].as_str().unwrap_or("?"),
                n["note"].as_str().unwrap_or("")
            ),
        };
        if !json {
            println!("{line}");
        }
    }
    if !failed.is_empty() {
        bail!("the version did not load on {}", failed.join(", "));
    }
    Ok(())
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    if args.watch {
        return super::watch::watch(args).await;
    }
    let answer = deploy_once(&args).await?;
    report(&answer, args.json)
}

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
