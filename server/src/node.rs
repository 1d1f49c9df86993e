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

use crate::config::{Limits, ListenerSpec, Topology};
use crate::engine::{Lease, Runtime};
use crate::gate::{self, GateStats};
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
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name, from the topology.
    pub name: String,
    /// Modules to host.
    pub modules: Vec<ModuleToLoad>,
    /// Client listeners (empty for a node that only hosts logic).
    pub listeners: Vec<ListenerSpec>,
    /// Where compiled modules are cached (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
}

impl NodeConfig {
    /// The configuration of node `name` of `topology`, with each module's `.wasm` path given
    /// by `wasm_of` (built or resolved by the caller).
    pub fn from_topology(
        topology: &Topology,
        name: &str,
        wasm_of: impl Fn(&str) -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<Self> {
        let spec = topology.node(name)?;
        let mut modules = Vec::new();
        for module in &spec.modules {
            let Some(m) = topology.module(module) else {
                anyhow::bail!("node `{name}` hosts unknown module `{module}`");
            };
            modules.push(ModuleToLoad {
                name: module.clone(),
                wasm: wasm_of(module)?,
                limits: m.limits.clone(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            modules,
            listeners: spec.listen.clone(),
            cache_dir: Some(topology.base_dir.join(".firefly").join("cache")),
        })
    }
}

/// State shared by a node's listeners and connections.
pub(crate) struct NodeCore {
    pub name: String,
    pub sessions: Arc<Sessions>,
    pub router: ArcSwap<Router>,
    pub slots: Vec<Arc<ModuleSlot>>,
    pub gate_stats: GateStats,
    #[allow(dead_code, reason = "hot update loads new versions through it")]
    pub runtime: Runtime,
}

impl NodeCore {
    /// Makes `lease` a lease on the module version serving `command` now, keeping the one it
    /// has when it already is (no pool or reference-count traffic then). False when no module
    /// here handles `command`.
    pub fn lease_for(&self, command: u32, lease: &mut Option<Lease>) -> bool {
        let router = self.router.load();
        let Some(slot) = router.get(command) else {
            return false;
        };
        let current = slot.current_guard();
        let same = lease
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l.module(), &current));
        if !same {
            *lease = Some(Lease::new(arc_swap::Guard::into_inner(current)));
        }
        true
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
}

impl Node {
    /// Loads every module, binds every listener and starts serving.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        let mut listeners = Vec::new();
        for spec in &config.listeners {
            let listener = TcpListener::bind(spec.addr).await.with_context(|| {
                format!("node `{}`: cannot listen on {}", config.name, spec.addr)
            })?;
            listeners.push((listener, spec.protocol.clone()));
        }
        Self::start_with_listeners(config, listeners).await
    }

    /// Like [`Node::start`], on listeners the caller already bound (their specs' addresses are
    /// ignored).
    pub async fn start_with_listeners(
        config: NodeConfig,
        listeners: Vec<(TcpListener, crate::config::ProtocolSettings)>,
    ) -> anyhow::Result<Node> {
        let sessions = Arc::new(Sessions::new());
        let runtime = Runtime::new(sessions.clone(), config.cache_dir.clone());
        let mut slots = Vec::new();
        for m in &config.modules {
            let wasm = std::fs::read(&m.wasm).with_context(|| {
                format!("module `{}`: cannot read {}", m.name, m.wasm.display())
            })?;
            let version = runtime
                .load(&m.name, 1, &wasm, &m.limits)
                .await
                .with_context(|| format!("module `{}` ({}) refused", m.name, m.wasm.display()))?;
            tracing::info!(
                node = %config.name, module = %m.name, version = 1, hash = &version.hash[..12],
                commands = ?version.manifest.commands, "module loaded"
            );
            slots.push(Arc::new(ModuleSlot::new(version)));
        }
        let router = Router::build(&slots).with_context(|| format!("node `{}`", config.name))?;
        let core = Arc::new(NodeCore {
            name: config.name.clone(),
            sessions,
            router: ArcSwap::from_pointee(router),
            slots,
            gate_stats: GateStats::default(),
            runtime,
        });
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for (listener, settings) in listeners {
            let addr = listener.local_addr()?;
            tracing::info!(node = %config.name, "listening on {}", gate::describe(&addr));
            addrs.push(addr);
            tasks.spawn(gate::serve(listener, settings, core.clone(), rx.clone()));
        }
        Ok(Node {
            core,
            addrs,
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

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.core.gate_stats.connections.load(Ordering::Relaxed)
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
                }
            })
            .collect()
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
    }
}
