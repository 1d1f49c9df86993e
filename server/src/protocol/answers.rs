//! Where the answers to a run of a session's requests go, in request order: the one shape the
//! request path speaks, whoever consumes it (a gate connection writing client frames, a node
//! link writing the reply to a forwarded run, a module's call collecting one answer).

use super::ErrorReply;

/// The consumer of a run's answers. Each request gets its pushes (the ones its handler made to
/// its own session), then exactly one [`Answers::reply`] or [`Answers::error`]; requests are
/// answered in the order they arrived.
pub trait Answers: Send {
    /// A push to the session, made while serving the request answered next.
    fn push(&mut self, topic: u32, payload: &[u8]);
    /// The reply to a request for `command`.
    fn reply(&mut self, command: u32, payload: &[u8]);
    /// The error answer to a request (its command is in `reply`).
    fn error(&mut self, reply: &ErrorReply);
}

/// One request's answer, owned: its pushes, then the reply or the error. Collects the answer
/// to a single request (a module's `call_node`, a lone forwarded request).
#[derive(Debug, Default)]
pub struct Collected {
    /// The pushes, in order.
    pub pushes: Vec<(u32, Vec<u8>)>,
    /// The reply, or the error; `None` until the request is answered.
    pub result: Option<Result<Vec<u8>, ErrorReply>>,
}

impl Answers for Collected {
    fn push(&mut self, topic: u32, payload: &[u8]) {
        self.pushes.push((topic, payload.to_vec()));
    }

    fn reply(&mut self, _command: u32, payload: &[u8]) {
        self.result = Some(Ok(payload.to_vec()));
    }

    fn error(&mut self, reply: &ErrorReply) {
        self.result = Some(Err(reply.clone()));
    }
}
