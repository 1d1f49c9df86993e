//! Keeping every node on the version the registry says it should serve: a node that was
//! starting (not yet reachable) during a deploy is caught up here.

use std::time::Duration;

use super::activate::{NodeResult, roll_out};
use super::state::AdminState;
use crate::cluster::wire::Msg;
use crate::hot::registry::Failure;

/// How often the master compares each node's versions with the registry.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// Forever: every [`RECONCILE_EVERY`], asks each node which versions it serves and sends the
/// registry's version to any node serving another (a node that was starting during a deploy).
pub(crate) async fn reconcile(state: AdminState) {
    // Every node of the topology, also those another `firefly up --host` supervises.
    let names: Vec<String> = state.topology.nodes.keys().cloned().collect();
    loop {
        tokio::time::sleep(RECONCILE_EVERY).await;
        for name in &names {
            for (module, version) in serving(&state, name).await {
                catch_up(&state, name, &module, version).await;
            }
        }
    }
}

/// Which version of which module `node` serves, as it says (nothing when it does not answer);
/// of a node with copies, every version any copy serves.
async fn serving(state: &AdminState, node: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for peer in state.watcher.instances(node) {
        let Ok(Msg::StatusReply { json, .. }) = peer.request(|id| Msg::Status { id }).await else {
            continue;
        };
        let live: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let modules = live["modules"].as_array().into_iter().flatten();
        for m in modules {
            if let (Some(name), Some(version)) = (m["name"].as_str(), m["version"].as_u64())
                && !out.iter().any(|(n, v)| n == name && *v == version)
            {
                out.push((name.to_owned(), version));
            }
        }
    }
    out
}

/// Sends `node` the registry's version of `module` if it serves another (`version`); records
/// a version it serves as good, and pins it on its version when it cannot load the wanted one.
async fn catch_up(state: &AdminState, node: &str, module: &str, version: u64) {
    let _one_at_a_time = state.deploy_lock.lock().await;
    let Ok(index) = state.registry.index(module) else {
        return;
    };
    let wanted = index.serving(node);
    // A deploy or rollback is under way (perhaps by another master on this registry): nodes
    // may serve either version until it is recorded.
    if wanted == 0 || index.rolling_out() {
        return;
    }
    if u64::from(wanted) == version {
        if index.good.get(node) != Some(&wanted) {
            let _ = state.registry.update(module, |index| {
                index.good.insert(node.to_owned(), wanted);
                Ok(())
            });
        }
        return;
    }
    let Ok(wasm) = state.registry.wasm(module, wanted) else {
        return;
    };
    tracing::info!(
        node,
        module,
        from = version,
        to = wanted,
        "catching a node up"
    );
    let name = node.to_owned();
    let results = roll_out(state, module, wanted, &wasm, std::slice::from_ref(&name)).await;
    if let Some((_, NodeResult::Failed(message))) = results.first() {
        tracing::warn!(node, module, "cannot catch up to v{wanted}: {message}");
        let keep = u32::try_from(version).unwrap_or(0);
        let _ = state.registry.update(module, |index| {
            index.pins.insert(name.clone(), keep);
            index.failures.insert(
                name.clone(),
                Failure {
                    version: wanted,
                    message: message.clone(),
                },
            );
            Ok(())
        });
    }
}
