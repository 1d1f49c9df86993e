//! The safety net: after a deploy, watch the new version's failure rate on every node hosting
//! it for the configured window, and roll back to the previous version when it passes the
//! threshold (`auto_rollback:` in the topology).

use std::time::{Duration, Instant};

use super::activate::activate;
use super::state::AdminState;
use crate::cluster::wire::Msg;
use crate::config::{AutoRollback, FailureKind};
use crate::hot::registry::RolledBack;

/// How often the new version's counters are read during the window.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Calls and failures of `version` of `module`, summed over `nodes`.
async fn sample(
    state: &AdminState,
    module: &str,
    version: u32,
    nodes: &[String],
    count: FailureKind,
) -> (u64, u64) {
    let (mut calls, mut failures) = (0, 0);
    // Every process of each node: each copy of a node with copies counts.
    let peers = nodes.iter().flat_map(|node| state.watcher.instances(node));
    for peer in peers {
        let Ok(Msg::StatusReply { json, .. }) = peer.request(|id| Msg::Status { id }).await else {
            continue;
        };
        let live: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        for m in live["modules"].as_array().into_iter().flatten() {
            if m["name"] != module || m["version"].as_u64() != Some(u64::from(version)) {
                continue;
            }
            let n = |k: &str| m[k].as_u64().unwrap_or(0);
            calls += n("calls");
            failures += match count {
                FailureKind::Traps => n("traps") + n("timeouts"),
                FailureKind::Errors => n("errors"),
            };
        }
    }
    (calls, failures)
}

/// Watches `version` of `module` (deployed over `previous` on `nodes`) for `policy.window`,
/// in a task of its own.
pub(crate) fn watch(
    state: AdminState,
    module: String,
    version: u32,
    previous: u32,
    nodes: Vec<String>,
    policy: AutoRollback,
) {
    tokio::spawn(async move {
        let end = Instant::now() + policy.window;
        while Instant::now() < end {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let still_active = state
                .registry
                .index(&module)
                .is_ok_and(|i| i.active == version);
            if !still_active {
                return;
            }
            let (calls, failures) = sample(&state, &module, version, &nodes, policy.count).await;
            if calls < policy.min_calls
                || failures * 100 <= u64::from(policy.max_failure_percent) * calls
            {
                continue;
            }
            let _one_at_a_time = state.deploy_lock.lock().await;
            if !state
                .registry
                .index(&module)
                .is_ok_and(|i| i.active == version)
            {
                return;
            }
            let reason = format!(
                "{failures} of {calls} calls failed (more than {}%) within {:?} of the deploy",
                policy.max_failure_percent, policy.window
            );
            roll_back(&state, &module, version, previous, &nodes, reason).await;
            return;
        }
    });
}

/// Goes back from `version` of `module` to `previous` on `nodes`, recording why in the
/// registry. The caller holds the deploy lock.
async fn roll_back(
    state: &AdminState,
    module: &str,
    version: u32,
    previous: u32,
    nodes: &[String],
    reason: String,
) {
    tracing::warn!(
        module,
        version,
        to = previous,
        "automatic rollback: {reason}"
    );
    let Ok(wasm) = state.registry.wasm(module, previous) else {
        return;
    };
    // Recorded before the swap, so whoever sees the old version serving again also finds why
    // in the registry; taken back if the rollback itself fails.
    let record = RolledBack {
        version,
        to: previous,
        time: crate::hot::registry::now(),
        reason,
    };
    let _ = state.registry.update(module, |index| {
        index.rolled_back.push(record.clone());
        Ok(())
    });
    if let Err(err) = activate(state, module, previous, &wasm, nodes, false).await {
        tracing::error!(module, "automatic rollback failed: {err}");
        let _ = state.registry.update(module, |index| {
            index
                .rolled_back
                .retain(|r| r.time != record.time || r.version != version);
            Ok(())
        });
    }
}
