//! `tally`: a counter kept in a ticking room, for the test of rooms as the single writer of
//! their state. Commands 461-465.
//!
//! 461 opens a room whose tick burns `work_us` microseconds of CPU (a busy game loop) and
//! counts its ticks; 462 adds one to the room's counter with `update_room`, and 464 with a
//! read then a blind `set_room_state`, both racing the tick; 463 reads the room. Every
//! acknowledged increment must be counted. A room opened with `poke` adds one to that other
//! room's `pokes` at each tick (two rooms poking each other: ticks writing each other's rooms);
//! 465 stops it. A room opened with `close_at` closes itself in that tick. 466 lists the
//! module's rooms on the node, with the node's name.

#[firefly_sdk::module]
mod tally {
    use std::time::Duration;

    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// The room's state.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Tally {
        /// Increments by 462.
        pub count: u64,
        /// Ticks that ran (written by the tick).
        pub ticks: u64,
        /// CPU each tick burns, in microseconds.
        pub work_us: u64,
        /// Another room each tick adds one to (`pokes`), empty for none.
        pub poke: String,
        /// Pokes received from another room's ticks.
        pub pokes: u64,
        /// Pokes this room's ticks made that were acknowledged.
        pub poked: u64,
        /// Pokes refused with `room_busy` (the other room was mid-tick).
        pub busy: u64,
        /// The tick that closes the room (after its work), 0 for none.
        pub close_at: u64,
    }

    /// Command 461: open a room.
    #[derive(Deserialize)]
    pub struct Open {
        pub room: String,
        pub tick_ms: u64,
        pub work_us: u64,
        #[serde(default)]
        pub poke: String,
        #[serde(default)]
        pub close_at: u64,
    }

    #[derive(Deserialize)]
    pub struct Room {
        pub room: String,
    }

    /// Command 461: opens a ticking room with a zero count.
    #[handler(461)]
    fn open(ctx: &mut Ctx, req: Open) -> Result<()> {
        let spec = RoomSpec::new()
            .tick(Duration::from_millis(req.tick_ms))
            .state(&Tally {
                work_us: req.work_us,
                poke: req.poke,
                close_at: req.close_at,
                ..Tally::default()
            })?;
        ctx.open_room(&req.room, spec)
    }

    /// Command 462: adds one to the room's count with `update_room` (right with any number of
    /// clients at once); the count after it.
    #[handler(462)]
    fn add(ctx: &mut Ctx, req: Room) -> Result<u64> {
        ctx.update_room(&req.room, |tally: &mut Tally| {
            tally.count += 1;
            Ok(tally.count)
        })
    }

    /// Command 464: adds one to the room's count the plain way, a read then a blind write
    /// (`set_room_state`): right from one client at a time, whatever the tick does.
    #[handler(464)]
    fn add_blind(ctx: &mut Ctx, req: Room) -> Result<u64> {
        let Some(room) = ctx.room::<Tally>(&req.room)? else {
            bail!("no_such_room", "no room {}", req.room);
        };
        let mut tally = room.state;
        tally.count += 1;
        ctx.set_room_state(&req.room, &tally)?;
        Ok(tally.count)
    }

    /// Command 465: the room's ticks stop poking; its state once they have.
    #[handler(465)]
    fn stop(ctx: &mut Ctx, req: Room) -> Result<Tally> {
        ctx.update_room(&req.room, |tally: &mut Tally| {
            tally.poke.clear();
            Ok(tally.clone())
        })
    }

    /// Command 466: this module's rooms on this node, and the node's name (twice: from the
    /// list and from `node_name`, which must agree).
    #[handler(466)]
    fn list(ctx: &mut Ctx, _req: ()) -> Result<(RoomList, String)> {
        Ok((ctx.rooms()?, ctx.node_name()?))
    }

    /// Command 463: the room's state (nil when closed).
    #[handler(463)]
    fn read(ctx: &mut Ctx, req: Room) -> Result<Option<Tally>> {
        Ok(ctx.room::<Tally>(&req.room)?.map(|r| r.state))
    }

    /// Each tick: `work_us` of busy work, then one more tick counted.
    #[room_tick]
    fn tick(ctx: &mut Ctx, t: Tick<Tally>) -> Result<Option<Tally>> {
        let mut tally = t.state;
        let until = ctx.now_micros() + tally.work_us;
        let mut spin = 0u64;
        while ctx.now_micros() < until {
            spin = spin.wrapping_add(1);
        }
        tally.ticks += 1;
        if tally.ticks == tally.close_at {
            // Writers waiting for this tick find the room closed.
            ctx.close_room(&t.key)?;
            return Ok(None);
        }
        if !tally.poke.is_empty() {
            // A tick writing another room: refused at once when that room is mid-tick (two
            // ticks poking each other would otherwise wait for each other).
            match ctx.update_room(&tally.poke, |other: &mut Tally| {
                other.pokes += 1;
                Ok(())
            }) {
                Ok(()) => tally.poked += 1,
                Err(e) if e.code == "room_busy" => tally.busy += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(Some(tally))
    }
}
