//! Loading a module version: compile (or load precompiled code), validate, describe.
//!
//! Validation happens before a version can serve anything: it must compile, import only
//! `firefly_v1` functions this host provides (and WASI preview 1), export the dispatch and
//! describe functions with the right types, instantiate within its limits and describe itself
//! with a supported ABI version. Any failure is a [`LoadError`] naming the problem.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use firefly_abi::{
    ABI_VERSION, EXPORT_DESCRIBE, EXPORT_DISPATCH, EXPORT_DISPATCH_BATCH, IMPORT_MODULE,
    IMPORT_MODULE_PREFIX, Manifest,
};
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicUsize;
use tokio::sync::Notify;
use wasmtime::{Engine, ExternType, Module, ValType};

use super::Runtime;
use super::host::{HostState, ModuleEnv};
use super::instance::Warm;
use crate::config::Limits;
use crate::counter::Counter;

/// Why a module version was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid wasm module.
    #[error("not a valid wasm module: {0}")]
    NotWasm(String),
    /// The module was built for an ABI this host does not speak.
    #[error("unsupported ABI: {0}")]
    Abi(String),
    /// The module imports something this host does not provide.
    #[error("unresolved import: {0}")]
    Import(String),
    /// A required export is missing or has the wrong type.
    #[error("bad export: {0}")]
    Export(String),
    /// The module failed while starting up or describing itself.
    #[error("module failed to initialise: {0}")]
    Init(String),
    /// The engine could not be configured.
    #[error("engine setup failed: {0}")]
    Engine(String),
    /// The module's tables cannot be created or changed as declared.
    #[error("tables refused: {0}")]
    Tables(String),
}

/// Counters of one module version, read by status and metrics.
#[derive(Debug, Default)]
pub struct ModuleStats {
    /// Calls started.
    pub calls: Counter,
    /// Calls that ended in an error reply of any kind.
    pub errors: Counter,
    /// Calls that trapped (panic, stack overflow, memory limit...).
    pub traps: Counter,
    /// Calls that ran out of time or CPU budget.
    pub timeouts: Counter,
    /// Instances created.
    pub instances: Counter,
    /// Guest entries that served a batch of pipelined requests (`__firefly_dispatch_batch`).
    pub batches: Counter,
}

/// One loaded, validated version of a module, with its pool of warm instances.
pub struct ModuleVersion {
    pub(crate) env: Arc<ModuleEnv>,
    /// Content hash of the wasm bytes (SHA-256, hex).
    pub hash: String,
    /// What the module declared about itself.
    pub manifest: Manifest,
    pub(crate) limits: Limits,
    pub(crate) pre: wasmtime::InstancePre<HostState>,
    pub(crate) idle: ArrayQueue<Warm>,
    /// Instances in existence (idle or busy); never above `limits.instances`, the pooling
    /// allocator's slot count. Touched only when an instance is created or discarded.
    pub(crate) live: AtomicUsize,
    /// Tasks waiting for an instance because all are busy; read on every release.
    pub(crate) waiters: AtomicUsize,
    /// Wakes a waiter when an instance is released.
    pub(crate) freed: Notify,
    /// Request and failure counters.
    pub stats: ModuleStats,
    /// Set once a newer version serves new requests: released instances are then dropped
    /// instead of pooled, so a retired version holds no pooling-allocator slots once its
    /// in-flight calls finish. Cleared if a rollback makes it current again.
    pub(crate) retired: std::sync::atomic::AtomicBool,
    /// Requests, errors and latency per command (for `/metrics`).
    pub metrics: crate::metrics::ModuleMetrics,
}

impl std::fmt::Debug for ModuleVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleVersion")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl ModuleVersion {
    /// The module's name.
    pub fn name(&self) -> &str {
        &self.env.name
    }

    /// The version number.
    pub fn version(&self) -> u32 {
        self.env.version
    }

    /// The limits it runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Marks this version as no longer serving new requests (a newer one was swapped in) and
    /// frees its idle instances; calls still running finish normally and their instances are
    /// dropped when released.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Release);
        while self.idle.pop().is_some() {
            self.live.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Makes a retired version eligible to pool instances again (it is current once more).
    pub fn reinstate(&self) {
        self.retired
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Whether this version serves `command` right now: it handles it and has not been retired
    /// by a newer version. One load and a binary search, where the router look-up is two
    /// `ArcSwap` loads; a version that is not retired is its slot's current one (a swap makes
    /// the new version current first, then retires the old one).
    pub fn serves(&self, command: u32) -> bool {
        !self.retired.load(std::sync::atomic::Ordering::Acquire)
            && self.manifest.commands.binary_search(&command).is_ok()
    }

    /// Whether the module exports batched dispatch (`__firefly_dispatch_batch`): pipelined
    /// requests then share one entry into the guest. Modules built by an older SDK do not.
    pub fn batched(&self) -> bool {
        self.pre
            .module()
            .get_export(firefly_abi::EXPORT_DISPATCH_BATCH)
            .is_some()
    }

    /// Instances of this version in existence now (idle or running a call).
    pub fn live_instances(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Runtime {
    /// Compiles (or loads from the cache), validates and describes a module version.
    pub async fn load(
        &self,
        name: &str,
        version: u32,
        wasm: &[u8],
        limits: &Limits,
    ) -> Result<Arc<ModuleVersion>, LoadError> {
        let entry = self.engine(limits)?;
        let hash = hex::encode(Sha256::digest(wasm));
        let module = {
            let engine = entry.engine.clone();
            let wasm = wasm.to_vec();
            let cache = self.cache_dir.clone();
            let (name, hash) = (name.to_owned(), hash.clone());
            // Cranelift takes ~1 s for a large module: keep it off the async workers.
            tokio::task::spawn_blocking(move || {
                compile(&engine, &wasm, cache.as_deref(), &name, &hash)
            })
            .await
            .map_err(|e| LoadError::Engine(format!("compile task failed: {e}")))??
        };
        check_imports(&module)?;
        check_exports(&module)?;
        let pre = entry
            .linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Import(format!("{e:#}")))?;
        let env = Arc::new(ModuleEnv {
            name: Arc::from(name),
            version,
            sessions: self.sessions.clone(),
            calls: self.calls.clone(),
            clock: self.ticker.clock.clone(),
            data: self.data.clone(),
            timers: self.timers.clone(),
            timer_cap: limits.timers,
            rooms: self.rooms.clone(),
        });
        let mut loaded = ModuleVersion {
            env,
            hash,
            manifest: Manifest {
                abi: ABI_VERSION,
                sdk: String::new(),
                name: name.to_owned(),
                commands: Vec::new(),
                events: Vec::new(),
                tables: Vec::new(),
                timers: Vec::new(),
            },
            limits: limits.clone(),
            pre,
            idle: ArrayQueue::new(limits.instances.max(1) as usize),
            live: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            freed: Notify::new(),
            stats: ModuleStats::default(),
            retired: std::sync::atomic::AtomicBool::new(false),
            metrics: crate::metrics::ModuleMetrics::default(),
        };
        let manifest = loaded.describe().await?;
        if manifest.abi != ABI_VERSION {
            return Err(LoadError::Abi(format!(
                "module declares ABI version {}, this host supports {ABI_VERSION}",
                manifest.abi
            )));
        }
        if self.validate_only {
            for table in &manifest.tables {
                crate::data::schema::check_schema(table)
                    .map_err(|e| LoadError::Tables(e.to_string()))?;
            }
        } else if !manifest.tables.is_empty() {
            let Some(data) = self.data.as_ref() else {
                return Err(LoadError::Tables(
                    "the module declares tables but this node has no storage".into(),
                ));
            };
            data.register(&manifest.tables)
                .await
                .map_err(|e| LoadError::Tables(e.to_string()))?;
        }
        loaded.metrics = crate::metrics::ModuleMetrics::for_commands(&manifest.commands);
        loaded.manifest = manifest;
        Ok(Arc::new(loaded))
    }
}

/// Compiles `wasm`, through the on-disk cache of precompiled artifacts when there is one.
///
/// Artifacts are keyed by the wasm's SHA-256 and by the engine's compatibility hash (wasmtime
/// version and every compile-relevant setting), so a stale artifact is never even looked at:
/// it simply has another name. Writes go through a temporary file and a rename, so a crash
/// mid-write leaves no truncated artifact behind.
fn compile(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
    name: &str,
    hash: &str,
) -> Result<Module, LoadError> {
    let Some(dir) = cache_dir else {
        return Module::new(engine, wasm).map_err(|e| LoadError::NotWasm(format!("{e:#}")));
    };
    let path = artifact_path(engine, dir, name, hash);
    if path.exists() {
        // SAFETY: the artifact was produced by `Engine::precompile_module`/`Module::serialize`
        // of this same wasmtime build and engine configuration (both are in its name), in a
        // cache directory private to this installation.
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(module) => return Ok(module),
            Err(err) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {err:#}")
            }
        }
    }
    let module = Module::new(engine, wasm).map_err(|e| LoadError::NotWasm(format!("{e:#}")))?;
    if let Err(err) = store_artifact(&module, dir, &path) {
        tracing::warn!(path = %path.display(), "cannot cache compiled module: {err:#}");
    }
    Ok(module)
}

fn artifact_path(engine: &Engine, dir: &Path, name: &str, hash: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let compat = hasher.finish();
    let short = hash.get(..16).unwrap_or(hash);
    dir.join(format!("{name}-{short}-{compat:016x}.cwasm"))
}

fn store_artifact(module: &Module, dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = module.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn check_imports(module: &Module) -> Result<(), LoadError> {
    for import in module.imports() {
        let (ns, name) = (import.module(), import.name());
        if ns == IMPORT_MODULE {
            if firefly_abi::import(name).is_none() {
                return Err(LoadError::Import(format!(
                    "`{ns}::{name}` is not provided by this host (is the module built with a newer SDK?)"
                )));
            }
        } else if let Some(v) = ns.strip_prefix(IMPORT_MODULE_PREFIX) {
            return Err(LoadError::Abi(format!(
                "module was built for ABI version {v} (imports `{ns}::{name}`), this host supports version {ABI_VERSION} (`{IMPORT_MODULE}`)"
            )));
        } else if ns != "wasi_snapshot_preview1" {
            return Err(LoadError::Import(format!(
                "`{ns}::{name}`: modules may import only `{IMPORT_MODULE}` and `wasi_snapshot_preview1`"
            )));
        }
    }
    Ok(())
}

fn check_exports(module: &Module) -> Result<(), LoadError> {
    let func = |name: &str| match module.get_export(name) {
        Some(ExternType::Func(f)) => Ok(f),
        Some(_) => Err(LoadError::Export(format!("`{name}` is not a function"))),
        None => Err(LoadError::Export(format!(
            "`{name}` is missing (is this a Firefly module built with firefly-sdk?)"
        ))),
    };
    let kinds = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|v| match v {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            _ => "other",
        })
        .collect::<Vec<_>>()
    };
    let dispatch = func(EXPORT_DISPATCH)?;
    let (params, results) = (
        kinds(&mut dispatch.params()),
        kinds(&mut dispatch.results()),
    );
    if params != ["i32", "i32", "i64", "i32"] || results != ["i32"] {
        return Err(LoadError::Export(format!(
            "`{EXPORT_DISPATCH}` has type ({}) -> ({}), expected (i32, i32, i64, i32) -> (i32)",
            params.join(", "),
            results.join(", ")
        )));
    }
    // Optional (modules built before batched dispatch lack it), but typed when present.
    if module.get_export(EXPORT_DISPATCH_BATCH).is_some() {
        let batch = func(EXPORT_DISPATCH_BATCH)?;
        let (params, results) = (kinds(&mut batch.params()), kinds(&mut batch.results()));
        if params != ["i64"] || results != ["i32"] {
            return Err(LoadError::Export(format!(
                "`{EXPORT_DISPATCH_BATCH}` has type ({}) -> ({}), expected (i64) -> (i32)",
                params.join(", "),
                results.join(", ")
            )));
        }
    }
    let describe = func(EXPORT_DESCRIBE)?;
    if describe.params().len() != 0 || describe.results().len() != 0 {
        return Err(LoadError::Export(format!(
            "`{EXPORT_DESCRIBE}` must take and return nothing"
        )));
    }
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => Ok(()),
        _ => Err(LoadError::Export("`memory` is not exported".into())),
    }
}
