//! Sessions in a real multi-process cluster (`firefly up`): a group broadcast from a logic
//! node reaching TCP and WebSocket clients of the gate, and a client that drops its TCP
//! connection resuming its session with the pushes it missed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use firefly::client::Client;
use firefly::config::ProtocolSettings;
use firefly::master::http_request;
use firefly::protocol::{Codec, Frame};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::topology::Resume;
use common::{Listener, Topology, Up, free_addr, node, status};

const TOKEN: &str = "sessions-admin-token-0123456789";

/// The gate's live status as the master reports it.
async fn gate_status(admin: SocketAddr) -> Value {
    node(&status(admin, TOKEN).await, "gate")["live"].clone()
}

async fn ws_frame(
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
        if let Message::Binary(data) = msg {
            let mut buf = BytesMut::from(&data[..]);
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            assert!(buf.is_empty(), "one frame per message");
            return frame;
        }
    }
}

fn text_of(frame: &Frame) -> String {
    let v: Value = rmp_serde::from_slice(&frame.payload).unwrap();
    v["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_and_resume_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, g, l, tcp, ws_addr) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let (gate_metrics, logic_metrics) = (free_addr(), free_addr());
    let topology = Topology::new("sessproc")
        .admin(admin)
        .module("lobby")
        .node("gate", |n| {
            n.rpc(g)
                .listen(Listener {
                    resume: Some(Resume {
                        grace: "60s",
                        buffer: 16,
                    }),
                    ..Listener::tcp(tcp)
                })
                .ws(ws_addr)
                .metrics(gate_metrics)
                .route("101-199", &["logic"])
        })
        .node("logic", |n| {
            n.rpc(l).modules(&["lobby"]).metrics(logic_metrics)
        })
        .write(dir.path());
    let _up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env(
            "FIREFLY_CLUSTER_SECRET",
            "sessions-process-secret-0123456789",
        )
        .ready_on_status(admin, TOKEN, 2)
        .start();

    let codec = Codec::new(&ProtocolSettings::default());
    let encode = |command: u32, body: &Value| {
        let mut buf = BytesMut::new();
        codec.encode(command, &rmp_serde::to_vec_named(body).unwrap(), &mut buf);
        Message::Binary(buf.freeze())
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{ws_addr}/"))
        .await
        .unwrap();
    ws.send(encode(108, &json!({"group": "room"})))
        .await
        .unwrap();
    assert_eq!(ws_frame(&mut ws, &codec).await.command, 108);
    let mut talker = Client::connect(tcp).await.unwrap();
    let mut roamer = Client::connect(tcp).await.unwrap();
    let ticket = roamer.session_ticket().await.unwrap();
    let _: Value = roamer.call(108, &json!({"group": "room"})).await.unwrap();

    // The logic node's group push reaches the WebSocket and the TCP member.
    let say = |text: &str| json!({"group": "room", "topic": 800, "text": text});
    let _: Value = talker.call(110, &say("one")).await.unwrap();
    let push = ws_frame(&mut ws, &codec).await;
    assert_eq!((push.command, text_of(&push)), (800, "one".to_owned()));
    let push = roamer.next_push().await.unwrap();
    assert_eq!((push.command, text_of(&push)), (800, "one".to_owned()));

    // The roamer's TCP connection drops; the gate parks its session.
    drop(roamer);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = gate_status(admin).await;
        // talker + the WebSocket client are connected; the roamer's session is still held.
        if live["connections"] == 2 && live["sessions"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "never parked: {live}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: Value = talker.call(110, &say("two")).await.unwrap();
    let push = ws_frame(&mut ws, &codec).await;
    assert_eq!(text_of(&push), "two", "the WebSocket client got it live");

    // It comes back with its token and gets what it missed.
    let (mut back, resumed) = Client::resume(tcp, &ticket.token).await.unwrap();
    assert_eq!(resumed.session, ticket.session);
    assert_eq!((resumed.replayed, resumed.dropped), (1, 0));
    let push = back.next_push().await.unwrap();
    assert_eq!((push.command, text_of(&push)), (800, "two".to_owned()));
    let _: Value = talker.call(110, &say("three")).await.unwrap();
    assert_eq!(text_of(&back.next_push().await.unwrap()), "three");

    // Both nodes serve Prometheus metrics over plain HTTP.
    let (code, logic) = http_request(logic_metrics, "GET", "/metrics", "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let labels = "node=\"logic\",module=\"lobby\",version=\"1\",command=\"110\"";
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value(&logic, &format!("firefly_requests_total{{{labels}}}")),
        3.0
    );
    assert_eq!(
        value(&logic, &format!("firefly_request_errors_total{{{labels}}}")),
        0.0
    );
    let count = format!("firefly_request_duration_seconds_count{{{labels}}}");
    assert_eq!(value(&logic, &count), 3.0);
    let inf = format!("firefly_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}}");
    assert_eq!(value(&logic, &inf), 3.0);
    let (code, gate) = http_request(gate_metrics, "GET", "/metrics", "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(value(&gate, "firefly_sessions{node=\"gate\"}"), 3.0);
    assert_eq!(value(&gate, "firefly_connections{node=\"gate\"}"), 3.0);
    let forwarded = value(
        &gate,
        "firefly_rpc_calls_total{node=\"gate\",peer=\"logic\"}",
    );
    // Two joins and three group says were forwarded to the logic node.
    assert_eq!(forwarded, 5.0, "{gate}");
    assert_eq!(
        value(
            &gate,
            "firefly_rpc_failures_total{node=\"gate\",peer=\"logic\"}"
        ),
        0.0
    );
}
