//! Pushes to groups, users and everyone that a gone gate's sessions missed.
//!
//! A push to one session whose gate is gone goes into that session's shared record (see
//! [`super::sessions`]). A push to a group, a user or everyone names no session: the node
//! that sends it does not know which sessions of the gone gate it reaches. So it is logged
//! once per gone gate, in a stream of its own (`firefly_gone_<cluster>`, in memory, kept for
//! [`LOG_MAX_AGE`], at most [`LOG_MAX`] entries), under the audience it was sent to:
//!
//! * `firefly.<cluster>.gone.<gate index>.all`: pushes to everyone;
//! * `firefly.<cluster>.gone.<gate index>.g.<group name in hex>`: pushes to a group;
//! * `firefly.<cluster>.gone.<gate index>.u.<user id in hex>`: pushes to a user.
//!
//! A gate that takes a session over from its record reads the entries of the session's
//! audiences (everyone, its groups, its user) logged for its old gate since its record was
//! last written there ([`crate::sessions::SessionRecord::at_ms`]), and replays them, in the
//! order they were sent, after the pushes kept in the record itself. Entries are signed by the
//! node that logged them, like the records.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::jetstream::{CasError, RecordError, Stream, stream_safe};
use super::{Fabric, NatsError};
use crate::cluster::trust::Refusal;
use crate::sessions::{SessionOp, SessionRecord};
use crate::wall::now_ms;

/// How long an entry is kept: a session resumed later than this after its gate died gets the
/// pushes to it alone, not those to its groups and user.
pub const LOG_MAX_AGE: Duration = Duration::from_secs(3600);
/// At most this many entries are kept, for all gone gates together (the oldest go first).
pub const LOG_MAX: i64 = 100_000;
/// At most this many entries of one audience are read for one session taken over.
const READ_MAX: usize = 10_000;

/// Who a push without a session was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every session.
    All,
    /// The members of a group.
    Group(String),
    /// The sessions bound to a user.
    User(String),
}

impl Audience {
    /// The audience, topic and payload of a push operation (`None`: not a broadcast push).
    pub(crate) fn of(op: &SessionOp) -> Option<(Audience, u32, Bytes)> {
        let (audience, topic, payload) = match op {
            SessionOp::PushAll { topic, payload } => (Audience::All, topic, payload),
            SessionOp::PushGroup {
                group,
                topic,
                payload,
            } => (Audience::Group(group.clone()), topic, payload),
            SessionOp::PushUser {
                user,
                topic,
                payload,
            } => (Audience::User(user.clone()), topic, payload),
            _ => return None,
        };
        Some((audience, *topic, Bytes::from(payload.to_vec())))
    }

    /// Its key in the log of gate `gate`.
    fn key(&self, gate: u16) -> String {
        match self {
            Audience::All => format!("{gate}.all"),
            Audience::Group(group) => format!("{gate}.g.{}", hex::encode(group)),
            Audience::User(user) => format!("{gate}.u.{}", hex::encode(user)),
        }
    }

    /// The audiences a session with `record` belongs to.
    fn of_record(record: &SessionRecord) -> Vec<Audience> {
        let mut all = vec![Audience::All];
        all.extend(record.groups.iter().cloned().map(Audience::Group));
        all.extend(record.user.iter().cloned().map(Audience::User));
        all
    }
}

/// One logged push.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// When it was sent (ms since the Unix epoch, the sender's clock).
    at_ms: u64,
    topic: u32,
    payload: ByteBuf,
}

/// Pushes a session missed, oldest first, and how many did not fit its buffer.
#[derive(Debug, Default)]
pub(crate) struct Missed {
    pub pushes: Vec<(u32, ByteBuf)>,
    pub dropped: u64,
}

/// The log of broadcast pushes to gone gates.
#[derive(Debug)]
pub(crate) struct GoneLog {
    stream: Stream,
}

/// The JetStream stream holding `cluster`'s log.
pub fn stream_name(cluster: &str) -> String {
    format!("firefly_gone_{}", stream_safe(cluster))
}

impl GoneLog {
    /// The log of `cluster`, reached through `fabric`.
    pub(crate) fn new(fabric: Arc<Fabric>, cluster: &str) -> Self {
        let settings = serde_json::json!({
            "description": "firefly: pushes to groups and users that sessions of gone gates missed",
            "retention": "limits",
            "max_age": LOG_MAX_AGE.as_nanos() as u64,
            "max_msgs": LOG_MAX,
            "max_msg_size": 1024 * 1024,
            "storage": "memory",
            "num_replicas": 1,
            "discard": "old",
            "allow_direct": true,
        });
        let prefix = format!("firefly.{cluster}.gone");
        GoneLog {
            stream: Stream::new(fabric, stream_name(cluster), prefix, settings),
        }
    }

    /// Logs a push sent to `audience` while gate `gate` was gone.
    pub(crate) async fn log(
        &self,
        gate: u16,
        audience: &Audience,
        topic: u32,
        payload: &[u8],
    ) -> Result<(), CasError> {
        let entry = Entry {
            at_ms: now_ms(),
            topic,
            payload: ByteBuf::from(payload.to_vec()),
        };
        let body = rmp_serde::to_vec_named(&entry).map_err(|e| NatsError::Encode(e.to_string()))?;
        self.stream
            .put(&audience.key(gate), Bytes::from(body), None)
            .await
            .map(|_| ())
    }

    /// The pushes logged for gate `gate` that the session of `record` (held there) missed:
    /// those to its audiences since its record was written, in the order they were logged,
    /// at most `room` of them (the rest counted as dropped).
    pub(crate) async fn missed(
        &self,
        gate: u16,
        record: &SessionRecord,
        room: u64,
    ) -> Result<Missed, RecordError> {
        let mut found = Vec::new();
        for audience in Audience::of_record(record) {
            self.read(&audience.key(gate), record.at_ms, &mut found)
                .await?;
        }
        found.sort_by_key(|(seq, _)| *seq);
        let mut missed = Missed::default();
        for (_, entry) in found {
            if (missed.pushes.len() as u64) < room {
                missed.pushes.push((entry.topic, entry.payload));
            } else {
                missed.dropped += 1;
            }
        }
        Ok(missed)
    }

    /// Appends the entries at `key` logged at or after `since_ms` to `found`, with their
    /// sequences. An entry not signed by a node of the cluster is skipped.
    async fn read(
        &self,
        key: &str,
        since_ms: u64,
        found: &mut Vec<(u64, Entry)>,
    ) -> Result<(), RecordError> {
        let mut from = 0;
        for _ in 0..READ_MAX {
            let Some(next) = self.stream.next(key, from).await? else {
                return Ok(());
            };
            from = next.seq + 1;
            let entry = next.body.and_then(|body| {
                rmp_serde::from_slice::<Entry>(&body).map_err(|e| RecordError::Refused {
                    key: next.key.clone(),
                    why: Refusal::Malformed(e.to_string()),
                })
            });
            match entry {
                Ok(entry) if entry.at_ms >= since_ms => found.push((next.seq, entry)),
                Ok(_) => {}
                Err(err) => tracing::warn!("a logged push skipped: {err}"),
            }
        }
        tracing::warn!("more than {READ_MAX} pushes logged at `{key}`: the rest are not replayed");
        Ok(())
    }
}
