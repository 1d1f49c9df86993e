//! The shared session records against a real NATS server of the test's own.

use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use tokio::sync::watch;

use super::{RecordError, SharedSessions};
use crate::cluster::nats::Fabric;
use crate::cluster::nats::gone::Audience;
use crate::cluster::nats::jetstream::stream_safe;
use crate::cluster::trust::Refusal;
use crate::cluster::trust::authority::Credential;
use crate::config::{NatsAuth, NatsSpec};
use crate::sessions::SessionRecord;
use crate::test_services::private_nats_on;

fn record(user: &str) -> SessionRecord {
    SessionRecord {
        gate: 1,
        user: Some(user.to_owned()),
        groups: vec!["lobby".into()],
        token: ByteBuf::from(vec![7; 32]),
        grace_ms: 60_000,
        buffer: 8,
        ..SessionRecord::default()
    }
}

/// The shared records of `cluster` on the NATS server at `url`, with their writer running.
fn shared(url: &str, cluster: &str) -> (std::sync::Arc<SharedSessions>, watch::Sender<bool>) {
    let spec = NatsSpec {
        servers: vec![url.to_owned()],
        auth: NatsAuth::None,
    };
    let credential = Credential::issue(b"shared-test-secret-0123456789", cluster, "gate");
    let fabric = Fabric::new(spec, cluster, "gate", credential);
    let shared = SharedSessions::new(fabric, cluster);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(shared.clone().run_writer(1, stopped));
    (shared, stop)
}

/// Waits until `session`'s record is `user`'s.
async fn until_user(shared: &SharedSessions, session: u64, user: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = shared.load(session).await;
        if let Ok(Some((r, _))) = &now
            && r.user.as_deref() == Some(user)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "session {session}: {user}'s record not there within {within:?}: {:?}",
            now.map(|r| r.map(|(r, _)| r.user))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn cluster_names_that_differ_only_in_punctuation_get_streams_of_their_own() {
    assert_eq!(stream_safe("game1"), "game1");
    assert_ne!(stream_safe("x-y"), stream_safe("x_y"));
    assert_ne!(stream_safe("x_dy"), stream_safe("x-y"));
    assert_ne!(stream_safe("a__b"), stream_safe("a_b"));
    for name in ["x-y", "x_y", "a.b", "a b", "a>b"] {
        let safe = stream_safe(name);
        assert!(
            safe.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name} → {safe}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_x_y_and_x_underscore_y_keep_their_own_records_on_nats() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let store = dir.path().to_str().unwrap();
    let server = private_nats_on(port, &["-js", "-sd", store]);
    let (dash, _stop_dash) = shared(&server.url, "x-y");
    let (under, _stop_under) = shared(&server.url, "x_y");
    dash.save(1, Some(record("of x-y")));
    under.save(1, Some(record("of x_y")));
    until_user(&dash, 1, "of x-y", Duration::from_secs(10)).await;
    until_user(&under, 1, "of x_y", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nats_server_gets_the_stream_and_every_record_back_on_nats() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let store = dir.path().to_str().unwrap();
    let server = private_nats_on(port, &["-js", "-sd", store]);
    let url = server.url.clone();
    let (shared, _stop) = shared(&url, "restart");
    shared.save(1, Some(record("ada")));
    until_user(&shared, 1, "ada", Duration::from_secs(10)).await;

    // The server restarts: its memory stream is gone. Records written from now on are kept,
    // and so is the one written before (this gate still holds that session).
    drop(server);
    let _server = private_nats_on(port, &["-js", "-sd", store]);
    shared.save(2, Some(record("bob")));
    until_user(&shared, 2, "bob", Duration::from_secs(30)).await;
    until_user(&shared, 1, "ada", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_not_signed_by_a_node_of_the_cluster_are_refused_on_nats() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = private_nats_on(port, &["-js", "-sd", dir.path().to_str().unwrap()]);
    let (shared, _stop) = shared(&server.url, "sealed");
    shared.save(1, Some(record("ada")));
    until_user(&shared, 1, "ada", Duration::from_secs(10)).await;

    // Someone who may publish on the cluster's NATS writes a record of their own, unsigned:
    // with their token, it would hand them the session.
    let raw = async_nats::connect(&server.url).await.unwrap();
    let forged = rmp_serde::to_vec_named(&record("mallory")).unwrap();
    let subject = shared.stream.subject(&format!("s.{:016x}", 1u64));
    raw.request(subject.clone(), forged.into()).await.unwrap();
    let err = shared.load(1).await.unwrap_err();
    assert!(
        matches!(
            &err,
            RecordError::Refused {
                why: Refusal::Malformed(_),
                ..
            }
        ),
        "{err}"
    );

    // Nor does a record signed with a credential from another cluster secret pass.
    let spec = NatsSpec {
        servers: vec![server.url.clone()],
        auth: NatsAuth::None,
    };
    let stranger = Credential::issue(b"not-the-cluster-secret-987654321", "sealed", "gate");
    let impostor = SharedSessions::new(Fabric::new(spec, "sealed", "gate", stranger), "sealed");
    let (_stop_impostor, stopped) = watch::channel(false);
    tokio::spawn(impostor.clone().run_writer(9, stopped));
    impostor.save(1, Some(record("mallory")));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Its own reader refuses what its cluster's nodes write, and theirs refuse its.
        let theirs = shared.load(1).await;
        if let Err(RecordError::Refused {
            why: Refusal::NoCertificate { node },
            ..
        }) = &theirs
            && node == "gate"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}",
            theirs.map(|r| r.map(|(r, _)| r.user))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The gate's own next write is taken again.
    shared.save(1, Some(record("ada again")));
    until_user(&shared, 1, "ada again", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_session_gets_the_pushes_to_its_groups_user_and_everyone_its_gone_gate_missed_on_nats()
 {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = private_nats_on(port, &["-js", "-sd", dir.path().to_str().unwrap()]);
    let (shared, _stop) = shared(&server.url, "gone");
    // Both streams of the cluster live side by side (their subjects must not overlap).
    shared.save(1, Some(record("ada")));
    until_user(&shared, 1, "ada", Duration::from_secs(10)).await;
    let lobby = Audience::Group("lobby".into());
    let log = |audience: &Audience, topic: u32, gate: u16| {
        let shared = shared.clone();
        let audience = audience.clone();
        async move {
            shared
                .log_broadcast(gate, &audience, topic, b"x")
                .await
                .unwrap();
        }
    };
    // Logged before the session's record was last written: it was held then, so not missed.
    log(&lobby, 1, 1).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let ada = SessionRecord {
        at_ms: crate::wall::now_ms(),
        ..record("ada")
    };
    log(&lobby, 2, 1).await;
    log(&Audience::Group("other".into()), 3, 1).await;
    log(&Audience::User("ada".into()), 4, 1).await;
    log(&Audience::User("bob".into()), 5, 1).await;
    log(&Audience::All, 6, 1).await;
    log(&lobby, 7, 2).await; // for another gate's sessions
    log(&lobby, 8, 1).await;
    let missed = shared.missed(1, &ada, 8).await.unwrap();
    let topics: Vec<u32> = missed.pushes.iter().map(|(t, _)| *t).collect();
    assert_eq!((topics, missed.dropped), (vec![2, 4, 6, 8], 0));
    // Beyond its buffer, the newest are counted as dropped.
    let missed = shared.missed(1, &ada, 3).await.unwrap();
    let topics: Vec<u32> = missed.pushes.iter().map(|(t, _)| *t).collect();
    assert_eq!((topics, missed.dropped), (vec![2, 4, 6], 1));

    // An entry someone wrote on the cluster's NATS without a node's signature is skipped.
    let raw = async_nats::connect(&server.url).await.unwrap();
    let forged = rmp_serde::to_vec_named(&serde_json::json!({"at_ms": u64::MAX, "topic": 9, "payload": serde_bytes::ByteBuf::from(vec![1])})).unwrap();
    let subject = format!("firefly.gone.gone.1.g.{}", hex::encode("lobby"));
    raw.request(subject, forged.into()).await.unwrap();
    let missed = shared.missed(1, &ada, 8).await.unwrap();
    let topics: Vec<u32> = missed.pushes.iter().map(|(t, _)| *t).collect();
    assert_eq!(topics, vec![2, 4, 6, 8]);
}
