//! `firefly up` and `firefly build`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use firefly::builder;
use firefly::config::{ModuleSource, Topology};
use firefly::{Node, NodeConfig};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The topology file.
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    config: PathBuf,
    /// Run only these nodes (comma-separated names); default: every node in the file.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The topology file whose modules to build when no crate directory is given.
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    config: PathBuf,
    /// Module crate directories to build.
    crates: Vec<PathBuf>,
}

/// Builds (or locates) the `.wasm` of every module in the topology.
fn module_files(
    topology: &Topology,
    wanted: &[String],
) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut files = HashMap::new();
    for name in wanted {
        let Some(spec) = topology.module(name) else {
            bail!("unknown module `{name}`");
        };
        let path = match &spec.source {
            ModuleSource::Crate(dir) => {
                builder::build_module(dir).with_context(|| format!("module `{name}`"))?
            }
            ModuleSource::Wasm(path) => {
                if !path.exists() {
                    bail!("module `{name}`: {} does not exist", path.display());
                }
                path.clone()
            }
        };
        files.insert(name.clone(), path);
    }
    Ok(files)
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let topology = Topology::load(&args.config)?;
    let names: Vec<String> = if args.only.is_empty() {
        topology.nodes.keys().cloned().collect()
    } else {
        for name in &args.only {
            topology.node(name)?;
        }
        args.only.clone()
    };
    let mut wanted: Vec<String> = names
        .iter()
        .filter_map(|n| topology.nodes.get(n))
        .flat_map(|n| n.modules.iter().cloned())
        .collect();
    wanted.sort();
    wanted.dedup();
    let files = {
        let topology = topology.clone();
        tokio::task::spawn_blocking(move || module_files(&topology, &wanted)).await??
    };
    let mut nodes = Vec::new();
    for name in &names {
        let config = NodeConfig::from_topology(&topology, name, |m| {
            files
                .get(m)
                .cloned()
                .with_context(|| format!("module `{m}` was not built"))
        })?;
        nodes.push(Node::start(config).await?);
    }
    tracing::info!(cluster = %topology.cluster, nodes = names.len(), "up; Ctrl-C to stop");
    wait_for_signal().await;
    tracing::info!("stopping: finishing in-flight requests");
    for node in nodes {
        node.shutdown(Duration::from_secs(10)).await;
    }
    Ok(())
}

pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    if !args.crates.is_empty() {
        for dir in &args.crates {
            let wasm = builder::build_module(dir)?;
            println!("{}", wasm.display());
        }
        return Ok(());
    }
    let topology = Topology::load(&args.config)?;
    let names: Vec<String> = topology.modules.keys().cloned().collect();
    let files = module_files(&topology, &names)?;
    for name in &names {
        if let Some(path) = files.get(name) {
            println!("{name}: {}", path.display());
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
