//! The `Origin` check of a WebSocket upgrade, against the listener's `origins:` allow-list.

use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// A listener's allow-list (`None`: every origin). An upgrade without `Origin` comes from a
/// program, not a browser page, and is let through: the header protects browser users from
/// pages of other sites, and any other client can send whatever it likes.
pub(super) struct Check(pub Option<Vec<String>>);

impl Callback for Check {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        let (Some(allowed), Some(origin)) = (&self.0, request.headers().get("origin")) else {
            return Ok(response);
        };
        let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        if allowed.contains(&origin) {
            return Ok(response);
        }
        tracing::debug!(origin, "websocket upgrade refused: origin not allowed");
        let mut refusal = ErrorResponse::new(Some(format!(
            "origin `{origin}` is not allowed on this listener (its `origins:` list)\n"
        )));
        *refusal.status_mut() = StatusCode::FORBIDDEN;
        Err(refusal)
    }
}
