//! What a client connection runs over: plain TCP, or WebSocket carrying the same frames (one
//! frame per binary message). The connection logic (`connection::run`) is written once
//! against [`Transport`].

use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::HEADER_LEN;

/// A byte stream of Firefly frames, in both directions.
pub(crate) trait Transport: Send {
    /// Appends whatever arrived to `buf`; `Ok(0)` when the client closed. Cancel-safe: it is
    /// raced against pushes and timers.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes `frames` (whole encoded frames, back to back).
    fn write(&mut self, frames: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

impl Transport for TcpStream {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.read_buf(buf).await
    }

    async fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        self.write_all(frames).await
    }
}

/// A WebSocket connection: each binary message carries one frame.
pub(crate) struct Ws(pub WebSocketStream<TcpStream>);

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl Transport for Ws {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // `next` is cancel-safe; everything after it is synchronous.
            match self.0.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Ok(Message::Binary(data))) if data.is_empty() => continue,
                Some(Ok(Message::Binary(data))) => {
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                // Pongs to pings are queued by tungstenite and go out with the next write.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on a binary Firefly WebSocket",
                    ));
                }
                Some(Err(e)) => return Err(ws_error(e)),
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
}
