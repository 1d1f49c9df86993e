//! A minimal HTTP/1.1 client for the master's admin API: what `firefly status`, `stop`,
//! `deploy`, `rollback` and `versions` (and the tests) talk to the master with.
//!
//! One request per connection (`Connection: close`) with a bearer token; the whole answer is
//! read, then split into status line and body: the admin API answers small JSON documents.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one request without a body to the admin API at `addr` (`firefly status`,
/// `firefly stop`), waiting up to 10 s; returns the status code and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
) -> anyhow::Result<(u16, String)> {
    http_request_with_body(addr, method, path, token, &[], Duration::from_secs(10)).await
}

/// Like [`http_request`], sending `body` (`firefly deploy` uploads a module) and waiting up to
/// `timeout` for the answer.
pub async fn http_request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("the admin API at {addr} did not answer"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response from {addr}"))?;
    Ok((code, body.to_owned()))
}
