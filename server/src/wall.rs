//! The wall clock: time since the Unix epoch, the one reading every part of the host uses
//! where a time must mean the same on another machine or after a restart (durable timers,
//! signed announcements and requests, shared session records, a module's `time_now_micros`).
//! Durations and deadlines inside one process use `Instant` instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Microseconds since the Unix epoch (0 before it, saturating far after).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
