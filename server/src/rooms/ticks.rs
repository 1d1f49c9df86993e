//! A room's tick as the node runs it: [`Rooms::tick`] starts it (the tick becomes the room's
//! writer, see "One writer at a time" in [`super`]) and [`Rooms::tick_done`] stores what it
//! returned and lets the writers that waited apply on top.

use std::sync::Arc;
use std::time::Instant;

use firefly_abi::rooms::RoomTick;

use super::{MAX_STATE, Rooms};

/// What a room's tick firing should do.
#[derive(Debug)]
pub enum TickStart {
    /// Run the module's tick handler with this input; then call [`Rooms::tick_done`].
    Run(RoomTick),
    /// The previous tick is still running: skip this firing.
    Busy,
    /// The room is closed: its tick timer should stop.
    Gone,
}

impl Rooms {
    /// Starts room `key`'s next tick: its input, counted as run now, unless the previous tick
    /// is still running or the room is gone. `timer` is the firing tick timer:
    /// a room opened again under the same key has a timer of its own, so the old one's firing
    /// finds its room gone.
    pub fn tick(&self, module: &str, key: &str, timer: u64) -> TickStart {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(&(Arc::from(module), key.to_owned())) else {
            return TickStart::Gone;
        };
        if !room.ticks_by(timer) {
            return TickStart::Gone;
        }
        if room.ticking {
            return TickStart::Busy;
        }
        if room.durable.is_some() && self.fenced() {
            // Its node cannot renew its lease: another node may be taking the room over.
            return TickStart::Busy;
        }
        room.ticking = true;
        room.ticks += 1;
        let now = Instant::now();
        let elapsed = now.duration_since(room.last_tick);
        room.last_tick = now;
        TickStart::Run(RoomTick {
            key: key.to_owned(),
            tick: room.ticks,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            members: room.members.clone(),
            state: room.state.clone(),
        })
    }

    /// Ends the tick [`Rooms::tick`] started: stores the state the handler returned (`None`:
    /// it failed or kept the old one) if the room is still open, and lets the next tick run.
    pub fn tick_done(&self, module: &str, key: &str, timer: u64, state: Option<Vec<u8>>) {
        let id = (Arc::from(module), key.to_owned());
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(&id) else {
            return;
        };
        if !room.ticks_by(timer) {
            // The room closed in its tick and was opened again: this result is not its own.
            return;
        }
        room.ticking = false;
        match state {
            Some(state) if state.len() > MAX_STATE => tracing::warn!(
                module,
                room = key,
                "a room tick returned more than {MAX_STATE} bytes of state: kept the old one"
            ),
            Some(state) => {
                room.state = state;
                room.version += 1;
            }
            None => {}
        }
        self.save_if_due(room, &id);
        // The writers that waited for this tick apply on top of its result.
        room.idle.notify_waiters();
    }
}
