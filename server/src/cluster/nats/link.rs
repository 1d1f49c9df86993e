//! The links over NATS: dialling a peer's process and accepting links from others, each a
//! byte stream whose bytes a pump moves between the link code and the link's two subjects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::sync::watch;

use super::{ANNOUNCE_EVERY, CHUNK, Fabric, GONE_AFTER, LINK_BUFFER, NatsError, token_ok};

impl Fabric {
    /// Opens a link to `peer`: the byte stream to run the handshake on. Only to the process
    /// announced as `peer` with the master's certificate for that name (by its instance): a
    /// process that claims the name without it is never asked, so it cannot answer in the
    /// real one's place.
    ///
    /// A peer not heard yet (this process, or the peer, has just started) is waited for, up to
    /// 800 ms (a process announces itself as it starts, then every second), within the 1 s
    /// the caller gives a dial.
    pub async fn dial(self: &Arc<Self>, peer: &str) -> Result<DuplexStream, NatsError> {
        let deadline = Instant::now() + Duration::from_millis(800);
        let instance = loop {
            if let Some(instance) = self.announced_instance(peer) {
                break instance;
            }
            if Instant::now() >= deadline {
                return Err(NatsError::NotThere {
                    peer: peer.to_owned(),
                    announced: false,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.dial_instance(peer, Some(&instance)).await
    }

    /// The process announced lately as `peer` (a node without copies runs one at a time).
    fn announced_instance(&self, peer: &str) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(peer)
            .filter(|s| s.at.elapsed() < GONE_AFTER)
            .map(|s| s.instance.clone())
    }

    /// Opens a link to `peer`, to its process `instance` if given (a node with copies is
    /// reached one copy at a time, by instance).
    pub async fn dial_instance(
        self: &Arc<Self>,
        peer: &str,
        instance: Option<&str>,
    ) -> Result<DuplexStream, NatsError> {
        let client = self.client().await?.clone();
        let id = hex::encode(&crate::cluster::trust::auth::nonce()[..12]);
        let inbox = self.subject("link", &format!("{}.{id}", self.node));
        let sub = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| NatsError::request(&inbox, e))?;
        let hello = format!("{} {} {id}", self.node, self.instance);
        let accept = match instance {
            Some(instance) => self.subject("accept", &format!("{peer}.{instance}")),
            None => self.subject("accept", peer),
        };
        let reply = client
            .request(accept.clone(), hello.into())
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => NatsError::NotThere {
                    peer: peer.to_owned(),
                    announced: true,
                },
                _ => NatsError::request(&accept, e),
            })?;
        let instance = String::from_utf8_lossy(&reply.payload).into_owned();
        let (mine, theirs) = tokio::io::duplex(LINK_BUFFER);
        let send = self.subject("link", &format!("{peer}.{id}"));
        tokio::spawn(pump(
            self.clone(),
            client,
            peer.to_owned(),
            instance,
            send,
            sub,
            theirs,
        ));
        Ok(mine)
    }

    /// Serves the links other processes open to this node: each accepted one is handed to
    /// `accept` as `(peer name, byte stream)`, as a TCP listener hands over connections.
    pub async fn accept(
        self: Arc<Self>,
        mut accept: impl FnMut(String, DuplexStream),
        mut stop: watch::Receiver<bool>,
    ) {
        let client = loop {
            match self.client().await {
                Ok(c) => break c.clone(),
                Err(err) => {
                    tracing::warn!(node = %self.node, "{err}; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        // Every process is dialled by instance, the one its signed announcements name: a
        // copy's name is shared by all copies, and a process claiming a name it holds no
        // certificate for must not answer links meant for the real one.
        let subject = self.subject("accept", &format!("{}.{}", self.node, self.instance));
        let mut requests = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(err) => {
                tracing::error!("NATS subscribe {subject}: {err}");
                return;
            }
        };
        tracing::info!(node = %self.node, "accepting node links on NATS ({subject})");
        loop {
            let msg = tokio::select! {
                msg = requests.next() => match msg { Some(m) => m, None => return },
                _ = stop.wait_for(|s| *s) => return,
            };
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            let mut parts = text.split(' ');
            let (Some(peer), Some(instance), Some(id), None, Some(reply)) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                msg.reply,
            ) else {
                crate::logs::warn_limited!("malformed NATS link request ignored");
                continue;
            };
            if ![peer, instance, id].iter().all(|t| token_ok(t)) {
                crate::logs::warn_limited!("malformed NATS link request ignored");
                continue;
            }
            let inbox = self.subject("link", &format!("{}.{id}", self.node));
            let sub = match client.subscribe(inbox).await {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!("NATS subscribe for a link: {err}");
                    continue;
                }
            };
            // Subscribed before answering, so the dialer's first bytes cannot be missed.
            if client
                .publish(reply, self.instance.clone().into())
                .await
                .is_err()
            {
                continue;
            }
            let (mine, theirs) = tokio::io::duplex(LINK_BUFFER);
            let send = self.subject("link", &format!("{peer}.{id}"));
            tokio::spawn(pump(
                self.clone(),
                client.clone(),
                peer.to_owned(),
                instance.to_owned(),
                send,
                sub,
                theirs,
            ));
            accept(peer.to_owned(), mine);
        }
    }
}

/// Moves one link's bytes between the link code's end of a duplex stream and NATS, until
/// either side closes or the peer's process is gone; then closes both.
async fn pump(
    fabric: Arc<Fabric>,
    client: async_nats::Client,
    peer: String,
    instance: String,
    send: String,
    mut sub: async_nats::Subscriber,
    end: DuplexStream,
) {
    let opened = Instant::now();
    let epoch = fabric.epoch.load(std::sync::atomic::Ordering::Acquire);
    let (mut rd, mut wr) = tokio::io::split(end);
    let outbound = async {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let chunk = buf.split().freeze();
                    if client.publish(send.clone(), chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let inbound = async {
        while let Some(msg) = sub.next().await {
            if msg.payload.is_empty() || wr.write_all(&msg.payload).await.is_err() {
                return;
            }
        }
    };
    let watch = async {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            if fabric.epoch.load(std::sync::atomic::Ordering::Acquire) != epoch {
                return;
            }
            if !fabric.alive(&peer, &instance, opened) {
                tracing::info!(%peer, "gone from NATS (not announced lately, or restarted): closing its link");
                return;
            }
        }
    };
    tokio::select! {
        _ = outbound => {}
        _ = inbound => {}
        _ = watch => {}
    }
    let _ = client.publish(send, Bytes::new()).await;
}
