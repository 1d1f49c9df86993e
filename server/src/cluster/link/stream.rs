//! The byte stream a link runs on (a TCP connection, or one end of a NATS link), and reading
//! and writing one framed [`Msg`] on it during the handshake (after it, the link's reader and
//! writer tasks frame messages themselves).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::route::LinkError;
use super::wire::{self, Msg};

/// A byte stream a link runs on (a TCP connection, or one end of a NATS link), and how it
/// splits into halves that a reader and a writer task own.
pub(crate) trait LinkStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The read half.
    type Read: AsyncRead + Send + Unpin + 'static;
    /// The write half.
    type Write: AsyncWrite + Send + Unpin + 'static;
    /// Splits it.
    fn halves(self) -> (Self::Read, Self::Write);
}

impl LinkStream for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn halves(self) -> (Self::Read, Self::Write) {
        // TCP's own halves: no lock between reader and writer on the default transport.
        self.into_split()
    }
}

impl LinkStream for tokio::io::DuplexStream {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

pub(crate) async fn read_msg(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<Msg, LinkError> {
    loop {
        if let Some(msg) = wire::decode(buf).map_err(|e| LinkError::Frame(e.to_string()))? {
            return Ok(msg);
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err(LinkError::Closed),
            Err(e) => return Err(LinkError::Io(e.to_string())),
            Ok(_) => {}
        }
    }
}

pub(crate) async fn write_msg(
    stream: &mut (impl AsyncWrite + Unpin),
    msg: &Msg,
) -> Result<(), LinkError> {
    let mut buf = BytesMut::new();
    wire::encode(msg, &mut buf);
    stream
        .write_all(&buf)
        .await
        .map_err(|e| LinkError::Io(e.to_string()))
}
