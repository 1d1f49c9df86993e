//! Durable rooms on the node holding them: their snapshots are stored in the cluster's store
//! ([`super::store`]) when they open, at the rate their spec asks, when the module asks, and
//! when the node hands them over; and they pause while the node cannot renew its lease (see
//! [`super::failover`]), so a node cut off from the others never runs a room another node has
//! taken over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use firefly_abi::rooms::{SnapshotSpec, room_status};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::store::{RoomStore, Row, Snapshot};
use super::{Room, RoomAnswer, RoomKey, Rooms, answer};
use crate::data::DataError;
use crate::engine::TimerHost as _;

/// How one durable room is stored.
pub(super) struct Durable {
    pub spec: SnapshotSpec,
    /// The room object's version in the store (`None`: not stored yet).
    pub stored: Option<u64>,
    /// The take-overs of the room so far (its fencing token).
    pub epoch: u64,
    last_saved: Instant,
    saved_ticks: u64,
    /// A save is queued (not started yet).
    queued: bool,
    /// Held while a snapshot is taken and stored: one at a time, in order.
    saves: Arc<tokio::sync::Mutex<()>>,
}

impl Durable {
    pub fn new(spec: SnapshotSpec, epoch: u64, stored: Option<u64>) -> Self {
        Self {
            spec,
            stored,
            epoch,
            last_saved: Instant::now(),
            saved_ticks: 0,
            queued: false,
            saves: Arc::default(),
        }
    }

    /// A room restored from a snapshot taken at tick `ticks`.
    pub fn restored(spec: SnapshotSpec, epoch: u64, stored: u64, ticks: u64) -> Self {
        Self {
            saved_ticks: ticks,
            ..Self::new(spec, epoch, Some(stored))
        }
    }
}

/// A node's side of durable rooms: the store, the queue of rooms to save, the lease.
pub(super) struct Durability {
    pub store: RoomStore,
    queue: UnboundedSender<RoomKey>,
    pub queued: Mutex<Option<UnboundedReceiver<RoomKey>>>,
    /// Until when this node's lease is surely valid (`None`: never renewed yet).
    pub lease: Mutex<Option<Instant>>,
    /// The lease's stored version, as its last renewal answered.
    pub lease_version: Mutex<Option<u64>>,
    draining: AtomicBool,
}

impl Durability {
    pub fn new(store: RoomStore) -> Self {
        let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
        Self {
            store,
            queue,
            queued: Mutex::new(Some(queued)),
            lease: Mutex::new(None),
            lease_version: Mutex::new(None),
            draining: AtomicBool::new(false),
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// A room as a snapshot holds it.
pub(super) fn snapshot_of(key: &str, room: &Room, spec: SnapshotSpec) -> Snapshot {
    Snapshot {
        key: key.to_owned(),
        members: room.members.clone(),
        max_members: room.max_members,
        state: room.state.clone(),
        version: room.version,
        tick_ms: room.tick_ms,
        // A tick that runs now counts once its state is stored: a snapshot taken meanwhile has
        // the state from before it, so it has the count from before it too.
        ticks: room
            .ticks
            .saturating_sub(u64::from(room.ticking && !room.leaving)),
        phase_ms: u64::try_from(room.last_tick.elapsed().as_millis()).unwrap_or(u64::MAX),
        spec,
    }
}

impl Rooms {
    /// Whether durable rooms must pause: the node's lease may have run out, so another node
    /// may be taking its rooms over.
    pub(super) fn fenced(&self) -> bool {
        let Some(durability) = &self.durability else {
            return true;
        };
        let lease = durability.lease.lock().unwrap_or_else(|p| p.into_inner());
        lease.is_none_or(|until| Instant::now() >= until)
    }

    /// Queues a save of `room` (`id`) when its spec says one is due.
    pub(super) fn save_if_due(&self, room: &mut Room, id: &RoomKey) {
        let (Some(durability), Some(d)) = (&self.durability, room.durable.as_mut()) else {
            return;
        };
        let by_ticks = d.spec.every_ticks > 0 && room.ticks >= d.saved_ticks + d.spec.every_ticks;
        let by_time = d.spec.every_ms > 0
            && d.last_saved.elapsed().as_millis() >= u128::from(d.spec.every_ms);
        if (by_ticks || by_time) && !d.queued {
            d.queued = true;
            // Closed only when the node is going away.
            let _ = durability.queue.send(id.clone());
        }
    }

    /// Queues a save of `room` (`id`) now, due or not: its members changed (a member lost in
    /// a fail-over would have to join again).
    pub(super) fn save_soon(&self, room: &mut Room, id: &RoomKey) {
        let (Some(durability), Some(d)) = (&self.durability, room.durable.as_mut()) else {
            return;
        };
        if !d.queued {
            d.queued = true;
            let _ = durability.queue.send(id.clone());
        }
    }

    /// The lock that orders room `id`'s saves (`None`: not a durable room here).
    pub(super) fn saves_of(&self, id: &RoomKey) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let rooms = self.lock();
        rooms
            .get(id)
            .and_then(|r| r.durable.as_ref())
            .map(|d| d.saves.clone())
    }

    /// Stores durable room `id` now (as it is once the previous save ended); the store's
    /// refusal as an answer. A room another node took over meanwhile is dropped here.
    pub(super) async fn save(&self, id: &RoomKey) -> Result<(), RoomAnswer> {
        self.save_as(id, None).await
    }

    /// [`Rooms::save`], the room object naming `holder` (`Some("")`: handed over) instead of
    /// this node.
    pub(super) async fn save_as(
        &self,
        id: &RoomKey,
        holder: Option<&str>,
    ) -> Result<(), RoomAnswer> {
        let Some(durability) = &self.durability else {
            return Err(not_durable(&id.1));
        };
        let Some(saves) = self.saves_of(id) else {
            return Err(not_durable(&id.1));
        };
        let _one_at_a_time = saves.lock().await;
        let (row, stored) = {
            let mut rooms = self.lock();
            let Some(room) = rooms.get_mut(id) else {
                return Err(answer(room_status::NOT_FOUND, "no such room"));
            };
            let Some(spec) = room.durable.as_ref().map(|d| d.spec) else {
                return Err(not_durable(&id.1));
            };
            let snapshot = snapshot_of(&id.1, room, spec);
            let ticks = room.ticks;
            let Some(d) = room.durable.as_mut() else {
                return Err(not_durable(&id.1));
            };
            d.queued = false;
            d.saved_ticks = ticks;
            d.last_saved = Instant::now();
            let me = durability.store.node();
            let mut row = Row::room(&id.0, holder.unwrap_or(me), d.epoch, &snapshot)
                .map_err(|e| answer(room_status::INVALID, e))?;
            if holder.is_some() {
                row.from = me.to_owned();
            }
            (row, d.stored)
        };
        let mut saved = durability.store.save(&row, stored).await;
        if let Err(DataError::Conflict(_)) = saved {
            saved = match self.own_write_landed(id, &row).await {
                // A save whose answer was lost (a timeout) was applied after all: the object
                // is still this node's, a version on.
                Ok(Some(version)) => durability.store.save(&row, Some(version)).await,
                Ok(None) => saved,
                // The store cannot tell now: the room stays, and is stored again later.
                Err(e) => Err(e),
            };
        }
        match saved {
            Ok(version) => {
                if let Some(d) = self.lock().get_mut(id).and_then(|r| r.durable.as_mut()) {
                    d.stored = Some(version);
                }
                Ok(())
            }
            Err(DataError::AlreadyExists(_)) if stored.is_none() => Err(answer(
                room_status::EXISTS,
                format!("room `{}` is stored already", id.1),
            )),
            Err(DataError::Conflict(_) | DataError::NotFound(_) | DataError::AlreadyExists(_)) => {
                self.lost(id);
                Err(answer(
                    room_status::NOT_FOUND,
                    format!("room `{}` was taken over by another node", id.1),
                ))
            }
            Err(e) => Err(answer(
                room_status::UNAVAILABLE,
                format!("room `{}`: snapshot not stored: {e}", id.1),
            )),
        }
    }

    /// The version of room `id`'s object if it is still held as `row` says (by this node, or
    /// handed over by it, at the same epoch): a conflict then came from this node's own write
    /// whose answer was lost. `None`: another node holds it (or nobody: it is gone).
    async fn own_write_landed(&self, id: &RoomKey, row: &Row) -> Result<Option<u64>, DataError> {
        let Some(durability) = &self.durability else {
            return Ok(None);
        };
        let store = &durability.store;
        let Some((version, now)) = store.room(&id.0, &id.1).await? else {
            return Ok(None);
        };
        let me = store.node();
        let mine = now.node == me || (now.node.is_empty() && now.from == me);
        Ok((mine && now.epoch == row.epoch).then_some(version))
    }

    /// Stores a durable room that just opened. A room object left by a node that is gone (or
    /// by this node's earlier process, or handed over and not taken) is taken over; one held
    /// by a live node means the room is open there.
    pub(super) async fn store_new(&self, id: &RoomKey) -> Result<(), RoomAnswer> {
        let Some(durability) = &self.durability else {
            return Err(not_durable(&id.1));
        };
        match self.save(id).await {
            Err((room_status::EXISTS, _)) => {}
            done => return done,
        }
        // An object exists already: whose is it?
        let unavailable = |e: DataError| answer(room_status::UNAVAILABLE, e.to_string());
        let store = &durability.store;
        let Some((version, row)) = store.room(&id.0, &id.1).await.map_err(unavailable)? else {
            return Err(answer(
                room_status::UNAVAILABLE,
                "the room's object moved; try again",
            ));
        };
        let alive = store.leases().await.map_err(unavailable)?;
        let now = super::store::now_ms();
        let holder_alive = alive
            .iter()
            .any(|lease| lease.node == row.node && lease.until_ms > now);
        if !row.node.is_empty() && row.node != store.node() && holder_alive {
            return Err(answer(
                room_status::EXISTS,
                format!("room `{}` is open on node `{}`", id.1, row.node),
            ));
        }
        if let Some(d) = self.lock().get_mut(id).and_then(|r| r.durable.as_mut()) {
            d.stored = Some(version);
            d.epoch = row.epoch() + 1;
        }
        self.save(id).await
    }

    /// Deletes the stored object of a durable room that closed here (`durable`: how it was
    /// stored; nothing for a room that was not durable).
    pub(super) async fn forget_stored(&self, id: &RoomKey, durable: Option<&Durable>) {
        let (Some(durability), Some(d)) = (&self.durability, durable) else {
            return;
        };
        let Some(version) = d.stored else {
            return;
        };
        if let Err(e) = durability.store.remove(&id.0, &id.1, Some(version)).await {
            tracing::warn!(module = %id.0, room = %id.1, "closed room's snapshot not deleted: {e}");
        }
    }

    /// Room `id` is held by another node now: this node's copy goes, quietly (its members
    /// belong to the room on the other node; they are not told anything from here).
    pub(super) fn lost(&self, id: &RoomKey) {
        let Some(room) = self.lock().remove(id) else {
            return;
        };
        room.idle.notify_waiters();
        if let Some(timer) = room.timer {
            self.timers.cancel(&id.0, timer);
        }
        tracing::info!(module = %id.0, room = %id.1, "room dropped here: another node holds it now");
    }
}

fn not_durable(key: &str) -> RoomAnswer {
    answer(
        room_status::INVALID,
        format!("room `{key}` takes no snapshots (open it with a snapshot rule)"),
    )
}
