//! A gate's routes: command ranges served by other nodes, and how one node is picked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cluster::Peer;
use crate::config::Policy;

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

    /// The node that serves `session`'s next request, whose payload is `payload`. `Err`
    /// explains why a request routed by room names no room.
    pub fn pick(&self, session: u64, payload: &[u8]) -> Result<&Arc<Peer>, PickError> {
        let n = self.peers.len();
        if n == 0 {
            return Err(PickError::NoNodes);
        }
        let i = match self.policy {
            Policy::Room => {
                let room = room_of(payload)?;
                // Rendezvous hashing: the node with the highest weight for this room. Every gate
                // agrees without talking, and a node added or removed moves only its share.
                (0..n)
                    .max_by_key(|&i| mix(fnv(room.as_bytes()) ^ fnv(self.peers[i].name.as_bytes())))
                    .unwrap_or(0)
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

/// FNV-1a, 64-bit: a stable hash of a name (the same on every gate and every build).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: spreads consecutive session ids over the nodes.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
