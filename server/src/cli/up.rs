//! `firefly up`: run a topology's nodes as supervised processes, with the admin API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use firefly::cluster::auth::SECRET_ENV;
use firefly::config::Topology;
use firefly::master::{self, Master, MasterConfig};

use super::build::module_files;
use super::signal::wait_for_signal;

/// Arguments of `firefly up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The topology file.
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    config: PathBuf,
    /// Run only these nodes (comma-separated); default: every node of the file.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run only the nodes whose `host` is this (e.g. 127.0.0.2): one `firefly up` per machine.
    #[arg(long)]
    host: Option<String>,
    /// Do not serve the admin API from this invocation (another machine's master does).
    #[arg(long)]
    no_admin: bool,
    /// Write this file (listing the nodes) once every node started here runs, has loaded its
    /// modules and is linked to the nodes it needs; it is removed while one is not.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// Builds the modules of the chosen nodes, starts the master, and runs until a signal or
/// `firefly stop`; then stops every node gracefully.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let topology = super::load_topology(&args.config)?;
    // Before anything is built or created there: the state directory must be this cluster's.
    topology.claim_state_dir()?;
    let names = chosen_nodes(&topology, &args)?;
    let wanted = modules_of(&topology, &names);
    let wasm = {
        let topology = topology.clone();
        tokio::task::spawn_blocking(move || module_files(&topology, &wanted)).await??
    };
    let secret = master::cluster_secret(&topology, super::env_var(SECRET_ENV))?;
    let admin_token = if topology.master.admin.is_some() && !args.no_admin {
        Some(master::admin_token(
            &topology,
            super::env_var(master::ADMIN_TOKEN_ENV),
            true,
        )?)
    } else {
        None
    };
    let config = MasterConfig {
        topology_path: args.config.canonicalize().unwrap_or(args.config.clone()),
        topology: topology.clone(),
        nodes: names.clone(),
        wasm,
        exe: std::env::current_exe().context("cannot find the firefly executable")?,
        secret,
        admin_token,
        grace: Duration::from_secs(10),
        ready_file: args.ready_file.clone(),
    };
    let master = Master::start(config).await?;
    tracing::info!(cluster = %topology.cluster, nodes = ?names, "up; Ctrl-C, SIGTERM or `firefly stop` stops it");
    tokio::select! {
        () = wait_for_signal() => {}
        () = master.stopped() => {}
    }
    tracing::info!("stopping: nodes finish their in-flight requests");
    master.shutdown().await;
    Ok(())
}

/// The nodes to run: `--only`'s (which must exist) or all, narrowed to `--host`'s.
fn chosen_nodes(topology: &Topology, args: &UpArgs) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = if args.only.is_empty() {
        topology.nodes.keys().cloned().collect()
    } else {
        for name in &args.only {
            topology.node(name)?;
        }
        args.only.clone()
    };
    if let Some(host) = &args.host {
        names.retain(|n| topology.nodes.get(n).is_some_and(|spec| &spec.host == host));
        if names.is_empty() {
            bail!("no node of the topology runs on host `{host}`");
        }
    }
    Ok(names)
}

/// Every module hosted by one of `nodes`, sorted, once each.
fn modules_of(topology: &Topology, nodes: &[String]) -> Vec<String> {
    let mut wanted: Vec<String> = nodes
        .iter()
        .filter_map(|n| topology.nodes.get(n))
        .flat_map(|n| n.modules.iter().cloned())
        .collect();
    wanted.sort();
    wanted.dedup();
    wanted
}
