//! `firefly build`: compile module crates to wasm; and building (or locating) the `.wasm` of
//! a topology's modules, which `up` and `node` do before they start.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;

use firefly::builder;
use firefly::config::{ModuleSource, Topology};

/// Arguments of `firefly build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The topology file whose modules to build when no crate directory is given.
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    config: PathBuf,
    /// Module crate directories to build.
    crates: Vec<PathBuf>,
}

/// Builds the crates given, or every module of the topology; prints each `.wasm` path.
pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    if !args.crates.is_empty() {
        for dir in &args.crates {
            let wasm = builder::build_module(dir)?;
            println!("{}", wasm.display());
        }
        return Ok(());
    }
    let topology = super::load_topology(&args.config)?;
    let names: Vec<String> = topology.modules.keys().cloned().collect();
    let files = module_files(&topology, &names)?;
    for name in &names {
        if let Some(path) = files.get(name) {
            println!("{name}: {}", path.display());
        }
    }
    Ok(())
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
