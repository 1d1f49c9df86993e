//! The sessions a node's gate holds: ids, and a bounded outbound queue per connection.
//!
//! Modules push to sessions through this registry; the connection task that owns a session
//! drains its queue. The queue is bounded so a client that stops reading cannot make the node
//! buffer without limit: a push to a full queue is refused (`Backpressure`) and the module is
//! told so.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The registry of connected sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    next: AtomicU64,
    // Written on connect/disconnect only; read on every push.
    map: RwLock<HashMap<u64, mpsc::Sender<Outbound>>>,
}

impl Sessions {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new session; returns its id and the queue its connection must drain.
    pub fn register(&self) -> (u64, mpsc::Receiver<Outbound>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
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

    /// Queues a push for a session.
    pub fn push(&self, id: u64, topic: u32, payload: Bytes) -> Result<(), PushError> {
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
