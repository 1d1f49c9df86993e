//! Why something asked of NATS did not happen: one enum for the fabric's client, its link
//! subjects and its JetStream streams, so callers match on the reason (and tests do not match
//! on message text).

use std::time::Duration;

/// Why a request to NATS failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsError {
    /// The NATS server could not be reached.
    #[error("NATS at {servers}: {why}")]
    Connect {
        /// The servers tried, comma-separated.
        servers: String,
        /// The client's words.
        why: String,
    },
    /// The peer is not on NATS: not announced lately with this cluster's certificate, or no
    /// process answered on its subject.
    #[error("`{peer}` is not on NATS{}", if *.announced { "" } else { " (not announced lately with this cluster's certificate)" })]
    NotThere {
        /// The peer's name.
        peer: String,
        /// Whether it was announced (and then did not answer).
        announced: bool,
    },
    /// No answer came in time.
    #[error("no answer to {subject} within {within:?}")]
    NoAnswer {
        /// What was asked.
        subject: String,
        /// How long it waited.
        within: Duration,
    },
    /// A publish, request or subscription failed, in the client's words.
    #[error("NATS ({subject}): {why}")]
    Request {
        /// The subject.
        subject: String,
        /// The client's words.
        why: String,
    },
    /// JetStream answered with an error (its code, as in its documentation, and its words),
    /// or an answer that could not be read (code 0).
    #[error(
        "JetStream ({subject}): {description} [{code}] (is JetStream enabled, `nats-server -js`?)"
    )]
    JetStream {
        /// The API subject (or stream subject) asked.
        subject: String,
        /// JetStream's `err_code` (10058: stream exists; 10065: subjects overlap; 10071:
        /// wrong last sequence), or an HTTP-like status for a direct get, or 0.
        code: u64,
        /// What it said.
        description: String,
    },
    /// A value could not be encoded for NATS.
    #[error("cannot encode for NATS: {0}")]
    Encode(String),
}

impl NatsError {
    /// A client error on `subject`.
    pub(crate) fn request(subject: &str, why: impl std::fmt::Display) -> Self {
        NatsError::Request {
            subject: subject.to_owned(),
            why: why.to_string(),
        }
    }
}
