//! The cluster's shared session records on the NATS fabric: a JetStream stream used as a
//! key-value store (`firefly_sessions_<cluster>`, in memory, one message per key, at most
//! [`MAX_RECORDS`]; spoken through the JetStream API directly, which NATS 2.9 servers
//! answer) that lets a resume token work on any gate (see [`crate::sessions::shared`]).
//!
//! * `s.<session id in hex>`: a [`SessionRecord`], written by the gate holding the session
//!   whenever it changes (coalesced: one write per session per round, in order); removed when
//!   the session ends. Pushes for a session whose gate is gone are appended to it by
//!   compare-and-set, and a gate taking the session over claims it by compare-and-set, so a
//!   push is either in what the new gate replays or sent to the new gate: never lost between.
//! * `alive.<node index>`: when each node was last alive (ms since the Unix epoch, every
//!   [`ALIVE_EVERY`]): a session of a dead gate may be resumed until that time plus its grace.
//!
//! Records of sessions whose gate died and that nobody resumed expire with the bucket's
//! [`RECORD_MAX_AGE`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::gone::{Audience, GoneLog, Missed};
pub(crate) use super::jetstream::{CasError, RecordError};
use super::jetstream::{Stream, stream_safe};
use super::{Fabric, NatsError};
use crate::cluster::trust::Refusal;
use crate::sessions::SessionRecord;
use crate::wall::now_ms;

/// How often a node writes that it is alive.
pub const ALIVE_EVERY: Duration = Duration::from_secs(2);
/// How long a record nobody rewrites is kept.
pub const RECORD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// At most this many records are kept (a count, not a byte size: a memory stream with a
/// byte limit reserves that much of the NATS server's JetStream memory up front).
pub const MAX_RECORDS: i64 = 1_000_000;
/// Pushes for sessions of gone gates waiting to be appended to their records.
const GONE_QUEUE: usize = 4096;

/// A push sent while the gate it was for was gone.
pub(crate) enum GonePush {
    /// To one session of gate `gate`: kept in the session's record.
    Session {
        gate: u16,
        session: u64,
        topic: u32,
        payload: Bytes,
    },
    /// To the sessions of an audience: logged for gate `gate` (see [`super::gone`]).
    Broadcast {
        gate: u16,
        audience: Audience,
        topic: u32,
        payload: Bytes,
    },
}

/// One process's handle on the shared records.
pub struct SharedSessions {
    stream: Stream,
    /// Pushes to groups, users and everyone that gone gates' sessions missed.
    log: GoneLog,
    /// Writes waiting for the writer (`None`: remove), the newest per session.
    pending: Mutex<HashMap<u64, Option<SessionRecord>>>,
    wake: Notify,
    /// The records this process wrote, newest (only those are removed when their sessions
    /// end; all are written again into a re-made stream).
    written: Mutex<HashMap<u64, SessionRecord>>,
    gone_tx: mpsc::Sender<GonePush>,
    gone_rx: Mutex<Option<mpsc::Receiver<GonePush>>>,
}

impl std::fmt::Debug for SharedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSessions")
            .field("stream", &self.stream.name())
            .finish_non_exhaustive()
    }
}

/// The JetStream stream holding `cluster`'s shared session records.
pub fn stream_name(cluster: &str) -> String {
    format!("firefly_sessions_{}", stream_safe(cluster))
}

fn record_key(session: u64) -> String {
    format!("s.{session:016x}")
}

fn alive_key(index: u16) -> String {
    format!("alive.{index}")
}

impl SharedSessions {
    /// The shared records of `cluster`, reached through `fabric`.
    pub fn new(fabric: Arc<Fabric>, cluster: &str) -> Arc<Self> {
        let (gone_tx, gone_rx) = mpsc::channel(GONE_QUEUE);
        let settings = serde_json::json!({
            "description": "firefly: sessions a resume token can take to any gate",
            "retention": "limits",
            "max_msgs_per_subject": 1,
            "max_age": RECORD_MAX_AGE.as_nanos() as u64,
            "max_msgs": MAX_RECORDS,
            "max_msg_size": 1024 * 1024,
            "storage": "memory",
            "num_replicas": 1,
            "discard": "old",
            "allow_direct": true,
        });
        // Under the cluster's subjects (`firefly.<cluster>.>`, what its NATS user may use).
        let prefix = format!("firefly.{cluster}.sessions");
        Arc::new(SharedSessions {
            log: GoneLog::new(fabric.clone(), cluster),
            stream: Stream::new(fabric, stream_name(cluster), prefix, settings),
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            written: Mutex::new(HashMap::new()),
            gone_tx,
            gone_rx: Mutex::new(Some(gone_rx)),
        })
    }

    /// After a request: if the stream had to be made again (the NATS server lost it), every
    /// record held here is written again.
    fn after_remade(&self) {
        if self.stream.take_remade() {
            let held = self.rewrite_all();
            tracing::warn!(
                stream = %self.stream.name(),
                "shared session stream made again (the NATS server lost it): writing the {held} records held here again"
            );
        }
    }

    /// Queues every record this process holds for writing (into a re-made stream); how many.
    fn rewrite_all(&self) -> usize {
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (session, record) in written.iter() {
            pending
                .entry(*session)
                .or_insert_with(|| Some(record.clone()));
        }
        self.wake.notify_one();
        written.len()
    }

    /// Queues a write (`Some`) or removal of a session's record.
    pub fn save(&self, session: u64, record: Option<SessionRecord>) {
        {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            match &record {
                Some(record) => {
                    written.insert(session, record.clone());
                }
                None if written.remove(&session).is_none() => return,
                None => {}
            }
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session, record);
        self.wake.notify_one();
    }

    /// This process no longer writes session's record (another gate took it over).
    pub fn disown(&self, session: u64) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session);
    }

    /// Queues a push for a session whose gate is gone (appended to its record in order).
    pub(crate) fn gone_push(&self, push: GonePush) -> bool {
        match self.gone_tx.try_send(push) {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!("push to a session of a gone gate dropped: the queue is full");
                false
            }
        }
    }

    /// The pushes queued by [`SharedSessions::gone_push`] (taken once, by the cluster's task).
    pub(crate) fn take_gone_queue(&self) -> Option<mpsc::Receiver<GonePush>> {
        self.gone_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Logs a push to `audience` sent while gate `gate` was gone.
    pub(crate) async fn log_broadcast(
        &self,
        gate: u16,
        audience: &Audience,
        topic: u32,
        payload: &[u8],
    ) -> Result<(), CasError> {
        self.log.log(gate, audience, topic, payload).await
    }

    /// The pushes to its groups, its user and everyone that the session of `record` missed
    /// while its gate `gate` was gone (at most `room`; see [`super::gone`]).
    pub(crate) async fn missed(
        &self,
        gate: u16,
        record: &SessionRecord,
        room: u64,
    ) -> Result<Missed, RecordError> {
        self.log.missed(gate, record, room).await
    }

    /// The newest value of `key` and its revision (`None`: none, or removed).
    async fn get(&self, key: &str) -> Result<Option<(Bytes, u64)>, RecordError> {
        let found = self.stream.last(key).await;
        self.after_remade();
        Ok(found?.map(|found| (found.body, found.seq)))
    }

    /// Writes `value` at `key`; with `revision`, only if that is still its newest revision.
    async fn put(&self, key: &str, value: Bytes, revision: Option<u64>) -> Result<(), CasError> {
        let put = self.stream.put(key, value, revision).await;
        self.after_remade();
        put.map(|_| ())
    }

    /// A session's record and its revision.
    pub(crate) async fn load(
        &self,
        session: u64,
    ) -> Result<Option<(SessionRecord, u64)>, RecordError> {
        let Some((value, revision)) = self.get(&record_key(session)).await? else {
            return Ok(None);
        };
        let record = rmp_serde::from_slice(&value).map_err(|e| RecordError::Refused {
            key: record_key(session),
            why: Refusal::Malformed(e.to_string()),
        })?;
        Ok(Some((record, revision)))
    }

    /// Replaces a session's record if it is still at `revision`.
    pub(crate) async fn update(
        &self,
        session: u64,
        record: &SessionRecord,
        revision: u64,
    ) -> Result<(), CasError> {
        let bytes =
            rmp_serde::to_vec_named(record).map_err(|e| NatsError::Encode(e.to_string()))?;
        self.put(&record_key(session), Bytes::from(bytes), Some(revision))
            .await
    }

    /// When node `index` last said it was alive (ms since the Unix epoch).
    pub(crate) async fn alive_at(&self, index: u16) -> Option<u64> {
        let (value, _) = self.get(&alive_key(index)).await.ok()??;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    /// Writes the queued records, and every [`ALIVE_EVERY`] that node `index` is alive,
    /// until `stop`.
    pub(crate) async fn run_writer(
        self: Arc<Self>,
        index: u16,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut alive = tokio::time::interval(ALIVE_EVERY);
        alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.wake.notified() => {}
                _ = alive.tick() => {
                    if let Err(err) = self.put_alive(index).await {
                        tracing::warn!("shared sessions: {err}");
                    }
                }
            }
            let batch =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
            let mut batch = batch.into_iter();
            while let Some((session, record)) = batch.next() {
                if let Err(err) = self.write(session, record.as_ref()).await {
                    tracing::warn!(session, "shared session record not written: {err}");
                    // Retried with the next round, unless newer writes replaced them.
                    self.requeue(std::iter::once((session, record)).chain(batch));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.wake.notify_one();
                    break;
                }
            }
        }
    }

    fn requeue(&self, writes: impl Iterator<Item = (u64, Option<SessionRecord>)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (session, record) in writes {
            pending.entry(session).or_insert(record);
        }
    }

    async fn put_alive(&self, index: u16) -> Result<(), CasError> {
        self.put(&alive_key(index), Bytes::from(now_ms().to_string()), None)
            .await
    }

    async fn write(&self, session: u64, record: Option<&SessionRecord>) -> Result<(), CasError> {
        let bytes = match record {
            // Written by the gate holding the session: pushes logged for this gate from now
            // on are the ones the session misses if the gate dies.
            Some(record) => rmp_serde::to_vec_named(&SessionRecord {
                at_ms: now_ms(),
                ..record.clone()
            })
            .map_err(|e| NatsError::Encode(e.to_string()))?,
            // A removal: the empty value (one message per subject is kept).
            None => Vec::new(),
        };
        self.put(&record_key(session), Bytes::from(bytes), None)
            .await
    }

    /// Whether a session of a gate last alive at `alive` (or, not known, now) is still in
    /// its grace window of `grace_ms`.
    pub(crate) fn within_grace(alive: Option<u64>, grace_ms: u64) -> bool {
        now_ms() <= alive.unwrap_or_else(now_ms).saturating_add(grace_ms)
    }
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
