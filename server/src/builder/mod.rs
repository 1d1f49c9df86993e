//! Building modules to wasm (`firefly build`, and `firefly up` for modules not built yet): Rust
//! crates through cargo, TypeScript modules through [`typescript`] (bundle, type-check, then a
//! snapshot of the JavaScript engine with the bundle loaded, [`snapshot`]).

pub mod snapshot;
mod sourcemap;
pub mod typescript;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The target modules are compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

fn cargo() -> String {
    // Inside `cargo test`/`cargo run`, CARGO names the cargo that started us: use the same one.
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Takes the machine-wide lock `name` (in the temporary directory) that serialises one kind
/// of install between processes (parallel builds must not run two installs at once); held
/// until the returned file is dropped.
pub(crate) fn install_lock(name: &str) -> anyhow::Result<std::fs::File> {
    let lock_path = std::env::temp_dir().join(name);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        // Made by another user: a read-only handle locks just as well.
        .or_else(|_| std::fs::File::open(&lock_path))
        .with_context(|| format!("cannot open the install lock {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot take the install lock {}", lock_path.display()))?;
    Ok(lock)
}

/// Makes sure the wasm target's standard library is installed, installing it with rustup when
/// it is missing.
///
/// Several processes may need it at once (parallel test binaries, `firefly up` beside
/// `firefly build`), and concurrent `rustup target add` runs trip over each other's downloads,
/// so the check and the install happen under a lock file.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc: is the Rust toolchain installed?")?;
    let target_dir = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib")
        .join(WASM_TARGET);
    // Taken even when the target looks installed: a half-finished install by another process
    // has the directory already.
    let _lock = install_lock("firefly-rustup-target.lock")?;
    if target_dir.exists() {
        return Ok(());
    }
    tracing::info!("installing the {WASM_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("the wasm target is missing and rustup is not available to install it")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed ({status})");
    }
    Ok(())
}

/// Builds the module in `crate_dir` and returns its `.wasm` file: a Rust crate (release profile)
/// or a TypeScript module (a folder with `package.json` or `index.ts` and no `Cargo.toml`).
pub fn build_module(crate_dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.exists() && typescript::is_typescript_module(crate_dir) {
        return typescript::build(crate_dir);
    }
    if !manifest.exists() {
        bail!(
            "{} is not a module (no Cargo.toml, package.json or index.ts)",
            crate_dir.display()
        );
    }
    ensure_wasm_target()?;
    let manifest = manifest.canonicalize()?;
    let output = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!(
            "building module {} failed (see the compiler output above)",
            crate_dir.display()
        );
    }
    let mut wasm = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let same_crate = msg["manifest_path"]
            .as_str()
            .is_some_and(|p| Path::new(p) == manifest);
        if !same_crate {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(f));
                }
            }
        }
    }
    wasm.with_context(|| {
        format!(
            "{} built no .wasm: is it a `cdylib` crate using firefly-sdk?",
            crate_dir.display()
        )
    })
}
