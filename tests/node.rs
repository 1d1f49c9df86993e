//! Embedding a node: a caller binds the sockets itself and decides when the node stops.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use firefly::config::{ListenerKind, ListenerSpec, ProtocolSettings};
use firefly::node::{ModuleToLoad, Node, NodeConfig, Sockets};
use firefly_testkit::{cache_dir, module_wasm, test_limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An address no socket here can bind (TEST-NET-1): had the node bound from its
/// configuration, it would have failed to start.
fn unbindable() -> std::net::SocketAddr {
    "192.0.2.1:9".parse().unwrap()
}

#[tokio::test]
async fn a_node_serves_on_sockets_its_caller_bound_and_stops_when_told() {
    let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (client_addr, metrics_addr) = (client.local_addr().unwrap(), metrics.local_addr().unwrap());
    let config = NodeConfig {
        name: "embedded".into(),
        index: 0,
        rpc: None,
        routes: Vec::new(),
        cluster: None,
        modules: vec![ModuleToLoad {
            name: "echo".into(),
            wasm: module_wasm("echo"),
            limits: test_limits(),
            version: 1,
        }],
        listeners: vec![ListenerSpec {
            kind: ListenerKind::Tcp,
            addr: unbindable(),
            protocol: ProtocolSettings::default(),
        }],
        cache_dir: Some(cache_dir()),
        storage: None,
        metrics: Some(unbindable()),
        metrics_token: None,
        module_hosts: Default::default(),
    };
    let sockets = Sockets {
        clients: vec![client],
        rpc: None,
        metrics: Some(metrics),
    };
    let node = Node::start_on(config, sockets).await.unwrap();
    assert_eq!(node.client_addrs(), [client_addr]);
    assert_eq!(node.metrics_addr(), Some(metrics_addr));

    let mut c = firefly::client::Client::connect(client_addr).await.unwrap();
    let reply: String = c.call(1, "ping").await.unwrap();
    assert_eq!(reply, "ping");

    let mut http = TcpStream::connect(metrics_addr).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("firefly_requests_total"), "{body}");

    // The caller's stop signal: here a oneshot, in a game a signal or a cancelled token.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(node.serve_until(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(2),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !serving.is_finished(),
        "the node stopped before it was told to"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the node did not stop after its stop signal")
        .unwrap();
    assert!(
        TcpStream::connect(client_addr).await.is_err(),
        "the client listener still accepts after the node stopped"
    );
}

#[tokio::test]
async fn sockets_that_do_not_match_the_listeners_are_refused() {
    let mut config = firefly::node::NodeConfig {
        name: "mismatch".into(),
        index: 0,
        rpc: None,
        routes: Vec::new(),
        cluster: None,
        modules: Vec::new(),
        listeners: Vec::new(),
        cache_dir: None,
        storage: None,
        metrics: None,
        metrics_token: None,
        module_hosts: Default::default(),
    };
    config.listeners.push(ListenerSpec {
        kind: ListenerKind::Tcp,
        addr: unbindable(),
        protocol: ProtocolSettings::default(),
    });
    let sockets = Sockets {
        clients: vec![
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ],
        ..Sockets::default()
    };
    let err = Node::start_on(config, sockets)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("2 client sockets given for 1 configured listeners"),
        "{err:#}"
    );
}
