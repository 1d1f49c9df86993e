//! `roombench`: the room of the rooms benchmark (`benches/rooms_ws.rs`). Commands 521-522,
//! push 5201.
//!
//! A player joins a room by key (the first one opens it: 4 members, a 50 ms tick); its inputs
//! go into the room's state with `update_room` (README "Rooms": one writer at a time); each
//! tick adds the inputs received since the last one into the room's position and broadcasts
//! the room's state (about 60 bytes of MessagePack) to its members. The Colyseus baseline
//! (`benches/colyseus/server.mjs`) and the bench's bare server run the same room.

#[firefly_sdk::module]
mod roombench {
    use std::time::Duration;

    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Broadcast to a room's members at each tick.
    pub const STATE_TOPIC: u32 = 5201;

    /// The room's state, held by the host between ticks.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Field {
        pub x: i64,
        pub y: i64,
        /// Inputs applied so far.
        pub inputs: u64,
        /// Inputs received since the last tick, summed.
        pub pending_x: i64,
        pub pending_y: i64,
        pub pending: u32,
    }

    /// Command 521: join (or open) a room.
    #[derive(Deserialize)]
    pub struct Join {
        pub room: String,
        #[serde(default = "fifty")]
        pub tick_ms: u64,
    }

    fn fifty() -> u64 {
        50
    }

    /// Command 522: one input.
    #[derive(Deserialize)]
    pub struct Input {
        pub room: String,
        pub x: i32,
        pub y: i32,
    }

    /// Pushed each tick on [`STATE_TOPIC`].
    #[derive(Serialize)]
    pub struct State<'a> {
        pub room: &'a str,
        pub tick: u64,
        pub x: i64,
        pub y: i64,
        pub inputs: u64,
        pub members: u32,
        /// Game time: ticks × the tick's period, in ms.
        pub t_ms: u64,
        /// A stand-in for per-member figures (health), so the state is about 60 bytes.
        pub hp: [u8; 4],
    }

    /// Command 521: opens room `room` if it is not open yet, and joins it.
    #[handler(521)]
    fn join(ctx: &mut Ctx, req: Join) -> Result<()> {
        let spec = RoomSpec::new()
            .tick(Duration::from_millis(req.tick_ms))
            .max_members(4)
            .state(&Field::default())?;
        match ctx.open_room(&req.room, spec) {
            Ok(()) => {}
            Err(e) if e.code == "room_exists" => {}
            Err(e) => return Err(e),
        }
        ctx.join_room(&req.room, ctx.session())
    }

    /// Command 522: adds an input to the room's pending inputs; the next tick applies it.
    #[handler(522)]
    fn push_input(ctx: &mut Ctx, req: Input) -> Result<()> {
        ctx.update_room(&req.room, |f: &mut Field| {
            f.pending_x += i64::from(req.x);
            f.pending_y += i64::from(req.y);
            f.pending += 1;
            Ok(())
        })
    }

    /// Each tick: the pending inputs are applied and the state is broadcast to the members.
    #[room_tick]
    fn tick(ctx: &mut Ctx, t: Tick<Field>) -> Result<Option<Field>> {
        let mut f = t.state;
        f.x += f.pending_x;
        f.y += f.pending_y;
        f.inputs += u64::from(f.pending);
        (f.pending_x, f.pending_y, f.pending) = (0, 0, 0);
        let state = State {
            room: &t.key,
            tick: t.tick,
            x: f.x,
            y: f.y,
            inputs: f.inputs,
            members: u32::try_from(t.members.len()).unwrap_or(u32::MAX),
            t_ms: t.tick * 50,
            hp: [100; 4],
        };
        ctx.broadcast_room(&t.key, STATE_TOPIC, &state)?;
        Ok(Some(f))
    }
}
