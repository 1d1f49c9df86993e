//! Errors a handler returns: a code (for the client to branch on) and a message.

use std::fmt;

/// A failure a handler reports to its caller. It becomes an error frame carrying `code` and
/// `message`; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Machine-readable code, e.g. `not_enough_gold` (or a framework code such as
    /// `handler_failed`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The result type of handlers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code of the module's choosing.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// An error with the generic code `handler_failed`.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new(firefly_abi::codes::HANDLER_FAILED, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::msg(message)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::msg(message)
    }
}

/// The error of a push on one of the framework's topics.
pub(crate) fn reserved_topic(what: &str) -> Error {
    Error::new(
        "reserved_topic",
        format!(
            "{what}: topics {:#X} and up are the framework's",
            firefly_abi::RESERVED_TOPICS
        ),
    )
}
