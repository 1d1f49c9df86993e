//! The Firefly client wire protocol: framing, header settings and error frames.
//!
//! Every frame is a 17-byte big-endian header followed by the payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic bytes |
//! | 4 | 1 | protocol version |
//! | 5 | 4 | server version |
//! | 9 | 4 | length = payload length + 4 |
//! | 13 | 4 | command id |
//! | 17 | length − 4 | payload |
//!
//! Byte-compatible with the original Firefly's `DataPackProtoc`. The same [`Codec`] serves the
//! server, the Rust client library and the benchmarks' bare baseline, so all speak one framing.

mod answers;
pub mod edge;
mod error_frame;
mod frame;
pub mod session;

pub use answers::{Answers, Collected};
pub use error_frame::ErrorReply;
pub use frame::{Codec, Frame, FrameError, HEADER_LEN};
