//! What a client connection runs over: plain TCP, or WebSocket carrying the same frames (one
//! frame per binary message), each either plain or inside TLS. The connection logic
//! (`connection::run`) is written once against [`Transport`].

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::protocol::HEADER_LEN;

/// Why a read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection broke.
    Io(io::Error),
    /// A WebSocket text message: Firefly frames are binary.
    Text,
    /// A WebSocket message larger than the listener's largest frame.
    TooLarge {
        /// Its size (or the size announced so far).
        size: usize,
        /// The largest message accepted: `max_frame` plus the header.
        max: usize,
    },
}

/// How the server ends a connection, for transports that can say so (a WebSocket close
/// frame's code and reason; TCP just closes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Close {
    /// The WebSocket close code (RFC 6455 section 7.4).
    pub code: u16,
    /// The reason sent with it.
    pub reason: &'static str,
}

/// How long a closing connection waits for the client to read the close and hang up.
const LINGER: Duration = Duration::from_secs(1);

/// A byte stream of Firefly frames, in both directions.
pub(crate) trait Transport: Send {
    /// Appends whatever arrived to `buf`; `Ok(0)` when the client closed. Cancel-safe: it is
    /// raced against pushes and timers.
    fn read(&mut self, buf: &mut BytesMut)
    -> impl Future<Output = Result<usize, ReadError>> + Send;

    /// Writes `frames` (whole encoded frames, back to back).
    fn write(&mut self, frames: &[u8]) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends the connection saying why (`None`: the peer is already gone).
    fn close(&mut self, why: Option<Close>) -> impl Future<Output = ()> + Send;
}

impl Transport for TcpStream {
    async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, ReadError> {
        self.read_buf(buf).await.map_err(ReadError::Io)
    }

    async fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        self.write_all(frames).await
    }

    async fn close(&mut self, _why: Option<Close>) {}
}

impl Transport for TlsStream<TcpStream> {
    async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, ReadError> {
        self.read_buf(buf).await.map_err(ReadError::Io)
    }

    async fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        self.write_all(frames).await?;
        // rustls may keep the last record until flushed.
        self.flush().await
    }

    async fn close(&mut self, why: Option<Close>) {
        if why.is_some() {
            // A close_notify, so the client can tell our close from a cut connection.
            let _ = AsyncWriteExt::shutdown(self).await;
        }
    }
}

/// A WebSocket connection over `S` (TCP, or TLS over TCP): each binary message carries one
/// frame.
pub(crate) struct Ws<S>(pub WebSocketStream<S>);

fn ws_error(e: WsError) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for Ws<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, ReadError> {
        loop {
            // `next` is cancel-safe; everything after it is synchronous. Fragmented messages
            // arrive here reassembled.
            match self.0.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Ok(Message::Binary(data))) if data.is_empty() => continue,
                Some(Ok(Message::Binary(data))) => {
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                // A ping's pong is queued by tungstenite and flushed by the next poll of the
                // stream, which this loop makes at once.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => return Err(ReadError::Text),
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    return Err(ReadError::TooLarge {
                        size,
                        max: max_size,
                    });
                }
                Some(Err(e)) => return Err(ReadError::Io(ws_error(e))),
            }
        }
    }

    async fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        let mut rest = frames;
        while rest.len() >= HEADER_LEN {
            let len = u32::from_be_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
            let end = (HEADER_LEN - 4 + len).min(rest.len());
            let (frame, tail) = rest.split_at(end);
            self.0
                .feed(Message::Binary(Bytes::copy_from_slice(frame)))
                .await
                .map_err(ws_error)?;
            rest = tail;
        }
        self.0.flush().await.map_err(ws_error)
    }

    async fn close(&mut self, why: Option<Close>) {
        let Some(why) = why else {
            // The peer closed (or the connection broke): send what tungstenite queued, such
            // as the answer to the peer's close frame.
            let _ = self.0.flush().await;
            return;
        };
        let frame = CloseFrame {
            code: CloseCode::from(why.code),
            reason: why.reason.into(),
        };
        if self.0.close(Some(frame)).await.is_err() {
            return;
        }
        // A lingering close: stop sending, then read (and drop) what the client still sends
        // until it hangs up, so the close frame is not lost to a reset.
        let inner = self.0.get_mut();
        let _ = AsyncWriteExt::shutdown(inner).await;
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            while matches!(AsyncReadExt::read(inner, &mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}
