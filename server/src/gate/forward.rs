//! Requests a connection forwards to other nodes: gathered into runs per node, sent as one
//! message each, answered in order.

use std::collections::VecDeque;

use crate::cluster::wire::Msg;
use crate::cluster::{Peer, Pending, RpcError};

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
