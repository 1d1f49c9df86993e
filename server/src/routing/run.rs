//! A session's run of requests: the one loop that serves them, whoever hands them in (a gate
//! connection's read, a run another node forwarded here), and the one place that keeps their
//! order.
//!
//! Requests go to a local module version or to another node. Consecutive requests for one
//! local version are served by one entry into the module (a [`Batch`]); consecutive requests
//! for one other node are gathered into one forwarded run, and up to [`MAX_PIPELINE`] of them
//! stay in flight. The ordering rule: before a request goes anywhere else (another version,
//! another node, an answer decided here), every earlier one is answered. So a session's
//! requests run one at a time, in order, and their answers come out in order, wherever each
//! one runs.

use std::collections::VecDeque;

use bytes::Bytes;
use firefly_abi::codes;

use super::{Dispatcher, LocalRoute};
use crate::cluster::{Peer, Pending, RpcError};
use crate::engine::{Batch, Lease};
use crate::protocol::{Answers, ErrorReply};

/// Most requests served by one batched entry into a module (each still has its own limits).
const MAX_BATCH: usize = 64;

/// A batch is served once its payloads reach this many bytes, even short of [`MAX_BATCH`].
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Most forwarded requests one run keeps in flight to other nodes.
pub const MAX_PIPELINE: usize = 64;

/// A session's requests being served, in order. Reused across reads, so its buffers grow once.
pub struct Run<'d> {
    dispatcher: &'d Dispatcher,
    session: u64,
    /// The instance serving `batch`; released whenever the run waits on something else.
    lease: Option<Lease>,
    /// Consecutive requests for the lease's version, not served yet.
    batch: Batch,
    forwards: Forwards<'d>,
    /// Requests no local module serves are answered `unknown_command`, never forwarded.
    local_only: bool,
    /// Requests answered, and of those with an error, since [`Run::take_counts`].
    requests: u64,
    errors: u64,
}

impl<'d> Run<'d> {
    /// A run of `session`'s requests on `dispatcher`'s routes.
    pub fn new(dispatcher: &'d Dispatcher, session: u64) -> Self {
        Self {
            dispatcher,
            session,
            lease: None,
            batch: Batch::default(),
            forwards: Forwards::default(),
            local_only: false,
            requests: 0,
            errors: 0,
        }
    }

    /// A run served by local modules only (a run another node forwarded here).
    pub fn local_only(dispatcher: &'d Dispatcher, session: u64) -> Self {
        Self {
            local_only: true,
            ..Self::new(dispatcher, session)
        }
    }

    /// The session the requests run for (changes when a gate connection resumes another).
    pub fn set_session(&mut self, session: u64) {
        self.session = session;
    }

    /// Takes a request: served now, or queued behind the ones like it. Its answer (and every
    /// earlier one) goes to `out` at the latest by [`Run::settle`].
    pub async fn request(&mut self, command: u32, payload: Bytes, out: &mut impl Answers) {
        let route = self.dispatcher.local_route(command, self.lease.as_ref());
        match route {
            LocalRoute::Same => {}
            LocalRoute::Other(version) => {
                // A batch runs entirely on the version it leased: what was queued goes first.
                self.settle(out).await;
                self.lease = Some(Lease::new(version));
            }
            LocalRoute::None => {
                self.serve_batch(out).await;
                return self.elsewhere(command, payload, out).await;
            }
        }
        self.batch.push(command, payload);
        if self.batch.len() >= MAX_BATCH || self.batch.queued_bytes() >= MAX_BATCH_BYTES {
            self.serve_batch(out).await;
        }
    }

    /// A request no local module serves: forwarded to the node its route picks, or answered
    /// `unknown_command`.
    async fn elsewhere(&mut self, command: u32, payload: Bytes, out: &mut impl Answers) {
        let dispatcher = self.dispatcher;
        let route = match self.local_only {
            true => None,
            false => dispatcher.remote_route(command),
        };
        let Some(route) = route else {
            self.settle(out).await;
            self.error(out, &dispatcher.unknown_command(command));
            return;
        };
        // Never hold a local instance while waiting on the network.
        self.lease = None;
        let sessions = &dispatcher.sessions;
        let peer = match route.pick(self.session, &payload, |room| sessions.room_host(room)) {
            Ok(peer) => peer,
            Err(why) => {
                self.settle(out).await;
                let why = why.to_string();
                self.error(out, &ErrorReply::new(command, codes::BAD_REQUEST, why));
                return;
            }
        };
        if self.forwards.other_than(peer) {
            self.drain(out).await;
        }
        self.forwards.gather(peer, command, payload);
        if self.forwards.pending >= MAX_PIPELINE {
            self.drain(out).await;
        }
    }

    /// Answers `reply` in the request's place, after every earlier request: what a gate
    /// decides itself (a refusal, a rate limit).
    pub async fn answer_here(&mut self, reply: &ErrorReply, out: &mut impl Answers) {
        self.settle(out).await;
        self.error(out, reply);
    }

    /// Answers every request taken so far, in order, into `out`.
    pub async fn settle(&mut self, out: &mut impl Answers) {
        self.serve_batch(out).await;
        if !self.forwards.is_empty() {
            self.drain(out).await;
        }
    }

    /// Answers everything, then lets the instance go (an idle session holds none).
    pub async fn finish(&mut self, out: &mut impl Answers) {
        self.settle(out).await;
        self.lease = None;
    }

    /// Drops what was taken and not answered (the client is gone), and the instance.
    pub fn abandon(&mut self) {
        self.batch.clear();
        self.forwards.clear();
        self.lease = None;
    }

    /// Lets the instance go now (before waiting on a slow client); the next request leases
    /// one again.
    pub fn release(&mut self) {
        if self.batch.is_empty() {
            self.lease = None;
        }
    }

    /// Requests answered since the last call, and of those answered with an error.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.requests),
            std::mem::take(&mut self.errors),
        )
    }

    fn error(&mut self, out: &mut impl Answers, reply: &ErrorReply) {
        self.requests += 1;
        self.errors += 1;
        out.error(reply);
    }

    /// Serves the queued batch on the lease and hands out its answers, in order.
    async fn serve_batch(&mut self, out: &mut impl Answers) {
        if self.batch.is_empty() {
            return;
        }
        let Some(lease) = self.lease.as_mut() else {
            // Unreachable: requests are queued only with a lease on their module.
            self.batch.clear();
            return;
        };
        lease.call_batch(self.session, &mut self.batch).await;
        let module = lease.module();
        for answer in self.batch.answers() {
            self.requests += 1;
            for (topic, payload) in answer.pushes {
                out.push(*topic, payload);
            }
            match answer.reply(self.session, module) {
                Ok(reply) => out.reply(answer.command, reply),
                Err(reply) => {
                    self.errors += 1;
                    out.error(&reply);
                }
            }
        }
        self.batch.clear();
    }

    /// Sends the run being gathered, then waits for every forwarded run, oldest first, and
    /// hands out its answers.
    async fn drain(&mut self, out: &mut impl Answers) {
        self.forwards.send(self.session).await;
        while let Some((commands, peer, started)) = self.forwards.inflight.pop_front() {
            let answered = match started {
                Ok(pending) => pending.replies().await,
                Err(err) => Err(err),
            };
            let mut tally = Tally {
                out: &mut *out,
                requests: 0,
                errors: 0,
            };
            match answered {
                Ok(replies) => replies.replay(&commands, &peer.name, &mut tally),
                Err(err) => {
                    tracing::debug!(peer = %peer.name, requests = commands.len(), "forward failed: {err}");
                    let (code, message) = (err.code(), err.to_string());
                    for &command in &commands {
                        tally.error(&ErrorReply::new(command, code, message.clone()));
                    }
                }
            }
            self.requests += tally.requests;
            self.errors += tally.errors;
            self.forwards.recycle(commands);
        }
        self.forwards.pending = 0;
    }
}

/// Counts what passes to `out`.
struct Tally<'o, A> {
    out: &'o mut A,
    requests: u64,
    errors: u64,
}

impl<A: Answers> Answers for Tally<'_, A> {
    fn push(&mut self, topic: u32, payload: &[u8]) {
        self.out.push(topic, payload);
    }

    fn reply(&mut self, command: u32, payload: &[u8]) {
        self.requests += 1;
        self.out.reply(command, payload);
    }

    fn error(&mut self, reply: &ErrorReply) {
        self.requests += 1;
        self.errors += 1;
        self.out.error(reply);
    }
}

/// Requests forwarded to other nodes whose answers are still to be handed out.
///
/// Consecutive requests for one node are gathered into a run and sent as one message (one
/// message and one reply each way per run, not per request); runs already sent wait in
/// `inflight`, oldest first.
#[derive(Default)]
struct Forwards<'a> {
    /// Runs sent: their commands, the node, the pending reply.
    inflight: VecDeque<(Vec<u32>, &'a Peer, Result<Pending<'a>, RpcError>)>,
    /// The run being gathered, for `gathering`'s node.
    gathering: Option<&'a Peer>,
    commands: Vec<u32>,
    payloads: Vec<(u32, Bytes)>,
    /// Command lists of answered runs, kept for the next ones.
    spare: Vec<Vec<u32>>,
    /// Requests sent or gathered and not answered yet.
    pending: usize,
}

impl<'a> Forwards<'a> {
    fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Whether requests for a node other than `peer` are waiting.
    fn other_than(&self, peer: &Peer) -> bool {
        let node = self
            .gathering
            .or_else(|| self.inflight.front().map(|(_, p, _)| *p));
        node.is_some_and(|p| p.name != peer.name)
    }

    /// Adds a request to the run for `peer` (which must be the run's node, see `other_than`).
    fn gather(&mut self, peer: &'a Peer, command: u32, payload: Bytes) {
        self.gathering = Some(peer);
        self.commands.push(command);
        self.payloads.push((command, payload));
        self.pending += 1;
    }

    /// Sends the run being gathered.
    async fn send(&mut self, session: u64) {
        let Some(peer) = self.gathering.take() else {
            return;
        };
        let requests = std::mem::take(&mut self.payloads);
        let started = peer.forward_run(session, requests).await;
        let next = self.spare.pop().unwrap_or_default();
        let commands = std::mem::replace(&mut self.commands, next);
        self.inflight.push_back((commands, peer, started));
    }

    fn recycle(&mut self, mut commands: Vec<u32>) {
        commands.clear();
        if self.spare.len() < 4 {
            self.spare.push(commands);
        }
    }

    fn clear(&mut self) {
        self.inflight.clear();
        self.gathering = None;
        self.commands.clear();
        self.payloads.clear();
        self.pending = 0;
    }
}
