//! A node: the process that hosts modules and (as a gate) accepts clients.
//!
//! [`Node::start`] is the library entry point every caller uses: the `firefly` binary, the
//! tests (on `127.0.0.1:0`) and the benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use bytes::Bytes;
use firefly_abi::DispatchKind;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cluster::{Cluster, RemoteRoute, wire};
use crate::config::{Limits, ListenerKind, ListenerSpec, RouteSpec, Topology};
use crate::engine::{Lease, Runtime};
use crate::gate::{self, GateStats};
use crate::protocol::ErrorReply;
use crate::router::{ModuleSlot, Router};
use crate::sessions::Sessions;

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
}

impl NodeConfig {
    /// The configuration of node `name` of `topology`, with each module's `.wasm` path given
    /// by `wasm_of` (built or resolved by the caller).
    ///
    /// `secret` is the cluster secret; it is required when the node talks to other nodes.
    pub fn from_topology(
        topology: &Topology,
        name: &str,
        wasm_of: impl Fn(&str) -> anyhow::Result<PathBuf>,
        secret: Option<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let spec = topology.node(name)?;
        let clustered = spec.rpc.is_some() || topology.nodes.len() > 1;
        let cluster = if clustered {
            let Some(secret) = secret else {
                anyhow::bail!(
                    "node `{name}` is part of a cluster but has no cluster secret (set {})",
                    crate::cluster::auth::SECRET_ENV
                );
            };
            Some(Arc::new(Cluster::from_topology(topology, name, secret)?))
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
        })
    }
}

/// State shared by a node's listeners and connections.
pub(crate) struct NodeCore {
    pub name: String,
    pub started: std::time::Instant,
    pub remote_routes: Vec<RemoteRoute>,
    pub sessions: Arc<Sessions>,
    pub router: ArcSwap<Router>,
    pub slots: Vec<Arc<ModuleSlot>>,
    pub gate_stats: GateStats,
    /// This node's links to the others (for metrics per peer).
    pub cluster: Option<Arc<Cluster>>,
    pub runtime: Runtime,
    /// Hot update: retained versions and the lock that serialises swaps.
    pub updates: crate::hot::NodeUpdates,
    /// Cached database objects (serves other nodes' requests when this node owns the data).
    pub data: Option<Arc<crate::data::Data>>,
}

/// Which local module version serves a command, relative to a lease already held.
pub(crate) enum LocalRoute {
    /// No module on this node handles the command.
    None,
    /// The version the lease is on.
    Same,
    /// Another version (another module, or a newer version after a hot update).
    Other(Arc<crate::engine::ModuleVersion>),
}

impl NodeCore {
    /// The module version serving `command` now, compared with the one `lease` is on. When the
    /// lease's version still serves it (the common case in a pipelined run) no router look-up
    /// is made; otherwise a borrowed look-up that touches no reference count when it is the same.
    pub(crate) fn local_route(&self, command: u32, lease: Option<&Lease>) -> LocalRoute {
        if lease.is_some_and(|l| l.module().serves(command)) {
            return LocalRoute::Same;
        }
        let router = self.router.load();
        let Some(slot) = router.get(command) else {
            return LocalRoute::None;
        };
        let current = slot.current_guard();
        if lease.is_some_and(|l| Arc::ptr_eq(l.module(), &current)) {
            LocalRoute::Same
        } else {
            LocalRoute::Other(arc_swap::Guard::into_inner(current))
        }
    }

    /// The route that sends `command` to another node, if any.
    pub fn remote_route(&self, command: u32) -> Option<&RemoteRoute> {
        self.remote_routes.iter().find(|r| r.covers(command))
    }

    /// Makes every session end (a kick, a closed connection, an expired grace window) tell
    /// the routed nodes and fire the modules' disconnect events.
    fn watch_session_ends(self: &Arc<Self>) {
        let core = Arc::downgrade(self);
        self.sessions.set_on_end(move |session| {
            let Some(core) = core.upgrade() else {
                return;
            };
            core.announce(session, false);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(
                    async move { core.session_event(DispatchKind::Disconnect, session).await },
                );
            }
        });
    }

    /// Tells every node this gate routes to that a session connected or ended.
    pub fn announce(&self, session: u64, connect: bool) {
        let mut told: Vec<&str> = Vec::new();
        for route in &self.remote_routes {
            for peer in route.peers() {
                if !told.contains(&peer.name.as_str()) {
                    told.push(&peer.name);
                    peer.send(wire::Msg::Event { session, connect });
                }
            }
        }
    }

    /// Runs a request another node forwarded here (for one of its sessions).
    pub async fn serve_forward(
        &self,
        session: u64,
        command: u32,
        payload: Bytes,
    ) -> (
        Vec<wire::PushItem>,
        Result<serde_bytes::ByteBuf, ErrorReply>,
    ) {
        let mut answer = None;
        let mut jobs = vec![(0, command, payload)];
        self.serve_forwards(session, &mut jobs, |_, pushes, result| {
            answer = Some((pushes, result));
        })
        .await;
        answer.unwrap_or_else(|| {
            let err = ErrorReply::new(command, firefly_abi::codes::INTERNAL, "no answer");
            (Vec::new(), Err(err))
        })
    }

    /// Runs requests another node forwarded here for one session, `(id, command, payload)`,
    /// one at a time in order, and hands each answer to `answer` with its id, in order.
    /// Consecutive requests for one module version share one entry into the module (batched
    /// dispatch), exactly as pipelined requests on a gate do. Drains `jobs`.
    pub async fn serve_forwards(
        &self,
        session: u64,
        jobs: &mut Vec<(u64, u32, Bytes)>,
        mut answer: impl FnMut(u64, Vec<wire::PushItem>, Result<serde_bytes::ByteBuf, ErrorReply>),
    ) {
        let (mut requests, mut errors) = (0, 0);
        let mut emit = |id, pushes, result: Result<serde_bytes::ByteBuf, ErrorReply>| {
            requests += 1;
            errors += u64::from(result.is_err());
            answer(id, pushes, result);
        };
        let mut lease: Option<Lease> = None;
        let mut batch = crate::engine::Batch::default();
        let mut ids: Vec<u64> = Vec::new();
        for (id, command, payload) in jobs.drain(..) {
            let route = self.local_route(command, lease.as_ref());
            if !matches!(route, LocalRoute::Same)
                && let Some(l) = lease.as_mut()
            {
                // The queued requests run on the version they leased, before anything else.
                self.answer_batch(session, l, &mut batch, &mut ids, &mut emit)
                    .await;
            }
            match route {
                LocalRoute::Same => {}
                LocalRoute::Other(version) => lease = Some(Lease::new(version)),
                LocalRoute::None => {
                    emit(id, Vec::new(), Err(self.unknown_command(command)));
                    continue;
                }
            }
            batch.push(command, payload);
            ids.push(id);
        }
        if let Some(l) = lease.as_mut() {
            self.answer_batch(session, l, &mut batch, &mut ids, &mut emit)
                .await;
        }
        self.gate_stats.requests.add(requests);
        if errors > 0 {
            self.gate_stats.errors.add(errors);
        }
    }

    /// The error frame for a command no module on this node handles.
    pub(crate) fn unknown_command(&self, command: u32) -> ErrorReply {
        ErrorReply::new(
            command,
            firefly_abi::codes::UNKNOWN_COMMAND,
            format!(
                "no module on node `{}` handles command {command}",
                self.name
            ),
        )
    }

    /// Serves the queued `batch` on `lease` and hands out each answer with its id (`ids`, in
    /// the batch's order); leaves both empty.
    async fn answer_batch(
        &self,
        session: u64,
        lease: &mut Lease,
        batch: &mut crate::engine::Batch,
        ids: &mut Vec<u64>,
        mut answer: impl FnMut(u64, Vec<wire::PushItem>, Result<serde_bytes::ByteBuf, ErrorReply>),
    ) {
        if batch.is_empty() {
            return;
        }
        lease.call_batch(session, batch).await;
        let module = lease.module();
        for (a, id) in batch.answers().zip(ids.drain(..)) {
            let pushes = a
                .pushes
                .iter()
                .map(|(topic, p)| (*topic, serde_bytes::ByteBuf::from(p.to_vec())))
                .collect();
            let result = a
                .reply(session, module)
                .map(|reply| serde_bytes::ByteBuf::from(reply.to_vec()));
            answer(id, pushes, result);
        }
        batch.clear();
    }

    /// What a metrics scrape reports, summed now.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        let stats = &self.gate_stats;
        crate::metrics::Snapshot {
            node: self.name.clone(),
            connections: stats.connections.load(Ordering::Relaxed) as u64,
            sessions: self.sessions.len() as u64,
            gate_requests: stats.requests.get(),
            gate_errors: stats.errors.get(),
            data: self.data.as_ref().and_then(|d| d.flush_stats()),
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

    /// This node's status as JSON (for the master's `firefly status`).
    pub fn status_json(&self) -> String {
        let modules: Vec<serde_json::Value> = self
            .slots
            .iter()
            .map(|slot| {
                let v = slot.current();
                serde_json::json!({
                    "name": v.name(),
                    "version": v.version(),
                    "hash": v.hash,
                    "commands": v.manifest.commands,
                    "calls": v.stats.calls.get(),
                    "errors": v.stats.errors.get(),
                    "traps": v.stats.traps.get(),
                    "timeouts": v.stats.timeouts.get(),
                })
            })
            .collect();
        let stats = &self.gate_stats;
        serde_json::json!({
            "node": self.name,
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "connections": stats.connections.load(Ordering::Relaxed),
            "sessions": self.sessions.len(),
            "accepted": stats.accepted.load(Ordering::Relaxed),
            "requests": stats.requests.get(),
            "errors": stats.errors.get(),
            "modules": modules,
        })
        .to_string()
    }

    /// Delivers a session event to every module that asked for it. Failures are logged: there
    /// is no client request to answer.
    pub async fn session_event(&self, kind: DispatchKind, session: u64) {
        let slots: Vec<Arc<ModuleSlot>> = {
            let router = self.router.load();
            match kind {
                DispatchKind::Connect => router.on_connect().to_vec(),
                _ => router.on_disconnect().to_vec(),
            }
        };
        for slot in slots {
            let module = slot.current();
            let (outcome, _) = module.call_owned(kind, 0, session, Bytes::new()).await;
            if let Err(err) = outcome.result {
                tracing::warn!(
                    session,
                    module = module.name(),
                    version = module.version(),
                    "{kind:?} handler failed: {} ({})",
                    err.message,
                    err.code
                );
            }
        }
    }
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

/// A snapshot of one hosted module, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Entries into the module that served a batch of pipelined requests (0 for modules built
    /// without batched dispatch, which get one call per request).
    pub batches: u64,
}

impl Node {
    /// Loads every module, binds every listener and starts serving.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        let mut listeners = Vec::new();
        for spec in &config.listeners {
            let listener = TcpListener::bind(spec.addr).await.with_context(|| {
                format!("node `{}`: cannot listen on {}", config.name, spec.addr)
            })?;
            listeners.push((listener, spec.kind, spec.protocol.clone()));
        }
        Self::start_with_listeners(config, listeners).await
    }

    /// Like [`Node::start`], on listeners the caller already bound (their specs' addresses are
    /// ignored).
    pub async fn start_with_listeners(
        config: NodeConfig,
        listeners: Vec<(TcpListener, ListenerKind, crate::config::ProtocolSettings)>,
    ) -> anyhow::Result<Node> {
        let sessions = Arc::new(Sessions::for_node(config.index));
        if let Some(cluster) = &config.cluster {
            sessions.set_remote(cluster.clone());
        }
        let runtime = Runtime::new(sessions.clone(), config.cache_dir.clone());
        if let Some(cluster) = &config.cluster {
            runtime.set_cluster(cluster.clone());
        }
        let data = match &config.storage {
            Some(spec) => {
                let data =
                    crate::data::Data::open(spec, &config.name, config.cluster.as_ref()).await?;
                runtime.set_data(data.clone());
                Some(data)
            }
            None => None,
        };
        let mut slots = Vec::new();
        for m in &config.modules {
            let wasm = std::fs::read(&m.wasm).with_context(|| {
                format!("module `{}`: cannot read {}", m.name, m.wasm.display())
            })?;
            let version = runtime
                .load(&m.name, m.version, &wasm, &m.limits)
                .await
                .with_context(|| format!("module `{}` ({}) refused", m.name, m.wasm.display()))?;
            tracing::info!(
                node = %config.name, module = %m.name, version = m.version, hash = &version.hash[..12],
                commands = ?version.manifest.commands, "module loaded"
            );
            slots.push(Arc::new(ModuleSlot::new(version)));
        }
        let router = Router::build(&slots).with_context(|| format!("node `{}`", config.name))?;
        let mut remote_routes = Vec::new();
        for r in &config.routes {
            let Some(cluster) = &config.cluster else {
                anyhow::bail!("node `{}` has routes but no cluster links", config.name);
            };
            let mut peers = Vec::new();
            for target in &r.to {
                let peer = cluster
                    .peer(target)
                    .with_context(|| format!("route to `{target}`: no such peer"))?;
                peers.push(peer.clone());
            }
            remote_routes.push(RemoteRoute::new(r.first, r.last, peers, r.policy));
        }
        let metrics_listener = match config.metrics {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("node `{}`: cannot serve metrics on {addr}", config.name)
            })?),
            None => None,
        };
        let rpc_listener = match config.rpc {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("node `{}`: cannot listen for nodes on {addr}", config.name)
            })?),
            None => None,
        };
        let core = Arc::new(NodeCore {
            name: config.name.clone(),
            started: std::time::Instant::now(),
            remote_routes,
            sessions,
            router: ArcSwap::from_pointee(router),
            slots,
            gate_stats: GateStats::default(),
            cluster: config.cluster.clone(),
            runtime,
            updates: crate::hot::NodeUpdates::default(),
            data,
        });
        core.watch_session_ends();
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        let mut rpc_addr = None;
        if let (Some(listener), Some(cluster)) = (rpc_listener, &config.cluster) {
            let addr = listener.local_addr()?;
            tracing::info!(node = %config.name, "listening for nodes on {addr}");
            rpc_addr = Some(addr);
            tasks.spawn(crate::cluster::server::serve(
                listener,
                cluster.clone(),
                core.clone(),
                rx.clone(),
            ));
        }
        let mut metrics_addr = None;
        if let Some(listener) = metrics_listener {
            let addr = listener.local_addr()?;
            tracing::info!(node = %config.name, "metrics on http://{addr}/metrics");
            metrics_addr = Some(addr);
            tasks.spawn(crate::metrics::http::serve(
                listener,
                core.clone(),
                rx.clone(),
            ));
        }
        for (listener, kind, settings) in listeners {
            let addr = listener.local_addr()?;
            tracing::info!(node = %config.name, "listening on {}", gate::describe(kind, &addr));
            addrs.push(addr);
            tasks.spawn(gate::serve(
                listener,
                kind,
                settings,
                core.clone(),
                rx.clone(),
            ));
        }
        Ok(Node {
            core,
            addrs,
            rpc_addr,
            metrics_addr,
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
        self.core.gate_stats.connections.load(Ordering::Relaxed)
    }

    /// Sessions held here: connected, or parked waiting for their client to resume.
    pub fn sessions(&self) -> usize {
        self.core.sessions.len()
    }

    /// The gate's counters.
    pub fn gate_stats(&self) -> &GateStats {
        &self.core.gate_stats
    }

    /// Every hosted module with its current version and counters.
    pub fn modules(&self) -> Vec<ModuleStatus> {
        self.core
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
                    batches: v.stats.batches.get(),
                }
            })
            .collect()
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

    /// Stops accepting, lets every connection finish the request it is running, closes them,
    /// and returns once all are gone or `grace` has passed.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let stats = &self.core.gate_stats;
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
