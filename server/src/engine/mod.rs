//! The wasm engine: our fixed wasmtime choices, module loading and the instance pool.
//!
//! # Choices, and why
//! * **Core modules, one dispatch export** (see `firefly_abi`): a typed core call costs ~41 ns
//!   against 300–900 ns for a component call, and our payloads are opaque MessagePack anyway.
//! * **Reused instances from a bounded pool** rather than a fresh instance per request. A
//!   fresh instance from a pooled `InstancePre` costs ~7.4 µs (async); the bare echo server
//!   answers a pipelined request in well under 1 µs, so per-request instantiation alone would
//!   cap us far below the 60%-of-bare target. A warm instance costs one `call_async` (~0.27 µs).
//!   Isolation is kept where it matters: an instance that traps, times out or hits its memory
//!   limit is discarded, never reused; instances are recycled after [`MAX_USES`] calls; and
//!   guests are told that linear memory is scratch space (state lives in the host's data store),
//!   so reuse is invisible to correct modules and hot swap stays trivial (new requests take
//!   instances of the new version; old ones drain and drop).
//! * **Async everywhere** (`call_async`) so host functions may await (node calls, data) and a
//!   busy guest yields to tokio on every epoch tick instead of blocking a worker thread.
//! * **Epoch interruption** (+12–24% guest CPU, against +30–45% for fuel): one ticker thread
//!   advances every engine's epoch each [`EPOCH_TICK`]; a call's CPU budget is counted in ticks
//!   and a per-request wall-clock timeout bounds everything else.
//! * **Pooling allocator** with copy-on-write memory images, sized from the module's limits.
//! * **One engine per distinct limit set**, because the wasm stack limit is an engine setting
//!   and limits are configurable per module.

mod batch;
mod calls;
mod clock;
mod host;
mod instance;
mod module;
mod outcome;
mod pipeline;
mod pool;
mod rooms;
mod timers;
mod wasi;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

use crate::config::Limits;
use crate::sessions::Sessions;

pub use batch::{Answer, Batch};
pub use calls::{CallAnswer, NodeCalls};
pub use clock::EPOCH_TICK;
use clock::EpochTicker;
pub use module::{LoadError, ModuleStats, ModuleVersion};
pub use outcome::{CallError, CallOutcome, GuestError};
pub use pool::Lease;
pub use rooms::{RoomAnswer, RoomHost};
pub use timers::{NewTimer, Started, TimerHost, TimerRefused, timer_limits};

/// An instance is recycled after this many calls, so slow leaks in a guest's allocator or
/// statics cannot accumulate forever.
pub const MAX_USES: u32 = 10_000;

/// Loads modules for one node: engines, linkers, the epoch ticker and the compile cache.
pub struct Runtime {
    engines: Mutex<HashMap<EngineKey, EngineEntry>>,
    ticker: EpochTicker,
    cache_dir: Option<PathBuf>,
    sessions: Arc<Sessions>,
    /// The other nodes, for `call_node` / `send_node` (`None`: a standalone node).
    calls: Option<Arc<dyn NodeCalls>>,
    /// Cached database objects (`None`: modules declaring tables are refused).
    data: Option<Arc<crate::data::Data>>,
    /// The node's timers (`None`: modules cannot start timers).
    timers: Option<Arc<dyn TimerHost>>,
    /// The node's rooms (`None`: modules cannot open rooms).
    rooms: Option<Arc<dyn RoomHost>>,
    /// Set for the master's deploy validator, which has no storage: a module's table
    /// declarations are then checked for validity but not registered anywhere.
    validate_only: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct EngineKey {
    stack: usize,
    memory: u64,
    instances: u32,
}

#[derive(Clone)]
struct EngineEntry {
    engine: Engine,
    linker: Arc<Linker<host::HostState>>,
}

impl Runtime {
    /// A runtime whose modules push to `sessions` and cache compiled code in `cache_dir`
    /// (`None` disables the cache). The cache directory must be private to this installation:
    /// precompiled code in it is trusted.
    pub fn new(sessions: Arc<Sessions>, cache_dir: Option<PathBuf>) -> Self {
        Self::with_mode(sessions, cache_dir, false)
    }

    /// A runtime that only validates modules (the master's, for deploys): modules load and
    /// describe themselves as on a node, and their tables are checked but never registered.
    pub fn validator(sessions: Arc<Sessions>, cache_dir: Option<PathBuf>) -> Self {
        Self::with_mode(sessions, cache_dir, true)
    }

    fn with_mode(sessions: Arc<Sessions>, cache_dir: Option<PathBuf>, validate_only: bool) -> Self {
        Self {
            validate_only,
            engines: Mutex::new(HashMap::new()),
            ticker: EpochTicker::start(),
            cache_dir,
            sessions,
            calls: None,
            data: None,
            timers: None,
            rooms: None,
        }
    }

    /// This runtime, whose modules reach the cluster's other nodes through `calls`.
    /// Part of construction: a runtime's dependencies are fixed before any module loads.
    pub fn with_calls(mut self, calls: Arc<dyn NodeCalls>) -> Self {
        self.calls = Some(calls);
        self
    }

    /// This runtime, whose modules keep cached database objects in `data`.
    pub fn with_data(mut self, data: Arc<crate::data::Data>) -> Self {
        self.data = Some(data);
        self
    }

    /// This runtime, whose modules start timers in `timers`.
    pub fn with_timers(mut self, timers: Arc<dyn TimerHost>) -> Self {
        self.timers = Some(timers);
        self
    }

    /// This runtime, whose modules open rooms in `rooms`.
    pub fn with_rooms(mut self, rooms: Arc<dyn RoomHost>) -> Self {
        self.rooms = Some(rooms);
        self
    }

    /// The sessions modules of this runtime push to.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    fn engine(&self, limits: &Limits) -> Result<EngineEntry, LoadError> {
        let key = EngineKey {
            stack: limits.stack,
            memory: limits.memory,
            instances: limits.instances,
        };
        let mut engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = engines.get(&key) {
            return Ok(entry.clone());
        }
        let engine = new_engine(limits).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        self.ticker.add(engine.clone());
        let entry = EngineEntry {
            engine,
            linker: Arc::new(linker),
        };
        engines.insert(key, entry.clone());
        Ok(entry)
    }
}

fn new_engine(limits: &Limits) -> anyhow::Result<Engine> {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    cfg.max_wasm_stack(limits.stack);
    // The async stack holds the wasm stack plus host frames (WASI, our imports) beneath it.
    cfg.async_stack_size(limits.stack + 1024 * 1024);
    // Twice the instance limit: during a hot swap the retiring version's in-flight calls and
    // the new version's instances exist side by side, and neither may be refused a slot.
    let slots = limits.instances.saturating_mul(2).saturating_add(2);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .max_memory_size(usize::try_from(limits.memory).unwrap_or(usize::MAX));
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&cfg) {
        Ok(engine) => Ok(engine),
        Err(err) => {
            // The pooling allocator reserves address space up front; where that is not
            // available (small VMs, ulimit -v) fall back to on-demand allocation.
            tracing::warn!("pooling allocator unavailable ({err:#}); using on-demand allocation");
            cfg.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Ok(Engine::new(&cfg)?)
        }
    }
}
