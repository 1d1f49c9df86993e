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
pub mod server;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{Topology, Transport};
use crate::sessions::{OpFuture, PushError, RemoteSessions, SessionOp};
pub use inbound::Inbound;
pub use peer::{Peer, Pending, Route, RpcError};

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
}

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
            .map(|(name, index)| (name, index, Route::Nats(fabric.clone())))
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
        Self {
            identity,
            my_index,
            peers: by_name,
            by_index,
            gates,
            fabric,
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
                let fabric = nats::Fabric::new(
                    spec.clone(),
                    &topology.cluster,
                    &me,
                    identity.credential.clone(),
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
}

impl RemoteSessions for Cluster {
    fn send_op(&self, gate: u16, op: SessionOp) {
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

    fn push(&self, session: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        let Some(peer) = self.by_index.get(&session_node(session)) else {
            return Err(PushError::NoSuchSession);
        };
        peer.send(wire::Msg::Push {
            session,
            topic,
            payload: serde_bytes::ByteBuf::from(payload.to_vec()),
        });
        Ok(())
    }
}
