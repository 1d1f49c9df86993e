//! Rooms leaving a node on purpose: a drain hands every room to other nodes, a graceful stop
//! stores the durable ones one last time, and a room whose node of choice is back is handed
//! back to it (see [`super::failover`]).

use std::time::{Duration, Instant};

use super::durable::Durable;
use super::store::Row;
use super::{RoomKey, Rooms};

/// Longest wait of a hand-over for other nodes to take the rooms.
const HAND_OVER_WAIT: Duration = Duration::from_secs(10);

impl Rooms {
    /// Hands every room held here to other nodes (drain, graceful stop): each is stored at a
    /// tick boundary as held by nobody and dropped here; then waits until other nodes took
    /// them (or [`HAND_OVER_WAIT`]). Opens no new durable room from now on. How many rooms
    /// were handed over.
    pub async fn hand_over_all(&self) -> usize {
        let Some(durability) = &self.durability else {
            return 0;
        };
        durability.start_draining();
        // Others see the lease say so before the rooms come up for taking, so none is
        // picked for this node.
        self.renew().await;
        let ids: Vec<RoomKey> = self.lock().keys().cloned().collect();
        let mut handed = Vec::new();
        for id in ids {
            if self.hand_over(&id).await {
                handed.push(id);
            }
        }
        let deadline = Instant::now() + HAND_OVER_WAIT;
        while Instant::now() < deadline {
            match durability.store.rooms_of("").await {
                Ok(waiting) if !waiting.iter().any(|(_, r)| handed_here(&handed, r)) => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tracing::info!(node = %self.node, rooms = handed.len(), "rooms handed over");
        handed.len()
    }

    /// Hands room `id` to another node: stored at a tick boundary as held by nobody, then
    /// dropped here (the node where it belongs takes it at its next sweep). A room without
    /// snapshots is stored once, now: nothing is lost. Whether it was handed over.
    pub(super) async fn hand_over(&self, id: &RoomKey) -> bool {
        if let Some(room) = self.lock().get_mut(id)
            && room.durable.is_none()
        {
            room.durable = Some(Durable::new(Default::default(), 0, None));
        }
        // Its tick ends first; then it is marked as ticking, so no tick starts and every
        // other writer waits, until it is gone from here.
        match self.writable(id, None).await {
            Ok(mut rooms) => match rooms.get_mut(id) {
                Some(room) => {
                    room.ticking = true;
                    room.leaving = true;
                }
                None => return false,
            },
            Err(_) => return false,
        }
        match self.save_as(id, Some("")).await {
            Ok(()) => {
                self.lost(id);
                true
            }
            Err((_, why)) => {
                tracing::error!(
                    module = %id.0, room = %id.1,
                    "room not handed over: {}", String::from_utf8_lossy(&why)
                );
                if let Some(room) = self.lock().get_mut(id) {
                    room.ticking = false;
                    room.leaving = false;
                    room.idle.notify_waiters();
                }
                false
            }
        }
    }
}

impl Rooms {
    /// Stores every durable room held here one last time, still as this node's (a graceful
    /// stop): another node takes them over from there once this node's lease runs out, or
    /// this node takes them back when it starts again. Gives up after [`STORE_ALL_WAIT`] (a
    /// store that is gone). How many were stored.
    pub async fn store_all(&self) -> usize {
        let Some(durability) = &self.durability else {
            return 0;
        };
        durability.start_draining();
        let ids: Vec<RoomKey> = self
            .lock()
            .iter()
            .filter(|(_, room)| room.durable.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let all = async {
            let mut stored = 0;
            for id in &ids {
                if self.save(id).await.is_ok() {
                    stored += 1;
                }
            }
            stored
        };
        match tokio::time::timeout(STORE_ALL_WAIT, all).await {
            Ok(stored) => stored,
            Err(_) => {
                tracing::warn!(node = %self.node, "durable rooms not all stored at the stop: the store does not answer");
                0
            }
        }
    }
}

/// Longest wait of [`Rooms::store_all`].
const STORE_ALL_WAIT: Duration = Duration::from_secs(3);

fn handed_here(handed: &[RoomKey], row: &Row) -> bool {
    handed
        .iter()
        .any(|(module, key)| row.id == super::store::room_id(module, key))
}
