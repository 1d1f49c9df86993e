//! The master's admin HTTP API, bearer-token authenticated: the routes, and serving them.
//!
//! * `GET /status`, `POST /stop`: `status.rs`;
//! * `POST /modules/{module}/deploy`, `POST /modules/{module}/rollback`,
//!   `GET /modules/{module}/versions`: `deploy.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::state::AdminState;
use super::{deploy, status};

/// Serves the admin API on `listener` until `stop` turns `true`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route("/status", get(status::status))
        .route("/stop", post(status::stop_cluster))
        .route("/modules/{module}/deploy", post(deploy::deploy))
        .route("/modules/{module}/rollback", post(deploy::rollback))
        .route("/modules/{module}/versions", get(deploy::versions))
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
