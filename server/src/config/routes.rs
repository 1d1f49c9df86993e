//! The `routes:` of a gate: which commands go to which nodes, checked against the topology.

use std::collections::BTreeMap;

use super::raw::{CommandsValue, RawRoute, TargetsValue};
use super::{ConfigError, NodeSpec, Policy, RouteSpec};

type Result<T> = std::result::Result<T, ConfigError>;

fn route(path: &str, raw: &RawRoute, node: &str, nodes: &[&String]) -> Result<RouteSpec> {
    let (first, last) = match &raw.commands {
        None => {
            return Err(ConfigError::invalid(
                path,
                "a route needs `commands: <id>` or `commands: \"<first>-<last>\"`",
            ));
        }
        Some(CommandsValue::One(id)) => (*id, *id),
        Some(CommandsValue::Range(text)) => {
            let bad = || {
                ConfigError::invalid(
                    format!("{path}.commands"),
                    format!("`{text}` is not a command id or a range like \"100-199\""),
                )
            };
            let (a, b) = text.split_once('-').ok_or_else(bad)?;
            let a: u32 = a.trim().parse().map_err(|_| bad())?;
            let b: u32 = b.trim().parse().map_err(|_| bad())?;
            if a > b {
                return Err(ConfigError::invalid(
                    format!("{path}.commands"),
                    format!("range `{text}` is empty (first > last)"),
                ));
            }
            (a, b)
        }
    };
    let to = match &raw.to {
        None => {
            return Err(ConfigError::invalid(
                path,
                "a route needs `to: <node>` or `to: [<node>, ...]`",
            ));
        }
        Some(TargetsValue::One(n)) => vec![n.clone()],
        Some(TargetsValue::Many(list)) => list.clone(),
    };
    if to.is_empty() {
        return Err(ConfigError::invalid(format!("{path}.to"), "names no node"));
    }
    for (i, target) in to.iter().enumerate() {
        let p = format!("{path}.to[{i}]");
        if target == node {
            return Err(ConfigError::invalid(
                p,
                "a gate routes to other nodes; its own modules are served directly",
            ));
        }
        if !nodes.contains(&target) {
            let known: Vec<&str> = nodes.iter().map(|n| n.as_str()).collect();
            return Err(ConfigError::invalid(
                p,
                format!("unknown node `{target}` (defined: {})", known.join(", ")),
            ));
        }
    }
    let policy = match raw.policy.as_deref() {
        None | Some("sticky") => Policy::Sticky,
        Some("round_robin") => Policy::RoundRobin,
        Some("least_loaded") => Policy::LeastLoaded,
        Some("room") => Policy::Room,
        Some(other) => {
            return Err(ConfigError::invalid(
                format!("{path}.policy"),
                format!("unknown policy `{other}` (sticky, round_robin, least_loaded or room)"),
            ));
        }
    };
    Ok(RouteSpec {
        first,
        last,
        to,
        policy,
    })
}

/// A gate's routes, none overlapping another.
pub(super) fn routes(
    path: &str,
    raw: &[RawRoute],
    node: &str,
    names: &[&String],
) -> Result<Vec<RouteSpec>> {
    let mut routes: Vec<RouteSpec> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let p = format!("{path}.routes[{i}]");
        let spec = route(&p, r, node, names)?;
        if let Some(other) = routes
            .iter()
            .position(|o| o.first <= spec.last && spec.first <= o.last)
        {
            return Err(ConfigError::invalid(
                format!("{p}.commands"),
                format!(
                    "overlaps routes[{other}] ({}-{})",
                    routes[other].first, routes[other].last
                ),
            ));
        }
        routes.push(spec);
    }
    Ok(routes)
}

/// Route targets must be reachable: every node a route names has an `rpc` address.
pub(super) fn check_route_targets(nodes: &BTreeMap<String, NodeSpec>) -> Result<()> {
    for node in nodes.values() {
        for (i, r) in node.routes.iter().enumerate() {
            for (j, target) in r.to.iter().enumerate() {
                if nodes.get(target).is_some_and(|t| t.rpc.is_none()) {
                    return Err(ConfigError::invalid(
                        format!("nodes.{}.routes[{i}].to[{j}]", node.name),
                        format!("node `{target}` has no `rpc` address"),
                    ));
                }
            }
        }
    }
    Ok(())
}
