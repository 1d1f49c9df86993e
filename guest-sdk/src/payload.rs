//! How request and reply payloads map to Rust types.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Raw payload bytes, for handlers that do their own encoding (JSON, protobuf, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

impl std::ops::Deref for Raw {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Raw {
    fn from(bytes: Vec<u8>) -> Self {
        Raw(bytes)
    }
}

impl From<&[u8]> for Raw {
    fn from(bytes: &[u8]) -> Self {
        Raw(bytes.to_vec())
    }
}

impl From<&str> for Raw {
    fn from(text: &str) -> Self {
        Raw(text.as_bytes().to_vec())
    }
}

/// A type a request payload decodes into.
pub trait FromPayload: Sized {
    /// Decodes `bytes`.
    fn from_payload(bytes: &[u8]) -> Result<Self>;
}

/// A type a reply payload encodes from.
pub trait IntoPayload {
    /// Encodes `self`.
    fn into_payload(self) -> Result<Vec<u8>>;
}

/// MessagePack nil: what an empty payload means to typed handlers, so `()` and `Option<T>`
/// requests accept an empty body.
const NIL: &[u8] = &[0xc0];

impl<T: DeserializeOwned> FromPayload for T {
    fn from_payload(bytes: &[u8]) -> Result<Self> {
        let bytes = if bytes.is_empty() { NIL } else { bytes };
        rmp_serde::from_slice(bytes).map_err(|e| {
            let at = failed_at::<T>(bytes)
                .map(|path| format!(" at `{path}`"))
                .unwrap_or_default();
            Error::new(
                firefly_abi::codes::BAD_REQUEST,
                format!(
                    "cannot decode the request as {}{at}: {e}",
                    short_type_name::<T>()
                ),
            )
        })
    }
}

/// Where in `bytes` decoding a `T` fails (`room`, `players[2].name`), by decoding again with
/// the path tracked: only once decoding failed, so a good request pays nothing for it.
/// `None` when the failure is at the top (not a map at all, say).
fn failed_at<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let mut decoder = rmp_serde::Deserializer::from_read_ref(bytes);
    let err = serde_path_to_error::deserialize::<_, T>(&mut decoder).err()?;
    let path = err.path().to_string();
    (path != ".").then_some(path)
}

impl<T: Serialize> IntoPayload for T {
    fn into_payload(self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(&self).map_err(|e| {
            Error::new(
                firefly_abi::codes::HANDLER_FAILED,
                format!("cannot encode the reply: {e}"),
            )
        })
    }
}

impl FromPayload for Raw {
    fn from_payload(bytes: &[u8]) -> Result<Self> {
        Ok(Raw(bytes.to_vec()))
    }
}

impl IntoPayload for Raw {
    fn into_payload(self) -> Result<Vec<u8>> {
        Ok(self.0)
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Add {
        a: i64,
        b: i64,
    }

    #[test]
    fn typed_payloads_round_trip_as_named_maps() {
        let bytes = Add { a: 1, b: 2 }.into_payload().unwrap();
        assert_eq!(bytes[0], 0x82, "a two-entry map");
        assert_eq!(Add::from_payload(&bytes).unwrap(), Add { a: 1, b: 2 });
    }

    #[test]
    fn empty_payload_is_nil() {
        <()>::from_payload(&[]).unwrap();
        assert_eq!(Option::<u32>::from_payload(&[]).unwrap(), None);
        let err = Add::from_payload(&[]).unwrap_err();
        assert_eq!(err.code, "bad_request");
        assert!(err.message.contains("Add"), "{}", err.message);
    }

    #[test]
    fn raw_is_untouched() {
        assert_eq!(Raw::from_payload(b"\x00\xff").unwrap().0, b"\x00\xff");
        assert_eq!(Raw::from("hi").into_payload().unwrap(), b"hi");
    }
}
