//! Sessions across the cluster, from a handler: broadcasts, groups, users, kicks.
//!
//! Every method reaches sessions wherever they are connected (any gate of the cluster).

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::{Error, Result, reserved_topic};
use crate::payload::IntoPayload;
use crate::raw;

fn check(status: u32, what: &str) -> Result<()> {
    use firefly_abi::session_status as s;
    match status {
        s::OK => Ok(()),
        s::NO_SUCH_SESSION => Err(Error::new(
            "no_such_session",
            format!("{what}: the session is not connected"),
        )),
        s::BACKPRESSURE => Err(Error::new(
            "backpressure",
            format!("{what}: the session's queue is full"),
        )),
        s::UNAVAILABLE => Err(Error::new(
            "node_unavailable",
            format!("{what}: the session's gate cannot be reached"),
        )),
        s::INVALID => Err(Error::new(
            "invalid_name",
            format!("{what}: names are 1 to 256 bytes"),
        )),
        s::RESERVED_TOPIC => Err(reserved_topic(what)),
        other => Err(Error::msg(format!("{what} failed with status {other}"))),
    }
}

impl Ctx {
    /// Pushes `msg` (MessagePack) on `topic` to each of `sessions`, wherever they are
    /// connected. Sessions that are gone are skipped.
    pub fn push_sessions<T: Serialize>(&self, sessions: &[u64], topic: u32, msg: &T) -> Result<()> {
        self.push_sessions_raw(sessions, topic, &msg.into_payload()?)
    }

    /// [`Ctx::push_sessions`] with raw bytes.
    pub fn push_sessions_raw(&self, sessions: &[u64], topic: u32, bytes: &[u8]) -> Result<()> {
        let ids: Vec<u8> = sessions.iter().flat_map(|s| s.to_le_bytes()).collect();
        // SAFETY: both pointer/length pairs describe live buffers the host only reads.
        let status = unsafe {
            raw::push_sessions(
                ids.as_ptr() as u32,
                sessions.len() as u32,
                topic,
                bytes.as_ptr() as u32,
                bytes.len() as u32,
            )
        };
        check(status, "push_sessions")
    }

    /// Pushes `msg` (MessagePack) on `topic` to every member of `group`, on every gate.
    pub fn push_group<T: Serialize>(&self, group: &str, topic: u32, msg: &T) -> Result<()> {
        self.push_group_raw(group, topic, &msg.into_payload()?)
    }

    /// [`Ctx::push_group`] with raw bytes.
    pub fn push_group_raw(&self, group: &str, topic: u32, bytes: &[u8]) -> Result<()> {
        // SAFETY: both pointer/length pairs describe live buffers the host only reads.
        let status = unsafe {
            raw::push_group(
                group.as_ptr() as u32,
                group.len() as u32,
                topic,
                bytes.as_ptr() as u32,
                bytes.len() as u32,
            )
        };
        check(status, "push_group")
    }

    /// Pushes `msg` (MessagePack) on `topic` to every session of the cluster.
    pub fn push_all<T: Serialize>(&self, topic: u32, msg: &T) -> Result<()> {
        self.push_all_raw(topic, &msg.into_payload()?)
    }

    /// [`Ctx::push_all`] with raw bytes.
    pub fn push_all_raw(&self, topic: u32, bytes: &[u8]) -> Result<()> {
        // SAFETY: the pointer and length describe `bytes`, which the host only reads.
        let status = unsafe { raw::push_all(topic, bytes.as_ptr() as u32, bytes.len() as u32) };
        check(status, "push_all")
    }

    /// Pushes `msg` (MessagePack) on `topic` to every session bound to `user`, on every gate.
    pub fn push_user<T: Serialize>(&self, user: &str, topic: u32, msg: &T) -> Result<()> {
        self.push_user_raw(user, topic, &msg.into_payload()?)
    }

    /// [`Ctx::push_user`] with raw bytes.
    pub fn push_user_raw(&self, user: &str, topic: u32, bytes: &[u8]) -> Result<()> {
        // SAFETY: both pointer/length pairs describe live buffers the host only reads.
        let status = unsafe {
            raw::push_user(
                user.as_ptr() as u32,
                user.len() as u32,
                topic,
                bytes.as_ptr() as u32,
                bytes.len() as u32,
            )
        };
        check(status, "push_user")
    }

    /// Adds the calling session to `group` (a channel for [`Ctx::push_group`]).
    pub fn join(&self, group: &str) -> Result<()> {
        self.join_session(self.session, group)
    }

    /// Removes the calling session from `group`.
    pub fn leave(&self, group: &str) -> Result<()> {
        self.leave_session(self.session, group)
    }

    /// Adds any session to `group`.
    pub fn join_session(&self, session: u64, group: &str) -> Result<()> {
        self.group_op(session, group, true)
    }

    /// Removes any session from `group`.
    pub fn leave_session(&self, session: u64, group: &str) -> Result<()> {
        self.group_op(session, group, false)
    }

    fn group_op(&self, session: u64, group: &str, join: bool) -> Result<()> {
        // SAFETY: the pointer and length describe `group`, which the host only reads.
        let status = unsafe {
            raw::group_join(
                session,
                group.as_ptr() as u32,
                group.len() as u32,
                u32::from(join),
            )
        };
        check(status, if join { "join" } else { "leave" })
    }

    /// Binds user id `user` to the calling session (a login). Where the session's listener
    /// says `single_login` (the default), the user's other sessions, on any gate, are kicked.
    pub fn bind_user(&self, user: &str) -> Result<()> {
        self.bind_user_to(self.session, user)
    }

    /// Binds user id `user` to any session.
    pub fn bind_user_to(&self, session: u64, user: &str) -> Result<()> {
        if user.is_empty() {
            return Err(Error::new("invalid_name", "a user id cannot be empty"));
        }
        // SAFETY: the pointer and length describe `user`, which the host only reads.
        let status = unsafe { raw::user_bind(session, user.as_ptr() as u32, user.len() as u32) };
        check(status, "bind_user")
    }

    /// Unbinds the calling session's user (a logout).
    pub fn unbind_user(&self) -> Result<()> {
        // SAFETY: a zero-length read of no memory.
        let status = unsafe { raw::user_bind(self.session, 0, 0) };
        check(status, "unbind_user")
    }

    /// The user bound to the calling session, if any.
    pub fn user(&self) -> Result<Option<String>> {
        self.user_of(self.session)
    }

    /// The user bound to any session, if any.
    pub fn user_of(&self, session: u64) -> Result<Option<String>> {
        // SAFETY: a host import without pointer arguments.
        let packed = unsafe { raw::user_of(session) };
        check((packed >> 32) as u32, "user_of")?;
        let len = (packed & 0xffff_ffff) as usize;
        if len == 0 {
            return Ok(None);
        }
        let mut name = vec![0u8; len];
        // SAFETY: `name` is exactly `len` bytes; the host writes within it.
        unsafe { raw::call_reply_read(name.as_mut_ptr() as u32, len as u32) };
        Ok(Some(String::from_utf8_lossy(&name).into_owned()))
    }

    /// Ends `session`: its client gets a `kicked` error frame, the connection closes, and its
    /// disconnect event fires (a resumable session is not kept).
    pub fn kick(&self, session: u64) -> Result<()> {
        // SAFETY: a host import without pointer arguments.
        let status = unsafe { raw::session_kick(session) };
        check(status, "kick")
    }
}
