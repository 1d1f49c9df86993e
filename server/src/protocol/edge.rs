//! Error codes of the gate's edge limits (README "Hardening the client edge"). They live with
//! the gate's own codes, not in the module ABI: no module produces them.

/// Error code of the error frame a connection past the listener's or its address's
/// connection cap gets before it is closed (command id 0: it sent nothing yet).
pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";

/// Error code of the answer to a request past the session's rate limit. The request is not
/// served; the connection stays open.
pub const RATE_LIMITED: &str = "rate_limited";
