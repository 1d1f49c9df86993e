//! `GET /metrics` on a node's `metrics:` address, in the Prometheus text format.
//!
//! Bound to a loopback address unless the topology gives a bearer token
//! (`metrics: { addr, token_file }`, config/edge.rs): then every scrape must send
//! `Authorization: Bearer <token>` and anything else gets 401.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use super::Snapshot;

/// What a scrape reads: the node's counters summed now (`None` once the node is gone).
pub type SnapshotSource = Arc<dyn Fn() -> Option<Snapshot> + Send + Sync>;

/// Shortest token accepted: a guessable token would be no protection.
const MIN_TOKEN: usize = 16;

/// Reads the bearer token from `file` (surrounding whitespace trimmed).
pub fn read_token(file: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the metrics token file {}", file.display()))?;
    let token = text.trim().to_owned();
    if token.len() < MIN_TOKEN {
        anyhow::bail!(
            "the metrics token in {} is shorter than {MIN_TOKEN} characters",
            file.display()
        );
    }
    Ok(token)
}

#[derive(Clone)]
struct Endpoint {
    source: SnapshotSource,
    token: Option<Arc<str>>,
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in constant time).
fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let Some(sent) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (sent.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(endpoint): State<Endpoint>, headers: HeaderMap) -> Response {
    if let Some(token) = &endpoint.token
        && !authorized(token, &headers)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (endpoint.source)().map(|s| s.render()).unwrap_or_default(),
    )
        .into_response()
}

/// Serves `/metrics` on `listener` until `shutdown`; with a `token`, only to scrapes that
/// send it.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    source: SnapshotSource,
    token: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let endpoint = Endpoint {
        source,
        token: token.map(Arc::from),
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(endpoint);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let token = "0123456789abcdef";
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            h
        };
        assert!(authorized(token, &with("Bearer 0123456789abcdef")));
        assert!(!authorized(token, &with("Bearer 0123456789abcdeF")));
        assert!(!authorized(token, &with("Bearer 0123456789abcde")));
        assert!(!authorized(token, &with("Basic 0123456789abcdef")));
        assert!(!authorized(token, &HeaderMap::new()));
    }
}
