//! Firing timers: each due firing from the node's [`Scheduler`] runs the `#[timer]` handler of
//! its module's current version, so a hot update takes effect at the next firing.

use std::sync::Arc;

use bytes::Bytes;
use firefly_abi::DispatchKind;
use tokio::sync::mpsc::UnboundedReceiver;

use super::NodeCore;
use crate::engine::{Lease, TimerHost as _};
use crate::rooms::{Event, TickStart};
use crate::timers::Due;
use firefly_abi::rooms::RoomTick;

/// Ends a room's tick when dropped, with the state it returned (`None`: kept the old one, or
/// the tick's task was dropped mid-way): writers waiting for the tick are never left waiting.
struct TickEnd<'a> {
    rooms: &'a crate::rooms::Rooms,
    module: &'a str,
    key: &'a str,
    timer: u64,
    state: Option<Vec<u8>>,
}

impl Drop for TickEnd<'_> {
    fn drop(&mut self) {
        self.rooms
            .tick_done(self.module, self.key, self.timer, self.state.take());
    }
}

impl NodeCore {
    /// Serves the firings `due` delivers, each in a task of its own (a slow handler delays
    /// only itself).
    pub(super) fn fire_timers(self: &Arc<Self>, due: UnboundedReceiver<Due>) {
        self.serve_each(due, |core, firing| async move { core.fire(firing).await });
    }

    /// Runs `serve` for every item `items` delivers, each in a task of its own. Holds the node
    /// weakly, so the loop ends with it.
    fn serve_each<T, F, Fut>(self: &Arc<Self>, mut items: UnboundedReceiver<T>, serve: F)
    where
        T: Send + 'static,
        F: Fn(Arc<Self>, T) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(item) = items.recv().await {
                let Some(core) = node.upgrade() else {
                    return;
                };
                tokio::spawn(serve(core, item));
            }
        });
    }

    async fn fire(&self, due: Due) {
        if due.firing.tag == crate::rooms::TICK_TAG {
            return self.tick_room(due).await;
        }
        let Due { module, firing } = due;
        let (timer, repeats) = (firing.timer, firing.repeats);
        let Some(slot) = self.slot(&module) else {
            tracing::warn!(%module, timer, "timer of a module this node no longer hosts: cancelled");
            self.timers.record(&module, false);
            self.timers.cancel(&module, timer);
            return;
        };
        let version = slot.current();
        let Ok(index) = version.manifest.timers.binary_search(&firing.tag) else {
            tracing::warn!(
                %module, version = version.version(), timer, tag = %firing.tag,
                "the module has no #[timer] handler for this tag: the firing fails{}",
                if repeats { " and the timer is cancelled" } else { "" }
            );
            self.timers.record(&module, false);
            if repeats {
                self.timers.cancel(&module, timer);
            }
            return;
        };
        let input = match rmp_serde::to_vec_named(&firing) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                tracing::error!(%module, timer, "cannot encode a timer firing: {e}");
                self.timers.record(&module, false);
                return;
            }
        };
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let outcome = version
            .call_event(DispatchKind::Timer, index, 0, input)
            .await;
        if let Err(err) = &outcome.result {
            tracing::debug!(
                %module, version = version.version(), timer, tag = %firing.tag,
                code = %err.code, "timer firing failed: {}", err.message
            );
        }
        self.timers.record(&module, outcome.result.is_ok());
    }

    /// Runs one tick of a room: the module's room tick handler gets the room's members and
    /// state, and what it returns becomes the new state. A firing that comes while the room's
    /// previous tick still runs (a slow handler, a loaded machine) is skipped, so ticks never
    /// overlap; the next tick's `elapsed` then covers both periods.
    ///
    /// The instance is taken before the room is marked as ticking: writers to the room wait
    /// for a marked tick while holding instances of their own (see `crate::rooms`).
    async fn tick_room(&self, due: Due) {
        let Due { module, firing } = due;
        let key: Arc<str> = Arc::from(String::from_utf8_lossy(&firing.payload));
        let Some(slot) = self.slot(&module) else {
            self.timers.cancel(&module, firing.timer);
            return;
        };
        let mut lease = Lease::for_tick(slot.current(), key.clone());
        if let Err(err) = lease.ready().await {
            self.timers.record(&module, false);
            tracing::debug!(
                %module, room = %key, code = %err.code,
                "room tick skipped: no instance to run it: {}", err.message
            );
            return;
        }
        let tick = match self.rooms.tick(&module, &key, firing.timer) {
            TickStart::Run(tick) => tick,
            TickStart::Busy => {
                tracing::debug!(%module, room = %key, "room tick skipped: the previous one still runs");
                return;
            }
            TickStart::Gone => {
                // The room closed: its tick stops.
                self.timers.cancel(&module, firing.timer);
                return;
            }
        };
        let mut end = TickEnd {
            rooms: &self.rooms,
            module: &module,
            key: &key,
            timer: firing.timer,
            state: None,
        };
        end.state = self.run_tick(&module, &mut lease, &key, &tick).await;
    }

    /// Calls the tick handler on `lease`; the new state, `None` when it kept the old one or
    /// failed.
    async fn run_tick(
        &self,
        module: &Arc<str>,
        lease: &mut Lease,
        key: &str,
        tick: &RoomTick,
    ) -> Option<Vec<u8>> {
        let version = lease.module().clone();
        let input = match rmp_serde::to_vec_named(tick) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                tracing::error!(%module, room = %key, "cannot encode a room tick: {e}");
                return None;
            }
        };
        let mut state = Vec::new();
        let outcome = lease
            .call(DispatchKind::RoomTick, 0, 0, input, &mut state)
            .await;
        match outcome.result {
            Ok(()) => (!state.is_empty()).then_some(state),
            Err(err) => {
                self.timers.record(module, false);
                tracing::debug!(
                    %module, version = version.version(), room = %key, code = %err.code,
                    "room tick failed: {}", err.message
                );
                None
            }
        }
    }

    /// Serves the rooms' membership events: each runs the `#[room_event]` handler of its
    /// module's current version (if it has one), as the member's session, in a task of its
    /// own.
    pub(super) fn serve_room_events(self: &Arc<Self>, events: UnboundedReceiver<Event>) {
        self.serve_each(
            events,
            |core, event| async move { core.room_event(event).await },
        );
    }

    async fn room_event(&self, Event { module, event }: Event) {
        let Some(slot) = self.slot(&module) else {
            return;
        };
        let version = slot.current();
        if !version.manifest.events.iter().any(|e| e == "room_event") {
            return;
        }
        let input = match rmp_serde::to_vec_named(&event) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                tracing::error!(%module, room = %event.key, "cannot encode a room event: {e}");
                return;
            }
        };
        let outcome = version
            .call_event(DispatchKind::RoomEvent, 0, event.session, input)
            .await;
        if let Err(err) = outcome.result {
            tracing::debug!(
                %module, version = version.version(), room = %event.key, code = %err.code,
                "room event handler failed: {}", err.message
            );
        }
    }
}
