//! The NATS fabric against a real NATS server: announcements, links, credentials.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use super::*;

/// The NATS server of `FIREFLY_TEST_NATS_URL` (`.ci/run` sets it); fails loudly without.
fn nats_url() -> String {
    std::env::var("FIREFLY_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "FIREFLY_TEST_NATS_URL is not set, and this test needs a NATS server. Run \
                 `.ci/run`, or set it (nats://127.0.0.1:4222) and run with NEXTEST_PROFILE=ci"
            )
        })
}

fn issue(cluster: &str, node: &str) -> crate::cluster::trust::authority::Credential {
    crate::cluster::trust::authority::Credential::issue(
        b"fabric-test-secret-0123456789",
        cluster,
        node,
    )
}

#[test]
fn announcements_must_be_signed_for_their_name_recent_and_new() {
    let spec = NatsSpec {
        servers: vec!["nats://127.0.0.1:1".into()],
        auth: NatsAuth::None,
    };
    let me = Fabric::new(spec.clone(), "c", "gate", issue("c", "gate"));
    let logic = Fabric::new(spec.clone(), "c", "logic", issue("c", "logic"));
    let first = logic.announcement();
    me.heard(&first).unwrap();
    assert!(me.announced("logic"));
    let node = |n: &str| n.to_owned();
    assert_eq!(
        me.heard(&first),
        Err(Refusal::Replayed {
            node: node("logic")
        })
    );
    // Another cluster's key, or a node announcing another name with its own key.
    let stranger = Fabric::new(
        spec.clone(),
        "c",
        "logic",
        crate::cluster::trust::authority::Credential::issue(
            b"another-secret-0123456789",
            "c",
            "logic",
        ),
    );
    assert_eq!(
        me.heard(&stranger.announcement()),
        Err(Refusal::NoCertificate {
            node: node("logic")
        })
    );
    let mut forged: Announce = rmp_serde::from_slice(&logic.announcement()).unwrap();
    forged.node = "other".into();
    let forged = rmp_serde::to_vec(&forged).unwrap();
    assert_eq!(
        me.heard(&forged),
        Err(Refusal::NoCertificate {
            node: node("other")
        })
    );
    assert!(!me.announced("other"));
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_carries_bytes_both_ways_and_ends_when_its_peer_falls_silent_on_nats() {
    let spec = NatsSpec {
        servers: vec![nats_url()],
        auth: NatsAuth::None,
    };
    let cluster = format!(
        "unit-{}-{}",
        std::process::id(),
        hex::encode(&crate::cluster::trust::auth::nonce()[..4])
    );
    let (a, b) = (
        Fabric::new(spec.clone(), &cluster, "a", issue(&cluster, "a")),
        Fabric::new(spec, &cluster, "b", issue(&cluster, "b")),
    );
    let (stop_a, run_a) = watch::channel(false);
    let (stop_b, run_b) = watch::channel(false);
    tokio::spawn(a.clone().run(run_a));
    tokio::spawn(b.clone().run(run_b.clone()));
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(b.clone().accept(
        move |peer, s| {
            let _ = accepted_tx.send((peer, s));
        },
        run_b,
    ));

    // A node nobody runs answers no link request.
    let err = a.dial("c").await.unwrap_err();
    assert!(
        matches!(&err, NatsError::NotThere { peer, announced: false } if peer == "c"),
        "{err}"
    );

    // `b` announces itself and accepts links (retry until its subscriptions are up).
    let mut near = within("b reachable", async {
        loop {
            if let Ok(s) = a.dial("b").await {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (peer, mut far) = within("accepted", accepted.recv()).await.unwrap();
    assert_eq!(peer, "a");
    within("announced", async {
        while !a.announced("b") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Bytes both ways, in order, a large write in many chunks.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    near.write_all(&big).await.unwrap();
    let mut got = vec![0u8; big.len()];
    within("big read", far.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, big);
    far.write_all(b"world").await.unwrap();
    let mut five = [0u8; 5];
    within("reply", near.read_exact(&mut five)).await.unwrap();
    assert_eq!(&five, b"world");

    // Closing one end closes the other.
    drop(near);
    let mut rest = Vec::new();
    within("eof after close", far.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());

    // A peer that stops announcing itself (killed, cut off) ends its links within
    // GONE_AFTER, and is no longer announced.
    let mut near = a.dial("b").await.unwrap();
    let (_, _far) = within("accepted again", accepted.recv()).await.unwrap();
    let silent = Instant::now();
    let _ = stop_b.send(true);
    let mut rest = Vec::new();
    let _ = within("eof after silence", near.read_to_end(&mut rest)).await;
    let took = silent.elapsed();
    assert!(took < GONE_AFTER + Duration::from_secs(1), "{took:?}");
    // Its last announcement expires within GONE_AFTER too (the link may have ended first,
    // closed from b's side as it stopped).
    while a.announced("b") {
        assert!(silent.elapsed() < GONE_AFTER + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_a.send(true);
}

use super::NatsError;
use crate::test_services::{private_nats, private_nats_on};

async fn connects(url: &str, auth: NatsAuth) -> Result<(), NatsError> {
    let spec = NatsSpec {
        servers: vec![url.to_owned()],
        auth,
    };
    Fabric::new(spec, "creds", "n", issue("creds", "n"))
        .client()
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topologys_nats_credentials_are_used_and_wrong_ones_refused_on_nats() {
    let token_server = private_nats(&["--auth", "the-token-0123"]);
    let url = token_server.url.clone();
    connects(&url, NatsAuth::Token("the-token-0123".into()))
        .await
        .unwrap();
    for wrong in [NatsAuth::Token("not-it".into()), NatsAuth::None] {
        let err = connects(&url, wrong).await.unwrap_err();
        assert!(
            matches!(&err, NatsError::Connect { servers, .. } if *servers == url),
            "{err}"
        );
    }
    let user_server = private_nats(&["--user", "firefly", "--pass", "s3cret-pw"]);
    let url = user_server.url.clone();
    let user = |password: &str| NatsAuth::UserPassword {
        user: "firefly".into(),
        password: password.into(),
    };
    connects(&url, user("s3cret-pw")).await.unwrap();
    assert!(connects(&url, user("wrong")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nats_connection_ends_the_links_and_new_ones_open_after_it_returns_on_nats() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let server = private_nats_on(port, &[]);
    let url = server.url.clone();
    let spec = NatsSpec {
        servers: vec![url],
        auth: NatsAuth::None,
    };
    let a = Fabric::new(spec.clone(), "lost", "a", issue("lost", "a"));
    let b = Fabric::new(spec, "lost", "b", issue("lost", "b"));
    let (_stop, run) = watch::channel(false);
    tokio::spawn(a.clone().run(run.clone()));
    tokio::spawn(b.clone().run(run.clone()));
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(b.clone().accept(
        move |_, s| {
            let _ = accepted_tx.send(s);
        },
        run,
    ));
    let dial = || async {
        loop {
            if let Ok(s) = a.dial("b").await {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut near = within("first link", dial()).await;
    let mut far = within("accepted", accepted.recv()).await.unwrap();
    near.write_all(b"one").await.unwrap();
    let mut three = [0u8; 3];
    within("bytes", far.read_exact(&mut three)).await.unwrap();

    // The server goes away and comes back on the same port: the old link ends (bytes may
    // have been lost in between), and a new one works.
    drop(server);
    let mut rest = Vec::new();
    let _ = within("the link ends", near.read_to_end(&mut rest)).await;
    let _server = private_nats_on(port, &[]);
    let mut near = tokio::time::timeout(Duration::from_secs(20), dial())
        .await
        .expect("no new link within 20 s of the server's return");
    let mut far = within("accepted again", accepted.recv()).await.unwrap();
    near.write_all(b"two").await.unwrap();
    within("bytes again", far.read_exact(&mut three))
        .await
        .unwrap();
    assert_eq!(&three, b"two");
}
