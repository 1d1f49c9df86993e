//! The sessions a node's gate holds: ids, a bounded outbound queue per connection, the groups
//! and users bound to them, and sessions waiting to be resumed.
//!
//! Modules push to sessions through this registry; the connection task that owns a session
//! drains its queue. The queue is bounded so a client that stops reading cannot make the node
//! buffer without limit: a push to a full queue is refused (`Backpressure`) and the module is
//! told so.
//!
//! A session outlives its connection when its listener has `resume` set: the connection's end
//! *parks* it (pushes go to a bounded buffer, overflow is counted), a new connection presenting
//! the session's resume token within the grace window takes it back ([`resume`]), and only when
//! the window expires does the session end and its disconnect event fire.
//!
//! Operations that reach sessions on other gates (broadcasts, groups, users, kicks) are in
//! [`ops`].

mod hosts;
pub mod ops;
pub mod resume;
pub mod shared;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::SessionSettings;
pub use hosts::{ORPHAN_WAIT, ROOM_GROUP_PREFIX};
pub use ops::{OpReply, SessionOp};
pub use shared::{Handover, SessionRecord};

/// How many undelivered pushes one session may have queued.
pub const OUTBOUND_QUEUE: usize = 1024;

/// Something to deliver to a session's client.
#[derive(Debug)]
pub enum Outbound {
    /// A push frame with this topic id.
    Push {
        /// Topic id (the frame's command id).
        topic: u32,
        /// Payload.
        payload: Bytes,
    },
    /// Close the connection and end the session.
    Kick(KickReason),
}

/// Why a session was kicked (told to the client in a `kicked` error frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// A module kicked it.
    Kicked,
    /// Its user logged in on another session.
    LoggedInElsewhere,
}

impl KickReason {
    /// The message of the `kicked` error frame.
    pub fn message(self) -> &'static str {
        match self {
            KickReason::Kicked => "the server closed this session",
            KickReason::LoggedInElsewhere => "the same user logged in on another session",
        }
    }
}

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No session with that id is connected here.
    #[error("no such session")]
    NoSuchSession,
    /// The session's outbound queue is full.
    #[error("session outbound queue is full")]
    Backpressure,
}

/// Why a session operation sent to another gate got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// No node of the cluster has that index.
    #[error("no node has index {0}")]
    NoSuchGate(u16),
    /// The gate could not be reached, or did not answer in time.
    #[error("gate {gate} is unavailable: {reason}")]
    Unavailable {
        /// The gate's index.
        gate: u16,
        /// Why, in the transport's words.
        reason: String,
    },
    /// The gate answered something that is not an operation's answer.
    #[error("unexpected answer from gate {gate}: {got}")]
    Unexpected {
        /// The gate's index.
        gate: u16,
        /// What came.
        got: String,
    },
}

/// A future the cluster resolves for a session operation sent to another gate.
pub type OpFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<OpReply, OpError>> + Send + 'a>>;

/// A future the cluster resolves when a gate takes over a session held elsewhere.
pub type TakeFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Handover, resume::ResumeError>> + Send + 'a>,
>;

/// A future the cluster resolves with the gate its shared state says holds a session.
pub type LocateFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<u16>> + Send + 'a>>;

/// Delivers pushes and session operations to sessions held by other nodes.
pub trait RemoteSessions: Send + Sync {
    /// Queues a push for a session held by gate `gate`.
    fn push(&self, gate: u16, session: u64, topic: u32, payload: Bytes) -> Result<(), PushError>;
    /// Sends `op` to gate `gate` (one-way).
    fn send_op(&self, gate: u16, op: SessionOp);
    /// Sends `op` to every other gate of the cluster (one-way).
    fn broadcast_op(&self, op: SessionOp);
    /// Sends `op` to gate `gate` and waits for its answer.
    fn request_op(&self, gate: u16, op: SessionOp) -> OpFuture<'_>;
    /// The gate a session went to when it left the gate that issued it, if known here.
    fn moved_to(&self, _session: u64) -> Option<u16> {
        None
    }
    /// The gate the cluster's shared record of `session` names, when the gate this node
    /// knew for it cannot be reached (a session resumed from its record after its gate died
    /// told no one but the record). `None`: no record, or no shared state.
    fn locate(&self, _session: u64) -> LocateFuture<'_> {
        Box::pin(async { None })
    }
    /// Session `session` is now held by gate `to` (this node's own index: here).
    fn handed_over(&self, _session: u64, _to: u16) {}
    /// Writes (`Some`) or removes the cluster's shared record of a session held here.
    fn save(&self, _session: u64, _record: Option<SessionRecord>) {}
    /// Takes session `session` over for gate `to` (this node), from gate `gate` that holds it
    /// or, that gate being gone, from the shared record, if `secret` is its token's.
    fn take(
        &self,
        _gate: u16,
        _session: u64,
        _secret: [u8; resume::SECRET_LEN],
        _to: u16,
    ) -> TakeFuture<'_> {
        Box::pin(async { Err(resume::ResumeError::Invalid) })
    }
}

/// Where a session is, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Held here (or issued here and gone).
    Here,
    /// Held by this gate.
    Gate(u16),
}

/// A session attached to a connection: its id, the attachment's generation, and the queue
/// the connection drains.
#[derive(Debug)]
pub struct Attached {
    /// Session id.
    pub id: u64,
    /// Which attachment this is: a connection that lost its session to a resume, or a timer
    /// of an earlier parking, sees a different generation and leaves the session alone.
    pub generation: u64,
    /// Pushes and kicks for the connection.
    pub rx: mpsc::Receiver<Outbound>,
}

/// Pushes kept for a parked session.
#[derive(Debug, Default)]
struct Parked {
    buf: VecDeque<(u32, Bytes)>,
    cap: usize,
    dropped: u64,
}

impl Parked {
    fn keep(&mut self, topic: u32, payload: Bytes) -> Result<(), PushError> {
        if self.buf.len() < self.cap {
            self.buf.push_back((topic, payload));
            Ok(())
        } else {
            self.dropped += 1;
            Err(PushError::Backpressure)
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// The attached connection's queue; `None` while parked.
    tx: Option<mpsc::Sender<Outbound>>,
    generation: u64,
    /// Set while parked (pushes land here; `Mutex` so a push needs only the read lock).
    parked: Option<Mutex<Parked>>,
    user: Option<String>,
    groups: Vec<String>,
    /// The secret part of the current resume token, if one was issued.
    token: Option<[u8; resume::SECRET_LEN]>,
    settings: SessionSettings,
}

impl Entry {
    fn deliver(&self, msg: Outbound) -> Result<(), PushError> {
        if let Some(tx) = &self.tx {
            return tx.try_send(msg).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PushError::Backpressure,
                mpsc::error::TrySendError::Closed(_) => PushError::NoSuchSession,
            });
        }
        match (&self.parked, msg) {
            (Some(parked), Outbound::Push { topic, payload }) => parked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keep(topic, payload),
            _ => Err(PushError::NoSuchSession),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Entry>,
    groups: HashMap<String, HashSet<u64>>,
    users: HashMap<String, HashSet<u64>>,
    /// The node holding each room whose group has members here (see `hosts.rs`).
    hosts: HashMap<String, hosts::Host>,
}

impl Inner {
    /// Removes a session and every group and user binding it had.
    fn forget(&mut self, id: u64) -> bool {
        let Some(entry) = self.map.remove(&id) else {
            return false;
        };
        for group in entry.groups {
            self.group_lost_member(&group, id);
        }
        if let Some(user) = entry.user {
            self.unbind(&user, id);
        }
        true
    }

    /// Takes `id` out of `group`'s members; an empty group goes (with its room host).
    fn group_lost_member(&mut self, group: &str, id: u64) {
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                self.groups.remove(group);
                self.hosts.remove(group);
            }
        }
    }

    fn unbind(&mut self, user: &str, id: u64) {
        if let Some(ids) = self.users.get_mut(user) {
            ids.remove(&id);
            if ids.is_empty() {
                self.users.remove(user);
            }
        }
    }
}

/// Called with a session's id when it ends for good (the node fires the disconnect event).
type OnEnd = Box<dyn Fn(u64) + Send + Sync>;

/// The registry of connected (and parked) sessions.
#[derive(Default)]
pub struct Sessions {
    /// This node's index: the high 16 bits of every session id issued here.
    node_index: u16,
    next: AtomicU64,
    generation: AtomicU64,
    // Written on connect/disconnect, joins and logins; read on every push.
    inner: RwLock<Inner>,
    /// Where pushes to other nodes' sessions go (`None`: a standalone node). Fixed at
    /// construction, like `on_end`: no session exists before both are in place.
    remote: Option<Arc<dyn RemoteSessions>>,
    on_end: Option<OnEnd>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("node_index", &self.node_index)
            .field("len", &self.len())
            .finish()
    }
}

impl Sessions {
    /// An empty registry for a standalone node (index 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry for node `node_index` of a cluster.
    pub fn for_node(node_index: u16) -> Self {
        Self {
            node_index,
            ..Self::default()
        }
    }

    /// This node's index (the high 16 bits of the ids it issues).
    pub fn node_index(&self) -> u16 {
        self.node_index
    }

    /// Where session `id` is: held here, else on the gate it moved to, else on the gate that
    /// issued it.
    pub(crate) fn place(&self, id: u64) -> Place {
        if self.read().map.contains_key(&id) {
            return Place::Here;
        }
        let gate = self
            .remote()
            .and_then(|r| r.moved_to(id))
            .unwrap_or((id >> 48) as u16);
        if gate == self.node_index {
            Place::Here
        } else {
            Place::Gate(gate)
        }
    }

    /// This registry, routing pushes to sessions of other nodes through `remote`.
    pub fn with_remote(mut self, remote: Arc<dyn RemoteSessions>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// This registry, running `hook` with the id of every session that ends for good (after
    /// its grace window, for a resumable one). The hook runs on the thread that ended the
    /// session: it must not block.
    pub fn on_end(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_end = Some(Box::new(hook));
        self
    }

    fn remote(&self) -> Option<&Arc<dyn RemoteSessions>> {
        self.remote.as_ref()
    }

    fn ended(&self, id: u64) {
        if let Some(remote) = self.remote() {
            remote.save(id, None);
        }
        if let Some(hook) = &self.on_end {
            hook(id);
        }
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a new session with default settings; returns its id and its queue.
    pub fn register(&self) -> (u64, mpsc::Receiver<Outbound>) {
        let a = self.attach_new(SessionSettings::default());
        (a.id, a.rx)
    }

    /// Registers a new session of a listener with `settings`, attached to a connection.
    pub fn attach_new(&self, settings: SessionSettings) -> Attached {
        let counter = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = (u64::from(self.node_index) << 48) | (counter & ((1 << 48) - 1));
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let generation = self.next_generation();
        self.write().map.insert(
            id,
            Entry {
                tx: Some(tx),
                generation,
                parked: None,
                user: None,
                groups: Vec::new(),
                token: None,
                settings,
            },
        );
        Attached { id, generation, rx }
    }

    /// Ends a session now, wherever it is in its life; fires the end hook once.
    pub fn remove(&self, id: u64) {
        if self.write().forget(id) {
            self.ended(id);
        }
    }

    /// The connection of `attached` is gone. A resumable session is parked for its grace
    /// window (a timer ends it then); any other ends now. `end` ends it regardless (a kick,
    /// the node stopping). Nothing happens when the connection had already lost the session
    /// to a resume.
    pub fn detach(self: &Arc<Self>, attached: Attached, end: bool) {
        let Attached {
            id,
            generation,
            mut rx,
        } = attached;
        let mut inner = self.write();
        let Some(entry) = inner.map.get_mut(&id) else {
            return;
        };
        if entry.generation != generation {
            return;
        }
        let resume = entry.settings.resume.filter(|_| !end);
        let Some(resume) = resume else {
            inner.forget(id);
            drop(inner);
            self.ended(id);
            return;
        };
        // Dropping the only sender first: nothing new can reach `rx` while it is drained.
        entry.tx = None;
        let mut parked = Parked {
            buf: VecDeque::new(),
            cap: resume.buffer,
            dropped: 0,
        };
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Outbound::Push { topic, payload } => {
                    let _ = parked.keep(topic, payload);
                }
                Outbound::Kick(_) => {
                    inner.forget(id);
                    drop(inner);
                    self.ended(id);
                    return;
                }
            }
        }
        entry.parked = Some(Mutex::new(parked));
        let generation = self.next_generation();
        entry.generation = generation;
        drop(inner);
        tracing::debug!(session = id, grace = ?resume.grace, "session parked");
        let sessions = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(resume.grace).await;
            sessions.expire(id, generation);
        });
    }

    /// Ends a parked session whose grace window ran out, unless it was resumed meanwhile.
    fn expire(&self, id: u64, generation: u64) {
        let mut inner = self.write();
        let still_parked = inner
            .map
            .get(&id)
            .is_some_and(|e| e.generation == generation && e.tx.is_none());
        if still_parked {
            let dropped = inner
                .map
                .get(&id)
                .and_then(|e| e.parked.as_ref())
                .map(|p| p.lock().unwrap_or_else(|p| p.into_inner()).dropped)
                .unwrap_or(0);
            inner.forget(id);
            drop(inner);
            tracing::debug!(session = id, dropped, "parked session expired");
            self.ended(id);
        }
    }

    /// Number of sessions (connected or parked).
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// True when no session is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a push for a session, here or on the gate that holds it.
    pub fn push(&self, id: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        match (self.place(id), self.remote()) {
            (Place::Gate(gate), Some(remote)) => remote.push(gate, id, topic, payload),
            _ => self.push_local(id, topic, payload),
        }
    }

    /// Delivers a push a peer sent for a session of this gate; one that moved to another
    /// gate (resumed there) follows it.
    pub fn push_from_peer(&self, id: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        match self.push_local(id, topic, payload.clone()) {
            Err(PushError::NoSuchSession) => match self.remote().and_then(|r| r.moved_to(id)) {
                Some(gate) if gate != self.node_index => {
                    tracing::debug!(session = id, gate, topic, "push follows a moved session");
                    self.remote().map_or(Err(PushError::NoSuchSession), |r| {
                        r.push(gate, id, topic, payload)
                    })
                }
                _ => Err(PushError::NoSuchSession),
            },
            other => other,
        }
    }

    /// Queues a push for a session held by this node.
    pub fn push_local(&self, id: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        let inner = self.read();
        let entry = inner.map.get(&id).ok_or(PushError::NoSuchSession)?;
        entry.deliver(Outbound::Push { topic, payload })
    }

    /// Ends a session held by this node: its connection gets a `kicked` error frame and
    /// closes; a parked session ends at once.
    pub fn kick_local(&self, id: u64, reason: KickReason) -> Result<(), PushError> {
        let mut inner = self.write();
        let entry = inner.map.get(&id).ok_or(PushError::NoSuchSession)?;
        // The connection writes the `kicked` frame and ends the session itself. With its
        // queue full (or no connection) the session ends here: the connection then finds its
        // queue closed and closes.
        if let Some(tx) = &entry.tx
            && tx.try_send(Outbound::Kick(reason)).is_ok()
        {
            return Ok(());
        }
        inner.forget(id);
        drop(inner);
        self.ended(id);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while holding it; the maps
        // themselves are still consistent (no operation on them can panic half-way).
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
