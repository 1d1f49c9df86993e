//! Durable rooms outliving their node.
//!
//! * **Leases.** Every node with storage renews a lease in the store every
//!   [`RENEW_EVERY`] (valid for [`LEASE`]). A node that could not renew in time pauses its
//!   durable rooms (no ticks, writes refused) until it renews again, then checks which of
//!   them are still its own; so a node cut off from the others stops before anyone takes
//!   its rooms.
//! * **Take-over.** At each renewal a node looks at the room objects of nodes whose lease
//!   ran out (and of rooms handed over, held by nobody): a room goes to the live node of its
//!   module that rendezvous hashing picks ([`super::placement`]), which claims it with a
//!   compare-and-set on the room object (its fencing token: +1 epoch), rebuilds it from the
//!   snapshot, puts its members back in the room's group on their gates (so broadcasts and
//!   routing follow), pushes them `room_moved`, and tells the module `restored`. A node that
//!   restarts takes its own rooms back the same way before its first renewal.
//! * **Hand-over** ([`super::handover`]). A node draining stores each room at a tick boundary
//!   as held by nobody, drops it, and waits until others took them; a node stopping
//!   gracefully stores its durable rooms one last time. A room whose node of choice (by
//!   rendezvous hashing) has been back for [`SETTLED`] is handed back to it the same way, so
//!   every gate's hashing finds it again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use firefly_abi::rooms::{RoomEvent, RoomEventKind};
use firefly_abi::session_status;
use tokio::sync::Notify;

use super::durable::Durable;
use super::store::{RoomStore, Row, now_ms};
use super::{Event, Room, RoomKey, Rooms, group};
use crate::protocol::session::{ROOM_MOVED_TOPIC, RoomMoved};
use crate::sessions::SessionOp;

/// How often a node renews its lease and looks for rooms to take over.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How long a lease is valid after its renewal was sent: several renewals, so a store slow
/// to answer for a moment (a loaded machine) does not make a node look gone.
pub const LEASE: Duration = Duration::from_millis(4000);
/// A node pauses its rooms this long before its lease runs out (clock skew between machines
/// must stay below it).
const MARGIN: Duration = Duration::from_millis(1000);
/// Longest wait for one renewal (the next is tried then).
const RENEW_WAIT: Duration = Duration::from_millis(1500);

/// How long a node must have been alive again before the rooms that belong on it are
/// handed back to it (a node that flaps does not make its rooms move back and forth).
const SETTLED: Duration = Duration::from_secs(10);

/// The nodes that host each module (where its rooms may live).
pub type Hosts = HashMap<String, Vec<String>>;

impl Rooms {
    /// Starts storing durable rooms and taking over those of nodes that are gone, for a node
    /// whose modules are hosted as `hosts` says. Nothing without storage.
    pub fn start_durability(self: &Arc<Self>, hosts: Hosts) {
        let Some(durability) = &self.durability else {
            return;
        };
        let queued = durability
            .queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut queued) = queued {
            let rooms = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(id) = queued.recv().await {
                    let Some(rooms) = rooms.upgrade() else {
                        return;
                    };
                    tokio::spawn(async move {
                        // A room closed or taken over meanwhile has nothing to store; a store
                        // that cannot be reached is reported by the lease's renewal.
                        if let Err((_, why)) = rooms.save(&id).await {
                            tracing::debug!(module = %id.0, room = %id.1, "{}", String::from_utf8_lossy(&why));
                        }
                    });
                }
            });
        }
        tokio::spawn(renew_loop(Arc::downgrade(self)));
        tokio::spawn(sweep_loop(Arc::downgrade(self), hosts));
    }

    /// Renews this node's lease (saying whether it drains); on a lapse, first checks that its
    /// rooms are still its own.
    pub(super) async fn renew(&self) {
        let Some(durability) = &self.durability else {
            return;
        };
        let store = &durability.store;
        let sent = Instant::now();
        let version = *lock(&durability.lease_version);
        let until = now_ms() + millis(LEASE);
        let renewal = store.renew(version, until, durability.draining());
        let why = match tokio::time::timeout(RENEW_WAIT, renewal).await {
            Ok(Ok(v)) => {
                *lock(&durability.lease_version) = Some(v);
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("the store did not answer within {RENEW_WAIT:?}")),
        };
        if let Some(why) = why {
            // Before the first renewal the store may just be starting with the cluster.
            if lock(&durability.lease).is_none() {
                tracing::debug!(node = %self.node, "room lease not renewed yet: {why}");
            } else {
                tracing::warn!(node = %self.node, "room lease not renewed: {why}");
            }
            return;
        }
        if self.fenced()
            && let Err(e) = self.check_own(store).await
        {
            tracing::warn!(node = %self.node, "rooms stay paused: cannot check them after a lapse: {e}");
            return;
        }
        *lock(&durability.lease) = Some(sent + LEASE - MARGIN);
    }

    /// Drops the durable rooms whose object another node holds now (after a lapse). `Err`
    /// when one cannot be checked: the rooms stay paused until the next renewal checks again.
    async fn check_own(&self, store: &RoomStore) -> Result<(), crate::data::DataError> {
        let durable: Vec<(RoomKey, u64)> = self
            .lock()
            .iter()
            .filter_map(|(id, room)| room.durable.as_ref().map(|d| (id.clone(), d.epoch)))
            .collect();
        for (id, epoch) in durable {
            match store.room(&id.0, &id.1).await? {
                Some((_, row)) if row.node == store.node() && row.epoch() == epoch => {}
                _ => self.lost(&id),
            }
        }
        Ok(())
    }

    /// Takes over the rooms of nodes whose lease ran out, and those handed over, that
    /// `hosts` places here.
    async fn sweep(
        &self,
        store: &RoomStore,
        hosts: &Hosts,
        seen: &mut HashMap<String, Instant>,
    ) -> Result<(), crate::data::DataError> {
        let now = now_ms();
        let leases = store.leases().await?;
        // Nodes that may take rooms: alive, and not draining.
        let mut alive: HashSet<&str> = leases
            .iter()
            .filter(|lease| lease.until_ms > now && !lease.draining)
            .map(|lease| lease.node.as_str())
            .collect();
        alive.insert(store.node());
        seen.retain(|node, _| alive.contains(node.as_str()));
        for node in &alive {
            seen.entry((*node).to_owned()).or_insert_with(Instant::now);
        }
        let mut orphans: Vec<&str> = leases
            .iter()
            .filter(|lease| lease.until_ms <= now && lease.node != store.node())
            .map(|lease| lease.node.as_str())
            .collect();
        orphans.push("");
        for holder in orphans {
            for (version, row) in store.rooms_of(holder).await? {
                let Some(nodes) = hosts.get(&row.module) else {
                    continue;
                };
                let live = nodes
                    .iter()
                    .map(String::as_str)
                    .filter(|n| alive.contains(n));
                if super::placement::pick(row.key(), live) == Some(store.node()) {
                    self.take(store, version, row).await;
                }
            }
        }
        // Rooms here whose node of choice is back, and has been for a while: handed back,
        // so every gate's rendezvous hashing finds them again.
        let settled: HashSet<&str> = seen
            .iter()
            .filter(|(node, since)| **node == *store.node() || since.elapsed() >= SETTLED)
            .map(|(node, _)| node.as_str())
            .collect();
        let here: Vec<RoomKey> = self
            .lock()
            .iter()
            .filter(|(_, room)| room.durable.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in here {
            let Some(nodes) = hosts.get(&*id.0) else {
                continue;
            };
            let live = nodes
                .iter()
                .map(String::as_str)
                .filter(|n| settled.contains(n));
            if let Some(choice) = super::placement::pick(&id.1, live)
                && choice != store.node()
            {
                tracing::info!(module = %id.0, room = %id.1, to = choice, "room handed back to its node");
                self.hand_over(&id).await;
            }
        }
        Ok(())
    }

    /// Claims room object `row` (at `version`) for this node and brings the room back here.
    async fn take(&self, store: &RoomStore, version: u64, mut row: Row) {
        let snapshot = match row.snapshot() {
            Ok(s) => s,
            Err(e) => return tracing::error!("unreadable room snapshot: {e}"),
        };
        let id: RoomKey = (Arc::from(row.module.as_str()), snapshot.key.clone());
        if self.lock().contains_key(&id) || self.durability.as_ref().is_some_and(|d| d.draining()) {
            return;
        }
        let held = std::mem::replace(&mut row.node, store.node().to_owned());
        let from = match held.is_empty() {
            true => std::mem::take(&mut row.from),
            false => held,
        };
        row.epoch += 1;
        let stored = match store.save(&row, Some(version)).await {
            Ok(v) => v,
            // Another node claimed it first.
            Err(crate::data::DataError::Conflict(_) | crate::data::DataError::NotFound(_)) => {
                return;
            }
            // No answer: the claim may have landed all the same; then the room is ours.
            Err(_) => match store.room(&row.module, &snapshot.key).await {
                Ok(Some((v, now))) if now.node == row.node && now.epoch == row.epoch => v,
                _ => return,
            },
        };
        let age_ms = u64::try_from(now_ms().saturating_sub(row.at_ms)).unwrap_or(0);
        let room = Room {
            members: snapshot.members.clone(),
            max_members: snapshot.max_members,
            state: snapshot.state,
            tick_ms: snapshot.tick_ms,
            ticks: snapshot.ticks,
            last_tick: Instant::now(),
            timer: None,
            ticking: false,
            version: snapshot.version,
            idle: Arc::new(Notify::new()),
            durable: Some(Durable::restored(
                snapshot.spec,
                row.epoch(),
                stored,
                snapshot.ticks,
            )),
            leaving: false,
        };
        self.lock().insert(id.clone(), room);
        if let Err((_, why)) = self.start_tick(&id, snapshot.tick_ms).await {
            tracing::error!(room = %id.1, "restored room cannot tick: {}", String::from_utf8_lossy(&why));
        }
        let members = self.rejoin(&id, snapshot.members).await;
        tracing::info!(
            module = %id.0, room = %id.1, from = %from, members = members.len(), age_ms,
            "room taken over from its snapshot"
        );
        let moved = RoomMoved {
            room: id.1.clone(),
            from: from.clone(),
            node: store.node().to_owned(),
            age_ms,
            code: "room_moved".to_owned(),
            message: format!(
                "room `{}` moved from node `{from}` to `{}`; it goes on from a snapshot {age_ms} ms old",
                id.1,
                store.node()
            ),
        };
        let payload = Bytes::from(rmp_serde::to_vec_named(&moved).unwrap_or_default());
        self.sessions.push_many(&members, ROOM_MOVED_TOPIC, payload);
        let event = RoomEvent {
            key: id.1.clone(),
            session: 0,
            kind: RoomEventKind::Restored,
            members,
            age_ms,
            from,
        };
        let _ = self.events.send(Event {
            module: id.0,
            event,
        });
    }

    /// Puts room `id`'s members back in its group on their gates; the members still there
    /// (one whose session ended meanwhile leaves the room, reported as disconnected).
    async fn rejoin(&self, id: &RoomKey, members: Vec<u64>) -> Vec<u64> {
        let mut kept = Vec::with_capacity(members.len());
        for session in members {
            let op = SessionOp::Join {
                session,
                group: group(&id.1),
                durable: true,
            };
            if self.sessions.on_session(session, op).await.status == session_status::OK {
                kept.push(session);
                continue;
            }
            let left = self.lock().get_mut(id).map(|room| {
                room.members.retain(|m| *m != session);
                room.members.clone()
            });
            if let Some(members) = left {
                self.report(&id.0, &id.1, session, RoomEventKind::Disconnected, members);
            }
        }
        kept
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Renews the node's lease every [`RENEW_EVERY`] while the node lives (a task of its own, so
/// nothing a sweep waits for delays it); first takes back the rooms its earlier process held.
async fn renew_loop(rooms: Weak<Rooms>) {
    let mut restored = false;
    loop {
        let Some(node) = rooms.upgrade() else {
            return;
        };
        let Some(store) = node.durability.as_ref().map(|d| d.store.clone()) else {
            return;
        };
        if !restored {
            match store.rooms_of(store.node()).await {
                Ok(own) => {
                    for (version, row) in own {
                        node.take(&store, version, row).await;
                    }
                    restored = true;
                }
                Err(e) => tracing::debug!("rooms of an earlier process not read yet: {e}"),
            }
        }
        node.renew().await;
        drop(node);
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

/// Takes rooms over (and hands them back) every [`RENEW_EVERY`] while the node's lease is
/// valid: a node that may be cut off takes nothing. Ends when the node drains.
async fn sweep_loop(rooms: Weak<Rooms>, hosts: Hosts) {
    // Since when each node is seen alive (this node's view).
    let mut seen = HashMap::new();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Some(node) = rooms.upgrade() else {
            return;
        };
        let Some(durability) = &node.durability else {
            return;
        };
        if durability.draining() {
            return;
        }
        if node.fenced() {
            continue;
        }
        let store = durability.store.clone();
        if let Err(e) = node.sweep(&store, &hosts, &mut seen).await {
            tracing::debug!("rooms of gone nodes not read: {e}");
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
