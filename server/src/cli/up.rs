//! `firefly up`, `firefly node`, `firefly build`, `firefly status`, `firefly stop`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use firefly::builder;
use firefly::client::admin;
use firefly::config::{ModuleSource, Topology};
use firefly::master::{self, Master, MasterConfig};
use firefly::{Node, NodeConfig};

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
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node to run.
    name: String,
    /// The topology file.
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    config: PathBuf,
    /// A module's wasm file (`name=path`); modules not given are built or located as `up` does.
    #[arg(long = "wasm", value_parser = parse_wasm)]
    wasm: Vec<(String, PathBuf)>,
    /// A module's version number (`name=N`, from the master's registry; default 1).
    #[arg(long = "module-version", value_parser = parse_module_version)]
    module_version: Vec<(String, u32)>,
    /// What to serve of a module if its given version does not load (`name=N:path`): the
    /// master passes the version the node served last, so a bad deploy never stops a node.
    #[arg(long = "fallback", value_parser = parse_fallback)]
    fallback: Vec<(String, (u32, PathBuf))>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The topology file whose modules to build when no crate directory is given.
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    config: PathBuf,
    /// Module crate directories to build.
    crates: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The topology file (for the admin address and token file).
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    config: PathBuf,
    /// Print the raw JSON instead of a table (status only).
    #[arg(long)]
    json: bool,
}

fn parse_wasm(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=path/to/module.wasm"))?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

fn parse_module_version(text: &str) -> Result<(String, u32), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=N"))?;
    let n = n
        .parse()
        .map_err(|_| format!("`{text}`: the version must be a number"))?;
    Ok((name.to_owned(), n))
}

fn parse_fallback(text: &str) -> Result<(String, (u32, PathBuf)), String> {
    let bad = || format!("`{text}`: expected name=N:path/to/module.wasm");
    let (name, rest) = text.split_once('=').ok_or_else(bad)?;
    let (n, path) = rest.split_once(':').ok_or_else(bad)?;
    let n = n.parse().map_err(|_| bad())?;
    Ok((name.to_owned(), (n, PathBuf::from(path))))
}

/// Builds (or locates) the `.wasm` of every module in `wanted`.
pub(super) fn module_files(
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

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let topology = Topology::load(&args.config)?;
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
    let wanted = modules_of(&topology, &names);
    let wasm = {
        let topology = topology.clone();
        tokio::task::spawn_blocking(move || module_files(&topology, &wanted)).await??
    };
    let secret = master::cluster_secret(&topology)?;
    let admin_token = if topology.master.admin.is_some() && !args.no_admin {
        Some(master::admin_token(&topology, true)?)
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

pub async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let topology = Topology::load(&args.config)?;
    let spec = topology.node(&args.name)?;
    let given: HashMap<String, PathBuf> = args.wasm.into_iter().collect();
    let missing: Vec<String> = spec
        .modules
        .iter()
        .filter(|m| !given.contains_key(*m))
        .cloned()
        .collect();
    let mut files = {
        let topology = topology.clone();
        tokio::task::spawn_blocking(move || module_files(&topology, &missing)).await??
    };
    files.extend(given);
    let secret = std::env::var(firefly::cluster::auth::SECRET_ENV)
        .ok()
        .map(String::into_bytes);
    let versions: HashMap<String, u32> = args.module_version.into_iter().collect();
    let mut config = NodeConfig::from_topology(
        &topology,
        &args.name,
        |m| {
            files
                .get(m)
                .cloned()
                .with_context(|| format!("module `{m}` was not built"))
        },
        secret,
    )?;
    for m in &mut config.modules {
        if let Some(v) = versions.get(&m.name) {
            m.version = *v;
        }
    }
    let fallback: HashMap<String, (u32, PathBuf)> = args.fallback.into_iter().collect();
    let node = match Node::start(config.clone()).await {
        Ok(node) => node,
        Err(err) if !fallback.is_empty() => {
            tracing::error!(
                node = %args.name,
                "cannot start on the registry's versions ({err:#}); starting on the previous ones"
            );
            for m in &mut config.modules {
                if let Some((v, path)) = fallback.get(&m.name) {
                    m.version = *v;
                    m.wasm = path.clone();
                }
            }
            Node::start(config).await?
        }
        Err(err) => return Err(err),
    };
    wait_for_signal().await;
    tracing::info!(node = %args.name, "stopping: finishing in-flight requests");
    node.shutdown(Duration::from_secs(10)).await;
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

pub(super) async fn admin_call(
    config: &std::path::Path,
    method: &str,
    path: &str,
) -> anyhow::Result<String> {
    let topology = Topology::load(config)?;
    let Some(addr) = topology.master.admin else {
        bail!("{} has no `master.admin` address", config.display());
    };
    let token = master::admin_token(&topology, false)?;
    let (code, body) = admin::http_request(addr, method, path, &token)
        .await
        .with_context(|| format!("is the cluster running? (admin API {addr})"))?;
    match code {
        200..=299 => Ok(body),
        401 => bail!("the admin API refused the token (401)"),
        other => bail!("the admin API answered {other}: {body}"),
    }
}

pub async fn status(args: AdminArgs) -> anyhow::Result<()> {
    let body = admin_call(&args.config, "GET", "/status").await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let status: serde_json::Value = serde_json::from_str(&body)?;
    println!("cluster {}", status["cluster"].as_str().unwrap_or("?"));
    println!(
        "{:<14} {:<8} {:>8} {:>8} {:>7} {:>6} {:>10} {:>7}  MODULES",
        "NODE", "STATE", "PID", "UPTIME", "RESTART", "CONNS", "REQUESTS", "ERRORS"
    );
    for n in status["nodes"].as_array().into_iter().flatten() {
        let live = &n["live"];
        let state = if n["healthy"].as_bool() == Some(true) {
            "healthy"
        } else if n["pid"].is_null() {
            "down"
        } else {
            "starting"
        };
        let modules: Vec<String> = live["modules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let name = m["name"].as_str().unwrap_or("?");
                match n["deploy_failures"].get(name) {
                    Some(f) => format!(
                        "{name}@v{} (v{} failed to load)",
                        m["version"], f["version"]
                    ),
                    None => format!("{name}@v{}", m["version"]),
                }
            })
            .collect();
        let num = |v: &serde_json::Value| {
            v.as_u64()
                .map(|x| x.to_string())
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<14} {:<8} {:>8} {:>8} {:>7} {:>6} {:>10} {:>7}  {}",
            n["name"].as_str().unwrap_or("?"),
            state,
            num(&n["pid"]),
            n["uptime_secs"]
                .as_u64()
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "-".into()),
            num(&n["restarts"]),
            num(&live["connections"]),
            num(&live["requests"]),
            num(&live["errors"]),
            modules.join(" "),
        );
    }
    for n in status["nodes"].as_array().into_iter().flatten() {
        for (module, f) in n["deploy_failures"].as_object().into_iter().flatten() {
            println!(
                "{}: {module} v{} failed to load: {}",
                n["name"].as_str().unwrap_or("?"),
                f["version"],
                f["error"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

pub async fn stop(args: AdminArgs) -> anyhow::Result<()> {
    admin_call(&args.config, "POST", "/stop").await?;
    println!("stopping");
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
