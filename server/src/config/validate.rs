//! From the raw file to a checked [`Topology`]: every rule the schema has beyond its shape.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::raw::{RawLimits, RawListener, RawTopology, SizeValue};
use super::units::{format_size, parse_duration, parse_size};
use super::{
    ConfigError, Limits, ListenerKind, ListenerSpec, ModuleSource, ModuleSpec, NodeSpec,
    ProtocolSettings, SUPPORTED_VERSION, Topology,
};

type Result<T> = std::result::Result<T, ConfigError>;

fn check_name(path: &str, name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!(
                "`{name}` is not a valid name (lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 64 characters)"
            ),
        ))
    }
}

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

fn listener(path: &str, raw: &RawListener) -> Result<ListenerSpec> {
    let Some(tcp) = &raw.tcp else {
        return Err(ConfigError::invalid(
            path,
            "a listener needs `tcp: <address>`",
        ));
    };
    let addr = tcp.parse().map_err(|_| {
        ConfigError::invalid(
            format!("{path}.tcp"),
            format!("`{tcp}` is not a socket address (e.g. 127.0.0.1:11009 or [::1]:11009)"),
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
    Ok(ListenerSpec {
        kind: ListenerKind::Tcp,
        addr,
        protocol,
    })
}

pub(super) fn validate(raw: RawTopology, base_dir: &Path) -> Result<Topology> {
    let version = raw.version.ok_or_else(|| {
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
    let cluster = raw
        .cluster
        .ok_or_else(|| ConfigError::invalid("cluster", "missing: name the cluster"))?;
    check_name("cluster", &cluster)?;
    let defaults = match &raw.defaults {
        Some(d) => limits("defaults.limits", &d.limits, &Limits::default())?,
        None => Limits::default(),
    };

    let mut modules = BTreeMap::new();
    for (name, m) in raw.modules.unwrap_or_default() {
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
        let limits = limits(&format!("{path}.limits"), &m.limits, &defaults)?;
        modules.insert(
            name.clone(),
            ModuleSpec {
                name,
                source,
                limits,
            },
        );
    }

    let raw_nodes = raw.nodes.unwrap_or_default();
    if raw_nodes.is_empty() {
        return Err(ConfigError::invalid("nodes", "at least one node is needed"));
    }
    let mut nodes = BTreeMap::new();
    let mut addresses = HashSet::new();
    for (name, n) in raw_nodes {
        let path = format!("nodes.{name}");
        check_name(&path, &name)?;
        if n.listen.is_empty() && n.modules.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "a node needs client listeners (`listen`), modules (`modules`), or both",
            ));
        }
        let mut listen = Vec::new();
        for (i, l) in n.listen.iter().enumerate() {
            let spec = listener(&format!("{path}.listen[{i}]"), l)?;
            if spec.addr.port() != 0 && !addresses.insert(spec.addr) {
                return Err(ConfigError::invalid(
                    format!("{path}.listen[{i}].tcp"),
                    format!("{} is already used by another listener", spec.addr),
                ));
            }
            listen.push(spec);
        }
        let mut seen = HashSet::new();
        for (i, m) in n.modules.iter().enumerate() {
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
        nodes.insert(
            name.clone(),
            NodeSpec {
                name,
                listen,
                modules: n.modules,
            },
        );
    }
    Ok(Topology {
        version,
        cluster,
        modules,
        nodes,
        path: None,
        base_dir: base_dir.to_owned(),
    })
}
