//! The cluster handlers of the admin API: `GET /status` and `POST /stop`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::{AdminState, authorized, unauthorized};
use super::supervise::Supervised;
use crate::cluster::wire::Msg;

/// `GET /status`: every supervised node's process state, what it reports live, and its last
/// deploy failures.
pub(crate) async fn status(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let mut nodes = Vec::new();
    for node in &state.nodes {
        nodes.push(node_status(&state, node).await);
    }
    Json(serde_json::json!({ "cluster": state.cluster, "nodes": nodes })).into_response()
}

/// One node's entry in `/status`.
async fn node_status(state: &AdminState, node: &Arc<Supervised>) -> serde_json::Value {
    let process = node.state();
    let live = match state.peers.peer(&process.name) {
        Some(peer) => match peer.request(|id| Msg::Status { id }).await {
            Ok(Msg::StatusReply { json, .. }) => {
                serde_json::from_str::<serde_json::Value>(&json).unwrap_or(serde_json::Value::Null)
            }
            Ok(_) => serde_json::Value::Null,
            Err(err) => serde_json::json!({ "unreachable": err.to_string() }),
        },
        None => serde_json::Value::Null,
    };
    let healthy = process.pid.is_some() && live.get("node").is_some();
    serde_json::json!({
        "name": process.name,
        "pid": process.pid,
        "uptime_secs": process.uptime_secs,
        "restarts": process.restarts,
        "last_exit": process.last_exit,
        "healthy": healthy,
        "live": live,
        "deploy_failures": failures_of(state, &process.name),
    })
}

/// Per module, this node's last deploy failure (for `/status`).
fn failures_of(state: &AdminState, node: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for module in state.topology.modules.keys() {
        if let Ok(index) = state.registry.index(module)
            && let Some(f) = index.failures.get(node)
        {
            out.insert(
                module.clone(),
                serde_json::json!({ "version": f.version, "error": f.message }),
            );
        }
    }
    serde_json::Value::Object(out)
}

/// `POST /stop`: asks the master to stop the cluster gracefully; answers at once.
pub(crate) async fn stop_cluster(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let _ = state.stop.send(true);
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"stopping": true})),
    )
        .into_response()
}
