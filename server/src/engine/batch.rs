//! Batched dispatch: several pipelined requests of one session served by one entry into the
//! guest. This file holds the batch itself; `pipeline.rs` serves it and `host/batch.rs` is the
//! guest's side (`request_next`, `request_done`).
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

use super::outcome::CallError;

/// A run of client requests of one session for one module version, and then their answers.
///
/// The gate fills it with consecutive requests, [`Lease::call_batch`] answers them all, the gate
/// writes the answers in order and clears it. Reused across batches, so its buffers grow once.
#[derive(Default)]
pub struct Batch {
    /// `(command, payload)`; a payload is taken (left empty) once its request has started.
    pub(crate) requests: Vec<(u32, Bytes)>,
    /// One per answered request, in request order: `outcomes[i]` answers `requests[i]`.
    pub(crate) outcomes: Vec<Outcome>,
    /// The successful replies of the batch, back to back; each outcome holds its range.
    pub(crate) replies: Vec<u8>,
    /// Reply buffer for requests served one call at a time.
    pub(crate) single: Vec<u8>,
    /// Payload bytes queued, so the gate can bound a batch.
    queued_bytes: usize,
}

/// How one request of a batch ended.
pub(crate) struct Outcome {
    pub(crate) pushes: Vec<(u32, Bytes)>,
    pub(crate) result: Result<Range<usize>, CallError>,
    /// Time from `request_next` to `request_done`, for the per-command metrics (requests
    /// served by a single call record their own, and leave this 0).
    pub(crate) micros: u64,
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
    pub(crate) batch: Batch,
    pub(crate) session: u64,
    /// Index of the next request `request_next` starts.
    pub(crate) next: usize,
    /// The request in progress: started by `request_next`, not yet ended by `request_done`
    /// (its start, in [`clock::ticks`]).
    pub(crate) open: Option<u64>,
    /// Each request's wall-clock limit (coarse-clock milliseconds).
    pub(crate) timeout_ms: u64,
}
