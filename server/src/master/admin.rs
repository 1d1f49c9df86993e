//! The master's admin HTTP API: `GET /status`, `POST /stop`, bearer-token authenticated.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::state::{AdminState, authorized, unauthorized};
use crate::cluster::wire::Msg;

async fn status(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let mut nodes = Vec::new();
    for node in &state.nodes {
        let process = node.state();
        let live = match state.peers.peer(&process.name) {
            Some(peer) => match peer.request(|id| Msg::Status { id }).await {
                Ok(Msg::StatusReply { json, .. }) => {
                    serde_json::from_str::<serde_json::Value>(&json)
                        .unwrap_or(serde_json::Value::Null)
                }
                Ok(_) => serde_json::Value::Null,
                Err(err) => serde_json::json!({ "unreachable": err.to_string() }),
            },
            None => serde_json::Value::Null,
        };
        let healthy = process.pid.is_some() && live.get("node").is_some();
        nodes.push(serde_json::json!({
            "name": process.name,
            "pid": process.pid,
            "uptime_secs": process.uptime_secs,
            "restarts": process.restarts,
            "last_exit": process.last_exit,
            "healthy": healthy,
            "live": live,
            "deploy_failures": super::deploy::failures_of(&state, &process.name),
        }));
    }
    Json(serde_json::json!({ "cluster": state.cluster, "nodes": nodes })).into_response()
}

async fn stop_cluster(State(state): State<AdminState>, headers: HeaderMap) -> Response {
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

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route("/status", get(status))
        .route("/stop", post(stop_cluster))
        .route("/modules/{module}/deploy", post(super::deploy::deploy))
        .route("/modules/{module}/rollback", post(super::deploy::rollback))
        .route("/modules/{module}/versions", get(super::deploy::versions))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::cluster::wire::MAX_FRAME,
        ))
        .with_state(state);
    let shutdown = async move {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("admin API failed: {err}");
    }
}

/// A minimal HTTP/1.1 client for the admin API (`firefly status`, `firefly stop`): returns
/// the status code and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
) -> anyhow::Result<(u16, String)> {
    http_request_with_body(addr, method, path, token, &[], Duration::from_secs(10)).await
}

/// Like [`http_request`], sending `body` (`firefly deploy` uploads a module) and waiting up to
/// `timeout` for the answer.
pub async fn http_request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("the admin API at {addr} did not answer"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response from {addr}"))?;
    Ok((code, body.to_owned()))
}
