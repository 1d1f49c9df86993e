//! The host side of the ABI: the state each instance carries and the `firefly_v1` functions.
//!
//! Every function here is listed in `firefly_abi::IMPORTS`; `tests::linker_matches_abi_table`
//! checks the linker against that table so the two can never drift apart.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use firefly_abi::{IMPORT_MODULE, call_status, host_status, log_level};
use wasmtime::{Caller, Linker, Memory, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::sessions::{PushError, Sessions};

/// What an instance knows about the module version it belongs to.
pub(crate) struct ModuleEnv {
    /// Module name, for log tags and error frames.
    pub name: Arc<str>,
    /// Module version number.
    pub version: u32,
    /// The node's sessions, for pushes to sessions other than the caller's.
    pub sessions: Arc<Sessions>,
    /// The other nodes, for `call_node` / `send_node` (`None`: standalone node).
    pub calls: Option<Arc<dyn super::NodeCalls>>,
    /// The runtime's coarse clock, for request deadlines.
    pub clock: Arc<super::CoarseClock>,
    /// Cached database objects (`None`: this node has no storage).
    pub data: Option<Arc<crate::data::Data>>,
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
    pub batch: super::batch::BatchState,
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
}

impl CallState {
    pub fn reset(&mut self, session: u64, input: Bytes) {
        self.session = session;
        self.input = input;
        self.output.clear();
        self.output_base = 0;
        self.error = None;
        self.own_pushes.clear();
    }

    /// Resets for a batch call: `output` already holds the batch's earlier replies and keeps
    /// them; `request_next` sets each request's input.
    pub fn reset_for_batch(&mut self, session: u64) {
        self.session = session;
        self.input = Bytes::new();
        self.output_base = self.output.len();
        self.error = None;
        self.own_pushes.clear();
    }
}

/// An error a guest reported with `error_set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    /// Its code (a framework code or the module's own).
    pub code: String,
    /// Its message.
    pub message: String,
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

pub(super) fn guest_str(mem: &[u8], ptr: u32, len: u32, what: &str) -> wasmtime::Result<String> {
    let r = range(mem.len(), ptr, len, what)?;
    Ok(String::from_utf8_lossy(&mem[r]).into_owned())
}

/// Defines WASI preview 1 and every `firefly_v1` function in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |s: &mut HostState| &mut s.wasi)?;
    let m = IMPORT_MODULE;

    linker.func_wrap(
        m,
        "input_read",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let input = &state.call.input;
            if len as usize > input.len() {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::input_read: asked for {len} bytes, input has {}",
                    input.len()
                );
            }
            let r = range(mem.len(), ptr, len, "input_read")?;
            mem[r].copy_from_slice(&input[..len as usize]);
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "output_write",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let r = range(mem.len(), ptr, len, "output_write")?;
            state.call.output.truncate(state.call.output_base);
            state.call.output.extend_from_slice(&mem[r]);
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "error_set",
        |mut caller: Caller<'_, HostState>,
         code_ptr: u32,
         code_len: u32,
         msg_ptr: u32,
         msg_len: u32|
         -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let code = guest_str(mem, code_ptr, code_len.min(128), "error_set")?;
            let message = guest_str(mem, msg_ptr, msg_len.min(8192), "error_set")?;
            state.call.error = Some(GuestError { code, message });
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "push",
        |mut caller: Caller<'_, HostState>,
         session: u64,
         topic: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            let (mem, state) = memory(&mut caller)?;
            let r = range(mem.len(), ptr, len, "push")?;
            let payload = Bytes::copy_from_slice(&mem[r]);
            if session != 0 && session == state.call.session {
                state.call.own_pushes.push((topic, payload));
                return Ok(host_status::OK);
            }
            Ok(match state.env.sessions.push(session, topic, payload) {
                Ok(()) => host_status::OK,
                Err(PushError::NoSuchSession) => host_status::NO_SUCH_SESSION,
                Err(PushError::Backpressure) => host_status::BACKPRESSURE,
            })
        },
    )?;

    linker.func_wrap(
        m,
        "log",
        |mut caller: Caller<'_, HostState>,
         level: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let text = guest_str(mem, ptr, len.min(16 * 1024), "log")?;
            let (module, version, session) =
                (&*state.env.name, state.env.version, state.call.session);
            match level {
                log_level::ERROR => {
                    tracing::error!(target: "firefly::guest", module, version, session, "{text}")
                }
                log_level::WARN => {
                    tracing::warn!(target: "firefly::guest", module, version, session, "{text}")
                }
                log_level::INFO => {
                    tracing::info!(target: "firefly::guest", module, version, session, "{text}")
                }
                log_level::DEBUG => {
                    tracing::debug!(target: "firefly::guest", module, version, session, "{text}")
                }
                _ => tracing::trace!(target: "firefly::guest", module, version, session, "{text}"),
            }
            Ok(())
        },
    )?;

    linker.func_wrap_async(
        m,
        "call_node",
        |mut caller: Caller<'_, HostState>,
         (node_ptr, node_len, command, ptr, len): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let (node, payload, session, calls) = {
                    let (mem, state) = memory(&mut caller)?;
                    let node = guest_str(mem, node_ptr, node_len.min(256), "call_node")?;
                    let r = range(mem.len(), ptr, len, "call_node")?;
                    (
                        node,
                        mem[r].to_vec(),
                        state.call.session,
                        state.env.calls.clone(),
                    )
                };
                let (status, answer, pushes) = match &calls {
                    Some(calls) => calls.call(&node, session, command, payload).await,
                    None => (
                        call_status::UNKNOWN_NODE,
                        b"this node is not part of a cluster".to_vec(),
                        Vec::new(),
                    ),
                };
                let state = caller.data_mut();
                for (topic, p) in pushes {
                    state
                        .call
                        .own_pushes
                        .push((topic, Bytes::from(p.into_vec())));
                }
                state.call.call_reply = answer;
                let len = u64::try_from(state.call.call_reply.len()).unwrap_or(u64::MAX);
                wasmtime::Result::Ok((u64::from(status) << 32) | len)
            })
        },
    )?;

    linker.func_wrap(
        m,
        "call_reply_read",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, state) = memory(&mut caller)?;
            let reply = &state.call.call_reply;
            if len as usize > reply.len() {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::call_reply_read: asked for {len} bytes, the answer has {}",
                    reply.len()
                );
            }
            let r = range(mem.len(), ptr, len, "call_reply_read")?;
            mem[r].copy_from_slice(&reply[..len as usize]);
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "send_node",
        |mut caller: Caller<'_, HostState>,
         node_ptr: u32,
         node_len: u32,
         command: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            let (mem, state) = memory(&mut caller)?;
            let node = guest_str(mem, node_ptr, node_len.min(256), "send_node")?;
            let r = range(mem.len(), ptr, len, "send_node")?;
            let Some(calls) = &state.env.calls else {
                return Ok(call_status::UNKNOWN_NODE);
            };
            // One-way: the answer (if any) is not awaited.
            Ok(calls.send(&node, state.call.session, command, mem[r].to_vec()))
        },
    )?;

    linker.func_wrap(m, "time_now_micros", || -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })?;

    linker.func_wrap(
        m,
        "random_fill",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let (mem, _) = memory(&mut caller)?;
            let r = range(mem.len(), ptr, len, "random_fill")?;
            getrandom::fill(&mut mem[r])
                .map_err(|e| wasmtime::format_err!("host randomness unavailable: {e}"))
        },
    )?;
    super::batch::add_to_linker(linker)?;
    super::host_data::add_to_linker(linker)?;
    super::host_sessions::add_to_linker(linker)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use firefly_abi::{IMPORTS, ValKind};
    use wasmtime::{Config, Engine, ExternType, ValType};

    fn kind(v: &ValType) -> ValKind {
        match v {
            ValType::I32 => ValKind::I32,
            ValType::I64 => ValKind::I64,
            other => panic!("unexpected ABI value type {other:?}"),
        }
    }

    #[test]
    fn linker_matches_abi_table() {
        let engine = Engine::new(&Config::new()).unwrap();
        let mut linker = Linker::<HostState>::new(&engine);
        add_to_linker(&mut linker).unwrap();
        let name: Arc<str> = Arc::from("abi-check");
        let state = HostState {
            wasi: super::super::wasi::context(&name, 1),
            limiter: MemoryLimiter {
                max_memory: 1 << 20,
                hit: false,
            },
            call: CallState::default(),
            memory: None,
            cpu_ticks: 0,
            cpu_budget: 1,
            deadline_ms: 0,
            wall_timeout: false,
            batch: Default::default(),
            env: Arc::new(ModuleEnv {
                name,
                version: 1,
                sessions: Arc::new(Sessions::new()),
                calls: None,
                clock: Arc::new(super::super::CoarseClock::new_for_tests()),
                data: None,
            }),
        };
        let mut store = wasmtime::Store::new(&engine, state);
        let mut defined = Vec::new();
        let items: Vec<_> = linker
            .iter(&mut store)
            .map(|(module, name, item)| (module.to_owned(), name.to_owned(), item))
            .collect();
        for (module, name, item) in items {
            if module != IMPORT_MODULE {
                continue;
            }
            let ExternType::Func(ty) = item.ty(&store) else {
                panic!("{name} is not a function");
            };
            let name = name.as_str();
            let sig = firefly_abi::import(name)
                .unwrap_or_else(|| panic!("host defines {name}, which the ABI table lacks"));
            let params: Vec<_> = ty.params().map(|p| kind(&p)).collect();
            let results: Vec<_> = ty.results().map(|p| kind(&p)).collect();
            assert_eq!(params, sig.params, "params of {name}");
            assert_eq!(results, sig.results, "results of {name}");
            defined.push(name.to_owned());
        }
        for sig in IMPORTS {
            assert!(
                defined.iter().any(|d| d == sig.name),
                "host lacks {}",
                sig.name
            );
        }
    }
}
