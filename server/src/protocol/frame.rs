//! Frame encoding and incremental decoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::config::ProtocolSettings;

/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 17;

/// One decoded frame: a command (or topic) id and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Command id of a request or response, topic id of a push, or the error command id.
    pub command: u32,
    /// The payload bytes (may be empty).
    pub payload: Bytes,
}

/// Why a byte stream is not a valid sequence of frames. Each ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Magic bytes, protocol version or server version differ from the listener's settings.
    #[error("frame header does not match this listener (magic/version mismatch)")]
    BadHeader,
    /// The length field is below 4, so it cannot even hold the command id.
    #[error("frame length {length} is below the minimum of 4")]
    TooShort {
        /// The length field as received.
        length: u32,
    },
    /// The payload is larger than the listener's maximum frame size.
    #[error("frame payload of {payload} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Payload length announced by the header.
        payload: u32,
        /// The configured maximum.
        max: u32,
    },
}

/// Encoder/decoder for one listener's header settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    magic: [u8; 4],
    protocol_version: u8,
    server_version: u32,
    max_frame: u32,
}

impl Codec {
    /// A codec for the given listener settings.
    pub fn new(settings: &ProtocolSettings) -> Self {
        Self {
            magic: settings.magic,
            protocol_version: settings.protocol_version,
            server_version: settings.server_version,
            max_frame: settings.max_frame,
        }
    }

    /// The largest payload this codec accepts.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Takes one complete frame off the front of `buf`.
    ///
    /// `Ok(None)` means "not enough bytes yet": ordinary control flow, read more and call
    /// again. Errors mean the stream is unusable and the connection must end.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = &buf[..HEADER_LEN];
        if header[0..4] != self.magic
            || header[4] != self.protocol_version
            || be_u32(&header[5..9]) != self.server_version
        {
            return Err(FrameError::BadHeader);
        }
        let length = be_u32(&header[9..13]);
        if length < 4 {
            return Err(FrameError::TooShort { length });
        }
        let payload_len = length - 4;
        if payload_len > self.max_frame {
            return Err(FrameError::TooLarge {
                payload: payload_len,
                max: self.max_frame,
            });
        }
        let total = HEADER_LEN + payload_len as usize;
        if buf.len() < total {
            // Reserve once for the rest of this frame so large frames do not regrow in steps.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let command = be_u32(&buf[13..17]);
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(payload_len as usize).freeze();
        Ok(Some(Frame { command, payload }))
    }

    /// Appends one frame to `out`.
    pub fn encode(&self, command: u32, payload: &[u8], out: &mut BytesMut) {
        out.reserve(HEADER_LEN + payload.len());
        out.put_slice(&self.magic);
        out.put_u8(self.protocol_version);
        out.put_u32(self.server_version);
        // Payloads come from this host (module output is bounded by its memory limit, far
        // below 4 GiB); saturate rather than wrap if that ever changes.
        out.put_u32(u32::try_from(payload.len() + 4).unwrap_or(u32::MAX));
        out.put_u32(command);
        out.put_slice(payload);
    }

    /// Appends one push on `topic`: a frame on the topic id, or with `tagged` (the connection
    /// asked for push frames) a [`PUSH_COMMAND`](super::session::PUSH_COMMAND) frame whose
    /// payload is the topic id (4 bytes, big-endian) and then the push's payload.
    pub fn encode_push(&self, tagged: bool, topic: u32, payload: &[u8], out: &mut BytesMut) {
        if !tagged {
            return self.encode(topic, payload, out);
        }
        out.reserve(HEADER_LEN + 4 + payload.len());
        out.put_slice(&self.magic);
        out.put_u8(self.protocol_version);
        out.put_u32(self.server_version);
        out.put_u32(u32::try_from(payload.len() + 8).unwrap_or(u32::MAX));
        out.put_u32(super::session::PUSH_COMMAND);
        out.put_u32(topic);
        out.put_slice(payload);
    }

    /// One encoded frame as its own buffer.
    pub fn encode_to_bytes(&self, command: u32, payload: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
        self.encode(command, payload, &mut out);
        out.freeze()
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Codec {
        Codec::new(&ProtocolSettings::default())
    }

    #[test]
    fn spec_example_encodes_byte_for_byte() {
        let bytes = codec().encode_to_bytes(1, b"asdfe");
        let expected: &[u8] = &[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, b'a', b's', b'd', b'f', b'e',
        ];
        assert_eq!(&bytes[..], expected);
    }

    #[test]
    fn decodes_split_and_joined_frames() {
        let c = codec();
        let mut stream = BytesMut::new();
        c.encode(1, b"one", &mut stream);
        c.encode(2, b"", &mut stream);
        let all = stream.freeze();
        // Byte by byte: nothing until a frame is complete.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in all.iter() {
            buf.put_u8(*byte);
            while let Some(f) = c.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].command, 1);
        assert_eq!(&frames[0].payload[..], b"one");
        assert_eq!(frames[1].command, 2);
        assert!(frames[1].payload.is_empty());
        // Both in one buffer.
        let mut buf = BytesMut::from(&all[..]);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap().command, 1);
        assert_eq!(c.decode(&mut buf).unwrap().unwrap().command, 2);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_headers_and_lengths() {
        let c = codec();
        let mut bad_magic = BytesMut::from(&c.encode_to_bytes(1, b"x")[..]);
        bad_magic[0] = 7;
        assert_eq!(c.decode(&mut bad_magic), Err(FrameError::BadHeader));

        let mut short = BytesMut::from(&c.encode_to_bytes(1, b"")[..]);
        short[12] = 3;
        assert_eq!(
            c.decode(&mut short),
            Err(FrameError::TooShort { length: 3 })
        );

        let settings = ProtocolSettings {
            max_frame: 8,
            ..ProtocolSettings::default()
        };
        let small = Codec::new(&settings);
        let mut big = BytesMut::from(&small.encode_to_bytes(1, &[0u8; 9])[..]);
        assert_eq!(
            small.decode(&mut big),
            Err(FrameError::TooLarge { payload: 9, max: 8 })
        );
        // Exactly at the limit is fine.
        let mut ok = BytesMut::from(&small.encode_to_bytes(1, &[0u8; 8])[..]);
        assert!(small.decode(&mut ok).unwrap().is_some());
    }

    #[test]
    fn pushes_are_plain_frames_unless_tagged() {
        let c = codec();
        let mut plain = BytesMut::new();
        c.encode_push(false, 104, b"hi", &mut plain);
        assert_eq!(&plain[..], &c.encode_to_bytes(104, b"hi")[..]);
        let mut tagged = BytesMut::new();
        c.encode_push(true, 104, b"hi", &mut tagged);
        let frame = c.decode(&mut tagged).unwrap().unwrap();
        assert_eq!(frame.command, crate::protocol::session::PUSH_COMMAND);
        assert_eq!(&frame.payload[..], &[0, 0, 0, 104, b'h', b'i']);
    }

    #[test]
    fn custom_header_values_round_trip() {
        let settings = ProtocolSettings {
            magic: [78, 37, 38, 48],
            protocol_version: 9,
            server_version: 7,
            ..ProtocolSettings::default()
        };
        let c = Codec::new(&settings);
        let mut buf = BytesMut::from(&c.encode_to_bytes(42, b"hi")[..]);
        assert_eq!(&buf[..5], &[78, 37, 38, 48, 9]);
        let frame = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.command, 42);
        assert_eq!(
            codec().decode(&mut BytesMut::from(&c.encode_to_bytes(1, b"")[..])),
            Err(FrameError::BadHeader)
        );
    }
}
