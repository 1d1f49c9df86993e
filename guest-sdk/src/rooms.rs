//! Rooms, held by the host: a keyed unit of game state with members (sessions), living on the
//! node where it was opened. The host keeps the members and the state, so a hot update or an
//! instance recycle keeps both; a room with a tick calls the module's `#[room_tick]` handler at
//! a fixed rate, and what the handler returns becomes the room's state.
//!
//! ```ignore
//! #[derive(Serialize, Deserialize, Default)]
//! struct Arena { left: u32 }
//!
//! #[handler(471)]
//! fn open(ctx: &mut Ctx, key: String) -> Result<()> {
//!     ctx.open_room(&key, RoomSpec::new().tick(Duration::from_millis(50)).state(&Arena { left: 100 })?)?;
//!     ctx.join_room(&key, ctx.session())
//! }
//!
//! #[room_tick]
//! fn tick(ctx: &mut Ctx, t: Tick<Arena>) -> Result<Option<Arena>> {
//!     let mut s = t.state;
//!     s.left -= 1;
//!     if s.left == 0 {
//!         // Closed first, then told: a member reacting at once finds it closed.
//!         ctx.close_room(&t.key)?;
//!         ctx.push_sessions(&t.members, 4701, &0)?;
//!     } else {
//!         ctx.broadcast_room(&t.key, 4701, &s.left)?;
//!     }
//!     Ok(Some(s))
//! }
//! ```

use std::time::Duration;

pub use firefly_abi::rooms::{RoomEvent, RoomEventKind, RoomList, RoomSummary, SnapshotSpec};
use firefly_abi::rooms::{RoomInfo, RoomOp, RoomTick, room_status};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::payload::{FromPayload, IntoPayload};
use crate::raw;

/// How to open a room.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    tick: Option<Duration>,
    max_members: u32,
    state: Vec<u8>,
    snapshot: Option<SnapshotSpec>,
}

impl Default for RoomSpec {
    fn default() -> Self {
        Self::new()
    }
}

impl RoomSpec {
    /// A room without a tick, up to 100 members, with empty state.
    pub fn new() -> Self {
        Self {
            tick: None,
            max_members: 100,
            state: Vec::new(),
            snapshot: None,
        }
    }

    /// Ticks every `period` (at least 10 ms), calling the module's `#[room_tick]` handler.
    pub fn tick(mut self, period: Duration) -> Self {
        self.tick = Some(period);
        self
    }

    /// At most `n` members at once (1 to 1000).
    pub fn max_members(mut self, n: u32) -> Self {
        self.max_members = n;
        self
    }

    /// The initial state (MessagePack, at most 64 KiB).
    pub fn state<T: Serialize>(mut self, state: &T) -> Result<Self> {
        self.state = state.into_payload()?;
        Ok(self)
    }

    /// Makes the room durable: the host stores it (state, members, tick count) in the
    /// cluster's store every `n` ticks, and when its node dies, is cut off or is drained,
    /// another node of the module takes it over from the last snapshot and its members get
    /// `room_moved` (README "Rooms that outlive their node").
    pub fn snapshot_every_ticks(mut self, n: u64) -> Self {
        self.snapshot
            .get_or_insert_with(SnapshotSpec::default)
            .every_ticks = n;
        self
    }

    /// Like [`RoomSpec::snapshot_every_ticks`], every `period` (checked at the end of each
    /// tick and write).
    pub fn snapshot_every(mut self, period: Duration) -> Self {
        let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self.snapshot
            .get_or_insert_with(SnapshotSpec::default)
            .every_ms = ms;
        self
    }
}

/// A room as [`Ctx::room`] reads it.
#[derive(Debug, Clone)]
pub struct RoomView<S> {
    /// Its members, in the order they joined.
    pub members: Vec<u64>,
    /// Its state.
    pub state: S,
    /// Ticks so far.
    pub ticks: u64,
    /// The state's version: it grows at every change of the state.
    pub version: u64,
}

/// How many times [`Ctx::update_room`] reads and changes a room's state before it gives up
/// with `room_conflict` (each retry means another write got in first).
pub const UPDATE_ATTEMPTS: u32 = 64;

/// One tick of a room, as its `#[room_tick]` handler receives it.
#[derive(Debug, Clone)]
pub struct Tick<S> {
    /// The room's key.
    pub key: String,
    /// 1 for the first tick, +1 per tick.
    pub tick: u64,
    /// Time since the previous tick ran.
    pub elapsed: Duration,
    /// Its members.
    pub members: Vec<u64>,
    /// Its state.
    pub state: S,
}

fn room_call(op: &RoomOp) -> Result<Vec<u8>> {
    let bytes = rmp_serde::to_vec_named(op)
        .map_err(|e| Error::new("internal", format!("cannot encode a room operation: {e}")))?;
    // SAFETY: the pointer and length describe `bytes`, which the host only reads.
    let packed = unsafe { raw::room_call(bytes.as_ptr() as u32, bytes.len() as u32) };
    let (status, len) = ((packed >> 32) as u32, (packed & 0xffff_ffff) as usize);
    let mut answer = vec![0u8; len];
    if len > 0 {
        // SAFETY: `answer` is exactly `len` bytes; the host writes within it.
        unsafe { raw::call_reply_read(answer.as_mut_ptr() as u32, len as u32) };
    }
    let text = || String::from_utf8_lossy(&answer).into_owned();
    match status {
        room_status::OK => Ok(answer),
        room_status::NOT_FOUND => Err(Error::new("no_such_room", text())),
        room_status::EXISTS => Err(Error::new("room_exists", text())),
        room_status::FULL => Err(Error::new("room_full", text())),
        room_status::INVALID => Err(Error::new("invalid_room", text())),
        room_status::LIMIT => Err(Error::new("room_limit", text())),
        room_status::UNAVAILABLE => Err(Error::new("room_unavailable", text())),
        room_status::CONFLICT => Err(Error::new("room_conflict", text())),
        room_status::BUSY => Err(Error::new("room_busy", text())),
        other => Err(Error::msg(format!(
            "room operation failed with status {other}"
        ))),
    }
}

impl Ctx {
    /// Opens room `key` on this node. Fails with `room_exists`, `invalid_room` (bad key, tick,
    /// size) or `room_limit` (10,000 open rooms per module and node).
    pub fn open_room(&self, key: &str, spec: RoomSpec) -> Result<()> {
        let tick_ms = spec
            .tick
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        room_call(&RoomOp::Create {
            key: key.to_owned(),
            tick_ms,
            max_members: spec.max_members,
            state: spec.state,
            snapshot: spec.snapshot,
        })
        .map(drop)
    }

    /// Stores durable room `key` in the cluster's store now, after an event it must not lose
    /// on a fail-over (a goal, the end of a round); returns once it is stored. Fails with
    /// `invalid_room` for a room opened without a snapshot rule, `room_unavailable` when the
    /// store cannot be reached.
    pub fn snapshot_room(&self, key: &str) -> Result<()> {
        room_call(&RoomOp::Snapshot {
            key: key.to_owned(),
        })
        .map(drop)
    }

    /// Adds `session` to room `key` (and to its broadcast group `room:<key>`). Fails with
    /// `no_such_room` or `room_full`.
    pub fn join_room(&self, key: &str, session: u64) -> Result<()> {
        room_call(&RoomOp::Join {
            key: key.to_owned(),
            session,
        })
        .map(drop)
    }

    /// Removes `session` from room `key`; whether it was a member.
    pub fn leave_room(&self, key: &str, session: u64) -> Result<bool> {
        let answer = room_call(&RoomOp::Leave {
            key: key.to_owned(),
            session,
        })?;
        Ok(rmp_serde::from_slice(&answer).unwrap_or(false))
    }

    /// This module's rooms on this node (by key: members, capacity, tick), and the node's
    /// name. A room lives on the node that opened it; with several nodes serving a module,
    /// each lists its own.
    pub fn rooms(&self) -> Result<RoomList> {
        let answer = room_call(&RoomOp::List)?;
        rmp_serde::from_slice(&answer)
            .map_err(|e| Error::new("internal", format!("unreadable room list: {e}")))
    }

    /// The name of the node serving this request (as in `topology.yaml`).
    pub fn node_name(&self) -> Result<String> {
        let answer = room_call(&RoomOp::Node)?;
        String::from_utf8(answer).map_err(|e| Error::new("internal", format!("node name: {e}")))
    }

    /// Room `key`'s members and state (`None`: no such room).
    pub fn room<S: DeserializeOwned>(&self, key: &str) -> Result<Option<RoomView<S>>> {
        match room_call(&RoomOp::Get {
            key: key.to_owned(),
        }) {
            Ok(answer) => {
                let info: RoomInfo = rmp_serde::from_slice(&answer)
                    .map_err(|e| Error::new("internal", format!("unreadable room: {e}")))?;
                Ok(Some(RoomView {
                    members: info.members,
                    state: S::from_payload(&info.state)?,
                    ticks: info.ticks,
                    version: info.version,
                }))
            }
            Err(e) if e.code == "no_such_room" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces room `key`'s state. While the room's tick runs, this waits for it to end and
    /// then replaces the state the tick returned, so the tick never overwrites it. To change
    /// the state from what it is (a counter, a list of inputs), use [`Ctx::update_room`]: a
    /// read with [`Ctx::room`] then this call loses what others wrote in between.
    pub fn set_room_state<S: Serialize>(&self, key: &str, state: &S) -> Result<()> {
        room_call(&RoomOp::SetState {
            key: key.to_owned(),
            state: state.into_payload()?,
        })
        .map(drop)
    }

    /// Changes room `key`'s state with `change` and stores it, as the room's one writer at
    /// this moment: when another write or a tick's result got in between the read and the
    /// write, the state is read again and `change` runs again on it (so `change` should only
    /// change the state), up to [`UPDATE_ATTEMPTS`] times. While the room's tick runs the
    /// write waits for it to end. This is how a request handler feeds player input to a
    /// ticking room: push the input into the state; the next tick consumes it.
    ///
    /// Fails with `no_such_room`, with `change`'s own error (nothing is written), with
    /// `room_conflict` after [`UPDATE_ATTEMPTS`] lost races, and, from a room's tick writing
    /// to *another* room whose tick runs, with `room_busy`.
    pub fn update_room<S, R>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut S) -> Result<R>,
    ) -> Result<R>
    where
        S: Serialize + DeserializeOwned,
    {
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(room) = self.room::<S>(key)? else {
                return Err(Error::new("no_such_room", format!("no room `{key}`")));
            };
            let mut state = room.state;
            let out = change(&mut state)?;
            let update = RoomOp::Update {
                key: key.to_owned(),
                version: room.version,
                state: state.into_payload()?,
            };
            match room_call(&update) {
                Ok(_) => return Ok(out),
                Err(e) if e.code == "room_conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            "room_conflict",
            format!("room `{key}` changed under {UPDATE_ATTEMPTS} attempts in a row to update it"),
        ))
    }

    /// Closes room `key`: its tick stops and its members leave it. While the room's tick runs
    /// (and it is not that tick closing it), this waits for the tick to end.
    pub fn close_room(&self, key: &str) -> Result<()> {
        room_call(&RoomOp::Close {
            key: key.to_owned(),
        })
        .map(drop)
    }

    /// Pushes `msg` on `topic` to every member of room `key`, on every gate.
    pub fn broadcast_room<T: Serialize>(&self, key: &str, topic: u32, msg: &T) -> Result<()> {
        self.push_group(&format!("room:{key}"), topic, msg)
    }
}

/// Decodes the input of a `#[room_event]` handler.
pub(crate) fn decode_event(input: &[u8]) -> Result<RoomEvent> {
    rmp_serde::from_slice(input)
        .map_err(|e| Error::new("bad_request", format!("unreadable room event: {e}")))
}

/// Decodes a tick for a `#[room_tick]` handler taking `Tick<S>`.
pub(crate) fn decode<S: FromPayload>(input: &[u8]) -> Result<Tick<S>> {
    let tick: RoomTick = rmp_serde::from_slice(input)
        .map_err(|e| Error::new("bad_request", format!("unreadable room tick: {e}")))?;
    Ok(Tick {
        key: tick.key,
        tick: tick.tick,
        elapsed: Duration::from_millis(tick.elapsed_ms),
        members: tick.members,
        state: S::from_payload(&tick.state)?,
    })
}
