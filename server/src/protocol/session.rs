//! The reserved session command: a client asks for its resume token, or resumes a dropped
//! session with one.
//!
//! Command [`SESSION_COMMAND`] is answered by the gate itself, never by a module:
//! * an empty payload (or `{}`) asks for the current session's ticket: its id and a fresh
//!   resume token (the previous token stops working);
//! * `{resume: "<token>"}` as a new connection's request takes the token's session back —
//!   same id, user and groups — and replays the pushes kept while it was away (after the
//!   ticket). The session the new connection had until then ends.
//!
//! Failures are error frames with code [`RESUME_DISABLED`] (the listener has no `resume`
//! setting) or [`RESUME_FAILED`] (unknown, used or expired token).

use serde::{Deserialize, Serialize};

/// The command id of session requests (reserved: modules cannot serve it).
pub const SESSION_COMMAND: u32 = 0xFFFF_FF00;

/// Error code: the listener does not resume sessions.
pub const RESUME_DISABLED: &str = "resume_disabled";

/// Error code: the token is unknown, used, or its session expired.
pub const RESUME_FAILED: &str = "resume_failed";

/// Error code of the error frame a kicked session gets before its connection closes.
pub const KICKED: &str = "kicked";

/// The topic of the push a room's members get when the node holding the room is gone
/// (reserved: modules cannot push on it). Payload: a [`RoomLost`] map.
pub const ROOM_LOST_TOPIC: u32 = 0xFFFF_FF01;

/// The payload of a [`ROOM_LOST_TOPIC`] push (MessagePack map): the room is gone with its
/// node, and the session is no longer one of its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomLost {
    /// The room's key.
    pub room: String,
    /// The node that held it.
    pub node: String,
    /// Always `room_lost`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// A session request's payload (MessagePack map).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// A resume token: take that session back.
    #[serde(default)]
    pub resume: Option<String>,
}

/// The answer to a session request (MessagePack map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTicket {
    /// The connection's session id.
    pub session: u64,
    /// The token that resumes it (single use).
    pub token: String,
    /// Whether this connection just resumed the session.
    pub resumed: bool,
    /// Pushes replayed after this ticket (kept while the client was away).
    pub replayed: u64,
    /// Pushes lost because the buffer was full while the client was away.
    pub dropped: u64,
}
