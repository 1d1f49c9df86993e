//! The baseline: a bare tokio echo server speaking the same framing ("the ceiling").
//!
//! One task per connection; every complete frame in a read is answered, and the replies of
//! one read go out in one write — what a good hand-written server does, with nothing else.

use std::net::SocketAddr;

use bytes::BytesMut;
use firefly::config::ProtocolSettings;
use firefly::protocol::Codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running bare echo server; stops when dropped.
pub struct BareEcho {
    /// Where it listens.
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for BareEcho {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Starts a bare echo server on `127.0.0.1:0` on the current tokio runtime.
pub async fn spawn(settings: ProtocolSettings) -> anyhow::Result<BareEcho> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let codec = Codec::new(&settings);
    let accept = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let codec = codec.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut rbuf = BytesMut::with_capacity(4096);
                let mut wbuf = BytesMut::with_capacity(4096);
                loop {
                    match stream.read_buf(&mut rbuf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    loop {
                        match codec.decode(&mut rbuf) {
                            Ok(Some(frame)) => {
                                codec.encode(frame.command, &frame.payload, &mut wbuf)
                            }
                            Ok(None) => break,
                            Err(_) => return,
                        }
                    }
                    if stream.write_all(&wbuf).await.is_err() {
                        return;
                    }
                    wbuf.clear();
                }
            });
        }
    });
    Ok(BareEcho { addr, accept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echoes_the_spec_example_and_closes_on_bad_magic() {
        let server = spawn(ProtocolSettings::default()).await.unwrap();
        let example = [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, b'a', b's', b'd', b'f', b'e',
        ];
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&example).await.unwrap();
        let mut back = [0u8; 22];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, example);
        let mut bad = example;
        bad[0] = 1;
        s.write_all(&bad).await.unwrap();
        assert_eq!(s.read(&mut back).await.unwrap(), 0);
    }
}
