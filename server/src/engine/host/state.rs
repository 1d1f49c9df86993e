//! The store data of one instance, and reading and writing guest memory safely.

use std::sync::Arc;

use bytes::Bytes;
use firefly_abi::IMPORT_MODULE;
use wasmtime::{Caller, Memory, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::engine::batch::BatchState;
use crate::engine::calls::NodeCalls;
use crate::engine::clock::CoarseClock;
use crate::engine::outcome::GuestError;
use crate::engine::rooms::RoomHost;
use crate::engine::timers::TimerHost;
use crate::sessions::Sessions;

/// What an instance knows about the module version it belongs to.
pub(crate) struct ModuleEnv {
    /// Module name, for log tags and error frames.
    pub name: Arc<str>,
    /// Module version number.
    pub version: u32,
    /// The node's sessions, for pushes to sessions other than the caller's.
    pub sessions: Arc<Sessions>,
    /// The other nodes, for `call_node` / `send_node` (`None`: standalone node).
    pub calls: Option<Arc<dyn NodeCalls>>,
    /// The runtime's coarse clock, for request deadlines.
    pub clock: Arc<CoarseClock>,
    /// Cached database objects (`None`: this node has no storage).
    pub data: Option<Arc<crate::data::Data>>,
    /// The node's timers (`None`: modules cannot start timers here).
    pub timers: Option<Arc<dyn TimerHost>>,
    /// How many pending timers the module may have (`limits.timers`).
    pub timer_cap: u32,
    /// The node's rooms (`None`: modules cannot open rooms here).
    pub rooms: Option<Arc<dyn RoomHost>>,
}

/// The store data of one instance.
pub(crate) struct HostState {
    pub wasi: WasiP1Ctx,
    pub limiter: MemoryLimiter,
    pub call: CallState,
    /// The instance's exported memory, looked up once after instantiation.
    pub memory: Option<Memory>,
    /// Epoch ticks this call has consumed; compared against `cpu_budget` by the epoch callback.
    pub cpu_ticks: u32,
    pub cpu_budget: u32,
    /// When the current call's wall-clock limit runs out (coarse-clock milliseconds); checked
    /// by the epoch callback.
    pub deadline_ms: u64,
    /// Set by the epoch callback when it interrupted the call for `deadline`.
    pub wall_timeout: bool,
    pub env: Arc<ModuleEnv>,
    /// The batch being served by a `__firefly_dispatch_batch` call (empty otherwise).
    pub batch: BatchState,
}

/// Per-call state: reset before every dispatch.
#[derive(Default)]
pub(crate) struct CallState {
    pub session: u64,
    pub input: Bytes,
    /// The reply: `output[output_base..]`. Outside a batch `output_base` is 0; in a batch
    /// `output` holds the replies of the batch's earlier requests too, so each reply is copied
    /// once from guest memory and never moved again.
    pub output: Vec<u8>,
    pub output_base: usize,
    pub error: Option<GuestError>,
    /// Pushes to the calling session, delivered just before the reply so they keep their order
    /// relative to it (as the original Firefly did).
    pub own_pushes: Vec<(u32, Bytes)>,
    /// The answer of the last `call_node`, until the guest reads it.
    pub call_reply: Vec<u8>,
    /// The answer of the last `data_call`, until the guest reads it.
    pub data_reply: Vec<u8>,
    /// The room whose tick this call runs (`None`: not a tick): its room operations on that
    /// room never wait for the tick, which is their own.
    pub tick_room: Option<Arc<str>>,
}

impl CallState {
    pub fn reset(&mut self, session: u64, input: Bytes) {
        self.session = session;
        self.input = input;
        self.output.clear();
        self.output_base = 0;
        self.error = None;
        self.own_pushes.clear();
        self.tick_room = None;
    }

    /// Resets for a batch call: `output` already holds the batch's earlier replies and keeps
    /// them; `request_next` sets each request's input.
    pub fn reset_for_batch(&mut self, session: u64) {
        self.session = session;
        self.input = Bytes::new();
        self.output_base = self.output.len();
        self.error = None;
        self.own_pushes.clear();
        self.tick_room = None;
    }
}

/// Caps linear memory per instance and remembers whether the cap was hit, so a failed call can
/// be reported as `out_of_memory` rather than as an anonymous trap.
pub(crate) struct MemoryLimiter {
    pub max_memory: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.max_memory
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Largest single host-side copy a guest may request (input, output, push, log): bounded by
/// guest memory anyway, this keeps a confused guest from making the host allocate wildly.
const MAX_COPY: usize = 64 * 1024 * 1024;

pub(crate) fn memory<'a>(
    caller: &'a mut Caller<'_, HostState>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut HostState)> {
    let Some(mem) = caller.data().memory else {
        wasmtime::bail!("module has no exported memory");
    };
    Ok(mem.data_and_store_mut(caller))
}

pub(crate) fn range(
    mem_len: usize,
    ptr: u32,
    len: u32,
    what: &str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start.saturating_add(len as usize);
    if end > mem_len || len as usize > MAX_COPY {
        wasmtime::bail!("{IMPORT_MODULE}::{what}: range {start}..{end} is outside guest memory");
    }
    Ok(start..end)
}

pub(crate) fn guest_str(mem: &[u8], ptr: u32, len: u32, what: &str) -> wasmtime::Result<String> {
    let r = range(mem.len(), ptr, len, what)?;
    Ok(String::from_utf8_lossy(&mem[r]).into_owned())
}
