//! Rooms in a real multi-process cluster (`firefly up`): a gate routes each room's commands to
//! the logic node holding it (`policy: room`); `kill -9` of one logic node is reported to the
//! players of its rooms at once, with a `room_lost` push (even to a player that sends nothing)
//! and as error frames to their requests (never a hang); the rooms on the other node carry on,
//! and once the master has restarted the node its rooms can be opened again. A match made by
//! `matchmaking` and played in `arena` survives the same kill: its players are told and the
//! match is made again and played to its end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::process::Command;
use std::time::{Duration, Instant};

use firefly::client::Client;
use firefly::protocol::session::{ROOM_LOST_TOPIC, RoomLost};
use serde_json::{Value, json};

mod common;

use common::{Storage, Topology, Up, free_addr, node};

const TOKEN: &str = "rooms-test-admin-token-0123456789";
const ROOMS: usize = 16;

async fn healthy(admin: std::net::SocketAddr, names: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = common::status(admin, TOKEN).await;
        // Ready: healthy, and linked to every node it needs (a restarted node's gate links
        // again a moment after it answers the master).
        if names.iter().all(|n| node(&s, n)["ready"] == true) {
            return s;
        }
        assert!(Instant::now() < deadline, "nodes never all healthy: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_room_node_is_reported_to_its_players_and_its_rooms_open_again() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, g, a, b, gate) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let topology = Topology::new("roomproc")
        .admin(admin)
        .rpc_timeout("2s")
        .module("countdown")
        .node("gate", |n| {
            n.rpc(g)
                .tcp(gate)
                .route_by("471-474", &["logic-1", "logic-2"], "room")
        })
        .node("logic-1", |n| n.rpc(a).modules(&["countdown"]))
        .node("logic-2", |n| n.rpc(b).modules(&["countdown"]))
        .write(dir.path());
    let _cluster = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", "rooms-process-secret-0123456789")
        .ready_on_status(admin, TOKEN, 3)
        .start();
    let nodes = ["gate", "logic-1", "logic-2"];
    let before = healthy(admin, &nodes, Duration::from_secs(180)).await;

    let mut player = Client::connect(gate).await.unwrap();
    player.set_timeout(Duration::from_secs(10));
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("arena-{i}")).collect();
    let open = json!({ "from": 100_000, "tick_ms": 1000, "max_members": 4 });
    for room in &rooms {
        let mut req = open.clone();
        req["room"] = json!(room);
        let () = player.call(471, &req).await.unwrap();
    }
    // A second player in every room who, once in, only listens.
    let mut watcher = Client::connect(gate).await.unwrap();
    watcher.set_timeout(Duration::from_secs(15));
    for room in &rooms {
        let () = watcher.call(472, &json!({ "room": room })).await.unwrap();
    }

    let victim = node(&before, "logic-2")["pid"].as_u64().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Every room answers at once: alive, or, for the rooms of the dead node,
    // `node_unavailable` (the gate has not seen its link drop yet) or no such room (the gate
    // sent the command to the live node, as rooms of a node that is down go elsewhere).
    let mut lost = Vec::new();
    for room in &rooms {
        let started = Instant::now();
        match player
            .call::<_, Option<Value>>(474, &json!({ "room": room }))
            .await
        {
            Ok(Some(info)) => assert_eq!(info["members"].as_array().unwrap().len(), 2, "{info}"),
            Ok(None) => lost.push(room.clone()),
            Err(e) => {
                assert_eq!(
                    e.server().map(|r| r.code.as_str()),
                    Some("node_unavailable"),
                    "{room}: {e}"
                );
                lost.push(room.clone());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "room {room} kept its player waiting"
        );
    }
    assert!(
        !lost.is_empty() && lost.len() < rooms.len(),
        "rooms spread over both nodes, those of the dead one reported: {lost:?}"
    );

    // The listener was told of exactly the lost rooms, by pushes alone.
    let mut told = std::collections::BTreeSet::new();
    while told.len() < lost.len() {
        let push = watcher
            .next_push()
            .await
            .expect("a room_lost push for every lost room");
        if push.command == ROOM_LOST_TOPIC {
            let notice: RoomLost = rmp_serde::from_slice(&push.payload).unwrap();
            assert_eq!(
                (notice.code.as_str(), notice.node.as_str()),
                ("room_lost", "logic-2")
            );
            assert!(
                lost.contains(&notice.room),
                "told of {notice:?}, lost: {lost:?}"
            );
            told.insert(notice.room);
        }
    }

    // The master restarts the node; its rooms (gone with it) can be opened again, fresh.
    let deadline = Instant::now() + Duration::from_secs(120);
    for room in &lost {
        let mut req = open.clone();
        req["room"] = json!(room);
        loop {
            match player.call::<_, ()>(471, &req).await {
                Ok(()) => break,
                Err(e) if e.server().is_some_and(|r| r.code == "node_unavailable") => {
                    assert!(Instant::now() < deadline, "the killed node never came back");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("re-opening {room}: {e}"),
            }
        }
        let info: Option<Value> = player.call(474, &json!({ "room": room })).await.unwrap();
        assert_eq!(info.unwrap()["left"], 100_000);
    }
    let after = healthy(admin, &nodes, Duration::from_secs(60)).await;
    assert_ne!(node(&after, "logic-2")["pid"].as_u64().unwrap(), victim);
}

/// The next push on `topic`, skipping others; panics on a closed connection or a timeout.
async fn push_on(c: &mut Client, topic: u32) -> Value {
    loop {
        let frame = c.next_push().await.expect("a push");
        if frame.command == topic {
            return rmp_serde::from_slice(&frame.payload).unwrap();
        }
    }
}

/// Logs `name` in through the gate (registering on first use); its account id.
async fn login(gate: std::net::SocketAddr, name: &str) -> (Client, String) {
    let mut c = Client::connect(gate).await.unwrap();
    c.set_timeout(Duration::from_secs(20));
    let creds = json!({ "username": name, "password": "correct horse" });
    let _ = c.call::<_, Value>(201, &creds).await;
    let me: Value = c.call(202, &creds).await.unwrap();
    (c, me["account"].as_u64().unwrap().to_string())
}

/// The example game across processes: a match made by `matchmaking` is played in an `arena`
/// room on one of two arena nodes; `kill -9` of that node is pushed to both players as
/// `room_lost`, and they queue again, are matched again and play the new match to its end,
/// with the leaderboard (on the node that holds the data) counting the win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_whose_node_is_killed_is_reported_and_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (admin, g, l, a, b, gate) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );
    let topology = Topology::new("matchproc")
        .admin(admin)
        .rpc_timeout("2s")
        .module("accounts")
        .module("matchmaking")
        .module("leaderboard")
        .module("arena")
        .node("gate", |n| {
            n.rpc(g)
                .tcp(gate)
                .route_by("201-207", &["lobby"], "sticky")
                .route_by("481-483", &["lobby"], "sticky")
                .route_by("501-504", &["lobby"], "round_robin")
                .route_by("491-494", &["arena-1", "arena-2"], "room")
        })
        .node("lobby", |n| {
            n.rpc(l)
                .modules(&["accounts", "matchmaking", "leaderboard"])
        })
        .node("arena-1", |n| n.rpc(a).modules(&["arena"]))
        .node("arena-2", |n| n.rpc(b).modules(&["arena"]))
        .storage(Storage {
            database: Some(format!("sqlite://{d}/data.db")),
            journal: Some(format!("{d}/journal.db")),
            owner: Some("lobby".into()),
            flush_interval: Some("100ms"),
            ..Storage::default()
        })
        .write(dir.path());
    let _cluster = Up::new(&topology)
        .env("FIREFLY_ADMIN_TOKEN", TOKEN)
        .env("FIREFLY_CLUSTER_SECRET", "match-process-secret-0123456789")
        .ready_on_status(admin, TOKEN, 4)
        .start();
    let nodes = ["gate", "lobby", "arena-1", "arena-2"];
    healthy(admin, &nodes, Duration::from_secs(180)).await;

    let (mut ann, ann_id) = login(gate, "ann").await;
    let (mut bob, _) = login(gate, "bob").await;
    let queue = json!({ "mode": "arena", "rating": 1500, "size": 2 });
    let _: Value = ann.call(481, &queue).await.unwrap();
    let _: Value = bob.call(481, &queue).await.unwrap();
    let matched = push_on(&mut ann, 4801).await;
    assert_eq!(push_on(&mut bob, 4801).await, matched);
    let room = matched["room"].as_str().unwrap().to_owned();
    let _: Value = ann.call(491, &json!({ "room": room })).await.unwrap();
    let _: Value = bob.call(491, &json!({ "room": room })).await.unwrap();
    assert_eq!(push_on(&mut ann, 4901).await["started"], true);

    // Which arena node holds the room: the one whose status counts an open room.
    let status = common::status(admin, TOKEN).await;
    let holder = ["arena-1", "arena-2"]
        .into_iter()
        .find(|n| node(&status, n)["live"]["rooms"].as_u64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("no arena node reports the room: {status}"));
    let victim = node(&status, holder)["pid"].as_u64().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Both players hear of it without asking.
    for player in [&mut ann, &mut bob] {
        let lost: RoomLost =
            serde_json::from_value(push_on(player, ROOM_LOST_TOPIC).await).unwrap();
        assert_eq!(
            (lost.room.as_str(), lost.node.as_str()),
            (room.as_str(), holder)
        );
    }

    // The match is made again and played to its end, on whichever arena node is up.
    let _: Value = ann.call(481, &queue).await.unwrap();
    let _: Value = bob.call(481, &queue).await.unwrap();
    let again = push_on(&mut ann, 4801).await;
    assert_eq!(push_on(&mut bob, 4801).await, again);
    let room = again["room"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    for player in [&mut ann, &mut bob] {
        loop {
            match player.call::<_, Value>(491, &json!({ "room": room })).await {
                Ok(_) => break,
                Err(e) if e.server().is_some_and(|r| r.code == "node_unavailable") => {
                    assert!(
                        Instant::now() < deadline,
                        "no arena node took the new match"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("joining the new match {room}: {e}"),
            }
        }
    }
    assert_eq!(push_on(&mut ann, 4901).await["started"], true);
    for _ in 0..5 {
        let _: Value = ann.call(492, &json!({ "room": room })).await.unwrap();
    }
    let result = push_on(&mut bob, 4902).await;
    assert_eq!(
        (result["winner"].as_str(), result["reason"].as_str()),
        (Some(ann_id.as_str()), Some("target"))
    );
    let me: Value = ann
        .call(503, &json!({ "board": "arena_wins" }))
        .await
        .unwrap();
    assert_eq!(
        (me["rank"].as_u64(), me["score"].as_i64()),
        (Some(1), Some(1))
    );
}
