//! The commands the gate answers itself besides the session command: keep-alive, log-out and
//! hello (tagged push frames), on a real node with the real `lobby` module over real sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::{Client, ClientError};
use firefly::node::Node;
use firefly::protocol::session::{
    HELLO_COMMAND, Hello, KEEPALIVE_COMMAND, LOGOUT_COMMAND, PUSH_COMMAND, SESSION_COMMAND,
};
use firefly::protocol::{ErrorReply, Frame};
use firefly_testkit::start_cluster;
use serde_json::{Value, json};

/// One node serving the lobby: a resumable listener with a long grace window (a parked
/// session would stay for 60 s) and one with a 1 s idle timeout.
async fn node() -> Node {
    let yaml = r#"
version: 1
cluster: gate-commands
modules:
  lobby: { crate: modules/lobby }
nodes:
  gate:
    modules: [lobby]
    listen:
      - tcp: 127.0.0.1:0
        resume: { grace: 60s, buffer: 16 }
      - tcp: 127.0.0.1:0
        idle_timeout: 1s
"#;
    start_cluster(yaml, &["gate"]).await.1.remove(0)
}

async fn frame(client: &mut Client) -> Frame {
    client.recv_frame().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_is_answered_by_the_gate_and_keeps_an_idle_connection() {
    let node = node().await;
    let mut client = Client::connect(node.client_addrs()[1]).await.unwrap();
    // Answered with an empty frame on its own id, payload ignored, never `unknown_command`.
    assert!(
        client
            .request(KEEPALIVE_COMMAND, b"")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        client
            .request(KEEPALIVE_COMMAND, b"x")
            .await
            .unwrap()
            .is_empty()
    );
    let session: Value = client.call(116, &()).await.unwrap();
    // A client that sends nothing, opened after the last request: the listener closes it after
    // its idle timeout. Meanwhile keep-alives every 300 ms keep the first connection.
    let mut silent = Client::connect(node.client_addrs()[1]).await.unwrap();
    let closed = silent.wait_closed();
    tokio::pin!(closed);
    let mut ticks = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            frames = &mut closed => {
                assert!(frames.unwrap().is_empty());
                break;
            }
            _ = ticks.tick() => {
                assert!(client.request(KEEPALIVE_COMMAND, b"").await.unwrap().is_empty());
            }
        }
    }
    let again: Value = client.call(116, &()).await.unwrap();
    assert_eq!(again["session"], session["session"], "the same connection");
    // Without them the idle timeout closes it.
    assert!(client.wait_closed().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_ends_a_resumable_session_at_once() {
    let node = node().await;
    let addr = node.client_addrs()[0];
    let mut watcher = Client::connect(addr).await.unwrap();
    let joined: Value = watcher
        .call(108, &json!({"group": "watchers"}))
        .await
        .unwrap();
    assert_eq!(joined["ok"], true);

    let mut player = Client::connect(addr).await.unwrap();
    let ticket = player.session_ticket().await.unwrap();
    player.send(LOGOUT_COMMAND, b"").await.unwrap();
    let frames = player.wait_closed().await.unwrap();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].command, LOGOUT_COMMAND);
    assert!(frames[0].payload.is_empty());
    // The disconnect event fired now (the grace window is 60 s; the watcher's read times
    // out after 10).
    watcher.set_timeout(Duration::from_secs(10));
    let push = watcher.next_push().await.unwrap();
    assert_eq!(push.command, 199);
    let left: Value = rmp_serde::from_slice(&push.payload).unwrap();
    assert_eq!(left["left"], ticket.session);
    // Its token is gone with it.
    let err = Client::resume(addr, &ticket.token).await.err().unwrap();
    assert_eq!(err.server().unwrap().code, "resume_failed", "{err}");

    // A drop without log-out parks the session: no disconnect event meanwhile.
    let mut dropped = Client::connect(addr).await.unwrap();
    let ticket = dropped.session_ticket().await.unwrap();
    drop(dropped);
    let (mut back, resumed) = Client::resume(addr, &ticket.token).await.unwrap();
    assert_eq!(resumed.session, ticket.session);
    back.send(LOGOUT_COMMAND, b"").await.unwrap();
    // (The fresh session `back` had before it resumed ends too. The two disconnect events
    // run on their own, so their pushes come in either order.)
    let mut left = Vec::new();
    while left.len() < 2 {
        let push = watcher.next_push().await.unwrap();
        let body: Value = rmp_serde::from_slice(&push.payload).unwrap();
        left.push(body["left"].as_u64().unwrap());
    }
    assert!(left.contains(&ticket.session), "{left:?}");
    assert!(left.iter().any(|&s| s != ticket.session), "{left:?}");
}

fn hello(push_frames: Option<bool>) -> Vec<u8> {
    rmp_serde::to_vec_named(&Hello { push_frames }).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_push_frames_tell_pushes_from_replies() {
    let node = node().await;
    let addr = node.client_addrs()[0];
    let notify = rmp_serde::to_vec_named(&json!({"topic": 104, "text": "same id"})).unwrap();

    // An old client (no hello): the push is a frame on its topic id, then the reply on the
    // command id — the same id, byte for byte as before.
    let mut old = Client::connect(addr).await.unwrap();
    old.send(104, &notify).await.unwrap();
    let (push, reply) = (frame(&mut old).await, frame(&mut old).await);
    assert_eq!((push.command, reply.command), (104, 104));
    let notice: Value = rmp_serde::from_slice(&push.payload).unwrap();
    assert_eq!(notice["text"], "same id");

    // A client that asked for push frames: the push is tagged, the reply is the only frame on
    // command 104.
    let mut new = Client::connect(addr).await.unwrap();
    let on: Hello = rmp_serde::from_slice(
        &new.request(HELLO_COMMAND, &hello(Some(true)))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(on.push_frames, Some(true));
    // An empty hello changes nothing and says what is in force.
    let now: Hello =
        rmp_serde::from_slice(&new.request(HELLO_COMMAND, b"").await.unwrap()).unwrap();
    assert_eq!(now.push_frames, Some(true));
    new.send(104, &notify).await.unwrap();
    let (push, reply) = (frame(&mut new).await, frame(&mut new).await);
    assert_eq!(push.command, PUSH_COMMAND);
    assert_eq!(&push.payload[..4], &104u32.to_be_bytes());
    let notice: Value = rmp_serde::from_slice(&push.payload[4..]).unwrap();
    assert_eq!(notice["text"], "same id");
    assert_eq!(reply.command, 104);
    let pushed: Value = rmp_serde::from_slice(&reply.payload).unwrap();
    assert_eq!(pushed["pushed"], true);

    // Pushes from other sessions, and those replayed after a resume, are tagged too.
    let ticket = new.session_ticket().await.unwrap();
    let group = json!({"group": "tagged"});
    let _: Value = new.call(108, &group).await.unwrap();
    drop(new);
    let say = json!({"group": "tagged", "topic": 700, "text": "while away"});
    let _: Value = old.call(110, &say).await.unwrap();
    let mut back = Client::connect(addr).await.unwrap();
    let _ = back
        .request(HELLO_COMMAND, &hello(Some(true)))
        .await
        .unwrap();
    let resume = rmp_serde::to_vec_named(&json!({"resume": ticket.token})).unwrap();
    back.send(SESSION_COMMAND, &resume).await.unwrap();
    assert_eq!(frame(&mut back).await.command, SESSION_COMMAND);
    let replayed = frame(&mut back).await;
    assert_eq!(replayed.command, PUSH_COMMAND);
    assert_eq!(&replayed.payload[..4], &700u32.to_be_bytes());
    let say = json!({"group": "tagged", "topic": 701, "text": "live"});
    let _: Value = old.call(110, &say).await.unwrap();
    let live = frame(&mut back).await;
    assert_eq!(live.command, PUSH_COMMAND);
    assert_eq!(&live.payload[..4], &701u32.to_be_bytes());

    // A bad hello is a `bad_request` error frame; the connection serves on.
    let err = back.request(HELLO_COMMAND, b"\xc1").await.unwrap_err();
    let ClientError::Server(ErrorReply { code, .. }) = err else {
        panic!("{err}")
    };
    assert_eq!(code, "bad_request");
    assert!(
        back.request(KEEPALIVE_COMMAND, b"")
            .await
            .unwrap()
            .is_empty()
    );
}
