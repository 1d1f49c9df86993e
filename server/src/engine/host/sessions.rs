//! The session imports of `firefly_v1`: pushes to one session, broadcasts to a list of sessions, a group, a user or
//! everyone; groups; binding users; kicks. All reach sessions on every gate (see
//! `sessions::ops`): pushes are one-way, single-session operations wait for the session's
//! gate to answer.

use bytes::Bytes;
use firefly_abi::{IMPORT_MODULE, RESERVED_TOPICS, host_status, session_status};
use wasmtime::{Caller, Linker};

use super::state::{HostState, guest_str, memory, range};
use crate::sessions::ops::MAX_NAME;
use crate::sessions::{PushError, SessionOp};

/// A group name or user id from guest memory; `None` when empty or too long.
fn name(mem: &[u8], ptr: u32, len: u32, what: &str) -> wasmtime::Result<Option<String>> {
    if len == 0 || len as usize > MAX_NAME {
        return Ok(None);
    }
    Ok(Some(guest_str(mem, ptr, len, what)?))
}

/// Runs a single-session operation and returns its `session_status`.
async fn on_session(caller: &mut Caller<'_, HostState>, session: u64, op: SessionOp) -> u32 {
    let sessions = caller.data().env.sessions.clone();
    sessions.on_session(session, op).await.status
}

/// Defines the session imports in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    add_pushes(linker)?;
    add_broadcasts(linker)?;
    add_session_ops(linker)
}

/// `push` (one session; pushes to the caller's own session wait for its reply) and
/// `push_sessions` (a list of sessions): one-way.
fn add_pushes(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;

    linker.func_wrap(
        m,
        "push",
        |mut caller: Caller<'_, HostState>,
         session: u64,
         topic: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            if topic >= RESERVED_TOPICS {
                return Ok(host_status::RESERVED_TOPIC);
            }
            let (mem, state) = memory(&mut caller)?;
            let r = range(mem.len(), ptr, len, "push")?;
            let payload = Bytes::copy_from_slice(&mem[r]);
            if session != 0 && session == state.call.session {
                state.call.own_pushes.push((topic, payload));
                return Ok(host_status::OK);
            }
            Ok(match state.env.sessions.push(session, topic, payload) {
                Ok(()) => host_status::OK,
                Err(PushError::NoSuchSession) => host_status::NO_SUCH_SESSION,
                Err(PushError::Backpressure) => host_status::BACKPRESSURE,
            })
        },
    )?;

    linker.func_wrap(
        m,
        "push_sessions",
        |mut caller: Caller<'_, HostState>,
         ids_ptr: u32,
         count: u32,
         topic: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            if topic >= RESERVED_TOPICS {
                return Ok(session_status::RESERVED_TOPIC);
            }
            let (mem, state) = memory(&mut caller)?;
            let ids_len = count.saturating_mul(8);
            let r = range(mem.len(), ids_ptr, ids_len, "push_sessions")?;
            let ids: Vec<u64> = mem[r]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            let r = range(mem.len(), ptr, len, "push_sessions")?;
            let payload = Bytes::copy_from_slice(&mem[r]);
            state.env.sessions.push_many(&ids, topic, payload);
            Ok(session_status::OK)
        },
    )?;

    Ok(())
}

/// `push_group`, `push_all`, `push_user`: broadcasts, one-way.
fn add_broadcasts(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;
    linker.func_wrap(
        m,
        "push_group",
        |mut caller: Caller<'_, HostState>,
         name_ptr: u32,
         name_len: u32,
         topic: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            if topic >= RESERVED_TOPICS {
                return Ok(session_status::RESERVED_TOPIC);
            }
            let (mem, state) = memory(&mut caller)?;
            let Some(group) = name(mem, name_ptr, name_len, "push_group")? else {
                return Ok(session_status::INVALID);
            };
            let r = range(mem.len(), ptr, len, "push_group")?;
            let payload = Bytes::copy_from_slice(&mem[r]);
            state.env.sessions.push_group(&group, topic, payload);
            Ok(session_status::OK)
        },
    )?;

    linker.func_wrap(
        m,
        "push_all",
        |mut caller: Caller<'_, HostState>,
         topic: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            if topic >= RESERVED_TOPICS {
                return Ok(session_status::RESERVED_TOPIC);
            }
            let (mem, state) = memory(&mut caller)?;
            let r = range(mem.len(), ptr, len, "push_all")?;
            let payload = Bytes::copy_from_slice(&mem[r]);
            state.env.sessions.push_all(topic, payload);
            Ok(session_status::OK)
        },
    )?;

    linker.func_wrap(
        m,
        "push_user",
        |mut caller: Caller<'_, HostState>,
         user_ptr: u32,
         user_len: u32,
         topic: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            if topic >= RESERVED_TOPICS {
                return Ok(session_status::RESERVED_TOPIC);
            }
            let (mem, state) = memory(&mut caller)?;
            let Some(user) = name(mem, user_ptr, user_len, "push_user")? else {
                return Ok(session_status::INVALID);
            };
            let r = range(mem.len(), ptr, len, "push_user")?;
            let payload = Bytes::copy_from_slice(&mem[r]);
            state.env.sessions.push_user(&user, topic, payload);
            Ok(session_status::OK)
        },
    )?;
    Ok(())
}

/// `group_join`, `user_bind`, `user_of`, `session_kick`: each waits for the session's gate.
fn add_session_ops(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let m = IMPORT_MODULE;

    linker.func_wrap_async(
        m,
        "group_join",
        |mut caller: Caller<'_, HostState>,
         (session, name_ptr, name_len, join): (u64, u32, u32, u32)| {
            Box::new(async move {
                let group = {
                    let (mem, _) = memory(&mut caller)?;
                    name(mem, name_ptr, name_len, "group_join")?
                };
                let Some(group) = group else {
                    return wasmtime::Result::Ok(session_status::INVALID);
                };
                let op = if join != 0 {
                    SessionOp::Join {
                        session,
                        group,
                        durable: false,
                    }
                } else {
                    SessionOp::Leave { session, group }
                };
                Ok(on_session(&mut caller, session, op).await)
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "user_bind",
        |mut caller: Caller<'_, HostState>, (session, user_ptr, user_len): (u64, u32, u32)| {
            Box::new(async move {
                let user = {
                    let (mem, _) = memory(&mut caller)?;
                    if user_len as usize > MAX_NAME {
                        return wasmtime::Result::Ok(session_status::INVALID);
                    }
                    name(mem, user_ptr, user_len, "user_bind")?
                };
                Ok(on_session(&mut caller, session, SessionOp::Bind { session, user }).await)
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "user_of",
        |mut caller: Caller<'_, HostState>, (session,): (u64,)| {
            Box::new(async move {
                let sessions = caller.data().env.sessions.clone();
                let reply = sessions
                    .on_session(session, SessionOp::UserOf { session })
                    .await;
                let user = reply.user.unwrap_or_default().into_bytes();
                let len = u64::try_from(user.len()).unwrap_or(u64::MAX);
                caller.data_mut().call.call_reply = user;
                wasmtime::Result::Ok((u64::from(reply.status) << 32) | len)
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "session_kick",
        |mut caller: Caller<'_, HostState>, (session,): (u64,)| {
            Box::new(async move {
                wasmtime::Result::Ok(
                    on_session(&mut caller, session, SessionOp::Kick { session }).await,
                )
            })
        },
    )?;
    Ok(())
}
