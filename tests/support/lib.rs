//! The Firefly test kit: real modules built from `modules/`, real nodes on `127.0.0.1:0`, the
//! players' gate + ops gate + logic cluster ([`Gated`]), the typed topology builder the
//! process tests use ([`topology`]), a bare echo baseline and a load generator. Shared by the
//! integration tests and benchmarks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

/// Tests and benches run on the allocator the `firefly` binary uses.
#[global_allocator]
static ALLOCATOR: firefly::Allocator = firefly::Allocator;

pub mod bare_echo;
pub mod bench;
mod gated;
pub mod loadgen;
#[path = "../../server/tests/common/services.rs"]
mod services;
pub mod tls;
/// The typed topology builder the process tests use (`server/tests/common/topology.rs`).
#[path = "../../server/tests/common/topology.rs"]
pub mod topology;
pub use gated::{Gated, GatedCluster};
pub use services::{
    PrivateNats, PrivateRedis, drop_redis_keys, private_nats, private_redis_at, service_url,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use firefly::config::{Limits, ListenerKind, ListenerSpec, ProtocolSettings};
use firefly::node::{ModuleToLoad, Node, NodeConfig};

/// The workspace root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `.wasm` of module crate `modules/<name>`, built (release, wasm32-wasip1) at most once
/// per test process. Cargo's own lock keeps concurrent test processes from clashing.
pub fn module_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let dir = root().join("modules").join(name);
    let path = firefly::builder::build_module(&dir)
        .unwrap_or_else(|e| panic!("building module {name}: {e:#}"));
    built.insert(name.to_owned(), path.clone());
    path
}

/// Limits for tests: the defaults, but tight enough that misbehaving modules fail fast.
pub fn test_limits() -> Limits {
    Limits {
        memory: 32 * 1024 * 1024,
        stack: 256 * 1024,
        timeout: Duration::from_secs(5),
        cpu: Duration::from_millis(500),
        instances: 64,
        timers: 10_000,
    }
}

/// Where tests cache compiled modules (shared, so each module compiles once per machine).
pub fn cache_dir() -> PathBuf {
    root().join("target").join("firefly-test-cache")
}

/// A node named `test` hosting `modules` with [`test_limits`], one TCP listener on
/// `127.0.0.1:0` with `settings`.
pub async fn start_node_with(modules: &[&str], limits: Limits, settings: ProtocolSettings) -> Node {
    let modules = modules
        .iter()
        .map(|name| ModuleToLoad {
            name: (*name).to_owned(),
            wasm: module_wasm(name),
            limits: limits.clone(),
            version: 1,
        })
        .collect();
    let config = NodeConfig {
        name: "test".into(),
        index: 0,
        rpc: None,
        routes: Vec::new(),
        cluster: None,
        modules,
        listeners: vec![ListenerSpec {
            kind: ListenerKind::Tcp,
            addr: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            protocol: settings,
        }],
        cache_dir: Some(cache_dir()),
        storage: None,
        metrics: None,
        metrics_token: None,
        module_hosts: Default::default(),
    };
    Node::start(config)
        .await
        .unwrap_or_else(|e| panic!("starting node: {e:#}"))
}

/// A node hosting `modules` with [`test_limits`] and default protocol settings, except the
/// connection caps: tests and benches open thousands of connections from one address, which the
/// default per-IP cap (256) would refuse. The caps themselves are tested through `firefly up`
/// (`server/tests/edge_processes.rs`).
pub async fn start_node(modules: &[&str]) -> Node {
    start_node_with(modules, test_limits(), load_settings()).await
}

/// Default protocol settings with the connection caps lifted (one load generator, one address).
pub fn load_settings() -> ProtocolSettings {
    let mut settings = ProtocolSettings::default();
    settings.edge.max_connections = 1_000_000;
    settings.edge.max_connections_per_ip = 1_000_000;
    settings
}

/// The first client address of `node`.
pub fn addr(node: &Node) -> std::net::SocketAddr {
    node.client_addrs()[0]
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub async fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// The cluster secret test clusters use.
pub const TEST_SECRET: &str = "firefly-test-secret-0123456789";

/// A free loopback address for a node's rpc listener. Topologies name rpc addresses up front,
/// so the port is reserved by binding and releasing it; it is drawn at random from 20000-31999,
/// below the kernel's ephemeral range (32768+), so no test binding port 0 can be handed it.
pub fn free_addr() -> std::net::SocketAddr {
    free_addr_on("127.0.0.1")
}

/// [`free_addr`] on another loopback address (e.g. `127.0.0.2`).
pub fn free_addr_on(ip: &str) -> std::net::SocketAddr {
    use std::hash::{BuildHasher, Hasher};
    // Never the same port twice in one test process: it is free only until someone binds it.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.contains(&port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind((ip, port)) {
            given.push(port);
            return listener.local_addr().expect("local addr");
        }
    }
}

/// Parses `yaml` (paths relative to the workspace root) and starts `nodes` of it in this
/// process, with modules built from `modules/`.
pub async fn start_cluster(yaml: &str, nodes: &[&str]) -> (firefly::config::Topology, Vec<Node>) {
    let topology = firefly::config::Topology::parse(yaml, root())
        .unwrap_or_else(|e| panic!("topology: {e}\n{yaml}"));
    let mut started = Vec::new();
    for name in nodes {
        started.push(start_cluster_node(&topology, name).await);
    }
    (topology, started)
}

/// Starts one node of `topology` in this process.
pub async fn start_cluster_node(topology: &firefly::config::Topology, name: &str) -> Node {
    let mut config = NodeConfig::from_topology(
        topology,
        name,
        |m| Ok(module_wasm(m)),
        Some(TEST_SECRET.as_bytes().to_vec()),
    )
    .unwrap_or_else(|e| panic!("node {name}: {e:#}"));
    config.cache_dir = Some(cache_dir());
    Node::start(config)
        .await
        .unwrap_or_else(|e| panic!("starting node {name}: {e:#}"))
}
