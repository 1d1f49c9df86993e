//! Data stays valid across hot updates: objects version N wrote are read by version N+1 (an
//! added optional field reads as `None`), and after a rollback version N reads and writes
//! what N+1 wrote without erasing the field it does not know.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use firefly::client::Client;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct V1 {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct V2 {
    id: u64,
    name: String,
    title: Option<String>,
}

#[derive(Serialize)]
struct SetTitle<'a> {
    id: u64,
    title: &'a str,
}

async fn call<T: Serialize, R: for<'de> Deserialize<'de>>(c: &mut Client, cmd: u32, req: &T) -> R {
    let reply = c
        .request(cmd, &rmp_serde::to_vec_named(req).unwrap())
        .await
        .unwrap_or_else(|e| panic!("command {cmd}: {e}"));
    rmp_serde::from_slice(&reply).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_deploy_and_a_rollback_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: 1\ncluster: hotdata\nmodules:\n  profile: {{ crate: modules/profile }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [profile]\nstorage:\n  database: sqlite://{d}/data.db\n  journal: {d}/journal.db\n  flush_interval: 50ms\n",
        d = dir.path().display()
    );
    let (_topology, mut nodes) = firefly_testkit::start_cluster(&yaml, &["solo"]).await;
    let node = nodes.remove(0);
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();

    // Version 1 writes.
    let ada = V1 {
        id: 1,
        name: "Ada".into(),
    };
    let _: u64 = call(&mut c, 401, &ada).await;
    let read: Option<V1> = call(&mut c, 402, &1u64).await;
    assert_eq!(read, Some(ada));

    // Version 2 reads it (the new field defaults) and writes the new field.
    let v2 = std::fs::read(firefly_testkit::module_wasm("profile-v2")).unwrap();
    node.deploy("profile", 2, Some(&v2)).await.unwrap();
    let read: Option<V2> = call(&mut c, 402, &1u64).await;
    assert_eq!(
        read,
        Some(V2 {
            id: 1,
            name: "Ada".into(),
            title: None
        })
    );
    let () = call(
        &mut c,
        403,
        &SetTitle {
            id: 1,
            title: "Countess",
        },
    )
    .await;
    let _: u64 = call(
        &mut c,
        401,
        &V2 {
            id: 2,
            name: "Bob".into(),
            title: Some("Sir".into()),
        },
    )
    .await;

    // Rollback: version 1 reads what version 2 wrote, and its own writes keep the title.
    node.deploy("profile", 1, None).await.unwrap();
    let read: Option<V1> = call(&mut c, 402, &1u64).await;
    assert_eq!(
        read,
        Some(V1 {
            id: 1,
            name: "Ada".into()
        })
    );
    let _: u64 = call(
        &mut c,
        401,
        &V1 {
            id: 1,
            name: "Ada L.".into(),
        },
    )
    .await;
    let _: u64 = call(
        &mut c,
        401,
        &V1 {
            id: 3,
            name: "Cy".into(),
        },
    )
    .await;

    // Forward again: the title version 1 never knew is still there.
    node.deploy("profile", 2, None).await.unwrap();
    let read: Option<V2> = call(&mut c, 402, &1u64).await;
    assert_eq!(
        read,
        Some(V2 {
            id: 1,
            name: "Ada L.".into(),
            title: Some("Countess".into())
        })
    );
    let read: Option<V2> = call(&mut c, 402, &3u64).await;
    assert_eq!(
        read,
        Some(V2 {
            id: 3,
            name: "Cy".into(),
            title: None
        })
    );
    node.shutdown(std::time::Duration::from_secs(5)).await;
}
