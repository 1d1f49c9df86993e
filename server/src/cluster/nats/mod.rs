//! NATS as the cluster fabric (`cluster.transport: nats://...`): the byte transport under the
//! same links the direct mesh uses.
//!
//! Only the transport changes. A link from node A to node B is still a byte stream that runs
//! the mutual handshake of [`crate::cluster::trust::authority`], then the framed [`crate::cluster::link::wire`] messages with
//! their request ids, session order and deploy signatures, exactly as over TCP. Over NATS that
//! byte stream is a pair of subjects, one per direction, one NATS message per chunk of bytes
//! (an empty message closes the stream):
//!
//! * `firefly.<cluster>.accept.<B>.<instance>`: A opens a link to B's process by a NATS
//!   request carrying its name, its instance and a fresh link id; B answers with its own
//!   instance (no responder: B is not running, as a refused TCP connect). A dials only the
//!   instance that B's signed announcements name, so a process started as B without B's
//!   certificate is never asked.
//! * `firefly.<cluster>.link.<B>.<id>`: A's bytes to B; `firefly.<cluster>.link.<A>.<id>`: B's
//!   bytes to A.
//! * `firefly.<cluster>.announce`: every process publishes `{node, instance, time}` every
//!   second, signed with its own key and shown with the master's certificate for its name
//!   (so no one can announce a node, or make it look restarted, without its credential; a
//!   replay is refused because the time must grow). A link ends when the process at its other
//!   end has not been announced for [`GONE_AFTER`], or another instance of that node is
//!   announced (it restarted): the same path as a TCP link closing, so routing, reconnects
//!   and `peer_gone` work unchanged.
//!
//! NATS credentials (user/password, token, nkey) control who may use the subjects at all; the
//! handshake still decides who a peer is, so a NATS user without the master's certificate for
//! a node name cannot join as that node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::{OnceCell, watch};

use crate::cluster::trust::{CLOCK_SKEW, Refusal};
use crate::config::{NatsAuth, NatsSpec};
use crate::wall::now_ms;

pub(crate) mod copies;
mod error;
pub mod gone;
mod jetstream;
mod link;
pub mod queue;
pub mod sessions;

pub use error::NatsError;

/// How often a process announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// A process not announced for this long is gone: its links close. Five announcement
/// periods: 3 s once cut off live processes on a loaded 2-core machine (debug builds under a
/// full test suite), whose links then closed under their clients.
pub const GONE_AFTER: Duration = Duration::from_secs(5);
/// Bytes buffered in each direction of a link between the link code and NATS.
const LINK_BUFFER: usize = 256 * 1024;
/// Largest chunk of link bytes in one NATS message (well under NATS's default 1 MiB).
const CHUNK: usize = 64 * 1024;

/// Environment variables that override the topology's NATS credentials.
pub const TOKEN_ENV: &str = "FIREFLY_NATS_TOKEN";
/// The NATS user (with [`PASSWORD_ENV`]).
pub const USER_ENV: &str = "FIREFLY_NATS_USER";
/// The NATS password (with [`USER_ENV`]).
pub const PASSWORD_ENV: &str = "FIREFLY_NATS_PASSWORD";
/// An nkey seed.
pub const NKEY_ENV: &str = "FIREFLY_NATS_NKEY";

/// The last announcement heard from one node.
struct Seen {
    node: String,
    instance: String,
    at: Instant,
    /// Its sender's clock (ms since the Unix epoch): the next one must be later.
    stamp: u64,
}

/// What a process announces, signed (see [`Fabric::run`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Announce {
    node: String,
    instance: String,
    stamp: u64,
    key: serde_bytes::ByteBuf,
    cert: serde_bytes::ByteBuf,
    proof: serde_bytes::ByteBuf,
}

/// What an announcement's proof signs.
fn announce_parts<'a>(
    cluster: &'a str,
    node: &'a str,
    instance: &'a str,
    stamp: &'a [u8; 8],
) -> [&'a [u8]; 5] {
    [
        b"firefly announce",
        cluster.as_bytes(),
        node.as_bytes(),
        instance.as_bytes(),
        stamp,
    ]
}

/// One process's connection to the NATS fabric: its identity there, the shared client, and
/// who has been announced.
pub struct Fabric {
    spec: NatsSpec,
    cluster: String,
    node: String,
    /// Signs this process's announcements and checks the others'.
    credential: crate::cluster::trust::authority::Credential,
    /// Random per process start: tells a restarted node from the one whose links it replaces.
    instance: String,
    /// Connected on first use and shared by every link (async-nats reconnects by itself).
    client: OnceCell<async_nats::Client>,
    /// Counts losses of the NATS connection (and slow-consumer drops): messages may have
    /// been lost then, so every link opened before ends (its peers open new ones), rather
    /// than run on with a hole in its byte stream.
    epoch: Arc<std::sync::atomic::AtomicU64>,
    seen: Mutex<HashMap<String, Seen>>,
    /// The nodes with `copies: any`: any number of processes run each (see [`crate::cluster::nats::queue`]).
    copies: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric")
            .field("servers", &self.spec.servers)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A subject token must not contain NATS separators or wildcards.
fn token_ok(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Fabric {
    /// The fabric of process `node` of `cluster`, announcing itself with `credential` (not
    /// connected yet).
    pub fn new(
        spec: NatsSpec,
        cluster: &str,
        node: &str,
        credential: crate::cluster::trust::authority::Credential,
    ) -> Arc<Fabric> {
        Self::with_copies(spec, cluster, node, credential, Vec::new())
    }

    /// [`Fabric::new`] in a cluster whose nodes `copies` run as any number of processes each.
    pub fn with_copies(
        spec: NatsSpec,
        cluster: &str,
        node: &str,
        credential: crate::cluster::trust::authority::Credential,
        copies: Vec<String>,
    ) -> Arc<Fabric> {
        Arc::new(Fabric {
            spec,
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            credential,
            instance: hex::encode(&crate::cluster::trust::auth::nonce()[..8]),
            client: OnceCell::new(),
            epoch: Arc::default(),
            seen: Mutex::new(HashMap::new()),
            copies: copies.into_iter().collect(),
        })
    }

    /// This process's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The credential this process signs with (announcements, shared session records) and
    /// checks other nodes' signatures with.
    pub(crate) fn credential(&self) -> &crate::cluster::trust::authority::Credential {
        &self.credential
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Whether `node` has `copies: any`.
    pub fn has_copies(&self, node: &str) -> bool {
        self.copies.contains(node)
    }

    /// The subject of `node`'s copies' queue group (requests to any one copy).
    pub(crate) fn queue_subject(&self, node: &str) -> String {
        self.subject("queue", node)
    }

    /// The subject every copy of `node` hears (session events).
    pub(crate) fn events_subject(&self, node: &str) -> String {
        self.subject("events", node)
    }

    /// The processes of `node` announced lately (one instance each; several for a node with
    /// copies).
    pub fn instances(&self, node: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<String> = seen
            .values()
            .filter(|s| s.node == node && s.at.elapsed() < GONE_AFTER)
            .map(|s| s.instance.clone())
            .collect();
        found.sort();
        found
    }

    fn subject(&self, kind: &str, node: &str) -> String {
        format!("firefly.{}.{kind}.{node}", self.cluster)
    }

    /// The shared client, connecting first if needed.
    pub async fn client(&self) -> Result<&async_nats::Client, NatsError> {
        self.client
            .get_or_try_init(|| async {
                let epoch = self.epoch.clone();
                let node = self.node.clone();
                let mut options = async_nats::ConnectOptions::new()
                    .event_callback(move |event| {
                        let (epoch, node) = (epoch.clone(), node.clone());
                        async move {
                            use async_nats::Event;
                            if matches!(event, Event::Disconnected | Event::SlowConsumer(_)) {
                                epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                                tracing::warn!(%node, "NATS: {event}; ending the node links");
                            } else {
                                tracing::info!(%node, "NATS: {event}");
                            }
                        }
                    })
                    .name(format!("firefly {} {}", self.cluster, self.node))
                    .connection_timeout(Duration::from_secs(2))
                    .ping_interval(Duration::from_secs(2));
                options = match self.spec.auth.clone() {
                    NatsAuth::None => options,
                    NatsAuth::Token(t) => options.token(t),
                    NatsAuth::UserPassword { user, password } => {
                        options.user_and_password(user, password)
                    }
                    NatsAuth::NKey(seed) => options.nkey(seed),
                };
                options
                    .connect(&self.spec.servers)
                    .await
                    .map_err(|e| NatsError::Connect {
                        servers: self.spec.servers.join(","),
                        why: e.to_string(),
                    })
            })
            .await
    }

    /// Where an announcement is kept. A node name has one process at a time, so a new
    /// instance replaces the old one (whose links then close at once); masters are one per
    /// `firefly up` (one per machine) under the same name, and a node with copies runs in
    /// any number of processes, so each instance of those is kept on its own.
    fn seen_key(&self, node: &str, instance: &str) -> String {
        if node == crate::cluster::trust::authority::MASTER || self.copies.contains(node) {
            format!("{node} {instance}")
        } else {
            node.to_owned()
        }
    }

    /// Whether `node`'s process `instance` is still announced (a link just opened gets
    /// [`GONE_AFTER`] before its peer's first announcement must have arrived).
    fn alive(&self, node: &str, instance: &str, opened: Instant) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&self.seen_key(node, instance)) {
            Some(s) if s.instance == instance => s.at.elapsed() < GONE_AFTER,
            Some(s) if s.at > opened => false,
            _ => opened.elapsed() < GONE_AFTER,
        }
    }

    /// Whether `node` has been announced recently (routing may skip one that has not).
    pub fn announced(&self, node: &str) -> bool {
        if self.copies.contains(node) {
            return !self.instances(node).is_empty();
        }
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(node).is_some_and(|s| s.at.elapsed() < GONE_AFTER)
    }

    /// Whether process `instance` of `node` has been announced lately.
    pub fn instance_announced(&self, node: &str, instance: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&self.seen_key(node, instance))
            .is_some_and(|s| s.instance == instance && s.at.elapsed() < GONE_AFTER)
    }

    /// Announces this process every second and listens to the others' announcements, until
    /// `stop`. Retries the connection while NATS cannot be reached.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let work = async {
            let client = loop {
                match self.client().await {
                    Ok(c) => break c.clone(),
                    Err(err) => {
                        tracing::warn!(node = %self.node, "{err}; retrying");
                        tokio::time::sleep(ANNOUNCE_EVERY).await;
                    }
                }
            };
            let subject = format!("firefly.{}.announce", self.cluster);
            let mut heard = match client.subscribe(subject.clone()).await {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!("NATS subscribe {subject}: {err}");
                    return;
                }
            };
            let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
            // After a stall, one announcement, not a burst of them in the same millisecond
            // (the others would be refused as replays).
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = client.publish(subject.clone(), self.announcement()).await;
                    }
                    msg = heard.next() => {
                        let Some(msg) = msg else { return };
                        if let Err(why) = self.heard(&msg.payload) {
                            crate::logs::warn_limited!("ignored an announcement on NATS: {why}");
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// This process's announcement, signed now.
    fn announcement(&self) -> Bytes {
        let stamp = now_ms();
        let (key, cert) = self.credential.public();
        let proof = self.credential.prove(&announce_parts(
            &self.cluster,
            &self.node,
            &self.instance,
            &stamp.to_be_bytes(),
        ));
        let announce = Announce {
            node: self.node.clone(),
            instance: self.instance.clone(),
            stamp,
            key: serde_bytes::ByteBuf::from(key),
            cert: serde_bytes::ByteBuf::from(cert),
            proof: serde_bytes::ByteBuf::from(proof),
        };
        rmp_serde::to_vec(&announce).unwrap_or_default().into()
    }

    /// Records an announcement heard, if it is signed by the node it names, recent, and
    /// later than the last one of that node.
    fn heard(&self, payload: &[u8]) -> Result<(), Refusal> {
        let a: Announce =
            rmp_serde::from_slice(payload).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if !token_ok(&a.node) || !token_ok(&a.instance) {
            return Err(Refusal::Malformed("a node or instance name".into()));
        }
        let stamp = a.stamp.to_be_bytes();
        let parts = announce_parts(&self.cluster, &a.node, &a.instance, &stamp);
        self.credential
            .check_peer(&self.cluster, &a.node, &a.key, &a.cert, &parts, &a.proof)?;
        if now_ms().abs_diff(a.stamp) > CLOCK_SKEW.as_millis() as u64 {
            return Err(Refusal::ClockSkew {
                node: a.node,
                skew: CLOCK_SKEW,
            });
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = self.seen_key(&a.node, &a.instance);
        if seen.get(&key).is_some_and(|s| s.stamp >= a.stamp) {
            return Err(Refusal::Replayed { node: a.node });
        }
        if seen.get(&key).is_none_or(|s| s.instance != a.instance) {
            tracing::info!(node = %a.node, instance = %a.instance, "announced on NATS");
            // Forget masters long gone (each start of one has its own entry).
            seen.retain(|_, s| s.at.elapsed() < 20 * GONE_AFTER);
        }
        seen.insert(
            key,
            Seen {
                node: a.node,
                instance: a.instance,
                at: Instant::now(),
                stamp: a.stamp,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
#[cfg(test)]
mod impostor_tests;
#[cfg(test)]
mod tests;
