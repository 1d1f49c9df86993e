//! From the raw file to a checked [`Topology`]: every rule the schema has beyond its shape.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::raw::{RawLimits, RawListener, RawMaster, RawModule, RawNode, RawTopology, SizeValue};
use super::units::{format_size, parse_duration, parse_size};
use super::{
    ConfigError, Limits, ListenerKind, ListenerSpec, MasterSpec, ModuleSource, ModuleSpec,
    NodeSpec, ProtocolSettings, SUPPORTED_VERSION, Topology,
};

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) use super::names::check_name;
use super::routes::{check_route_targets, routes};

fn size(path: &str, value: &SizeValue) -> Result<u64> {
    match value {
        SizeValue::Bytes(n) => Ok(*n),
        SizeValue::Text(t) => parse_size(t).map_err(|m| ConfigError::invalid(path, m)),
    }
}

fn duration(path: &str, text: &str) -> Result<Duration> {
    parse_duration(text).map_err(|m| ConfigError::invalid(path, m))
}

fn in_range<T: PartialOrd + Copy>(
    path: &str,
    v: T,
    lo: T,
    hi: T,
    show: impl Fn(T) -> String,
) -> Result<T> {
    if v < lo || v > hi {
        return Err(ConfigError::invalid(
            path,
            format!("{} is out of range ({} to {})", show(v), show(lo), show(hi)),
        ));
    }
    Ok(v)
}

fn limits(path: &str, raw: &RawLimits, base: &Limits) -> Result<Limits> {
    let mut l = base.clone();
    if let Some(v) = &raw.memory {
        let p = format!("{path}.memory");
        l.memory = in_range(&p, size(&p, v)?, 64 << 10, 4 << 30, format_size)?;
    }
    if let Some(v) = &raw.stack {
        let p = format!("{path}.stack");
        let bytes = in_range(&p, size(&p, v)?, 32 << 10, 8 << 20, format_size)?;
        l.stack = usize::try_from(bytes).map_err(|_| ConfigError::invalid(&p, "too large"))?;
    }
    let show = |d: Duration| format!("{d:?}");
    if let Some(v) = &raw.timeout {
        let p = format!("{path}.timeout");
        l.timeout = in_range(
            &p,
            duration(&p, v)?,
            Duration::from_millis(1),
            Duration::from_secs(3600),
            show,
        )?;
    }
    if let Some(v) = &raw.cpu {
        let p = format!("{path}.cpu");
        l.cpu = in_range(
            &p,
            duration(&p, v)?,
            Duration::from_millis(10),
            Duration::from_secs(3600),
            show,
        )?;
    }
    if let Some(v) = raw.instances {
        l.instances = in_range(&format!("{path}.instances"), v, 1, 10_000, |n| {
            n.to_string()
        })?;
    }
    if let Some(v) = raw.timers {
        l.timers = in_range(&format!("{path}.timers"), v, 0, 1_000_000, |n| {
            n.to_string()
        })?;
    }
    if l.cpu > l.timeout {
        return Err(ConfigError::invalid(
            format!("{path}.cpu"),
            format!(
                "the CPU budget ({:?}) cannot exceed the timeout ({:?})",
                l.cpu, l.timeout
            ),
        ));
    }
    Ok(l)
}

fn listener(path: &str, raw: &RawListener, base_dir: &Path) -> Result<ListenerSpec> {
    let (kind, key, text) = match (&raw.tcp, &raw.ws) {
        (Some(tcp), None) => (ListenerKind::Tcp, "tcp", tcp),
        (None, Some(ws)) => (ListenerKind::Ws, "ws", ws),
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                path,
                "a listener is either `tcp: <address>` or `ws: <address>`, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                path,
                "a listener needs `tcp: <address>` or `ws: <address>`",
            ));
        }
    };
    let addr = text.parse().map_err(|_| {
        ConfigError::invalid(
            format!("{path}.{key}"),
            format!("`{text}` is not a socket address (e.g. 127.0.0.1:11009 or [::1]:11009)"),
        )
    })?;
    let mut protocol = ProtocolSettings::default();
    if let Some(magic) = &raw.magic {
        let p = format!("{path}.magic");
        if magic.len() != 4 {
            return Err(ConfigError::invalid(
                p,
                format!("expected exactly 4 bytes, got {}", magic.len()),
            ));
        }
        for (i, b) in magic.iter().enumerate() {
            protocol.magic[i] = u8::try_from(*b).map_err(|_| {
                ConfigError::invalid(format!("{p}[{i}]"), format!("{b} is not a byte (0 to 255)"))
            })?;
        }
    }
    if let Some(v) = raw.protocol_version {
        protocol.protocol_version = v;
    }
    if let Some(v) = raw.server_version {
        protocol.server_version = v;
    }
    if let Some(v) = &raw.max_frame {
        let p = format!("{path}.max_frame");
        let bytes = in_range(&p, size(&p, v)?, 1, 256 << 20, format_size)?;
        protocol.max_frame =
            u32::try_from(bytes).map_err(|_| ConfigError::invalid(&p, "too large"))?;
    }
    if let Some(v) = &raw.idle_timeout {
        let p = format!("{path}.idle_timeout");
        protocol.idle_timeout = in_range(
            &p,
            duration(&p, v)?,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
            |d| format!("{d:?}"),
        )?;
    }
    if let Some(v) = raw.error_command {
        protocol.error_command = v;
    }
    protocol.sessions = super::sessions_settings::session_settings(path, raw)?;
    protocol.origins = super::origins::origins(path, kind, raw)?;
    protocol.edge = super::edge::edge_settings(path, raw, base_dir)?;
    Ok(ListenerSpec {
        kind,
        addr,
        protocol,
    })
}

fn socket(path: &str, text: &str) -> Result<std::net::SocketAddr> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            format!("`{text}` is not a socket address (e.g. 127.0.0.1:11009 or [::1]:11009)"),
        )
    })
}

fn master(raw: Option<&RawMaster>, base_dir: &Path, state_dir: &Path) -> Result<MasterSpec> {
    let mut spec = MasterSpec {
        admin: None,
        token_file: state_dir.join("admin-token"),
        rpc_timeout: Duration::from_secs(5),
        auto_rollback: None,
    };
    let Some(raw) = raw else {
        return Ok(spec);
    };
    if let Some(admin) = &raw.admin {
        spec.admin = Some(socket("master.admin", admin)?);
    }
    if let Some(file) = &raw.token_file {
        spec.token_file = base_dir.join(file);
    }
    if let Some(t) = &raw.rpc_timeout {
        let p = "master.rpc_timeout";
        spec.rpc_timeout = in_range(
            p,
            duration(p, t)?,
            Duration::from_millis(10),
            Duration::from_secs(600),
            |d| format!("{d:?}"),
        )?;
    }
    if let Some(a) = &raw.auto_rollback {
        spec.auto_rollback = super::auto_rollback::parse("master.auto_rollback", a, None)?;
    }
    Ok(spec)
}

pub(super) fn validate(raw: RawTopology, base_dir: &Path) -> Result<Topology> {
    let version = version(raw.version)?;
    let (cluster, transport) = super::transport::cluster(raw.cluster)?;
    let defaults = match &raw.defaults {
        Some(d) => limits("defaults.limits", &d.limits, &Limits::default())?,
        None => Limits::default(),
    };
    let state_dir = super::state_dir::resolve(raw.state_dir.as_deref(), base_dir, &cluster)?;
    let master = master(raw.master.as_ref(), base_dir, &state_dir)?;
    let modules = modules(
        raw.modules.unwrap_or_default(),
        base_dir,
        &defaults,
        &master,
    )?;
    let nodes = nodes(
        raw.nodes.unwrap_or_default(),
        &modules,
        &master,
        base_dir,
        &transport,
    )?;
    let storage = super::storage::validate(raw.storage.as_ref(), base_dir, &state_dir, &nodes)?;
    Ok(Topology {
        version,
        cluster,
        transport,
        modules,
        nodes,
        master,
        storage,
        path: None,
        base_dir: base_dir.to_owned(),
        state_dir,
        cache_dir: base_dir.join(".firefly").join("cache"),
    })
}

fn version(version: Option<u32>) -> Result<u32> {
    let version = version.ok_or_else(|| {
        ConfigError::invalid(
            "version",
            format!("missing; this build reads version {SUPPORTED_VERSION}"),
        )
    })?;
    if version != SUPPORTED_VERSION {
        return Err(ConfigError::invalid(
            "version",
            format!(
                "version {version} is not supported; this build reads version {SUPPORTED_VERSION}"
            ),
        ));
    }
    Ok(version)
}

fn modules(
    raw: BTreeMap<String, RawModule>,
    base_dir: &Path,
    defaults: &Limits,
    master: &MasterSpec,
) -> Result<BTreeMap<String, ModuleSpec>> {
    let mut modules = BTreeMap::new();
    for (name, m) in raw {
        let path = format!("modules.{name}");
        check_name(&path, &name)?;
        let source = match (&m.krate, &m.wasm) {
            (Some(dir), None) => ModuleSource::Crate(base_dir.join(dir)),
            (None, Some(file)) => ModuleSource::Wasm(base_dir.join(file)),
            _ => {
                return Err(ConfigError::invalid(
                    path,
                    "give exactly one of `crate: <module crate dir>` or `wasm: <file.wasm>`",
                ));
            }
        };
        let limits = limits(&format!("{path}.limits"), &m.limits, defaults)?;
        let auto_rollback = match &m.auto_rollback {
            Some(a) => super::auto_rollback::parse(
                &format!("{path}.auto_rollback"),
                a,
                master.auto_rollback.as_ref(),
            )?,
            None => master.auto_rollback.clone(),
        };
        modules.insert(
            name.clone(),
            ModuleSpec {
                name,
                source,
                limits,
                auto_rollback,
            },
        );
    }
    Ok(modules)
}

/// The fixed addresses of a topology's listeners, each of which may be used once (port 0, "any
/// free port", never clashes).
#[derive(Default)]
struct Addresses(HashSet<std::net::SocketAddr>);

impl Addresses {
    fn claim(&mut self, path: impl Into<String>, addr: std::net::SocketAddr) -> Result<()> {
        if addr.port() != 0 && !self.0.insert(addr) {
            return Err(ConfigError::invalid(
                path,
                format!("{addr} is already used by another listener"),
            ));
        }
        Ok(())
    }
}

fn nodes(
    raw: BTreeMap<String, RawNode>,
    modules: &BTreeMap<String, ModuleSpec>,
    master: &MasterSpec,
    base_dir: &Path,
    transport: &super::Transport,
) -> Result<BTreeMap<String, NodeSpec>> {
    let nats = matches!(transport, super::Transport::Nats(_));
    if raw.is_empty() {
        return Err(ConfigError::invalid("nodes", "at least one node is needed"));
    }
    if raw.len() > usize::from(u16::MAX) {
        return Err(ConfigError::invalid("nodes", "too many nodes"));
    }
    let names: Vec<String> = raw.keys().cloned().collect();
    let name_refs: Vec<&String> = names.iter().collect();
    let mut addresses = Addresses::default();
    if let Some(admin) = master.admin {
        addresses.claim("master.admin", admin)?;
    }
    if raw.contains_key(super::names::MASTER) {
        return Err(ConfigError::invalid(
            "nodes.master",
            "`master` is reserved for the master's identity on node links; name the node otherwise",
        ));
    }
    // Over NATS nodes find each other by name: no node needs an address.
    let several = raw.len() > 1 && !nats;
    let mut nodes = BTreeMap::new();
    for (position, (name, n)) in raw.into_iter().enumerate() {
        let index = u16::try_from(position + 1).unwrap_or(u16::MAX);
        if nats && n.rpc.is_some() {
            return Err(ConfigError::invalid(
                format!("nodes.{name}.rpc"),
                "not used with `cluster.transport: nats://...` (nodes reach each other over NATS); remove it",
            ));
        }
        let cx = NodeContext {
            several,
            names: &name_refs,
            modules,
            base_dir,
        };
        if let Some(copies) = &n.copies {
            let p = format!("nodes.{name}.copies");
            if copies != "any" {
                return Err(ConfigError::invalid(
                    p,
                    format!(
                        "`{copies}`: the only value is `any` (any number of processes run this node)"
                    ),
                ));
            }
            if !nats {
                return Err(ConfigError::invalid(
                    p,
                    "needs `cluster.transport: nats://...`: copies take their requests from a NATS queue group",
                ));
            }
            if !n.listen.is_empty() {
                return Err(ConfigError::invalid(
                    p,
                    "a gate cannot have copies (its clients' sessions live in one process); give copies to logic nodes",
                ));
            }
        }
        let spec = node(&name, n, index, &cx, &mut addresses)?;
        nodes.insert(name, spec);
    }
    if !nats {
        check_route_targets(&nodes)?;
    }
    Ok(nodes)
}

/// What every node of a topology is checked against.
struct NodeContext<'a> {
    /// Whether the cluster has several nodes (then each needs an `rpc:` address).
    several: bool,
    names: &'a [&'a String],
    modules: &'a BTreeMap<String, ModuleSpec>,
    /// What relative paths (token files) resolve against.
    base_dir: &'a Path,
}

fn node(
    name: &str,
    n: RawNode,
    index: u16,
    cx: &NodeContext<'_>,
    addresses: &mut Addresses,
) -> Result<NodeSpec> {
    let NodeContext {
        several,
        names,
        modules,
        base_dir,
    } = *cx;
    let path = format!("nodes.{name}");
    check_name(&path, name)?;
    let rpc = match &n.rpc {
        Some(text) => {
            let p = format!("{path}.rpc");
            let addr = socket(&p, text)?;
            addresses.claim(p, addr)?;
            Some(addr)
        }
        None if several => {
            return Err(ConfigError::invalid(
                format!("{path}.rpc"),
                "missing: in a cluster of several nodes every node needs an address the others can reach (e.g. rpc: 127.0.0.1:12001)",
            ));
        }
        None => None,
    };
    let host = n.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
    if host.trim().is_empty() {
        return Err(ConfigError::invalid(format!("{path}.host"), "is empty"));
    }
    if !n.routes.is_empty() && n.listen.is_empty() {
        return Err(ConfigError::invalid(
            format!("{path}.routes"),
            "only a gate (a node with `listen`) routes client commands",
        ));
    }
    let routes = routes(&path, &n.routes, name, names)?;
    if n.listen.is_empty() && n.modules.is_empty() {
        return Err(ConfigError::invalid(
            path,
            "a node needs client listeners (`listen`), modules (`modules`), or both",
        ));
    }
    let mut listen = Vec::new();
    for (i, l) in n.listen.iter().enumerate() {
        let spec = listener(&format!("{path}.listen[{i}]"), l, base_dir)?;
        let key = match spec.kind {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Ws => "ws",
        };
        addresses.claim(format!("{path}.listen[{i}].{key}"), spec.addr)?;
        listen.push(spec);
    }
    check_hosted(&path, &n.modules, modules)?;
    let (metrics, metrics_token_file) = match &n.metrics {
        Some(raw) => {
            let (addr, token_file) = super::edge::metrics_endpoint(&path, raw, base_dir)?;
            addresses.claim(format!("{path}.metrics"), addr)?;
            (Some(addr), token_file)
        }
        None => (None, None),
    };
    Ok(NodeSpec {
        name: name.to_owned(),
        index,
        host,
        rpc,
        listen,
        modules: n.modules,
        routes,
        metrics,
        metrics_token_file,
        copies: n.copies.is_some(),
    })
}

/// A node's modules: each defined, none listed twice.
fn check_hosted(
    path: &str,
    hosted: &[String],
    modules: &BTreeMap<String, ModuleSpec>,
) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, m) in hosted.iter().enumerate() {
        let p = format!("{path}.modules[{i}]");
        if !modules.contains_key(m) {
            let known: Vec<&str> = modules.keys().map(String::as_str).collect();
            return Err(ConfigError::invalid(
                p,
                format!("unknown module `{m}` (defined: {})", known.join(", ")),
            ));
        }
        if !seen.insert(m) {
            return Err(ConfigError::invalid(
                p,
                format!("module `{m}` is listed twice"),
            ));
        }
    }
    Ok(())
}
