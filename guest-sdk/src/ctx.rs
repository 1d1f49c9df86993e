//! The context a handler runs in: who called, time, randomness, pushes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::payload::{FromPayload, IntoPayload};
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
            firefly_abi::host_status::RESERVED_TOPIC => Err(crate::error::reserved_topic("push")),
            other => Err(Error::msg(format!("push failed with host status {other}"))),
        }
    }

    /// Runs `command` on node `node` for the current session and returns its reply: a call to
    /// another node of the cluster, request/response, bounded by the cluster's rpc timeout.
    /// The callee's pushes to the session reach the client before this handler's own reply.
    ///
    /// Errors: the callee's own error (its code and message), `node_unavailable`, `timeout`,
    /// `unknown_node`, or `bad_reply` when the answer does not decode as `Resp`.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: &str,
        command: u32,
        request: &Req,
    ) -> Result<Resp> {
        let bytes = request.into_payload()?;
        let answer = self.call_raw(node, command, &bytes)?;
        Resp::from_payload(&answer).map_err(|e| Error::new("bad_reply", e.message))
    }

    /// [`Ctx::call`] with raw bytes both ways.
    pub fn call_raw(&self, node: &str, command: u32, payload: &[u8]) -> Result<Vec<u8>> {
        // SAFETY: both pointer/length pairs describe live buffers the host only reads.
        let packed = unsafe {
            raw::call_node(
                node.as_ptr() as u32,
                node.len() as u32,
                command,
                payload.as_ptr() as u32,
                payload.len() as u32,
            )
        };
        let status = (packed >> 32) as u32;
        let len = (packed & 0xffff_ffff) as usize;
        let mut answer = vec![0u8; len];
        // SAFETY: `answer` is exactly `len` bytes; the host writes within it.
        unsafe { raw::call_reply_read(answer.as_mut_ptr() as u32, len as u32) };
        let text = || String::from_utf8_lossy(&answer).into_owned();
        match status {
            firefly_abi::call_status::OK => Ok(answer),
            firefly_abi::call_status::ERROR => {
                #[derive(serde::Deserialize)]
                struct Failure {
                    code: String,
                    message: String,
                }
                match rmp_serde::from_slice::<Failure>(&answer) {
                    Ok(f) => Err(Error::new(f.code, f.message)),
                    Err(e) => Err(Error::msg(format!("node `{node}` failed: {e}"))),
                }
            }
            firefly_abi::call_status::UNAVAILABLE => Err(Error::new("node_unavailable", text())),
            firefly_abi::call_status::TIMEOUT => Err(Error::new("timeout", text())),
            firefly_abi::call_status::UNKNOWN_NODE => Err(Error::new("unknown_node", text())),
            other => Err(Error::msg(format!(
                "call to `{node}` failed with status {other}"
            ))),
        }
    }

    /// Sends `command` to node `node` without waiting for an answer (one-way).
    pub fn send<Req: Serialize>(&self, node: &str, command: u32, request: &Req) -> Result<()> {
        let bytes = request.into_payload()?;
        self.send_raw(node, command, &bytes)
    }

    /// [`Ctx::send`] with raw bytes.
    pub fn send_raw(&self, node: &str, command: u32, payload: &[u8]) -> Result<()> {
        // SAFETY: both pointer/length pairs describe live buffers the host only reads.
        let status = unsafe {
            raw::send_node(
                node.as_ptr() as u32,
                node.len() as u32,
                command,
                payload.as_ptr() as u32,
                payload.len() as u32,
            )
        };
        match status {
            firefly_abi::call_status::OK => Ok(()),
            _ => Err(Error::new(
                "unknown_node",
                format!("no node named `{node}`"),
            )),
        }
    }
}
