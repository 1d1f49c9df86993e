//! `topology.yaml`: the typed, strict, versioned description of a Firefly cluster.
//!
//! Version 1 describes the modules (where their code is, the limits they run under) and the
//! nodes (their client listeners and the modules they host). Unknown keys are errors naming
//! the key and its line; every semantic error names the dotted path of the offending value.
//! `server/tests/topology/` holds valid examples and invalid ones with the exact error each
//! must produce.

mod auto_rollback;
mod edge;
mod names;
mod routes;
pub use names::MASTER;
mod origins;
mod raw;
mod sessions_settings;
mod state_dir;
mod storage;
mod transport;
mod units;
mod validate;

pub use state_dir::MARKER as STATE_MARKER;
pub use storage::{CacheSpec, DatabaseSpec, RedisSpec, StorageSpec};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use auto_rollback::{AutoRollback, FailureKind};
pub use units::{format_size, parse_duration, parse_size};

/// The schema version this build reads.
pub const SUPPORTED_VERSION: u32 = 1;

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The text is not valid YAML for the schema (includes unknown keys, with their line).
    #[error("{0}")]
    Parse(String),
    /// A value is not acceptable.
    #[error("{path}: {message}")]
    Invalid {
        /// Dotted path of the value, e.g. `nodes.game.modules[1]`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The same error, in a named file.
    #[error("{file}: {error}")]
    InFile {
        /// The topology file.
        file: PathBuf,
        /// The error.
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A whole cluster description.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Schema version (1).
    pub version: u32,
    /// The cluster's name.
    pub cluster: String,
    /// How its nodes reach each other (`cluster.transport`; default: the direct TCP mesh).
    pub transport: Transport,
    /// Modules by name.
    pub modules: BTreeMap<String, ModuleSpec>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeSpec>,
    /// The master's settings (admin API, RPC timeout).
    pub master: MasterSpec,
    /// Where cached database objects live (SQL database, cache, owner node).
    pub storage: StorageSpec,
    /// The file it was loaded from, if any.
    pub path: Option<PathBuf>,
    /// The directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// This cluster's own state: registry, secrets, admin token, default journal and SQLite
    /// database (`state_dir:`, default `.firefly/<cluster>/`; see config/state_dir.rs).
    pub state_dir: PathBuf,
    /// Where nodes and the master cache precompiled modules: `.firefly/cache` next to the
    /// topology file, unless the caller moved it (the CLI honours [`CACHE_DIR_ENV`]).
    pub cache_dir: PathBuf,
}

/// How the nodes of a cluster reach each other.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Transport {
    /// The direct mesh: each node listens on its `rpc:` address and dials the others'.
    #[default]
    Tcp,
    /// Through NATS servers: nodes announce themselves and open their links over subjects
    /// (see `cluster/nats/`); `rpc:` addresses are not used.
    Nats(NatsSpec),
}

/// Where the NATS servers are and how to log in to them.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsSpec {
    /// Server URLs (`nats://host:port`, several for a NATS cluster).
    pub servers: Vec<String>,
    /// Credentials from the topology (the `FIREFLY_NATS_*` environment variables override
    /// them when the connection is made).
    pub auth: NatsAuth,
}

impl std::fmt::Debug for NatsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a credential.
        f.debug_struct("NatsSpec")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// NATS credentials.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// None (or only what the URL carries).
    #[default]
    None,
    /// A token.
    Token(String),
    /// A user name and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// An nkey seed (`SU...`).
    NKey(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which kind only: never the credential itself.
        f.write_str(match self {
            NatsAuth::None => "None",
            NatsAuth::Token(_) => "Token(..)",
            NatsAuth::UserPassword { .. } => "UserPassword(..)",
            NatsAuth::NKey(_) => "NKey(..)",
        })
    }
}

/// One module: where its code is and what it may use.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSpec {
    /// Its name.
    pub name: String,
    /// Its code.
    pub source: ModuleSource,
    /// Its limits.
    pub limits: Limits,
    /// When a new version of it is rolled back automatically (`None`: never); the master's
    /// setting unless the module has its own.
    pub auto_rollback: Option<AutoRollback>,
}

/// Where a module's code comes from (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A module crate, built with `firefly build`.
    Crate(PathBuf),
    /// A prebuilt `.wasm` file.
    Wasm(PathBuf),
}

/// The limits one module runs under, per instance and per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory of an instance, in bytes.
    pub memory: u64,
    /// Maximum wasm stack, in bytes.
    pub stack: usize,
    /// Wall-clock limit of one request.
    pub timeout: Duration,
    /// CPU budget of one request (measured in epoch ticks).
    pub cpu: Duration,
    /// Maximum concurrent instances on one node.
    pub instances: u32,
    /// Maximum pending timers of the module on one node (0: the module may not start timers).
    pub timers: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 64 << 20,
            stack: 512 << 10,
            timeout: Duration::from_secs(5),
            cpu: Duration::from_secs(1),
            instances: 256,
            timers: 100_000,
        }
    }
}

/// The master process's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterSpec {
    /// Where the admin HTTP API listens (`None`: no admin API).
    pub admin: Option<SocketAddr>,
    /// File holding the admin bearer token (absolute). The `FIREFLY_ADMIN_TOKEN` environment
    /// variable overrides it; when neither exists the master creates the file.
    pub token_file: PathBuf,
    /// How long a node-to-node request may take before it fails with `node_unavailable`.
    pub rpc_timeout: Duration,
    /// Automatic rollback of new versions, for every module without its own setting.
    pub auto_rollback: Option<AutoRollback>,
}

/// One node process.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// Its position among the nodes (1-based, in name order): the high bits of the session ids
    /// it issues, so any node can tell which gate holds a session.
    pub index: u16,
    /// The machine it runs on (`firefly up --host` starts only the nodes of one machine).
    pub host: String,
    /// Where it listens for other nodes (required when the cluster has several nodes).
    pub rpc: Option<SocketAddr>,
    /// Client listeners; a node with any is a gate.
    pub listen: Vec<ListenerSpec>,
    /// Modules it hosts.
    pub modules: Vec<String>,
    /// Where a gate sends commands no local module handles.
    pub routes: Vec<RouteSpec>,
    /// Where it serves Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The file holding the bearer token a scrape of `/metrics` must send (absolute; `None`:
    /// no token, and then `metrics` is a loopback address).
    pub metrics_token_file: Option<PathBuf>,
    /// `copies: any` (NATS only): any number of processes run this node, one per
    /// `firefly up --only <name>`, and requests routed to it go to one of them through a NATS
    /// queue group, so a copy is added on another machine without editing anything.
    pub copies: bool,
}

/// How a route picks one of its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The same session always goes to the same node (while the set of nodes is unchanged).
    Sticky,
    /// Each request goes to the next node in turn.
    RoundRobin,
    /// The node with the fewest requests in flight from this gate.
    LeastLoaded,
    /// By the request's room: the payload is a MessagePack map whose `room` field (text) picks
    /// the node, the same one on every gate (rendezvous hashing over the route's nodes), so
    /// every command of a room reaches the node that holds it.
    Room,
}

/// Commands `first..=last` go to one of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// First command id of the range.
    pub first: u32,
    /// Last command id of the range (inclusive).
    pub last: u32,
    /// Candidate nodes.
    pub to: Vec<String>,
    /// How one is chosen.
    pub policy: Policy,
}

/// The transport of a client listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP.
    Tcp,
    /// WebSocket: the same frames, one per binary message.
    Ws,
}

/// One client listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    /// Its transport.
    pub kind: ListenerKind,
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Frame header and limits.
    pub protocol: ProtocolSettings,
}

/// The protocol settings of a listener (see the README's protocol section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolSettings {
    /// The four magic bytes every frame starts with.
    pub magic: [u8; 4],
    /// Protocol version byte.
    pub protocol_version: u8,
    /// Server version.
    pub server_version: u32,
    /// Largest accepted payload, in bytes.
    pub max_frame: u32,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Command id of error frames.
    pub error_command: u32,
    /// What sessions of this listener may do beyond one connection (login, resume).
    pub sessions: SessionSettings,
    /// WebSocket listeners: the browser origins allowed to connect (`None`: any). An upgrade
    /// whose `Origin` is not listed is refused with 403; one without `Origin` (not a browser)
    /// is accepted.
    pub origins: Option<Vec<String>>,
    /// Connection caps, rate limit and write stall: what keeps one client from taking the
    /// listener down.
    pub edge: EdgeSettings,
}

/// What a listener allows one address and one session (README "Hardening the client edge").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Most connections open at once on the listener; one more is refused at once
    /// (`too_many_connections`).
    pub max_connections: u32,
    /// Most connections open at once from one IP address.
    pub max_connections_per_ip: u32,
    /// Per-session request rate limit (`None`: unlimited).
    pub rate_limit: Option<RateLimit>,
    /// A client that accepts none of what the gate writes for this long is disconnected: it
    /// stopped reading, and everything queued for it would only pile up.
    pub write_stall: Duration,
    /// TLS for the listener (`None`: plain TCP or WebSocket).
    pub tls: Option<TlsFiles>,
}

/// A TLS listener's certificate and key (PEM files, absolute paths), re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 256,
            rate_limit: None,
            write_stall: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second a session may sustain.
    pub per_second: u32,
    /// Requests a session may send at once after a quiet period.
    pub burst: u32,
}

/// Per-listener session behaviour: single login and resumable sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Binding a user to a session here kicks that user's other sessions, on every gate.
    pub single_login: bool,
    /// Resumable sessions (`None`: a dropped connection ends its session at once).
    pub resume: Option<ResumeSettings>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            single_login: true,
            resume: None,
        }
    }
}

/// How long a dropped session waits for its client, and what it keeps meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeSettings {
    /// How long after its connection drops a session can be resumed.
    pub grace: Duration,
    /// Most pushes kept for a dropped session; later ones are counted and reported on resume.
    pub buffer: usize,
}

impl Default for ResumeSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            buffer: 256,
        }
    }
}

impl Default for ProtocolSettings {
    fn default() -> Self {
        Self {
            magic: [0; 4],
            protocol_version: 0,
            server_version: 0,
            max_frame: 1 << 20,
            idle_timeout: Duration::from_secs(300),
            error_command: u32::MAX,
            sessions: SessionSettings::default(),
            origins: None,
            edge: EdgeSettings::default(),
        }
    }
}

impl Topology {
    /// Reads and validates a topology file; relative paths resolve against its directory.
    pub fn load(path: &Path) -> Result<Topology, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = base.canonicalize().unwrap_or_else(|_| base.to_owned());
        let mut topology = Self::parse(&text, &base).map_err(|error| ConfigError::InFile {
            file: path.to_owned(),
            error: Box::new(error),
        })?;
        topology.path = Some(path.to_owned());
        Ok(topology)
    }

    /// Parses and validates topology text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Topology, ConfigError> {
        let raw: raw::RawTopology = serde_yaml::from_str(text).map_err(|e| {
            // serde_yaml says "nodes.game: unknown field `x`, expected ... at line 5 column 7".
            ConfigError::Parse(e.to_string())
        })?;
        validate::validate(raw, base_dir)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeSpec, ConfigError> {
        self.nodes.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
            ConfigError::invalid(
                "nodes",
                format!("no node named `{name}` (defined: {})", known.join(", ")),
            )
        })
    }

    /// The module called `name`.
    pub fn module(&self, name: &str) -> Option<&ModuleSpec> {
        self.modules.get(name)
    }
}

#[cfg(test)]
mod tests;

/// The environment variable with which the `firefly` command moves the cache of precompiled
/// modules (default: `.firefly/cache` next to the topology file). Artifacts are keyed by
/// content and engine settings, so one directory can serve many clusters (the tests share
/// one). The library never reads it: the CLI sets [`Topology::cache_dir`].
pub const CACHE_DIR_ENV: &str = "FIREFLY_CACHE_DIR";

impl Topology {
    /// Where nodes and the master of this topology cache precompiled modules.
    pub fn cache_dir(&self) -> std::path::PathBuf {
        self.cache_dir.clone()
    }
}
