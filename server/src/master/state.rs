//! What every admin API handler shares: the [`AdminState`] and the bearer-token check.
//!
//! The handlers (`status`, `deploy`), the background tasks (`reconcile`, `auto_rollback`) and
//! the activation step all depend on this file, and it on none of them.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::supervise::Supervised;
use crate::cluster::Cluster;

/// The admin API's state, cloned into every handler and background task.
#[derive(Clone)]
pub(crate) struct AdminState {
    /// The cluster's name (reported by `/status`).
    pub cluster: String,
    /// The bearer token every request must carry.
    pub token: String,
    /// The nodes this master supervises.
    pub nodes: Vec<Arc<Supervised>>,
    /// Links to the nodes for `/status` and a deploy's checks.
    pub peers: Arc<Cluster>,
    /// Set to `true` by `POST /stop`; the master and its tasks watch it.
    pub stop: watch::Sender<bool>,
    // Hot update (master/deploy.rs).
    /// The topology: which nodes host which module, and each module's limits and policy.
    pub topology: crate::config::Topology,
    /// The versions of every module, and which one each node should serve.
    pub registry: Arc<crate::hot::Registry>,
    /// Compiles and describes uploaded modules before anything is stored or sent.
    pub validator: Arc<crate::engine::Runtime>,
    /// Links to the nodes with a timeout long enough for a compile.
    pub deployer: Arc<Cluster>,
    /// Links for the background checks (catch-up, automatic rollback): their reconnect
    /// backoff while nodes start must not make `/status` report nodes unreachable.
    pub watcher: Arc<Cluster>,
    /// One deploy, rollback or catch-up at a time.
    pub deploy_lock: Arc<tokio::sync::Mutex<()>>,
}

/// Whether `headers` carry `Authorization: Bearer <the admin token>`.
pub(crate) fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant-time comparison: the token is a secret.
    let (a, b) = (token.as_bytes(), state.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The answer to a request without the right token: `401` with a JSON error.
pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": "missing or wrong bearer token"})),
    )
        .into_response()
}
