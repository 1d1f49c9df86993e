//! Outbound links: this node's connection to one peer, used for its requests to that peer.
//!
//! Each direction of a pair of nodes has its own connection (A's requests and pushes to B go
//! over A's link to B), so a link carries requests one way and replies the other. A link is
//! opened on first use and re-opened after a failure, with exponential backoff; while a peer is
//! unreachable, requests to it fail at once (`node_unavailable`) instead of queueing — the
//! original Firefly queued them forever.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::outbound::{Answered, Link, read_loop, write_loop};
use super::route::{LinkError, Route, RpcError};
use super::stream::{LinkStream, read_msg, write_msg};
use super::wire::{self, Msg};
use crate::cluster::trust::{Identity, auth, authority};
use crate::counter::Counter;

const MAX_BACKOFF: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How often [`Peer::keep_linked`] dials a peer whose link is down.
const KEEP_LINKED_EVERY: Duration = Duration::from_millis(200);

struct Backoff {
    retry_at: Option<Instant>,
    delay: Duration,
}

/// A request sent to a peer whose reply has not been awaited yet.
pub struct Pending<'a> {
    peer: &'a Peer,
    /// The link it went out on (none over a queue group).
    link: Option<Arc<Link>>,
    id: u64,
    /// Requests the message carries (in the peer's in-flight count until it is answered).
    requests: usize,
    rx: Option<oneshot::Receiver<Answered>>,
    sent: Instant,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.peer
            .in_flight
            .fetch_sub(self.requests, Ordering::Relaxed);
        if self.rx.is_some()
            && let Some(link) = &self.link
        {
            // Never awaited: forget the waiter so a late reply is simply dropped.
            link.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

impl Pending<'_> {
    /// Waits for the answers to a run sent with [`Peer::forward_run`].
    pub async fn replies(self) -> Result<wire::RunReplies, RpcError> {
        let node = self.peer;
        match self.wait().await? {
            Msg::ReplyRun { replies, .. } => Ok(replies),
            other => Err(RpcError::Unexpected {
                node: node.name.clone(),
                got: other.kind(),
            }),
        }
    }

    /// The peer it was sent to.
    pub fn peer(&self) -> &Peer {
        self.peer
    }

    /// Waits for the reply, up to the RPC timeout counted from when the request was sent.
    pub async fn wait(mut self) -> Result<Msg, RpcError> {
        let peer = self.peer;
        let timeout = peer.identity.rpc_timeout;
        let deadline = tokio::time::Instant::from_std(self.sent + timeout);
        let Some(rx) = self.rx.take() else {
            return Err(peer.unavailable("reply already taken"));
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(msg))) => Ok(msg),
            Ok(Ok(Err(err))) => {
                peer.failures.add(self.requests as u64);
                Err(err)
            }
            Ok(Err(_)) => {
                peer.failures.add(self.requests as u64);
                Err(peer.unavailable("connection lost"))
            }
            Err(_) => {
                peer.failures.add(self.requests as u64);
                if let Some(link) = &self.link {
                    link.pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&self.id);
                }
                Err(RpcError::Timeout {
                    node: peer.name.clone(),
                    timeout,
                })
            }
        }
    }
}

/// One peer node as seen from here.
pub struct Peer {
    /// Its name.
    pub name: String,
    /// Its node index (the high bits of the session ids it issues).
    pub index: u16,
    route: Route,
    identity: Arc<Identity>,
    link: Mutex<Option<Arc<Link>>>,
    connecting: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
    /// Requests from here to it that have not been answered yet (for `least_loaded`).
    pub in_flight: AtomicUsize,
    /// Requests sent to it (for `/metrics`).
    pub calls: Counter,
    /// Of those, failed: unreachable, lost or timed out.
    pub failures: Counter,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("route", &self.route)
            .finish()
    }
}

impl Peer {
    pub(crate) fn new(name: String, index: u16, route: Route, identity: Arc<Identity>) -> Self {
        Self {
            name,
            index,
            route,
            identity,
            link: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(Backoff {
                retry_at: None,
                delay: FIRST_BACKOFF,
            }),
            in_flight: AtomicUsize::new(0),
            calls: Counter::default(),
            failures: Counter::default(),
        }
    }

    /// How it is reached.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The peer's RPC address (`None` over NATS).
    pub fn addr(&self) -> Option<SocketAddr> {
        match &self.route {
            Route::Tcp(addr) => Some(*addr),
            Route::Nats(_) | Route::Queue(_) | Route::Instance(..) => None,
        }
    }

    /// Whether the peer is presumed down: over NATS, it has not been announced lately (a
    /// route with other nodes skips it). Over TCP this is never presumed: the link finds out.
    pub fn presumed_down(&self) -> bool {
        match &self.route {
            Route::Tcp(_) => false,
            Route::Nats(fabric) | Route::Queue(fabric) => !fabric.announced(&self.name),
            Route::Instance(fabric, instance) => !fabric.instance_announced(&self.name, instance),
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> RpcError {
        RpcError::Unavailable {
            node: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn live(&self) -> Option<Arc<Link>> {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        link.as_ref()
            .filter(|l| l.alive.load(Ordering::Acquire))
            .cloned()
    }

    /// Whether requests to it would go out now: a link is up (over a queue group: some copy
    /// is announced). What a node's readiness is made of (see [`Peer::keep_linked`]).
    pub fn linked(&self) -> bool {
        match &self.route {
            Route::Queue(fabric) => fabric.announced(&self.name),
            _ => self.live().is_some(),
        }
    }

    /// Keeps a link to the peer up until `stop`: dials it at once, then again every
    /// [`KEEP_LINKED_EVERY`] while it is down, without waiting out the backoff a failed
    /// request left behind. A node runs this for each peer it cannot serve without (its
    /// routes' targets, the data owner), so that it becomes ready — and a restarted peer is
    /// linked again — as soon as the peer answers, not at the next request after the backoff.
    pub async fn keep_linked(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if !self.linked() && !matches!(self.route, Route::Queue(_)) {
                let _ = self.dial(false).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(KEEP_LINKED_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn get_link(&self) -> Result<Arc<Link>, RpcError> {
        if let Some(link) = self.live() {
            return Ok(link);
        }
        self.dial(true).await
    }

    /// Opens a link (one dial at a time). `for_request`: a request's dial fails at once while
    /// the backoff of an earlier failed one runs, and a failure lengthens it; the keeper's
    /// dials neither wait for it nor lengthen it (they are already paced), so a request right
    /// after the keeper's link dropped is not refused for a backoff it did not earn.
    async fn dial(&self, for_request: bool) -> Result<Arc<Link>, RpcError> {
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(link) = self.live() {
            return Ok(link);
        }
        if for_request {
            let backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = backoff.retry_at
                && Instant::now() < at
            {
                return Err(self.unavailable("not reachable; retrying shortly"));
            }
        }
        let connect_timeout = self.identity.rpc_timeout.min(Duration::from_secs(1));
        match tokio::time::timeout(connect_timeout, self.connect()).await {
            Ok(Ok(link)) => {
                let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                backoff.retry_at = None;
                backoff.delay = FIRST_BACKOFF;
                *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(link.clone());
                tracing::info!(peer = %self.name, route = %self.route, "linked");
                Ok(link)
            }
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {connect_timeout:?}"),
                };
                if for_request {
                    let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                    backoff.retry_at = Some(Instant::now() + backoff.delay);
                    backoff.delay = (backoff.delay * 2).min(MAX_BACKOFF);
                }
                tracing::debug!(peer = %self.name, "link failed: {reason}");
                Err(self.unavailable(reason))
            }
        }
    }

    async fn connect(&self) -> Result<Arc<Link>, LinkError> {
        match &self.route {
            Route::Tcp(addr) => {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| LinkError::Io(e.to_string()))?;
                let _ = stream.set_nodelay(true);
                self.open(stream).await
            }
            Route::Nats(fabric) => {
                let stream = fabric.dial(&self.name).await;
                self.open(stream.map_err(LinkError::Transport)?).await
            }
            Route::Instance(fabric, instance) => {
                let stream = fabric.dial_instance(&self.name, Some(instance)).await;
                self.open(stream.map_err(LinkError::Transport)?).await
            }
            Route::Queue(_) => Err(LinkError::HasCopies(self.name.clone())),
        }
    }

    /// Runs the handshake on a fresh byte stream to the peer and starts the link on it.
    async fn open<S: LinkStream>(&self, mut stream: S) -> Result<Arc<Link>, LinkError> {
        let mut rbuf = BytesMut::with_capacity(4096);
        let challenge = read_msg(&mut stream, &mut rbuf).await?;
        let Msg::Challenge { cluster, nonce } = challenge else {
            return Err(LinkError::Protocol(
                "the listener did not start with a challenge",
            ));
        };
        let id = &self.identity;
        if cluster != id.cluster {
            return Err(LinkError::OtherCluster {
                node: self.name.clone(),
                theirs: cluster,
                ours: id.cluster.clone(),
            });
        }
        let mine = auth::nonce();
        let (key, cert) = id.credential.public();
        let proof = id.credential.prove(&authority::hello_parts(
            &id.cluster,
            &id.node,
            &nonce,
            &mine,
        ));
        write_msg(
            &mut stream,
            &Msg::Hello {
                cluster: id.cluster.clone(),
                node: id.node.clone(),
                nonce: serde_bytes::ByteBuf::from(mine.clone()),
                key: serde_bytes::ByteBuf::from(key),
                cert: serde_bytes::ByteBuf::from(cert),
                proof: serde_bytes::ByteBuf::from(proof),
            },
        )
        .await?;
        match read_msg(&mut stream, &mut rbuf).await? {
            Msg::Welcome {
                node,
                key,
                cert,
                proof,
            } => {
                // Mutual: the listener proves it is the node this link was meant for.
                if node != self.name {
                    return Err(LinkError::OtherNode {
                        at: self.route.to_string(),
                        found: node,
                        expected: self.name.clone(),
                    });
                }
                let parts = authority::welcome_parts(&id.cluster, &node, &id.node, &nonce, &mine);
                id.credential
                    .check_peer(&id.cluster, &node, &key, &cert, &parts, &proof)
                    .inspect_err(|reason| {
                        tracing::warn!(peer = %self.name, route = %self.route, "refused a node-to-node link: {reason}");
                    })?;
            }
            Msg::Refused { reason } => return Err(LinkError::Refused(reason)),
            _ => return Err(LinkError::Protocol("the listener answered with no welcome")),
        }
        let (tx, rx) = wire::link_queue();
        let link = Arc::new(Link {
            tx,
            nonce: nonce.into_vec(),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
        });
        let (reader, writer) = stream.halves();
        tokio::spawn(write_loop(writer, rx, link.clone()));
        tokio::spawn(read_loop(reader, rbuf, link.clone(), self.name.clone()));
        Ok(link)
    }

    /// Sends a request built by `make(id)` and waits for the reply with that id.
    pub async fn request(&self, make: impl FnOnce(u64) -> Msg) -> Result<Msg, RpcError> {
        self.start(make).await?.wait().await
    }

    /// Sends a request built by `make(id)` without waiting for its reply, so several can be
    /// in flight on the link (they arrive in the order they were started).
    pub async fn start(&self, make: impl FnOnce(u64) -> Msg) -> Result<Pending<'_>, RpcError> {
        self.start_many(1, make).await
    }

    /// Sends a run of one session's requests, `(command, payload)` in arrival order, as one
    /// message; the peer serves them one at a time in that order. Answered by
    /// [`Pending::replies`].
    pub async fn forward_run(
        &self,
        session: u64,
        requests: Vec<(u32, bytes::Bytes)>,
    ) -> Result<Pending<'_>, RpcError> {
        self.start_many(requests.len(), |id| Msg::ForwardRun {
            id,
            session,
            requests,
        })
        .await
    }

    /// [`Peer::start`] for a message that carries `requests` requests (a `ForwardRun`): the
    /// peer's request and in-flight counts count each of them.
    pub async fn start_many(
        &self,
        requests: usize,
        make: impl FnOnce(u64) -> Msg,
    ) -> Result<Pending<'_>, RpcError> {
        self.calls.add(requests as u64);
        if let Route::Queue(fabric) = &self.route {
            let msg = make(1);
            let (tx, rx) = oneshot::channel();
            let (fabric, identity, name) =
                (fabric.clone(), self.identity.clone(), self.name.clone());
            tokio::spawn(async move {
                let _ = tx.send(
                    crate::cluster::nats::queue::request(&fabric, &identity, &name, &msg).await,
                );
            });
            self.in_flight.fetch_add(requests, Ordering::Relaxed);
            return Ok(Pending {
                peer: self,
                link: None,
                id: 0,
                requests,
                rx: Some(rx),
                sent: Instant::now(),
            });
        }
        let link = match self.get_link().await {
            Ok(link) => link,
            Err(err) => {
                self.failures.add(requests as u64);
                return Err(err);
            }
        };
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let mut msg = make(id);
        self.sign(&link, &mut msg);
        let queued = wire::queue(&link.tx, msg);
        if queued.is_err() || !link.alive.load(Ordering::Acquire) {
            link.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            self.failures.add(requests as u64);
            return Err(self.unavailable(match queued {
                Err(wire::Unqueued::Full) => "its link's queue is full (it is not reading)",
                _ => "connection lost",
            }));
        }
        self.in_flight.fetch_add(requests, Ordering::Relaxed);
        Ok(Pending {
            peer: self,
            link: Some(link),
            id,
            requests,
            rx: Some(rx),
            sent: Instant::now(),
        })
    }

    /// Signs a cluster change (`Deploy`) as the master, for this link and this request id;
    /// a non-master leaves it unsigned, and the receiver refuses it.
    fn sign(&self, link: &Link, msg: &mut Msg) {
        if let Msg::Deploy {
            id,
            module,
            version,
            wasm,
            authority: signature,
        } = msg
        {
            let id_ = &self.identity;
            let digest = authority::deploy_digest(
                &id_.cluster,
                &self.name,
                &link.nonce,
                *id,
                module,
                *version,
                wasm,
            );
            if let Some(signed) = id_.credential.sign_as_master(&[&digest]) {
                *signature = serde_bytes::ByteBuf::from(signed);
            }
        }
    }

    /// Tells the peer (one way) that a session of this gate connected or ended.
    pub fn session_event(self: &Arc<Self>, session: u64, connect: bool) {
        self.send(Msg::Event { session, connect });
    }

    /// Sends a one-way message (push, event). When no link is up, one is opened in the
    /// background; if that fails the message is dropped and logged (its target is gone).
    pub fn send(self: &Arc<Self>, msg: Msg) {
        if let Route::Queue(fabric) = &self.route {
            let (fabric, identity, name) =
                (fabric.clone(), self.identity.clone(), self.name.clone());
            tokio::spawn(async move {
                if let Err(err) =
                    crate::cluster::nats::queue::publish(&fabric, &identity, &name, &msg).await
                {
                    tracing::debug!("dropping one-way message to `{name}`'s copies: {err}");
                }
            });
            return;
        }
        if let Some(link) = self.live() {
            // A link that died since `live()` drops the message, as a dead peer would; a full
            // one drops it too (logged).
            let _ = wire::queue(&link.tx, msg);
            return;
        }
        let peer = self.clone();
        tokio::spawn(async move {
            match peer.get_link().await {
                Ok(link) => {
                    let _ = wire::queue(&link.tx, msg);
                }
                Err(err) => tracing::debug!("dropping one-way message: {err}"),
            }
        });
    }
}
