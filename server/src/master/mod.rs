//! The master: starts every node of the topology as its own process, restarts one that dies
//! (with backoff), serves the admin API, and stops everything gracefully.
//!
//! The master is not on the request path: clients talk to gates, gates to nodes.

mod activate;
mod admin;
mod auto_rollback;
mod deploy;
mod reconcile;
mod secrets;
mod state;
mod status;
mod supervise;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

/// The admin API's HTTP client, re-exported where the tests first found it; it lives in
/// [`crate::client::admin`] now, next to the protocol client. New code should use that path.
pub use crate::client::admin::{http_request, http_request_with_body};
pub use secrets::{admin_token, cluster_secret};
pub use state::ADMIN_TOKEN_ENV;
pub use supervise::NodeState;

use crate::cluster::{Cluster, Identity};
use crate::config::Topology;

/// What the master runs.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The topology.
    pub topology: Topology,
    /// Its file (passed to node processes).
    pub topology_path: PathBuf,
    /// The nodes to run here.
    pub nodes: Vec<String>,
    /// Each module's `.wasm` file.
    pub wasm: HashMap<String, PathBuf>,
    /// The `firefly` executable to start nodes with.
    pub exe: PathBuf,
    /// The cluster secret (given to the nodes through their environment).
    pub secret: String,
    /// The admin bearer token (`None`: no admin API).
    pub admin_token: Option<String>,
    /// How long nodes get to finish in-flight requests when stopping.
    pub grace: Duration,
}

/// A running master.
pub struct Master {
    nodes: Vec<Arc<supervise::Supervised>>,
    stop: watch::Sender<bool>,
    admin_addr: Option<SocketAddr>,
    tasks: tokio::task::JoinSet<()>,
}

impl Master {
    /// Starts every node and the admin API.
    pub async fn start(config: MasterConfig) -> anyhow::Result<Master> {
        let (stop, stop_rx) = watch::channel(false);
        let identity = Identity {
            cluster: config.topology.cluster.clone(),
            node: "master".into(),
            secret: config.secret.clone().into_bytes(),
            rpc_timeout: Duration::from_secs(1),
        };
        let peers: Vec<_> = config
            .topology
            .nodes
            .values()
            .filter_map(|n| n.rpc.map(|addr| (n.name.clone(), n.index, addr)))
            .collect();
        let deployer = Arc::new(Cluster::new(
            Identity {
                rpc_timeout: activate::DEPLOY_TIMEOUT,
                ..identity.clone()
            },
            0,
            peers.clone(),
        ));
        let watcher = Arc::new(Cluster::new(
            Identity {
                rpc_timeout: Duration::from_secs(2),
                ..identity.clone()
            },
            0,
            peers.clone(),
        ));
        let cluster = Arc::new(Cluster::new(identity, 0, peers));
        // The registry, not the topology's build, says what every node serves; the build
        // becomes version 1 of a module the registry does not know yet.
        let registry = Arc::new(crate::hot::Registry::for_topology(
            &config.topology.base_dir,
        ));
        let mut modules: Vec<_> = config.wasm.iter().collect();
        modules.sort();
        for (module, path) in modules {
            registry
                .ensure_initial(module, path)
                .with_context(|| format!("module registry {}", registry.dir().display()))?;
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut nodes = Vec::new();
        for name in &config.nodes {
            let node = Arc::new(supervise::Supervised::new(name.clone()));
            nodes.push(node.clone());
            let command = supervise::command(&config, name, registry.clone());
            tasks.spawn(supervise::run(node, command, config.grace, stop_rx.clone()));
        }
        let mut admin_addr = None;
        if let (Some(addr), Some(token)) =
            (config.topology.master.admin, config.admin_token.clone())
        {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("master: cannot serve the admin API on {addr}"))?;
            admin_addr = Some(listener.local_addr()?);
            tracing::info!("admin API on http://{}", listener.local_addr()?);
            let sessions = Arc::new(crate::sessions::Sessions::for_node(0));
            let cache = config.topology.cache_dir();
            let state = state::AdminState {
                cluster: config.topology.cluster.clone(),
                token,
                nodes: nodes.clone(),
                peers: cluster,
                stop: stop.clone(),
                topology: config.topology.clone(),
                registry,
                validator: Arc::new(crate::engine::Runtime::validator(sessions, Some(cache))),
                deployer,
                watcher,
                deploy_lock: Arc::default(),
            };
            let reconcile = tokio::spawn(reconcile::reconcile(state.clone()));
            let mut stopped = stop_rx.clone();
            tasks.spawn(async move {
                let _ = stopped.wait_for(|s| *s).await;
                reconcile.abort();
            });
            tasks.spawn(admin::serve(listener, state, stop_rx.clone()));
        }
        Ok(Master {
            nodes,
            stop,
            admin_addr,
            tasks,
        })
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// A snapshot of every supervised node.
    pub fn nodes(&self) -> Vec<NodeState> {
        self.nodes.iter().map(|n| n.state()).collect()
    }

    /// Resolves when a stop was asked for (admin API), never otherwise.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops every node gracefully (SIGTERM, then SIGKILL after the grace period) and waits.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
