//! A listener's edge keys, what keeps one client (or one address) from taking a gate down:
//! connection caps, a per-session request rate limit and the write stall after which a client
//! that stopped reading is dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawListener, RawMetrics, RawTls};
use super::units::parse_duration;
use super::{ConfigError, EdgeSettings, RateLimit, TlsFiles};

/// Where node `path` serves `/metrics` and the file holding the bearer token scrapes must
/// send (absolute). Without a token the endpoint must be on a loopback address: the counters
/// say how busy the cluster is and which commands fail, nothing to hand the internet.
pub(super) fn metrics_endpoint(
    path: &str,
    raw: &RawMetrics,
    base_dir: &Path,
) -> Result<(SocketAddr, Option<PathBuf>), ConfigError> {
    let p = format!("{path}.metrics");
    let (text, token_file, addr_path) = match raw {
        RawMetrics::Addr(text) => (text, None, p.clone()),
        RawMetrics::Full(full) => {
            let Some(text) = &full.addr else {
                return Err(ConfigError::invalid(
                    format!("{p}.addr"),
                    "missing: the address to serve /metrics on (e.g. addr: 127.0.0.1:9101)",
                ));
            };
            let token_file = match &full.token_file {
                Some(f) if f.trim().is_empty() => {
                    return Err(ConfigError::invalid(format!("{p}.token_file"), "is empty"));
                }
                Some(f) => Some(base_dir.join(f)),
                None => None,
            };
            (text, token_file, format!("{p}.addr"))
        }
    };
    let addr: SocketAddr = text.parse().map_err(|_| {
        ConfigError::invalid(
            &addr_path,
            format!("`{text}` is not a socket address (e.g. 127.0.0.1:9101 or [::1]:9101)"),
        )
    })?;
    if token_file.is_none() && !addr.ip().is_loopback() {
        return Err(ConfigError::invalid(
            addr_path,
            format!(
                "{addr} is not a loopback address: serve /metrics there only with a bearer token (metrics: {{ addr: {addr}, token_file: <path> }}), or bind 127.0.0.1"
            ),
        ));
    }
    Ok((addr, token_file))
}

fn tls_files(path: &str, raw: &RawTls, base_dir: &Path) -> Result<TlsFiles, ConfigError> {
    let file = |key: &str, value: &Option<String>| match value {
        Some(f) if !f.trim().is_empty() => Ok(base_dir.join(f)),
        Some(_) => Err(ConfigError::invalid(
            format!("{path}.tls.{key}"),
            "is empty",
        )),
        None => Err(ConfigError::invalid(
            format!("{path}.tls.{key}"),
            format!(
                "missing: the PEM file of the listener's {key} (tls: {{ cert: cert.pem, key: key.pem }})"
            ),
        )),
    };
    Ok(TlsFiles {
        cert: file("cert", &raw.cert)?,
        key: file("key", &raw.key)?,
    })
}

fn count(path: String, value: u32, lo: u32, hi: u32) -> Result<u32, ConfigError> {
    if value < lo || value > hi {
        return Err(ConfigError::invalid(
            path,
            format!("{value} is out of range ({lo} to {hi})"),
        ));
    }
    Ok(value)
}

/// The edge settings of listener `path`.
pub(super) fn edge_settings(
    path: &str,
    raw: &RawListener,
    base_dir: &Path,
) -> Result<EdgeSettings, ConfigError> {
    let mut edge = EdgeSettings::default();
    if let Some(tls) = &raw.tls {
        edge.tls = Some(tls_files(path, tls, base_dir)?);
    }
    if let Some(n) = raw.max_connections {
        edge.max_connections = count(format!("{path}.max_connections"), n, 1, 10_000_000)?;
    }
    if let Some(n) = raw.max_connections_per_ip {
        edge.max_connections_per_ip =
            count(format!("{path}.max_connections_per_ip"), n, 1, 10_000_000)?;
    }
    if edge.max_connections_per_ip > edge.max_connections {
        // Not an error: one address can simply never reach its own cap.
        edge.max_connections_per_ip = edge.max_connections;
    }
    if let Some(r) = &raw.rate_limit {
        let p = format!("{path}.rate_limit");
        let per_second = r.per_second.ok_or_else(|| {
            ConfigError::invalid(
                format!("{p}.per_second"),
                "missing: requests per second a session may sustain (e.g. per_second: 100)",
            )
        })?;
        let per_second = count(format!("{p}.per_second"), per_second, 1, 1_000_000)?;
        let burst = match r.burst {
            Some(b) => count(format!("{p}.burst"), b, 1, 10_000_000)?,
            None => per_second.saturating_mul(2),
        };
        edge.rate_limit = Some(RateLimit { per_second, burst });
    }
    if let Some(text) = &raw.write_stall {
        let p = format!("{path}.write_stall");
        let stall = parse_duration(text).map_err(|m| ConfigError::invalid(&p, m))?;
        if stall < Duration::from_millis(100) || stall > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                p,
                format!("{stall:?} is out of range (100ms to 3600s)"),
            ));
        }
        edge.write_stall = stall;
    }
    Ok(edge)
}
