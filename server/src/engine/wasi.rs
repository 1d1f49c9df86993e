//! WASI preview 1, deny by default: clocks, randomness and captured stdout/stderr only.
//!
//! `WasiCtxBuilder` starts with no preopened directories, no environment, no arguments and no
//! network; we add nothing to it but the two output streams, so ordinary crates (`std::time`,
//! `rand`, `println!`) work inside a module while files, environment and sockets do not exist.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;

/// Builds the WASI context of one instance of `module` (name and version for log tags).
pub(crate) fn context(module: &Arc<str>, version: u32) -> WasiP1Ctx {
    WasiCtxBuilder::new()
        .stdout(GuestOutput::new(module, version, Stream::Stdout))
        .stderr(GuestOutput::new(module, version, Stream::Stderr))
        .build_p1()
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

/// A guest's stdout or stderr: each line becomes a log event tagged with the module.
#[derive(Clone)]
struct GuestOutput {
    module: Arc<str>,
    version: u32,
    stream: Stream,
}

impl GuestOutput {
    fn new(module: &Arc<str>, version: u32, stream: Stream) -> Self {
        Self {
            module: module.clone(),
            version,
            stream,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            out: self.clone(),
            line: Vec::new(),
        })
    }
}

/// Longest line kept before it is emitted in pieces: a guest printing without newlines must
/// not grow host memory without bound.
const MAX_LINE: usize = 4096;

struct LineWriter {
    out: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        let (module, version) = (&*self.out.module, self.out.version);
        match self.out.stream {
            Stream::Stdout => {
                tracing::info!(target: "firefly::guest", module, version, stream = "stdout", "{text}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "firefly::guest", module, version, stream = "stderr", "{text}")
            }
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &byte in buf {
            self.line.push(byte);
            if byte == b'\n' || self.line.len() >= MAX_LINE {
                self.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
