//! The master's admin HTTP API, bearer-token authenticated: the routes, and serving them.
//!
//! * `GET /status`, `POST /stop`: `status.rs`;
//! * `POST /modules/{module}/deploy`, `POST /modules/{module}/rollback`,
//!   `GET /modules/{module}/versions`: `deploy.rs`.

use axum::routing::{get, post};
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
        .route("/nodes/{node}/drain", post(status::drain))
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
