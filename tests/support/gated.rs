//! The shape most gameplay tests run, in this process: a players' gate, a back-office (ops)
//! gate and the logic nodes behind both, every logic node hosting every module, over SQLite in
//! a folder of its own. Each gate has one TCP listener on `127.0.0.1:0`.
//!
//! ```ignore
//! let cl = Gated {
//!     cluster: "games",
//!     modules: &["accounts", "leaderboard"],
//!     logic: &["l1", "l2"],
//!     players: &[("201-207", Some("sticky"))],
//!     ops: &[("500-507", Some("round_robin"))],
//!     ..Gated::default()
//! }
//! .start()
//! .await;
//! Client::connect(cl.gate).await?;
//! ```

use std::net::SocketAddr;

use firefly::node::Node;

use crate::topology::{self, Storage, Topology};
use crate::{free_addr, start_cluster};

/// What to start: see the module documentation. Routes are `(commands, policy)`, each to every
/// logic node (`None`: the default policy).
#[derive(Default)]
pub struct Gated<'a> {
    /// The cluster's name.
    pub cluster: &'a str,
    /// Module crates of `modules/`, each hosted by every logic node.
    pub modules: &'a [&'a str],
    /// The logic nodes' names.
    pub logic: &'a [&'a str],
    /// The players' gate's routes.
    pub players: &'a [(&'a str, Option<&'a str>)],
    /// The ops gate's routes.
    pub ops: &'a [(&'a str, Option<&'a str>)],
    /// The Redis cache at this URL; `None`: the embedded cache, held by the first logic node
    /// and journaled.
    pub redis: Option<&'a str>,
    /// The prefix of its tables and Redis keys (for a database or Redis shared with others).
    pub table_prefix: Option<String>,
}

/// A started [`Gated`] cluster. Dropping it stops its nodes and removes its folder.
pub struct GatedCluster {
    /// The players' gate's client listener.
    pub gate: SocketAddr,
    /// The ops gate's client listener.
    pub ops: SocketAddr,
    /// The logic nodes (in [`Gated::logic`]'s order), then the players' gate, then the ops gate.
    pub nodes: Vec<Node>,
    /// Holds the database, the journal and the topology.
    pub dir: tempfile::TempDir,
}

impl Gated<'_> {
    /// Its topology, the storage in `dir`: the master's `rpc_timeout` is 5 s and writes reach
    /// the database every 50 ms.
    pub fn topology(&self, dir: &std::path::Path) -> Topology {
        let d = dir.display();
        let mut storage = Storage {
            database: Some(format!("sqlite://{d}/data.db")),
            table_prefix: self.table_prefix.clone(),
            flush_interval: Some("50ms"),
            ..Storage::default()
        };
        match self.redis {
            None => {
                storage.owner = Some(self.logic[0].to_owned());
                storage.journal = Some(format!("{d}/journal.db"));
            }
            Some(url) => {
                storage.cache = Some(url.to_owned());
                storage.command_timeout = Some("5s");
            }
        }
        let mut topology = Topology::new(self.cluster).rpc_timeout("5s");
        for module in self.modules {
            topology = topology.module(module);
        }
        for logic in self.logic {
            topology = topology.node(logic, |n| n.rpc(free_addr()).modules(self.modules));
        }
        let gate = |n: topology::Node, routes: &[(&str, Option<&str>)]| {
            let mut n = n.rpc(free_addr()).tcp("127.0.0.1:0".parse().unwrap());
            for (commands, policy) in routes {
                n = match policy {
                    Some(policy) => n.route_by(commands, self.logic, policy),
                    None => n.route(commands, self.logic),
                };
            }
            n
        };
        topology
            .node("gate", |n| gate(n, self.players))
            .node("ops", |n| gate(n, self.ops))
            .storage(storage)
    }

    /// Starts the logic nodes, then the players' gate, then the ops gate.
    pub async fn start(self) -> GatedCluster {
        let dir = tempfile::tempdir().unwrap();
        let yaml = self.topology(dir.path()).yaml();
        let mut names = self.logic.to_vec();
        names.extend(["gate", "ops"]);
        let (_, nodes) = start_cluster(&yaml, &names).await;
        let n = self.logic.len();
        GatedCluster {
            gate: nodes[n].client_addrs()[0],
            ops: nodes[n + 1].client_addrs()[0],
            nodes,
            dir,
        }
    }
}
