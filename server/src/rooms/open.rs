//! Opening a room: what it may ask for, its entry, its first snapshot (a durable room) and
//! its tick timer.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use firefly_abi::rooms::{SnapshotSpec, room_status};
use tokio::sync::Notify;

use super::durable::Durable;
use super::{
    MAX_KEY, MAX_MEMBERS, MAX_ROOMS, MAX_STATE, Room, RoomAnswer, RoomKey, Rooms, TICK_TAG, answer,
    ok,
};
use crate::engine::{NewTimer, TimerHost as _};

/// What a new room asks for.
pub(super) struct Spec {
    pub tick_ms: u64,
    pub max_members: u32,
    pub snapshot: Option<SnapshotSpec>,
}

impl Rooms {
    pub(super) async fn create(
        &self,
        module: Arc<str>,
        key: String,
        spec: Spec,
        state: Vec<u8>,
    ) -> RoomAnswer {
        if let Err(refused) = self.check_new(&key, &spec, &state) {
            return refused;
        }
        let id = (module.clone(), key.clone());
        {
            let mut rooms = self.lock();
            if rooms.contains_key(&id) {
                return answer(room_status::EXISTS, format!("room `{key}` is already open"));
            }
            if rooms.keys().filter(|(m, _)| *m == module).count() >= MAX_ROOMS {
                return answer(
                    room_status::LIMIT,
                    format!("at most {MAX_ROOMS} open rooms per module and node"),
                );
            }
            rooms.insert(
                id.clone(),
                Room {
                    members: Vec::new(),
                    max_members: spec.max_members,
                    state,
                    tick_ms: spec.tick_ms,
                    ticks: 0,
                    last_tick: Instant::now(),
                    timer: None,
                    ticking: false,
                    version: 0,
                    idle: Arc::new(Notify::new()),
                    durable: spec.snapshot.map(|s| Durable::new(s, 0, None)),
                    leaving: false,
                },
            );
        }
        if spec.snapshot.is_some()
            && let Err(refused) = self.store_new(&id).await
        {
            self.lock().remove(&id);
            return refused;
        }
        if let Err(refused) = self.start_tick(&id, spec.tick_ms).await {
            self.lock().remove(&id);
            if let Some(durability) = &self.durability {
                let _ = durability.store.remove(&module, &key, None).await;
            }
            return refused;
        }
        ok(Vec::new())
    }

    /// Checks what a new room asks for.
    fn check_new(&self, key: &str, spec: &Spec, state: &[u8]) -> Result<(), RoomAnswer> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(answer(
                room_status::INVALID,
                format!("a room key is 1 to {MAX_KEY} bytes"),
            ));
        }
        if spec.max_members == 0 || spec.max_members > MAX_MEMBERS {
            return Err(answer(
                room_status::INVALID,
                format!("a room has 1 to {MAX_MEMBERS} members"),
            ));
        }
        if spec.tick_ms != 0 && !(10..=3_600_000).contains(&spec.tick_ms) {
            return Err(answer(
                room_status::INVALID,
                "a room ticks every 10 ms to 1 hour (or 0: never)",
            ));
        }
        if state.len() > MAX_STATE {
            return Err(answer(
                room_status::INVALID,
                format!("room state is at most {MAX_STATE} bytes"),
            ));
        }
        if spec.snapshot.is_some() {
            let Some(durability) = &self.durability else {
                return Err(answer(
                    room_status::INVALID,
                    "room snapshots need the cluster's store (`storage:` in topology.yaml)",
                ));
            };
            if durability.draining() {
                return Err(answer(
                    room_status::UNAVAILABLE,
                    format!("node `{}` is draining: it opens no new rooms", self.node),
                ));
            }
        }
        Ok(())
    }

    /// Starts room `id`'s tick timer, every `tick_ms` (0: none).
    pub(super) async fn start_tick(&self, id: &RoomKey, tick_ms: u64) -> Result<(), RoomAnswer> {
        if tick_ms == 0 {
            return Ok(());
        }
        let timer = NewTimer {
            module: id.0.clone(),
            tag: TICK_TAG.to_owned(),
            delay_ms: tick_ms,
            period_ms: tick_ms,
            durable: false,
            session: 0,
            payload: Bytes::from(id.1.clone().into_bytes()),
        };
        // Ticks are bounded by the room cap, not by the module's own timer limit.
        match self.timers.start(timer, u32::MAX).await {
            Ok(timer) => {
                if let Some(room) = self.lock().get_mut(id) {
                    room.timer = Some(timer);
                }
                Ok(())
            }
            Err(e) => Err(answer(
                room_status::UNAVAILABLE,
                format!("cannot start the room's tick: {e}"),
            )),
        }
    }
}
