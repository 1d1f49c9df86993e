//! Starting a node: its sockets, its layers wired together (sessions, data, the runtime and its
//! modules, the dispatcher), and the tasks that serve each socket.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{NodeConfig, NodeCore};
use crate::engine::Runtime;
use crate::gate;
use crate::routing::{Dispatcher, ModuleSlot, RemoteRoute, Router};
use crate::sessions::Sessions;

/// Sockets bound before a node starts, for a caller that must know the addresses first or
/// hands sockets down (tests on port 0, a supervisor). Every field left empty is bound from
/// the [`NodeConfig`]; a field given is used whatever address the configuration names.
#[derive(Debug, Default)]
pub struct Sockets {
    /// The client listeners, one per entry of [`NodeConfig::listeners`] and in its order (whose
    /// kinds and protocol settings apply); empty: bind them all.
    pub clients: Vec<TcpListener>,
    /// Where other nodes connect (used only by a node with cluster links).
    pub rpc: Option<TcpListener>,
    /// Where `/metrics` is served.
    pub metrics: Option<TcpListener>,
}

impl Sockets {
    /// Binds what is missing, from `config`.
    pub(super) async fn complete(mut self, config: &NodeConfig) -> anyhow::Result<Self> {
        let name = &config.name;
        if self.clients.is_empty() {
            for spec in &config.listeners {
                let listener = TcpListener::bind(spec.addr)
                    .await
                    .with_context(|| format!("node `{name}`: cannot listen on {}", spec.addr))?;
                self.clients.push(listener);
            }
        } else if self.clients.len() != config.listeners.len() {
            anyhow::bail!(
                "node `{name}`: {} client sockets given for {} configured listeners",
                self.clients.len(),
                config.listeners.len()
            );
        }
        if let (None, Some(addr)) = (&self.rpc, config.rpc) {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("node `{name}`: cannot listen for nodes on {addr}"))?;
            self.rpc = Some(listener);
        }
        if let (None, Some(addr)) = (&self.metrics, config.metrics) {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("node `{name}`: cannot serve metrics on {addr}"))?;
            self.metrics = Some(listener);
        }
        Ok(self)
    }
}

/// The addresses a node serves on, once its sockets are bound.
pub(super) struct Bound {
    pub clients: Vec<SocketAddr>,
    pub rpc: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Every layer of the node, built from `config` and wired together; the node serves nothing yet.
pub(super) async fn build_core(config: &NodeConfig) -> anyhow::Result<Arc<NodeCore>> {
    let (ends, ended) = tokio::sync::mpsc::unbounded_channel();
    let mut sessions = Sessions::for_node(config.index).on_end(move |session| {
        let _ = ends.send(session);
    });
    if let Some(cluster) = &config.cluster {
        sessions = sessions.with_remote(cluster.clone());
    }
    let sessions = Arc::new(sessions);
    let data = match &config.storage {
        Some(spec) => {
            let links = config
                .cluster
                .as_deref()
                .map(|c| c as &dyn crate::data::OwnerLinks);
            Some(crate::data::Data::open(spec, &config.name, links).await?)
        }
        None => None,
    };
    let durable = data
        .as_ref()
        .map(|d| crate::timers::Durable::new(d.clone(), &config.name));
    let (timers, due) = crate::timers::Scheduler::start(durable);
    let node_name: Arc<str> = Arc::from(config.name.as_str());
    let room_store = data
        .as_ref()
        .filter(|_| !config.modules.is_empty())
        .map(|d| crate::rooms::store::RoomStore::new(d.clone(), node_name.clone()));
    let (rooms, room_events) =
        crate::rooms::Rooms::new(node_name, sessions.clone(), timers.clone(), room_store);
    let rooms = Arc::new(rooms);
    let mut runtime = Runtime::new(sessions.clone(), config.cache_dir.clone())
        .with_timers(timers.clone())
        .with_rooms(rooms.clone());
    if let Some(cluster) = &config.cluster {
        runtime = runtime.with_calls(cluster.clone());
    }
    if let Some(data) = &data {
        runtime = runtime.with_data(data.clone());
    }
    let slots = load_modules(&runtime, config).await?;
    let router = Router::build(&slots).with_context(|| format!("node `{}`", config.name))?;
    let dispatch = Dispatcher::new(
        config.name.clone(),
        router,
        remote_routes(config)?,
        sessions,
    );
    let needs = needed_peers(config);
    let core = Arc::new(NodeCore {
        name: config.name.clone(),
        needs,
        started: std::time::Instant::now(),
        dispatch: Arc::new(dispatch),
        slots,
        cluster: config.cluster.clone(),
        runtime,
        updates: crate::hot::NodeUpdates::default(),
        data,
        timers,
        rooms,
    });
    core.watch_session_ends(ended);
    core.fire_timers(due);
    core.serve_room_events(room_events);
    core.rooms.start_durability(config.module_hosts.clone());
    Ok(core)
}

/// Loads every module the node hosts, each into a slot of its own.
async fn load_modules(
    runtime: &Runtime,
    config: &NodeConfig,
) -> anyhow::Result<Vec<Arc<ModuleSlot>>> {
    let mut slots = Vec::new();
    for m in &config.modules {
        let wasm = std::fs::read(&m.wasm)
            .with_context(|| format!("module `{}`: cannot read {}", m.name, m.wasm.display()))?;
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
    Ok(slots)
}

/// The peers this node's routes go to, whose links it keeps up and reports in its readiness.
/// Not the data owner, nor a node a module calls by name: those are linked on first use, and
/// a node may rightly start before them (on another machine, its `firefly up` may come later).
fn needed_peers(config: &NodeConfig) -> super::status::Needs {
    let mut needs = super::status::Needs::default();
    let Some(cluster) = &config.cluster else {
        return needs;
    };
    for route in &config.routes {
        let targets = route.to.iter().filter_map(|n| cluster.peer(n)).cloned();
        needs.add_route(targets);
    }
    needs
}

/// The gate's routes to other nodes, over the node's cluster links.
fn remote_routes(config: &NodeConfig) -> anyhow::Result<Vec<RemoteRoute>> {
    let mut routes = Vec::new();
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
        routes.push(RemoteRoute::new(r.first, r.last, peers, r.policy));
    }
    Ok(routes)
}

/// Starts one task per socket in `tasks`: the node-link server, `/metrics`, the client
/// listeners. Each stops when `stop` turns true.
pub(super) fn serve(
    core: &Arc<NodeCore>,
    config: &NodeConfig,
    sockets: Sockets,
    tasks: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Bound> {
    let name = &config.name;
    let mut bound = Bound {
        clients: Vec::new(),
        rpc: None,
        metrics: None,
    };
    if let (Some(listener), Some(cluster)) = (sockets.rpc, &config.cluster) {
        let addr = listener.local_addr()?;
        tracing::info!(node = %name, "listening for nodes on {addr}");
        bound.rpc = Some(addr);
        tasks.spawn(crate::cluster::listen::serve(
            listener,
            cluster.clone(),
            core.clone(),
            stop.clone(),
        ));
    }
    if let Some(fabric) = config.cluster.as_ref().and_then(|c| c.fabric()) {
        tracing::info!(node = %name, "node links over NATS");
        tasks.spawn(fabric.clone().run(stop.clone()));
        if let Some(cluster) = &config.cluster {
            tasks.spawn(cluster.clone().run_shared(stop.clone()));
            tasks.spawn(crate::cluster::listen::serve_nats(
                fabric.clone(),
                cluster.clone(),
                core.clone(),
                stop.clone(),
            ));
            if fabric.has_copies(name) {
                tasks.spawn(crate::cluster::nats::copies::serve(
                    fabric.clone(),
                    cluster.clone(),
                    core.clone(),
                    stop.clone(),
                ));
            }
        }
    }
    for peer in core.needs.peers() {
        tasks.spawn(peer.clone().keep_linked(stop.clone()));
    }
    if let Some(listener) = sockets.metrics {
        let addr = listener.local_addr()?;
        tracing::info!(node = %name, "metrics on http://{addr}/metrics");
        bound.metrics = Some(addr);
        let node = Arc::downgrade(core);
        let snapshot = move || node.upgrade().map(|n| n.metrics_snapshot());
        tasks.spawn(crate::metrics::http::serve(
            listener,
            Arc::new(snapshot),
            config.metrics_token.clone(),
            stop.clone(),
        ));
    }
    for (listener, spec) in sockets.clients.into_iter().zip(&config.listeners) {
        let addr = listener.local_addr()?;
        let tls = match &spec.protocol.edge.tls {
            Some(files) => Some(
                gate::Tls::load(files)
                    .with_context(|| format!("node `{name}`: TLS listener {addr}"))?,
            ),
            None => None,
        };
        let shown = gate::describe(spec.kind, tls.is_some(), &addr);
        tracing::info!(node = %name, "listening on {shown}");
        bound.clients.push(addr);
        tasks.spawn(gate::serve(
            listener,
            spec.kind,
            spec.protocol.clone(),
            tls,
            core.dispatch.clone(),
            stop.clone(),
        ));
    }
    Ok(bound)
}
