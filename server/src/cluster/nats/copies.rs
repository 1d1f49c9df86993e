//! The copy's side of a node with copies (see [`super::queue`]): this process's share of the
//! node's NATS queue group and every session event, each message served exactly as a link's
//! message is ([`crate::cluster::serve`]), its answer sealed and sent back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::Fabric;
use super::queue::{Nonces, Opened, answer_parts, envelope, frame, open};
use crate::cluster::link::wire::{self, Msg};
use crate::cluster::serve::{LinkAuth, SessionQueues, handle};
use crate::cluster::{Cluster, Inbound};

/// A request being served: where its answer goes.
struct Waiting {
    reply: async_nats::Subject,
    nonce: Vec<u8>,
    id: u64,
}

/// Serves this copy's share of the queue group and every session event, until `stop`: each
/// request is handed to the node exactly as a link's message is, and its answer sealed and
/// sent back.
pub(crate) async fn serve<I: Inbound>(
    fabric: Arc<Fabric>,
    cluster: Arc<Cluster>,
    node: Arc<I>,
    mut stop: watch::Receiver<bool>,
) {
    let client = loop {
        match fabric.client().await {
            Ok(c) => break c.clone(),
            Err(err) => {
                tracing::warn!("{err}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let me = fabric.node().to_owned();
    let queue_subject = fabric.queue_subject(&me);
    let subscribed = async {
        let queue = client
            .queue_subscribe(queue_subject.clone(), me.clone())
            .await?;
        let events = client.subscribe(fabric.events_subject(&me)).await?;
        Ok::<_, async_nats::SubscribeError>((queue, events))
    };
    let (mut queue, mut events) = match subscribed.await {
        Ok(both) => both,
        Err(err) => {
            tracing::error!("NATS subscribe {queue_subject}: {err}");
            return;
        }
    };
    tracing::info!(node = %me, "serving as one copy of `{me}` (NATS queue group {queue_subject})");
    let identity = cluster.identity().clone();
    let nonces = Mutex::new(Nonces::default());
    let waiting: Arc<Mutex<HashMap<u64, Waiting>>> = Arc::default();
    let next = AtomicU64::new(1);
    let (tx, mut answers) = wire::link_queue();
    let queues = SessionQueues::default();
    // Answers come back from the shared link code with the ids given below.
    let answering = {
        let (waiting, client, identity) = (waiting.clone(), client.clone(), identity.clone());
        tokio::spawn(async move {
            while let Some(mut msg) = answers.recv().await {
                let Some(id) = msg.id_mut() else { continue };
                let Some(w) = waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(id) else {
                    continue;
                };
                *id = w.id;
                let body = frame(&msg);
                let proof = identity.credential.prove(&answer_parts(
                    &identity.cluster,
                    &identity.node,
                    &w.nonce,
                    &body,
                ));
                let sealed = envelope(&identity, 0, w.nonce, proof, body);
                let _ = client.publish(w.reply, sealed).await;
            }
        })
    };
    loop {
        let (msg, from_queue) = tokio::select! {
            m = queue.next() => match m { Some(m) => (m, true), None => break },
            m = events.next() => match m { Some(m) => (m, false), None => break },
            _ = stop.wait_for(|s| *s) => break,
        };
        let opened = match open(&identity, &nonces, &msg.payload) {
            Ok(o) => o,
            Err(why) => {
                crate::logs::warn_limited!(node = %me, "refused a queue request: {why}");
                continue;
            }
        };
        let Opened {
            from,
            nonce,
            msg: mut inner,
        } = opened;
        if !from_queue && !matches!(inner, Msg::Event { .. }) {
            crate::logs::warn_limited!(node = %me, %from, "ignored a {} on the events subject", inner.kind());
            continue;
        }
        if let (Some(reply), Some(id)) = (msg.reply, inner.id_mut())
            && *id != 0
        {
            let local = next.fetch_add(1, Ordering::Relaxed);
            waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(
                local,
                Waiting {
                    reply,
                    nonce,
                    id: *id,
                },
            );
            *id = local;
        }
        let link = LinkAuth::new(from);
        handle(inner, &cluster, &link, &node, &tx, &queues);
    }
    drop(tx);
    answering.abort();
}
