//! Resume tokens and taking a parked session back.
//!
//! A token is the session id (16 hex digits) followed by 128 random bits from the OS (32 hex
//! digits): unguessable, and the id part lets the gate find the session without a second
//! index. Only the current token of a session is accepted (compared in constant time); a
//! successful resume replaces it, so each token works once.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Attached, OUTBOUND_QUEUE, Place, Sessions};
use crate::config::SessionSettings;

/// Random bytes in a token.
pub const SECRET_LEN: usize = 16;

/// Why a session could not be resumed (or given a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The listener does not keep sessions across connections.
    #[error("this listener does not resume sessions (no `resume` in its topology entry)")]
    Disabled,
    /// Unknown, used or expired token (deliberately not told apart).
    #[error("the resume token is not valid (unknown, already used, or its session expired)")]
    Invalid,
    /// The OS had no randomness to give.
    #[error("no randomness for a token: {0}")]
    Random(String),
}

/// A session taken back by a new connection.
#[derive(Debug)]
pub struct Resumed {
    /// The session, attached to the new connection.
    pub attached: Attached,
    /// Its next resume token (the presented one is spent).
    pub token: String,
    /// Pushes kept while it was away, oldest first.
    pub replay: Vec<(u32, Bytes)>,
    /// Pushes that did not fit in the buffer and were lost.
    pub dropped: u64,
}

fn secret() -> Result<[u8; SECRET_LEN], ResumeError> {
    let mut s = [0u8; SECRET_LEN];
    getrandom::fill(&mut s).map_err(|e| ResumeError::Random(e.to_string()))?;
    Ok(s)
}

fn format_token(id: u64, secret: &[u8; SECRET_LEN]) -> String {
    format!("{id:016x}{}", hex::encode(secret))
}

pub(super) fn parse_token(token: &str) -> Option<(u64, [u8; SECRET_LEN])> {
    if token.len() != 16 + 2 * SECRET_LEN || !token.is_ascii() {
        return None;
    }
    let id = u64::from_str_radix(&token[..16], 16).ok()?;
    let mut secret = [0u8; SECRET_LEN];
    hex::decode_to_slice(&token[16..], &mut secret).ok()?;
    Some((id, secret))
}

/// Whether two secrets (or their hashes) are equal, in time that does not depend on where
/// they differ.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    /// Issues a new resume token for a session held here (the previous one stops working).
    pub fn issue_token(&self, id: u64) -> Result<String, ResumeError> {
        let mut inner = self.write();
        let entry = inner.map.get_mut(&id).ok_or(ResumeError::Invalid)?;
        if entry.settings.resume.is_none() {
            return Err(ResumeError::Disabled);
        }
        let s = secret()?;
        entry.token = Some(s);
        drop(inner);
        self.share(id);
        Ok(format_token(id, &s))
    }

    /// Gives the session of `token` to a new connection of a listener with `settings`,
    /// wherever the session is: held here ([`Sessions::resume`]), or taken over from the gate
    /// that holds it or, that gate being gone, from the cluster's shared record (see
    /// [`super::shared`]). Same id, user and groups, with the pushes kept for it.
    pub async fn resume_anywhere(
        &self,
        token: &str,
        settings: &SessionSettings,
    ) -> Result<Resumed, ResumeError> {
        let (id, presented) = parse_token(token).ok_or(ResumeError::Invalid)?;
        let gate = match self.place(id) {
            Place::Here => return self.resume(token),
            Place::Gate(gate) => gate,
        };
        if settings.resume.is_none() {
            return Err(ResumeError::Disabled);
        }
        let remote = self.remote().ok_or(ResumeError::Invalid)?;
        let handover = remote.take(gate, id, presented, self.node_index).await?;
        let next = secret()?;
        let attached = self.adopt(id, &handover, settings.clone(), next);
        tracing::info!(
            session = id,
            from = gate,
            replayed = handover.replay.len(),
            dropped = handover.dropped,
            "session resumed from another gate"
        );
        Ok(Resumed {
            attached,
            token: format_token(id, &next),
            dropped: handover.dropped,
            replay: handover.into_replay(),
        })
    }

    /// Gives the session of `token` to a new connection: same id, user and groups, with the
    /// pushes kept while it was parked. If the session's old connection is still attached
    /// (a half-open connection the client gave up on), the new one takes over and the old
    /// one closes without ending the session.
    pub fn resume(&self, token: &str) -> Result<Resumed, ResumeError> {
        let (id, presented) = parse_token(token).ok_or(ResumeError::Invalid)?;
        let next = secret()?;
        let generation = self.next_generation();
        let mut inner = self.write();
        let entry = inner.map.get_mut(&id).ok_or(ResumeError::Invalid)?;
        if entry.settings.resume.is_none() {
            return Err(ResumeError::Disabled);
        }
        if !entry.token.as_ref().is_some_and(|t| same(t, &presented)) {
            return Err(ResumeError::Invalid);
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        entry.tx = Some(tx);
        entry.generation = generation;
        entry.token = Some(next);
        let parked = entry
            .parked
            .take()
            .map(|p| p.into_inner().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default();
        drop(inner);
        self.share(id);
        tracing::debug!(
            session = id,
            replayed = parked.buf.len(),
            dropped = parked.dropped,
            "session resumed"
        );
        Ok(Resumed {
            attached: Attached { id, generation, rx },
            token: format_token(id, &next),
            replay: parked.buf.into(),
            dropped: parked.dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let s = [7u8; SECRET_LEN];
        let t = format_token(0x0001_0000_0000_002a, &s);
        assert_eq!(t.len(), 48);
        assert_eq!(parse_token(&t), Some((0x0001_0000_0000_002a, s)));
        assert_eq!(parse_token("nope"), None);
        assert_eq!(parse_token(&t[..47]), None);
        assert_eq!(parse_token(&format!("{}é", &t[..46])), None);
    }
}
