//! Requests a connection forwards to other nodes: gathered into runs per node, sent as one
//! message each, answered in order.

use std::collections::VecDeque;

use bytes::BytesMut;
use firefly_abi::codes;

use super::Listener;
use crate::cluster::wire::Msg;
use crate::cluster::{Peer, Pending, RpcError};
use crate::protocol::ErrorReply;

/// Most forwarded requests one connection keeps in flight to one node.
pub(super) const MAX_PIPELINE: usize = 64;

/// Requests of this read forwarded to other nodes whose replies are still to be written.
///
/// Consecutive requests for one node are gathered into a run and sent as one `ForwardRun`
/// message (one message and one reply each way per run, not per request); runs already sent
/// wait in `inflight`, oldest first.
#[derive(Default)]
pub(super) struct Forwards<'a> {
    /// Runs sent: their commands, the node, the pending reply.
    pub(super) inflight: VecDeque<(Vec<u32>, &'a Peer, Result<Pending<'a>, RpcError>)>,
    /// The run being gathered, for `gathering`'s node.
    gathering: Option<&'a Peer>,
    commands: Vec<u32>,
    payloads: Vec<(u32, serde_bytes::ByteBuf)>,
    /// Requests sent or gathered and not answered yet.
    pub(super) pending: usize,
}

impl<'a> Forwards<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Whether requests for a node other than `peer` are waiting.
    pub(super) fn other_than(&self, peer: &Peer) -> bool {
        let node = self
            .gathering
            .or_else(|| self.inflight.front().map(|(_, p, _)| *p));
        node.is_some_and(|p| p.name != peer.name)
    }

    /// Adds a request to the run for `peer` (which must be the run's node, see `other_than`).
    pub(super) fn gather(&mut self, peer: &'a Peer, command: u32, payload: serde_bytes::ByteBuf) {
        self.gathering = Some(peer);
        self.commands.push(command);
        self.payloads.push((command, payload));
        self.pending += 1;
    }

    /// Sends the run being gathered.
    pub(super) async fn send(&mut self, session: u64) {
        let Some(peer) = self.gathering.take() else {
            return;
        };
        let requests = std::mem::take(&mut self.payloads);
        let started = peer
            .start_many(requests.len(), |id| Msg::ForwardRun {
                id,
                session,
                requests,
            })
            .await;
        self.inflight
            .push_back((std::mem::take(&mut self.commands), peer, started));
    }
}

/// Writes the answers to one forwarded run (`commands`, in order): each reply or error frame
/// after its pushes, or the failure for every request of the run.
pub(super) fn write_answers(
    shared: &Listener,
    commands: &[u32],
    peer: &Peer,
    answer: Result<Msg, RpcError>,
    wbuf: &mut BytesMut,
    errors: &mut u64,
    push_frames: bool,
) {
    let error_command = shared.settings.error_command;
    let codec = &shared.codec;
    let fail = |command: u32, code: &str, message: String, wbuf: &mut BytesMut| {
        let reply = ErrorReply::new(command, code, message);
        codec.encode(error_command, &reply.to_msgpack(), wbuf);
    };
    let replies = match answer {
        Ok(Msg::ReplyRun { replies, .. }) => replies,
        Ok(Msg::Reply { pushes, result, .. }) => vec![(pushes, result)],
        Ok(other) => {
            for &command in commands {
                *errors += 1;
                fail(
                    command,
                    codes::INTERNAL,
                    format!("unexpected answer {other:?}"),
                    wbuf,
                );
            }
            return;
        }
        Err(err) => {
            let code = match err {
                RpcError::Timeout { .. } => codes::TIMEOUT,
                RpcError::Unavailable { .. } => codes::NODE_UNAVAILABLE,
            };
            tracing::debug!(peer = %peer.name, requests = commands.len(), "forward failed: {err}");
            for &command in commands {
                *errors += 1;
                fail(command, code, err.to_string(), wbuf);
            }
            return;
        }
    };
    let mut replies = replies.into_iter();
    for &command in commands {
        let Some((pushes, result)) = replies.next() else {
            let message = format!("node `{}` sent no answer for this request", peer.name);
            *errors += 1;
            fail(command, codes::INTERNAL, message, wbuf);
            continue;
        };
        for (topic, payload) in &pushes {
            codec.encode_push(push_frames, *topic, payload, wbuf);
        }
        match result {
            Ok(reply) => codec.encode(command, &reply, wbuf),
            Err(reply) => {
                *errors += 1;
                codec.encode(error_command, &reply.to_msgpack(), wbuf);
            }
        }
    }
}
