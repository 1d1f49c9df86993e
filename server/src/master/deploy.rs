//! Hot update through the admin API: deploy, rollback, versions.
//!
//! * `POST /modules/{module}/deploy[?nodes=a,b]` with the wasm as the body: validate, store the
//!   next version, send it to every node hosting the module (or the listed ones), answer with
//!   each node's result.
//! * `POST /modules/{module}/rollback[?to=N][&nodes=a,b]`: the same with a stored version
//!   (the one before the active one unless `to` says).
//! * `GET /modules/{module}/versions`: the registry's index of the module.
//!
//! A node that is down during a deploy is started by the supervisor with the registry's
//! version; a node that was starting (not yet reachable) is caught up by `reconcile.rs`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::activate::activate;
use super::auto_rollback;
use super::state::{AdminState, authorized, unauthorized};
use crate::cluster::wire::Msg;
use crate::hot::registry::{ModuleIndex, utc_string};
use crate::hot::swap::check_table_changes;

/// Which nodes a deploy or rollback is for, and (rollback) which version.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Targets {
    /// Comma-separated node names (default: every node hosting the module).
    nodes: Option<String>,
    /// Rollback only: the version to go back to.
    to: Option<u32>,
}

/// An error answer: `code` with `{"error": message}`.
fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The nodes hosting `module`, or those of `listed` (which must all host it).
fn target_nodes(
    state: &AdminState,
    module: &str,
    listed: Option<&str>,
) -> Result<Vec<String>, String> {
    let hosting: Vec<String> = state
        .topology
        .nodes
        .values()
        .filter(|n| n.modules.iter().any(|m| m == module))
        .map(|n| n.name.clone())
        .collect();
    let Some(listed) = listed.filter(|l| !l.trim().is_empty()) else {
        return Ok(hosting);
    };
    let mut out = Vec::new();
    for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !hosting.iter().any(|h| h == name) {
            return Err(format!(
                "node `{name}` does not host module `{module}` (hosted on: {})",
                hosting.join(", ")
            ));
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

/// Why the master refuses `wasm` as a version of `module`, before anything is stored or sent.
async fn validate(
    state: &AdminState,
    module: &str,
    wasm: &[u8],
    targets: &[String],
) -> Result<(), String> {
    let Some(spec) = state.topology.module(module) else {
        return Err(format!("unknown module `{module}`"));
    };
    let candidate = state
        .validator
        .load(module, 0, wasm, &spec.limits)
        .await
        .map_err(|e| e.to_string())?;
    let declared = &candidate.manifest.name;
    if declared != module {
        return Err(format!(
            "the module describes itself as `{declared}`, not `{module}` (deploy it under its own name)"
        ));
    }
    // Command clashes with the other modules on each target node, as the nodes report them.
    for node in targets {
        let Some(peer) = state.peers.peer(node) else {
            continue;
        };
        let Ok(Msg::StatusReply { json, .. }) = peer.request(|id| Msg::Status { id }).await else {
            continue;
        };
        let live: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        for other in live["modules"].as_array().into_iter().flatten() {
            let name = other["name"].as_str().unwrap_or_default();
            if name == module {
                continue;
            }
            let theirs: Vec<u64> = other["commands"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_u64())
                .collect();
            if let Some(c) = candidate
                .manifest
                .commands
                .iter()
                .find(|c| theirs.contains(&u64::from(**c)))
            {
                return Err(format!(
                    "command {c} is already handled by module `{name}` on node `{node}`"
                ));
            }
        }
    }
    // Table changes are judged against the version serving now.
    if let Ok(index) = state.registry.index(module)
        && index.active != 0
        && let Ok(current_wasm) = state.registry.wasm(module, index.active)
    {
        let current = state
            .validator
            .load(module, index.active, &current_wasm, &spec.limits)
            .await
            .map_err(|e| format!("the active version v{} no longer loads: {e}", index.active))?;
        check_table_changes(&current, &candidate).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `POST /modules/{module}/deploy[?nodes=a,b]`: validates the body, stores it as the next
/// version and activates it on the target nodes; a full deploy over an earlier version is
/// then watched when the module has an `auto_rollback` policy.
pub(crate) async fn deploy(
    State(state): State<AdminState>,
    Path(module): Path<String>,
    Query(q): Query<Targets>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    if state.topology.module(&module).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("the topology has no module `{module}`"),
        );
    }
    let targets = match target_nodes(&state, &module, q.nodes.as_deref()) {
        Ok(t) => t,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let _one_at_a_time = state.deploy_lock.lock().await;
    if let Err(message) = validate(&state, &module, &body, &targets).await {
        tracing::warn!(module, "deploy refused: {message}");
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refused: {message}"),
        );
    }
    let info = match state.registry.add(&module, &body) {
        Ok(info) => info,
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")),
    };
    tracing::info!(
        module,
        version = info.version,
        sha256 = &info.sha256[..12],
        "deploying"
    );
    let previous = state.registry.index(&module).map(|i| i.active).unwrap_or(0);
    match activate(
        &state,
        &module,
        info.version,
        &body,
        &targets,
        q.nodes.is_some(),
    )
    .await
    {
        Ok(result) => {
            if q.nodes.is_none() {
                watch_if_asked(&state, &module, info.version, previous, targets);
            }
            Json(result).into_response()
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// Starts the automatic-rollback watch of `version` (deployed over `previous` on `targets`)
/// when the module has a policy and there is a version to go back to.
fn watch_if_asked(
    state: &AdminState,
    module: &str,
    version: u32,
    previous: u32,
    targets: Vec<String>,
) {
    let policy = state
        .topology
        .module(module)
        .and_then(|m| m.auto_rollback.clone());
    if let Some(policy) = policy
        && previous != 0
    {
        auto_rollback::watch(
            state.clone(),
            module.to_owned(),
            version,
            previous,
            targets,
            policy,
        );
    }
}

/// `POST /modules/{module}/rollback[?to=N][&nodes=a,b]`: activates a stored version again.
pub(crate) async fn rollback(
    State(state): State<AdminState>,
    Path(module): Path<String>,
    Query(q): Query<Targets>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let targets = match target_nodes(&state, &module, q.nodes.as_deref()) {
        Ok(t) => t,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let _one_at_a_time = state.deploy_lock.lock().await;
    let index = match state.registry.index(&module) {
        Ok(index) if index.active != 0 => index,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("module `{module}` has no registered versions"),
            );
        }
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")),
    };
    let version = match rollback_target(&module, &index, q.to) {
        Ok(v) => v,
        Err((code, message)) => return error(code, message),
    };
    let wasm = match state.registry.wasm(&module, version) {
        Ok(w) => w,
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")),
    };
    tracing::info!(module, from = index.active, to = version, "rolling back");
    match activate(&state, &module, version, &wasm, &targets, q.nodes.is_some()).await {
        Ok(result) => Json(result).into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

/// The version a rollback of `module` goes to: `to`, else the newest one before the active
/// one; or the status and message of the answer when there is none.
fn rollback_target(
    module: &str,
    index: &ModuleIndex,
    to: Option<u32>,
) -> Result<u32, (StatusCode, String)> {
    match to {
        Some(to) if index.get(to).is_some() => Ok(to),
        Some(to) => {
            let known: Vec<String> = index
                .versions
                .iter()
                .map(|v| v.version.to_string())
                .collect();
            Err((
                StatusCode::NOT_FOUND,
                format!(
                    "module `{module}` has no version {to} (versions: {})",
                    known.join(", ")
                ),
            ))
        }
        None => match index
            .versions
            .iter()
            .map(|v| v.version)
            .filter(|v| *v < index.active)
            .max()
        {
            Some(v) => Ok(v),
            None => Err((
                StatusCode::CONFLICT,
                format!(
                    "module `{module}` is at its first version (v{}): nothing to roll back to",
                    index.active
                ),
            )),
        },
    }
}

/// `GET /modules/{module}/versions`: the registry's index of the module.
pub(crate) async fn versions(
    State(state): State<AdminState>,
    Path(module): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    if state.topology.module(&module).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("the topology has no module `{module}`"),
        );
    }
    let index = match state.registry.index(&module) {
        Ok(index) => index,
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")),
    };
    let versions: Vec<serde_json::Value> = index
        .versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.version,
                "time": v.time,
                "utc": utc_string(v.time),
                "sha256": v.sha256,
                "size": v.size,
                "active": v.version == index.active,
                "pinned_on": index.pins.iter().filter(|(_, p)| **p == v.version).map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(serde_json::json!({
        "module": module,
        "active": index.active,
        "registry": state.registry.dir().join(&module),
        "versions": versions,
        "pins": index.pins,
        "failures": index.failures,
        "rolled_back": index.rolled_back,
    }))
    .into_response()
}
