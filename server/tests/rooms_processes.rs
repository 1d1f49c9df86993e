//! Rooms in a real multi-process cluster (`firefly up`): a gate routes each room's commands to
//! the logic node holding it (`policy: room`); `kill -9` of one logic node is reported to the
//! players of its rooms at once, with a `room_lost` push (even to a player that sends nothing)
//! and as error frames to their requests (never a hang); the rooms on the other node carry on,
//! and once the master has restarted the node its rooms can be opened again. (`countdown`
//! rooms opened without a snapshot rule do not outlive their node; durable rooms, which do,
//! are tested by `room_failover_processes.rs`.)
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

use common::arena::{COUNTDOWN_NODES, countdown_cluster, healthy};
use common::node;

const TOKEN: &str = "rooms-test-admin-token-0123456789";
const ROOMS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_room_node_is_reported_to_its_players_and_its_rooms_open_again() {
    let (cluster, before) =
        countdown_cluster("roomproc", TOKEN, "rooms-process-secret-0123456789", false).await;
    let (admin, gate) = (cluster.admin, cluster.gate);
    let nodes = COUNTDOWN_NODES;

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
    let after = healthy(admin, TOKEN, &nodes, Duration::from_secs(60)).await;
    assert_ne!(node(&after, "logic-2")["pid"].as_u64().unwrap(), victim);
}
