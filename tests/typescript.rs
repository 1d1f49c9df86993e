//! TypeScript modules through a real node: `echo-ts` answers as `echo` does, payloads and
//! errors, the context (sessions, pushes, groups, users), and the sandbox holding for
//! JavaScript (`misbehave-ts`). Building them needs Node (esbuild), so every test here ends in
//! `_with_node`: the default nextest profile skips them, the `clients` and `ci` profiles run
//! them and they fail when Node is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests, benches and their kit fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::Client;
use firefly_testkit::{addr, start_node};
use serde_json::{Value, json};

fn packed(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

/// The error frame `command` got, checked to come from `module`.
async fn failure(
    client: &mut Client,
    command: u32,
    payload: &[u8],
    module: &str,
) -> (String, String) {
    let err = client.request(command, payload).await.unwrap_err();
    let reply = err
        .server()
        .unwrap_or_else(|| panic!("command {command}: {err}"));
    assert_eq!(reply.module.as_deref(), Some(module), "{reply:?}");
    (reply.code.clone(), reply.message.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_ts_answers_like_echo_with_node() {
    // The same requests to the Rust echo and the TypeScript one, on nodes of their own (both
    // handle command 1), get the same replies: one by one and pipelined.
    for module in ["echo", "echo-ts"] {
        let node = start_node(&[module]).await;
        let mut client = Client::connect(addr(&node)).await.unwrap();
        for payload in [&b"asdfe"[..], b"", &[0u8; 1000], b"\xc1 not msgpack"] {
            assert_eq!(
                &client.request(1, payload).await.unwrap()[..],
                payload,
                "{module}"
            );
        }
        for i in 0..32u32 {
            client.send(1, &i.to_le_bytes()).await.unwrap();
        }
        for i in 0..32u32 {
            let frame = client.recv_frame().await.unwrap();
            assert_eq!(
                (frame.command, &frame.payload[..]),
                (1, &i.to_le_bytes()[..])
            );
        }
        let info = node
            .modules()
            .into_iter()
            .find(|m| m.name == module)
            .unwrap();
        assert_eq!(info.errors, 0, "{module}: {info:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_and_errors_cross_as_javascript_values_with_node() {
    let node = start_node(&["misbehave-ts"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let m = "misbehave-ts";
    // MessagePack → JavaScript → MessagePack: maps, arrays, strings, floats, binary, nil, and
    // integers past 2^53 (bigint) both ways.
    let value = json!({"s": "héllo", "n": 42, "neg": -7, "f": 1.5, "list": [1, "two", null, true],
        "nested": {"big": u64::MAX, "small_neg": i64::MIN}});
    let reply: Value = client.call(931, &value).await.unwrap();
    assert_eq!(reply, value);
    let bin = rmpv::Value::Binary(vec![1, 2, 3]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &bin).unwrap();
    assert_eq!(&client.request(931, &bytes).await.unwrap()[..], &bytes[..]);

    // A FireflyError keeps its code and message.
    let (code, message) = failure(&mut client, 925, b"", m).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("custom_code", "custom message")
    );
    // Any other exception is `handler_failed`, saying what and where.
    let (code, message) = failure(&mut client, 921, b"", m).await;
    assert_eq!(code, "handler_failed");
    assert!(message.contains("Error: boom"), "{message}");
    // A payload that is not MessagePack never reaches the handler.
    let (code, _) = failure(&mut client, 931, b"\xc1garbage", m).await;
    assert_eq!(code, "bad_request");
    // A reply MessagePack cannot carry.
    let (code, message) = failure(&mut client, 937, &packed(&Value::Null), m).await;
    assert_eq!(code, "handler_failed");
    assert!(message.contains("cannot encode"), "{message}");
    // Unknown commands of a TypeScript module are the node's usual `unknown_command`.
    let err = client.request(999, b"").await.unwrap_err();
    assert_eq!(err.server().unwrap().code, "unknown_command");
    // After all that, the module still serves.
    let reply: Value = client.call(931, &json!("still here")).await.unwrap();
    assert_eq!(reply, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_gives_session_time_randomness_and_users_with_node() {
    let node = start_node(&["misbehave-ts"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    let first: Value = client.call(933, &Value::Null).await.unwrap();
    let second: Value = client.call(933, &Value::Null).await.unwrap();
    assert!(first["session"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(first["session"], second["session"]);
    assert_eq!(first["command"], 933);
    assert_eq!(first["user"], Value::Null);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        first["now_micros"].as_u64().unwrap().abs_diff(now) < 60_000_000,
        "{first}"
    );
    // Math.random is the host's randomness: not the same sequence in every instance (QuickJS
    // would seed it once, inside the build snapshot).
    let r1 = first["random"].as_f64().unwrap();
    let r2 = second["random"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&r1) && r1 != r2, "{r1} {r2}");
    let mut other = Client::connect(addr(&node)).await.unwrap();
    let theirs: Value = other.call(933, &Value::Null).await.unwrap();
    assert_ne!(theirs["session"], first["session"]);
    assert_ne!(theirs["random"], first["random"]);

    // Bind a user and join a group, then push to the group, the user and a list of sessions.
    let bound: Value = client
        .call(934, &json!({"user": "ada", "group": "guild"}))
        .await
        .unwrap();
    assert_eq!(bound["user"], "ada");
    let _: Value = other
        .call(934, &json!({"user": "bob", "group": "guild"}))
        .await
        .unwrap();
    let again: Value = client.call(933, &Value::Null).await.unwrap();
    assert_eq!(again["user"], "ada");
    client
        .send(
            935,
            &packed(&json!({"group": "guild", "user": "bob", "text": "hi"})),
        )
        .await
        .unwrap();
    // Group, user and session-list pushes travel through the gates: they may come after the
    // reply, so wait for both pushes and the reply in any order.
    let (mut topics, mut replied) = (Vec::new(), false);
    while topics.len() < 2 || !replied {
        let frame = tokio::time::timeout(Duration::from_secs(10), client.recv_frame())
            .await
            .expect("the pushes and the reply in time")
            .unwrap();
        if frame.command == 935 {
            replied = true;
            continue;
        }
        let body: Value = rmp_serde::from_slice(&frame.payload).unwrap();
        assert_eq!(body["text"], "hi");
        topics.push(frame.command);
    }
    let mut theirs = Vec::new();
    while theirs.len() < 2 {
        theirs.push(other.next_push().await.unwrap().command);
    }
    theirs.sort_unstable();
    assert_eq!(theirs, [9351, 9352], "the group and the user reach bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_come_before_the_reply_and_kick_closes_with_node() {
    let node = start_node(&["misbehave-ts"]).await;
    let mut client = Client::connect(addr(&node)).await.unwrap();
    client
        .send(932, &packed(&json!({"gold": 5})))
        .await
        .unwrap();
    let push = client.recv_frame().await.unwrap();
    assert_eq!(push.command, 9320);
    assert_eq!(
        rmp_serde::from_slice::<Value>(&push.payload).unwrap(),
        json!({"gold": 5})
    );
    assert_eq!(client.recv_frame().await.unwrap().command, 932);
    client.send(936, &packed(&Value::Null)).await.unwrap();
    let frames = client.wait_closed().await.unwrap();
    assert!(
        frames.iter().any(|f| f.command == u32::MAX),
        "a kicked session gets an error frame: {frames:?}"
    );
}

/// `command` fails with one of `codes` on a fresh connection; echo still answers after, and
/// the same connection is served again.
async fn contained(node: &firefly::node::Node, command: u32, codes: &[&str]) -> String {
    let mut client = Client::connect(addr(node)).await.unwrap();
    client.set_timeout(Duration::from_secs(30));
    let (got, message) = failure(&mut client, command, b"", "misbehave-ts").await;
    assert!(
        codes.contains(&got.as_str()),
        "command {command}: {got}: {message}"
    );
    let mut other = Client::connect(addr(node)).await.unwrap();
    assert_eq!(&other.request(1, b"after").await.unwrap()[..], b"after");
    let reply: Value = client.call(931, &json!("same connection")).await.unwrap();
    assert_eq!(reply, "same connection");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_holds_for_javascript_with_node() {
    let node = start_node(&["echo", "misbehave-ts"]).await;
    // An endless loop: the CPU budget (500 ms in tests) ends it, others are served meanwhile.
    let target = addr(&node);
    let looping = tokio::spawn(async move {
        let mut c = Client::connect(target).await.unwrap();
        let err = c.request(922, b"").await.unwrap_err();
        err.server().unwrap().clone()
    });
    let mut bystander = Client::connect(addr(&node)).await.unwrap();
    let mut served = 0;
    while !looping.is_finished() {
        assert_eq!(&bystander.request(1, b"ok").await.unwrap()[..], b"ok");
        served += 1;
    }
    let reply = looping.await.unwrap();
    assert_eq!(reply.code, "timeout", "{}", reply.message);
    assert!(served >= 5, "the bystander was starved ({served} replies)");
    // An allocation bomb: the memory limit (32 MiB in tests).
    let message = contained(&node, 923, &["out_of_memory"]).await;
    assert!(message.contains("memory"), "{message}");
    // Unbounded recursion: the host's wasm stack limit traps (or QuickJS's own limit throws a
    // RangeError, whichever comes first).
    let message = contained(&node, 924, &["trapped", "handler_failed"]).await;
    assert!(message.contains("stack"), "{message}");
    let info = node
        .modules()
        .into_iter()
        .find(|m| m.name == "misbehave-ts")
        .unwrap();
    assert!(info.errors >= 3, "{info:?}");
}

#[test]
fn a_module_that_throws_at_load_is_refused_naming_file_and_line_with_node() {
    let dir = scratch("throws");
    std::fs::write(
        dir.join("index.ts"),
        "import { handle } from \"firefly-sdk\";\nimport { setup } from \"./setup\";\nhandle(1, () => 1);\nsetup();\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("setup.ts"),
        "// Fails when the module loads.\nexport function setup(): void {\n  throw new Error(\"no config\");\n}\n",
    )
    .unwrap();
    let err = format!("{:#}", firefly::builder::build_module(&dir).unwrap_err());
    assert!(err.contains("no config"), "{err}");
    assert!(err.contains("setup.ts:3"), "names the file and line: {err}");
}

#[test]
fn type_errors_and_modules_without_handlers_are_refused_with_node() {
    let dir = scratch("type-error");
    std::fs::write(
        dir.join("index.ts"),
        "import { handle } from \"firefly-sdk\";\nconst n: number = \"text\";\nhandle(1, () => n);\n",
    )
    .unwrap();
    let err = format!("{:#}", firefly::builder::build_module(&dir).unwrap_err());
    assert!(
        err.contains("index.ts(2,7)") && err.contains("TS2322"),
        "{err}"
    );

    let dir = scratch("no-handlers");
    std::fs::write(dir.join("index.ts"), "export const nothing = 1;\n").unwrap();
    let err = format!("{:#}", firefly::builder::build_module(&dir).unwrap_err());
    assert!(err.contains("registers no handler"), "{err}");
}

/// An empty TypeScript module folder of its own under `target/`, with a `tsconfig.json` that
/// finds the SDK.
fn scratch(name: &str) -> std::path::PathBuf {
    let root = firefly_testkit::root();
    let dir = root
        .join("target/ts-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sdk = root.join("guest-sdk/typescript");
    std::fs::write(
        dir.join("tsconfig.json"),
        format!(
            r#"{{"compilerOptions": {{"strict": true, "noEmit": true, "target": "ES2020", "module": "ES2020", "moduleResolution": "bundler", "lib": ["ES2020"], "types": [], "paths": {{"firefly-sdk": ["{}"]}}}}, "include": ["*.ts"]}}"#,
            sdk.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("package.json"), format!(r#"{{"name": "{name}"}}"#)).unwrap();
    dir
}

/// A two-node cluster in this process: `a` serves clients and hosts `tour-ts` with the
/// embedded storage; `b` hosts the Rust `echo` for `tour-ts`'s calls to another node.
async fn tour() -> (
    Vec<firefly::node::Node>,
    std::net::SocketAddr,
    tempfile::TempDir,
) {
    use firefly_testkit::topology::{Storage, Topology};
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (firefly_testkit::free_addr(), firefly_testkit::free_addr());
    let journal = dir.path().join("journal.db").display().to_string();
    let yaml = Topology::new("tour")
        .rpc_timeout("5s")
        .module("tour-ts")
        .module("echo")
        .node("a", |n| {
            n.rpc(a)
                .tcp("127.0.0.1:0".parse().unwrap())
                .modules(&["tour-ts"])
        })
        .node("b", |n| n.rpc(b).modules(&["echo"]))
        .storage(Storage {
            journal: Some(journal),
            flush_interval: Some("50ms"),
            ..Storage::embedded_sqlite(&dir.path().join("data.db"), "a")
        })
        .yaml();
    let (_, nodes) = firefly_testkit::start_cluster(&yaml, &["b", "a"]).await;
    let gate = nodes[1].client_addrs()[0];
    (nodes, gate, dir)
}

/// The next push on `topic` (others are skipped).
async fn push_on(client: &mut Client, topic: u32) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let push = tokio::time::timeout_at(deadline, client.next_push())
            .await
            .unwrap_or_else(|_| panic!("no push on topic {topic}"))
            .unwrap();
        if push.command == topic {
            return rmp_serde::from_slice(&push.payload).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ts_module_ranks_a_table_and_lists_it_by_an_index_with_node() {
    let (_nodes, gate, _dir) = tour().await;
    let mut c = Client::connect(gate).await.unwrap();
    let mut ids = Vec::new();
    for (name, guild) in [("ada", "red"), ("bob", "blue"), ("cy", "red")] {
        let made: Value = c
            .call(941, &json!({"name": name, "guild": guild}))
            .await
            .unwrap();
        ids.push(made["id"].as_u64().unwrap());
    }
    // allocId hands out distinct ids.
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    for (id, points) in [(ids[0], 5), (ids[1], 20), (ids[2], 12), (ids[0], 10)] {
        let _: Value = c
            .call(942, &json!({"id": id, "points": points}))
            .await
            .unwrap();
    }
    let after: Value = c
        .call(942, &json!({"id": ids[0], "points": 0}))
        .await
        .unwrap();
    assert_eq!(after["score"], 15);
    // ada 15, bob 20, cy 12: bob first.
    let red: Vec<u64> = c.call(943, &json!({"guild": "red"})).await.unwrap();
    let mut want = vec![ids[0], ids[2]];
    want.sort();
    assert_eq!(red, want);
    let rank: Value = c.call(944, &json!({"id": ids[0]})).await.unwrap();
    assert_eq!(
        (&rank["rank"], &rank["score"], &rank["total"]),
        (&json!(2), &json!(15), &json!(3))
    );
    let top: Value = c.call(945, &json!({"start": 0, "count": 2})).await.unwrap();
    assert_eq!(top["total"], 3);
    let order: Vec<u64> = top["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_u64().unwrap())
        .collect();
    assert_eq!(order, vec![ids[1], ids[0]]);
    let unknown: Value = c.call(944, &json!({"id": 999_999})).await.unwrap();
    assert_eq!(unknown, Value::Null);
    // Bad input is told, and a missing player is the table's `not_found`.
    let (code, _) = failure(&mut c, 941, &packed(&json!({"name": ""})), "tour-ts").await;
    assert_eq!(code, "bad_request");
    let (code, _) = failure(
        &mut c,
        942,
        &packed(&json!({"id": 999_999, "points": 1})),
        "tour-ts",
    )
    .await;
    assert_eq!(code, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ts_module_gets_session_events_pushes_to_everyone_runs_timers_and_calls_another_node_with_node()
 {
    let (_nodes, gate, _dir) = tour().await;
    // Connect: the module greets the new session with its id.
    let mut ann = Client::connect(gate).await.unwrap();
    let hello = push_on(&mut ann, 9401).await;
    let ann_id = hello["session"].as_u64().unwrap();
    assert!(ann_id > 0, "{hello}");

    // Disconnect: another session's end is pushed to everyone left.
    let mut bea = Client::connect(gate).await.unwrap();
    let bea_id = push_on(&mut bea, 9401).await["session"].as_u64().unwrap();
    drop(bea);
    assert_eq!(
        push_on(&mut ann, 9402).await["session"].as_u64(),
        Some(bea_id)
    );

    // pushAll reaches every session, the sender's too.
    let mut cy = Client::connect(gate).await.unwrap();
    let _ = push_on(&mut cy, 9401).await;
    let _: Value = ann.call(946, &json!({"text": "hi all"})).await.unwrap();
    assert_eq!(push_on(&mut ann, 9406).await["text"], "hi all");
    assert_eq!(push_on(&mut cy, 9406).await["text"], "hi all");

    // A one-shot timer fires once into its tag's handler, for the session that started it.
    let _: Value = ann
        .call(947, &json!({"text": "once", "delayMs": 50}))
        .await
        .unwrap();
    let fired = push_on(&mut ann, 9407).await;
    assert_eq!(
        (&fired["text"], &fired["firing"], &fired["repeats"]),
        (&json!("once"), &json!(1), &json!(false))
    );
    // A repeating one counts its firings until it is cancelled.
    let every: Value = ann
        .call(947, &json!({"text": "again", "delayMs": 20, "everyMs": 30}))
        .await
        .unwrap();
    for n in 1..=3 {
        let fired = push_on(&mut ann, 9407).await;
        assert_eq!(
            (&fired["text"], &fired["firing"]),
            (&json!("again"), &json!(n))
        );
    }
    let cancelled: Value = ann
        .call(948, &json!({"timer": every["timer"]}))
        .await
        .unwrap();
    assert_eq!(cancelled["cancelled"], true);
    let again: Value = ann
        .call(948, &json!({"timer": every["timer"]}))
        .await
        .unwrap();
    assert_eq!(again["cancelled"], false);

    // A call to another node returns that node's reply (node b's Rust echo).
    let request = json!({"nested": [1, "two", null], "big": u64::MAX});
    let called: Value = ann
        .call(949, &json!({"node": "b", "command": 1, "request": request}))
        .await
        .unwrap();
    assert_eq!(called["reply"], request);
    // ...and its failure comes back as an error the module can throw on.
    let (code, _) = failure(
        &mut ann,
        949,
        &packed(&json!({"node": "nowhere", "command": 1, "request": null})),
        "tour-ts",
    )
    .await;
    assert!(!code.is_empty());

    // The module's rooms on its node, and the node's name.
    let _: Value = ann.call(950, &json!({"key": "r1"})).await.unwrap();
    let listed: Value = ann.call(950, &json!({"key": "r2"})).await.unwrap();
    assert_eq!(listed["node"], "a");
    assert_eq!(listed["list"]["node"], "a");
    let rooms: Vec<(String, u64, u64)> = listed["list"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["members"].as_u64().unwrap(),
                r["max_members"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut rooms = rooms;
    rooms.sort();
    assert_eq!(rooms, vec![("r1".into(), 1, 8), ("r2".into(), 1, 8)]);
    let _ = ann_id;
}
