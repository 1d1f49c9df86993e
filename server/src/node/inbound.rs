//! What this node does with its peers' messages: the cluster transport's [`Inbound`], answered
//! by the dispatcher (forwarded requests, session events), the sessions (pushes, session
//! operations), hot update (deploys), the data store and the status.

use std::sync::Arc;

use bytes::Bytes;
use firefly_abi::DispatchKind;

use super::NodeCore;
use crate::cluster::Inbound;
use crate::protocol::{Answers, Collected};
use crate::sessions::{OpReply, SessionOp};

impl Inbound for NodeCore {
    async fn serve_run(
        &self,
        session: u64,
        requests: &mut Vec<(u32, Bytes)>,
        out: &mut impl Answers,
    ) {
        self.dispatch
            .serve_forwarded(session, requests.drain(..), out)
            .await;
    }

    async fn serve_one(&self, session: u64, command: u32, payload: Bytes) -> Collected {
        let mut one = Collected::default();
        let request = std::iter::once((command, payload));
        self.dispatch
            .serve_forwarded(session, request, &mut one)
            .await;
        one
    }

    fn push(&self, session: u64, topic: u32, payload: Bytes) {
        if let Err(err) = self
            .dispatch
            .sessions
            .push_from_peer(session, topic, payload)
        {
            tracing::debug!(session, "push from a peer not delivered: {err}");
        }
    }

    async fn session_event(&self, session: u64, connect: bool) {
        let kind = if connect {
            DispatchKind::Connect
        } else {
            DispatchKind::Disconnect
        };
        if !connect {
            self.rooms.session_ended(session);
        }
        self.dispatch.session_event(kind, session).await;
    }

    fn status_json(&self) -> String {
        NodeCore::status_json(self)
    }

    async fn deploy(&self, module: String, version: u32, wasm: Vec<u8>) -> Result<u32, String> {
        let wasm = (!wasm.is_empty()).then_some(&wasm[..]);
        NodeCore::deploy(self, &module, version, wasm)
            .await
            .map(|swapped| swapped.from)
            .map_err(|e| e.to_string())
    }

    async fn data_request(&self, body: Vec<u8>) -> (u32, Vec<u8>) {
        match &self.data {
            Some(data) => data.serve_remote(&body).await,
            None => (
                firefly_abi::data::data_status::UNAVAILABLE,
                format!("node `{}` has no storage", self.name).into_bytes(),
            ),
        }
    }

    fn sessions_op(&self, from: &str, op: SessionOp) -> OpReply {
        self.dispatch.sessions.apply_from(from, op)
    }

    fn peer_gone(&self, peer: &str) {
        let sessions = &self.dispatch.sessions;
        let (told, waiting) = sessions.host_lost(peer);
        if told > 0 {
            tracing::warn!(
                peer,
                sessions = told,
                "a node holding rooms is gone; its rooms' members were told"
            );
        }
        if waiting {
            // Durable rooms: another node takes them over and puts their members back in
            // their groups; the members of those none took are told after the wait.
            let sessions = Arc::downgrade(sessions);
            let peer = peer.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(crate::sessions::ORPHAN_WAIT).await;
                if let Some(sessions) = sessions.upgrade() {
                    let told = sessions.orphans_lost(&peer);
                    if told > 0 {
                        tracing::warn!(
                            peer,
                            sessions = told,
                            "durable rooms of a gone node were not taken over; their members were told"
                        );
                    }
                }
            });
        }
    }
}
