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

/// The keep-alive command: answered by the gate with an empty frame on the same command id,
/// never routed to a module. A client idle for longer than its own timer sends it so the
/// listener's `idle_timeout` does not close a connection that is merely quiet.
pub const KEEPALIVE_COMMAND: u32 = 0xFFFF_FF02;

/// The log-out command: the gate answers with an empty frame on the same command id, closes
/// the connection and ends the session at once (its disconnect event fires now; nothing is
/// parked, even on a listener with `resume`, and the session's tokens stop working).
pub const LOGOUT_COMMAND: u32 = 0xFFFF_FF03;

/// The hello command: a connection's options. Payload a [`Hello`] map (empty: change
/// nothing); the reply is the [`Hello`] map in force for the connection from then on.
pub const HELLO_COMMAND: u32 = 0xFFFF_FF04;

/// The command id of a tagged push (after [`Hello`] `push_frames: true`): the payload is the
/// topic id (4 bytes, big-endian) followed by the push's payload. Without the opt-in a push
/// is a frame on its topic id, as in the original Firefly.
pub const PUSH_COMMAND: u32 = 0xFFFF_FF05;

/// Whether the gate answers `command` itself (session, keep-alive, log-out and hello).
pub fn is_gate_command(command: u32) -> bool {
    matches!(
        command,
        SESSION_COMMAND | KEEPALIVE_COMMAND | LOGOUT_COMMAND | HELLO_COMMAND
    )
}

/// A hello's payload and reply (MessagePack map): the connection's options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Pushes come as [`PUSH_COMMAND`] frames (topic in the payload), so no push can be taken
    /// for a reply whatever its topic. Absent: unchanged.
    #[serde(default)]
    pub push_frames: Option<bool>,
}

/// Error code: the listener does not resume sessions.
pub const RESUME_DISABLED: &str = "resume_disabled";

/// Error code: the token is unknown, used, or its session expired.
pub const RESUME_FAILED: &str = "resume_failed";

/// Error code of the error frame a kicked session gets before its connection closes.
pub const KICKED: &str = "kicked";

/// The topic of the push a room's members get when the node holding the room is gone
/// (reserved: modules cannot push on it). Payload: a [`RoomLost`] map.
pub const ROOM_LOST_TOPIC: u32 = 0xFFFF_FF01;

/// The topic of the push a durable room's members get when another node took the room over
/// (its node died, was cut off or drained): the room goes on there from its last snapshot and
/// they stay members. Payload: a [`RoomMoved`] map.
pub const ROOM_MOVED_TOPIC: u32 = 0xFFFF_FF06;

/// The payload of a [`ROOM_MOVED_TOPIC`] push (MessagePack map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMoved {
    /// The room's key.
    pub room: String,
    /// The node that held it.
    pub from: String,
    /// The node that holds it now.
    pub node: String,
    /// Milliseconds between the snapshot it goes on from and the take-over.
    pub age_ms: u64,
    /// Always `room_moved`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

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
