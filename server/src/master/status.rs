//! The cluster handlers of the admin API: `GET /status` and `POST /stop`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::{AdminState, authorized, unauthorized};
use super::supervise::Supervised;
use crate::cluster::wire::Msg;

/// `GET /status`: every supervised node's process state, what it reports live, whether it is
/// ready (healthy and linked, for each of its routes, to one of its targets), and its last deploy failures; `ready` at
/// the top when every node is.
pub(crate) async fn status(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let mut nodes = Vec::new();
    for node in &state.nodes {
        nodes.push(node_status(&state, node).await);
    }
    // A drained node is down on purpose.
    let ready = nodes
        .iter()
        .all(|n| n["ready"] == true || n["drained"] == true);
    Json(serde_json::json!({ "cluster": state.cluster, "ready": ready, "nodes": nodes }))
        .into_response()
}

/// One node's entry in `/status`.
async fn node_status(state: &AdminState, node: &Arc<Supervised>) -> serde_json::Value {
    let process = node.state();
    let live = live_status(&state.peers, &process.name, process.pid).await;
    let healthy = process.pid.is_some() && live.get("node").is_some();
    serde_json::json!({
        "ready": healthy && live["ready"] == true,
        "name": process.name,
        "pid": process.pid,
        "uptime_secs": process.uptime_secs,
        "restarts": process.restarts,
        "last_exit": process.last_exit,
        "drained": process.drained,
        "healthy": healthy,
        "live": live,
        "deploy_failures": failures_of(state, &process.name),
    })
}

/// What the node process `name` (process id `pid`, started here) says of itself. Of a node
/// with copies, the copy this master started answers (the one with that process id).
pub(super) async fn live_status(
    peers: &crate::cluster::Cluster,
    name: &str,
    pid: Option<u32>,
) -> serde_json::Value {
    let Some(peer) = peers.peer(name) else {
        return serde_json::Value::Null;
    };
    let ask = |peer: Arc<crate::cluster::Peer>| async move {
        match peer.request(|id| Msg::Status { id }).await {
            Ok(Msg::StatusReply { json, .. }) => {
                serde_json::from_str::<serde_json::Value>(&json).unwrap_or(serde_json::Value::Null)
            }
            Ok(_) => serde_json::Value::Null,
            Err(err) => serde_json::json!({ "unreachable": err.to_string() }),
        }
    };
    if !matches!(peer.route(), crate::cluster::Route::Queue(_)) {
        return ask(peer.clone()).await;
    }
    for copy in peers.instances(name) {
        let live = ask(copy).await;
        if pid.is_some() && live["pid"].as_u64() == pid.map(u64::from) {
            return live;
        }
    }
    serde_json::json!({ "unreachable": format!("this machine's copy of `{name}` is not announced on NATS yet") })
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

/// `POST /nodes/{node}/drain`: the node hands every room it holds to other nodes (each at a
/// tick boundary, with a final snapshot), then stops, and is not restarted; answers once it
/// has stopped.
pub(crate) async fn drain(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let Some(node) = state.nodes.iter().find(|n| n.name() == name) else {
        let message = format!("no node `{name}` is supervised here");
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": message })),
        )
            .into_response();
    };
    let rooms = live_status(&state.peers, &name, node.state().pid).await["rooms"].clone();
    node.drain();
    // A hand-over waits at most 10 s for other nodes, and the stop's own grace follows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while node.state().pid.is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stopped = node.state().pid.is_none();
    tracing::info!(node = %name, stopped, "drained");
    Json(serde_json::json!({ "node": name, "drained": true, "stopped": stopped, "rooms": rooms }))
        .into_response()
}
