//! Sessions that survive their gate: a resume token works on any gate of the cluster.
//!
//! A session lives on one gate. When its client comes back on another gate with its token,
//! the new gate takes the session over, keeping its id, user, groups and the pushes kept
//! for it:
//!
//! * **From the gate that holds it**, when that gate is up: a [`SessionOp::Hand`] over the
//!   node link. The old gate checks the token, gives up the session (its connection, if any,
//!   closes; no disconnect event fires) and remembers where it went, so pushes and
//!   operations still addressed to it follow ([`RemoteSessions::moved_to`]).
//! * **From the shared record**, when that gate is gone: every gate on a fabric with shared
//!   state (NATS JetStream) writes a [`SessionRecord`] of each session that has a resume
//!   token: gate, user, groups, the token's hash, its grace window. Pushes sent to a session
//!   whose gate is gone are appended to its record (at most its buffer; the rest are counted
//!   as dropped). The new gate checks the token against the hash and the grace window
//!   against the time the old gate was last alive, then takes the record over.
//!
//! Pushes the dead gate had accepted but not yet written to its client die with it; pushes
//! sent after it is known gone are kept.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::resume::{ResumeError, SECRET_LEN};
use super::{Attached, Entry, OUTBOUND_QUEUE, Parked, Sessions};
use crate::config::SessionSettings;

/// A session as the cluster's shared state keeps it (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The index of the gate holding it.
    pub gate: u16,
    /// Its user.
    pub user: Option<String>,
    /// Its groups.
    pub groups: Vec<String>,
    /// SHA-256 of the secret of its current resume token.
    pub token: ByteBuf,
    /// Its grace window after its gate is gone, in ms.
    pub grace_ms: u64,
    /// How many pushes may be kept for it.
    pub buffer: u64,
    /// Pushes sent while its gate was gone, oldest first.
    #[serde(default)]
    pub pushes: Vec<(u32, ByteBuf)>,
    /// Pushes that did not fit.
    #[serde(default)]
    pub dropped: u64,
    /// When the gate holding it last wrote it (ms since the Unix epoch): pushes to its
    /// groups and user logged for a gone gate since then are the ones it missed.
    #[serde(default)]
    pub at_ms: u64,
}

impl SessionRecord {
    /// Keeps a push for the session (its gate is gone); past its buffer, counts it dropped.
    pub fn keep(&mut self, topic: u32, payload: &[u8]) {
        if (self.pushes.len() as u64) < self.buffer {
            self.pushes.push((topic, ByteBuf::from(payload.to_vec())));
        } else {
            self.dropped += 1;
        }
    }

    /// Whether `secret` is the secret of the session's current token.
    pub fn token_is(&self, secret: &[u8; SECRET_LEN]) -> bool {
        super::resume::same(&self.token, &token_hash(secret))
    }

    /// What a gate taking the session over gets from this record.
    pub fn into_handover(self) -> Handover {
        Handover {
            user: self.user,
            groups: self.groups,
            replay: self.pushes,
            dropped: self.dropped,
        }
    }
}

/// The hash a record keeps of a token's secret (a reader of the shared state cannot resume).
pub fn token_hash(secret: &[u8; SECRET_LEN]) -> Vec<u8> {
    Sha256::digest(secret).to_vec()
}

/// A session given to another gate: what it needs to go on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// Its user.
    pub user: Option<String>,
    /// Its groups.
    pub groups: Vec<String>,
    /// Pushes kept for it, oldest first.
    pub replay: Vec<(u32, ByteBuf)>,
    /// Pushes lost because its buffer was full.
    pub dropped: u64,
}

impl Entry {
    /// The shared record of this session, held by gate `gate` (`None` until it has a token:
    /// no one can resume it before).
    fn record(&self, gate: u16) -> Option<SessionRecord> {
        let resume = self.settings.resume?;
        let token = self.token.as_ref()?;
        Some(SessionRecord {
            gate,
            user: self.user.clone(),
            groups: self.groups.clone(),
            token: ByteBuf::from(token_hash(token)),
            grace_ms: resume.grace.as_millis() as u64,
            buffer: resume.buffer as u64,
            pushes: Vec::new(),
            dropped: 0,
            at_ms: 0,
        })
    }
}

impl Sessions {
    /// Writes the shared record of session `id` (after a change to it), if it has one.
    pub(super) fn share(&self, id: u64) {
        let Some(remote) = self.remote() else {
            return;
        };
        let record = self
            .read()
            .map
            .get(&id)
            .and_then(|e| e.record(self.node_index));
        if let Some(record) = record {
            remote.save(id, Some(record));
        }
    }

    /// Gives session `id` to gate `to`, if `secret` is its token's: it leaves this gate
    /// without ending (its connection, if any, closes) and what it had goes with it.
    pub fn hand_over(
        &self,
        id: u64,
        secret: &[u8; SECRET_LEN],
        to: u16,
    ) -> Result<Handover, ResumeError> {
        let mut inner = self.write();
        let entry = inner.map.get(&id).ok_or(ResumeError::Invalid)?;
        if entry.settings.resume.is_none() {
            return Err(ResumeError::Disabled);
        }
        if !entry
            .token
            .as_ref()
            .is_some_and(|t| super::resume::same(t, secret))
        {
            return Err(ResumeError::Invalid);
        }
        let entry = inner.map.remove(&id).ok_or(ResumeError::Invalid)?;
        for group in &entry.groups {
            inner.group_lost_member(group, id);
        }
        if let Some(user) = &entry.user {
            inner.unbind(user, id);
        }
        drop(inner);
        if let Some(remote) = self.remote() {
            remote.handed_over(id, to);
        }
        let parked = entry
            .parked
            .map(|p| p.into_inner().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default();
        tracing::info!(session = id, to, "session handed over to another gate");
        Ok(Handover {
            user: entry.user,
            groups: entry.groups,
            replay: parked
                .buf
                .into_iter()
                .map(|(t, p)| (t, ByteBuf::from(p.to_vec())))
                .collect(),
            dropped: parked.dropped,
        })
    }

    /// Takes in session `id` from another gate with what it had, attached to a new
    /// connection of a listener with `settings`; returns the attachment and its next token.
    pub(super) fn adopt(
        &self,
        id: u64,
        handover: &Handover,
        settings: SessionSettings,
        next: [u8; SECRET_LEN],
    ) -> Attached {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let generation = self.next_generation();
        let mut inner = self.write();
        // A stale entry (it cannot be attached: its token was just proven elsewhere) goes.
        inner.forget(id);
        for group in &handover.groups {
            inner.groups.entry(group.clone()).or_default().insert(id);
        }
        if let Some(user) = &handover.user {
            inner.users.entry(user.clone()).or_default().insert(id);
        }
        inner.map.insert(
            id,
            Entry {
                tx: Some(tx),
                generation,
                parked: None::<std::sync::Mutex<Parked>>,
                user: handover.user.clone(),
                groups: handover.groups.clone(),
                token: Some(next),
                settings,
            },
        );
        drop(inner);
        if let Some(remote) = self.remote() {
            remote.handed_over(id, self.node_index);
        }
        self.share(id);
        Attached { id, generation, rx }
    }
}

impl Handover {
    /// Its pushes as the gate replays them.
    pub(super) fn into_replay(self) -> Vec<(u32, Bytes)> {
        self.replay
            .into_iter()
            .map(|(t, p)| (t, Bytes::from(p.into_vec())))
            .collect()
    }
}
