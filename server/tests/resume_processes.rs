//! A resume token works on any gate of a cluster on the NATS fabric (its URL in
//! `FIREFLY_TEST_NATS_URL`, a server with JetStream, which `.ci/run` starts).
//!
//! Three `firefly up`s, as on three machines: gate-a, gate-b, and the master with the logic
//! node. A client of gate-a, logged in and in a group, drops; it resumes on gate-b (gate-a
//! hands the session over) with the same id, user and group and the push it missed; pushes
//! addressed to it through gate-a follow it. Then gate-b is killed with SIGKILL: a push sent
//! meanwhile is kept in the session's shared record, pushes to its group, its user and
//! everyone are logged for the gone gate, and the client resumes on gate-a again, getting the
//! same session, user, group and all four pushes back, in order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::{Duration, Instant};

use firefly::client::Client;
use serde_json::{Value, json};

mod common;

use common::topology::{Node, Resume};
use common::{Listener, Topology, Up, free_addr};

const TOKEN: &str = "resume-admin-token-0123456789";
const SECRET: &str = "resume-cluster-secret-0123456789";

/// A gauge of a node's `/metrics` (summed over its labels).
async fn gauge(metrics: std::net::SocketAddr, name: &str) -> u64 {
    let (code, body) = firefly::master::http_request(metrics, "GET", "/metrics", "")
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn text_of(payload: &[u8]) -> String {
    let v: Value = rmp_serde::from_slice(payload).unwrap();
    v["text"].as_str().unwrap_or_default().to_owned()
}

async fn next_text(client: &mut Client, what: &str) -> (u32, String) {
    let push = tokio::time::timeout(Duration::from_secs(15), client.next_push())
        .await
        .unwrap_or_else(|_| panic!("{what}: the push never came"))
        .unwrap();
    (push.command, text_of(&push.payload))
}

/// Calls `command` until the logic node answers (it may still be loading its modules).
async fn call_until_served(client: &mut Client, command: u32, body: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let answer: Result<Value, _> = client.call(command, body).await;
        match answer {
            Ok(v) => return v,
            Err(err) => {
                assert!(Instant::now() < deadline, "never served: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_gate_live_and_after_its_gate_died_on_nats() {
    let url = common::services::service_url("FIREFLY_TEST_NATS_URL");
    let dir = tempfile::tempdir().unwrap();
    let (admin, a, b, a_metrics) = (free_addr(), free_addr(), free_addr(), free_addr());
    let cluster = format!("resumeproc-{}", std::process::id());
    let gate = |listen: std::net::SocketAddr, metrics: std::net::SocketAddr| {
        move |n: Node| {
            n.listen(Listener {
                resume: Some(Resume {
                    grace: "60s",
                    buffer: 16,
                }),
                ..Listener::tcp(listen)
            })
            .metrics(metrics)
            .route("101-199", &["logic"])
        }
    };
    let topology = Topology::new(&cluster)
        .nats(&url)
        .admin(admin)
        .rpc_timeout("2s")
        .module("lobby")
        .node("gate-a", gate(a, a_metrics))
        .node("gate-b", gate(b, free_addr()))
        .node("logic", |n| n.modules(&["lobby"]))
        .write(dir.path());
    let up = |only: &str| {
        Up::new(&topology)
            .env("FIREFLY_ADMIN_TOKEN", TOKEN)
            .env("FIREFLY_CLUSTER_SECRET", SECRET)
            .args(["--only", only])
            .tag(format!("up {only}"))
    };
    let _core = up("logic").ready_on_status(admin, TOKEN, 1).start();
    let _up_a = up("gate-a").arg("--no-admin").ready_on_gate(&[a]).start();
    let mut up_b = up("gate-b").arg("--no-admin").ready_on_gate(&[b]).start();

    let mut roamer = Client::connect(a).await.unwrap();
    let me = call_until_served(&mut roamer, 112, &json!({"user": "ann"})).await;
    let id = me["session"].as_u64().unwrap();
    let _: Value = roamer.call(108, &json!({"group": "room"})).await.unwrap();
    let ticket = roamer.session_ticket().await.unwrap();
    assert_eq!(ticket.session, id);
    let mut talker = Client::connect(b).await.unwrap();
    call_until_served(&mut talker, 105, &json!(null)).await;
    // A session gate-b issued itself: once gate-b is gone (below), only the shared record says
    // which gate took it over.
    let mut native = Client::connect(b).await.unwrap();
    let bea = call_until_served(&mut native, 112, &json!({"user": "bea"})).await;
    let native_id = bea["session"].as_u64().unwrap();
    let native_ticket = native.session_ticket().await.unwrap();
    drop(native);
    let say = |text: &str| json!({"group": "room", "topic": 800, "text": text});
    let tell = |text: &str| json!({"session": id, "topic": 801, "text": text});
    // Links open on first use: one push through each gate first, so that what follows
    // does not wait for a link to be made.
    let _: Value = talker.call(108, &json!({"group": "room"})).await.unwrap();
    let _: Value = talker.call(110, &say("warm")).await.unwrap();
    assert_eq!(
        next_text(&mut roamer, "warm-up").await,
        (800, "warm".into())
    );
    assert_eq!(
        next_text(&mut talker, "warm-up").await,
        (800, "warm".into())
    );
    let _: Value = talker.call(109, &json!({"group": "room"})).await.unwrap();

    // The roamer's connection drops; gate-a parks the session and keeps what it misses.
    drop(roamer);
    let deadline = Instant::now() + Duration::from_secs(20);
    while gauge(a_metrics, "firefly_connections").await != 0 {
        assert!(Instant::now() < deadline, "gate-a never saw the roamer go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: Value = talker.call(110, &say("missed")).await.unwrap();
    // The group push is one-way from the logic node to gate-a: give it time to land there
    // before the hand-over (a group push still in flight at the hand-over is lost).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // It comes back on gate-b: gate-a hands the session over.
    let (mut roamer, resumed) = Client::resume(b, &ticket.token).await.unwrap();
    assert_eq!(resumed.session, id, "the same session");
    assert!(resumed.resumed);
    assert_eq!((resumed.replayed, resumed.dropped), (1, 0));
    assert_eq!(
        next_text(&mut roamer, "replay").await,
        (800, "missed".into())
    );
    let who: Value = roamer.call(116, &json!(null)).await.unwrap();
    assert_eq!(
        (who["session"].as_u64(), &who["user"]),
        (Some(id), &json!("ann"))
    );
    // Its group, on its new gate; and a push to its id (issued by gate-a) follows it.
    let _: Value = talker.call(110, &say("live")).await.unwrap();
    assert_eq!(next_text(&mut roamer, "group").await, (800, "live".into()));
    let _: Value = talker.call(106, &tell("by id")).await.unwrap();
    assert_eq!(next_text(&mut roamer, "by id").await, (801, "by id".into()));
    // The token it had is spent.
    assert!(Client::resume(a, &ticket.token).await.is_err());

    // Now gate-b dies the hard way, with its `firefly up` (nothing restarts it).
    let token = roamer.session_ticket().await.unwrap().token;
    // gate-b's process is the only child of its `firefly up`.
    let children = std::process::Command::new("pgrep")
        .args(["-P", &up_b.pid().to_string()])
        .output()
        .unwrap();
    let victim = String::from_utf8(children.stdout).unwrap();
    let victim = victim.trim();
    assert!(
        !victim.is_empty() && !victim.contains('\n'),
        "gate-b's pid: {victim:?}"
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-9", victim])
            .status()
            .unwrap()
            .success()
    );
    up_b.kill();
    drop(roamer);
    drop(talker);
    // Until gate-b is known gone (3 s without announcements), a push would go to it.
    tokio::time::sleep(firefly::cluster::nats::GONE_AFTER + Duration::from_secs(2)).await;
    let mut talker = Client::connect(a).await.unwrap();
    let _: Value = call_until_served(&mut talker, 106, &tell("while away")).await;
    // Pushes to its group, its user and everyone name no session: they are logged for the
    // gone gate, and the gate that takes the session over replays them too.
    let _: Value = talker.call(110, &say("group away")).await.unwrap();
    let whisper = json!({"user": "ann", "topic": 802, "text": "user away"});
    let _: Value = talker.call(113, &whisper).await.unwrap();
    let _: Value = talker
        .call(111, &json!({"topic": 803, "text": "all away"}))
        .await
        .unwrap();
    // The log is written one-way by the logic node: give it time to land.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The roamer comes back on gate-a, from the session's shared record.
    let (mut roamer, resumed) = Client::resume(a, &token).await.unwrap();
    assert_eq!(resumed.session, id, "the same session after its gate died");
    assert_eq!((resumed.replayed, resumed.dropped), (4, 0));
    assert_eq!(
        next_text(&mut roamer, "kept push").await,
        (801, "while away".into())
    );
    assert_eq!(
        next_text(&mut roamer, "group push").await,
        (800, "group away".into())
    );
    assert_eq!(
        next_text(&mut roamer, "user push").await,
        (802, "user away".into())
    );
    assert_eq!(
        next_text(&mut roamer, "push to all").await,
        (803, "all away".into())
    );
    let who: Value = roamer.call(116, &json!(null)).await.unwrap();
    assert_eq!(
        (who["session"].as_u64(), &who["user"]),
        (Some(id), &json!("ann"))
    );
    let _: Value = talker.call(110, &say("back")).await.unwrap();
    assert_eq!(
        next_text(&mut roamer, "group again").await,
        (800, "back".into())
    );
    let _: Value = talker.call(106, &tell("home")).await.unwrap();
    assert_eq!(next_text(&mut roamer, "home").await, (801, "home".into()));

    // gate-b's own session, resumed on gate-a from its record: the logic node finds it
    // there (it asked gate-b, dead, for its user until gate-b came back).
    let (mut native, resumed) = Client::resume(a, &native_ticket.token).await.unwrap();
    assert_eq!(resumed.session, native_id);
    let who: Value = native.call(116, &json!(null)).await.unwrap();
    assert_eq!(
        (who["session"].as_u64(), &who["user"]),
        (Some(native_id), &json!("bea"))
    );

    // The shared NATS server outlives this run: its stream of session records goes.
    let nats = async_nats::connect(&url).await.unwrap();
    let stream = firefly::cluster::nats::sessions::stream_name(&cluster);
    let answer = nats
        .request(format!("$JS.API.STREAM.DELETE.{stream}"), "".into())
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    let log = firefly::cluster::nats::gone::stream_name(&cluster);
    let answer = nats
        .request(format!("$JS.API.STREAM.DELETE.{log}"), "".into())
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["success"], true, "{answer}");
}
