//! The cluster: node-to-node links, routing of client commands to other nodes, pushes to
//! sessions held by other gates.
//!
//! * [`wire`]: message types and framing (u32 length + MessagePack).
//! * [`auth`]: the cluster secret and handshake nonces; [`authority`]: per-node credentials
//!   issued by the master, the mutual handshake proofs and the master's deploy signature.
//! * `data_link`: requests to the data-owning node (the data layer's `OwnerLink`).
//! * `calls`: modules' `call_node` / `send_node` over the links (the engine's `NodeCalls`).
//! * [`peer`]: outbound links (requests with ids and timeouts, reconnect with backoff).
//! * [`nats`]: NATS as the byte transport of the links (`cluster.transport: nats://...`):
//!   announcements, link subjects; the links run the same handshake and messages.
//! * [`server`]: the inbound side: authenticates links, keeps a session's forwarded requests
//!   in order, and hands every message to the node's [`Inbound`] (the transport knows no
//!   feature).
//!
//! Session ids are cluster-unique: the high 16 bits are the index of the gate that holds the
//! session, so any node can push to any session by sending to that gate.

pub mod auth;
pub mod authority;
mod calls;
mod data_link;
mod inbound;
pub mod nats;
pub mod peer;
pub(crate) mod queue;
pub mod server;
pub mod shared_sessions;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use firefly_abi::session_status;

use crate::config::{Topology, Transport};
use crate::sessions::resume::{ResumeError, SECRET_LEN};
use crate::sessions::{
    Handover, OpFuture, OpReply, PushError, RemoteSessions, SessionOp, SessionRecord, TakeFuture,
};
pub use inbound::Inbound;
pub use peer::{Peer, Pending, Route, RpcError};
use shared_sessions::{CasError, GonePush, SharedSessions};

/// Who this process is in the cluster and how it proves it.
#[derive(Clone)]
pub struct Identity {
    /// The cluster's name (peers of another cluster are refused).
    pub cluster: String,
    /// This node's name (`master` for the master).
    pub node: String,
    /// Its credential: its own key and certificate, and the master's public key.
    pub credential: authority::Credential,
    /// How long a request to a peer may take.
    pub rpc_timeout: Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("cluster", &self.cluster)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity a process holding the cluster `secret` gives itself as `node` (a master
    /// as [`authority::MASTER`]; a node started by hand or in-process with the secret).
    pub fn from_secret(cluster: &str, node: &str, secret: &[u8], rpc_timeout: Duration) -> Self {
        Identity {
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            credential: authority::Credential::issue(secret, cluster, node),
            rpc_timeout,
        }
    }
}

/// The node index encoded in a session id.
pub fn session_node(session: u64) -> u16 {
    (session >> 48) as u16
}

/// This node's view of every other node.
#[derive(Debug)]
pub struct Cluster {
    identity: Arc<Identity>,
    my_index: u16,
    peers: HashMap<String, Arc<Peer>>,
    by_index: HashMap<u16, Arc<Peer>>,
    /// The other nodes that hold client sessions (broadcasts go to each).
    gates: Vec<Arc<Peer>>,
    /// Over NATS: this process's fabric (announcements, accepted links).
    fabric: Option<Arc<nats::Fabric>>,
    /// Over NATS: the shared session records (resume on any gate).
    shared: Option<Arc<SharedSessions>>,
    /// Sessions known to have left the gate that issued them, and where they went.
    moved: RwLock<HashMap<u64, u16>>,
    /// One peer per announced copy of the nodes with copies, by `(node, instance)`, made on
    /// first use by [`Cluster::instances`].
    copies: std::sync::Mutex<HashMap<(String, String), Arc<Peer>>>,
}

/// At most this many moved sessions are remembered (then the memory starts over).
const MAX_MOVED: usize = 1 << 20;

impl Cluster {
    /// A cluster view with the given peers `(name, index, rpc address)`.
    pub fn new(identity: Identity, my_index: u16, peers: Vec<(String, u16, SocketAddr)>) -> Self {
        let peers = peers
            .into_iter()
            .map(|(name, index, addr)| (name, index, Route::Tcp(addr)))
            .collect();
        Self::with_routes(identity, my_index, peers, None)
    }

    /// A cluster view over NATS with the given peers `(name, index)`, reached through `fabric`.
    pub fn over_nats(
        identity: Identity,
        my_index: u16,
        fabric: Arc<nats::Fabric>,
        peers: Vec<(String, u16)>,
    ) -> Self {
        let peers = peers
            .into_iter()
            .map(|(name, index)| {
                let route = if fabric.has_copies(&name) {
                    Route::Queue(fabric.clone())
                } else {
                    Route::Nats(fabric.clone())
                };
                (name, index, route)
            })
            .collect();
        Self::with_routes(identity, my_index, peers, Some(fabric))
    }

    fn with_routes(
        identity: Identity,
        my_index: u16,
        peers: Vec<(String, u16, Route)>,
        fabric: Option<Arc<nats::Fabric>>,
    ) -> Self {
        let identity = Arc::new(identity);
        let mut by_name = HashMap::new();
        let mut by_index = HashMap::new();
        for (name, index, route) in peers {
            let peer = Arc::new(Peer::new(name.clone(), index, route, identity.clone()));
            by_index.insert(index, peer.clone());
            by_name.insert(name, peer);
        }
        // Without a topology every peer may hold sessions.
        let gates = by_name.values().cloned().collect();
        let shared = fabric
            .as_ref()
            .map(|f| SharedSessions::new(f.clone(), &identity.cluster));
        Self {
            identity,
            my_index,
            peers: by_name,
            by_index,
            gates,
            fabric,
            shared,
            moved: RwLock::new(HashMap::new()),
            copies: std::sync::Mutex::default(),
        }
    }

    /// The cluster view the nodes of `topology` share, from `me` at index `my_index`: over
    /// TCP every node with an rpc address, over NATS every node (`fabric` made for `me`).
    pub fn for_topology(topology: &Topology, identity: Identity, my_index: u16) -> Self {
        let me = identity.node.clone();
        let others = topology.nodes.values().filter(|n| n.name != me);
        match &topology.transport {
            Transport::Tcp => {
                let peers = others
                    .filter_map(|n| n.rpc.map(|addr| (n.name.clone(), n.index, addr)))
                    .collect();
                Self::new(identity, my_index, peers)
            }
            Transport::Nats(spec) => {
                let copies = topology.nodes.values().filter(|n| n.copies);
                let fabric = nats::Fabric::with_copies(
                    spec.clone(),
                    &topology.cluster,
                    &me,
                    identity.credential.clone(),
                    copies.map(|n| n.name.clone()).collect(),
                );
                let peers = others.map(|n| (n.name.clone(), n.index)).collect();
                Self::over_nats(identity, my_index, fabric, peers)
            }
        }
    }

    /// Over NATS: this process's fabric.
    pub fn fabric(&self) -> Option<&Arc<nats::Fabric>> {
        self.fabric.as_ref()
    }

    /// Over NATS: writes the shared session records and keeps the pushes for sessions of
    /// gone gates, until `stop`.
    pub async fn run_shared(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(mut gone) = shared.take_gone_queue() else {
            return;
        };
        let writer = tokio::spawn(shared.clone().run_writer(self.my_index, stop.clone()));
        let mut stop_gone = stop;
        loop {
            tokio::select! {
                _ = stop_gone.changed() => break,
                push = gone.recv() => match push {
                    Some(push) => self.keep_gone_push(&shared, push).await,
                    None => break,
                },
            }
        }
        let _ = writer.await;
    }

    /// Whether gate `index` is reachable (not presumed down).
    fn up(&self, index: u16) -> Option<&Arc<Peer>> {
        self.by_index.get(&index).filter(|p| !p.presumed_down())
    }

    fn remember_moved(&self, session: u64, to: u16) {
        let mut moved = self.moved.write().unwrap_or_else(|p| p.into_inner());
        if to == self.my_index {
            moved.remove(&session);
            return;
        }
        if moved.len() >= MAX_MOVED {
            tracing::warn!("forgetting {} moved sessions (too many)", moved.len());
            moved.clear();
        }
        moved.insert(session, to);
    }

    /// A push for a session whose gate was gone: to the gate that took it over, or into its
    /// record (compare-and-set, so a gate claiming the record meanwhile is not missed).
    async fn keep_gone_push(&self, shared: &SharedSessions, push: GonePush) {
        let GonePush {
            gate,
            session,
            topic,
            payload,
        } = push;
        for _ in 0..8 {
            let (mut record, revision) = match shared.load(session).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    tracing::debug!(session, gate, "push to a session no gate holds dropped");
                    return;
                }
                Err(err) => {
                    tracing::warn!(session, "push to a session of a gone gate lost: {err}");
                    return;
                }
            };
            if let Some(peer) = self
                .up(record.gate)
                .filter(|_| record.gate != self.my_index)
            {
                self.remember_moved(session, record.gate);
                peer.send(wire::Msg::Push {
                    session,
                    topic,
                    payload: serde_bytes::ByteBuf::from(payload.to_vec()),
                });
                return;
            }
            record.keep(topic, &payload);
            match shared.update(session, &record, revision).await {
                Ok(()) => return,
                Err(CasError::Conflict) => continue,
                Err(CasError::Failed(err)) => {
                    tracing::warn!(session, "push to a session of a gone gate lost: {err}");
                    return;
                }
            }
        }
        tracing::warn!(
            session,
            "push to a session of a gone gate lost: its record kept changing"
        );
    }

    /// Takes a session over from its record, its gate being gone (see [`Cluster::take`]).
    /// `Ok(Err(gate))`: the record says gate `gate`, which is up, holds it: ask there.
    /// `lost`: a gate that answered it does not hold the session (it restarted): its record
    /// is taken as a gone gate's.
    async fn take_from_record(
        &self,
        session: u64,
        secret: &[u8; SECRET_LEN],
        to: u16,
        lost: Option<u16>,
    ) -> Result<Result<Handover, u16>, ResumeError> {
        let Some(shared) = &self.shared else {
            return Err(ResumeError::Invalid);
        };
        for _ in 0..8 {
            let (record, revision) = match shared.load(session).await {
                Ok(Some(found)) => found,
                Ok(None) => return Err(ResumeError::Invalid),
                Err(err) => {
                    tracing::warn!(session, "resume from the shared record failed: {err}");
                    return Err(ResumeError::Invalid);
                }
            };
            if record.gate != to && Some(record.gate) != lost && self.up(record.gate).is_some() {
                return Ok(Err(record.gate));
            }
            if !record.token_is(secret) {
                return Err(ResumeError::Invalid);
            }
            let alive = shared.alive_at(record.gate).await;
            if !SharedSessions::within_grace(alive, record.grace_ms) {
                return Err(ResumeError::Invalid);
            }
            let claimed = SessionRecord {
                gate: to,
                pushes: Vec::new(),
                dropped: 0,
                ..record.clone()
            };
            match shared.update(session, &claimed, revision).await {
                Ok(()) => return Ok(Ok(record.into_handover())),
                Err(CasError::Conflict) => continue,
                Err(CasError::Failed(err)) => {
                    tracing::warn!(session, "resume from the shared record failed: {err}");
                    return Err(ResumeError::Invalid);
                }
            }
        }
        Err(ResumeError::Invalid)
    }

    /// The view node `node` of `topology` has: every other node it can reach.
    pub fn from_topology(
        topology: &Topology,
        node: &str,
        credential: authority::Credential,
    ) -> anyhow::Result<Self> {
        let me = topology.node(node)?;
        let identity = Identity {
            cluster: topology.cluster.clone(),
            node: node.to_owned(),
            credential,
            rpc_timeout: topology.master.rpc_timeout,
        };
        let mut cluster = Self::for_topology(topology, identity, me.index);
        cluster.gates = topology
            .nodes
            .values()
            .filter(|n| n.name != node && !n.listen.is_empty())
            .filter_map(|n| cluster.peers.get(&n.name).cloned())
            .collect();
        Ok(cluster)
    }

    /// This process's identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// This node's index.
    pub fn my_index(&self) -> u16 {
        self.my_index
    }

    /// A peer by name.
    pub fn peer(&self, name: &str) -> Option<&Arc<Peer>> {
        self.peers.get(name)
    }

    /// Every peer.
    pub fn peers(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.peers.values()
    }

    /// The processes of node `name`, each as a peer of its own: the node's peer, or for a
    /// node with copies one peer per copy announced lately (none while no copy runs). The
    /// master deploys to and asks the status of each.
    pub fn instances(&self, name: &str) -> Vec<Arc<Peer>> {
        let Some(peer) = self.peers.get(name) else {
            return Vec::new();
        };
        let Route::Queue(fabric) = peer.route() else {
            return vec![peer.clone()];
        };
        let running = fabric.instances(name);
        let mut copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies.retain(|(node, instance), _| node != name || running.contains(instance));
        running
            .into_iter()
            .map(|instance| {
                copies
                    .entry((name.to_owned(), instance.clone()))
                    .or_insert_with(|| {
                        let route = Route::Instance(fabric.clone(), instance);
                        Arc::new(Peer::new(
                            name.to_owned(),
                            peer.index,
                            route,
                            self.identity.clone(),
                        ))
                    })
                    .clone()
            })
            .collect()
    }
}

impl RemoteSessions for Cluster {
    fn send_op(&self, gate: u16, op: SessionOp) {
        if let (
            Some(shared),
            SessionOp::PushMany {
                sessions,
                topic,
                payload,
            },
        ) = (&self.shared, &op)
            && self.by_index.get(&gate).is_some_and(|p| p.presumed_down())
        {
            for &session in sessions {
                shared.gone_push(GonePush {
                    gate,
                    session,
                    topic: *topic,
                    payload: Bytes::from(payload.to_vec()),
                });
            }
            return;
        }
        match self.by_index.get(&gate) {
            Some(peer) => peer.send(wire::Msg::Sessions { id: 0, op }),
            None => tracing::debug!(gate, "session operation for an unknown gate dropped"),
        }
    }

    fn broadcast_op(&self, op: SessionOp) {
        for gate in &self.gates {
            gate.send(wire::Msg::Sessions {
                id: 0,
                op: op.clone(),
            });
        }
    }

    fn request_op(&self, gate: u16, op: SessionOp) -> OpFuture<'_> {
        Box::pin(async move {
            let Some(peer) = self.by_index.get(&gate) else {
                return Err(format!("no node has index {gate}"));
            };
            match peer.request(|id| wire::Msg::Sessions { id, op }).await {
                Ok(wire::Msg::Reply {
                    result: Ok(bytes), ..
                }) => rmp_serde::from_slice(&bytes).map_err(|e| e.to_string()),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(err) => Err(err.to_string()),
            }
        })
    }

    fn push(&self, gate: u16, session: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        let Some(peer) = self.by_index.get(&gate) else {
            return Err(PushError::NoSuchSession);
        };
        if let Some(shared) = &self.shared
            && peer.presumed_down()
        {
            let push = GonePush {
                gate,
                session,
                topic,
                payload,
            };
            return if shared.gone_push(push) {
                Ok(())
            } else {
                Err(PushError::Backpressure)
            };
        }
        peer.send(wire::Msg::Push {
            session,
            topic,
            payload: serde_bytes::ByteBuf::from(payload.to_vec()),
        });
        Ok(())
    }

    fn locate(&self, session: u64) -> crate::sessions::LocateFuture<'_> {
        Box::pin(async move {
            let shared = self.shared.as_ref()?;
            let (record, _) = shared.load(session).await.ok()??;
            Some(record.gate).filter(|gate| self.up(*gate).is_some())
        })
    }

    fn moved_to(&self, session: u64) -> Option<u16> {
        self.moved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session)
            .copied()
    }

    fn handed_over(&self, session: u64, to: u16) {
        self.remember_moved(session, to);
        if to != self.my_index
            && let Some(shared) = &self.shared
        {
            shared.disown(session);
        }
    }

    fn save(&self, session: u64, record: Option<SessionRecord>) {
        if let Some(shared) = &self.shared {
            shared.save(session, record);
        }
    }

    fn take(&self, gate: u16, session: u64, secret: [u8; SECRET_LEN], to: u16) -> TakeFuture<'_> {
        Box::pin(async move {
            let mut gate = gate;
            // Each step either gets the session or learns a newer place for it.
            for _ in 0..4 {
                let mut lost = None;
                if gate != to
                    && let Some(peer) = self.up(gate)
                {
                    let op = SessionOp::Hand {
                        session,
                        secret: serde_bytes::ByteBuf::from(secret.to_vec()),
                        to,
                    };
                    let reply = match peer.request(|id| wire::Msg::Sessions { id, op }).await {
                        Ok(wire::Msg::Reply {
                            result: Ok(bytes), ..
                        }) => rmp_serde::from_slice::<OpReply>(&bytes).ok(),
                        _ => None,
                    };
                    match reply {
                        Some(OpReply {
                            handover: Some(handover),
                            ..
                        }) => return Ok(handover),
                        Some(OpReply {
                            moved: Some(next), ..
                        }) if next != gate => {
                            gate = next;
                            continue;
                        }
                        Some(OpReply { status, .. }) if status == session_status::INVALID => {
                            return Err(ResumeError::Invalid);
                        }
                        Some(OpReply { status, .. })
                            if status == session_status::NO_SUCH_SESSION =>
                        {
                            lost = Some(gate);
                        }
                        // No answer: the shared record knows more.
                        _ => {}
                    }
                }
                match self.take_from_record(session, &secret, to, lost).await? {
                    Ok(handover) => return Ok(handover),
                    Err(next) if next != gate => gate = next,
                    Err(_) => return Err(ResumeError::Invalid),
                }
            }
            Err(ResumeError::Invalid)
        })
    }
}
