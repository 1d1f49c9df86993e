//! A gate's routes: command ranges served by other nodes, and how one node is picked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cluster::Peer;
use crate::config::Policy;
use crate::rooms::placement::{self, mix};

/// Commands `first..=last` go to one of `peers`.
#[derive(Debug)]
pub struct RemoteRoute {
    /// First command id.
    pub first: u32,
    /// Last command id (inclusive).
    pub last: u32,
    peers: Vec<Arc<Peer>>,
    policy: Policy,
    next: AtomicUsize,
}

impl RemoteRoute {
    /// A route over `peers` (never empty: the topology checks it).
    pub fn new(first: u32, last: u32, peers: Vec<Arc<Peer>>, policy: Policy) -> Self {
        Self {
            first,
            last,
            peers,
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// Whether `command` is in the range.
    pub fn covers(&self, command: u32) -> bool {
        (self.first..=self.last).contains(&command)
    }

    /// The candidate nodes.
    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
    }

    /// The node that serves `session`'s next request, whose payload is `payload`; for a
    /// request routed by room, `host_of` names the node its members here know holds it.
    /// `Err` explains why a request routed by room names no room.
    pub fn pick(
        &self,
        session: u64,
        payload: &[u8],
        host_of: impl FnOnce(&str) -> Option<Arc<str>>,
    ) -> Result<&Arc<Peer>, PickError> {
        let n = self.peers.len();
        if n == 0 {
            return Err(PickError::NoNodes);
        }
        let i = match self.policy {
            Policy::Room => {
                let room = room_of(payload)?;
                // Where its members here know it is (it may have moved there when its node
                // died or drained), else rendezvous hashing over the nodes not known to be
                // down (`placement`): every gate agrees without talking, and a node added or
                // removed moves only its share.
                let held = host_of(&room)
                    .and_then(|host| self.peers.iter().position(|p| *p.name == *host));
                held.unwrap_or_else(|| self.by_room(&room))
            }
            // The same session keeps its node while the set of nodes is unchanged.
            Policy::Sticky => (mix(session) % n as u64) as usize,
            Policy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
            Policy::LeastLoaded => {
                // Ties go round robin, so idle nodes share the load too.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|&i| self.peers[i].in_flight.load(Ordering::Relaxed))
                    .unwrap_or(0)
            }
        };
        // Over NATS a node that stopped announcing itself is known to be gone: a stateless
        // policy sends to another instead (a room or a sticky session stays where it is).
        let i = match self.policy {
            Policy::RoundRobin | Policy::LeastLoaded if self.peers[i].presumed_down() => (0..n)
                .map(|k| (i + k) % n)
                .find(|&j| !self.peers[j].presumed_down())
                .unwrap_or(i),
            _ => i,
        };
        self.peers.get(i).ok_or(PickError::NoNodes)
    }

    /// The index of the node room `room` lives on: the peer of highest weight among those up
    /// (all of them, when none is).
    fn by_room(&self, room: &str) -> usize {
        let up = |p: &Arc<Peer>| !p.presumed_down() && p.linked();
        let names = |all: bool| {
            self.peers
                .iter()
                .filter(move |p| all || up(p))
                .map(|p| &*p.name)
        };
        let any_up = self.peers.iter().any(up);
        placement::pick(room, names(!any_up))
            .and_then(|name| self.peers.iter().position(|p| &*p.name == name))
            .unwrap_or(0)
    }
}

/// Why no node was picked for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// The route names no node.
    #[error("the route has no nodes")]
    NoNodes,
    /// The command is routed by room, and its payload names none.
    #[error(
        "this command is routed by room: its payload must be a MessagePack map with a `room` \
         field (text); {0}"
    )]
    NoRoom(&'static str),
    /// The command is routed by room, and its payload is not a map with a text `room`.
    #[error(
        "this command is routed by room: its payload must be a MessagePack map with a `room` \
         field (text); it cannot be read as one: {0}"
    )]
    Unreadable(String),
}

/// The `room` field of a MessagePack map payload; the error says what is wrong with it.
fn room_of(payload: &[u8]) -> Result<String, PickError> {
    #[derive(serde::Deserialize)]
    struct Keyed {
        room: Option<String>,
    }
    match rmp_serde::from_slice::<Keyed>(payload) {
        Ok(Keyed { room: Some(room) }) if !room.is_empty() => Ok(room),
        Ok(Keyed { room: Some(_) }) => Err(PickError::NoRoom("its `room` is empty")),
        Ok(Keyed { room: None }) => Err(PickError::NoRoom("it has none")),
        Err(e) => Err(PickError::Unreadable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::{PickError, room_of};

    fn msgpack(value: &serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(value).unwrap_or_default()
    }

    #[test]
    fn a_room_routed_payload_is_told_what_is_wrong_with_its_room() {
        let room = |v: serde_json::Value| room_of(&msgpack(&v));
        assert_eq!(
            room(serde_json::json!({ "room": "r1" })),
            Ok("r1".to_owned())
        );
        let err = |v: serde_json::Value| room(v).err();
        assert_eq!(
            err(serde_json::json!({ "room": "" })),
            Some(PickError::NoRoom("its `room` is empty"))
        );
        assert_eq!(
            err(serde_json::json!({ "name": "x" })),
            Some(PickError::NoRoom("it has none"))
        );
        for wrong in [serde_json::json!({ "room": 3 }), serde_json::json!([1, 2])] {
            let why = err(wrong);
            assert!(matches!(why, Some(PickError::Unreadable(_))), "{why:?}");
        }
        // What the client reads names the rule.
        let told = PickError::NoRoom("it has none").to_string();
        assert!(told.starts_with("this command is routed by room"), "{told}");
    }
}
