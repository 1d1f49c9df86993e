//! The sessions a node's gate holds: ids, and a bounded outbound queue per connection.
//!
//! Modules push to sessions through this registry; the connection task that owns a session
//! drains its queue. The queue is bounded so a client that stops reading cannot make the node
//! buffer without limit: a push to a full queue is refused (`Backpressure`) and the module is
//! told so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

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
    /// Close the connection.
    Kick,
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

/// Delivers pushes to sessions held by other nodes.
pub trait RemoteSessions: Send + Sync {
    /// Queues a push for a session held elsewhere.
    fn push(&self, session: u64, topic: u32, payload: Bytes) -> Result<(), PushError>;
}

/// The registry of connected sessions.
#[derive(Default)]
pub struct Sessions {
    /// This node's index: the high 16 bits of every session id issued here.
    node_index: u16,
    next: AtomicU64,
    // Written on connect/disconnect only; read on every push.
    map: RwLock<HashMap<u64, mpsc::Sender<Outbound>>>,
    /// Where pushes to other nodes' sessions go (set once the cluster is up).
    remote: OnceLock<Arc<dyn RemoteSessions>>,
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

    /// Routes pushes to sessions of other nodes through `remote`.
    pub fn set_remote(&self, remote: Arc<dyn RemoteSessions>) {
        let _ = self.remote.set(remote);
    }

    /// Registers a new session; returns its id and the queue its connection must drain.
    pub fn register(&self) -> (u64, mpsc::Receiver<Outbound>) {
        let counter = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = (u64::from(self.node_index) << 48) | (counter & ((1 << 48) - 1));
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        self.write().insert(id, tx);
        (id, rx)
    }

    /// Forgets a session.
    pub fn remove(&self, id: u64) {
        self.write().remove(&id);
    }

    /// Number of connected sessions.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no session is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a push for a session, here or on the gate that holds it.
    pub fn push(&self, id: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        if (id >> 48) as u16 != self.node_index {
            return match self.remote.get() {
                Some(remote) => remote.push(id, topic, payload),
                None => Err(PushError::NoSuchSession),
            };
        }
        self.push_local(id, topic, payload)
    }

    /// Queues a push for a session held by this node.
    pub fn push_local(&self, id: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
        self.send(id, Outbound::Push { topic, payload })
    }

    /// Asks a session's connection to close.
    pub fn kick(&self, id: u64) -> Result<(), PushError> {
        self.send(id, Outbound::Kick)
    }

    fn send(&self, id: u64, msg: Outbound) -> Result<(), PushError> {
        let map = self.read();
        let tx = map.get(&id).ok_or(PushError::NoSuchSession)?;
        tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PushError::Backpressure,
            mpsc::error::TrySendError::Closed(_) => PushError::NoSuchSession,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, mpsc::Sender<Outbound>>> {
        // A poisoned lock only means another thread panicked while holding it; the map itself
        // is still consistent (every operation on it is a single insert/remove/get).
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, mpsc::Sender<Outbound>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_reaches_the_queue_and_is_bounded() {
        let sessions = Sessions::new();
        let (id, mut rx) = sessions.register();
        assert_eq!(sessions.len(), 1);
        sessions.push(id, 7, Bytes::from_static(b"x")).unwrap();
        match rx.try_recv().unwrap() {
            Outbound::Push { topic, payload } => {
                assert_eq!(topic, 7);
                assert_eq!(&payload[..], b"x");
            }
            Outbound::Kick => panic!("expected a push"),
        }
        for _ in 0..OUTBOUND_QUEUE {
            sessions.push(id, 1, Bytes::new()).unwrap();
        }
        assert_eq!(
            sessions.push(id, 1, Bytes::new()),
            Err(PushError::Backpressure)
        );
        assert_eq!(
            sessions.push(id + 1, 1, Bytes::new()),
            Err(PushError::NoSuchSession)
        );
        sessions.remove(id);
        assert!(sessions.is_empty());
    }
}
