//! The baseline: a bare tokio echo server speaking the Firefly framing ("the ceiling").
//!
//! What it is for: every end-to-end benchmark runs it in the same process and run as Firefly
//! and reports Firefly's numbers as a ratio of its numbers (STYLE.md habit 10). So it must be
//! what a good hand-written tokio server would do, and nothing more:
//!
//! - one task per connection, no channels, no locks, no per-request allocation beyond what
//!   [`Codec::decode`] needs (it splits each payload off the shared read buffer);
//! - every complete frame in the read buffer is answered (same command id, same payload), and
//!   all the replies to one read go out in one write, so pipelined requests cost one syscall;
//! - a [`FrameError`](firefly::protocol::FrameError) (bad header, bad length) closes that
//!   connection only; unlike Firefly it sends no error frame first, and it has no idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use firefly::config::ProtocolSettings;
use firefly::protocol::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Spare read-buffer room kept before each read, so a read is never starved to a few bytes.
const READ_RESERVE: usize = 8 * 1024;

/// A running bare echo server. [`BareEcho::shutdown`] stops it and waits; dropping it stops it
/// without waiting (the accept task and every connection task are aborted).
#[derive(Debug)]
pub struct BareEcho {
    /// Where it listens (`127.0.0.1`, a port chosen by the OS).
    pub addr: SocketAddr,
    /// Tells the accept task to close the listener and every connection, then end.
    stop: Arc<Notify>,
    /// The accept task; it owns the connection tasks (a `JoinSet`), so aborting it ends them.
    accept: JoinHandle<()>,
}

impl BareEcho {
    /// Stops accepting, closes every connection and returns once all of them are closed.
    pub async fn shutdown(mut self) {
        // `notify_one` keeps a permit if the accept task is not waiting right now.
        self.stop.notify_one();
        // A cancelled or panicked accept task is stopped just the same.
        let _ = (&mut self.accept).await;
    }
}

impl Drop for BareEcho {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Starts a bare echo server on `127.0.0.1:0` on the current tokio runtime.
///
/// Frames are checked against `settings` (magic, versions, maximum frame size) exactly as a
/// Firefly listener with the same settings checks them.
pub async fn spawn(settings: ProtocolSettings) -> anyhow::Result<BareEcho> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(Notify::new());
    let accept = tokio::spawn(accept_loop(listener, Codec::new(&settings), stop.clone()));
    Ok(BareEcho { addr, stop, accept })
}

async fn accept_loop(listener: TcpListener, codec: Codec, stop: Arc<Notify>) {
    // Owning the connection tasks here means dropping (or aborting) this task ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.notified() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve(stream, codec.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning, and keep
                // serving the connections already open.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Echoes one connection until the peer closes it, an I/O error, or a bad frame.
async fn serve(mut stream: TcpStream, codec: Codec) {
    // Replies are written as soon as they are ready; Nagle would only add latency.
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut rbuf = BytesMut::with_capacity(READ_RESERVE);
    let mut wbuf = BytesMut::with_capacity(READ_RESERVE);
    loop {
        // Decoded payloads are dropped once echoed, so this reclaims the same allocation
        // instead of growing.
        rbuf.reserve(READ_RESERVE);
        match stream.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match codec.decode(&mut rbuf) {
                Ok(Some(frame)) => codec.encode(frame.command, &frame.payload, &mut wbuf),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !wbuf.is_empty() {
            if stream.write_all(&wbuf).await.is_err() {
                return;
            }
            wbuf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example: command 1, payload `asdfe`, default header.
    const EXAMPLE: [u8; 22] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, b'a', b's', b'd', b'f', b'e',
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echoes_the_spec_example_byte_for_byte() {
        let server = spawn(ProtocolSettings::default()).await.unwrap();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&EXAMPLE).await.unwrap();
        let mut back = [0u8; 22];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, EXAMPLE);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_split_and_pipelined_frames() {
        let server = spawn(ProtocolSettings::default()).await.unwrap();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // Three frames, the second one split across two writes.
        let all = EXAMPLE.repeat(3);
        s.write_all(&all[..30]).await.unwrap();
        s.write_all(&all[30..]).await.unwrap();
        let mut back = vec![0u8; all.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, all);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closes_on_wrong_magic() {
        let server = spawn(ProtocolSettings::default()).await.unwrap();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let mut bad = EXAMPLE;
        bad[0] = 1;
        s.write_all(&bad).await.unwrap();
        let mut back = [0u8; 22];
        // No reply, just the end of the stream.
        assert_eq!(s.read(&mut back).await.unwrap(), 0);
        // Other connections are unaffected.
        let mut good = TcpStream::connect(server.addr).await.unwrap();
        good.write_all(&EXAMPLE).await.unwrap();
        good.read_exact(&mut back).await.unwrap();
        assert_eq!(back, EXAMPLE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_closes_open_connections() {
        let server = spawn(ProtocolSettings::default()).await.unwrap();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // One round trip proves the connection task is running before the shutdown.
        s.write_all(&EXAMPLE).await.unwrap();
        let mut back = [0u8; 22];
        s.read_exact(&mut back).await.unwrap();
        server.shutdown().await;
        assert_eq!(s.read(&mut back).await.unwrap(), 0);
    }
}
