//! Sessions across gates, as the cluster carries them: session operations and pushes sent to
//! the gate that holds a session (following it when it moved), the hand-over of a session
//! to the gate its client came back on, and over NATS the shared records that let a gate
//! take over a session whose gate is gone (see [`crate::sessions::shared`]).

use std::sync::Arc;

use bytes::Bytes;
use firefly_abi::session_status;

use super::nats::gone::Audience;
use super::nats::sessions::{CasError, GonePush, SharedSessions};
use super::{Cluster, MAX_MOVED, Peer, wire};
use crate::sessions::resume::{ResumeError, SECRET_LEN};
use crate::sessions::{
    Handover, OpError, OpFuture, OpReply, PushError, RemoteSessions, SessionOp, SessionRecord,
    TakeFuture,
};

impl Cluster {
    /// Over NATS: writes the shared session records and keeps the pushes for sessions of
    /// gone gates, until `stop`.
    pub async fn run_shared(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(mut gone) = shared.take_gone_queue() else {
            return;
        };
        let writer = tokio::spawn(shared.clone().run_writer(self.my_index, stop.clone()));
        let mut stop_gone = stop;
        loop {
            tokio::select! {
                _ = stop_gone.changed() => break,
                push = gone.recv() => match push {
                    Some(GonePush::Session { gate, session, topic, payload }) => {
                        self.keep_gone_push(&shared, gate, session, topic, payload).await;
                    }
                    Some(GonePush::Broadcast { gate, audience, topic, payload }) => {
                        if let Err(err) = shared.log_broadcast(gate, &audience, topic, &payload).await {
                            tracing::warn!(gate, "push to {audience:?} lost for the sessions of a gone gate: {err}");
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = writer.await;
    }

    /// Whether gate `index` is reachable (not presumed down).
    fn up(&self, index: u16) -> Option<&Arc<Peer>> {
        self.by_index.get(&index).filter(|p| !p.presumed_down())
    }

    fn remember_moved(&self, session: u64, to: u16) {
        let mut moved = self.moved.write().unwrap_or_else(|p| p.into_inner());
        if to == self.my_index {
            moved.remove(&session);
            return;
        }
        if moved.len() >= MAX_MOVED {
            tracing::warn!("forgetting {} moved sessions (too many)", moved.len());
            moved.clear();
        }
        moved.insert(session, to);
    }

    /// A push for a session whose gate was gone: to the gate that took it over, or into its
    /// record (compare-and-set, so a gate claiming the record meanwhile is not missed).
    async fn keep_gone_push(
        &self,
        shared: &SharedSessions,
        gate: u16,
        session: u64,
        topic: u32,
        payload: Bytes,
    ) {
        for _ in 0..8 {
            let (mut record, revision) = match shared.load(session).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    tracing::debug!(session, gate, "push to a session no gate holds dropped");
                    return;
                }
                Err(err) => {
                    tracing::warn!(session, "push to a session of a gone gate lost: {err}");
                    return;
                }
            };
            if let Some(peer) = self
                .up(record.gate)
                .filter(|_| record.gate != self.my_index)
            {
                self.remember_moved(session, record.gate);
                peer.send(wire::Msg::Push {
                    session,
                    topic,
                    payload: serde_bytes::ByteBuf::from(payload.to_vec()),
                });
                return;
            }
            record.keep(topic, &payload);
            match shared.update(session, &record, revision).await {
                Ok(()) => return,
                Err(CasError::Conflict) => continue,
                Err(CasError::Failed(err)) => {
                    tracing::warn!(session, "push to a session of a gone gate lost: {err}");
                    return;
                }
            }
        }
        tracing::warn!(
            session,
            "push to a session of a gone gate lost: its record kept changing"
        );
    }

    /// Takes a session over from its record, its gate being gone (see [`Cluster::take`]).
    /// `Ok(Err(gate))`: the record says gate `gate`, which is up, holds it: ask there.
    /// `lost`: a gate that answered it does not hold the session (it restarted): its record
    /// is taken as a gone gate's.
    async fn take_from_record(
        &self,
        session: u64,
        secret: &[u8; SECRET_LEN],
        to: u16,
        lost: Option<u16>,
    ) -> Result<Result<Handover, u16>, ResumeError> {
        let Some(shared) = &self.shared else {
            return Err(ResumeError::Invalid);
        };
        for _ in 0..8 {
            let (record, revision) = match shared.load(session).await {
                Ok(Some(found)) => found,
                Ok(None) => return Err(ResumeError::Invalid),
                Err(err) => {
                    tracing::warn!(session, "resume from the shared record failed: {err}");
                    return Err(ResumeError::Invalid);
                }
            };
            if record.gate != to && Some(record.gate) != lost && self.up(record.gate).is_some() {
                return Ok(Err(record.gate));
            }
            if !record.token_is(secret) {
                return Err(ResumeError::Invalid);
            }
            let alive = shared.alive_at(record.gate).await;
            if !SharedSessions::within_grace(alive, record.grace_ms) {
                return Err(ResumeError::Invalid);
            }
            let claimed = SessionRecord {
                gate: to,
                pushes: Vec::new(),
                dropped: 0,
                ..record.clone()
            };
            match shared.update(session, &claimed, revision).await {
                Ok(()) => return Ok(Ok(with_missed(shared, record).await)),
                Err(CasError::Conflict) => continue,
                Err(CasError::Failed(err)) => {
                    tracing::warn!(session, "resume from the shared record failed: {err}");
                    return Err(ResumeError::Invalid);
                }
            }
        }
        Err(ResumeError::Invalid)
    }
}

/// What a gate taking a session over from `record` gets: the pushes kept in the record, then
/// those to its groups, its user and everyone that were logged for its gone gate, within its
/// buffer.
async fn with_missed(shared: &SharedSessions, record: SessionRecord) -> Handover {
    let (gate, room) = (
        record.gate,
        record.buffer.saturating_sub(record.pushes.len() as u64),
    );
    let missed = match shared.missed(gate, &record, room).await {
        Ok(missed) => missed,
        Err(err) => {
            tracing::warn!(
                gate,
                "pushes to the groups and user of a taken session lost: {err}"
            );
            Default::default()
        }
    };
    let mut handover = record.into_handover();
    handover.replay.extend(missed.pushes);
    handover.dropped += missed.dropped;
    handover
}

impl RemoteSessions for Cluster {
    fn send_op(&self, gate: u16, op: SessionOp) {
        if let (
            Some(shared),
            SessionOp::PushMany {
                sessions,
                topic,
                payload,
            },
        ) = (&self.shared, &op)
            && self.by_index.get(&gate).is_some_and(|p| p.presumed_down())
        {
            for &session in sessions {
                shared.gone_push(GonePush::Session {
                    gate,
                    session,
                    topic: *topic,
                    payload: Bytes::from(payload.to_vec()),
                });
            }
            return;
        }
        match self.by_index.get(&gate) {
            Some(peer) => peer.send(wire::Msg::Sessions { id: 0, op }),
            None => tracing::debug!(gate, "session operation for an unknown gate dropped"),
        }
    }

    fn broadcast_op(&self, op: SessionOp) {
        for gate in &self.gates {
            // A gone gate's sessions may be resumed elsewhere: they get this push from the log.
            if let Some(shared) = &self.shared
                && gate.presumed_down()
                && let Some((audience, topic, payload)) = Audience::of(&op)
            {
                shared.gone_push(GonePush::Broadcast {
                    gate: gate.index,
                    audience,
                    topic,
                    payload,
                });
                continue;
            }
            gate.send(wire::Msg::Sessions {
                id: 0,
                op: op.clone(),
            });
        }
    }

    fn request_op(&self, gate: u16, op: SessionOp) -> OpFuture<'_> {
        Box::pin(async move {
            let Some(peer) = self.by_index.get(&gate) else {
                return Err(OpError::NoSuchGate(gate));
            };
            let unexpected = |got: String| OpError::Unexpected { gate, got };
            match peer.request(|id| wire::Msg::Sessions { id, op }).await {
                Ok(wire::Msg::Reply {
                    result: Ok(bytes), ..
                }) => rmp_serde::from_slice(&bytes).map_err(|e| unexpected(e.to_string())),
                Ok(other) => Err(unexpected(other.kind().to_owned())),
                Err(err) => Err(OpError::Unavailable {
                    gate,
                    reason: err.to_string(),
                }),
            }
        })
    }

    fn push(&self, gate: u16, session: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        let Some(peer) = self.by_index.get(&gate) else {
            return Err(PushError::NoSuchSession);
        };
        if let Some(shared) = &self.shared
            && peer.presumed_down()
        {
            let push = GonePush::Session {
                gate,
                session,
                topic,
                payload,
            };
            return if shared.gone_push(push) {
                Ok(())
            } else {
                Err(PushError::Backpressure)
            };
        }
        peer.send(wire::Msg::Push {
            session,
            topic,
            payload: serde_bytes::ByteBuf::from(payload.to_vec()),
        });
        Ok(())
    }

    fn locate(&self, session: u64) -> crate::sessions::LocateFuture<'_> {
        Box::pin(async move {
            let shared = self.shared.as_ref()?;
            let (record, _) = shared.load(session).await.ok()??;
            Some(record.gate).filter(|gate| self.up(*gate).is_some())
        })
    }

    fn moved_to(&self, session: u64) -> Option<u16> {
        self.moved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session)
            .copied()
    }

    fn handed_over(&self, session: u64, to: u16) {
        self.remember_moved(session, to);
        if to != self.my_index
            && let Some(shared) = &self.shared
        {
            shared.disown(session);
        }
    }

    fn save(&self, session: u64, record: Option<SessionRecord>) {
        if let Some(shared) = &self.shared {
            shared.save(session, record);
        }
    }

    fn take(&self, gate: u16, session: u64, secret: [u8; SECRET_LEN], to: u16) -> TakeFuture<'_> {
        Box::pin(async move {
            let mut gate = gate;
            // Each step either gets the session or learns a newer place for it.
            for _ in 0..4 {
                let mut lost = None;
                if gate != to
                    && let Some(peer) = self.up(gate)
                {
                    let op = SessionOp::Hand {
                        session,
                        secret: serde_bytes::ByteBuf::from(secret.to_vec()),
                        to,
                    };
                    let reply = match peer.request(|id| wire::Msg::Sessions { id, op }).await {
                        Ok(wire::Msg::Reply {
                            result: Ok(bytes), ..
                        }) => rmp_serde::from_slice::<OpReply>(&bytes).ok(),
                        _ => None,
                    };
                    match reply {
                        Some(OpReply {
                            handover: Some(handover),
                            ..
                        }) => return Ok(handover),
                        Some(OpReply {
                            moved: Some(next), ..
                        }) if next != gate => {
                            gate = next;
                            continue;
                        }
                        Some(OpReply { status, .. }) if status == session_status::INVALID => {
                            return Err(ResumeError::Invalid);
                        }
                        Some(OpReply { status, .. })
                            if status == session_status::NO_SUCH_SESSION =>
                        {
                            lost = Some(gate);
                        }
                        // No answer: the shared record knows more.
                        _ => {}
                    }
                }
                match self.take_from_record(session, &secret, to, lost).await? {
                    Ok(handover) => return Ok(handover),
                    Err(next) if next != gate => gate = next,
                    Err(_) => return Err(ResumeError::Invalid),
                }
            }
            Err(ResumeError::Invalid)
        })
    }
}
