//! The master: starts every node of the topology as its own process, restarts one that dies
//! (with backoff), serves the admin API, and stops everything gracefully.
//!
//! The master is not on the request path: clients talk to gates, gates to nodes.
//!
//! Its files, each depending only on those listed before it:
//! * `config.rs`: [`MasterConfig`];
//! * `supervise.rs`: one node process, restarted when it dies;
//! * `state.rs`: the admin API's shared state, its bearer-token check and the token's
//!   variable; `secrets.rs`: the cluster secret and the admin token;
//! * `activate.rs`: sending a version of a module to nodes and recording the outcome;
//! * `auto_rollback.rs`: watching a new version and going back when it fails too often;
//!   `reconcile.rs`: catching up nodes that missed a deploy;
//! * `status.rs` (`/status`, `/stop`) and `deploy.rs` (`/modules/..`): the handlers;
//! * `admin.rs`: the routes, served;
//! * `ready.rs`: whether every node runs and is linked (the log line, `--ready-file`).

mod activate;
mod admin;
mod auto_rollback;
mod config;
mod deploy;
mod ready;
mod reconcile;
mod secrets;
mod state;
mod status;
mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

/// The admin API's HTTP client, re-exported where the tests first found it; it lives in
/// [`crate::client::admin`] now, next to the protocol client. New code should use that path.
pub use crate::client::admin::{http_request, http_request_with_body};
pub use config::MasterConfig;
pub use secrets::ADMIN_TOKEN_ENV;
pub use secrets::{admin_token, cluster_secret};
pub use supervise::NodeState;

use crate::cluster::{Cluster, Identity};
use crate::hot::Registry;
use state::AdminState;

/// A running master.
pub struct Master {
    /// The nodes this master supervises.
    nodes: Vec<Arc<supervise::Supervised>>,
    /// Set to `true` to stop (by [`Master::shutdown`] or `POST /stop`); every task watches it.
    stop: watch::Sender<bool>,
    /// Where the admin API listens, if it is served.
    admin_addr: Option<SocketAddr>,
    /// The supervisors and the admin API; [`Master::shutdown`] waits for all of them.
    tasks: tokio::task::JoinSet<()>,
}

impl Master {
    /// Starts every node and the admin API (bound from the topology's `master.admin`).
    pub async fn start(config: MasterConfig) -> anyhow::Result<Master> {
        Self::start_on(config, None).await
    }

    /// [`Master::start`] serving the admin API on `admin`, a listener the caller bound (a
    /// test on port 0, a supervisor handing sockets down), as [`crate::Node::start_on`] does;
    /// `None`: bound from the topology's `master.admin`. No admin token: no admin API.
    pub async fn start_on(
        config: MasterConfig,
        admin: Option<tokio::net::TcpListener>,
    ) -> anyhow::Result<Master> {
        config.topology.claim_state_dir()?;
        let (stop, stop_rx) = watch::channel(false);
        let links = Links::new(&config);
        let registry = open_registry(&config)?;
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(fabric) = links.status.fabric() {
            // The master announces itself too: a node closes its links from a master that died.
            tasks.spawn(fabric.clone().run(stop_rx.clone()));
        }
        let mut nodes = Vec::new();
        for name in &config.nodes {
            let node = Arc::new(supervise::Supervised::new(name.clone()));
            nodes.push(node.clone());
            let command = supervise::command(&config, name, registry.clone());
            tasks.spawn(supervise::run(node, command, config.grace, stop_rx.clone()));
        }
        tasks.spawn(ready::watch(
            nodes.clone(),
            links.status.clone(),
            config.ready_file.clone(),
            stop_rx.clone(),
        ));
        let mut admin_addr = None;
        let admin = match (admin, config.topology.master.admin) {
            (Some(listener), _) => Some(listener),
            (None, Some(addr)) if config.admin_token.is_some() => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("master: cannot serve the admin API on {addr}"))?,
            ),
            (None, _) => None,
        };
        if let (Some(listener), Some(token)) = (admin, config.admin_token.clone()) {
            admin_addr = Some(listener.local_addr()?);
            tracing::info!("admin API on http://{}", listener.local_addr()?);
            let sessions = Arc::new(crate::sessions::Sessions::for_node(0));
            let cache = config.topology.cache_dir();
            let state = AdminState {
                cluster: config.topology.cluster.clone(),
                token,
                nodes: nodes.clone(),
                peers: links.status,
                stop: stop.clone(),
                topology: config.topology.clone(),
                registry,
                validator: Arc::new(crate::engine::Runtime::validator(sessions, Some(cache))),
                deployer: links.deployer,
                watcher: links.watcher,
                deploy_lock: Arc::default(),
            };
            serve_admin(&mut tasks, listener, state, &stop_rx);
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

/// The master's links to the nodes: one set per use, each with its own timeout and its own
/// reconnect backoff.
struct Links {
    /// For `/status` and a deploy's checks (short timeout).
    status: Arc<Cluster>,
    /// For deploys, with a timeout long enough for a node to compile a module.
    deployer: Arc<Cluster>,
    /// For the background checks (catch-up, automatic rollback).
    watcher: Arc<Cluster>,
}

impl Links {
    /// Links from the master to every node of `config`'s topology with an RPC address.
    fn new(config: &MasterConfig) -> Links {
        let identity = Identity::from_secret(
            &config.topology.cluster,
            crate::cluster::authority::MASTER,
            config.secret.as_bytes(),
            Duration::from_secs(1),
        );
        // Over NATS, the three views share one fabric (one connection, one announcement).
        let status = Cluster::for_topology(&config.topology, identity.clone(), 0);
        let with_timeout = |rpc_timeout| {
            let identity = Identity {
                rpc_timeout,
                ..identity.clone()
            };
            let topology = &config.topology;
            Arc::new(match status.fabric() {
                Some(fabric) => {
                    let peers = topology.nodes.values().map(|n| (n.name.clone(), n.index));
                    Cluster::over_nats(identity, 0, fabric.clone(), peers.collect())
                }
                None => Cluster::for_topology(topology, identity, 0),
            })
        };
        let deployer = with_timeout(activate::DEPLOY_TIMEOUT);
        let watcher = with_timeout(Duration::from_secs(2));
        let status = Arc::new(status);
        Links {
            status,
            deployer,
            watcher,
        }
    }
}

/// The module registry next to the topology, with the topology's build of every module as
/// its version 1 when the registry does not know the module yet.
fn open_registry(config: &MasterConfig) -> anyhow::Result<Arc<Registry>> {
    // The registry, not the topology's build, says what every node serves.
    let registry = Arc::new(Registry::for_topology(&config.topology.state_dir));
    let mut modules: Vec<_> = config.wasm.iter().collect();
    modules.sort();
    for (module, path) in modules {
        registry
            .ensure_initial(module, path)
            .with_context(|| format!("module registry {}", registry.dir().display()))?;
    }
    Ok(registry)
}

/// Spawns the admin API on `listener` and the catch-up of nodes into `tasks`; both end when
/// `stop` turns `true`.
fn serve_admin(
    tasks: &mut tokio::task::JoinSet<()>,
    listener: tokio::net::TcpListener,
    state: AdminState,
    stop: &watch::Receiver<bool>,
) {
    let reconcile = tokio::spawn(reconcile::reconcile(state.clone()));
    let mut stopped = stop.clone();
    tasks.spawn(async move {
        let _ = stopped.wait_for(|s| *s).await;
        reconcile.abort();
    });
    tasks.spawn(admin::serve(listener, state, stop.clone()));
}
