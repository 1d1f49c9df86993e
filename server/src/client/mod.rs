//! A Rust client for the Firefly protocol: connect, request/response, pushes, error frames.
//!
//! Used by the tests, the benchmarks, `firefly call`, and handy for bots. On a listener with
//! `resume`, [`Client::session_ticket`] gets a resume token and [`Client::resume`] takes the
//! session back on a new connection after a drop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), firefly::client::ClientError> {
//! let mut client = firefly::client::Client::connect("127.0.0.1:11009").await?;
//! let echoed = client.request(1, b"asdfe").await?;
//! assert_eq!(&echoed[..], b"asdfe");
//! # Ok(()) }
//! ```
//!
//! [`admin`] is the other client of the project: the HTTP one of the master's admin API.

pub mod admin;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::config::ProtocolSettings;
use crate::protocol::session::{SESSION_COMMAND, SessionRequest, SessionTicket};
use crate::protocol::{Codec, ErrorReply, Frame, FrameError};

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server sent bytes that are not a valid frame.
    #[error("bad frame from server: {0}")]
    Protocol(#[from] FrameError),
    /// The server answered with an error frame.
    #[error("server error {}: {} (command {})", .0.code, .0.message, .0.command)]
    Server(ErrorReply),
    /// A payload could not be encoded or decoded as MessagePack.
    #[error("payload codec error: {0}")]
    Codec(String),
    /// No answer within the client's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// The error frame, when the server sent one.
    pub fn server(&self) -> Option<&ErrorReply> {
        match self {
            ClientError::Server(reply) => Some(reply),
            _ => None,
        }
    }
}

/// One connection to a Firefly gate.
pub struct Client {
    stream: TcpStream,
    codec: Codec,
    error_command: u32,
    rbuf: BytesMut,
    wbuf: BytesMut,
    pushes: VecDeque<Frame>,
    timeout: Duration,
}

impl Client {
    /// Connects with the default protocol settings.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Self::connect_with(addr, &ProtocolSettings::default()).await
    }

    /// Connects with the given header settings (they must match the listener's).
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        settings: &ProtocolSettings,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        Self::from_stream(stream, settings)
    }

    /// A client over a stream the caller connected (say, from a chosen source address).
    pub fn from_stream(
        stream: TcpStream,
        settings: &ProtocolSettings,
    ) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            codec: Codec::new(settings),
            error_command: settings.error_command,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::new(),
            pushes: VecDeque::new(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets how long a read may wait for the server (default 30 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends one frame without waiting for anything.
    pub async fn send(&mut self, command: u32, payload: &[u8]) -> Result<(), ClientError> {
        self.wbuf.clear();
        self.codec.encode(command, payload, &mut self.wbuf);
        self.stream.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// Sends raw bytes, framed or not (for testing how a server treats bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next frame from the server, whatever it is (response, push or error frame).
    pub async fn recv_frame(&mut self) -> Result<Frame, ClientError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.read_frame())
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.rbuf)? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Sends a request and waits for its reply. Frames on other ids that arrive meanwhile
    /// are pushes: they are kept for [`Client::next_push`]. An error frame for this command
    /// becomes [`ClientError::Server`].
    pub async fn request(&mut self, command: u32, payload: &[u8]) -> Result<Bytes, ClientError> {
        self.send(command, payload).await?;
        self.reply_to(command).await
    }

    /// Waits for the reply to an earlier [`Client::send`] of `command` (pipelining).
    pub async fn reply_to(&mut self, command: u32) -> Result<Bytes, ClientError> {
        loop {
            let frame = self.recv_frame().await?;
            if frame.command == self.error_command {
                let reply = ErrorReply::from_msgpack(&frame.payload)
                    .map_err(|e| ClientError::Codec(format!("unreadable error frame: {e}")))?;
                return Err(ClientError::Server(reply));
            }
            if frame.command == command {
                return Ok(frame.payload);
            }
            self.pushes.push_back(frame);
        }
    }

    /// Sends a MessagePack request (named fields) and decodes the MessagePack reply.
    pub async fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &mut self,
        command: u32,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let payload =
            rmp_serde::to_vec_named(request).map_err(|e| ClientError::Codec(e.to_string()))?;
        let reply = self.request(command, &payload).await?;
        rmp_serde::from_slice(&reply).map_err(|e| ClientError::Codec(e.to_string()))
    }

    /// The next push (a frame that was not the reply to a request).
    pub async fn next_push(&mut self) -> Result<Frame, ClientError> {
        if let Some(frame) = self.pushes.pop_front() {
            return Ok(frame);
        }
        self.recv_frame().await
    }

    /// Asks the gate for this connection's session id and a fresh resume token (the
    /// reserved [`SESSION_COMMAND`]; see `protocol::session`). Fails with `resume_disabled`
    /// on a listener without `resume`.
    pub async fn session_ticket(&mut self) -> Result<SessionTicket, ClientError> {
        self.call(SESSION_COMMAND, &SessionRequest::default()).await
    }

    /// Connects and resumes the session of `token` (from [`Client::session_ticket`] or an
    /// earlier resume). The pushes kept while the client was away follow, readable with
    /// [`Client::next_push`]; the ticket says how many, and how many were lost.
    pub async fn resume(
        addr: impl ToSocketAddrs,
        token: &str,
    ) -> Result<(Client, SessionTicket), ClientError> {
        Self::resume_with(addr, &ProtocolSettings::default(), token).await
    }

    /// [`Client::resume`] with the given header settings.
    pub async fn resume_with(
        addr: impl ToSocketAddrs,
        settings: &ProtocolSettings,
        token: &str,
    ) -> Result<(Client, SessionTicket), ClientError> {
        let mut client = Self::connect_with(addr, settings).await?;
        let request = SessionRequest {
            resume: Some(token.to_owned()),
        };
        let ticket = client.call(SESSION_COMMAND, &request).await?;
        Ok((client, ticket))
    }

    /// Waits until the server closes the connection, discarding frames; returns them.
    pub async fn wait_closed(&mut self) -> Result<Vec<Frame>, ClientError> {
        let mut frames = Vec::new();
        loop {
            match self.recv_frame().await {
                Ok(frame) => frames.push(frame),
                Err(ClientError::Closed) => return Ok(frames),
                Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Ok(frames);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Converts a MessagePack value to JSON for display (`firefly call`): binary becomes a
/// `"hex:…"` string, non-string map keys are stringified.
pub fn msgpack_to_json(value: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match value {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(*b),
        M::Integer(i) => i
            .as_i64()
            .map(J::from)
            .or_else(|| i.as_u64().map(J::from))
            .unwrap_or(J::Null),
        M::F32(f) => J::from(f64::from(*f)),
        M::F64(f) => J::from(*f),
        M::String(s) => J::String(
            s.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(s.as_bytes()).into_owned()),
        ),
        M::Binary(b) => J::String(format!("hex:{}", hex::encode(b))),
        M::Array(items) => J::Array(items.iter().map(msgpack_to_json).collect()),
        M::Map(pairs) => J::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        M::String(s) => s.as_str().unwrap_or_default().to_owned(),
                        other => other.to_string(),
                    };
                    (key, msgpack_to_json(v))
                })
                .collect(),
        ),
        M::Ext(kind, data) => {
            serde_json::json!({ "ext": kind, "data": format!("hex:{}", hex::encode(data)) })
        }
    }
}
