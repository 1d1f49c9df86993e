//! The inbound side of node-to-node links: accept them (TCP listener, NATS), authenticate
//! both ways, then hand every message to [`crate::cluster::serve`], as the NATS queue group
//! of a node with copies does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::route::LinkError;
use super::stream::{LinkStream, read_msg, write_msg};
use super::wire::{self, Msg};
use crate::cluster::Cluster;
use crate::cluster::inbound::Inbound;
use crate::cluster::serve::{LinkAuth, SessionQueues, handle};
use crate::cluster::trust::{Refusal, auth, authority};

/// How long a peer has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts peer connections on `listener` until `shutdown`.
pub(crate) async fn serve<I: Inbound>(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    node: Arc<I>,
    mut shutdown: watch::Receiver<bool>,
) {
    let links: LinkCount = Arc::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (cluster, node, shutdown, links) = (cluster.clone(), node.clone(), shutdown.clone(), links.clone());
                    tokio::spawn(async move { connection(stream, peer.to_string(), cluster, node, shutdown, links).await });
                }
                Err(err) => {
                    tracing::warn!("rpc accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

/// Serves the links peers open over NATS until `shutdown` (the same handshake and messages
/// as [`serve`]'s TCP connections).
pub(crate) async fn serve_nats<I: Inbound>(
    fabric: Arc<crate::cluster::nats::Fabric>,
    cluster: Arc<Cluster>,
    node: Arc<I>,
    shutdown: watch::Receiver<bool>,
) {
    let links: LinkCount = Arc::default();
    let stop = shutdown.clone();
    fabric
        .accept(
            move |peer, stream| {
                let (cluster, node, shutdown, links) = (
                    cluster.clone(),
                    node.clone(),
                    shutdown.clone(),
                    links.clone(),
                );
                let from = format!("{peer} over NATS");
                tokio::spawn(connection(stream, from, cluster, node, shutdown, links));
            },
            stop,
        )
        .await;
}

/// Open accepted links per peer node: a peer is gone when its last one closes.
type LinkCount = Arc<Mutex<HashMap<String, usize>>>;

async fn handshake(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    cluster: &Cluster,
    rbuf: &mut BytesMut,
) -> Result<LinkAuth, LinkError> {
    let id = cluster.identity();
    let nonce = auth::nonce();
    write_msg(
        stream,
        &Msg::Challenge {
            cluster: id.cluster.clone(),
            nonce: serde_bytes::ByteBuf::from(nonce.clone()),
        },
    )
    .await?;
    let Msg::Hello {
        cluster: theirs,
        node,
        nonce: their_nonce,
        key,
        cert,
        proof,
    } = read_msg(stream, rbuf).await?
    else {
        return Err(LinkError::Protocol("expected a hello"));
    };
    if theirs != id.cluster {
        return Err(LinkError::OtherCluster {
            node,
            theirs,
            ours: id.cluster.clone(),
        });
    }
    if their_nonce.len() < 16 {
        let why = format!("peer claiming to be `{node}` sent a short nonce");
        return Err(Refusal::Malformed(why).into());
    }
    let parts = authority::hello_parts(&id.cluster, &node, &nonce, &their_nonce);
    id.credential
        .check_peer(&id.cluster, &node, &key, &cert, &parts, &proof)?;
    let (my_key, my_cert) = id.credential.public();
    let my_proof = id.credential.prove(&authority::welcome_parts(
        &id.cluster,
        &id.node,
        &node,
        &nonce,
        &their_nonce,
    ));
    write_msg(
        stream,
        &Msg::Welcome {
            node: id.node.clone(),
            key: serde_bytes::ByteBuf::from(my_key),
            cert: serde_bytes::ByteBuf::from(my_cert),
            proof: serde_bytes::ByteBuf::from(my_proof),
        },
    )
    .await?;
    Ok(LinkAuth::proven(node, nonce))
}

async fn connection<I: Inbound, S: LinkStream>(
    mut stream: S,
    addr: String,
    cluster: Arc<Cluster>,
    node: Arc<I>,
    mut shutdown: watch::Receiver<bool>,
    links: LinkCount,
) {
    let mut rbuf = BytesMut::with_capacity(4096);
    let link = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut stream, &cluster, &mut rbuf),
    )
    .await
    {
        Ok(Ok(link)) => Arc::new(link),
        Ok(Err(reason)) => {
            crate::logs::warn_limited!(%addr, "refused a node-to-node connection: {reason}");
            let reason = reason.to_string();
            let _ = write_msg(&mut stream, &Msg::Refused { reason }).await;
            return;
        }
        Err(_) => {
            crate::logs::warn_limited!(%addr, "refused a node-to-node connection: handshake timed out");
            return;
        }
    };
    let peer = link.peer().to_owned();
    tracing::debug!(%peer, %addr, "peer connected");
    *links
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(peer.clone())
        .or_default() += 1;
    let (mut reader, writer) = stream.halves();
    let (tx, rx) = wire::link_queue();
    let writer_task = tokio::spawn(wire::write_loop(writer, rx));
    let queues: SessionQueues = Arc::default();
    'conn: loop {
        loop {
            match wire::decode(&mut rbuf) {
                Ok(Some(msg)) => handle(msg, &cluster, &link, &node, &tx, &queues),
                Ok(None) => break,
                Err(err) => {
                    crate::logs::warn_limited!(%peer, "bad frame from peer: {err}");
                    break 'conn;
                }
            }
        }
        rbuf.reserve(wire::READ_SPARE);
        tokio::select! {
            read = reader.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(tx);
    let _ = writer_task.await;
    tracing::debug!(%peer, "peer disconnected");
    let last = {
        let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
        let open = links.entry(peer.clone()).or_default();
        *open = open.saturating_sub(1);
        let last = *open == 0;
        if last {
            links.remove(&peer);
        }
        last
    };
    // Not on this node's own shutdown: its sessions end with it.
    if last && !*shutdown.borrow() {
        node.peer_gone(&peer);
    }
}
