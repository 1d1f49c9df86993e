//! Pre-initialising a TypeScript module: the JavaScript engine runs the module's bundle once,
//! at build time, and Wizer (`wasmtime-wizer`) writes the instance's memory and globals back
//! into a new wasm module. Instances of the result start with the script already evaluated.
//!
//! The engine reads its script from WASI stdin inside its `wizer-initialize` export (stdin is
//! empty in a deployed module: the host gives modules no input stream). Its stderr is kept, so
//! a script that throws at load fails the build with the engine's message (file and line).
//! Firefly's own imports are traps here: a script may not call the host while it loads.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};
use wasmtime::{Config, Engine, Instance, Linker, Module, OptLevel, Store, Val};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, WasiCtxBuilder};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

/// The engine's pre-initialisation export.
const INIT: &str = "wizer-initialize";

/// Most stderr kept from a failing script.
const MAX_STDERR: usize = 64 * 1024;

/// How long a script may run at load before the build gives up (an endless loop at top level).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `engine_wasm`'s initialisation with `input` on stdin and returns the snapshot.
///
/// Runs on a thread of its own with its own small runtime: callers may be inside a tokio
/// runtime (tests, `firefly up`), which cannot be blocked on from within.
pub fn preinitialize(
    engine_wasm: &[u8],
    input: Vec<u8>,
    cache: Option<PathBuf>,
) -> anyhow::Result<Vec<u8>> {
    let engine_wasm = engine_wasm.to_vec();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start a runtime for the snapshot")?;
                runtime.block_on(run(&engine_wasm, input, cache.as_deref()))
            })
            .join()
            .unwrap_or_else(|_| bail!("the snapshot thread panicked"))
    })
}

async fn run(engine_wasm: &[u8], input: Vec<u8>, cache: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let wizer = Wizer::new();
    let (cx, instrumented) = wizer
        .instrument(engine_wasm)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("the JavaScript engine is not a valid module")?;
    let mut config = Config::new();
    config.epoch_interruption(true);
    // The script runs once: compiling fast matters more than running fast.
    config.cranelift_opt_level(OptLevel::None);
    let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let module = compile(&engine, &instrumented, cache)?;
    let stderr = MemoryOutputPipe::new(MAX_STDERR);
    // Fixed clocks and randomness while the script loads: the same sources then give the same
    // snapshot, byte for byte (QuickJS seeds itself from the clock, Rust's HashMap from
    // randomness), so a rebuild of an unchanged module is the same version.
    let wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(input))
        .stderr(stderr.clone())
        .wall_clock(Frozen)
        .monotonic_clock(Frozen)
        .secure_random(Deterministic::new(vec![0x5a; 64]))
        .insecure_random(Deterministic::new(vec![0xa5; 64]))
        .insecure_random_seed(0)
        .build_p1();
    let mut store = Store::new(&engine, wasi);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx| cx)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    linker
        .define_unknown_imports_as_traps(&module)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // A script that never returns: a thread of its own ends it after LOAD_TIMEOUT (the wasm
    // does not yield, so a task on this runtime would never get to run).
    store.set_epoch_deadline(1);
    {
        let engine = engine.clone();
        std::thread::spawn(move || {
            std::thread::sleep(LOAD_TIMEOUT);
            engine.increment_epoch();
        });
    }
    let instance = linker
        .instantiate_async(&mut store, &module)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let outcome = initialize(&mut store, &instance).await;
    if let Err(trap) = outcome {
        let said = String::from_utf8_lossy(&stderr.contents())
            .trim()
            .to_owned();
        if said.is_empty() {
            bail!("the module failed while loading: {trap:#}");
        }
        bail!("{said}");
    }
    let mut state = Snapshot {
        store: &mut store,
        instance,
    };
    wizer
        .snapshot(&cx, &mut state)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("cannot snapshot the module")
}

/// Compiles the instrumented engine (the same for every module, so its compiled form is kept in
/// `cache`, keyed by its SHA-256 and the engine's compatibility hash).
fn compile(engine: &Engine, wasm: &[u8], cache: Option<&Path>) -> anyhow::Result<Module> {
    let new = || Module::new(engine, wasm).map_err(|e| anyhow::anyhow!("{e:#}"));
    let Some(dir) = cache else {
        return new();
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hex::encode(Sha256::digest(wasm));
    let path = dir.join(format!(
        "engine-{}-{:016x}.cwasm",
        digest.get(..16).unwrap_or(&digest),
        hasher.finish()
    ));
    if path.exists() {
        // SAFETY: the artifact was written by `Module::serialize` of this same wasmtime build
        // and configuration (both are in its name), in the project's own tools folder.
        if let Ok(module) = unsafe { Module::deserialize_file(engine, &path) } {
            return Ok(module);
        }
    }
    let module = new()?;
    if let Ok(bytes) = module.serialize() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let stored = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = stored {
            tracing::warn!("cannot cache the compiled engine in {}: {e}", dir.display());
        }
    }
    Ok(module)
}

/// The reactor's `_initialize` (wasi-libc's constructors), then the engine's [`INIT`].
async fn initialize(store: &mut Store<WasiP1Ctx>, instance: &Instance) -> anyhow::Result<()> {
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
        init.call_async(&mut *store, ())
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    }
    let init = instance
        .get_typed_func::<(), ()>(&mut *store, INIT)
        .map_err(|_| anyhow::anyhow!("the JavaScript engine has no `{INIT}` export"))?;
    init.call_async(&mut *store, ())
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))
}

/// A clock stopped at the Unix epoch (wall) or at 0 (monotonic).
struct Frozen;

impl HostWallClock for Frozen {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Frozen {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// What Wizer reads back from the initialised instance.
struct Snapshot<'a> {
    store: &'a mut Store<WasiP1Ctx>,
    instance: Instance,
}

impl InstanceState for Snapshot<'_> {
    async fn global_get(&mut self, name: &str, _: ValType) -> SnapshotVal {
        let value = self
            .instance
            .get_global(&mut *self.store, name)
            .map(|g| g.get(&mut *self.store));
        match value {
            Some(Val::I32(x)) => SnapshotVal::I32(x),
            Some(Val::I64(x)) => SnapshotVal::I64(x),
            Some(Val::F32(x)) => SnapshotVal::F32(x),
            Some(Val::F64(x)) => SnapshotVal::F64(x),
            Some(Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            // Wizer only asks for the numeric globals it exported itself.
            _ => SnapshotVal::I32(0),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => contents(&[]),
        }
    }
}
