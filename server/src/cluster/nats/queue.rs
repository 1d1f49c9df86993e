//! Nodes with copies (`copies: any`, NATS only): any number of processes run one node, and
//! a request for it goes to one of them through a NATS queue group.
//!
//! Every copy joins the queue group `firefly.<cluster>.queue.<node>` and listens on
//! `firefly.<cluster>.events.<node>`. A request to the node (a gate's forwarded run, a
//! module's `call_node`) is one NATS request to the queue subject: NATS hands it to one
//! copy, which answers on the request's reply subject. Session events (connect, disconnect)
//! go to the events subject, so every copy hears them. A copy is added by starting it
//! (`firefly up --only <node>` on any machine): nothing else is edited, and a copy that stops
//! leaves the queue group with its NATS connection.
//!
//! A queue request is a link of one message, so it carries its own proof where a link proves
//! itself once: the sender's key, the master's certificate of it for the sender's name, and
//! its signature over the cluster, the target, a time and a fresh nonce and the message. A
//! copy refuses a request without a valid proof, one whose time is off by more than
//! [`CLOCK_SKEW`], or one whose nonce it has seen. The copy's answer is signed over the
//! request's nonce, so it cannot be forged or replayed either. A copy serves the message with
//! the same code as a link's messages (a session's requests in order, the same replies), so
//! the only difference between `to: [game]` over a queue group and over a link is who picks
//! the process.
//!
//! A gate sends one session's requests for a node as one run at a time (it waits for a run's
//! answer before it sends the next), so a session's requests run in order even when
//! consecutive runs land on different copies.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{Fabric, NatsError};
use crate::cluster::link::route::RpcError;
use crate::cluster::link::wire::{self, Msg};
use crate::cluster::trust::{Identity, Refusal, auth};
use crate::wall::now_ms;

/// How far a request's clock may be from the copy's (the cluster's one bound).
pub use crate::cluster::trust::CLOCK_SKEW;
/// Nonces a copy remembers (those of the last [`CLOCK_SKEW`] at most); past this many it
/// refuses requests until older ones expire, rather than forget one it might be replayed.
const MAX_NONCES: usize = 1 << 20;

/// A message with its sender's proof.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The sender's node name.
    from: String,
    /// The sender's clock (ms since the Unix epoch); 0 on an answer.
    stamp: u64,
    /// The request's nonce (an answer repeats its request's).
    nonce: ByteBuf,
    key: ByteBuf,
    cert: ByteBuf,
    proof: ByteBuf,
    /// The message, framed as on a link.
    body: ByteBuf,
}

/// What a request's proof signs.
fn request_parts<'a>(
    cluster: &'a str,
    to: &'a str,
    from: &'a str,
    stamp: &'a [u8; 8],
    nonce: &'a [u8],
    body: &'a [u8],
) -> [&'a [u8]; 7] {
    [
        b"firefly queue request",
        cluster.as_bytes(),
        to.as_bytes(),
        from.as_bytes(),
        stamp,
        nonce,
        body,
    ]
}

/// What an answer's proof signs.
pub(super) fn answer_parts<'a>(
    cluster: &'a str,
    from: &'a str,
    nonce: &'a [u8],
    body: &'a [u8],
) -> [&'a [u8]; 5] {
    [
        b"firefly queue answer",
        cluster.as_bytes(),
        from.as_bytes(),
        nonce,
        body,
    ]
}

pub(super) fn frame(msg: &Msg) -> ByteBuf {
    let mut buf = BytesMut::new();
    wire::encode(msg, &mut buf);
    ByteBuf::from(buf.to_vec())
}

fn unframe(body: &[u8]) -> Result<Msg, String> {
    let mut buf = BytesMut::from(body);
    match wire::decode(&mut buf) {
        Ok(Some(msg)) if buf.is_empty() => Ok(msg),
        Ok(_) => Err("not one whole message".into()),
        Err(err) => Err(err.to_string()),
    }
}

fn seal(identity: &Identity, to: &str, msg: &Msg) -> (Bytes, Vec<u8>) {
    seal_at(identity, to, msg, now_ms())
}

fn seal_at(identity: &Identity, to: &str, msg: &Msg, stamp: u64) -> (Bytes, Vec<u8>) {
    let nonce = auth::nonce();
    let body = frame(msg);
    let proof = identity.credential.prove(&request_parts(
        &identity.cluster,
        to,
        &identity.node,
        &stamp.to_be_bytes(),
        &nonce,
        &body,
    ));
    let sealed = envelope(identity, stamp, nonce.clone(), proof, body);
    (sealed, nonce)
}

/// `body` with this process's name, key and certificate and its `proof`, encoded.
pub(super) fn envelope(
    identity: &Identity,
    stamp: u64,
    nonce: Vec<u8>,
    proof: Vec<u8>,
    body: ByteBuf,
) -> Bytes {
    let (key, cert) = identity.credential.public();
    let envelope = Envelope {
        from: identity.node.clone(),
        stamp,
        nonce: ByteBuf::from(nonce),
        key: ByteBuf::from(key),
        cert: ByteBuf::from(cert),
        proof: ByteBuf::from(proof),
        body,
    };
    rmp_serde::to_vec(&envelope).unwrap_or_default().into()
}

/// Sends `msg` to one copy of `to` and waits for its answer, up to the RPC timeout.
pub(crate) async fn request(
    fabric: &Fabric,
    identity: &Identity,
    to: &str,
    msg: &Msg,
) -> Result<Msg, RpcError> {
    let unavailable = |reason: String| RpcError::Unavailable {
        node: to.to_owned(),
        reason,
    };
    let client = fabric
        .client()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let (bytes, nonce) = seal(identity, to, msg);
    let asked = client.request(fabric.queue_subject(to), bytes);
    let reply = match tokio::time::timeout(identity.rpc_timeout, asked).await {
        Err(_) => {
            return Err(RpcError::Timeout {
                node: to.to_owned(),
                timeout: identity.rpc_timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(unavailable(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    format!("no copy of `{to}` is on NATS")
                }
                _ => e.to_string(),
            }));
        }
        Ok(Ok(reply)) => reply,
    };
    let answer: Envelope = rmp_serde::from_slice(&reply.payload)
        .map_err(|e| unavailable(format!("an undecodable answer: {e}")))?;
    // Any copy may answer, but only with the master's certificate for this node's name.
    if answer.from != to || answer.nonce.as_slice() != nonce.as_slice() {
        return Err(unavailable("an answer for another request".into()));
    }
    let parts = answer_parts(&identity.cluster, to, &nonce, &answer.body);
    identity
        .credential
        .check_peer(
            &identity.cluster,
            to,
            &answer.key,
            &answer.cert,
            &parts,
            &answer.proof,
        )
        .map_err(|why| {
            crate::logs::warn_limited!(node = %to, "refused a queue answer: {why}");
            unavailable(format!("a forged answer ({why})"))
        })?;
    unframe(&answer.body).map_err(unavailable)
}

/// Sends a one-way `msg` to every copy of `to` (a session event) or, for other messages, to
/// one of them.
pub(crate) async fn publish(
    fabric: &Fabric,
    identity: &Identity,
    to: &str,
    msg: &Msg,
) -> Result<(), NatsError> {
    let client = fabric.client().await?;
    let subject = match msg {
        Msg::Event { .. } => fabric.events_subject(to),
        _ => fabric.queue_subject(to),
    };
    let (bytes, _) = seal(identity, to, msg);
    client
        .publish(subject.clone(), bytes)
        .await
        .map_err(|e| NatsError::request(&subject, e))
}

/// The nonces a copy has seen lately, with their times.
#[derive(Default)]
pub(super) struct Nonces {
    seen: HashMap<Vec<u8>, u64>,
}

impl Nonces {
    /// Records `nonce`; `false` if it was seen already or there is no room.
    fn fresh(&mut self, nonce: &[u8], stamp: u64, now: u64) -> bool {
        if self.seen.len() >= MAX_NONCES / 2 {
            let oldest = now.saturating_sub(2 * CLOCK_SKEW.as_millis() as u64);
            self.seen.retain(|_, at| *at >= oldest);
        }
        if self.seen.len() >= MAX_NONCES || self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_vec(), stamp);
        true
    }
}

/// Checks a request's envelope: the sender's name, and its message.
pub(super) fn open(
    identity: &Identity,
    nonces: &Mutex<Nonces>,
    payload: &[u8],
) -> Result<Opened, Refusal> {
    let e: Envelope =
        rmp_serde::from_slice(payload).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if e.nonce.len() < 16 {
        return Err(Refusal::Malformed(format!(
            "`{}` sent a short nonce",
            e.from
        )));
    }
    let stamp = e.stamp.to_be_bytes();
    let parts = request_parts(
        &identity.cluster,
        &identity.node,
        &e.from,
        &stamp,
        &e.nonce,
        &e.body,
    );
    identity.credential.check_peer(
        &identity.cluster,
        &e.from,
        &e.key,
        &e.cert,
        &parts,
        &e.proof,
    )?;
    let now = now_ms();
    if now.abs_diff(e.stamp) > CLOCK_SKEW.as_millis() as u64 {
        return Err(Refusal::ClockSkew {
            node: e.from,
            skew: CLOCK_SKEW,
        });
    }
    let fresh = nonces
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .fresh(&e.nonce, e.stamp, now);
    if !fresh {
        return Err(Refusal::Replayed { node: e.from });
    }
    Ok(Opened {
        msg: unframe(&e.body).map_err(Refusal::Malformed)?,
        from: e.from,
        nonce: e.nonce.into_vec(),
    })
}

pub(super) struct Opened {
    pub from: String,
    pub nonce: Vec<u8>,
    pub msg: Msg,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn identity(node: &str, secret: &[u8]) -> Identity {
        Identity::from_secret("q", node, secret, Duration::from_secs(1))
    }

    #[test]
    fn a_copy_takes_only_requests_proven_recent_and_new() {
        let secret = b"queue-test-secret-0123456789";
        let gate = identity("gate", secret);
        let copy = identity("game", secret);
        let nonces = Mutex::new(Nonces::default());
        let msg = Msg::Forward {
            id: 4,
            session: 1 << 48 | 9,
            command: 101,
            payload: ByteBuf::from(b"hi".to_vec()),
        };
        let (sealed, _) = seal(&gate, "game", &msg);
        let opened = open(&copy, &nonces, &sealed).unwrap();
        assert_eq!(opened.from, "gate");
        assert_eq!(opened.msg, msg);
        // The same bytes again: a replay.
        let err = open(&copy, &nonces, &sealed).err().unwrap();
        assert_eq!(
            err,
            Refusal::Replayed {
                node: "gate".into()
            }
        );
        // Sealed for another node, or by a process without this cluster's certificate.
        let (for_other, _) = seal(&gate, "other", &msg);
        let err = open(&copy, &nonces, &for_other).err().unwrap();
        assert_eq!(
            err,
            Refusal::FailedProof {
                node: "gate".into()
            }
        );
        let stranger = identity("gate", b"another-secret-0123456789");
        let (forged, _) = seal(&stranger, "game", &msg);
        let err = open(&copy, &nonces, &forged).err().unwrap();
        assert_eq!(
            err,
            Refusal::NoCertificate {
                node: "gate".into()
            }
        );
        // A node with the cluster's certificate for its own name cannot pose as another.
        let mut e: Envelope = rmp_serde::from_slice(&seal(&gate, "game", &msg).0).unwrap();
        e.from = "admin".into();
        let posed = rmp_serde::to_vec(&e).unwrap();
        let err = open(&copy, &nonces, &posed).err().unwrap();
        assert_eq!(
            err,
            Refusal::NoCertificate {
                node: "admin".into()
            }
        );
        // An old request (its time outside the window) is refused even if never seen.
        let long_ago = now_ms() - 2 * CLOCK_SKEW.as_millis() as u64;
        let (old, _) = seal_at(&gate, "game", &msg, long_ago);
        let err = open(&copy, &nonces, &old).err().unwrap();
        let skew = CLOCK_SKEW;
        assert_eq!(
            err,
            Refusal::ClockSkew {
                node: "gate".into(),
                skew
            }
        );
    }
}
