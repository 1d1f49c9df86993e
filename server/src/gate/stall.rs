//! The write stall: a client that stops reading is disconnected instead of being waited on.
//!
//! A connection's task writes each batch of replies and pushes before it reads on, so a client
//! that never reads cannot make the gate buffer its replies (its own requests wait in its
//! socket), and pushes to it wait in its session's bounded queue (`OUTBOUND_QUEUE`; past it a
//! push fails with backpressure). What is left is the task itself, parked on a write forever
//! and holding the session: [`Stall`] bounds every write (and the close) by the listener's
//! `write_stall`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;

use super::transport::{Close, ReadError, Transport};
use crate::routing::Dispatcher;

/// A transport whose writes fail with `TimedOut` when the client takes in nothing of them for
/// `limit`.
pub(crate) struct Stall<T> {
    inner: T,
    limit: Duration,
    node: Arc<Dispatcher>,
    /// Set once a write stalled: the close then skips what it would write (a close frame, a
    /// flush), which could only stall again.
    stalled: bool,
}

impl<T: Transport> Stall<T> {
    /// `inner`, its writes bounded by `limit`; a stall is counted in `node`'s edge stats.
    pub fn new(inner: T, limit: Duration, node: Arc<Dispatcher>) -> Self {
        Self {
            inner,
            limit,
            node,
            stalled: false,
        }
    }
}

impl<T: Transport> Transport for Stall<T> {
    async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, ReadError> {
        self.inner.read(buf).await
    }

    async fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        if self.stalled {
            // The connection is over: a second wait would double the time the client holds
            // the session and count the one stall twice.
            return Err(stalled(self.limit));
        }
        match tokio::time::timeout(self.limit, self.inner.write(frames)).await {
            Ok(written) => written,
            Err(_) => {
                self.stalled = true;
                self.node
                    .gate_stats
                    .edge
                    .write_stalls
                    .fetch_add(1, Ordering::Relaxed);
                Err(stalled(self.limit))
            }
        }
    }

    async fn close(&mut self, why: Option<Close>) {
        if self.stalled {
            return;
        }
        let _ = tokio::time::timeout(self.limit, self.inner.close(why)).await;
    }
}

fn stalled(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the client read nothing for {limit:?} (write_stall)"),
    )
}
