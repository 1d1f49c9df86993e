//! A node: the process that hosts modules and (as a gate) accepts clients.
//!
//! [`Node::start`] is the library entry point every caller uses: the `firefly` binary, the
//! tests (on `127.0.0.1:0`) and the benchmarks.

mod deploy;
mod inbound;
mod start;
mod status;
mod timers;

pub use start::Sockets;
pub use status::{LinkStatus, ModuleStatus, NodeStatus};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use firefly_abi::DispatchKind;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::config::{Limits, ListenerSpec, RouteSpec, Topology};
use crate::engine::Runtime;
use crate::routing::{Dispatcher, GateStats, ModuleSlot};

/// A module a node loads at start.
#[derive(Debug, Clone)]
pub struct ModuleToLoad {
    /// Its name.
    pub name: String,
    /// The `.wasm` file.
    pub wasm: PathBuf,
    /// The limits it runs under.
    pub limits: Limits,
    /// Its version number (from the master's registry; 1 for a module never hot-updated).
    pub version: u32,
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name, from the topology.
    pub name: String,
    /// Its index in the topology (0 for a standalone node).
    pub index: u16,
    /// Where it listens for other nodes, if it does.
    pub rpc: Option<SocketAddr>,
    /// Command ranges this gate sends to other nodes.
    pub routes: Vec<RouteSpec>,
    /// Its links to the other nodes (`None` for a standalone node).
    pub cluster: Option<Arc<Cluster>>,
    /// Modules to host.
    pub modules: Vec<ModuleToLoad>,
    /// Client listeners (empty for a node that only hosts logic).
    pub listeners: Vec<ListenerSpec>,
    /// Where compiled modules are cached (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Cached database objects (`None`: modules declaring tables are refused).
    pub storage: Option<crate::config::StorageSpec>,
    /// Where to serve Prometheus metrics (`None`: nowhere).
    pub metrics: Option<SocketAddr>,
    /// The bearer token a scrape must send (`None`: none asked).
    pub metrics_token: Option<String>,
    /// The nodes hosting each module of the cluster: where a durable room of the module may
    /// be taken over when its node is gone (empty: only by this node, after a restart).
    pub module_hosts: std::collections::HashMap<String, Vec<String>>,
}

impl NodeConfig {
    /// The configuration of node `name` of `topology`, with each module's `.wasm` path given
    /// by `wasm_of` (built or resolved by the caller).
    ///
    /// `secret` is the cluster secret, from which the node issues itself its credential (an
    /// in-process or hand-started node, trusted like a master); a node the master starts
    /// gets [`NodeConfig::from_topology_with`] and its own credential instead.
    pub fn from_topology(
        topology: &Topology,
        name: &str,
        wasm_of: impl Fn(&str) -> anyhow::Result<PathBuf>,
        secret: Option<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let credential = secret
            .map(|s| crate::cluster::authority::Credential::issue(&s, &topology.cluster, name));
        Self::from_topology_with(topology, name, wasm_of, credential)
    }

    /// [`NodeConfig::from_topology`] with the node's credential (required when the node
    /// talks to other nodes).
    pub fn from_topology_with(
        topology: &Topology,
        name: &str,
        wasm_of: impl Fn(&str) -> anyhow::Result<PathBuf>,
        credential: Option<crate::cluster::authority::Credential>,
    ) -> anyhow::Result<Self> {
        let spec = topology.node(name)?;
        let clustered = spec.rpc.is_some()
            || topology.nodes.len() > 1
            || matches!(topology.transport, crate::config::Transport::Nats(_));
        let cluster = if clustered {
            let Some(credential) = credential else {
                anyhow::bail!(
                    "node `{name}` is part of a cluster but has no credential (`firefly up` gives \
                     one in {}; a node started by hand needs {})",
                    crate::cluster::authority::CREDENTIAL_ENV,
                    crate::cluster::auth::SECRET_ENV
                );
            };
            Some(Arc::new(Cluster::from_topology(
                topology, name, credential,
            )?))
        } else {
            None
        };
        let mut modules = Vec::new();
        for module in &spec.modules {
            let Some(m) = topology.module(module) else {
                anyhow::bail!("node `{name}` hosts unknown module `{module}`");
            };
            modules.push(ModuleToLoad {
                name: module.clone(),
                wasm: wasm_of(module)?,
                limits: m.limits.clone(),
                version: 1,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            index: spec.index,
            rpc: spec.rpc,
            routes: spec.routes.clone(),
            cluster,
            modules,
            listeners: spec.listen.clone(),
            cache_dir: Some(topology.cache_dir()),
            storage: Some(topology.storage.clone()),
            metrics: spec.metrics,
            metrics_token: match &spec.metrics_token_file {
                Some(file) => Some(crate::metrics::http::read_token(file)?),
                None => None,
            },
            module_hosts: module_hosts(topology),
        })
    }
}

/// The nodes of `topology` hosting each module.
fn module_hosts(topology: &Topology) -> std::collections::HashMap<String, Vec<String>> {
    let mut hosts: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (node, spec) in &topology.nodes {
        for module in &spec.modules {
            hosts.entry(module.clone()).or_default().push(node.clone());
        }
    }
    hosts
}

/// State shared by a node's listeners and connections.
pub(crate) struct NodeCore {
    pub name: String,
    /// The peers its routes go to: kept linked; the node is ready while every route has one
    /// of its targets linked.
    pub needs: status::Needs,
    pub started: std::time::Instant,
    /// The request path: routes, sessions, counters (shared with the gate and the inbound
    /// side of the cluster links).
    pub dispatch: Arc<Dispatcher>,
    pub slots: Vec<Arc<ModuleSlot>>,
    /// This node's links to the others (for metrics per peer).
    pub cluster: Option<Arc<Cluster>>,
    pub runtime: Runtime,
    /// Hot update: retained versions and the lock that serialises swaps.
    pub updates: crate::hot::NodeUpdates,
    /// Cached database objects (serves other nodes' requests when this node owns the data).
    pub data: Option<Arc<crate::data::Data>>,
    /// The modules' timers.
    pub timers: Arc<crate::timers::Scheduler>,
    /// The modules' rooms.
    pub rooms: Arc<crate::rooms::Rooms>,
}

impl NodeCore {
    /// The slot of hosted module `module`.
    pub(crate) fn slot(&self, module: &str) -> Option<&Arc<ModuleSlot>> {
        self.slots.iter().find(|s| s.name() == module)
    }

    /// Serves the ends of sessions (a kick, a closed connection, an expired grace window)
    /// that `ended` reports: tells the routed nodes and fires the modules' disconnect events.
    /// Holds the node weakly, so the task ends with it.
    fn watch_session_ends(self: &Arc<Self>, mut ended: tokio::sync::mpsc::UnboundedReceiver<u64>) {
        let dispatch = Arc::downgrade(&self.dispatch);
        let rooms = self.rooms.clone();
        tokio::spawn(async move {
            while let Some(session) = ended.recv().await {
                let Some(core) = dispatch.upgrade() else {
                    return;
                };
                core.announce(session, false);
                rooms.session_ended(session);
                tokio::spawn(
                    async move { core.session_event(DispatchKind::Disconnect, session).await },
                );
            }
        });
    }
}

/// How a node is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Stop (SIGTERM, Ctrl-C, `firefly stop`).
    Stop,
    /// Hand every room to other nodes, then stop (`firefly drain`: SIGUSR1).
    Drain,
}

/// A running node.
pub struct Node {
    core: Arc<NodeCore>,
    addrs: Vec<SocketAddr>,
    rpc_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Node {
    /// Loads every module, binds every listener and starts serving.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        Self::start_on(config, Sockets::default()).await
    }

    /// Like [`Node::start`], serving on the sockets the caller already bound (see [`Sockets`]);
    /// what the caller did not bind is bound from the configuration.
    pub async fn start_on(config: NodeConfig, sockets: Sockets) -> anyhow::Result<Node> {
        let sockets = sockets.complete(&config).await?;
        // Boxed: building every layer is a deep future, and callers that embed `Node::start`
        // in their own async code should not inherit its size (nor the compiler its depth).
        let core = Box::pin(start::build_core(&config)).await?;
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let bound = start::serve(&core, &config, sockets, &mut tasks, &stop)?;
        Ok(Node {
            core,
            addrs: bound.clients,
            rpc_addr: bound.rpc,
            metrics_addr: bound.metrics,
            shutdown,
            tasks,
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Addresses of the client listeners, in configuration order.
    pub fn client_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where it listens for other nodes.
    pub fn rpc_addr(&self) -> Option<SocketAddr> {
        self.rpc_addr
    }

    /// Where it serves `GET /metrics`, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This node's status as JSON.
    pub fn status_json(&self) -> String {
        self.core.status_json()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.core
            .dispatch
            .gate_stats
            .connections
            .load(Ordering::Relaxed)
    }

    /// Sessions held here: connected, or parked waiting for their client to resume.
    pub fn sessions(&self) -> usize {
        self.core.dispatch.sessions.len()
    }

    /// The gate's counters.
    pub fn gate_stats(&self) -> &GateStats {
        &self.core.dispatch.gate_stats
    }

    /// Every hosted module with its current version and counters.
    pub fn modules(&self) -> Vec<ModuleStatus> {
        self.core.status().modules
    }

    /// The version of `module` serving new requests, if this node hosts it.
    pub fn module(&self, module: &str) -> Option<Arc<crate::engine::ModuleVersion>> {
        self.core.slot(module).map(|s| s.current())
    }

    /// Rooms open on this node (every module's).
    pub fn open_rooms(&self) -> usize {
        self.core.rooms.open()
    }

    /// The node's status now (what `firefly status` shows for it).
    pub fn status(&self) -> NodeStatus {
        self.core.status()
    }

    /// Hot update: makes `version` of `module` serve every request that starts from now on
    /// (see [`crate::hot::swap`]); on any error the old version keeps serving.
    pub async fn deploy(
        &self,
        module: &str,
        version: u32,
        wasm: Option<&[u8]>,
    ) -> Result<crate::hot::Swapped, crate::hot::DeployError> {
        self.core.deploy(module, version, wasm).await
    }

    /// Serves until `stop` completes (a signal, a cancelled token, a test's oneshot), then
    /// shuts down as [`Node::shutdown`] does, its durable rooms stored one last time.
    pub async fn serve_until(self, stop: impl std::future::Future<Output = ()>, grace: Duration) {
        let stop = async {
            stop.await;
            StopKind::Stop
        };
        self.serve_until_asked(stop, grace).await;
    }

    /// Serves until `stop` says how to stop: [`StopKind::Drain`] first hands every room to
    /// other nodes (`firefly drain`), [`StopKind::Stop`] stores the durable rooms one last
    /// time (others take them over, or this node takes them back when it starts again).
    pub async fn serve_until_asked(
        self,
        stop: impl std::future::Future<Output = StopKind>,
        grace: Duration,
    ) {
        let kind = stop.await;
        let rooms = &self.core.rooms;
        // Boxed: deep futures, which callers embedding `serve_until` should not inherit.
        let rooms = match kind {
            StopKind::Drain => Box::pin(rooms.hand_over_all()).await,
            StopKind::Stop => Box::pin(rooms.store_all()).await,
        };
        if rooms > 0 {
            tracing::info!(node = %self.core.name, rooms, ?kind, "rooms stored for other nodes");
        }
        tracing::info!(node = %self.core.name, "stopping: finishing in-flight requests");
        self.shutdown(grace).await;
    }

    /// Stops accepting, lets every connection finish the request it is running, closes them,
    /// and returns once all are gone or `grace` has passed.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let stats = &self.core.dispatch.gate_stats;
        let drained = async {
            loop {
                let idle = stats.idle.notified();
                if stats.connections.load(Ordering::Acquire) == 0 {
                    break;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(node = %self.core.name, "connections still open after {grace:?}");
        }
        if let Some(data) = &self.core.data {
            data.shutdown().await;
        }
    }

    /// The node's cached database objects, if it has storage.
    pub fn data(&self) -> Option<&Arc<crate::data::Data>> {
        self.core.data.as_ref()
    }
}
