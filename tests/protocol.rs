//! The Firefly wire protocol against a real node on a real socket, served by the real `echo`
//! and `lobby` modules built from `modules/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::Duration;

use bytes::BytesMut;
use firefly::client::{Client, ClientError};
use firefly::config::ProtocolSettings;
use firefly::protocol::{Codec, ErrorReply};
use firefly_testkit::{addr, start_node, start_node_with, test_limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SPEC_EXAMPLE: [u8; 22] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, b'a', b's', b'd', b'f', b'e',
];

async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
        .await
        .expect("reply in time")
        .expect("read");
    buf
}

/// Reads until EOF (or reset); returns what came before it.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("server closes in time");
        match n {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn decode_all(bytes: &[u8]) -> Vec<firefly::protocol::Frame> {
    let codec = Codec::new(&ProtocolSettings::default());
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(f) = codec.decode(&mut buf).expect("valid frames") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "trailing bytes");
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_answers_the_spec_example_byte_for_byte() {
    let node = start_node(&["echo"]).await;
    let mut stream = TcpStream::connect(addr(&node)).await.unwrap();
    stream.write_all(&SPEC_EXAMPLE).await.unwrap();
    assert_eq!(
        read_exact(&mut stream, SPEC_EXAMPLE.len()).await,
        SPEC_EXAMPLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_writes_and_joined_in_one_write() {
    let node = start_node(&["echo"]).await;
    let mut stream = TcpStream::connect(addr(&node)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    // One frame, one byte per write.
    for byte in SPEC_EXAMPLE {
        stream.write_all(&[byte]).await.unwrap();
        stream.flush().await.unwrap();
    }
    assert_eq!(read_exact(&mut stream, 22).await, SPEC_EXAMPLE);
    // Three frames in one write, the last one split with the next write.
    let codec = Codec::new(&ProtocolSettings::default());
    let mut batch = BytesMut::new();
    codec.encode(1, b"first", &mut batch);
    codec.encode(1, b"", &mut batch);
    codec.encode(1, b"third", &mut batch);
    let (a, b) = batch.split_at(batch.len() - 3);
    stream.write_all(a).await.unwrap();
    stream.write_all(b).await.unwrap();
    let expected_len = batch.len();
    let frames = decode_all(&read_exact(&mut stream, expected_len).await);
    let payloads: Vec<&[u8]> = frames.iter().map(|f| &f.payload[..]).collect();
    assert_eq!(payloads, vec![&b"first"[..], b"", b"third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let node = start_node(&["echo", "lobby"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    // 200 requests sent before reading anything, alternating two modules.
    for i in 0u32..200 {
        if i % 2 == 0 {
            client.send(1, format!("msg-{i}").as_bytes()).await.unwrap();
        } else {
            let req = rmp_serde::to_vec_named(&serde_json::json!({"a": i, "b": 1})).unwrap();
            client.send(103, &req).await.unwrap();
        }
    }
    for i in 0u32..200 {
        let frame = client.recv_frame().await.unwrap();
        if i % 2 == 0 {
            assert_eq!(frame.command, 1);
            assert_eq!(&frame.payload[..], format!("msg-{i}").as_bytes());
        } else {
            assert_eq!(frame.command, 103);
            let v: serde_json::Value = rmp_serde::from_slice(&frame.payload).unwrap();
            assert_eq!(v["sum"], i64::from(i) + 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_at_once() {
    let node = start_node(&["echo"]).await;
    let target = addr(&node);
    let mut tasks = Vec::new();
    for c in 0..200 {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(target).await.unwrap();
            for i in 0..20 {
                let msg = format!("{c}:{i}");
                assert_eq!(
                    &client.request(1, msg.as_bytes()).await.unwrap()[..],
                    msg.as_bytes()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(node.gate_stats().requests.get(), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_gets_an_error_frame_and_the_connection_stays() {
    let node = start_node(&["echo"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let err = client.request(4242, b"?").await.unwrap_err();
    let reply = err.server().expect("an error frame");
    assert_eq!(reply.command, 4242);
    assert_eq!(reply.code, "unknown_command");
    assert!(reply.message.contains("4242"), "{}", reply.message);
    assert_eq!(
        &client.request(1, b"still here").await.unwrap()[..],
        b"still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_magic_closes_the_connection_without_reply() {
    let settings = ProtocolSettings {
        magic: [78, 37, 38, 48],
        protocol_version: 9,
        ..ProtocolSettings::default()
    };
    let node = start_node_with(&["echo"], test_limits(), settings.clone()).await;
    // Right header works.
    let mut good = Client::connect_with(addr(&node), &settings).await.unwrap();
    assert_eq!(&good.request(1, b"x").await.unwrap()[..], b"x");
    // Default (all-zero) header is wrong here.
    let mut bad = TcpStream::connect(addr(&node)).await.unwrap();
    bad.write_all(&SPEC_EXAMPLE).await.unwrap();
    assert!(read_to_close(&mut bad).await.is_empty());
    // Wrong protocol version alone is also refused.
    let mut frame = Codec::new(&settings).encode_to_bytes(1, b"x").to_vec();
    frame[4] = 8;
    let mut bad = TcpStream::connect(addr(&node)).await.unwrap();
    bad.write_all(&frame).await.unwrap();
    assert!(read_to_close(&mut bad).await.is_empty());
    assert_eq!(&good.request(1, b"y").await.unwrap()[..], b"y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lengths_get_an_error_frame_then_close_and_harm_no_one() {
    let settings = ProtocolSettings {
        max_frame: 1024,
        ..ProtocolSettings::default()
    };
    let node = start_node_with(&["echo"], test_limits(), settings.clone()).await;
    let mut bystander = Client::connect(addr(&node)).await.unwrap();
    for (length, code) in [
        (3u32, "bad_frame"),
        (0, "bad_frame"),
        (1029, "frame_too_large"),
        (u32::MAX, "frame_too_large"),
    ] {
        let mut stream = TcpStream::connect(addr(&node)).await.unwrap();
        // An earlier valid request on the same connection is still answered first.
        stream.write_all(&SPEC_EXAMPLE).await.unwrap();
        let mut header = vec![0u8; 9];
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(&1u32.to_be_bytes());
        stream.write_all(&header).await.unwrap();
        let frames = decode_all(&read_to_close(&mut stream).await);
        assert_eq!(frames.len(), 2, "length {length}");
        assert_eq!(&frames[0].payload[..], b"asdfe");
        assert_eq!(frames[1].command, u32::MAX);
        let reply = ErrorReply::from_msgpack(&frames[1].payload).unwrap();
        assert_eq!(reply.code, code, "length {length}");
        assert_eq!(&bystander.request(1, b"fine").await.unwrap()[..], b"fine");
    }
    // A payload exactly at the maximum is accepted.
    let big = vec![7u8; 1024];
    assert_eq!(bystander.request(1, &big).await.unwrap().len(), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let settings = ProtocolSettings {
        idle_timeout: Duration::from_secs(1),
        ..ProtocolSettings::default()
    };
    let node = start_node_with(&["echo"], test_limits(), settings).await;
    let mut idle = TcpStream::connect(addr(&node)).await.unwrap();
    let mut active = Client::connect(addr(&node)).await.unwrap();
    let started = std::time::Instant::now();
    // The idle one is closed; the active one, talking every 200 ms, is not.
    let closer = tokio::spawn(async move { read_to_close(&mut idle).await });
    while !closer.is_finished() {
        assert_eq!(&active.request(1, b"ping").await.unwrap()[..], b"ping");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "idle connection never closed"
        );
    }
    assert!(closer.await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(&active.request(1, b"alive").await.unwrap()[..], b"alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sees_server_close_as_closed() {
    let node = start_node(&["echo"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    client
        .send_raw(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17])
        .await
        .unwrap();
    assert!(matches!(
        client.recv_frame().await,
        Err(ClientError::Closed) | Err(ClientError::Io(_))
    ));
}
