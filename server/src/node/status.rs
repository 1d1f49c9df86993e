//! One status of a node, read once from its counters: `firefly status` (through the master's
//! `/status`), [`Node::modules`](super::Node::modules) and the `/metrics` scrape all project
//! this same value, so the three can never disagree on what a counter means.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::NodeCore;

/// A node's status.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Its process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Client connections open now.
    pub connections: usize,
    /// Sessions held: connected, or parked waiting for their client to resume.
    pub sessions: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Requests served (client frames and forwarded requests).
    pub requests: u64,
    /// Of which answered with an error.
    pub errors: u64,
    /// Rooms open on this node (every module's).
    pub rooms: usize,
    /// Every hosted module, on the version serving new requests.
    pub modules: Vec<ModuleStatus>,
    /// The links this node cannot serve without (its routes' targets), each
    /// with whether it is up now.
    pub links: Vec<LinkStatus>,
    /// Ready to serve every request it routes: its modules are loaded, its listeners bound
    /// (a node answers a status request only then) and each of its routes has a target among
    /// [`NodeStatus::links`] up. `firefly up` says when every node is; tests wait on it.
    pub ready: bool,
}

/// The peers a node's routes go to: each once, and per route which of them it may use.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    peers: Vec<std::sync::Arc<crate::cluster::Peer>>,
    /// Per route, indices into `peers`: the route can be served while any one is linked.
    routes: Vec<Vec<usize>>,
}

impl Needs {
    /// One more route, to `targets`.
    pub(crate) fn add_route(
        &mut self,
        targets: impl IntoIterator<Item = std::sync::Arc<crate::cluster::Peer>>,
    ) {
        let mut route = Vec::new();
        for peer in targets {
            let at = match self.peers.iter().position(|p| p.name == peer.name) {
                Some(at) => at,
                None => {
                    self.peers.push(peer);
                    self.peers.len() - 1
                }
            };
            route.push(at);
        }
        self.routes.push(route);
    }

    /// Every peer, once.
    pub(crate) fn peers(&self) -> &[std::sync::Arc<crate::cluster::Peer>] {
        &self.peers
    }

    /// Whether every route has a target up, `links` being [`Needs::peers`]' states in order.
    fn ready(&self, links: &[LinkStatus]) -> bool {
        self.routes.iter().all(|route| {
            route.is_empty() || route.iter().any(|&i| links.get(i).is_some_and(|l| l.up))
        })
    }
}

/// One link a node needs, and whether it is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// The peer node.
    pub peer: String,
    /// Whether requests to it go out now.
    pub up: bool,
}

/// One hosted module, on the version serving new requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleStatus {
    /// Module name.
    pub name: String,
    /// Version serving new requests.
    pub version: u32,
    /// Content hash of that version.
    pub hash: String,
    /// Commands it handles.
    pub commands: Vec<u32>,
    /// Calls served by that version.
    pub calls: u64,
    /// Of which failed.
    pub errors: u64,
    /// Of which trapped.
    pub traps: u64,
    /// Of which ran out of time or CPU budget.
    pub timeouts: u64,
    /// Entries into the module that served a batch of pipelined requests (0 for modules built
    /// without batched dispatch, which get one call per request).
    pub batches: u64,
}

impl NodeCore {
    /// The node's status now.
    pub fn status(&self) -> NodeStatus {
        let stats = &self.dispatch.gate_stats;
        let links: Vec<LinkStatus> = self
            .needs
            .peers()
            .iter()
            .map(|p| LinkStatus {
                peer: p.name.clone(),
                up: p.linked(),
            })
            .collect();
        NodeStatus {
            ready: self.needs.ready(&links),
            links,
            node: self.name.clone(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            connections: stats.connections.load(Ordering::Relaxed),
            sessions: self.dispatch.sessions.len(),
            accepted: stats.accepted.load(Ordering::Relaxed),
            requests: stats.requests.get(),
            errors: stats.errors.get(),
            rooms: self.rooms.open(),
            modules: self
                .slots
                .iter()
                .map(|slot| {
                    let v = slot.current();
                    ModuleStatus {
                        name: v.name().to_owned(),
                        version: v.version(),
                        hash: v.hash.clone(),
                        commands: v.manifest.commands.clone(),
                        calls: v.stats.calls.get(),
                        errors: v.stats.errors.get(),
                        traps: v.stats.traps.get(),
                        timeouts: v.stats.timeouts.get(),
                        batches: v.stats.batches.get(),
                    }
                })
                .collect(),
        }
    }

    /// What a metrics scrape reports: the status's counters, plus the per-command totals of
    /// every module version, the links to peers and the write-behind counters.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        let status = self.status();
        crate::metrics::Snapshot {
            node: status.node,
            connections: status.connections as u64,
            sessions: status.sessions as u64,
            gate_requests: status.requests,
            gate_errors: status.errors,
            data: self.data.as_ref().and_then(|d| d.flush_stats()),
            edge: {
                let e = &self.dispatch.gate_stats.edge;
                let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
                crate::metrics::EdgeTotals {
                    refused_listener_cap: get(&e.refused_listener_cap),
                    refused_ip_cap: get(&e.refused_ip_cap),
                    rate_limited: get(&e.rate_limited),
                    write_stalls: get(&e.write_stalls),
                    tls_handshake_failures: get(&e.tls_handshake_failures),
                }
            },
            timers: self
                .timers
                .totals()
                .into_iter()
                .map(|t| crate::metrics::TimerCounts {
                    module: t.module,
                    pending: t.pending,
                    fired: t.fired,
                    failed: t.failed,
                    late: t.late,
                })
                .collect(),
            modules: self
                .slots
                .iter()
                .map(|slot| {
                    let v = slot.current();
                    (v.name().to_owned(), v.version(), v.metrics.totals())
                })
                .collect(),
            peers: self
                .cluster
                .iter()
                .flat_map(|c| c.peers())
                .map(|p| crate::metrics::PeerTotals {
                    peer: p.name.clone(),
                    calls: p.calls.get(),
                    failures: p.failures.get(),
                })
                .collect(),
        }
    }

    /// The node's status as JSON (for the master's `firefly status`).
    pub fn status_json(&self) -> String {
        serde_json::to_string(&self.status()).unwrap_or_default()
    }
}
