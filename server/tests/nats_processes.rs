//! A real multi-process cluster on the NATS fabric (`cluster.transport: nats://...`): no node
//! has an `rpc:` address; two gates and two logic nodes find each other through a real
//! `nats-server` (its URL in `FIREFLY_TEST_NATS_URL`, which `.ci/run` sets).
//!
//! * Clients are served through either gate; a group push made on a logic node for a
//!   session of the other gate reaches it.
//! * A logic node killed with SIGKILL stops being announced; within a bounded time the gates
//!   route every request to the other logic node, and the restarted one rejoins.
//! * A process without the master's certificate for the name it claims cannot join over
//!   NATS, exactly as over TCP.
//! * The master's deploy travels over NATS and swaps the module; a deploy a node sends is
//!   refused and logged, as over TCP.
//! * NATS credentials given only in `firefly up`'s environment (`FIREFLY_NATS_TOKEN`) reach
//!   the master and every node (a private `nats-server` that wants a token).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::cluster::authority::Credential;
use firefly::cluster::nats::Fabric;
use firefly::cluster::wire::Msg;
use firefly::cluster::{Cluster, Identity, RpcError};
use firefly::config::{NatsAuth, NatsSpec};
use serde_json::{Value, json};

mod common;

use common::topology::Node;
use common::{Topology, Up, free_addr, node, rpc_counter, workspace};

const TOKEN: &str = "nats-admin-token-0123456789";
const SECRET: &str = "nats-cluster-secret-0123456789";

fn text_of(payload: &[u8]) -> String {
    let v: Value = rmp_serde::from_slice(payload).unwrap();
    v["text"].as_str().unwrap_or_default().to_owned()
}

/// A link from "here" over NATS to `target`, proving itself with `credential` as `claimed`
/// (its fabric runs while the sender lives). A process dials only a node it has heard
/// announced with a certificate of its own cluster's master: this waits (3 s at most) for
/// `logic-1`'s announcement, which a credential from another secret never accepts.
async fn link_as(
    cluster: &str,
    url: &str,
    claimed: &str,
    credential: Credential,
) -> (Cluster, tokio::sync::watch::Sender<bool>) {
    let spec = NatsSpec {
        servers: vec![url.to_owned()],
        auth: NatsAuth::None,
    };
    let fabric = Fabric::new(spec, cluster, claimed, credential.clone());
    let (stop, runs) = tokio::sync::watch::channel(false);
    tokio::spawn(fabric.clone().run(runs));
    let deadline = Instant::now() + Duration::from_secs(3);
    while !fabric.announced("logic-1") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cluster = Cluster::over_nats(
        Identity {
            cluster: cluster.into(),
            node: claimed.into(),
            credential,
            rpc_timeout: Duration::from_secs(10),
        },
        0,
        fabric,
        vec![("logic-1".into(), 3)],
    );
    (cluster, stop)
}

/// Waits until `client` has had `n` echo replies in a row, each failure coming within the rpc
/// timeout as `node_unavailable` or `timeout`, and the client staying connected; how many
/// requests failed.
async fn served_in_a_row(client: &mut Client, n: usize, within: Duration, what: &str) -> usize {
    let deadline = Instant::now() + within;
    let (mut ok_in_a_row, mut failures) = (0, 0);
    while ok_in_a_row < n {
        assert!(
            Instant::now() < deadline,
            "{what}: not served within {within:?} ({failures} failures)"
        );
        let sent = Instant::now();
        match client.request(1, b"ping").await {
            Ok(reply) => {
                assert_eq!(&reply[..], b"ping");
                ok_in_a_row += 1;
            }
            Err(err) => {
                let reply = err
                    .server()
                    .unwrap_or_else(|| panic!("{what}: the client must stay connected: {err}"));
                assert!(
                    ["node_unavailable", "timeout"].contains(&reply.code.as_str()),
                    "{what}: {reply:?}"
                );
                assert!(sent.elapsed() < Duration::from_secs(3), "{what}: {reply:?}");
                failures += 1;
                ok_in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gates_and_two_logic_nodes_without_addresses_survive_a_kill_on_nats() {
    let url = common::services::service_url("FIREFLY_TEST_NATS_URL");
    let dir = tempfile::tempdir().unwrap();
    let (admin, a, b) = (free_addr(), free_addr(), free_addr());
    let (a_metrics, b_metrics) = (free_addr(), free_addr());
    // Subjects are per cluster name: one of its own for each run on a shared NATS server.
    let cluster = format!("natsproc-{}", std::process::id());
    let both = ["logic-1", "logic-2"];
    let gate = |listen: SocketAddr, metrics: SocketAddr| {
        move |n: Node| {
            n.tcp(listen)
                .metrics(metrics)
                .route_by("1", &both, "round_robin")
                .route_by("101-199", &both, "least_loaded")
        }
    };
    let topology = Topology::new(&cluster)
        .nats(&url)
        .admin(admin)
        .rpc_timeout("2s")
        .module("echo")
        .module("lobby")
        .node("gate-a", gate(a, a_metrics))
        .node("gate-b", gate(b, b_metrics))
        .node("logic-1", |n| n.modules(&["echo", "lobby"]))
        .node("logic-2", |n| n.modules(&["echo", "lobby"]));
    assert!(!topology.yaml().contains("rpc:"));
    let topology = topology.write(dir.path());
    let up = |only: &str| {
        Up::new(&topology)
            .env("FIREFLY_ADMIN_TOKEN", TOKEN)
            .env("FIREFLY_CLUSTER_SECRET", SECRET)
            .args(["--only", only])
            .tag(format!("up {only}"))
    };
    // Two `firefly up`s, as on two machines: logic-2 alone (with the admin API: ready once its
    // master reached it over NATS), and the rest (ready once both gates answer).
    let mut lone = up("logic-2").ready_on_status(admin, TOKEN, 1).start();
    let _rest = up("gate-a,gate-b,logic-1")
        .arg("--no-admin")
        .ready_on_gate(&[a, b])
        .start();

    // Both gates serve (logic-1 may still be loading its modules at first).
    let mut on_a = Client::connect(a).await.unwrap();
    let mut on_b = Client::connect(b).await.unwrap();
    served_in_a_row(&mut on_a, 10, Duration::from_secs(240), "gate-a at start").await;
    served_in_a_row(&mut on_b, 10, Duration::from_secs(60), "gate-b at start").await;

    // A push to a session of gate-b, made on a logic node for a client of gate-a.
    // A logic node reaches a gate only once it has heard the gate announce itself, which the
    // cluster's readiness does not wait for (it covers the gates' routes): the first session
    // operation may find the gate not reachable yet (a known gap, in the README).
    for client in [&mut on_b, &mut on_a] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client
                .call::<_, Value>(108, &json!({"group": "team"}))
                .await
            {
                Ok(_) => break,
                Err(err) if Instant::now() < deadline => {
                    let reply = err.server().expect("the client stays connected");
                    assert_eq!(reply.code, "node_unavailable", "{reply:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("join: {err}"),
            }
        }
    }
    let say = json!({"group": "team", "topic": 800, "text": "over nats"});
    let _: Value = on_a.call(110, &say).await.unwrap();
    for client in [&mut on_b, &mut on_a] {
        let push = tokio::time::timeout(Duration::from_secs(10), client.next_push())
            .await
            .expect("the group push never came")
            .unwrap();
        assert_eq!(
            (push.command, text_of(&push.payload)),
            (800, "over nats".into())
        );
    }

    // Before the kill, each gate has sent requests to logic-2 (it knows it from its
    // announcements; round_robin alternates).
    for (client, metrics) in [(&mut on_a, a_metrics), (&mut on_b, b_metrics)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while rpc_counter(metrics, "", "calls", "logic-2").await == 0 {
            assert!(Instant::now() < deadline, "no request reached logic-2");
            served_in_a_row(client, 2, Duration::from_secs(10), "before the kill").await;
        }
    }
    let failed_before = rpc_counter(a_metrics, "", "failures", "logic-2").await;

    // Kill logic-2 the hard way, and its `firefly up` before it can restart it: no goodbye
    // on NATS, it just stops being announced.
    let before = common::status(admin, TOKEN).await;
    assert_eq!(node(&before, "logic-2")["healthy"], true, "{before}");
    let victim = node(&before, "logic-2")["pid"].as_u64().unwrap();
    let killed = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    lone.kill();
    // Within a bounded time (the 3 s of silence that marks a node gone, plus the rpc timeout
    // of a request caught on its link: about 5 s; 15 s allowed on a loaded machine) both
    // gates serve every request through logic-1.
    let failures = served_in_a_row(
        &mut on_a,
        20,
        Duration::from_secs(15),
        "gate-a after the kill",
    )
    .await;
    served_in_a_row(
        &mut on_b,
        20,
        Duration::from_secs(15),
        "gate-b after the kill",
    )
    .await;
    eprintln!(
        "served again {:?} after the kill ({failures} failures)",
        killed.elapsed()
    );
    assert!(
        rpc_counter(a_metrics, "", "failures", "logic-2").await > failed_before,
        "the kill went unnoticed: no request to logic-2 failed"
    );
    // And they keep doing so while logic-2 stays down.
    let steady = Instant::now() + Duration::from_secs(2);
    while Instant::now() < steady {
        assert_eq!(&on_a.request(1, b"alone").await.unwrap()[..], b"alone");
        assert_eq!(&on_b.request(1, b"alone").await.unwrap()[..], b"alone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!common::alive(victim));

    // logic-2 started again announces itself, its master reaches it, and both gates serve.
    let _lone = up("logic-2").ready_on_status(admin, TOKEN, 1).start();
    served_in_a_row(
        &mut on_a,
        20,
        Duration::from_secs(20),
        "gate-a after the restart",
    )
    .await;
    served_in_a_row(
        &mut on_b,
        20,
        Duration::from_secs(20),
        "gate-b after the restart",
    )
    .await;

    // A node's own credential, or a credential from another secret, does not make a link as
    // another name; a certificate the master gave works (the control).
    let status_of = |(cluster, _runs): (Cluster, tokio::sync::watch::Sender<bool>)| async move {
        let peer = cluster.peer("logic-1").unwrap().clone();
        peer.request(|id| Msg::Status { id }).await
    };
    let good = Credential::issue(SECRET.as_bytes(), &cluster, "probe");
    match status_of(link_as(&cluster, &url, "probe", good.clone()).await).await {
        Ok(Msg::StatusReply { json, .. }) => assert!(json.contains("echo"), "{json}"),
        other => panic!("a certified probe must be answered: {other:?}"),
    }
    let forged = Credential::issue(b"another-secret-0123456789", &cluster, "probe");
    for (claimed, credential) in [("probe", forged), ("gate-a", good)] {
        match status_of(link_as(&cluster, &url, claimed, credential).await).await {
            // Refused at the handshake; or, with another secret's credential, never dialled:
            // no announcement of `logic-1` checks out against that secret's master.
            Err(RpcError::Unavailable { reason, .. }) => assert!(
                reason.contains("refused") || reason.contains("not on NATS"),
                "{claimed}: {reason}"
            ),
            other => panic!("`{claimed}` without its certificate got in: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_from_the_environment_reach_the_master_and_every_node_on_nats() {
    // A NATS server that wants a token, given to `firefly up` only in its environment.
    let nats = common::services::private_nats(&["--auth", "env-token-0123456789"]);
    let dir = tempfile::tempdir().unwrap();
    let (admin, client) = (free_addr(), free_addr());
    let topology = Topology::new("natsenv")
        .nats(&nats.url)
        .admin(admin)
        .module("echo")
        .node("gate", |n| n.tcp(client).route("1", &["logic"]))
        .node("logic", |n| n.modules(&["echo"]))
        .write(dir.path());
    let _up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", SECRET)
        .env("FIREFLY_NATS_TOKEN", "env-token-0123456789")
        .ready_on_status(admin, TOKEN, 2)
        .start();
    let mut c = Client::connect(client).await.unwrap();
    served_in_a_row(&mut c, 5, Duration::from_secs(60), "through the gate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_masters_deploy_goes_over_nats_and_a_nodes_forged_one_is_refused_on_nats() {
    let url = common::services::service_url("FIREFLY_TEST_NATS_URL");
    let dir = tempfile::tempdir().unwrap();
    let (admin, client) = (free_addr(), free_addr());
    let cluster = format!("natsdeploy-{}", std::process::id());
    // `spare` is in the file but not started: the test holds what `firefly up` would give it.
    let topology = Topology::new(&cluster)
        .nats(&url)
        .admin(admin)
        .rpc_timeout("2s")
        .module("versioned")
        .node("gate", |n| n.tcp(client).route("301-302", &["logic"]))
        .node("logic", |n| n.modules(&["versioned"]))
        .node("spare", |n| n.modules(&["versioned"]))
        .write(dir.path());
    let up = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", SECRET)
        .args(["--only", "gate,logic"])
        .ready_on_status(admin, TOKEN, 2)
        .start();
    let whoami = || async {
        let mut c = Client::connect(client).await.unwrap();
        String::from_utf8(c.request(301, b"hi").await.unwrap().to_vec()).unwrap()
    };
    assert_eq!(whoami().await, "v1:hi");

    // A node's link (as `spare`, with its own credential) is accepted over NATS, but a deploy
    // it sends is not: it lacks the master's signature.
    let spare = Credential::issue(SECRET.as_bytes(), &cluster, "spare");
    let v2 = std::fs::read(
        firefly::builder::build_module(&workspace().join("modules").join("versioned-v2")).unwrap(),
    )
    .unwrap();
    let spec = NatsSpec {
        servers: vec![url.clone()],
        auth: NatsAuth::None,
    };
    let fabric = Fabric::new(spec, &cluster, "spare", spare.clone());
    // A process dials only a node it has heard announced (with its certificate).
    let (_stop_fabric, fabric_runs) = tokio::sync::watch::channel(false);
    tokio::spawn(fabric.clone().run(fabric_runs));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fabric.announced("logic") {
        assert!(Instant::now() < deadline, "logic never heard announced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let as_spare = Cluster::over_nats(
        Identity {
            cluster: cluster.clone(),
            node: "spare".into(),
            credential: spare.clone(),
            rpc_timeout: Duration::from_secs(20),
        },
        3,
        fabric,
        vec![("logic".into(), 2)],
    );
    let answer = as_spare
        .peer("logic")
        .unwrap()
        .request(|id| Msg::Deploy {
            id,
            module: "versioned".into(),
            version: 2,
            wasm: serde_bytes::ByteBuf::from(v2),
            authority: serde_bytes::ByteBuf::from(spare.prove(&[b"firefly deploy"])),
        })
        .await
        .unwrap();
    match answer {
        Msg::DeployReply {
            result: Err(why), ..
        } => assert!(why.contains("refused a deploy from `spare`"), "{why}"),
        other => panic!("a forged deploy was not refused: {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !up.logged(&["refused a deploy", "claimed_sender=spare"]) {
        assert!(Instant::now() < deadline, "the node logged no refusal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(whoami().await, "v1:hi");

    // The master's deploy (the module's code in many NATS messages, signed for the link)
    // swaps the module.
    common::deploy("versioned-v2", "versioned", &topology, TOKEN);
    assert_eq!(whoami().await, "v2:hi");
}
