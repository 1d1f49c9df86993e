//! `countdown`: the smallest room game, for tests and as an example of rooms. Commands 471-474.
//!
//! A player opens a room that counts down from N at a fixed tick; others join it; every tick
//! the host calls `tick`, which lowers the count in the room's state (kept by the host) and
//! broadcasts it to the members (topic 4701); at 0 the room closes itself, then tells the
//! members of that last tick. Every join, leave
//! and disconnect of a member is told to the members on topic 4702 (its `#[room_event]`).

#[firefly_sdk::module]
mod countdown {
    use std::time::Duration;

    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Broadcast to a room's members at each tick.
    pub const TICK_TOPIC: u32 = 4701;

    /// Broadcast to a room's members when one joins, leaves or is disconnected.
    pub const MEMBER_TOPIC: u32 = 4702;

    /// Pushed on [`MEMBER_TOPIC`].
    #[derive(Serialize)]
    pub struct Member {
        pub room: String,
        pub session: u64,
        /// `joined`, `left`, `disconnected` or `restored` (taken over by this node).
        pub kind: RoomEventKind,
        pub members: Vec<u64>,
    }

    /// The room's state, held by the host between ticks.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Count {
        pub left: u32,
        /// Total milliseconds the ticks reported as elapsed.
        pub elapsed_ms: u64,
    }

    /// Command 471: open a room.
    #[derive(Deserialize)]
    pub struct Open {
        pub room: String,
        pub from: u32,
        pub tick_ms: u64,
        #[serde(default = "two")]
        pub max_members: u32,
        /// Makes the room durable: stored every this many ticks, so it outlives its node
        /// (taken over by another node, its members told `room_moved`).
        #[serde(default)]
        pub snapshot_ticks: Option<u64>,
    }

    fn two() -> u32 {
        2
    }

    #[derive(Deserialize)]
    pub struct Room {
        pub room: String,
    }

    /// What 474 answers.
    #[derive(Serialize)]
    pub struct Info {
        pub members: Vec<u64>,
        pub left: u32,
        pub ticks: u64,
    }

    /// Pushed each tick.
    #[derive(Serialize)]
    pub struct Tock {
        pub room: String,
        pub tick: u64,
        pub left: u32,
        pub elapsed_ms: u64,
    }

    /// Command 471: opens a room counting down from `from`, and joins it.
    #[handler(471)]
    fn open(ctx: &mut Ctx, req: Open) -> Result<()> {
        ensure!(req.from > 0, "invalid_count", "count down from at least 1");
        let mut spec = RoomSpec::new()
            .tick(Duration::from_millis(req.tick_ms))
            .max_members(req.max_members)
            .state(&Count {
                left: req.from,
                elapsed_ms: 0,
            })?;
        if let Some(n) = req.snapshot_ticks {
            spec = spec.snapshot_every_ticks(n);
        }
        ctx.open_room(&req.room, spec)?;
        ctx.join_room(&req.room, ctx.session())
    }

    /// Command 472: joins a room.
    #[handler(472)]
    fn join(ctx: &mut Ctx, req: Room) -> Result<()> {
        ctx.join_room(&req.room, ctx.session())
    }

    /// Command 473: leaves a room; whether the caller was in it.
    #[handler(473)]
    fn leave(ctx: &mut Ctx, req: Room) -> Result<bool> {
        ctx.leave_room(&req.room, ctx.session())
    }

    /// Command 474: a room's members and count (nil when closed).
    #[handler(474)]
    fn info(ctx: &mut Ctx, req: Room) -> Result<Option<Info>> {
        Ok(ctx.room::<Count>(&req.room)?.map(|r| Info {
            members: r.members,
            left: r.state.left,
            ticks: r.ticks,
        }))
    }

    /// Each tick: one less, told to every member; the room closes at 0.
    #[room_tick]
    fn tick(ctx: &mut Ctx, t: Tick<Count>) -> Result<Option<Count>> {
        let mut count = t.state;
        count.left = count.left.saturating_sub(1);
        count.elapsed_ms += u64::try_from(t.elapsed.as_millis()).unwrap_or(0);
        let tock = Tock {
            room: t.key.clone(),
            tick: t.tick,
            left: count.left,
            elapsed_ms: count.elapsed_ms,
        };
        if count.left == 0 {
            // Closed before the members hear of the last tick, so one that reacts to it finds
            // the room closed. Told with `push_sessions`: the close took them out of the room's
            // group, so a broadcast now would reach nobody.
            ctx.close_room(&t.key)?;
            ctx.push_sessions(&t.members, TICK_TOPIC, &tock)?;
        } else {
            ctx.broadcast_room(&t.key, TICK_TOPIC, &tock)?;
        }
        Ok(Some(count))
    }

    /// A member joined, left or was disconnected: the members are told.
    #[room_event]
    fn member(ctx: &mut Ctx, e: RoomEvent) -> Result<()> {
        let member = Member {
            room: e.key.clone(),
            session: e.session,
            kind: e.kind,
            members: e.members,
        };
        ctx.broadcast_room(&e.key, MEMBER_TOPIC, &member)
    }
}
