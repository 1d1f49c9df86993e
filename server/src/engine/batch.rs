//! Batched dispatch: several pipelined requests of one session served by one entry into the
//! guest.
//!
//! Entering and leaving wasm through `call_async` (a fiber switch each way) costs ~120 ns, more
//! than an echo handler's own work. When one read of a connection holds several requests for
//! the same module version, the gate queues them in a [`Batch`] and [`Lease::call_batch`]
//! serves them with one call of the module's `__firefly_dispatch_batch` export, which pulls each
//! request with `request_next` and reports it with `request_done` (see `firefly_abi`).
//!
//! Every request keeps the semantics of a call of its own: its own input, reply or error, own
//! pushes, time limit and CPU budget (reset by `request_next`), its own metrics. If the guest
//! traps, the requests it already reported keep their replies, the one in progress gets the
//! trap's error, and the rest are served on a fresh instance: none is lost or run twice.
//! Modules without the export (older SDKs) are served one call per request.

use std::ops::Range;

use bytes::Bytes;
use firefly_abi::{BATCH_END, DispatchKind, IMPORT_MODULE, codes};
use wasmtime::{AsContextMut, Caller, Linker};

use super::MAX_USES;
use super::ModuleVersion;
use super::host::HostState;
use super::pool::{CallError, Lease, Warm, status_result, timeout_ms};
use crate::metrics::clock;
use crate::protocol::ErrorReply;

/// A run of client requests of one session for one module version, and then their answers.
///
/// The gate fills it with consecutive requests, [`Lease::call_batch`] answers them all, the gate
/// writes the answers in order and clears it. Reused across batches, so its buffers grow once.
#[derive(Default)]
pub struct Batch {
    /// `(command, payload)`; a payload is taken (left empty) once its request has started.
    requests: Vec<(u32, Bytes)>,
    /// One per answered request, in request order: `outcomes[i]` answers `requests[i]`.
    outcomes: Vec<Outcome>,
    /// The successful replies of the batch, back to back; each outcome holds its range.
    replies: Vec<u8>,
    /// Reply buffer for requests served one call at a time.
    single: Vec<u8>,
    /// Payload bytes queued, so the gate can bound a batch.
    queued_bytes: usize,
}

/// How one request of a batch ended.
pub(crate) struct Outcome {
    pushes: Vec<(u32, Bytes)>,
    result: Result<Range<usize>, CallError>,
    /// Time from `request_next` to `request_done`, for the per-command metrics (requests
    /// served by a single call record their own, and leave this 0).
    micros: u64,
}

/// The answer to one request of a batch.
pub struct Answer<'a> {
    /// The request's command id.
    pub command: u32,
    /// Pushes the handler made to its own session, to deliver before the reply.
    pub pushes: &'a [(u32, Bytes)],
    /// The reply payload, or why there is none.
    pub result: Result<&'a [u8], &'a CallError>,
}

impl Answer<'_> {
    /// The reply, or the error frame to answer with (naming `module`, the version that served
    /// the batch); logged at trace (success) or debug (failure) level for `session`.
    pub fn reply(&self, session: u64, module: &ModuleVersion) -> Result<&[u8], ErrorReply> {
        let command = self.command;
        match self.result {
            Ok(reply) => {
                tracing::trace!(
                    session,
                    command,
                    module = module.name(),
                    version = module.version(),
                    "ok"
                );
                Ok(reply)
            }
            Err(err) => {
                tracing::debug!(
                    session, command, module = module.name(), version = module.version(),
                    code = %err.code, "request failed: {}", err.message
                );
                Err(ErrorReply {
                    command,
                    code: err.code.clone(),
                    message: err.message.clone(),
                    module: Some(module.name().to_owned()),
                    version: Some(module.version()),
                })
            }
        }
    }
}

impl Batch {
    /// Queues a request.
    pub fn push(&mut self, command: u32, payload: Bytes) {
        self.queued_bytes += payload.len();
        self.requests.push((command, payload));
    }

    /// Requests queued.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether no request is queued.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Payload bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The answers, in request order (after [`Lease::call_batch`]).
    pub fn answers(&self) -> impl Iterator<Item = Answer<'_>> {
        self.requests
            .iter()
            .zip(&self.outcomes)
            .map(|((command, _), outcome)| Answer {
                command: *command,
                pushes: &outcome.pushes,
                result: match &outcome.result {
                    Ok(range) => Ok(self.replies.get(range.clone()).unwrap_or_default()),
                    Err(err) => Err(err),
                },
            })
    }

    /// Forgets every request and answer, keeping the buffers.
    pub fn clear(&mut self) {
        self.requests.clear();
        self.outcomes.clear();
        self.replies.clear();
        self.queued_bytes = 0;
    }
}

/// What an instance knows about the batch it is serving (empty outside a batch call).
#[derive(Default)]
pub(crate) struct BatchState {
    /// The batch, moved here for the duration of the guest call.
    batch: Batch,
    session: u64,
    /// Index of the next request `request_next` starts.
    next: usize,
    /// The request in progress: started by `request_next`, not yet ended by `request_done`
    /// (its start, in [`clock::ticks`]).
    open: Option<u64>,
    /// Each request's wall-clock limit (coarse-clock milliseconds).
    timeout_ms: u64,
}

/// Defines `request_next` and `request_done`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "request_next",
        |mut caller: Caller<'_, HostState>| -> wasmtime::Result<u64> {
            let state = caller.data_mut();
            let b = &mut state.batch;
            if b.open.is_some() {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::request_next: the previous request was not ended with `request_done`"
                );
            }
            let Some((command, payload)) = b.batch.requests.get_mut(b.next) else {
                return Ok(BATCH_END);
            };
            let command = *command;
            // A started request is never run again, so its payload is not needed any more.
            let input = std::mem::take(payload);
            b.next += 1;
            b.open = Some(clock::ticks());
            let len = u64::try_from(input.len()).unwrap_or(u64::MAX) & u64::from(u32::MAX);
            let call = &mut state.call;
            call.session = b.session;
            call.input = input;
            call.error = None;
            call.own_pushes.clear();
            call.output_base = call.output.len();
            state.cpu_ticks = 0;
            state.deadline_ms = state.env.clock.now_ms() + b.timeout_ms;
            state.wall_timeout = false;
            caller.as_context_mut().set_epoch_deadline(1);
            Ok((u64::from(command) << 32) | len)
        },
    )?;

    linker.func_wrap(
        IMPORT_MODULE,
        "request_done",
        |mut caller: Caller<'_, HostState>, status: u32| -> wasmtime::Result<()> {
            let HostState {
                batch: b,
                call,
                env,
                ..
            } = caller.data_mut();
            let Some(started) = b.open.take() else {
                wasmtime::bail!(
                    "{IMPORT_MODULE}::request_done: no request in progress (call `request_next` first)"
                );
            };
            let command = b.next.checked_sub(1).and_then(|i| b.batch.requests.get(i));
            let command = command.map_or(0, |(c, _)| *c);
            let result = match status_result(status, call, &env.name, command) {
                Ok(()) => Ok(call.output_base..call.output.len()),
                Err(err) => {
                    call.output.truncate(call.output_base);
                    Err(err)
                }
            };
            call.input = Bytes::new();
            b.batch.outcomes.push(Outcome {
                pushes: std::mem::take(&mut call.own_pushes),
                result,
                micros: clock::micros_between(started, clock::ticks()),
            });
            Ok(())
        },
    )?;
    Ok(())
}

impl Lease {
    /// Answers every request of `batch` that has no answer yet, in order, on this lease's
    /// module version: with one guest entry when the module exports batched dispatch, else one
    /// call per request. Never fails: every request gets its reply or its own error.
    pub async fn call_batch(&mut self, session: u64, batch: &mut Batch) {
        while batch.outcomes.len() < batch.requests.len() {
            let warm = match self.warm.take() {
                Some(warm) => warm,
                None => match self.module.acquire().await {
                    Ok(warm) => warm,
                    Err(err) => {
                        self.fail_rest(batch, &err);
                        return;
                    }
                },
            };
            let remaining = batch.requests.len() - batch.outcomes.len();
            if warm.batch.is_some() && remaining > 1 {
                if self.run_batch(warm, session, batch).await == 0 {
                    // The module's batch entry started nothing (it returned or trapped first):
                    // serve the next request on its own, so the loop always progresses.
                    self.call_one(session, batch).await;
                }
            } else {
                self.warm = Some(warm);
                self.call_one(session, batch).await;
            }
        }
    }

    /// Serves the next unanswered request of `batch` with a single dispatch call.
    async fn call_one(&mut self, session: u64, batch: &mut Batch) {
        let i = batch.outcomes.len();
        let Some((command, payload)) = batch.requests.get_mut(i) else {
            return;
        };
        let (command, payload) = (*command, std::mem::take(payload));
        let mut reply = std::mem::take(&mut batch.single);
        let outcome = self
            .call(DispatchKind::Request, command, session, payload, &mut reply)
            .await;
        let result = outcome.result.map(|()| {
            let start = batch.replies.len();
            batch.replies.extend_from_slice(&reply);
            start..batch.replies.len()
        });
        batch.single = reply;
        batch.outcomes.push(Outcome {
            pushes: outcome.own_pushes,
            result,
            // `call` recorded this request's metrics itself.
            micros: 0,
        });
    }

    /// Runs one `__firefly_dispatch_batch` call on `warm` over the unanswered requests.
    /// Returns how many requests the guest started.
    async fn run_batch(&mut self, mut warm: Warm, session: u64, batch: &mut Batch) -> usize {
        let Some(func) = warm.batch.as_ref() else {
            self.warm = Some(warm);
            return 0;
        };
        let module = std::sync::Arc::clone(&self.module);
        let first = batch.outcomes.len();
        module.stats.batches.inc();
        let state = warm.store.data_mut();
        let b = &mut state.batch;
        std::mem::swap(&mut b.batch, batch);
        b.session = session;
        b.next = first;
        b.open = None;
        b.timeout_ms = timeout_ms(&module.limits);
        std::mem::swap(&mut state.call.output, &mut b.batch.replies);
        state.call.reset_for_batch(session);
        // The stretch before the first `request_next` runs under a request's limits too.
        state.cpu_ticks = 0;
        state.deadline_ms = state.env.clock.now_ms() + b.timeout_ms;
        state.wall_timeout = false;
        warm.store.set_epoch_deadline(1);
        let result = func.call_async(&mut warm.store, session).await;
        let state = warm.store.data_mut();
        let started = state.batch.next - first;
        warm.uses = warm
            .uses
            .saturating_add(u32::try_from(started).unwrap_or(u32::MAX));
        let keep = match result {
            Ok(_) => match state.batch.open.take() {
                None => true,
                Some(at) => {
                    // The guest left its batch entry in the middle of a request: that request
                    // fails, and an instance that breaks the protocol is not reused.
                    let err = CallError {
                        code: codes::INTERNAL.to_owned(),
                        message: "module returned from its batch entry without ending the request"
                            .to_owned(),
                    };
                    state.batch.batch.outcomes.push(Outcome {
                        pushes: std::mem::take(&mut state.call.own_pushes),
                        result: Err(err),
                        micros: clock::micros_between(at, clock::ticks()),
                    });
                    false
                }
            },
            Err(err) => {
                let err = module.classify(state, &err);
                if let Some(at) = state.batch.open.take() {
                    state.batch.batch.outcomes.push(Outcome {
                        pushes: std::mem::take(&mut state.call.own_pushes),
                        result: Err(err),
                        micros: clock::micros_between(at, clock::ticks()),
                    });
                } else {
                    tracing::debug!(
                        module = module.name(),
                        version = module.version(),
                        "module failed between the requests of a batch: {}",
                        err.message
                    );
                }
                false
            }
        };
        std::mem::swap(&mut state.call.output, &mut state.batch.batch.replies);
        state.call.reset(0, Bytes::new());
        std::mem::swap(&mut state.batch.batch, batch);
        let done = &batch.outcomes[first..];
        let errors = done.iter().filter(|o| o.result.is_err()).count() as u64;
        module.stats.calls.add(done.len() as u64);
        if errors > 0 {
            module.stats.errors.add(errors);
        }
        module.metrics.record_many(
            done.iter()
                .zip(&batch.requests[first..])
                .map(|(o, (command, _))| (*command, o.micros, o.result.is_err())),
        );
        if keep && warm.uses < MAX_USES {
            self.warm = Some(warm);
        } else {
            module.release(None);
        }
        started
    }

    /// Answers every unanswered request of `batch` with `err` (no instance could be had).
    fn fail_rest(&self, batch: &mut Batch, err: &CallError) {
        let module = &self.module;
        for (command, _) in &batch.requests[batch.outcomes.len()..] {
            module.stats.calls.inc();
            module.stats.errors.inc();
            module.metrics.record_us(*command, 0, true);
            batch.outcomes.push(Outcome {
                pushes: Vec::new(),
                result: Err(err.clone()),
                micros: 0,
            });
        }
    }
}
