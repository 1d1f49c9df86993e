//! Running calls: warm instances, limits, and turning every failure into a reply.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use firefly_abi::{
    DispatchKind, EXPORT_DESCRIBE, EXPORT_DISPATCH, EXPORT_DISPATCH_BATCH, Manifest, codes,
};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::clock::EPOCH_TICK;
use super::host::{CallState, HostState, MemoryLimiter};
use super::instance::Warm;
use super::module::{LoadError, ModuleVersion};
use super::outcome::{CallError, CallOutcome, status_result};
use super::{MAX_USES, wasi};

/// A warm instance held for a run of calls to one module version.
///
/// A connection that received several requests in one read serves them all on one lease: the
/// pool is touched once per batch rather than once per request. Dropping the lease returns the
/// instance; an instance that failed is discarded and the next call takes a fresh one.
pub struct Lease {
    pub(super) module: Arc<ModuleVersion>,
    pub(super) warm: Option<Warm>,
    /// The room whose tick the calls on this lease run (`None`: they are not a room's tick).
    /// The room host lets a tick write its own room at once, where any other caller waits for
    /// the running tick to end (see `crate::rooms`).
    tick_room: Option<Arc<str>>,
}

impl Lease {
    /// A lease on `module`; the instance is taken on the first call.
    pub fn new(module: Arc<ModuleVersion>) -> Self {
        Self {
            module,
            warm: None,
            tick_room: None,
        }
    }

    /// A lease whose calls run the tick of room `key` of its module.
    pub fn for_tick(module: Arc<ModuleVersion>, key: Arc<str>) -> Self {
        Self {
            module,
            warm: None,
            tick_room: Some(key),
        }
    }

    /// Takes the instance the next call runs on now rather than at that call. A room's tick
    /// does this before it marks the room as ticking: request handlers that wait for the tick
    /// hold instances, so a tick that waited for one while marked would wait for its waiters.
    pub async fn ready(&mut self) -> Result<(), CallError> {
        if self.warm.is_none() {
            self.warm = Some(self.module.acquire().await?);
        }
        Ok(())
    }

    /// The module version this lease calls.
    pub fn module(&self) -> &Arc<ModuleVersion> {
        &self.module
    }

    /// Runs one dispatch within the module's limits. On success the reply is left in `reply`
    /// (previous contents discarded; its capacity and the instance's are reused, so steady-state
    /// calls do not allocate for replies).
    ///
    /// Never fails as a Rust error: traps, timeouts, exhausted pools and handler errors all
    /// come back as a [`CallError`] with a code, and only the instance involved is discarded.
    pub async fn call(
        &mut self,
        kind: DispatchKind,
        id: u32,
        session: u64,
        input: Bytes,
        reply: &mut Vec<u8>,
    ) -> CallOutcome {
        let module = &self.module;
        let started = crate::metrics::clock::ticks();
        module.stats.calls.inc();
        let mut warm = match self.warm.take() {
            Some(warm) => warm,
            None => match module.acquire().await {
                Ok(warm) => warm,
                Err(err) => {
                    module.stats.errors.inc();
                    return CallOutcome {
                        own_pushes: Vec::new(),
                        result: Err(err),
                    };
                }
            },
        };
        let len = u32::try_from(input.len()).unwrap_or(u32::MAX);
        let state = warm.store.data_mut();
        state.call.reset(session, input);
        state.call.tick_room.clone_from(&self.tick_room);
        state.cpu_ticks = 0;
        state.deadline_ms = state.env.clock.now_ms() + timeout_ms(&module.limits);
        state.wall_timeout = false;
        warm.store.set_epoch_deadline(1);
        warm.uses += 1;
        // No timer per call: every host import is synchronous, so the guest only ever pauses
        // at epoch yields, where the epoch callback also enforces the wall-clock deadline.
        let result = warm
            .dispatch
            .call_async(&mut warm.store, (kind as u32, id, session, len))
            .await;
        let state = warm.store.data_mut();
        let own_pushes = std::mem::take(&mut state.call.own_pushes);
        state.call.input = Bytes::new();
        let result = match result {
            Ok(status) => {
                let result = status_result(status, &mut state.call.error, module.name(), id);
                if result.is_ok() {
                    std::mem::swap(reply, &mut state.call.output);
                }
                if warm.uses < MAX_USES {
                    self.warm = Some(warm);
                } else {
                    module.release(None);
                }
                result
            }
            Err(err) => {
                let err = module.classify(state, &err);
                module.release(None);
                Err(err)
            }
        };
        if result.is_err() {
            module.stats.errors.inc();
        }
        if kind == DispatchKind::Request {
            module.metrics.record_since(id, started, result.is_err());
        }
        CallOutcome { own_pushes, result }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(warm) = self.warm.take() {
            self.module.release(Some(warm));
        }
    }
}

impl ModuleVersion {
    /// Runs one dispatch on a warm instance (a one-call [`Lease`]).
    pub async fn call(
        self: &Arc<Self>,
        kind: DispatchKind,
        id: u32,
        session: u64,
        input: Bytes,
        reply: &mut Vec<u8>,
    ) -> CallOutcome {
        Lease::new(Arc::clone(self))
            .call(kind, id, session, input, reply)
            .await
    }

    /// Runs an event's dispatch (a timer firing, a room event, a session's connect or
    /// disconnect), which no client awaits: its reply is dropped, and the pushes it made to its
    /// own `session`, which a request's reply would carry, are sent to the session now.
    pub async fn call_event(
        self: &Arc<Self>,
        kind: DispatchKind,
        id: u32,
        session: u64,
        input: Bytes,
    ) -> CallOutcome {
        let mut reply = Vec::new();
        let mut outcome = self.call(kind, id, session, input, &mut reply).await;
        for (topic, payload) in outcome.own_pushes.drain(..) {
            if let Err(err) = self.env.sessions.push(session, topic, payload) {
                tracing::debug!(
                    session,
                    topic,
                    "a push from a {kind:?} handler was not sent: {err}"
                );
            }
        }
        outcome
    }

    /// Takes a warm instance, creating one if fewer than `limits.instances` exist, or waits
    /// (up to the request timeout) for one to be released.
    ///
    /// The fast path is one lock-free queue pop: no semaphore, no shared counter.
    pub(super) async fn acquire(&self) -> Result<Warm, CallError> {
        if let Some(warm) = self.idle.pop() {
            return Ok(warm);
        }
        let max = self.limits.instances.max(1) as usize;
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        loop {
            let live = self.live.load(Ordering::Acquire);
            if live < max {
                if self
                    .live
                    .compare_exchange(live, live + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    continue;
                }
                return match self.instantiate().await {
                    Ok(warm) => Ok(warm),
                    Err(err) => {
                        self.release(None);
                        Err(CallError::new(
                            codes::INTERNAL,
                            format!("cannot instantiate module: {err:#}"),
                        ))
                    }
                };
            }
            // Register interest before the last look, so a release in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            self.waiters.fetch_add(1, Ordering::AcqRel);
            let again = self.idle.pop();
            let woke = match again {
                Some(_) => true,
                None => tokio::time::timeout_at(deadline, freed).await.is_ok(),
            };
            self.waiters.fetch_sub(1, Ordering::AcqRel);
            if let Some(warm) = again {
                return Ok(warm);
            }
            if !woke {
                return Err(CallError::new(
                    codes::OVERLOADED,
                    format!(
                        "all {max} instances of the module are busy (waited {:?})",
                        self.limits.timeout
                    ),
                ));
            }
            if let Some(warm) = self.idle.pop() {
                return Ok(warm);
            }
        }
    }

    /// Returns an instance to the pool, or gives up its slot (`None`: it was discarded).
    pub(super) fn release(&self, warm: Option<Warm>) {
        match warm {
            Some(warm) if warm.uses < MAX_USES && !self.retired.load(Ordering::Acquire) => {
                if self.idle.push(warm).is_err() {
                    self.live.fetch_sub(1, Ordering::AcqRel);
                } else if self.retired.load(Ordering::Acquire) {
                    // Retired between the check and the push: give the slot back after all.
                    while self.idle.pop().is_some() {
                        self.live.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
            _ => {
                let before = self.live.fetch_sub(1, Ordering::AcqRel);
                if before == 1 && self.retired.load(Ordering::Acquire) {
                    tracing::info!(
                        module = %self.env.name, version = self.env.version,
                        "retired version drained: its last in-flight call finished"
                    );
                }
            }
        }
        // Only waiters (all instances busy) need a wake-up; the common case reads a counter
        // that is almost never written, which costs no cache-line transfer.
        if self.waiters.load(Ordering::Acquire) > 0 {
            self.freed.notify_one();
        }
    }

    /// Names what went wrong in a failed call; the instance is dropped by the caller.
    pub(super) fn classify(&self, state: &mut HostState, err: &wasmtime::Error) -> CallError {
        if state.limiter.hit {
            self.stats.traps.inc();
            return CallError::new(
                codes::OUT_OF_MEMORY,
                format!(
                    "module exceeded its memory limit of {} bytes",
                    self.limits.memory
                ),
            );
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) if state.wall_timeout => {
                self.stats.timeouts.inc();
                CallError::new(
                    codes::TIMEOUT,
                    format!(
                        "request exceeded its time limit of {:?}",
                        self.limits.timeout
                    ),
                )
            }
            Some(Trap::Interrupt) if state.cpu_ticks > state.cpu_budget => {
                self.stats.timeouts.inc();
                CallError::new(
                    codes::TIMEOUT,
                    format!("request exceeded its CPU budget of {:?}", self.limits.cpu),
                )
            }
            Some(Trap::StackOverflow) => {
                self.stats.traps.inc();
                CallError::new(
                    codes::TRAPPED,
                    format!(
                        "stack overflow (wasm stack limit {} bytes)",
                        self.limits.stack
                    ),
                )
            }
            Some(Trap::MemoryOutOfBounds) => {
                self.stats.traps.inc();
                // Rust guests keep a shadow stack at the bottom of linear memory: deep recursion
                // runs off its end into an out-of-bounds access, which is how it shows up.
                CallError::new(
                    codes::TRAPPED,
                    "out of bounds memory access (usually a stack overflow of the module's own stack in linear memory: unbounded recursion or huge locals)",
                )
            }
            trap => {
                self.stats.traps.inc();
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
            deadline_ms: self.env.clock.now_ms() + timeout_ms(&self.limits),
            wall_timeout: false,
            env: Arc::clone(&self.env),
            batch: Default::default(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.env.clock.now_ms() >= state.deadline_ms {
                state.wall_timeout = true;
                Ok(UpdateDeadline::Interrupt)
            } else if state.cpu_ticks > state.cpu_budget {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Give the worker thread back to tokio every tick of guest CPU. Through
                // `yield_now`, not a plain self-wake: tokio would re-poll a self-woken task at
                // once from its LIFO slot, and two looping guests on two workers would starve
                // every other connection (a test caught exactly that).
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store.set_epoch_deadline(1);
        let instance = self.pre.instantiate_async(&mut store).await?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call_async(&mut store, ()).await?;
        }
        let dispatch = instance.get_typed_func(&mut store, EXPORT_DISPATCH)?;
        // Optional; its type was checked when the module was loaded.
        let batch = match instance.get_export(&mut store, EXPORT_DISPATCH_BATCH) {
            Some(_) => Some(instance.get_typed_func(&mut store, EXPORT_DISPATCH_BATCH)?),
            None => None,
        };
        self.stats.instances.inc();
        Ok(Warm {
            store,
            instance,
            dispatch,
            batch,
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
        self.live.fetch_add(1, Ordering::AcqRel);
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
        self.release(Some(warm));
        Ok(manifest)
    }
}

/// A call's wall-clock limit in milliseconds, plus one tick so the coarse clock's granularity
/// never cuts a call short.
pub(super) fn timeout_ms(limits: &crate::config::Limits) -> u64 {
    u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX) + EPOCH_TICK.as_millis() as u64
}

/// A call's CPU budget in epoch ticks.
fn cpu_budget(limits: &crate::config::Limits) -> u32 {
    let ticks = limits.cpu.as_millis() / EPOCH_TICK.as_millis().max(1);
    u32::try_from(ticks.max(1)).unwrap_or(u32::MAX)
}
