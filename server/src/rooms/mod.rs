//! Rooms: keyed units of game state with members, held by the node they live on.
//!
//! The node keeps each room's members and state here, outside every module instance, so a hot
//! update or an instance recycle keeps both; a room's tick is a repeating host timer (tag
//! [`TICK_TAG`], the key as payload), so it too survives a hot update. Members are put in the
//! session group `room:<key>` (on whichever gate holds them), which is what a broadcast to the
//! room reaches; a member whose session ends is taken out ([`Rooms::session_ended`]).
//!
//! Membership changes (a join, a leave, a member whose session ended) are reported as
//! [`Event`]s, which the node turns into calls of the module's `#[room_event]` handler.
//!
//! # One writer at a time
//!
//! A room's state has one writer at a time, so no acknowledged write is ever lost:
//! - A tick is the writer for as long as it runs: it gets the state when it starts and what it
//!   returns is stored when it ends. Its instance is taken *before* the room is marked as
//!   ticking, so the tick never waits for something its waiters hold.
//! - A write from anyone else (`SetState`, `Update`, `Close`) made while the room ticks waits
//!   until the tick has ended (its result stored), then applies on top of it. The waiter holds
//!   no room, only its own instance; the tick it waits for already runs, so it ends (at worst
//!   at the module's time limit).
//! - A read-modify-write from a handler is `Get` (state and version) then `Update` with that
//!   version, which fails with `CONFLICT` when the state changed in between (a tick ended, a
//!   handler wrote); the SDK's `update_room` reads again and retries. No lock is held across
//!   guest code, so a handler that touches several rooms cannot deadlock.
//! - A tick's own writes to its room apply at once (it is the writer); its writes to *another*
//!   room whose tick is running fail with `BUSY` instead of waiting, as two ticks writing each
//!   other's rooms would wait for each other.
//! - Reads never wait: they see the last stored state. Joins and leaves do not wait either:
//!   they change the members, never the state.
//!
//! Every change of the state (a write, a tick that returned one) adds one to its version.
//!
//! Bounds: keys are 1 to 64 bytes; a module has at most [`MAX_ROOMS`] open rooms per node; a
//! room has at most 1000 members and 64 KiB of state; ticks are at least 10 ms apart.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use firefly_abi::rooms::{
    RoomEvent, RoomEventKind, RoomInfo, RoomList, RoomOp, RoomSummary, room_status,
};
use firefly_abi::session_status;

use crate::engine::{RoomAnswer, RoomHost, TimerHost};
use crate::sessions::{ROOM_GROUP_PREFIX, SessionOp, Sessions};
use crate::timers::Scheduler;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

mod durable;
mod failover;
mod handover;
mod open;
pub mod placement;
pub mod store;
mod ticks;
pub use ticks::TickStart;

use durable::Durable;

/// The timer tag of room ticks (modules cannot start timers whose tag begins with `__`).
pub const TICK_TAG: &str = "__room_tick";
/// Most open rooms of one module on one node.
pub const MAX_ROOMS: usize = 10_000;
/// Most members of a room.
pub const MAX_MEMBERS: u32 = 1000;
/// Largest room state.
pub const MAX_STATE: usize = 64 * 1024;
/// Longest key.
pub const MAX_KEY: usize = 64;

struct Room {
    members: Vec<u64>,
    max_members: u32,
    state: Vec<u8>,
    tick_ms: u64,
    ticks: u64,
    last_tick: Instant,
    timer: Option<u64>,
    /// A tick is running: the next firing is skipped rather than run beside it, so two ticks
    /// never see the same state (each would act on it, e.g. end a game twice), and writes from
    /// others wait for it to end (see "One writer at a time").
    ticking: bool,
    /// +1 at every change of `state`, for `Update`'s compare-and-set.
    version: u64,
    /// Woken when a tick ends or the room closes: what writers waiting for the tick wait on.
    idle: Arc<Notify>,
    /// A durable room: how it is stored (`None`: it is not, and dies with its node).
    durable: Option<Durable>,
    /// Being handed to another node: marked as ticking (so nothing else writes it) while no
    /// tick runs.
    leaving: bool,
}

impl Room {
    /// Whether `timer` is this room's tick timer (taken on trust in the moment between the
    /// room's opening and its timer's start; a room without a tick has none).
    fn ticks_by(&self, timer: u64) -> bool {
        match self.timer {
            Some(t) => t == timer,
            None => self.tick_ms > 0,
        }
    }
}

type RoomKey = (Arc<str>, String);

/// The node's rooms, locked.
type Locked<'a> = std::sync::MutexGuard<'a, HashMap<RoomKey, Room>>;

/// Whether a caller may change a room now.
enum Turn<'a> {
    /// Yes: here are the rooms, locked.
    Now(Locked<'a>),
    /// Once the running tick ends (this is woken then).
    Wait(Arc<Notify>),
    /// No (no such room, or a tick that would wait for another room's tick).
    Refused(RoomAnswer),
}

/// The node's rooms.
pub struct Rooms {
    /// The node's name (a room list names it).
    node: Arc<str>,
    rooms: Mutex<HashMap<RoomKey, Room>>,
    sessions: Arc<Sessions>,
    timers: Arc<Scheduler>,
    events: UnboundedSender<Event>,
    /// Durable rooms' snapshots and this node's lease (`None`: the node has no storage, and
    /// opens no durable room).
    durability: Option<durable::Durability>,
}

/// A membership change of one of `module`'s rooms, for its `#[room_event]` handler.
#[derive(Debug)]
pub struct Event {
    /// The module whose room it is.
    pub module: Arc<str>,
    /// What happened.
    pub event: RoomEvent,
}

fn answer(status: u32, text: impl Into<String>) -> RoomAnswer {
    (status, text.into().into_bytes())
}

fn ok(body: Vec<u8>) -> RoomAnswer {
    (room_status::OK, body)
}

/// The answer to a write to a durable room while its node cannot renew its lease.
fn paused(key: &str) -> RoomAnswer {
    answer(
        room_status::UNAVAILABLE,
        format!("room `{key}` is paused: its node cannot reach the cluster's store"),
    )
}

/// The session group of room `key`'s members.
pub fn group(key: &str) -> String {
    format!("{ROOM_GROUP_PREFIX}{key}")
}

impl Rooms {
    /// The rooms of node `node`, whose members are `sessions` and whose ticks are `timers`,
    /// with the receiver of their membership events. With `store`, modules may open durable
    /// rooms; [`Rooms::start_durability`] then starts storing and taking them over.
    pub fn new(
        node: Arc<str>,
        sessions: Arc<Sessions>,
        timers: Arc<Scheduler>,
        store: Option<store::RoomStore>,
    ) -> (Self, UnboundedReceiver<Event>) {
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let rooms = Self {
            node,
            rooms: Mutex::default(),
            sessions,
            timers,
            events,
            durability: store.map(durable::Durability::new),
        };
        (rooms, receiver)
    }

    /// Reports that `session` joined, left or was taken out of `key` (`members` is after it).
    fn report(
        &self,
        module: &Arc<str>,
        key: &str,
        session: u64,
        kind: RoomEventKind,
        members: Vec<u64>,
    ) {
        let event = RoomEvent {
            key: key.to_owned(),
            session,
            kind,
            members,
            age_ms: 0,
            from: String::new(),
        };
        // Closed only when the node is going away.
        let _ = self.events.send(Event {
            module: module.clone(),
            event,
        });
    }

    fn members(&self, module: &Arc<str>, key: &str) -> Option<Vec<u64>> {
        self.lock()
            .get(&(module.clone(), key.to_owned()))
            .map(|room| room.members.clone())
    }

    fn lock(&self) -> Locked<'_> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `module`'s rooms here, by key, and this node's name.
    fn list(&self, module: &str) -> RoomList {
        let mut rooms: Vec<RoomSummary> = self
            .lock()
            .iter()
            .filter(|((m, _), _)| &**m == module)
            .map(|((_, key), room)| RoomSummary {
                key: key.clone(),
                members: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
                max_members: room.max_members,
                tick_ms: room.tick_ms,
                ticks: room.ticks,
            })
            .collect();
        rooms.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        RoomList {
            node: self.node.to_string(),
            rooms,
        }
    }

    /// Rooms open now (every module's).
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Waits until `tick` (the room whose tick calls, `None`: any other caller) may change
    /// room `id`, and hands over the rooms, locked, for the change (see "One writer at a
    /// time"). `NOT_FOUND` when the room is closed (also while waiting), `BUSY` for a tick
    /// that would have to wait for another room's tick.
    async fn writable(&self, id: &RoomKey, tick: Option<&str>) -> Result<Locked<'_>, RoomAnswer> {
        loop {
            let idle = match self.turn(id, tick) {
                Turn::Now(rooms) => return Ok(rooms),
                Turn::Refused(answer) => return Err(answer),
                Turn::Wait(idle) => idle,
            };
            let ended = idle.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            // Look again now that the tick's end cannot be missed.
            match self.turn(id, tick) {
                Turn::Now(rooms) => return Ok(rooms),
                Turn::Refused(answer) => return Err(answer),
                Turn::Wait(_) => {}
            }
            ended.await;
        }
    }

    fn turn(&self, id: &RoomKey, tick: Option<&str>) -> Turn<'_> {
        let rooms = self.lock();
        let Some(room) = rooms.get(id) else {
            return Turn::Refused(answer(room_status::NOT_FOUND, "no such room"));
        };
        if !room.ticking || tick == Some(id.1.as_str()) {
            return Turn::Now(rooms);
        }
        if tick.is_some() {
            return Turn::Refused(answer(
                room_status::BUSY,
                format!(
                    "room `{}` is running its tick: a tick cannot wait for another room's",
                    id.1
                ),
            ));
        }
        Turn::Wait(room.idle.clone())
    }

    async fn run(&self, module: &str, tick: Option<&str>, op: RoomOp) -> RoomAnswer {
        let module: Arc<str> = Arc::from(module);
        match op {
            RoomOp::Create {
                key,
                tick_ms,
                max_members,
                state,
                snapshot,
            } => {
                let spec = open::Spec {
                    tick_ms,
                    max_members,
                    snapshot,
                };
                self.create(module, key, spec, state).await
            }
            RoomOp::Snapshot { key } => match self.save(&(module, key)).await {
                Ok(()) => ok(Vec::new()),
                Err(answer) => answer,
            },
            RoomOp::Join { key, session } => self.join(module, key, session).await,
            RoomOp::Leave { key, session } => self.leave(module, key, session).await,
            RoomOp::SetState { key, state } => self.write(module, key, tick, None, state).await,
            RoomOp::Update {
                key,
                version,
                state,
            } => self.write(module, key, tick, Some(version), state).await,
            RoomOp::Get { key } => match self.lock().get(&(module, key.clone())) {
                Some(room) => {
                    let info = RoomInfo {
                        key,
                        members: room.members.clone(),
                        state: room.state.clone(),
                        tick_ms: room.tick_ms,
                        ticks: room.ticks,
                        version: room.version,
                    };
                    ok(rmp_serde::to_vec_named(&info).unwrap_or_default())
                }
                None => answer(room_status::NOT_FOUND, "no such room"),
            },
            RoomOp::Close { key } => self.close(&module, &key, tick).await,
            RoomOp::List => ok(rmp_serde::to_vec_named(&self.list(&module)).unwrap_or_default()),
            RoomOp::Node => ok(self.node.as_bytes().to_vec()),
        }
    }

    /// Replaces room `key`'s state once no tick runs (`SetState`), and only if it is still at
    /// `version` (`Update`).
    async fn write(
        &self,
        module: Arc<str>,
        key: String,
        tick: Option<&str>,
        version: Option<u64>,
        state: Vec<u8>,
    ) -> RoomAnswer {
        if state.len() > MAX_STATE {
            return answer(
                room_status::INVALID,
                format!("room state is at most {MAX_STATE} bytes"),
            );
        }
        let id = (module, key);
        let mut rooms = match self.writable(&id, tick).await {
            Ok(rooms) => rooms,
            Err(answer) => return answer,
        };
        let Some(room) = rooms.get_mut(&id) else {
            return answer(room_status::NOT_FOUND, "no such room");
        };
        if version.is_some_and(|v| v != room.version) {
            return answer(
                room_status::CONFLICT,
                format!("room `{}` changed since it was read", id.1),
            );
        }
        if room.durable.is_some() && self.fenced() {
            return paused(&id.1);
        }
        room.state = state;
        room.version += 1;
        self.save_if_due(room, &id);
        ok(Vec::new())
    }

    async fn join(&self, module: Arc<str>, key: String, session: u64) -> RoomAnswer {
        let durable = {
            let mut rooms = self.lock();
            let Some(room) = rooms.get_mut(&(module.clone(), key.clone())) else {
                return answer(room_status::NOT_FOUND, "no such room");
            };
            if room.members.contains(&session) {
                return ok(Vec::new());
            }
            if room.members.len() >= room.max_members as usize {
                return answer(
                    room_status::FULL,
                    format!("room `{key}` is full ({} members)", room.max_members),
                );
            }
            room.members.push(session);
            let id = (module.clone(), key.clone());
            self.save_soon(room, &id);
            room.durable.is_some()
        };
        let op = SessionOp::Join {
            session,
            group: group(&key),
            durable,
        };
        let reply = self.sessions.on_session(session, op).await;
        if reply.status != session_status::OK {
            if let Some(room) = self.lock().get_mut(&(module, key)) {
                room.members.retain(|m| *m != session);
            }
            return answer(
                room_status::UNAVAILABLE,
                format!(
                    "session {session} cannot join (session status {})",
                    reply.status
                ),
            );
        }
        if let Some(members) = self.members(&module, &key) {
            self.report(&module, &key, session, RoomEventKind::Joined, members);
        }
        ok(Vec::new())
    }

    async fn leave(&self, module: Arc<str>, key: String, session: u64) -> RoomAnswer {
        let was = {
            let mut rooms = self.lock();
            let Some(room) = rooms.get_mut(&(module.clone(), key.clone())) else {
                return answer(room_status::NOT_FOUND, "no such room");
            };
            let before = room.members.len();
            room.members.retain(|m| *m != session);
            let left = before != room.members.len();
            if left {
                let id = (module.clone(), key.clone());
                self.save_soon(room, &id);
            }
            left.then(|| room.members.clone())
        };
        if let Some(members) = &was {
            self.report(&module, &key, session, RoomEventKind::Left, members.clone());
            let op = SessionOp::Leave {
                session,
                group: group(&key),
            };
            let _ = self.sessions.on_session(session, op).await;
        }
        ok(rmp_serde::to_vec(&was.is_some()).unwrap_or_default())
    }

    /// Closes a room once no tick runs (unless it is the room's own tick that closes it).
    async fn close(&self, module: &Arc<str>, key: &str, tick: Option<&str>) -> RoomAnswer {
        let id = (module.clone(), key.to_owned());
        // A snapshot being stored ends first, so the delete below is of the last one.
        let saves = self.saves_of(&id);
        let _saving = match &saves {
            Some(saves) => Some(saves.lock().await),
            None => None,
        };
        let removed = match self.writable(&id, tick).await {
            Ok(mut rooms) => rooms.remove(&id),
            Err(answer) => return answer,
        };
        let Some(room) = removed else {
            return answer(room_status::NOT_FOUND, "no such room");
        };
        self.forget_stored(&id, room.durable.as_ref()).await;
        // Writers waiting for its tick find it closed.
        room.idle.notify_waiters();
        if let Some(timer) = room.timer {
            self.timers.cancel(module, timer);
        }
        for session in room.members {
            let op = SessionOp::Leave {
                session,
                group: group(key),
            };
            let _ = self.sessions.on_session(session, op).await;
        }
        ok(Vec::new())
    }

    /// Takes `session` out of every room (its session ended), reporting each.
    pub fn session_ended(&self, session: u64) {
        let mut left = Vec::new();
        for (id, room) in self.lock().iter_mut() {
            let before = room.members.len();
            room.members.retain(|m| *m != session);
            if before != room.members.len() {
                self.save_soon(room, id);
                left.push((id.0.clone(), id.1.clone(), room.members.clone()));
            }
        }
        for (module, key, members) in left {
            self.report(&module, &key, session, RoomEventKind::Disconnected, members);
        }
    }
}

impl RoomHost for Rooms {
    fn call<'a>(
        &'a self,
        module: &'a str,
        tick: Option<&'a str>,
        op: RoomOp,
    ) -> Pin<Box<dyn Future<Output = RoomAnswer> + Send + 'a>> {
        Box::pin(self.run(module, tick, op))
    }
}
