//! Serving a [`Batch`]: [`Lease::call_batch`] answers every request of one, with one entry into
//! the guest when the module exports batched dispatch, else one call per request; and
//! [`Answer::reply`] turns each answer into the reply or error frame for the client.

use bytes::Bytes;
use firefly_abi::{DispatchKind, codes};

use super::MAX_USES;
use super::batch::{Answer, Batch, Outcome};
use super::instance::Warm;
use super::module::ModuleVersion;
use super::outcome::CallError;
use super::pool::{Lease, timeout_ms};
use crate::metrics::clock;
use crate::protocol::ErrorReply;

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
