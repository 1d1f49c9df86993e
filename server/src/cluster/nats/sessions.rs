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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{Notify, mpsc};

use crate::cluster::nats::Fabric;
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

/// A push for a session whose gate was gone when it was sent.
pub(crate) struct GonePush {
    pub gate: u16,
    pub session: u64,
    pub topic: u32,
    pub payload: Bytes,
}

/// One process's handle on the shared records.
pub struct SharedSessions {
    fabric: Arc<Fabric>,
    bucket: String,
    /// Subjects of the stream: `<prefix>.<key>`.
    prefix: String,
    /// Whether the stream is known to exist. Cleared when a request to it fails (a restarted
    /// NATS server has lost a memory stream), so that the next request makes it again.
    made: AtomicBool,
    /// Held while the stream is made; `true` once it was made at least once, so that a later
    /// making is known to be a re-making (and every record held here is written again).
    making: tokio::sync::Mutex<bool>,
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
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// The JetStream stream holding `cluster`'s shared session records.
pub fn stream_name(cluster: &str) -> String {
    format!("firefly_sessions_{}", stream_safe(cluster))
}

/// `cluster` as it appears in a JetStream stream name and in subjects: letters and digits
/// as they are, every other character escaped (`_` as `__`, `-` as `_d`, any other as `_x`
/// and its code point in hex), so two cluster names never share a stream (`x-y` and `x_y`
/// once did).
pub(crate) fn stream_safe(cluster: &str) -> String {
    let mut out = String::with_capacity(cluster.len());
    for c in cluster.chars() {
        match c {
            c if c.is_ascii_alphanumeric() => out.push(c),
            '_' => out.push_str("__"),
            '-' => out.push_str("_d"),
            other => out.push_str(&format!("_x{:x}_", u32::from(other))),
        }
    }
    out
}

fn record_key(session: u64) -> String {
    format!("s.{session:016x}")
}

fn alive_key(index: u16) -> String {
    format!("alive.{index}")
}

/// A value as the stream keeps it: its bytes, signed by the node that wrote them with the key
/// the cluster's master certified for that node, over the cluster, the key (so a value cannot
/// be moved to another session) and the bytes. Anyone who may publish on the cluster's NATS
/// can still remove or spoil a record (so that its session cannot be resumed elsewhere), but
/// not write one that a gate takes: no record with a token of their own, no session bound to
/// a user of their choice.
#[derive(Serialize, Deserialize)]
struct Sealed {
    node: String,
    key: ByteBuf,
    cert: ByteBuf,
    proof: ByteBuf,
    body: ByteBuf,
}

fn seal_parts<'a>(cluster: &'a str, key: &'a str, body: &'a [u8]) -> [&'a [u8]; 4] {
    [
        b"firefly session record",
        cluster.as_bytes(),
        key.as_bytes(),
        body,
    ]
}

/// Why a shared record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    /// The store could not be reached or read (NATS down, its stream gone).
    #[error("{0}")]
    Store(String),
    /// The record was not signed by a node of this cluster for its key, so it is not used.
    #[error("shared record `{key}` refused: {why}")]
    Refused {
        /// The record's key.
        key: String,
        /// Why.
        why: Refusal,
    },
}

/// Why a compare-and-set did not happen.
pub(crate) enum CasError {
    /// Someone wrote the record in between: read it again.
    Conflict,
    /// NATS failed.
    Failed(String),
}

impl CasError {
    fn into_message(self) -> String {
        match self {
            CasError::Conflict => "written by another process meanwhile".into(),
            CasError::Failed(e) => e,
        }
    }
}

impl SharedSessions {
    /// The shared records of `cluster`, reached through `fabric`.
    pub fn new(fabric: Arc<Fabric>, cluster: &str) -> Arc<Self> {
        let (gone_tx, gone_rx) = mpsc::channel(GONE_QUEUE);
        Arc::new(SharedSessions {
            fabric,
            bucket: stream_name(cluster),
            // Under the cluster's subjects (`firefly.<cluster>.>`, what its NATS user may use).
            prefix: format!("firefly.{cluster}.sessions"),
            made: AtomicBool::new(false),
            making: tokio::sync::Mutex::new(false),
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            written: Mutex::new(HashMap::new()),
            gone_tx,
            gone_rx: Mutex::new(Some(gone_rx)),
        })
    }

    /// The stream's subject for `key`.
    fn subject(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// The client, with the stream made on first use and again after it was lost.
    async fn store(&self) -> Result<&async_nats::Client, String> {
        let client = self.fabric.client().await?;
        if self.made.load(Ordering::Acquire) {
            return Ok(client);
        }
        let mut made_before = self.making.lock().await;
        if self.made.load(Ordering::Acquire) {
            return Ok(client);
        }
        self.make(client).await?;
        self.made.store(true, Ordering::Release);
        if std::mem::replace(&mut *made_before, true) {
            let held = self.rewrite_all();
            tracing::warn!(
                stream = %self.bucket,
                "shared session stream made again (the NATS server lost it): writing the {held} records held here again"
            );
        }
        Ok(client)
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

    /// A request to the stream failed: it may be gone (a NATS restart loses memory streams);
    /// the next request makes it again (making an existing stream changes nothing).
    fn forget_stream(&self) {
        self.made.store(false, Ordering::Release);
    }

    /// Creates the stream (an existing one is fine).
    async fn make(&self, client: &async_nats::Client) -> Result<(), String> {
        let config = serde_json::json!({
            "name": self.bucket,
            "description": "firefly: sessions a resume token can take to any gate",
            "subjects": [format!("{}.>", self.prefix)],
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
        let answer = self
            .api(
                client,
                &format!("$JS.API.STREAM.CREATE.{}", self.bucket),
                config.to_string().into(),
                None,
            )
            .await?;
        match answer.get("error") {
            // 10058: it exists already (made by another process).
            Some(e) if e["err_code"] != 10058 => Err(format!(
                "JetStream stream `{}` (is JetStream enabled on the NATS server, \
                 `nats-server -js`?): {e}",
                self.bucket
            )),
            _ => Ok(()),
        }
    }

    /// A JetStream API request (or a publish to the stream, which JetStream acknowledges).
    async fn api(
        &self,
        client: &async_nats::Client,
        subject: &str,
        body: Bytes,
        headers: Option<async_nats::HeaderMap>,
    ) -> Result<serde_json::Value, String> {
        let request = async {
            match headers {
                Some(h) => {
                    client
                        .request_with_headers(subject.to_owned(), h, body)
                        .await
                }
                None => client.request(subject.to_owned(), body).await,
            }
        };
        let message = tokio::time::timeout(Duration::from_secs(5), request)
            .await
            .map_err(|_| format!("JetStream: no answer to {subject} within 5s"))?
            .map_err(|e| {
                format!("JetStream ({subject}): {e} (is JetStream enabled, `nats-server -js`?)")
            })?;
        serde_json::from_slice(&message.payload)
            .map_err(|e| format!("JetStream ({subject}): unreadable answer: {e}"))
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

    /// The newest value of `key` and its revision (`None`: none, or removed).
    async fn get(&self, key: &str) -> Result<Option<(Bytes, u64)>, RecordError> {
        let client = self.store().await.map_err(RecordError::Store)?;
        let got = self.direct_get(client, key).await;
        if got.is_err() {
            self.forget_stream();
        }
        let Some((sealed, revision)) = got.map_err(RecordError::Store)? else {
            return Ok(None);
        };
        Ok(Some((self.open(key, &sealed)?, revision)))
    }

    /// `body` signed by this process for `key` (see [`Sealed`]).
    fn seal(&self, key: &str, body: &[u8]) -> Result<Bytes, String> {
        let credential = self.fabric.credential();
        let (public, cert) = credential.public();
        let proof = credential.prove(&seal_parts(self.fabric.cluster(), key, body));
        let sealed = Sealed {
            node: self.fabric.node().to_owned(),
            key: ByteBuf::from(public),
            cert: ByteBuf::from(cert),
            proof: ByteBuf::from(proof),
            body: ByteBuf::from(body.to_vec()),
        };
        rmp_serde::to_vec(&sealed)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    /// The body of the value at `key`, if a node of this cluster signed it for that key.
    fn open(&self, key: &str, sealed: &[u8]) -> Result<Bytes, RecordError> {
        let refused = |why: Refusal| RecordError::Refused {
            key: key.to_owned(),
            why,
        };
        let sealed: Sealed = rmp_serde::from_slice(sealed)
            .map_err(|e| refused(Refusal::Malformed(format!("not a sealed record ({e})"))))?;
        let cluster = self.fabric.cluster();
        self.fabric
            .credential()
            .check_peer(
                cluster,
                &sealed.node,
                &sealed.key,
                &sealed.cert,
                &seal_parts(cluster, key, &sealed.body),
                &sealed.proof,
            )
            .map_err(refused)?;
        Ok(Bytes::from(sealed.body.into_vec()))
    }

    async fn direct_get(
        &self,
        client: &async_nats::Client,
        key: &str,
    ) -> Result<Option<(Bytes, u64)>, String> {
        let subject = format!("$JS.API.DIRECT.GET.{}", self.bucket);
        let body = serde_json::json!({ "last_by_subj": self.subject(key) }).to_string();
        let message = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subject.clone(), body.into()),
        )
        .await
        .map_err(|_| format!("JetStream: no answer to {subject} within 5s"))?
        .map_err(|e| format!("JetStream ({subject}): {e}"))?;
        if message.status.is_some_and(|s| s.as_u16() == 404) {
            return Ok(None);
        }
        if let Some(status) = message.status.filter(|s| s.as_u16() >= 300) {
            return Err(format!("JetStream ({subject}): status {status}"));
        }
        let revision = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| format!("JetStream ({subject}): no sequence in the answer"))?;
        // An empty value is a removal.
        Ok((!message.payload.is_empty()).then_some((message.payload, revision)))
    }

    /// Writes `value` at `key`; with `revision`, only if that is still its newest revision.
    async fn put(&self, key: &str, value: Bytes, revision: Option<u64>) -> Result<(), CasError> {
        // A removal stays the empty value; anything else is signed.
        let value = if value.is_empty() {
            value
        } else {
            self.seal(key, &value).map_err(CasError::Failed)?
        };
        let client = self.store().await.map_err(CasError::Failed)?;
        let headers = revision.map(|r| {
            let mut h = async_nats::HeaderMap::new();
            h.insert(
                "Nats-Expected-Last-Subject-Sequence",
                r.to_string().as_str(),
            );
            h
        });
        let answer = self
            .api(client, &self.subject(key), value, headers)
            .await
            .map_err(|e| {
                // No stream took the message ("no responders"): it may be gone.
                self.forget_stream();
                CasError::Failed(e)
            })?;
        match answer.get("error") {
            None => Ok(()),
            // 10071: wrong last sequence.
            Some(e) if e["err_code"] == 10071 => Err(CasError::Conflict),
            Some(e) => {
                self.forget_stream();
                Err(CasError::Failed(format!("JetStream: {e}")))
            }
        }
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
        let bytes = rmp_serde::to_vec_named(record).map_err(|e| CasError::Failed(e.to_string()))?;
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

    async fn put_alive(&self, index: u16) -> Result<(), String> {
        self.put(&alive_key(index), Bytes::from(now_ms().to_string()), None)
            .await
            .map_err(CasError::into_message)
    }

    async fn write(&self, session: u64, record: Option<&SessionRecord>) -> Result<(), String> {
        let bytes = match record {
            Some(record) => rmp_serde::to_vec_named(record).map_err(|e| e.to_string())?,
            // A removal: the empty value (one message per subject is kept).
            None => Vec::new(),
        };
        self.put(&record_key(session), Bytes::from(bytes), None)
            .await
            .map_err(CasError::into_message)
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
