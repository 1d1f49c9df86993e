//! Talking to the master's admin API from the command line: its address and token from the
//! topology, one request, and the master's answer or error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use firefly::client::admin::{http_request, http_request_with_body};
use firefly::master;

/// How long the master may take to validate a module and have every node swap it in (the
/// wait of `deploy`, `rollback` and `versions`).
pub(super) const DEPLOY_WAIT: Duration = Duration::from_secs(300);

/// Arguments of `firefly status` and `firefly stop`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The topology file (for the admin address and token file).
    #[arg(short = 'c', long = "config", default_value_os_t = super::default_topology())]
    pub config: PathBuf,
    /// Print the raw JSON instead of a table (status only).
    #[arg(long)]
    pub json: bool,
}

/// The admin API's address and token for the topology in `config`.
fn target(config: &Path) -> anyhow::Result<(SocketAddr, String)> {
    let topology = super::load_topology(config)?;
    let Some(addr) = topology.master.admin else {
        bail!("{} has no `master.admin` address", config.display());
    };
    let token = master::admin_token(&topology, super::env_var(master::ADMIN_TOKEN_ENV), false)?;
    Ok((addr, token))
}

/// Sends one admin request without a body; returns the answer's body, or fails on any status
/// but 2xx.
pub(super) async fn call(config: &Path, method: &str, path: &str) -> anyhow::Result<String> {
    let (addr, token) = target(config)?;
    let (code, body) = http_request(addr, method, path, &token)
        .await
        .with_context(|| format!("is the cluster running? (admin API {addr})"))?;
    match code {
        200..=299 => Ok(body),
        401 => bail!("the admin API refused the token (401)"),
        other => bail!("the admin API answered {other}: {body}"),
    }
}

/// Sends one admin request with `body`, waiting up to `timeout`; returns the JSON answer, or
/// the master's error.
pub(super) async fn call_json(
    config: &Path,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let (addr, token) = target(config)?;
    let (code, text) = http_request_with_body(addr, method, path, &token, body, timeout)
        .await
        .with_context(|| format!("is the cluster running? (admin API {addr})"))?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    match code {
        200..=299 => Ok(json),
        401 => bail!("the admin API refused the token (401)"),
        _ => match json["error"].as_str() {
            Some(message) => bail!("{message}"),
            None => bail!("the admin API answered {code}: {text}"),
        },
    }
}
