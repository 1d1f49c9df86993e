//! Serving what arrives on a node link, whatever carried it: TCP and NATS links
//! ([`crate::cluster::link::listen`]) and the NATS queue group of a node with copies
//! ([`crate::cluster::nats::queue`]) all hand each message to [`handle`]. It keeps each
//! session's forwarded requests in order (one run at a time per session, bounded), answers
//! status and data requests, and takes a cluster change (`Deploy`) only when the master
//! signed it for this link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::cluster::inbound::Inbound;
use crate::cluster::link::wire::{self, Msg};
use crate::cluster::trust::{auth, authority};
use crate::protocol::{Answers, Collected, ErrorReply};

/// Who is on the other end of an accepted link, and what binds the master's signatures to it.
pub(crate) struct LinkAuth {
    /// The peer's node name, proven in the handshake.
    peer: String,
    /// This side's challenge nonce (the master's deploy signatures name it).
    nonce: Vec<u8>,
    /// The highest request id of a deploy accepted on this link: a signed deploy is good once.
    last_deploy: std::sync::atomic::AtomicU64,
}

impl LinkAuth {
    /// The sender of one proven message (a queue request): a link of its own, so no
    /// signature made for another link is good on it.
    pub(crate) fn new(peer: String) -> Self {
        LinkAuth {
            peer,
            nonce: auth::nonce(),
            last_deploy: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The sender proven in a link's handshake, `nonce` being this side's challenge.
    pub(crate) fn proven(peer: String, nonce: Vec<u8>) -> Self {
        LinkAuth {
            peer,
            nonce,
            last_deploy: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The peer's node name.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }
}

/// Whether a `Deploy` on this link carries the master's signature for this node, this link
/// and a request id not used before; else why not.
fn check_deploy(
    cluster: &Cluster,
    link: &LinkAuth,
    id: u64,
    module: &str,
    version: u32,
    wasm: &[u8],
    signature: &[u8],
) -> Result<(), &'static str> {
    use std::sync::atomic::Ordering;
    let me = cluster.identity();
    let digest = authority::deploy_digest(
        &me.cluster,
        &me.node,
        &link.nonce,
        id,
        module,
        version,
        wasm,
    );
    if link.peer != authority::MASTER {
        return Err("only the master may deploy");
    }
    if !me.credential.signed_by_master(&[&digest], signature) {
        return Err("not signed by the master's key");
    }
    if link.last_deploy.fetch_max(id, Ordering::AcqRel) >= id {
        return Err("a replayed deploy");
    }
    Ok(())
}

/// Most forwarded requests of one session served as one run.
const MAX_RUN: usize = 64;

/// Forwarded requests waiting for their session's earlier ones: one `Forward` or a gate's
/// `ForwardRun`, answered with `Reply` or `ReplyRun`.
pub(crate) struct Job {
    id: u64,
    run: bool,
    requests: Vec<(u32, bytes::Bytes)>,
}

impl Job {
    /// A `Forward`: one request, answered with a `Reply`.
    fn one(id: u64, command: u32, payload: serde_bytes::ByteBuf) -> Self {
        let requests = vec![(command, payload.into_vec().into())];
        Self {
            id,
            run: false,
            requests,
        }
    }

    /// A `ForwardRun`, answered with a `ReplyRun`.
    fn run(id: u64, requests: Vec<(u32, bytes::Bytes)>) -> Self {
        Self {
            id,
            run: true,
            requests,
        }
    }

    /// The job being served: its answers to come.
    fn open(&self) -> Open {
        Open {
            id: self.id,
            expected: self.requests.len(),
            answered: 0,
            answers: if self.run {
                Collect::Run(wire::RunReplies::default())
            } else {
                Collect::One(Collected::default())
            },
        }
    }

    /// The job answered without running: an `overloaded` error frame per request.
    fn refuse(self) -> Option<Msg> {
        let mut open = self.open();
        for (command, _) in &self.requests {
            let error = ErrorReply::new(
                *command,
                "overloaded",
                "too many requests of this session are waiting on this node",
            );
            open.answers.error(&error);
            open.answered += 1;
        }
        open.reply()
    }
}

/// A job being served: its answers so far.
struct Open {
    id: u64,
    expected: usize,
    answered: usize,
    answers: Collect,
}

/// Where a job's answers are collected: a run's encoded replies, or one request's answer.
enum Collect {
    Run(wire::RunReplies),
    One(Collected),
}

impl Collect {
    fn sink(&mut self) -> &mut dyn Answers {
        match self {
            Collect::Run(replies) => replies,
            Collect::One(one) => one,
        }
    }

    fn error(&mut self, reply: &ErrorReply) {
        self.sink().error(reply);
    }
}

impl Open {
    /// The message answering the job, once every request of it has its answer.
    fn reply(&mut self) -> Option<Msg> {
        if self.answered < self.expected {
            return None;
        }
        let id = self.id;
        Some(match &mut self.answers {
            Collect::Run(replies) => Msg::ReplyRun {
                id,
                replies: std::mem::take(replies),
            },
            Collect::One(one) => {
                let (pushes, result) = answer_of(std::mem::take(one), 0);
                Msg::Reply { id, pushes, result }
            }
        })
    }
}

/// One request's collected answer as a `Reply`'s fields.
pub(crate) fn answer_of(one: Collected, command: u32) -> wire::Answer {
    let pushes = one
        .pushes
        .into_iter()
        .map(|(topic, p)| (topic, serde_bytes::ByteBuf::from(p)))
        .collect();
    let result = match one.result {
        Some(Ok(reply)) => Ok(serde_bytes::ByteBuf::from(reply)),
        Some(Err(error)) => Err(error),
        None => Err(ErrorReply::new(
            command,
            firefly_abi::codes::INTERNAL,
            "no answer",
        )),
    };
    (pushes, result)
}

/// The answers of a session's queued jobs, served as one run: each goes to the job its
/// request came from, and a job's reply is queued on the link as soon as it is complete.
struct JobAnswers<'a> {
    open: &'a mut [Open],
    at: usize,
    tx: &'a wire::LinkTx,
}

impl JobAnswers<'_> {
    fn answered(&mut self) {
        let Some(job) = self.open.get_mut(self.at) else {
            return;
        };
        job.answered += 1;
        if let Some(msg) = job.reply() {
            let _ = wire::queue(self.tx, msg);
            self.at += 1;
        }
    }
}

impl Answers for JobAnswers<'_> {
    fn push(&mut self, topic: u32, payload: &[u8]) {
        if let Some(job) = self.open.get_mut(self.at) {
            job.answers.sink().push(topic, payload);
        }
    }

    fn reply(&mut self, command: u32, payload: &[u8]) {
        if let Some(job) = self.open.get_mut(self.at) {
            job.answers.sink().reply(command, payload);
        }
        self.answered();
    }

    fn error(&mut self, reply: &ErrorReply) {
        if let Some(job) = self.open.get_mut(self.at) {
            job.answers.error(reply);
        }
        self.answered();
    }
}

/// Per session, the queue of its forwarded requests on this link, while any are pending.
/// A gate may pipeline a session's requests; they must still run one at a time, in the order
/// they arrived (the link delivers them in order).
pub(crate) type SessionQueues = Arc<Mutex<HashMap<u64, mpsc::Sender<Job>>>>;

/// Jobs (a `Forward` or a `ForwardRun` each) one session may have waiting on one link. A gate
/// pipelines at most its `MAX_PIPELINE` per session, so only a misbehaving peer reaches this;
/// past it a job is answered at once with `overloaded` error frames instead of queued.
const SESSION_QUEUE: usize = 1024;

fn enqueue<I: Inbound>(
    session: u64,
    job: Job,
    node: &Arc<I>,
    tx: &wire::LinkTx,
    queues: &SessionQueues,
) {
    let mut map = queues.lock().unwrap_or_else(|p| p.into_inner());
    let job = match map.get(&session) {
        Some(queue) => match queue.try_send(job) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(job)) => {
                drop(map);
                tracing::warn!(
                    session,
                    "{SESSION_QUEUE} jobs of one session queued on a node link: answering `overloaded`"
                );
                if let Some(msg) = job.refuse() {
                    let _ = wire::queue(tx, msg);
                }
                return;
            }
            Err(mpsc::error::TrySendError::Closed(job)) => job,
        },
        None => job,
    };
    let (queue, mut jobs) = mpsc::channel(SESSION_QUEUE);
    let _ = queue.try_send(job);
    map.insert(session, queue);
    drop(map);
    let (node, tx, queues) = (node.clone(), tx.clone(), queues.clone());
    tokio::spawn(async move {
        // Every request queued by now, served as one run, so consecutive requests for one
        // module share one entry into it; `open` are their jobs, in order.
        let mut run: Vec<(u32, bytes::Bytes)> = Vec::new();
        let mut open: Vec<Open> = Vec::new();
        let take = |job: Job, run: &mut Vec<(u32, bytes::Bytes)>, open: &mut Vec<Open>| {
            let mut o = job.open();
            if o.expected == 0 {
                // Nothing to run (an empty run): answer at once.
                if let Some(msg) = o.reply() {
                    let _ = wire::queue(&tx, msg);
                }
                return;
            }
            run.extend(job.requests);
            open.push(o);
        };
        loop {
            while run.len() < MAX_RUN
                && let Ok(job) = jobs.try_recv()
            {
                take(job, &mut run, &mut open);
            }
            if run.is_empty() {
                // Retire the queue under the lock, so no job can slip in unseen.
                let mut map = queues.lock().unwrap_or_else(|p| p.into_inner());
                match jobs.try_recv() {
                    Ok(job) => {
                        drop(map);
                        take(job, &mut run, &mut open);
                        continue;
                    }
                    Err(_) => {
                        map.remove(&session);
                        return;
                    }
                }
            }
            let mut answers = JobAnswers {
                open: &mut open,
                at: 0,
                tx: &tx,
            };
            node.serve_run(session, &mut run, &mut answers).await;
            open.clear();
        }
    });
}

pub(crate) fn handle<I: Inbound>(
    msg: Msg,
    cluster: &Cluster,
    link: &LinkAuth,
    node: &Arc<I>,
    tx: &wire::LinkTx,
    queues: &SessionQueues,
) {
    match msg {
        Msg::Forward {
            id,
            session,
            command,
            payload,
        } if session != 0 => enqueue(session, Job::one(id, command, payload), node, tx, queues),
        Msg::ForwardRun {
            id,
            session,
            requests,
        } => enqueue(session, Job::run(id, requests), node, tx, queues),
        Msg::Forward {
            id,
            session,
            command,
            payload,
        } => {
            // No session, no order to keep.
            let (node, tx) = (node.clone(), tx.clone());
            tokio::spawn(async move {
                let one = node
                    .serve_one(session, command, payload.into_vec().into())
                    .await;
                let (pushes, result) = answer_of(one, command);
                let _ = wire::queue(&tx, Msg::Reply { id, pushes, result });
            });
        }
        Msg::Push {
            session,
            topic,
            payload,
        } => node.push(session, topic, payload.into_vec().into()),
        Msg::Event { session, connect } => {
            let node = node.clone();
            tokio::spawn(async move { node.session_event(session, connect).await });
        }
        Msg::Status { id } => {
            let _ = wire::queue(
                tx,
                Msg::StatusReply {
                    id,
                    json: node.status_json(),
                },
            );
        }
        Msg::Deploy {
            id,
            module,
            version,
            wasm,
            authority: signature,
        } => {
            if let Err(why) = check_deploy(cluster, link, id, &module, version, &wasm, &signature) {
                tracing::warn!(
                    claimed_sender = %link.peer,
                    %module,
                    version,
                    "refused a deploy: {why}"
                );
                let result = Err(format!(
                    "refused a deploy from `{}`: {why} (only deploys the master signed change a node)",
                    link.peer
                ));
                let _ = wire::queue(tx, Msg::DeployReply { id, result });
                return;
            }
            let (node, tx) = (node.clone(), tx.clone());
            tokio::spawn(async move {
                let result = node.deploy(module, version, wasm.into_vec()).await;
                let _ = wire::queue(&tx, Msg::DeployReply { id, result });
            });
        }
        Msg::DataRequest { id, body } => {
            let (node, tx) = (node.clone(), tx.clone());
            tokio::spawn(async move {
                let (status, body) = node.data_request(body.into_vec()).await;
                let body = serde_bytes::ByteBuf::from(body);
                let _ = wire::queue(&tx, Msg::DataReply { id, status, body });
            });
        }
        Msg::Sessions { id, op } => {
            let reply = node.sessions_op(&link.peer, op);
            if id != 0 {
                let bytes = rmp_serde::to_vec(&reply).unwrap_or_default();
                let _ = wire::queue(
                    tx,
                    Msg::Reply {
                        id,
                        pushes: Vec::new(),
                        result: Ok(serde_bytes::ByteBuf::from(bytes)),
                    },
                );
            }
        }
        other => crate::logs::warn_limited!("unexpected message from a peer: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::Identity;

    const SECRET: &[u8] = b"unit-test-secret-0123456789";

    fn signed(link: &LinkAuth, id: u64, version: u32) -> Vec<u8> {
        let master = authority::Credential::issue(SECRET, "demo", authority::MASTER);
        let digest =
            authority::deploy_digest("demo", "logic", &link.nonce, id, "echo", version, b"code");
        master.sign_as_master(&[&digest]).unwrap()
    }

    #[test]
    fn deploys_need_the_masters_signature_for_this_node_and_link_once() {
        let me = Identity::from_secret("demo", "logic", SECRET, Duration::from_secs(1));
        let cluster = Cluster::new(me, 2, Vec::new());
        let link = |peer: &str| LinkAuth {
            peer: peer.into(),
            nonce: auth::nonce(),
            last_deploy: std::sync::atomic::AtomicU64::new(0),
        };
        let from_master = link(authority::MASTER);
        let check = |l: &LinkAuth, id, version, sig: &[u8]| {
            check_deploy(&cluster, l, id, "echo", version, b"code", sig)
        };
        let good = signed(&from_master, 5, 2);
        assert_eq!(check(&from_master, 5, 2, &good), Ok(()));
        // The same signed message again: a replay.
        assert_eq!(check(&from_master, 5, 2, &good), Err("a replayed deploy"));
        // Altered version, or moved to another link: the signature no longer matches.
        let next = signed(&from_master, 6, 3);
        assert!(check(&from_master, 6, 2, &next).is_err());
        let other_link = link(authority::MASTER);
        assert_eq!(
            check(&other_link, 6, 3, &next),
            Err("not signed by the master's key")
        );
        // From a node's link, even with the master's signature.
        let from_gate = link("gate");
        let sig = signed(&from_gate, 1, 2);
        assert_eq!(
            check(&from_gate, 1, 2, &sig),
            Err("only the master may deploy")
        );
        assert_eq!(check(&from_master, 6, 3, &next), Ok(()));
    }
}
