//! The topologies the tests run, written by one typed builder instead of YAML by hand:
//!
//! ```ignore
//! let topology = Topology::new("proc")
//!     .admin(admin)
//!     .module("echo")
//!     .node("gate", |n| n.rpc(g).tcp(client).route("1", &["logic"]))
//!     .node("logic", |n| n.rpc(l).modules(&["echo"]))
//!     .write(dir.path());
//! ```
//!
//! It writes what `server/src/config/` parses, key for key (serde_yaml over the structs
//! below), and nothing else: a key the parser does not know is not here, and an invalid file
//! is a test of the parser (`server/tests/topology/invalid/`), not of this builder. Keys a test
//! leaves out are left out of the file, so the server's defaults apply as in a hand-written one.
//! Shared with the in-process test kit (`tests/support`), which includes this file.
#![allow(dead_code, reason = "each test binary uses part of this")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A `topology.yaml`, `version: 1`.
#[derive(Serialize)]
#[must_use = "nothing is written until `write`"]
pub struct Topology {
    version: u32,
    cluster: Cluster,
    #[serde(skip_serializing_if = "Option::is_none")]
    master: Option<Master>,
    modules: BTreeMap<String, Module>,
    nodes: BTreeMap<String, Node>,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<Storage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_dir: Option<String>,
}

/// `cluster: name` (the direct TCP mesh) or `cluster: { name, transport }` (NATS).
#[derive(Serialize)]
#[serde(untagged)]
enum Cluster {
    Name(String),
    Nats { name: String, transport: String },
}

/// `master:`.
#[derive(Serialize, Default)]
struct Master {
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_rollback: Option<AutoRollback>,
}

/// `master.auto_rollback:`.
#[derive(Serialize)]
pub struct AutoRollback {
    /// e.g. `60s`.
    pub window: &'static str,
    /// Calls in the window before a rate is judged.
    pub min_calls: u64,
    /// e.g. `50%`.
    pub max_failure_rate: &'static str,
}

/// A module: `{ crate: <dir> }` or `{ wasm: <file> }`. (Untagged: serde_yaml writes a tagged
/// enum as a YAML tag, `!crate <dir>`, which the parser does not read.)
#[derive(Serialize)]
#[serde(untagged)]
pub enum Module {
    /// A module crate, built by `firefly up`.
    Crate {
        /// The crate's folder.
        #[serde(rename = "crate")]
        dir: PathBuf,
    },
    /// A built `.wasm` file.
    Wasm {
        /// The file.
        wasm: PathBuf,
    },
}

/// A node: what it hosts, serves and routes. Built in [`Topology::node`]'s closure.
#[derive(Serialize, Default)]
pub struct Node {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rpc: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    listen: Vec<Listener>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    modules: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copies: Option<String>,
}

/// `metrics: <addr>` or `metrics: { addr, token_file }`.
#[derive(Serialize)]
#[serde(untagged)]
enum Metrics {
    Addr(SocketAddr),
    Token {
        addr: SocketAddr,
        token_file: PathBuf,
    },
}

/// `{ commands, to, policy }`.
#[derive(Serialize)]
struct Route {
    commands: Commands,
    to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
}

/// `commands: 7` or `commands: "100-199"`.
#[derive(Serialize)]
#[serde(untagged)]
enum Commands {
    One(u32),
    Range(String),
}

/// A client listener: `Listener::tcp(addr)` or `Listener::ws(addr)`, other keys set with
/// struct update syntax (`Listener { idle_timeout: Some("1s"), ..Listener::tcp(addr) }`).
#[derive(Serialize, Default)]
pub struct Listener {
    /// A TCP listener at this address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<SocketAddr>,
    /// A WebSocket listener at this address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws: Option<SocketAddr>,
    /// Whether a user logging in again ends its other session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_login: Option<bool>,
    /// Sessions resume within a grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// The frame header's magic bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub magic: Option<Vec<u8>>,
    /// The protocol version byte of the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u8>,
    /// The server version sent in the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<u32>,
    /// The command id of error frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_command: Option<u32>,
    /// The largest frame, e.g. `1KiB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame: Option<&'static str>,
    /// A connection silent this long is closed, e.g. `1s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<&'static str>,
    /// The browser origins a WebSocket upgrade may come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    /// Connections at once on this listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Connections at once from one address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Option<u32>,
    /// Requests a session may send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// A client not reading this long is dropped, e.g. `1s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_stall: Option<&'static str>,
    /// TLS with these PEM files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

/// A listener's `resume: { grace, buffer }`.
#[derive(Serialize)]
pub struct Resume {
    /// e.g. `60s`.
    pub grace: &'static str,
    /// Pushes kept for a parked session.
    pub buffer: u32,
}

/// A listener's `rate_limit: { per_second, burst }`.
#[derive(Serialize)]
pub struct RateLimit {
    /// Requests a second a session may sustain.
    pub per_second: u32,
    /// Requests it may send at once.
    pub burst: u32,
}

/// A listener's `tls: { cert, key }` (PEM files, relative to the topology's folder).
#[derive(Serialize)]
pub struct Tls {
    /// The certificate chain.
    pub cert: &'static str,
    /// Its private key.
    pub key: &'static str,
}

/// `storage:`; the keys a test leaves `None` are not written.
#[derive(Serialize, Default)]
pub struct Storage {
    /// The database URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `embedded` or a Redis URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// The node holding the embedded cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The embedded cache's journal file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// Prefix of every table name and Redis key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_prefix: Option<String>,
    /// How often writes reach the database, e.g. `1h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<&'static str>,
    /// Redis command timeout, e.g. `5s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<&'static str>,
}

/// The workspace root: the first folder up from this package that holds `Cargo.lock` (this
/// file is built into the `firefly` package's tests and into the root package's test kit).
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or_else(|| panic!("no Cargo.lock above {}", env!("CARGO_MANIFEST_DIR")))
}

/// `modules/<name>` of the workspace, as an absolute path.
pub fn module_crate(name: &str) -> PathBuf {
    workspace().join("modules").join(name)
}

impl Topology {
    /// Cluster `name` on the direct TCP mesh, with nothing in it yet.
    pub fn new(name: &str) -> Topology {
        Topology {
            version: 1,
            cluster: Cluster::Name(name.to_owned()),
            master: None,
            modules: BTreeMap::new(),
            nodes: BTreeMap::new(),
            storage: None,
            state_dir: None,
        }
    }

    /// Node traffic over NATS at `url` (`cluster: { name, transport }`).
    pub fn nats(mut self, url: &str) -> Topology {
        let name = match self.cluster {
            Cluster::Name(name) | Cluster::Nats { name, .. } => name,
        };
        self.cluster = Cluster::Nats {
            name,
            transport: url.to_owned(),
        };
        self
    }

    fn master(&mut self) -> &mut Master {
        self.master.get_or_insert_with(Master::default)
    }

    /// `master.admin`: where the master's admin API listens.
    pub fn admin(mut self, addr: SocketAddr) -> Topology {
        self.master().admin = Some(addr);
        self
    }

    /// `master.rpc_timeout`, e.g. `2s`.
    pub fn rpc_timeout(mut self, timeout: &str) -> Topology {
        self.master().rpc_timeout = Some(timeout.to_owned());
        self
    }

    /// `master.auto_rollback`.
    pub fn auto_rollback(mut self, rule: AutoRollback) -> Topology {
        self.master().auto_rollback = Some(rule);
        self
    }

    /// Module `name` built from the workspace's crate `modules/<name>`.
    pub fn module(self, name: &str) -> Topology {
        self.module_from(
            name,
            Module::Crate {
                dir: module_crate(name),
            },
        )
    }

    /// Module `name` from `source` (a crate elsewhere, or a built `.wasm`).
    pub fn module_from(mut self, name: &str, source: Module) -> Topology {
        self.modules.insert(name.to_owned(), source);
        self
    }

    /// Node `name`, as `build` makes it from an empty one.
    pub fn node(mut self, name: &str, build: impl FnOnce(Node) -> Node) -> Topology {
        self.nodes.insert(name.to_owned(), build(Node::default()));
        self
    }

    /// `storage:`.
    pub fn storage(mut self, storage: Storage) -> Topology {
        self.storage = Some(storage);
        self
    }

    /// `state_dir:` (relative to the topology's folder).
    pub fn state_dir(mut self, dir: &str) -> Topology {
        self.state_dir = Some(dir.to_owned());
        self
    }

    /// The file's text.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap()
    }

    /// Writes `topology.yaml` in `dir`; its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        self.write_to(&dir.join("topology.yaml"))
    }

    /// Writes the file at `path` (making its folder); `path`.
    pub fn write_to(&self, path: &Path) -> PathBuf {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, self.yaml()).unwrap();
        path.to_owned()
    }
}

impl Node {
    /// `host:`, the machine (`firefly up --host`) that runs it.
    pub fn host(mut self, host: &str) -> Node {
        self.host = Some(host.to_owned());
        self
    }

    /// `rpc:`, its node-to-node address (direct mesh).
    pub fn rpc(mut self, addr: SocketAddr) -> Node {
        self.rpc = Some(addr);
        self
    }

    /// A TCP client listener with the default settings.
    pub fn tcp(self, addr: SocketAddr) -> Node {
        self.listen(Listener::tcp(addr))
    }

    /// A WebSocket client listener with the default settings.
    pub fn ws(self, addr: SocketAddr) -> Node {
        self.listen(Listener::ws(addr))
    }

    /// A client listener.
    pub fn listen(mut self, listener: Listener) -> Node {
        self.listen.push(listener);
        self
    }

    /// The modules it hosts.
    pub fn modules(mut self, names: &[&str]) -> Node {
        self.modules.extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    /// Routes `commands` (`"7"` or `"100-199"`) to `to`, with the default policy.
    pub fn route(self, commands: &str, to: &[&str]) -> Node {
        self.add_route(commands, to, None)
    }

    /// Routes `commands` to `to` by `policy` (`sticky`, `round_robin`, `least_loaded`, `room`).
    pub fn route_by(self, commands: &str, to: &[&str], policy: &str) -> Node {
        self.add_route(commands, to, Some(policy))
    }

    fn add_route(mut self, commands: &str, to: &[&str], policy: Option<&str>) -> Node {
        let commands = match commands.parse() {
            Ok(id) => Commands::One(id),
            Err(_) => Commands::Range(commands.to_owned()),
        };
        self.routes.push(Route {
            commands,
            to: to.iter().map(|t| (*t).to_owned()).collect(),
            policy: policy.map(str::to_owned),
        });
        self
    }

    /// `metrics: <addr>` (a loopback address: no token).
    pub fn metrics(mut self, addr: SocketAddr) -> Node {
        self.metrics = Some(Metrics::Addr(addr));
        self
    }

    /// `metrics: { addr, token_file }`: scrapes must send the token in `token_file`.
    pub fn metrics_with_token(mut self, addr: SocketAddr, token_file: impl Into<PathBuf>) -> Node {
        self.metrics = Some(Metrics::Token {
            addr,
            token_file: token_file.into(),
        });
        self
    }

    /// `copies:` (`any`: any number of copies of it, over NATS).
    pub fn copies(mut self, copies: &str) -> Node {
        self.copies = Some(copies.to_owned());
        self
    }
}

impl Listener {
    /// A TCP listener at `addr`, default settings.
    pub fn tcp(addr: SocketAddr) -> Listener {
        Listener {
            tcp: Some(addr),
            ..Listener::default()
        }
    }

    /// A WebSocket listener at `addr`, default settings.
    pub fn ws(addr: SocketAddr) -> Listener {
        Listener {
            ws: Some(addr),
            ..Listener::default()
        }
    }
}
