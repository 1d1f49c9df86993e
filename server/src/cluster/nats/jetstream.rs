//! One JetStream stream of the cluster, spoken through the JetStream API directly (which NATS
//! 2.9 servers answer): made on first use and again after a NATS restart lost it, values
//! signed by the node that wrote them and checked when read. The shared session records
//! ([`super::sessions`]) and the pushes gone gates missed ([`super::gone`]) each keep one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{Fabric, NatsError};
use crate::cluster::trust::Refusal;

/// How long a request to JetStream may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

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

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    /// The store could not be reached or read (NATS down, its stream gone).
    #[error(transparent)]
    Store(#[from] NatsError),
    /// The value was not signed by a node of this cluster for its key, so it is not used.
    #[error("shared record `{key}` refused: {why}")]
    Refused {
        /// The value's key.
        key: String,
        /// Why.
        why: Refusal,
    },
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CasError {
    /// Someone wrote the key in between (compare-and-set): read it again.
    #[error("written by another process meanwhile")]
    Conflict,
    /// NATS failed.
    #[error(transparent)]
    Failed(#[from] NatsError),
}

/// A value as a stream keeps it: its bytes, signed by the node that wrote them with the key
/// the cluster's master certified for that node, over the cluster, the key (so a value cannot
/// be moved to another key) and the bytes. Anyone who may publish on the cluster's NATS can
/// still remove or spoil a value, but not write one that a node takes.
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

/// A value read from a stream: its body (checked) and its sequence in the stream.
pub(crate) struct Found {
    pub body: Bytes,
    pub seq: u64,
}

/// A value read by [`Stream::next`].
pub(crate) struct Next {
    pub key: String,
    pub seq: u64,
    /// Its body, or why it is refused.
    pub body: Result<Bytes, RecordError>,
}

/// One stream: `name`, its subjects `<prefix>.<key>`.
pub(crate) struct Stream {
    fabric: Arc<Fabric>,
    name: String,
    prefix: String,
    /// The stream's settings beyond its name and subjects (JetStream's JSON).
    settings: serde_json::Value,
    /// Whether the stream is known to exist. Cleared when a request to it fails (a restarted
    /// NATS server has lost a memory stream), so that the next request makes it again.
    made: AtomicBool,
    /// Held while the stream is made; `true` once it was made at least once, so that a later
    /// making is known to be a re-making.
    making: tokio::sync::Mutex<bool>,
    /// Set when the stream was made again (NATS lost it), until [`Stream::take_remade`].
    remade: AtomicBool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Stream `name` with subjects under `prefix` and `settings` (an object of JetStream's
    /// stream configuration, without `name` and `subjects`).
    pub(crate) fn new(
        fabric: Arc<Fabric>,
        name: String,
        prefix: String,
        settings: serde_json::Value,
    ) -> Self {
        Stream {
            fabric,
            name,
            prefix,
            settings,
            made: AtomicBool::new(false),
            making: tokio::sync::Mutex::new(false),
            remade: AtomicBool::new(false),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The stream's subject for `key`.
    pub(crate) fn subject(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// The client, with the stream made on first use and again after it was lost.
    async fn client(&self) -> Result<&async_nats::Client, NatsError> {
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
            self.remade.store(true, Ordering::Release);
        }
        Ok(client)
    }

    /// Whether the stream was made again since the last call (NATS had lost it, and what it
    /// held with it).
    pub(crate) fn take_remade(&self) -> bool {
        self.remade.swap(false, Ordering::AcqRel)
    }

    /// A request to the stream failed: it may be gone (a NATS restart loses memory streams);
    /// the next request makes it again (making an existing stream changes nothing).
    pub(crate) fn forget(&self) {
        self.made.store(false, Ordering::Release);
    }

    /// Creates the stream (an existing one is fine).
    async fn make(&self, client: &async_nats::Client) -> Result<(), NatsError> {
        let mut config = self.settings.clone();
        config["name"] = self.name.clone().into();
        config["subjects"] = serde_json::json!([format!("{}.>", self.prefix)]);
        let answer = self
            .api(
                client,
                &format!("$JS.API.STREAM.CREATE.{}", self.name),
                config.to_string().into(),
                None,
            )
            .await?;
        match answer.get("error") {
            // 10058: it exists already (made by another process).
            Some(e) if e["err_code"] != 10058 => Err(jetstream_error(
                &format!("$JS.API.STREAM.CREATE.{}", self.name),
                e,
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
    ) -> Result<serde_json::Value, NatsError> {
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
        let message = tokio::time::timeout(ANSWER_WITHIN, request)
            .await
            .map_err(|_| no_answer(subject))?
            .map_err(|e| NatsError::request(subject, e))?;
        serde_json::from_slice(&message.payload).map_err(|e| NatsError::JetStream {
            subject: subject.to_owned(),
            code: 0,
            description: format!("unreadable answer: {e}"),
        })
    }

    /// `body` signed by this process for `key` (see [`Sealed`]).
    fn seal(&self, key: &str, body: &[u8]) -> Result<Bytes, NatsError> {
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
            .map_err(|e| NatsError::Encode(e.to_string()))
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

    /// The newest value of `key` (`None`: none, or removed).
    pub(crate) async fn last(&self, key: &str) -> Result<Option<Found>, RecordError> {
        let request = serde_json::json!({ "last_by_subj": self.subject(key) });
        let found = self.direct_get(request).await?.map(|(_, found)| found);
        // An empty value is a removal.
        self.opened(key, found.filter(|found| !found.body.is_empty()))
    }

    /// The first value at or after sequence `from` whose key matches `key` (a wildcard
    /// works): its key, its sequence, and its body if a node of this cluster signed it.
    pub(crate) async fn next(&self, key: &str, from: u64) -> Result<Option<Next>, RecordError> {
        let request = serde_json::json!({ "seq": from, "next_by_subj": self.subject(key) });
        let Some((subject, found)) = self.direct_get(request).await? else {
            return Ok(None);
        };
        let key = subject
            .strip_prefix(&format!("{}.", self.prefix))
            .unwrap_or(&subject)
            .to_owned();
        let body = self.open(&key, &found.body);
        Ok(Some(Next {
            key,
            seq: found.seq,
            body,
        }))
    }

    fn opened(&self, key: &str, found: Option<Found>) -> Result<Option<Found>, RecordError> {
        let Some(found) = found else {
            return Ok(None);
        };
        let body = self.open(key, &found.body)?;
        Ok(Some(Found {
            body,
            seq: found.seq,
        }))
    }

    /// A direct get (`$JS.API.DIRECT.GET`): the message's subject and its raw value.
    async fn direct_get(
        &self,
        request: serde_json::Value,
    ) -> Result<Option<(String, Found)>, RecordError> {
        let client = self.client().await?;
        let got = self.direct_get_on(client, request).await;
        if got.is_err() {
            self.forget();
        }
        Ok(got?)
    }

    async fn direct_get_on(
        &self,
        client: &async_nats::Client,
        request: serde_json::Value,
    ) -> Result<Option<(String, Found)>, NatsError> {
        let subject = format!("$JS.API.DIRECT.GET.{}", self.name);
        let message = tokio::time::timeout(
            ANSWER_WITHIN,
            client.request(subject.clone(), request.to_string().into()),
        )
        .await
        .map_err(|_| no_answer(&subject))?
        .map_err(|e| NatsError::request(&subject, e))?;
        if message.status.is_some_and(|s| s.as_u16() == 404) {
            return Ok(None);
        }
        if let Some(status) = message.status.filter(|s| s.as_u16() >= 300) {
            return Err(NatsError::JetStream {
                subject,
                code: status.as_u16().into(),
                description: message.description.clone().unwrap_or_default(),
            });
        }
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let seq = header("Nats-Sequence")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| NatsError::JetStream {
                subject: subject.clone(),
                code: 0,
                description: "no sequence in the answer".into(),
            })?;
        let found_subject = header("Nats-Subject").unwrap_or_default();
        Ok(Some((
            found_subject,
            Found {
                body: message.payload,
                seq,
            },
        )))
    }

    /// Writes `value` at `key` (signed; the empty value, a removal, as it is); with
    /// `revision`, only if that is still the key's newest sequence. Its sequence.
    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        revision: Option<u64>,
    ) -> Result<u64, CasError> {
        let value = if value.is_empty() {
            value
        } else {
            self.seal(key, &value)?
        };
        let client = self.client().await?;
        let headers = revision.map(|r| {
            let mut h = async_nats::HeaderMap::new();
            h.insert(
                "Nats-Expected-Last-Subject-Sequence",
                r.to_string().as_str(),
            );
            h
        });
        let subject = self.subject(key);
        let answer = self
            .api(client, &subject, value, headers)
            .await
            .inspect_err(|_| {
                // No stream took the message ("no responders"): it may be gone.
                self.forget();
            })?;
        match answer.get("error") {
            None => Ok(answer["seq"].as_u64().unwrap_or_default()),
            // 10071: wrong last sequence.
            Some(e) if e["err_code"] == 10071 => Err(CasError::Conflict),
            Some(e) => {
                self.forget();
                Err(jetstream_error(&subject, e).into())
            }
        }
    }
}

fn no_answer(subject: &str) -> NatsError {
    NatsError::NoAnswer {
        subject: subject.to_owned(),
        within: ANSWER_WITHIN,
    }
}

/// JetStream's `{"code", "err_code", "description"}` error as a [`NatsError`].
fn jetstream_error(subject: &str, e: &serde_json::Value) -> NatsError {
    NatsError::JetStream {
        subject: subject.to_owned(),
        code: e["err_code"].as_u64().unwrap_or_default(),
        description: e["description"].as_str().unwrap_or_default().to_owned(),
    }
}
