//! Error frames: the one reply a failed request gets.

use serde::{Deserialize, Serialize};

/// The MessagePack map carried by an error frame (sent on the listener's error command id).
///
/// Every request gets exactly one reply: its response or one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The command id of the request that failed (0 for a frame that could not be parsed).
    pub command: u32,
    /// A machine-readable code: one of `firefly_abi::codes` or a module's own.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// The module that served the request, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The version of that module, when one served the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

impl ErrorReply {
    /// An error not tied to a module.
    pub fn new(command: u32, code: &str, message: impl Into<String>) -> Self {
        Self {
            command,
            code: code.to_owned(),
            message: message.into(),
            module: None,
            version: None,
        }
    }

    /// Encodes the reply as a MessagePack map with named fields.
    pub fn to_msgpack(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers into a Vec cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes a reply from an error frame's payload.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_a_map() {
        let mut reply = ErrorReply::new(7, "unknown_command", "no handler for 7");
        reply.module = Some("lobby".into());
        reply.version = Some(3);
        let bytes = reply.to_msgpack();
        // A map (fixmap marker 0x8N), so any MessagePack client reads it by key.
        assert_eq!(bytes[0] & 0xf0, 0x80);
        assert_eq!(ErrorReply::from_msgpack(&bytes).unwrap(), reply);
    }
}
