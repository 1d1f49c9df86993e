//! NATS as the cluster fabric (`cluster.transport: nats://...`): the byte transport under the
//! same links the direct mesh uses.
//!
//! Only the transport changes. A link from node A to node B is still a byte stream that runs
//! the mutual handshake of [`super::authority`], then the framed [`super::wire`] messages with
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

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::sync::{OnceCell, watch};

use crate::config::{NatsAuth, NatsSpec};
use crate::timers::now_ms;

/// How often a process announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// A process not announced for this long is gone: its links close.
pub const GONE_AFTER: Duration = Duration::from_secs(3);
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

/// How far an announcement's clock may be from ours (machines are expected to run NTP).
const CLOCK_SKEW_MS: u64 = 30_000;

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
    credential: super::authority::Credential,
    /// Random per process start: tells a restarted node from the one whose links it replaces.
    instance: String,
    /// Connected on first use and shared by every link (async-nats reconnects by itself).
    client: OnceCell<async_nats::Client>,
    /// Counts losses of the NATS connection (and slow-consumer drops): messages may have
    /// been lost then, so every link opened before ends (its peers open new ones), rather
    /// than run on with a hole in its byte stream.
    epoch: Arc<std::sync::atomic::AtomicU64>,
    seen: Mutex<HashMap<String, Seen>>,
    /// The nodes with `copies: any`: any number of processes run each (see [`super::queue`]).
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
        credential: super::authority::Credential,
    ) -> Arc<Fabric> {
        Self::with_copies(spec, cluster, node, credential, Vec::new())
    }

    /// [`Fabric::new`] in a cluster whose nodes `copies` run as any number of processes each.
    pub fn with_copies(
        spec: NatsSpec,
        cluster: &str,
        node: &str,
        credential: super::authority::Credential,
        copies: Vec<String>,
    ) -> Arc<Fabric> {
        Arc::new(Fabric {
            spec,
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            credential,
            instance: hex::encode(&super::auth::nonce()[..8]),
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
    pub(crate) fn credential(&self) -> &super::authority::Credential {
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
    pub async fn client(&self) -> Result<&async_nats::Client, String> {
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
                options = match auth_from_env().unwrap_or_else(|| self.spec.auth.clone()) {
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
                    .map_err(|e| format!("NATS at {}: {e}", self.spec.servers.join(",")))
            })
            .await
    }

    /// Where an announcement is kept. A node name has one process at a time, so a new
    /// instance replaces the old one (whose links then close at once); masters are one per
    /// `firefly up` (one per machine) under the same name, and a node with copies runs in
    /// any number of processes, so each instance of those is kept on its own.
    fn seen_key(&self, node: &str, instance: &str) -> String {
        if node == super::authority::MASTER || self.copies.contains(node) {
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
    fn heard(&self, payload: &[u8]) -> Result<(), String> {
        let a: Announce = rmp_serde::from_slice(payload).map_err(|e| e.to_string())?;
        if !token_ok(&a.node) || !token_ok(&a.instance) {
            return Err("malformed".into());
        }
        let stamp = a.stamp.to_be_bytes();
        let parts = announce_parts(&self.cluster, &a.node, &a.instance, &stamp);
        self.credential
            .check_peer(&self.cluster, &a.node, &a.key, &a.cert, &parts, &a.proof)?;
        if now_ms().abs_diff(a.stamp) > CLOCK_SKEW_MS {
            return Err(format!(
                "`{}`'s clock is off by more than {CLOCK_SKEW_MS} ms",
                a.node
            ));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = self.seen_key(&a.node, &a.instance);
        if seen.get(&key).is_some_and(|s| s.stamp >= a.stamp) {
            return Err(format!("`{}`: a replayed announcement", a.node));
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

    /// Opens a link to `peer`: the byte stream to run the handshake on. Only to the process
    /// announced as `peer` with the master's certificate for that name (by its instance): a
    /// process that claims the name without it is never asked, so it cannot answer in the
    /// real one's place.
    ///
    /// A peer not heard yet (this process, or the peer, has just started) is waited for, up to
    /// 800 ms (a process announces itself as it starts, then every second), within the 1 s
    /// the caller gives a dial.
    pub async fn dial(self: &Arc<Self>, peer: &str) -> Result<DuplexStream, String> {
        let deadline = Instant::now() + Duration::from_millis(800);
        let instance = loop {
            if let Some(instance) = self.announced_instance(peer) {
                break instance;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "`{peer}` is not on NATS (not announced lately with this cluster's certificate)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.dial_instance(peer, Some(&instance)).await
    }

    /// The process announced lately as `peer` (a node without copies runs one at a time).
    fn announced_instance(&self, peer: &str) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(peer)
            .filter(|s| s.at.elapsed() < GONE_AFTER)
            .map(|s| s.instance.clone())
    }

    /// Opens a link to `peer`, to its process `instance` if given (a node with copies is
    /// reached one copy at a time, by instance).
    pub async fn dial_instance(
        self: &Arc<Self>,
        peer: &str,
        instance: Option<&str>,
    ) -> Result<DuplexStream, String> {
        let client = self.client().await?.clone();
        let id = hex::encode(&super::auth::nonce()[..12]);
        let inbox = self.subject("link", &format!("{}.{id}", self.node));
        let sub = client.subscribe(inbox).await.map_err(|e| e.to_string())?;
        let hello = format!("{} {} {id}", self.node, self.instance);
        let accept = match instance {
            Some(instance) => self.subject("accept", &format!("{peer}.{instance}")),
            None => self.subject("accept", peer),
        };
        let reply = client
            .request(accept, hello.into())
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    format!("`{peer}` is not on NATS")
                }
                _ => e.to_string(),
            })?;
        let instance = String::from_utf8_lossy(&reply.payload).into_owned();
        let (mine, theirs) = tokio::io::duplex(LINK_BUFFER);
        let send = self.subject("link", &format!("{peer}.{id}"));
        tokio::spawn(pump(
            self.clone(),
            client,
            peer.to_owned(),
            instance,
            send,
            sub,
            theirs,
        ));
        Ok(mine)
    }

    /// Serves the links other processes open to this node: each accepted one is handed to
    /// `accept` as `(peer name, byte stream)`, as a TCP listener hands over connections.
    pub async fn accept(
        self: Arc<Self>,
        mut accept: impl FnMut(String, DuplexStream),
        mut stop: watch::Receiver<bool>,
    ) {
        let client = loop {
            match self.client().await {
                Ok(c) => break c.clone(),
                Err(err) => {
                    tracing::warn!(node = %self.node, "{err}; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        // Every process is dialled by instance, the one its signed announcements name: a
        // copy's name is shared by all copies, and a process claiming a name it holds no
        // certificate for must not answer links meant for the real one.
        let subject = self.subject("accept", &format!("{}.{}", self.node, self.instance));
        let mut requests = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(err) => {
                tracing::error!("NATS subscribe {subject}: {err}");
                return;
            }
        };
        tracing::info!(node = %self.node, "accepting node links on NATS ({subject})");
        loop {
            let msg = tokio::select! {
                msg = requests.next() => match msg { Some(m) => m, None => return },
                _ = stop.wait_for(|s| *s) => return,
            };
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            let mut parts = text.split(' ');
            let (Some(peer), Some(instance), Some(id), None, Some(reply)) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                msg.reply,
            ) else {
                crate::logs::warn_limited!("malformed NATS link request ignored");
                continue;
            };
            if ![peer, instance, id].iter().all(|t| token_ok(t)) {
                crate::logs::warn_limited!("malformed NATS link request ignored");
                continue;
            }
            let inbox = self.subject("link", &format!("{}.{id}", self.node));
            let sub = match client.subscribe(inbox).await {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!("NATS subscribe for a link: {err}");
                    continue;
                }
            };
            // Subscribed before answering, so the dialer's first bytes cannot be missed.
            if client
                .publish(reply, self.instance.clone().into())
                .await
                .is_err()
            {
                continue;
            }
            let (mine, theirs) = tokio::io::duplex(LINK_BUFFER);
            let send = self.subject("link", &format!("{peer}.{id}"));
            tokio::spawn(pump(
                self.clone(),
                client.clone(),
                peer.to_owned(),
                instance.to_owned(),
                send,
                sub,
                theirs,
            ));
            accept(peer.to_owned(), mine);
        }
    }
}

/// The credentials the environment gives, if any.
fn auth_from_env() -> Option<NatsAuth> {
    let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    if let Some(token) = var(TOKEN_ENV) {
        return Some(NatsAuth::Token(token));
    }
    if let (Some(user), Some(password)) = (var(USER_ENV), var(PASSWORD_ENV)) {
        return Some(NatsAuth::UserPassword { user, password });
    }
    var(NKEY_ENV).map(NatsAuth::NKey)
}

/// Moves one link's bytes between the link code's end of a duplex stream and NATS, until
/// either side closes or the peer's process is gone; then closes both.
async fn pump(
    fabric: Arc<Fabric>,
    client: async_nats::Client,
    peer: String,
    instance: String,
    send: String,
    mut sub: async_nats::Subscriber,
    end: DuplexStream,
) {
    let opened = Instant::now();
    let epoch = fabric.epoch.load(std::sync::atomic::Ordering::Acquire);
    let (mut rd, mut wr) = tokio::io::split(end);
    let outbound = async {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let chunk = buf.split().freeze();
                    if client.publish(send.clone(), chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let inbound = async {
        while let Some(msg) = sub.next().await {
            if msg.payload.is_empty() || wr.write_all(&msg.payload).await.is_err() {
                return;
            }
        }
    };
    let watch = async {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            if fabric.epoch.load(std::sync::atomic::Ordering::Acquire) != epoch {
                return;
            }
            if !fabric.alive(&peer, &instance, opened) {
                tracing::info!(%peer, "gone from NATS (not announced lately, or restarted): closing its link");
                return;
            }
        }
    };
    tokio::select! {
        _ = outbound => {}
        _ = inbound => {}
        _ = watch => {}
    }
    let _ = client.publish(send, Bytes::new()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NATS server of `FIREFLY_TEST_NATS_URL` (`.ci/run` sets it); fails loudly without.
    fn nats_url() -> String {
        std::env::var("FIREFLY_TEST_NATS_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "FIREFLY_TEST_NATS_URL is not set, and this test needs a NATS server. Run \
                     `.ci/run`, or set it (nats://127.0.0.1:4222) and run with NEXTEST_PROFILE=ci"
                )
            })
    }

    fn issue(cluster: &str, node: &str) -> super::super::authority::Credential {
        super::super::authority::Credential::issue(b"fabric-test-secret-0123456789", cluster, node)
    }

    #[test]
    fn announcements_must_be_signed_for_their_name_recent_and_new() {
        let spec = NatsSpec {
            servers: vec!["nats://127.0.0.1:1".into()],
            auth: NatsAuth::None,
        };
        let me = Fabric::new(spec.clone(), "c", "gate", issue("c", "gate"));
        let logic = Fabric::new(spec.clone(), "c", "logic", issue("c", "logic"));
        let first = logic.announcement();
        me.heard(&first).unwrap();
        assert!(me.announced("logic"));
        assert!(me.heard(&first).unwrap_err().contains("replayed"));
        // Another cluster's key, or a node announcing another name with its own key.
        let stranger = Fabric::new(
            spec.clone(),
            "c",
            "logic",
            super::super::authority::Credential::issue(b"another-secret-0123456789", "c", "logic"),
        );
        assert!(me.heard(&stranger.announcement()).is_err());
        let mut forged: Announce = rmp_serde::from_slice(&logic.announcement()).unwrap();
        forged.node = "other".into();
        let forged = rmp_serde::to_vec(&forged).unwrap();
        assert!(me.heard(&forged).unwrap_err().contains("other"));
        assert!(!me.announced("other"));
    }

    async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .unwrap_or_else(|_| panic!("{what}: not within 10 s"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_carries_bytes_both_ways_and_ends_when_its_peer_falls_silent_on_nats() {
        let spec = NatsSpec {
            servers: vec![nats_url()],
            auth: NatsAuth::None,
        };
        let cluster = format!(
            "unit-{}-{}",
            std::process::id(),
            hex::encode(&super::super::auth::nonce()[..4])
        );
        let (a, b) = (
            Fabric::new(spec.clone(), &cluster, "a", issue(&cluster, "a")),
            Fabric::new(spec, &cluster, "b", issue(&cluster, "b")),
        );
        let (stop_a, run_a) = watch::channel(false);
        let (stop_b, run_b) = watch::channel(false);
        tokio::spawn(a.clone().run(run_a));
        tokio::spawn(b.clone().run(run_b.clone()));
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(b.clone().accept(
            move |peer, s| {
                let _ = accepted_tx.send((peer, s));
            },
            run_b,
        ));

        // A node nobody runs answers no link request.
        let err = a.dial("c").await.unwrap_err();
        assert!(err.contains("not on NATS"), "{err}");

        // `b` announces itself and accepts links (retry until its subscriptions are up).
        let mut near = within("b reachable", async {
            loop {
                if let Ok(s) = a.dial("b").await {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let (peer, mut far) = within("accepted", accepted.recv()).await.unwrap();
        assert_eq!(peer, "a");
        within("announced", async {
            while !a.announced("b") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;

        // Bytes both ways, in order, a large write in many chunks.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        near.write_all(&big).await.unwrap();
        let mut got = vec![0u8; big.len()];
        within("big read", far.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, big);
        far.write_all(b"world").await.unwrap();
        let mut five = [0u8; 5];
        within("reply", near.read_exact(&mut five)).await.unwrap();
        assert_eq!(&five, b"world");

        // Closing one end closes the other.
        drop(near);
        let mut rest = Vec::new();
        within("eof after close", far.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty());

        // A peer that stops announcing itself (killed, cut off) ends its links within
        // GONE_AFTER, and is no longer announced.
        let mut near = a.dial("b").await.unwrap();
        let (_, _far) = within("accepted again", accepted.recv()).await.unwrap();
        let silent = Instant::now();
        let _ = stop_b.send(true);
        let mut rest = Vec::new();
        let _ = within("eof after silence", near.read_to_end(&mut rest)).await;
        let took = silent.elapsed();
        assert!(took < GONE_AFTER + Duration::from_secs(1), "{took:?}");
        assert!(!a.announced("b"));
        let _ = stop_a.send(true);
    }

    use crate::test_services::{private_nats, private_nats_on};

    async fn connects(url: &str, auth: NatsAuth) -> Result<(), String> {
        let spec = NatsSpec {
            servers: vec![url.to_owned()],
            auth,
        };
        Fabric::new(spec, "creds", "n", issue("creds", "n"))
            .client()
            .await
            .map(|_| ())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_topologys_nats_credentials_are_used_and_wrong_ones_refused_on_nats() {
        let token_server = private_nats(&["--auth", "the-token-0123"]);
        let url = token_server.url.clone();
        connects(&url, NatsAuth::Token("the-token-0123".into()))
            .await
            .unwrap();
        for wrong in [NatsAuth::Token("not-it".into()), NatsAuth::None] {
            let err = connects(&url, wrong).await.unwrap_err();
            assert!(err.contains(&url), "{err}");
        }
        let user_server = private_nats(&["--user", "firefly", "--pass", "s3cret-pw"]);
        let url = user_server.url.clone();
        let user = |password: &str| NatsAuth::UserPassword {
            user: "firefly".into(),
            password: password.into(),
        };
        connects(&url, user("s3cret-pw")).await.unwrap();
        assert!(connects(&url, user("wrong")).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_nats_connection_ends_the_links_and_new_ones_open_after_it_returns_on_nats() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let server = private_nats_on(port, &[]);
        let url = server.url.clone();
        let spec = NatsSpec {
            servers: vec![url],
            auth: NatsAuth::None,
        };
        let a = Fabric::new(spec.clone(), "lost", "a", issue("lost", "a"));
        let b = Fabric::new(spec, "lost", "b", issue("lost", "b"));
        let (_stop, run) = watch::channel(false);
        tokio::spawn(a.clone().run(run.clone()));
        tokio::spawn(b.clone().run(run.clone()));
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(b.clone().accept(
            move |_, s| {
                let _ = accepted_tx.send(s);
            },
            run,
        ));
        let dial = || async {
            loop {
                if let Ok(s) = a.dial("b").await {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let mut near = within("first link", dial()).await;
        let mut far = within("accepted", accepted.recv()).await.unwrap();
        near.write_all(b"one").await.unwrap();
        let mut three = [0u8; 3];
        within("bytes", far.read_exact(&mut three)).await.unwrap();

        // The server goes away and comes back on the same port: the old link ends (bytes may
        // have been lost in between), and a new one works.
        drop(server);
        let mut rest = Vec::new();
        let _ = within("the link ends", near.read_to_end(&mut rest)).await;
        let _server = private_nats_on(port, &[]);
        let mut near = tokio::time::timeout(Duration::from_secs(20), dial())
            .await
            .expect("no new link within 20 s of the server's return");
        let mut far = within("accepted again", accepted.recv()).await.unwrap();
        near.write_all(b"two").await.unwrap();
        within("bytes again", far.read_exact(&mut three))
            .await
            .unwrap();
        assert_eq!(&three, b"two");
    }
}

#[cfg(test)]
#[path = "nats_impostor_tests.rs"]
mod impostor_tests;
