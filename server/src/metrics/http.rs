//! `GET /metrics` on a node's `metrics:` address, in the Prometheus text format.
//!
//! Unauthenticated, like most Prometheus endpoints: bind it to a loopback or private address.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::node::NodeCore;

async fn metrics(State(node): State<Arc<NodeCore>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics_snapshot().render(),
    )
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<NodeCore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(node);
    let stop = async move {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("metrics endpoint failed: {err}");
    }
}
