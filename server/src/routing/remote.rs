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

    /// The node that serves `session`'s next request.
    pub fn pick(&self, session: u64) -> Option<&Arc<Peer>> {
        let n = self.peers.len();
        if n == 0 {
            return None;
        }
        let i = match self.policy {
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
        self.peers.get(i)
    }
}

/// SplitMix64's finaliser: spreads consecutive session ids over the nodes.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
