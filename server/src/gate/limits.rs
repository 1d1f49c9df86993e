//! The listener's connection caps and the per-session request rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::config::{EdgeSettings, RateLimit};

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The listener holds `max_connections` already.
    Listener,
    /// The client's address holds `max_connections_per_ip` already.
    Ip,
}

/// The connections open on one listener, in total and per client address.
#[derive(Debug)]
pub(crate) struct Caps {
    max: u32,
    max_per_ip: u32,
    /// Both counts under one lock: an accept checks and bumps them together, and accepts on
    /// one listener are serial anyway (one accept loop), so the lock is never contended there;
    /// only the closes of other connections take it too.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// One admitted connection: counted until it is dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Caps {
    /// The caps of a listener with `edge` settings.
    pub fn new(edge: &EdgeSettings) -> Arc<Caps> {
        Arc::new(Caps {
            max: edge.max_connections,
            max_per_ip: edge.max_connections_per_ip,
            open: Mutex::new(Open::default()),
        })
    }

    /// Counts a connection from `ip`, or says which cap it is past.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        // An IPv4 client reaching a dual-stack socket is one address, however it is written.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max {
            return Err(Refusal::Listener);
        }
        let from_ip = open.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::Ip);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Admitted {
            caps: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Keep the map as large as the set of addresses connected now, not ever.
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A session's token bucket: `burst` tokens, refilled at `per_second`; each request takes
/// one. Refilled once per read rather than per request, so the hot loop only decrements.
#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Bucket {
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            refilled: Instant::now(),
        }
    }

    /// Adds the tokens earned between the last refill and `now`.
    pub fn refill(&mut self, now: Instant) {
        let earned =
            now.duration_since(self.refilled).as_secs_f64() * f64::from(self.limit.per_second);
        self.tokens = (self.tokens + earned).min(f64::from(self.limit.burst));
        self.refilled = now;
    }

    /// Takes a token for one request; false when there is none left.
    pub fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_listener_and_per_address() {
        let edge = EdgeSettings {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..EdgeSettings::default()
        };
        let caps = Caps::new(&edge);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refusal::Ip);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), Refusal::Listener);
        drop(a1);
        let _a3 = caps.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refusal::Listener);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = Bucket::new(RateLimit {
            per_second: 10,
            burst: 5,
        });
        let start = bucket.refilled;
        assert_eq!((0..8).filter(|_| bucket.take()).count(), 5);
        bucket.refill(start + std::time::Duration::from_millis(300));
        assert_eq!((0..8).filter(|_| bucket.take()).count(), 3);
        bucket.refill(start + std::time::Duration::from_secs(60));
        assert_eq!((0..8).filter(|_| bucket.take()).count(), 5);
    }
}
