//! Building a TypeScript module: type-check (tsc), bundle (esbuild), then pre-initialise the
//! JavaScript engine with the bundle ([`super::snapshot`]).
//!
//! A TypeScript module is a folder with `index.ts` (or the `main` of its `package.json`) and no
//! `Cargo.toml`. Its imports of `firefly-sdk` resolve to `guest-sdk/typescript` through its
//! `tsconfig.json` paths, its own files and plain-JavaScript npm dependencies (in its own
//! `node_modules`) bundle in. The tools, esbuild and TypeScript, are installed once from the
//! lockfile of `guest-sdk/typescript/tools` (`npm ci`), which is the only step needing Node.
//! The engine, `guest-sdk/typescript/engine.wasm`, is committed: no C toolchain is needed.
//!
//! The result is `<module>/target/<name>.wasm`, the bundle beside it (`<name>.js`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Whether `dir` holds a TypeScript module (and no Rust crate).
pub fn is_typescript_module(dir: &Path) -> bool {
    !dir.join("Cargo.toml").exists()
        && (dir.join("package.json").exists() || dir.join("index.ts").exists())
}

/// `guest-sdk/typescript` of the Firefly tree `dir` sits in (or the one `firefly` was built
/// from).
pub fn sdk_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let start = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    for ancestor in start.ancestors() {
        let candidate = ancestor.join("guest-sdk/typescript");
        if candidate.join("engine.wasm").exists() {
            return Ok(candidate);
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/typescript");
    if built_from.join("engine.wasm").exists() {
        return Ok(built_from);
    }
    bail!(
        "cannot find guest-sdk/typescript/engine.wasm above {}: TypeScript modules are built inside a Firefly project",
        dir.display()
    )
}

/// Builds the TypeScript module in `dir`; returns its `.wasm`.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no module at {}", dir.display()))?;
    let sdk = sdk_dir(&dir)?;
    let name = module_name(&dir)?;
    let entry = entry(&dir)?;
    let tools = ensure_tools(&sdk)?;
    typecheck(&dir, &tools)?;
    let out_dir = dir.join("target");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let bundle = out_dir.join(format!("{name}.js"));
    bundle_with_esbuild(&dir, &entry, &bundle, &tools)?;
    let script = std::fs::read(&bundle)?;
    let mut input = format!("{name}\n").into_bytes();
    input.extend_from_slice(&script);
    let engine_path = sdk.join("engine.wasm");
    let engine = std::fs::read(&engine_path)
        .with_context(|| format!("cannot read {}", engine_path.display()))?;
    let cache = sdk.join("tools/cache");
    let wasm = super::snapshot::preinitialize(&engine, input, Some(cache))
        .map_err(|e| anyhow::anyhow!("{}", locate(&e.to_string(), &dir, &bundle)))
        .with_context(|| format!("module {} refused", dir.display()))?;
    let mut wasm = wasm;
    let description = describe(&bundle, &name)?;
    append_custom_section(
        &mut wasm,
        firefly_abi::SCHEMA_SECTION,
        description.as_bytes(),
    );
    let out = out_dir.join(format!("{name}.wasm"));
    std::fs::write(&out, wasm).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

/// What the module says about its commands and pushes (`handle(id, fn, { request, reply })`,
/// `pushTopic`), as `firefly.schema` holds it: the bundle is loaded once more, under Node, with
/// a stand-in for the host (nothing the module does while loading reaches one), and the SDK's
/// `globalThis.__firefly_schema` is read back.
fn describe(bundle: &Path, name: &str) -> anyhow::Result<String> {
    const SCRIPT: &str = "globalThis.__firefly = new Proxy({}, { get: (_, k) => k === 'then' ? \
        undefined : () => undefined }); require(process.argv[1]); process.stdout.write(\
        JSON.stringify(globalThis.__firefly_schema ?? { commands: [], pushes: [] }));";
    let output = Command::new("node")
        .arg("-e")
        .arg(SCRIPT)
        .arg(bundle)
        .output()
        .context("cannot run node to read the module's description (Node.js is needed to build TypeScript modules)")?;
    if !output.status.success() {
        bail!(
            "reading the description of {} under Node failed: {}",
            bundle.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut described: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the module's description is not JSON")?;
    described["format"] = firefly_abi::SCHEMA_FORMAT.into();
    described["module"] = name.into();
    if let Some(commands) = described["commands"].as_array_mut() {
        commands.sort_by_key(|c| c["id"].as_u64());
    }
    Ok(described.to_string())
}

/// Appends custom section `name` holding `data` to the module `wasm`.
fn append_custom_section(wasm: &mut Vec<u8>, name: &str, data: &[u8]) {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::with_capacity(name.len() + data.len() + 5);
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    wasm.push(0);
    leb(body.len(), wasm);
    wasm.extend_from_slice(&body);
}

/// The module's name: `name` in `package.json`, else the folder's name.
fn module_name(dir: &Path) -> anyhow::Result<String> {
    let package = dir.join("package.json");
    if package.exists() {
        let text = std::fs::read_to_string(&package)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", package.display()))?;
        if let Some(name) = json["name"].as_str() {
            return Ok(name.to_owned());
        }
    }
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the module folder has no name")
}

/// `package.json`'s `main` when it names a `.ts`/`.js` file, else `index.ts`.
fn entry(dir: &Path) -> anyhow::Result<PathBuf> {
    let package = dir.join("package.json");
    if let Ok(text) = std::fs::read_to_string(&package)
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(main) = json["main"].as_str()
    {
        let path = dir.join(main);
        if path.exists() {
            return Ok(path);
        }
    }
    let index = dir.join("index.ts");
    if index.exists() {
        return Ok(index);
    }
    bail!(
        "{} has no index.ts (nor a `main` in package.json)",
        dir.display()
    )
}

/// Where the build tools are.
struct Tools {
    esbuild: PathBuf,
    /// `None` when TypeScript is not installed: the build then skips type checking.
    tsc: Option<PathBuf>,
}

/// Installs esbuild and TypeScript into `guest-sdk/typescript/tools` from its lockfile when
/// they are missing (under a lock: parallel builds must not run two `npm ci` at once).
fn ensure_tools(sdk: &Path) -> anyhow::Result<Tools> {
    let tools = sdk.join("tools");
    let bin = tools.join("node_modules/.bin");
    let _lock = super::install_lock("firefly-ts-tools.lock")?;
    if !bin.join("esbuild").exists() {
        tracing::info!(
            "installing esbuild and typescript (npm ci in {})",
            tools.display()
        );
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&tools)
            .output()
            .context(
                "TypeScript modules need Node.js and npm (to install esbuild): npm was not found",
            )?;
        if !output.status.success() {
            bail!(
                "`npm ci` in {} failed: {}",
                tools.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    let tsc = bin.join("tsc");
    Ok(Tools {
        esbuild: bin.join("esbuild"),
        tsc: tsc.exists().then_some(tsc),
    })
}

/// Type-checks the module with `tsc --noEmit` (its `tsconfig.json`); the errors name file and
/// line (`index.ts(3,7): error TS2322: ...`).
fn typecheck(dir: &Path, tools: &Tools) -> anyhow::Result<()> {
    let Some(tsc) = &tools.tsc else {
        tracing::warn!(
            "TypeScript is not installed: {} is not type-checked",
            dir.display()
        );
        return Ok(());
    };
    let mut command = Command::new(tsc);
    command.arg("--noEmit").arg("--pretty").arg("false");
    if dir.join("tsconfig.json").exists() {
        command.arg("-p").arg(dir);
    } else {
        command.arg(dir.join("index.ts"));
    }
    let output = command
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run {}", tsc.display()))?;
    if !output.status.success() {
        bail!(
            "type errors in {}:\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(())
}

/// Bundles `entry` and everything it imports into one script (an IIFE: the engine evaluates it
/// as a global script).
fn bundle_with_esbuild(dir: &Path, entry: &Path, out: &Path, tools: &Tools) -> anyhow::Result<()> {
    let output = Command::new(&tools.esbuild)
        .arg(entry)
        .args([
            "--bundle",
            "--format=iife",
            "--platform=neutral",
            "--main-fields=module,main",
            "--target=es2020",
            "--log-level=error",
            "--sourcemap=inline",
            "--sources-content=false",
        ])
        .arg(format!("--outfile={}", out.display()))
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run {}", tools.esbuild.display()))?;
    if !output.status.success() {
        bail!(
            "bundling {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Rewrites `module.js:LINE` positions in an engine message into the module's own source files,
/// through the bundle's inline source map.
fn locate(message: &str, dir: &Path, bundle: &Path) -> String {
    let Some(map) = super::sourcemap::SourceMap::from_bundle(bundle) else {
        return message.to_owned();
    };
    super::sourcemap::rewrite(message, &map, dir)
}
