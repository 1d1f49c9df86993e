//! Rooms: keyed units of game state with members (sessions), held by the host of the node they
//! live on. An operation crosses the ABI as one MessagePack [`RoomOp`] through `room_call`;
//! the answer is fetched with `call_reply_read` and its meaning depends on the [`room_status`].
//!
//! The host keeps each room's members and its state (opaque MessagePack bytes the module
//! sets), so a hot update or an instance recycle keeps both. A room with a tick calls the
//! module's room tick handler ([`crate::DispatchKind::RoomTick`]) at its fixed rate with a
//! [`RoomTick`]; the bytes the handler writes become the room's new state (none: unchanged).
//! Members are also in the session group `room:<key>`, so a broadcast reaches them on every
//! gate; a member whose session ends leaves the room.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// One room operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomOp {
    /// Opens room `key` with `state`; `tick_ms` 0 for none. Answer: nothing. `EXISTS` when open.
    Create {
        /// The room's key (1 to 64 bytes).
        key: String,
        /// Milliseconds between ticks (0: the room does not tick; else at least 10).
        tick_ms: u64,
        /// Most members at once (1 to 1000).
        max_members: u32,
        /// The initial state.
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
        /// How often the host stores the room in the cluster's store, so it outlives its
        /// node (none: it does not, and its members get `room_lost` when the node dies).
        #[serde(default)]
        snapshot: Option<SnapshotSpec>,
    },
    /// Stores room `key` in the cluster's store now (a durable room after an event it must not
    /// lose: a goal, the end of a round), and answers once it is stored. `INVALID` when the
    /// room does not snapshot or is past the size limit, `UNAVAILABLE` when the store cannot
    /// be reached.
    Snapshot {
        /// The room.
        key: String,
    },
    /// Adds `session` to room `key`. Answer: nothing. `FULL` past `max_members`.
    Join {
        /// The room.
        key: String,
        /// The session.
        session: u64,
    },
    /// Removes `session` from room `key`. Answer: MessagePack bool, whether it was a member.
    Leave {
        /// The room.
        key: String,
        /// The session.
        session: u64,
    },
    /// Replaces room `key`'s state. Answer: nothing. Waits for a running tick of the room to
    /// end (unless that tick makes the call), so the tick's result never overwrites it.
    SetState {
        /// The room.
        key: String,
        /// The new state.
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
    },
    /// Replaces room `key`'s state if its version is still `version` (as [`RoomOp::Get`]
    /// answered it): one step of a read-modify-write. Waits for a running tick like
    /// [`RoomOp::SetState`]. Answer: nothing. `CONFLICT` when the state changed since.
    Update {
        /// The room.
        key: String,
        /// The version the new state was computed from.
        version: u64,
        /// The new state.
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
    },
    /// Reads room `key`. Answer: a [`RoomInfo`].
    Get {
        /// The room.
        key: String,
    },
    /// Closes room `key`: its tick stops and its members leave. Answer: nothing.
    Close {
        /// The room.
        key: String,
    },
    /// The calling module's rooms on this node, and the node's name: answered with a
    /// [`RoomList`] (every room, at most `MAX_ROOMS` of a module on a node).
    List,
    /// The name of the node serving the call: answered with its UTF-8 bytes.
    Node,
}

/// How often a durable room is stored (see [`RoomOp::Create`]); the first rule due wins, and
/// the host also stores the room when it opens, at [`RoomOp::Snapshot`] and when its node
/// hands it over (drain, graceful stop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpec {
    /// After this many ticks (0: not by ticks).
    #[serde(default)]
    pub every_ticks: u64,
    /// After this many milliseconds, at the end of a tick or a write (0: not by time).
    #[serde(default)]
    pub every_ms: u64,
}

/// A room as [`RoomOp::Get`] answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's key.
    pub key: String,
    /// Its members, in the order they joined.
    pub members: Vec<u64>,
    /// Its state.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    /// Milliseconds between ticks (0: none).
    pub tick_ms: u64,
    /// Ticks so far.
    pub ticks: u64,
    /// The state's version: it grows at every change (a write, a tick that returned a state),
    /// for [`RoomOp::Update`].
    #[serde(default)]
    pub version: u64,
}

/// The answer to [`RoomOp::List`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    /// The name of the node that holds the rooms (the node serving the request).
    pub node: String,
    /// The rooms, by key.
    pub rooms: Vec<RoomSummary>,
}

/// One room of a [`RoomList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// Its key.
    pub key: String,
    /// Members now.
    pub members: u32,
    /// Most members it takes.
    pub max_members: u32,
    /// Tick period in milliseconds (0: no tick).
    pub tick_ms: u64,
    /// Ticks run so far.
    pub ticks: u64,
}

/// The input of a room tick call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTick {
    /// The room's key.
    pub key: String,
    /// 1 for the first tick, +1 per tick.
    pub tick: u64,
    /// Milliseconds since the previous tick ran (since the room opened, for the first).
    pub elapsed_ms: u64,
    /// Its members.
    pub members: Vec<u64>,
    /// Its state.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// What happened to a room's membership, as a [`RoomEvent`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEventKind {
    /// The session joined (`join_room`).
    Joined,
    /// The session left (`leave_room`).
    Left,
    /// The session ended (disconnect, kick, expired resume window) and was taken out.
    Disconnected,
    /// The room was taken over by this node from its last snapshot (its node died, was cut
    /// off or drained): `age_ms` says how old the snapshot is, so the module can reconcile
    /// (what happened after it is gone). The call's session is 0.
    Restored,
}

/// The input of a room event call: `session` joined, left or was disconnected from room `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    /// The room's key.
    pub key: String,
    /// The session the event is about (also the call's session).
    pub session: u64,
    /// What happened.
    pub kind: RoomEventKind,
    /// The room's members after it.
    pub members: Vec<u64>,
    /// [`RoomEventKind::Restored`]: milliseconds between the snapshot and the restore.
    #[serde(default)]
    pub age_ms: u64,
    /// [`RoomEventKind::Restored`]: the node that held the room before.
    #[serde(default)]
    pub from: String,
}

/// Outcomes of `room_call`.
pub mod room_status {
    /// Done; the answer is the operation's result.
    pub const OK: u32 = 0;
    /// No open room has that key.
    pub const NOT_FOUND: u32 = 1;
    /// A room with that key is already open.
    pub const EXISTS: u32 = 2;
    /// The room has `max_members` members.
    pub const FULL: u32 = 3;
    /// A bad key, tick, size or an undecodable operation (the answer says which).
    pub const INVALID: u32 = 4;
    /// The module has as many open rooms on this node as it may.
    pub const LIMIT: u32 = 5;
    /// Rooms are not available here, or a member's gate cannot be reached.
    pub const UNAVAILABLE: u32 = 6;
    /// [`super::RoomOp::Update`]: the state changed since it was read (read it again).
    pub const CONFLICT: u32 = 7;
    /// A room's tick wrote to another room whose own tick was running: a tick never waits
    /// for another room's tick (two ticks could wait for each other).
    pub const BUSY: u32 = 8;
}
