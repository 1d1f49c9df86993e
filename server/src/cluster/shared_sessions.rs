//! The cluster's shared session records on the NATS fabric: a JetStream key-value bucket
//! (`firefly_sessions_<cluster>`, in memory, at most [`BUCKET_BYTES`]) that lets a resume
//! token work on any gate (see [`crate::sessions::shared`]).
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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::sync::{Notify, OnceCell, mpsc};

use super::nats::Fabric;
use crate::sessions::SessionRecord;

/// How often a node writes that it is alive.
pub const ALIVE_EVERY: Duration = Duration::from_secs(2);
/// How long a record nobody rewrites is kept.
pub const RECORD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The bucket's size limit.
pub const BUCKET_BYTES: i64 = 256 * 1024 * 1024;
/// Pushes for sessions of gone gates waiting to be appended to their records.
const GONE_QUEUE: usize = 4096;

/// A push for a session whose gate was gone when it was sent.
pub(super) struct GonePush {
    pub gate: u16,
    pub session: u64,
    pub topic: u32,
    pub payload: Bytes,
}

/// One process's handle on the shared records.
pub struct SharedSessions {
    fabric: Arc<Fabric>,
    bucket: String,
    store: OnceCell<kv::Store>,
    /// Writes waiting for the writer (`None`: remove), the newest per session.
    pending: Mutex<HashMap<u64, Option<SessionRecord>>>,
    wake: Notify,
    /// Sessions this process wrote a record for (only those are removed when they end).
    written: Mutex<HashSet<u64>>,
    gone_tx: mpsc::Sender<GonePush>,
    gone_rx: Mutex<Option<mpsc::Receiver<GonePush>>>,
}

impl std::fmt::Debug for SharedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSessions")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn record_key(session: u64) -> String {
    format!("s.{session:016x}")
}

fn alive_key(index: u16) -> String {
    format!("alive.{index}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a compare-and-set did not happen.
pub(super) enum CasError {
    /// Someone wrote the record in between: read it again.
    Conflict,
    /// NATS failed.
    Failed(String),
}

impl SharedSessions {
    /// The shared records of `cluster`, reached through `fabric`.
    pub fn new(fabric: Arc<Fabric>, cluster: &str) -> Arc<Self> {
        let name: String = cluster
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let (gone_tx, gone_rx) = mpsc::channel(GONE_QUEUE);
        Arc::new(SharedSessions {
            fabric,
            bucket: format!("firefly_sessions_{name}"),
            store: OnceCell::new(),
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            written: Mutex::new(HashSet::new()),
            gone_tx,
            gone_rx: Mutex::new(Some(gone_rx)),
        })
    }

    /// The bucket, made on first use.
    async fn store(&self) -> Result<&kv::Store, String> {
        self.store
            .get_or_try_init(|| async {
                let client = self.fabric.client().await?.clone();
                let js = jetstream::new(client);
                match js.get_key_value(&self.bucket).await {
                    Ok(store) => Ok(store),
                    Err(_) => js
                        .create_key_value(kv::Config {
                            bucket: self.bucket.clone(),
                            description: "firefly: sessions a resume token can take to any gate"
                                .into(),
                            history: 1,
                            max_age: RECORD_MAX_AGE,
                            max_bytes: BUCKET_BYTES,
                            max_value_size: 1024 * 1024,
                            storage: jetstream::stream::StorageType::Memory,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| {
                            format!(
                                "JetStream bucket `{}` (is JetStream enabled on the NATS \
                                 server, `nats-server -js`?): {e}",
                                self.bucket
                            )
                        }),
                }
            })
            .await
    }

    /// Queues a write (`Some`) or removal of a session's record.
    pub fn save(&self, session: u64, record: Option<SessionRecord>) {
        {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            match &record {
                Some(_) => {
                    written.insert(session);
                }
                None if !written.remove(&session) => return,
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
    pub(super) fn gone_push(&self, push: GonePush) -> bool {
        match self.gone_tx.try_send(push) {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!("push to a session of a gone gate dropped: the queue is full");
                false
            }
        }
    }

    /// The pushes queued by [`SharedSessions::gone_push`] (taken once, by the cluster's task).
    pub(super) fn take_gone_queue(&self) -> Option<mpsc::Receiver<GonePush>> {
        self.gone_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// A session's record and its revision.
    pub(super) async fn load(&self, session: u64) -> Result<Option<(SessionRecord, u64)>, String> {
        let store = self.store().await?;
        let entry = store
            .entry(record_key(session))
            .await
            .map_err(|e| format!("reading session {session:016x}: {e}"))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let record = rmp_serde::from_slice(&entry.value)
            .map_err(|e| format!("session {session:016x}'s record: {e}"))?;
        Ok(Some((record, entry.revision)))
    }

    /// Replaces a session's record if it is still at `revision`.
    pub(super) async fn update(
        &self,
        session: u64,
        record: &SessionRecord,
        revision: u64,
    ) -> Result<(), CasError> {
        let store = self.store().await.map_err(CasError::Failed)?;
        let bytes = rmp_serde::to_vec_named(record).map_err(|e| CasError::Failed(e.to_string()))?;
        match store
            .update(record_key(session), Bytes::from(bytes), revision)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(CasError::Conflict),
            Err(e) => Err(CasError::Failed(e.to_string())),
        }
    }

    /// When node `index` last said it was alive (ms since the Unix epoch).
    pub(super) async fn alive_at(&self, index: u16) -> Option<u64> {
        let store = self.store().await.ok()?;
        let value = store.get(alive_key(index)).await.ok()??;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    /// Writes the queued records, and every [`ALIVE_EVERY`] that node `index` is alive,
    /// until `stop`.
    pub(super) async fn run_writer(
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

    async fn put_alive(&self, index: u16) -> Result<(), String> {
        let store = self.store().await?;
        store
            .put(alive_key(index), Bytes::from(now_ms().to_string()))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn write(&self, session: u64, record: Option<&SessionRecord>) -> Result<(), String> {
        let store = self.store().await?;
        match record {
            Some(record) => {
                let bytes = rmp_serde::to_vec_named(record).map_err(|e| e.to_string())?;
                store
                    .put(record_key(session), Bytes::from(bytes))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            None => store
                .delete(record_key(session))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Whether a session of a gate last alive at `alive` (or, not known, now) is still in
    /// its grace window of `grace_ms`.
    pub(super) fn within_grace(alive: Option<u64>, grace_ms: u64) -> bool {
        now_ms() <= alive.unwrap_or_else(now_ms).saturating_add(grace_ms)
    }
}
