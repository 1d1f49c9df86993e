//! `cluster:`: the cluster's name and how its nodes reach each other.
//!
//! `cluster: demo` keeps the direct TCP mesh (every node has an `rpc:` address).
//! `cluster: { name: demo, transport: "nats://127.0.0.1:4222" }` runs node traffic over NATS;
//! several servers of a NATS cluster are separated by commas, and credentials may be given in
//! `nats: { token }`, `nats: { user, password }` or `nats: { nkey }` (a seed), or in the
//! `FIREFLY_NATS_*` environment variables, which win.

use super::names::check_name;
use super::raw::{RawCluster, RawNats};
use super::{ConfigError, NatsAuth, NatsSpec, Transport};

type Result<T> = std::result::Result<T, ConfigError>;

/// The cluster's name and transport.
pub(super) fn cluster(raw: Option<RawCluster>) -> Result<(String, Transport)> {
    let missing = || ConfigError::invalid("cluster", "missing: name the cluster");
    let (name, transport, nats) = match raw.ok_or_else(missing)? {
        RawCluster::Name(name) => {
            check_name("cluster", &name)?;
            return Ok((name, Transport::Tcp));
        }
        RawCluster::Full(map) => (
            map.name
                .ok_or_else(|| ConfigError::invalid("cluster.name", "missing: name the cluster"))?,
            map.transport,
            map.nats,
        ),
    };
    check_name("cluster.name", &name)?;
    let transport = match transport.as_deref().map(str::trim) {
        None | Some("tcp") => {
            if nats.is_some() {
                return Err(ConfigError::invalid(
                    "cluster.nats",
                    "NATS credentials need `transport: nats://...`",
                ));
            }
            Transport::Tcp
        }
        Some(urls) => Transport::Nats(NatsSpec {
            servers: servers(urls)?,
            auth: auth(nats.as_ref())?,
        }),
    };
    Ok((name, transport))
}

fn servers(urls: &str) -> Result<Vec<String>> {
    let mut servers = Vec::new();
    for url in urls.split(',').map(str::trim) {
        let rest = ["nats://", "tls://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match rest {
            Some(hostport) if !hostport.is_empty() && !hostport.contains('/') => {
                servers.push(url.to_owned());
            }
            _ => {
                return Err(ConfigError::invalid(
                    "cluster.transport",
                    format!(
                        "`{url}` is not a transport: `tcp` (the direct mesh) or NATS server URLs `nats://host:port`, comma separated"
                    ),
                ));
            }
        }
    }
    Ok(servers)
}

fn auth(raw: Option<&RawNats>) -> Result<NatsAuth> {
    let Some(raw) = raw else {
        return Ok(NatsAuth::None);
    };
    let given = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    match (
        given(&raw.token),
        given(&raw.user),
        given(&raw.password),
        given(&raw.nkey),
    ) {
        (None, None, None, None) => Ok(NatsAuth::None),
        (Some(token), None, None, None) => Ok(NatsAuth::Token(token)),
        (None, Some(user), Some(password), None) => Ok(NatsAuth::UserPassword { user, password }),
        (None, None, None, Some(seed)) => Ok(NatsAuth::NKey(seed)),
        _ => Err(ConfigError::invalid(
            "cluster.nats",
            "give one of `token`, `user` with `password`, or `nkey`",
        )),
    }
}
