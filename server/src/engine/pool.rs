//! Running calls: warm instances, limits, and turning every failure into a reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use firefly_abi::{DispatchKind, EXPORT_DESCRIBE, EXPORT_DISPATCH, Manifest, Status, codes};
use wasmtime::{Instance, Store, Trap, TypedFunc, UpdateDeadline};

use super::host::{CallState, HostState, MemoryLimiter};
use super::module::{LoadError, ModuleVersion};
use super::{EPOCH_TICK, MAX_USES, wasi};

/// A warm instance: its store and its dispatch function, ready for the next call.
pub(crate) struct Warm {
    store: Store<HostState>,
    instance: Instance,
    dispatch: TypedFunc<(u32, u32, u64, u32), u32>,
    uses: u32,
}

/// Counters of one module version, read by status and metrics.
#[derive(Debug, Default)]
pub struct ModuleStats {
    /// Calls started.
    pub calls: AtomicU64,
    /// Calls that ended in an error reply of any kind.
    pub errors: AtomicU64,
    /// Calls that trapped (panic, stack overflow, memory limit...).
    pub traps: AtomicU64,
    /// Calls that ran out of time or CPU budget.
    pub timeouts: AtomicU64,
    /// Instances created.
    pub instances: AtomicU64,
}

/// Why a call produced no successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// An error code (`firefly_abi::codes` or the module's own).
    pub code: String,
    /// What happened.
    pub message: String,
}

impl CallError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything a call produced.
#[derive(Debug)]
pub struct CallOutcome {
    /// Pushes the call made to its own session, in order; deliver them before the reply.
    pub own_pushes: Vec<(u32, Bytes)>,
    /// The reply payload, or why there is none.
    pub result: Result<Vec<u8>, CallError>,
}

impl ModuleVersion {
    /// Runs one dispatch on a warm instance, within the module's limits.
    ///
    /// Never fails as a Rust error: traps, timeouts, exhausted pools and handler errors all
    /// come back as a [`CallError`] with a code, and only the instance involved is discarded.
    pub async fn call(
        &self,
        kind: DispatchKind,
        id: u32,
        session: u64,
        input: Bytes,
    ) -> CallOutcome {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let outcome = self.call_inner(kind, id, session, input).await;
        if outcome.result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn call_inner(
        &self,
        kind: DispatchKind,
        id: u32,
        session: u64,
        input: Bytes,
    ) -> CallOutcome {
        let fail = |code: &str, message: String| CallOutcome {
            own_pushes: Vec::new(),
            result: Err(CallError::new(code, message)),
        };
        let _permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(self.limits.timeout, self.permits.acquire()).await
            {
                Ok(Ok(permit)) => permit,
                _ => {
                    return fail(
                        codes::OVERLOADED,
                        format!(
                            "all {} instances of the module are busy",
                            self.limits.instances
                        ),
                    );
                }
            },
        };
        let mut warm = match self.idle.pop() {
            Some(warm) => warm,
            None => match self.instantiate().await {
                Ok(warm) => warm,
                Err(err) => {
                    return fail(
                        codes::INTERNAL,
                        format!("cannot instantiate module: {err:#}"),
                    );
                }
            },
        };
        let len = u32::try_from(input.len()).unwrap_or(u32::MAX);
        let state = warm.store.data_mut();
        state.call.reset(session, input);
        state.cpu_ticks = 0;
        warm.store.set_epoch_deadline(1);
        warm.uses += 1;
        let call = warm
            .dispatch
            .call_async(&mut warm.store, (kind as u32, id, session, len));
        let result = tokio::time::timeout(self.limits.timeout, call).await;
        let state = warm.store.data_mut();
        let own_pushes = std::mem::take(&mut state.call.own_pushes);
        let result = match result {
            Ok(Ok(status)) => {
                let result = match Status::from_u32(status) {
                    Some(Status::Ok) => Ok(std::mem::take(&mut state.call.output)),
                    Some(Status::Error) => Err(match state.call.error.take() {
                        Some(e) => CallError {
                            code: e.code,
                            message: e.message,
                        },
                        None => CallError::new(
                            codes::HANDLER_FAILED,
                            "handler failed without a message",
                        ),
                    }),
                    Some(Status::Unknown) => Err(CallError::new(
                        codes::UNKNOWN_COMMAND,
                        format!("module `{}` has no handler for command {id}", self.name()),
                    )),
                    None => Err(CallError::new(
                        codes::INTERNAL,
                        format!("module returned an unknown status {status}"),
                    )),
                };
                state.call.input = Bytes::new();
                if warm.uses < MAX_USES {
                    // A full queue just drops the instance; its slot returns to the pool.
                    let _ = self.idle.push(warm);
                }
                result
            }
            Ok(Err(err)) => Err(self.classify(state, &err)),
            Err(_elapsed) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(CallError::new(
                    codes::TIMEOUT,
                    format!(
                        "request exceeded its time limit of {:?}",
                        self.limits.timeout
                    ),
                ))
            }
        };
        CallOutcome { own_pushes, result }
    }

    /// Names what went wrong in a failed call; the instance is dropped by the caller.
    fn classify(&self, state: &mut HostState, err: &wasmtime::Error) -> CallError {
        if state.limiter.hit {
            self.stats.traps.fetch_add(1, Ordering::Relaxed);
            return CallError::new(
                codes::OUT_OF_MEMORY,
                format!(
                    "module exceeded its memory limit of {} bytes",
                    self.limits.memory
                ),
            );
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) if state.cpu_ticks > state.cpu_budget => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                CallError::new(
                    codes::TIMEOUT,
                    format!("request exceeded its CPU budget of {:?}", self.limits.cpu),
                )
            }
            Some(Trap::StackOverflow) => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                CallError::new(
                    codes::TRAPPED,
                    format!(
                        "stack overflow (wasm stack limit {} bytes)",
                        self.limits.stack
                    ),
                )
            }
            Some(Trap::MemoryOutOfBounds) => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                // Rust guests keep a shadow stack at the bottom of linear memory: deep recursion
                // runs off its end into an out-of-bounds access, which is how it shows up.
                CallError::new(
                    codes::TRAPPED,
                    "out of bounds memory access (usually a stack overflow of the module's own stack in linear memory: unbounded recursion or huge locals)",
                )
            }
            trap => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                // The SDK's panic hook records the panic message just before the abort.
                let message = match state.call.error.take() {
                    Some(e) if e.code == codes::TRAPPED => e.message,
                    _ => match trap {
                        Some(t) => format!("module trapped: {t}"),
                        None => format!("module failed: {err:#}"),
                    },
                };
                CallError::new(codes::TRAPPED, message)
            }
        }
    }

    pub(crate) async fn instantiate(&self) -> Result<Warm, wasmtime::Error> {
        let engine = self.pre.module().engine();
        let state = HostState {
            wasi: wasi::context(&self.env.name, self.env.version),
            limiter: MemoryLimiter {
                max_memory: usize::try_from(self.limits.memory).unwrap_or(usize::MAX),
                hit: false,
            },
            call: CallState::default(),
            memory: None,
            cpu_ticks: 0,
            cpu_budget: cpu_budget(&self.limits),
            env: Arc::clone(&self.env),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.cpu_budget {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Give the worker thread back to tokio every tick of guest CPU.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let instance = self.pre.instantiate_async(&mut store).await?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call_async(&mut store, ()).await?;
        }
        let dispatch = instance.get_typed_func(&mut store, EXPORT_DISPATCH)?;
        self.stats.instances.fetch_add(1, Ordering::Relaxed);
        Ok(Warm {
            store,
            instance,
            dispatch,
            uses: 0,
        })
    }

    /// Instantiates once and asks the module to describe itself; the instance then joins the
    /// pool, so loading also proves the module can start within its limits.
    pub(crate) async fn describe(&self) -> Result<Manifest, LoadError> {
        let mut warm = self
            .instantiate()
            .await
            .map_err(|e| LoadError::Init(format!("{e:#}")))?;
        let func = warm
            .instance
            .get_typed_func::<(), ()>(&mut warm.store, EXPORT_DESCRIBE)
            .map_err(|e| LoadError::Export(format!("{e:#}")))?;
        warm.store.data_mut().call.reset(0, Bytes::new());
        warm.store.set_epoch_deadline(1);
        let call = func.call_async(&mut warm.store, ());
        match tokio::time::timeout(self.limits.timeout, call).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                let e = self.classify(warm.store.data_mut(), &err);
                return Err(LoadError::Init(format!(
                    "`{EXPORT_DESCRIBE}` failed: {}",
                    e.message
                )));
            }
            Err(_) => return Err(LoadError::Init(format!("`{EXPORT_DESCRIBE}` timed out"))),
        }
        let output = std::mem::take(&mut warm.store.data_mut().call.output);
        let manifest: Manifest = rmp_serde::from_slice(&output).map_err(|e| {
            LoadError::Init(format!(
                "module described itself with an unreadable manifest: {e}"
            ))
        })?;
        let _ = self.idle.push(warm);
        Ok(manifest)
    }
}

/// A call's CPU budget in epoch ticks.
fn cpu_budget(limits: &crate::config::Limits) -> u32 {
    let ticks = limits.cpu.as_millis() / EPOCH_TICK.as_millis().max(1);
    u32::try_from(ticks.max(1)).unwrap_or(u32::MAX)
}
