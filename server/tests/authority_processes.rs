//! Node authority and per-cluster state, with real `firefly up` processes.
//!
//! * A node cannot change the cluster: holding what a node is given (its own credential),
//!   a link to another node as that node is accepted, but a deploy sent over it is refused
//!   and logged with the claimed sender, and nothing changes; claiming to be the master with
//!   it is refused at the handshake. The master's own deploy still works.
//! * Two clusters in one folder keep separate registries; a cluster refuses another
//!   cluster's state directory, and the earlier one-per-folder layout, with what to do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use firefly::client::Client;
use firefly::cluster::authority::Credential;
use firefly::cluster::wire::Msg;
use firefly::cluster::{Cluster, Identity, RpcError};

mod common;

use common::{Topology, Up, free_addr, workspace};

const TOKEN: &str = "authority-admin-token-0123456789";
const SECRET: &str = "authority-cluster-secret-0123456789";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Node `name`'s version of module `versioned`, from the master's `/status`.
async fn serving(admin: SocketAddr, name: &str) -> Option<u64> {
    let status = common::status(admin, TOKEN).await;
    common::node(&status, name)["live"]["modules"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "versioned"))
        .and_then(|m| m["version"].as_u64())
}

/// What `versioned` answers on command 301 (it names its version).
async fn whoami(gate: SocketAddr) -> String {
    let mut client = Client::connect(gate).await.unwrap();
    String::from_utf8(client.request(301, b"hi").await.unwrap().to_vec()).unwrap()
}

/// A link from "here" to `logic` at `rpc`, proving itself with `credential` as `claimed`.
fn link_as(claimed: &str, credential: Credential, rpc: SocketAddr) -> Cluster {
    Cluster::new(
        Identity {
            cluster: "auth".into(),
            node: claimed.into(),
            credential,
            rpc_timeout: Duration::from_secs(20),
        },
        1,
        vec![("logic".into(), 2, rpc)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_deploy_from_a_node_is_refused_and_the_masters_deploy_works() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, g, l, client) = (free_addr(), free_addr(), free_addr(), free_addr());
    let topology = Topology::new("auth")
        .admin(admin)
        .rpc_timeout("2s")
        .module("versioned")
        .node("gate", |n| {
            n.rpc(g).tcp(client).route("301-302", &["logic"])
        })
        .node("logic", |n| n.rpc(l).modules(&["versioned"]))
        .write(dir.path());
    let cluster = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", SECRET)
        .ready_on_status(admin, TOKEN, 2)
        .start();
    assert_eq!(serving(admin, "logic").await, Some(1));
    let before = whoami(client).await;
    assert_eq!(before, "v1:hi");

    // Exactly what `firefly up` gives the gate process in its environment.
    let gate = Credential::issue(SECRET.as_bytes(), "auth", "gate");
    let v2 = std::fs::read(
        firefly::builder::build_module(&workspace().join("modules").join("versioned-v2")).unwrap(),
    )
    .unwrap();

    // As the gate: the link is accepted (it is the gate), but its deploys are not, whether
    // unsigned or signed with the gate's own key.
    let as_gate = link_as("gate", gate.clone(), l);
    let peer = as_gate.peer("logic").unwrap();
    let forged_signature = gate.prove(&[b"firefly deploy"]);
    for signature in [Vec::new(), forged_signature] {
        let answer = peer
            .request(|id| Msg::Deploy {
                id,
                module: "versioned".into(),
                version: 2,
                wasm: serde_bytes::ByteBuf::from(v2.clone()),
                authority: serde_bytes::ByteBuf::from(signature),
            })
            .await
            .unwrap();
        match answer {
            Msg::DeployReply {
                result: Err(why), ..
            } => assert!(
                why.contains("refused a deploy from `gate`"),
                "unexpected refusal: {why}"
            ),
            other => panic!("a forged deploy was not refused: {other:?}"),
        }
    }
    // Refused and logged by the node, naming who claimed to send it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cluster.logged(&["refused a deploy", "claimed_sender=gate"]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the node logged no refusal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing changed.
    assert_eq!(serving(admin, "logic").await, Some(1));
    assert_eq!(whoami(client).await, before);

    // The gate's credential does not make it the master, nor another node: both are refused
    // at the handshake.
    for claimed in ["master", "logic"] {
        let err = link_as(claimed, gate.clone(), l)
            .peer("logic")
            .unwrap()
            .request(|id| Msg::Status { id })
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Unavailable { .. }), "{err}");
    }
    // Mutual: a listener that is not the node the link was meant for is refused by the dialer
    // (the gate's rpc port answers as `gate`, not `logic`).
    let err = link_as("gate", gate.clone(), g)
        .peer("logic")
        .unwrap()
        .request(|id| Msg::Status { id })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is `gate`, not `logic`"), "{err}");

    // The master's deploy, signed with its key, still goes through.
    common::deploy("versioned-v2", "versioned", &topology, TOKEN);
    assert_eq!(serving(admin, "logic").await, Some(2));
    assert_eq!(whoami(client).await, "v2:hi");
}

/// A one-node cluster `name` in `dir` (file `<name>.yaml`, its state in `state_dir` if given),
/// and its admin and client ports.
fn one_node(
    dir: &Path,
    name: &str,
    state_dir: Option<&str>,
) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let (admin, rpc, client) = (free_addr(), free_addr(), free_addr());
    let mut topology = Topology::new(name)
        .admin(admin)
        .rpc_timeout("2s")
        .module("versioned")
        .node("solo", |n| n.rpc(rpc).tcp(client).modules(&["versioned"]));
    if let Some(state) = state_dir {
        topology = topology.state_dir(state);
    }
    let path = topology.write_to(&dir.join(format!("{name}.yaml")));
    (path, admin, client)
}

fn up(topology: &Path, admin: SocketAddr) -> common::Running {
    Up::new(topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .ready_on_status(admin, TOKEN, 1)
        .start()
}

/// `firefly up` that must fail before starting anything: what it said.
fn refused(topology: &Path) -> String {
    let out = common::firefly()
        .arg("up")
        .arg("-c")
        .arg(topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started: {}", text(&out));
    text(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_in_one_folder_keep_their_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let (demo, demo_admin, demo_gate) = one_node(dir.path(), "demo", None);
    let (staging, staging_admin, _) = one_node(dir.path(), "staging", None);

    // Deploy v2 to demo, then stop it.
    let mut running = up(&demo, demo_admin);
    common::deploy("versioned-v2", "versioned", &demo, TOKEN);
    assert_eq!(serving(demo_admin, "solo").await, Some(2));
    running.stop();

    // Staging, started in the same folder, serves its own (first) version, not demo's.
    let mut running = up(&staging, staging_admin);
    assert_eq!(serving(staging_admin, "solo").await, Some(1));
    running.stop();
    // And demo, restarted, still serves what was deployed to it.
    let running = up(&demo, demo_admin);
    assert_eq!(serving(demo_admin, "solo").await, Some(2));
    assert_eq!(whoami(demo_gate).await, "v2:hi");
    drop(running);

    for cluster in ["demo", "staging"] {
        let state = dir.path().join(".firefly").join(cluster);
        let marker = std::fs::read_to_string(state.join("cluster")).unwrap();
        assert_eq!(marker.trim(), cluster);
        assert!(state.join("registry").join("versioned").is_dir());
        assert!(state.join("cluster-secret").is_file());
    }
    assert!(!dir.path().join(".firefly").join("registry").exists());

    // A cluster pointed at another cluster's state is refused, saying whose it is.
    let (other, _, _) = one_node(dir.path(), "other", Some(".firefly/demo"));
    let said = refused(&other);
    assert!(
        said.contains("holds the state of cluster `demo`")
            && said.contains("this topology is cluster `other`"),
        "{said}"
    );

    // State of the earlier one-per-folder layout is not adopted: it says how to move it.
    let old = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(old.path().join(".firefly").join("registry")).unwrap();
    std::fs::write(old.path().join(".firefly").join("cluster-secret"), SECRET).unwrap();
    let (legacy, _, _) = one_node(old.path(), "demo", None);
    let said = refused(&legacy);
    assert!(
        said.contains("names no cluster") && said.contains("mkdir -p") && said.contains("mv "),
        "{said}"
    );
    assert!(!old.path().join(".firefly").join("demo").exists());
}
