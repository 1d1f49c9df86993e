//! `firefly deploy`: hot update through the master's admin API; and the deploy step and the
//! printing of its answer that `deploy --watch` (`watch.rs`) and `rollback` share.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;

use firefly::builder;
use firefly::config::{ModuleSource, Topology};

use super::admin::{self, DEPLOY_WAIT};

/// Arguments of `firefly deploy`.
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
fn wasm_of(path: &Path) -> anyhow::Result<PathBuf> {
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
    let topology = super::load_topology(&args.config).ok();
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

/// Builds (if needed) and deploys once, printing each node's result (`--watch` is
/// `watch.rs`'s, which the dispatch sends it to).
pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let answer = deploy_once(&args).await?;
    report(&answer, args.json)
}
