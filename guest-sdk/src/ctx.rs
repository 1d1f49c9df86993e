//! The context a handler runs in: who called, time, randomness, pushes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::payload::IntoPayload;
use crate::raw;

/// What a handler knows about its call and what it can do beyond returning a reply.
#[derive(Debug)]
pub struct Ctx {
    pub(crate) session: u64,
    pub(crate) command: u32,
}

impl Ctx {
    /// The session (client connection) the call runs for; 0 when there is none.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The command id being handled (0 for session events).
    pub fn command(&self) -> u32 {
        self.command
    }

    /// Wall-clock time in microseconds since the Unix epoch, from the host.
    pub fn now_micros(&self) -> u64 {
        // SAFETY: a host import without pointer arguments.
        unsafe { raw::time_now_micros() }
    }

    /// Wall-clock time, from the host.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.now_micros())
    }

    /// Fills `buf` with cryptographically secure random bytes from the host.
    pub fn fill_random(&self, buf: &mut [u8]) {
        // SAFETY: the pointer and length describe `buf`, which the host writes within.
        unsafe { raw::random_fill(buf.as_mut_ptr() as u32, buf.len() as u32) }
    }

    /// A random `u64`.
    pub fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_random(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// A uniformly distributed value in `range` (unbiased). An empty range yields its start.
    pub fn random_range(&self, range: std::ops::Range<u64>) -> u64 {
        let span = range.end.saturating_sub(range.start);
        if span == 0 {
            return range.start;
        }
        // Reject the tail that would bias the modulo.
        let zone = u64::MAX - (u64::MAX - span + 1) % span;
        loop {
            let v = self.random_u64();
            if v <= zone {
                return range.start + v % span;
            }
        }
    }

    /// Pushes `msg` (MessagePack) to the calling session on `topic`. Pushes made during a
    /// request reach the client before the request's reply.
    pub fn push<T: Serialize>(&self, topic: u32, msg: &T) -> Result<()> {
        self.push_to(self.session, topic, msg)
    }

    /// Pushes raw bytes to the calling session.
    pub fn push_raw(&self, topic: u32, bytes: &[u8]) -> Result<()> {
        self.push_raw_to(self.session, topic, bytes)
    }

    /// Pushes `msg` (MessagePack) to any session.
    pub fn push_to<T: Serialize>(&self, session: u64, topic: u32, msg: &T) -> Result<()> {
        let bytes = msg.into_payload()?;
        self.push_raw_to(session, topic, &bytes)
    }

    /// Pushes raw bytes to any session.
    pub fn push_raw_to(&self, session: u64, topic: u32, bytes: &[u8]) -> Result<()> {
        // SAFETY: the pointer and length describe `bytes`, which the host only reads.
        let status =
            unsafe { raw::push(session, topic, bytes.as_ptr() as u32, bytes.len() as u32) };
        match status {
            firefly_abi::host_status::OK => Ok(()),
            firefly_abi::host_status::NO_SUCH_SESSION => Err(Error::new(
                "no_such_session",
                format!("session {session} is not connected"),
            )),
            firefly_abi::host_status::BACKPRESSURE => Err(Error::new(
                "backpressure",
                format!("session {session} is not reading; its queue is full"),
            )),
            other => Err(Error::msg(format!("push failed with host status {other}"))),
        }
    }
}
