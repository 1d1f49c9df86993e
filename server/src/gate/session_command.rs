//! The commands the gate answers itself on a connection: the session command (a ticket for
//! the current session, its id and a resume token, or taking back a dropped session with a
//! token), keep-alive, log-out and hello (the connection's options).

use bytes::BytesMut;
use firefly_abi::codes;

use super::Listener;
use crate::protocol::ErrorReply;
use crate::protocol::session::{self, Hello, SessionRequest, SessionTicket};
use crate::sessions::Attached;
use crate::sessions::resume::ResumeError;

/// What the connection does after a gate command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Carry on.
    Serve,
    /// The client logged out: close the connection and end the session now.
    LogOut,
}

/// A connection's options, as set by hello.
#[derive(Debug, Default)]
pub(super) struct Options {
    /// Pushes go out as tagged push frames.
    pub(super) push_frames: bool,
}

/// Answers one of the commands the gate serves itself (see [`session::is_gate_command`]).
pub(super) async fn gate_command(
    shared: &Listener,
    slot: &mut Attached,
    command: u32,
    payload: &[u8],
    wbuf: &mut BytesMut,
    errors: &mut u64,
    options: &mut Options,
) -> After {
    match command {
        session::KEEPALIVE_COMMAND => shared.codec.encode(command, &[], wbuf),
        session::LOGOUT_COMMAND => {
            shared.codec.encode(command, &[], wbuf);
            return After::LogOut;
        }
        session::HELLO_COMMAND => {
            let hello: Hello = if payload.is_empty() {
                Hello::default()
            } else {
                match rmp_serde::from_slice(payload) {
                    Ok(h) => h,
                    Err(e) => {
                        *errors += 1;
                        let reply =
                            ErrorReply::new(command, codes::BAD_REQUEST, format!("hello: {e}"));
                        shared.codec.encode(
                            shared.settings.error_command,
                            &reply.to_msgpack(),
                            wbuf,
                        );
                        return After::Serve;
                    }
                }
            };
            if let Some(on) = hello.push_frames {
                options.push_frames = on;
            }
            let now = Hello {
                push_frames: Some(options.push_frames),
            };
            let bytes = rmp_serde::to_vec_named(&now).unwrap_or_default();
            shared.codec.encode(command, &bytes, wbuf);
        }
        _ => session_request(shared, slot, payload, wbuf, errors, options.push_frames).await,
    }
    After::Serve
}

/// Answers the reserved session command: the current session's ticket, or a resume.
async fn session_request(
    shared: &Listener,
    slot: &mut Attached,
    payload: &[u8],
    wbuf: &mut BytesMut,
    errors: &mut u64,
    push_frames: bool,
) {
    let command = session::SESSION_COMMAND;
    let sessions = &shared.node.sessions;
    let fail = |code: &str, message: String, wbuf: &mut BytesMut| {
        let reply = ErrorReply::new(command, code, message);
        shared
            .codec
            .encode(shared.settings.error_command, &reply.to_msgpack(), wbuf);
    };
    let request: SessionRequest = if payload.is_empty() {
        SessionRequest::default()
    } else {
        match rmp_serde::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                *errors += 1;
                return fail(codes::BAD_REQUEST, format!("session request: {e}"), wbuf);
            }
        }
    };
    let result = match request.resume {
        None => sessions.issue_token(slot.id).map(|token| SessionTicket {
            session: slot.id,
            token,
            resumed: false,
            replayed: 0,
            dropped: 0,
        }),
        Some(token) => sessions
            .resume_anywhere(&token, &shared.settings.sessions)
            .await
            .map(|resumed| {
                // The session this connection had until now ends (its events fire).
                let fresh = std::mem::replace(slot, resumed.attached);
                sessions.detach(fresh, true);
                let ticket = SessionTicket {
                    session: slot.id,
                    token: resumed.token,
                    resumed: true,
                    replayed: resumed.replay.len() as u64,
                    dropped: resumed.dropped,
                };
                if resumed.dropped > 0 {
                    tracing::info!(
                        session = slot.id,
                        dropped = resumed.dropped,
                        "resumed session lost pushes (buffer full)"
                    );
                }
                let bytes = rmp_serde::to_vec_named(&ticket).unwrap_or_default();
                shared.codec.encode(command, &bytes, wbuf);
                for (topic, payload) in &resumed.replay {
                    shared.codec.encode_push(push_frames, *topic, payload, wbuf);
                }
                ticket
            }),
    };
    match result {
        Ok(ticket) if !ticket.resumed => {
            let bytes = rmp_serde::to_vec_named(&ticket).unwrap_or_default();
            shared.codec.encode(command, &bytes, wbuf);
        }
        Ok(_) => {}
        Err(err) => {
            *errors += 1;
            let code = match err {
                ResumeError::Disabled => session::RESUME_DISABLED,
                ResumeError::Invalid => session::RESUME_FAILED,
                ResumeError::Random(_) => codes::INTERNAL,
            };
            fail(code, err.to_string(), wbuf);
        }
    }
}
