//! `GET /metrics` on a node's `metrics:` address, in the Prometheus text format.
//!
//! Unauthenticated, like most Prometheus endpoints: bind it to a loopback or private address.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::Snapshot;

/// What a scrape reads: the node's counters summed now (`None` once the node is gone).
pub type SnapshotSource = Arc<dyn Fn() -> Option<Snapshot> + Send + Sync>;

async fn metrics(State(source): State<SnapshotSource>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        source().map(|s| s.render()).unwrap_or_default(),
    )
}

/// Serves `/metrics` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    source: SnapshotSource,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(source);
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
