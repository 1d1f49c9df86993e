//! Sessions across a cluster in one test process: two gates and a logic node. Broadcasts to a
//! list, a group and everyone; users, a second login, kicks; resumable sessions with a real
//! client that drops its TCP connection; WebSocket clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use bytes::BytesMut;
use firefly::client::Client;
use firefly::config::ProtocolSettings;
use firefly::node::Node;
use firefly::protocol::{Codec, ErrorReply, Frame};
use firefly_testkit::{free_addr, start_cluster, wait_until};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// gate-a (index 1): a resumable TCP listener (30 s, 4 pushes), a WebSocket listener and a
/// resumable TCP listener with a 1 s window. gate-b (index 2): a TCP listener and one without
/// single login. logic (index 3) hosts the lobby.
fn topology() -> String {
    let (a, b, l) = (free_addr(), free_addr(), free_addr());
    format!(
        r#"
version: 1
cluster: test
master:
  rpc_timeout: 2s
modules:
  lobby: {{ crate: modules/lobby }}
nodes:
  gate-a:
    rpc: {a}
    listen:
      - tcp: 127.0.0.1:0
        resume: {{ grace: 30s, buffer: 4 }}
      - ws: 127.0.0.1:0
      - tcp: 127.0.0.1:0
        resume: {{ grace: 1s }}
    routes:
      - {{ commands: "101-199", to: logic }}
  gate-b:
    rpc: {b}
    listen:
      - tcp: 127.0.0.1:0
      - tcp: 127.0.0.1:0
        single_login: false
    routes:
      - {{ commands: "101-199", to: logic }}
  logic: {{ rpc: {l}, modules: [lobby] }}
"#
    )
}

async fn cluster() -> Vec<Node> {
    start_cluster(&topology(), &["gate-a", "gate-b", "logic"])
        .await
        .1
}

async fn session_of(client: &mut Client) -> u64 {
    let me: Value = client.call(116, &()).await.unwrap();
    me["session"].as_u64().unwrap()
}

/// The next push, which must be on `topic`; returns its text.
async fn expect_push(client: &mut Client, topic: u32) -> String {
    let push = client.next_push().await.unwrap();
    assert_eq!(push.command, topic, "unexpected push");
    let body: Value = rmp_serde::from_slice(&push.payload).unwrap();
    body["text"].as_str().unwrap_or_default().to_owned()
}

async fn ok(client: &mut Client, command: u32, body: Value) {
    let reply: Value = client.call(command, &body).await.unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
}

/// The error frame a kicked client gets before its connection closes.
async fn expect_kicked(client: &mut Client) -> ErrorReply {
    let frames: Vec<Frame> = client.wait_closed().await.unwrap();
    let last = frames.last().expect("a kicked frame before the close");
    assert_eq!(last.command, u32::MAX);
    let reply = ErrorReply::from_msgpack(&last.payload).unwrap();
    assert_eq!(reply.code, "kicked", "{reply:?}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_lists_and_everyone_reach_sessions_on_every_gate() {
    let nodes = cluster().await;
    let (ga, gb) = (nodes[0].client_addrs()[0], nodes[1].client_addrs()[0]);
    let mut a1 = Client::connect(ga).await.unwrap();
    let mut b1 = Client::connect(gb).await.unwrap();
    let mut b2 = Client::connect(gb).await.unwrap();
    let (s_a1, s_b2) = (session_of(&mut a1).await, session_of(&mut b2).await);
    assert_eq!((s_a1 >> 48, s_b2 >> 48), (1, 2), "ids carry their gate");

    ok(&mut a1, 108, json!({"group": "red"})).await;
    ok(&mut b1, 108, json!({"group": "red"})).await;
    // The logic node pushes to the group's members on both gates.
    ok(
        &mut a1,
        110,
        json!({"group": "red", "topic": 500, "text": "hi red"}),
    )
    .await;
    assert_eq!(expect_push(&mut a1, 500).await, "hi red");
    assert_eq!(expect_push(&mut b1, 500).await, "hi red");
    // Everyone: b2 (in no group) gets this one first, so it got nothing from the group.
    ok(&mut b2, 111, json!({"topic": 501, "text": "all"})).await;
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(expect_push(c, 501).await, "all");
    }
    // After leaving, b1 is no longer reached by the group.
    ok(&mut b1, 109, json!({"group": "red"})).await;
    ok(
        &mut a1,
        110,
        json!({"group": "red", "topic": 502, "text": "still red"}),
    )
    .await;
    assert_eq!(expect_push(&mut a1, 502).await, "still red");
    ok(&mut b2, 111, json!({"topic": 503, "text": "all again"})).await;
    assert_eq!(expect_push(&mut b1, 503).await, "all again");
    assert_eq!(expect_push(&mut a1, 503).await, "all again");
    assert_eq!(expect_push(&mut b2, 503).await, "all again");
    // A list of sessions on two gates.
    ok(
        &mut b1,
        115,
        json!({"sessions": [s_a1, s_b2, 12345], "topic": 504, "text": "listed"}),
    )
    .await;
    assert_eq!(expect_push(&mut a1, 504).await, "listed");
    assert_eq!(expect_push(&mut b2, 504).await, "listed");

    // The framework's topics (0xFFFFFF00 and up: room_lost, the error command) are refused to
    // modules, whichever push they use, so a client can trust what arrives on them.
    for (command, body) in [
        (
            104,
            json!({"topic": 0xFFFF_FF01u32, "text": "forged room_lost"}),
        ),
        (
            110,
            json!({"group": "red", "topic": u32::MAX, "text": "forged error"}),
        ),
        (111, json!({"topic": 0xFFFF_FF00u32, "text": "forged"})),
    ] {
        let err = a1
            .call::<_, Value>(command, &body)
            .await
            .expect_err("a push on a reserved topic was accepted");
        let reply = err.server().expect("an error frame");
        assert_eq!(reply.code, "reserved_topic", "{reply:?}");
    }
    ok(&mut b2, 111, json!({"topic": 505, "text": "after"})).await;
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(expect_push(c, 505).await, "after", "no forged push arrived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_second_logins_and_kicks() {
    let nodes = cluster().await;
    let (ga, gb, gb_multi) = (
        nodes[0].client_addrs()[0],
        nodes[1].client_addrs()[0],
        nodes[1].client_addrs()[1],
    );
    let mut a1 = Client::connect(ga).await.unwrap();
    let mut b1 = Client::connect(gb).await.unwrap();
    let me: Value = a1.call(112, &json!({"user": "ada"})).await.unwrap();
    assert_eq!(me["user"], "ada", "the module reads back the bound user");
    let me: Value = a1.call(116, &()).await.unwrap();
    assert_eq!(me["user"], "ada");
    let me: Value = b1.call(116, &()).await.unwrap();
    assert_eq!(me["user"], Value::Null);

    // Push by user id, from a session on the other gate.
    ok(
        &mut b1,
        113,
        json!({"user": "ada", "topic": 505, "text": "psst"}),
    )
    .await;
    assert_eq!(expect_push(&mut a1, 505).await, "psst");

    // The same user logs in on gate-b: the session on gate-a is kicked.
    let me: Value = b1.call(112, &json!({"user": "ada"})).await.unwrap();
    assert_eq!(me["user"], "ada");
    let kicked = expect_kicked(&mut a1).await;
    assert!(kicked.message.contains("logged in"), "{}", kicked.message);
    ok(
        &mut b1,
        113,
        json!({"user": "ada", "topic": 506, "text": "here"}),
    )
    .await;
    assert_eq!(expect_push(&mut b1, 506).await, "here");

    // Where single login is off, two sessions of one user coexist.
    let mut c1 = Client::connect(gb_multi).await.unwrap();
    let mut c2 = Client::connect(gb_multi).await.unwrap();
    c1.call::<_, Value>(112, &json!({"user": "bob"}))
        .await
        .unwrap();
    c2.call::<_, Value>(112, &json!({"user": "bob"}))
        .await
        .unwrap();
    ok(
        &mut b1,
        113,
        json!({"user": "bob", "topic": 507, "text": "both"}),
    )
    .await;
    assert_eq!(expect_push(&mut c1, 507).await, "both");
    assert_eq!(expect_push(&mut c2, 507).await, "both");

    // A module kicks a session on another gate; its connection closes.
    let s_c2 = session_of(&mut c2).await;
    let connected = nodes[1].connections();
    let mut a2 = Client::connect(ga).await.unwrap();
    ok(&mut a2, 114, json!({"session": s_c2})).await;
    expect_kicked(&mut c2).await;
    assert!(
        wait_until(Duration::from_secs(10), || nodes[1].connections()
            < connected)
        .await
    );
    // Kicking a session that does not exist is an error the module sees.
    let err = a2
        .call::<_, Value>(114, &json!({"session": s_c2}))
        .await
        .unwrap_err();
    assert_eq!(err.server().unwrap().code, "no_such_session");
}

/// Sessions whose disconnect event fired, as told to the `watchers` group by the lobby.
async fn next_left(watcher: &mut Client) -> u64 {
    let push = watcher.next_push().await.unwrap();
    assert_eq!(push.command, 199);
    let body: Value = rmp_serde::from_slice(&push.payload).unwrap();
    body["left"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_resumes_its_session() {
    let nodes = cluster().await;
    let gate_a = &nodes[0];
    let (addr, short, gb) = (
        gate_a.client_addrs()[0],
        gate_a.client_addrs()[2],
        nodes[1].client_addrs()[0],
    );
    let mut watcher = Client::connect(gb).await.unwrap();
    ok(&mut watcher, 108, json!({"group": "watchers"})).await;
    let mut talker = Client::connect(gb).await.unwrap();

    let mut c = Client::connect(addr).await.unwrap();
    let ticket = c.session_ticket().await.unwrap();
    assert_eq!(ticket.session, session_of(&mut c).await);
    assert_eq!(ticket.token.len(), 48);
    ok(&mut c, 108, json!({"group": "blue"})).await;
    c.call::<_, Value>(112, &json!({"user": "cara"}))
        .await
        .unwrap();

    // The client drops its TCP connection: the session is parked, not ended.
    let (connections, sessions) = (gate_a.connections(), gate_a.sessions());
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || gate_a.connections()
            < connections)
        .await
    );
    assert_eq!(gate_a.sessions(), sessions, "parked sessions are kept");

    // Six pushes while it is away: four fit in its buffer, two are lost (and reported).
    for i in 0..6 {
        let say = json!({"group": "blue", "topic": 600, "text": format!("m{i}")});
        ok(&mut talker, 110, say).await;
    }
    // A request to gate-a over the same link, answered after those pushes were applied.
    let barrier = talker
        .call::<_, Value>(114, &json!({"session": (1u64 << 48) | 999_999}))
        .await
        .unwrap_err();
    assert_eq!(barrier.server().unwrap().code, "no_such_session");

    let (mut back, resumed) = Client::resume(addr, &ticket.token).await.unwrap();
    assert_eq!(resumed.session, ticket.session, "same session id");
    assert!(resumed.resumed);
    assert_eq!((resumed.replayed, resumed.dropped), (4, 2));
    assert_ne!(resumed.token, ticket.token, "a new token each time");
    for i in 0..4 {
        assert_eq!(expect_push(&mut back, 600).await, format!("m{i}"));
    }
    // Same user, same groups.
    let me: Value = back.call(116, &()).await.unwrap();
    assert_eq!(me, json!({"session": ticket.session, "user": "cara"}));
    ok(
        &mut talker,
        110,
        json!({"group": "blue", "topic": 601, "text": "back"}),
    )
    .await;
    assert_eq!(expect_push(&mut back, 601).await, "back");

    // Tokens are single use, and a made-up one is refused.
    for token in [
        ticket.token.clone(),
        format!("{:016x}{}", ticket.session, "0".repeat(32)),
    ] {
        let err = Client::resume(addr, &token).await.err().unwrap();
        assert_eq!(err.server().unwrap().code, "resume_failed", "{err}");
    }
    // A listener without `resume` says so.
    let err = talker.session_ticket().await.unwrap_err();
    assert_eq!(err.server().unwrap().code, "resume_disabled");

    // A session on the 1 s listener that never comes back ends when its window runs out;
    // the resumed session (still within its 30 s) is not among those that ended.
    let mut brief = Client::connect(short).await.unwrap();
    let gone = brief.session_ticket().await.unwrap().session;
    drop(brief);
    loop {
        let left = tokio::time::timeout(Duration::from_secs(20), next_left(&mut watcher))
            .await
            .expect("the expired session's disconnect event never came");
        assert_ne!(
            left, ticket.session,
            "disconnect fired before the window ran out"
        );
        if left == gone {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_speak_the_same_frames() {
    let nodes = cluster().await;
    let ws_addr = nodes[0].client_addrs()[1];
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/"))
        .await
        .unwrap();
    let codec = Codec::new(&ProtocolSettings::default());
    let frame = |command: u32, body: &Value| {
        let mut buf = BytesMut::new();
        codec.encode(command, &rmp_serde::to_vec_named(body).unwrap(), &mut buf);
        Message::Binary(buf.freeze())
    };
    // One frame per binary message, both ways; pipelined requests answered in order.
    for n in [1, 2, 3] {
        ws.send(frame(103, &json!({"a": n, "b": 10})))
            .await
            .unwrap();
    }
    for n in [1, 2, 3] {
        let f = next_ws_frame(&mut ws, &codec).await;
        assert_eq!(f.command, 103);
        let v: Value = rmp_serde::from_slice(&f.payload).unwrap();
        assert_eq!(v["sum"], n + 10);
    }
    ws.send(frame(108, &json!({"group": "web"}))).await.unwrap();
    assert_eq!(next_ws_frame(&mut ws, &codec).await.command, 108);

    // A push from a TCP client on the other gate reaches the WebSocket client.
    let mut tcp = Client::connect(nodes[1].client_addrs()[0]).await.unwrap();
    ok(
        &mut tcp,
        110,
        json!({"group": "web", "topic": 700, "text": "to the browser"}),
    )
    .await;
    let push = next_ws_frame(&mut ws, &codec).await;
    assert_eq!(push.command, 700);
    let v: Value = rmp_serde::from_slice(&push.payload).unwrap();
    assert_eq!(v["text"], "to the browser");

    // Errors are the same error frames.
    ws.send(frame(4242, &json!({}))).await.unwrap();
    let err = next_ws_frame(&mut ws, &codec).await;
    assert_eq!(err.command, u32::MAX);
    assert_eq!(
        ErrorReply::from_msgpack(&err.payload).unwrap().code,
        "unknown_command"
    );
    ws.close(None).await.unwrap();
}

async fn next_ws_frame(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    codec: &Codec,
) -> Frame {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("no message from the gate")
            .unwrap()
            .unwrap();
        match msg {
            Message::Binary(data) => {
                let mut buf = BytesMut::from(&data[..]);
                let f = codec.decode(&mut buf).unwrap().unwrap();
                assert!(buf.is_empty(), "exactly one frame per message");
                return f;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}
