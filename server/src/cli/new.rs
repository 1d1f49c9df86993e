//! `firefly new`: scaffold a module crate (the original Firefly's `createproject`), or with
//! `--lang ts` a TypeScript module.

use std::path::{Path, PathBuf};

use super::sdk_path::{find_sdk, relative};

use anyhow::{Context as _, bail};
use clap::Args;

/// Arguments of `firefly new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The module's name: lowercase letters, digits and underscores, starting with a letter.
    name: String,
    /// The directory to create the crate in.
    #[arg(long, default_value = "modules")]
    dir: PathBuf,
    /// The command id of the example handler.
    #[arg(long, default_value_t = 1000)]
    command: u32,
    /// The module's language: `rust` (a crate) or `ts` (TypeScript).
    #[arg(long, default_value = "rust", value_parser = ["rust", "ts", "typescript"])]
    lang: String,
}

/// Writes a new module crate (`Cargo.toml` and `src/lib.rs` with one example handler) under
/// `--dir`, pointing at the project's guest SDK.
pub fn new(args: NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!(
            "`{name}` is not a valid module name: use lowercase letters, digits and `_`, starting with a letter"
        );
    }
    let crate_dir = args.dir.join(name);
    if crate_dir.exists() {
        bail!("{} already exists", crate_dir.display());
    }
    if args.lang != "rust" {
        return super::new_ts::scaffold(name, &crate_dir, args.command);
    }
    let sdk = find_sdk().context("cannot find the Firefly guest SDK: run `firefly new` inside a Firefly project (a directory with guest-sdk/ in it or above it)")?;
    std::fs::create_dir_all(crate_dir.join("src"))?;
    let crate_abs = crate_dir.canonicalize()?;
    let sdk_rel = relative(&crate_abs, &sdk);
    let in_workspace = args.dir.join("Cargo.toml").exists();
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
firefly-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
{workspace}"#,
        sdk = sdk_rel.display(),
        workspace = if in_workspace { "" } else { "\n[workspace]\n" },
    );
    let lib = format!(
        r#"//! The `{name}` module.

#[firefly_sdk::module]
mod {name} {{
    use firefly_sdk::prelude::*;
    use serde::{{Deserialize, Serialize}};

    /// What a client sends.
    #[derive(Deserialize)]
    pub struct Ping {{
        pub text: String,
    }}

    /// What it gets back.
    #[derive(Serialize)]
    pub struct Pong {{
        pub text: String,
        pub session: u64,
        pub server_time_micros: u64,
    }}

    /// Command {command}: answers a ping.
    #[handler({command})]
    fn ping(ctx: &mut Ctx, req: Ping) -> Result<Pong> {{
        info!("ping from session {{}}", ctx.session());
        Ok(Pong {{
            text: req.text,
            session: ctx.session(),
            server_time_micros: ctx.now_micros(),
        }})
    }}
}}
"#,
        command = args.command
    );
    std::fs::write(crate_dir.join("Cargo.toml"), cargo)?;
    std::fs::write(crate_dir.join("src/lib.rs"), lib)?;
    println!("created module `{name}` in {}", crate_dir.display());
    if in_workspace {
        let manifest = args.dir.join("Cargo.toml");
        match add_member(&manifest, name) {
            Ok(true) => println!("added it to the members of {}", manifest.display()),
            _ => println!("add \"{name}\" to the members of {}", manifest.display()),
        }
    }
    println!("build it:  firefly build {}", crate_dir.display());
    println!(
        "host it:   add it under `modules:` and to a node in topology.yaml, then `firefly up`"
    );
    println!(
        "try it:    firefly call 127.0.0.1:11009 {} '{{\"text\":\"hi\"}}'",
        args.command
    );
    Ok(())
}

/// Adds `name` to the `members = [...]` list of a workspace manifest (a one-line list, as
/// `modules/Cargo.toml` has). Returns false when the list is not in that form.
fn add_member(manifest: &Path, name: &str) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(manifest)?;
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let t = line.trim_start();
            if !done
                && t.starts_with("members")
                && t.trim_end().ends_with(']')
                && let Some(close) = line.rfind(']')
            {
                done = true;
                let head = line[..close].trim_end();
                let sep = if head.ends_with('[') { "" } else { ", " };
                return format!("{head}{sep}\"{name}\"]");
            }
            line.to_owned()
        })
        .collect();
    if done {
        std::fs::write(manifest, lines.join("\n") + "\n")?;
    }
    Ok(done)
}
