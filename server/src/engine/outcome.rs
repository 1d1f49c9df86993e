//! How a call ended: the errors a guest reports, the errors a call answers with, and what a
//! dispatch's status word means. Plain data, below everything else in the engine.

use bytes::Bytes;
use firefly_abi::{Status, codes};

/// An error a guest reported with `error_set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    /// Its code (a framework code or the module's own).
    pub code: String,
    /// Its message.
    pub message: String,
}

/// Why a call produced no successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// An error code (`firefly_abi::codes` or the module's own).
    pub code: String,
    /// What happened.
    pub message: String,
}

impl CallError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything a call produced besides its reply bytes.
#[derive(Debug)]
pub struct CallOutcome {
    /// Pushes the call made to its own session, in order; deliver them before the reply.
    pub own_pushes: Vec<(u32, Bytes)>,
    /// `Ok` when the reply buffer holds the reply, or why there is none.
    pub result: Result<(), CallError>,
}

/// What a dispatch's [`Status`] means: `Ok` when the output buffer holds the reply, else the
/// error to answer with (`reported`: what the guest set with `error_set`, taken here).
pub(crate) fn status_result(
    status: u32,
    reported: &mut Option<GuestError>,
    module: &str,
    id: u32,
) -> Result<(), CallError> {
    match Status::from_u32(status) {
        Some(Status::Ok) => Ok(()),
        Some(Status::Error) => Err(match reported.take() {
            Some(e) => CallError {
                code: e.code,
                message: e.message,
            },
            None => CallError::new(codes::HANDLER_FAILED, "handler failed without a message"),
        }),
        Some(Status::Unknown) => Err(CallError::new(
            codes::UNKNOWN_COMMAND,
            format!("module `{module}` has no handler for command {id}"),
        )),
        None => Err(CallError::new(
            codes::INTERNAL,
            format!("module returned an unknown status {status}"),
        )),
    }
}
