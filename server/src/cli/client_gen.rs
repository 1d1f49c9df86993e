//! `firefly client-gen`: a typed client for a module, from its `.wasm` (or its folder, built
//! first as `firefly build` does).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use firefly::builder;
use firefly::clientgen::{self, Lang};

/// Arguments of `firefly client-gen`.
#[derive(Debug, Args)]
pub struct ClientGenArgs {
    /// The language of the client: ts (for @firefly-rs/client), py (firefly_client) or cs
    /// (Firefly.Client).
    #[arg(long, value_enum)]
    lang: Lang,
    /// Write the client to this file instead of stdout.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// The module: a built `.wasm`, or a module crate's folder (built first).
    module: PathBuf,
}

/// Reads the module's description and writes its typed client.
pub fn client_gen(args: ClientGenArgs) -> anyhow::Result<()> {
    let wasm = if args.module.is_dir() {
        builder::build_module(&args.module)?
    } else {
        args.module.clone()
    };
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let schema = clientgen::read_schema(&bytes).with_context(|| format!("{}", wasm.display()))?;
    let code = clientgen::generate(&schema, args.lang);
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(path, code)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "client-gen: {} ({} commands, {} pushes) -> {}",
                schema.module,
                schema.commands.len(),
                schema.pushes.len(),
                path.display()
            );
        }
        None => print!("{code}"),
    }
    Ok(())
}
