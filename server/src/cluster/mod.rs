//! The cluster: how nodes reach each other, by concern.
//!
//! * [`link`]: the node link, one authenticated ordered byte stream between two nodes, and the
//!   messages framed on it: the outbound side ([`peer`]) and the inbound one ([`listen`]);
//! * [`nats`]: NATS as the links' transport (`cluster.transport: nats://...`): announcements,
//!   link subjects, the queue groups of nodes with copies, the shared session records;
//! * [`trust`]: identities, the master's certificates, handshake proofs and signatures;
//! * `serve`: the one place every inbound message is served, whatever carried it;
//! * `handover`: sessions across gates (operations, pushes, hand-over, shared records);
//! * `calls` (modules' `call_node`/`send_node`, the engine's `NodeCalls`) and `data_link`
//!   (requests to the data-owning node, the data layer's `OwnerLink`);
//! * this file: the [`Cluster`] view a node has of the others, and its [`Identity`].
//!
//! Session ids are cluster-unique: the high 16 bits are the index of the gate that holds the
//! session, so any node can push to any session by sending to that gate.

mod calls;
mod data_link;
mod handover;
mod inbound;
pub mod link;
pub mod nats;
pub(crate) mod serve;
pub mod trust;

pub use link::{listen, peer, wire};
pub use trust::{auth, authority};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::config::{Topology, Transport};
pub use inbound::Inbound;
pub use link::route::{LinkError, Route, RpcError};
use nats::sessions::SharedSessions;
pub use peer::{Peer, Pending};
pub use trust::Identity;

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
