//! Activation: sending one version of a module to the nodes that should serve it, and recording
//! the outcome in the registry.
//!
//! Used by a deploy and a rollback (`deploy.rs`), by the automatic rollback
//! (`auto_rollback.rs`) and by the catch-up of nodes that missed a deploy (`reconcile.rs`);
//! it depends on none of them.

use std::time::Duration;

use super::state::AdminState;
use crate::cluster::wire::Msg;
use crate::hot::registry::{Failure, ModuleIndex};

/// How long a node may take to compile and swap in a version.
pub(crate) const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

/// One node's answer to a deploy.
pub(crate) enum NodeResult {
    /// It serves the new version; it served `previous` before.
    Ok {
        /// The version it served before.
        previous: u32,
    },
    /// It refused or failed to load the version, and keeps serving the one it had.
    Failed(String),
    /// It could not be reached; the supervisor starts it on the registry's version.
    Down(String),
}

/// Sends `version` to every node of `targets` at once and collects their answers.
pub(crate) async fn roll_out(
    state: &AdminState,
    module: &str,
    version: u32,
    wasm: &[u8],
    targets: &[String],
) -> Vec<(String, NodeResult)> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut none_running: Vec<String> = Vec::new();
    for node in targets {
        if state.deployer.peer(node).is_none() {
            continue;
        }
        // A node with copies: every copy running now (each is one process to swap).
        let instances = state.deployer.instances(node);
        if instances.is_empty() {
            none_running.push(node.clone());
        }
        for peer in instances {
            let (node, module, wasm) = (node.clone(), module.to_owned(), wasm.to_vec());
            tasks.spawn(async move {
                let answer = peer
                    .request(|id| Msg::Deploy {
                        id,
                        module,
                        version,
                        wasm: serde_bytes::ByteBuf::from(wasm),
                        // Signed by the master's link as it is sent (cluster/trust/authority.rs).
                        authority: serde_bytes::ByteBuf::new(),
                    })
                    .await;
                let result = match answer {
                    Ok(Msg::DeployReply {
                        result: Ok(previous),
                        ..
                    }) => NodeResult::Ok { previous },
                    Ok(Msg::DeployReply {
                        result: Err(err), ..
                    }) => NodeResult::Failed(err),
                    Ok(other) => NodeResult::Failed(format!("unexpected answer {other:?}")),
                    Err(err) => NodeResult::Down(err.to_string()),
                };
                (node, result)
            });
        }
    }
    let mut results: Vec<(String, NodeResult)> = none_running
        .into_iter()
        .map(|node| {
            let why = format!("no copy of `{node}` is running");
            (node, NodeResult::Down(why))
        })
        .collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(result) = joined {
            results.push(result);
        }
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    // One answer per node: a node with copies answers as its worst copy.
    results.dedup_by(|later, kept| {
        if later.0 != kept.0 {
            return false;
        }
        if later.1.rank() > kept.1.rank() {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        true
    });
    results
}

impl NodeResult {
    /// How bad an answer is: of several copies' answers the worst stands for the node.
    fn rank(&self) -> u8 {
        match self {
            NodeResult::Ok { .. } => 0,
            NodeResult::Down(_) => 1,
            NodeResult::Failed(_) => 2,
        }
    }
}

/// Rolls `version` out to `targets` and records the outcome in the registry: the active
/// version (or, for a `--nodes` deploy, the listed nodes' pins), and each failed node's pin on
/// the version it keeps serving. Returns the JSON answer of a deploy or rollback.
pub(crate) async fn activate(
    state: &AdminState,
    module: &str,
    version: u32,
    wasm: &[u8],
    targets: &[String],
    listed: bool,
) -> Result<serde_json::Value, String> {
    let before = state.registry.index(module).map_err(|e| format!("{e:#}"))?;
    // Said before the first node swaps, so that no catch-up (of this master or another on
    // the same registry) undoes the roll-out half-way; cleared by `record`.
    let until_ms = crate::wall::now_ms() + 2 * DEPLOY_TIMEOUT.as_millis() as u64;
    state
        .registry
        .update(module, |index| {
            index.rolling = Some(crate::hot::registry::Rolling { version, until_ms });
            Ok(())
        })
        .map_err(|e| format!("{e:#}"))?;
    let results = roll_out(state, module, version, wasm, targets).await;
    state
        .registry
        .update(module, |index| {
            record(index, &before, version, &results, listed);
            Ok(())
        })
        .map_err(|e| format!("{e:#}"))?;
    Ok(answer(state, module, version, &before, &results))
}

/// Writes the outcome of rolling `version` out into `index` (which was `before` the roll-out).
fn record(
    index: &mut ModuleIndex,
    before: &ModuleIndex,
    version: u32,
    results: &[(String, NodeResult)],
    listed: bool,
) {
    index.rolling = None;
    if !listed {
        index.active = version;
        index.pins.clear();
    }
    for (node, result) in results {
        match result {
            NodeResult::Ok { .. } => {
                index.failures.remove(node);
                index.good.insert(node.clone(), version);
                if listed {
                    index.pins.insert(node.clone(), version);
                }
            }
            NodeResult::Down(_) => {
                index.failures.remove(node);
                if listed {
                    index.pins.insert(node.clone(), version);
                }
            }
            NodeResult::Failed(message) => {
                index.pins.insert(node.clone(), before.serving(node));
                index.failures.insert(
                    node.clone(),
                    Failure {
                        version,
                        message: message.clone(),
                    },
                );
            }
        }
    }
    index.pins.retain(|_, v| *v != index.active);
}

/// The JSON answer to a deploy or rollback of `version`: the version's hash and size, and
/// what each node serves now.
fn answer(
    state: &AdminState,
    module: &str,
    version: u32,
    before: &ModuleIndex,
    results: &[(String, NodeResult)],
) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = results
        .iter()
        .map(|(node, result)| match result {
            NodeResult::Ok { previous } => serde_json::json!({
                "node": node, "result": "ok", "serving": version, "previous": previous,
            }),
            NodeResult::Failed(message) => serde_json::json!({
                "node": node, "result": "failed", "serving": before.serving(node),
                "error": message,
            }),
            NodeResult::Down(message) => serde_json::json!({
                "node": node, "result": "down", "serving": null, "error": message,
                "note": format!("it serves v{version} when it starts"),
            }),
        })
        .collect();
    let info = state
        .registry
        .index(module)
        .ok()
        .and_then(|i| i.get(version).cloned());
    serde_json::json!({
        "module": module,
        "version": version,
        "sha256": info.as_ref().map(|i| i.sha256.clone()),
        "size": info.as_ref().map(|i| i.size),
        "nodes": nodes,
    })
}
