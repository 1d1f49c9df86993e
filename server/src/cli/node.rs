//! `firefly node`: run one node of a topology in this process (what `up` starts for each
//! node).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use firefly::cluster::authority::{self, Credential};
use firefly::{Node, NodeConfig};

use super::build::module_files;
use super::signal::wait_for_stop;

/// Arguments of `firefly node`.
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

/// `name=path`: a module's wasm file.
fn parse_wasm(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=path/to/module.wasm"))?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// `name=N`: a module's version number.
fn parse_module_version(text: &str) -> Result<(String, u32), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=N"))?;
    let n = n
        .parse()
        .map_err(|_| format!("`{text}`: the version must be a number"))?;
    Ok((name.to_owned(), n))
}

/// `name=N:path`: what to serve of a module if its given version does not load.
fn parse_fallback(text: &str) -> Result<(String, (u32, PathBuf)), String> {
    let bad = || format!("`{text}`: expected name=N:path/to/module.wasm");
    let (name, rest) = text.split_once('=').ok_or_else(bad)?;
    let (n, path) = rest.split_once(':').ok_or_else(bad)?;
    let n = n.parse().map_err(|_| bad())?;
    Ok((name.to_owned(), (n, PathBuf::from(path))))
}

/// Runs the node until a signal, on the given versions of its modules (or, when those do not
/// load, on the fallback ones); then finishes in-flight requests and stops.
pub async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let topology = super::load_topology(&args.config)?;
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
    // Started by `firefly up`: the credential the master issued. By hand: the cluster secret.
    let credential = match (
        super::env_var(authority::CREDENTIAL_ENV),
        super::env_var(authority::MASTER_KEY_ENV),
    ) {
        (Some(credential), Some(master)) => Some(Credential::from_hex(
            &topology.cluster,
            &args.name,
            &credential,
            &master,
        )?),
        _ => super::env_var(firefly::cluster::auth::SECRET_ENV)
            .map(|s| Credential::issue(s.as_bytes(), &topology.cluster, &args.name)),
    };
    let versions: HashMap<String, u32> = args.module_version.into_iter().collect();
    let mut config = NodeConfig::from_topology_with(
        &topology,
        &args.name,
        |m| {
            files
                .get(m)
                .cloned()
                .with_context(|| format!("module `{m}` was not built"))
        },
        credential,
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
    node.serve_until_asked(wait_for_stop(), Duration::from_secs(10))
        .await;
    Ok(())
}
