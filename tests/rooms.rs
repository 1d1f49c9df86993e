//! Rooms held by the host, through a real module (`modules/countdown`) on nodes in this
//! process: members and broadcasts, the fixed-rate tick with host-held state, a hot update in
//! the middle of a room's life, disconnects, bad input, and a gate routing each room's commands
//! to the one logic node that holds it (`policy: room`), a lost node reported to its room.
//! The tests of one node run against both `countdown` and its TypeScript twin `countdown-ts`
//! (those end in `_ts_with_node`: building a TypeScript module needs Node).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::{Client, ClientError};
use firefly::node::Node;
use serde::Deserialize;
use serde_json::json;

const TOCK: u32 = 4701;
const MEMBER: u32 = 4702;

#[derive(Debug, Deserialize)]
struct Tock {
    room: String,
    tick: u64,
    left: u32,
    elapsed_ms: u64,
}

#[derive(Debug, Deserialize)]
struct Info {
    members: Vec<u64>,
    left: u32,
    ticks: u64,
}

async fn node(module: &str) -> Node {
    firefly_testkit::start_node(&[module]).await
}

/// One test body, run as two tests: against `countdown` and against `countdown-ts`.
macro_rules! for_both_modules {
    ($rust:ident, $ts:ident, $body:ident) => {
        #[tokio::test]
        async fn $rust() {
            $body("countdown").await
        }

        #[tokio::test]
        async fn $ts() {
            $body("countdown-ts").await
        }
    };
}

async fn client(node: &Node) -> Client {
    Client::connect(node.client_addrs()[0]).await.unwrap()
}

/// The next tick's broadcast, skipping membership pushes.
async fn tock(c: &mut Client) -> Tock {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), c.next_push())
            .await
            .expect("no tick was broadcast in time")
            .unwrap();
        if frame.command != MEMBER {
            assert_eq!(frame.command, TOCK);
            return rmp_serde::from_slice(&frame.payload).unwrap();
        }
    }
}

/// The next membership push (topic 4702), skipping ticks.
async fn member(c: &mut Client) -> (String, u64, Vec<u64>) {
    #[derive(Deserialize)]
    struct Member {
        session: u64,
        kind: String,
        members: Vec<u64>,
    }
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), c.next_push())
            .await
            .expect("no membership event was pushed in time")
            .unwrap();
        if frame.command == MEMBER {
            let m: Member = rmp_serde::from_slice(&frame.payload).unwrap();
            return (m.kind, m.session, m.members);
        }
        assert_eq!(frame.command, TOCK, "an unexpected push");
    }
}

async fn info(c: &mut Client, room: &str) -> Option<Info> {
    c.call(474, &json!({ "room": room })).await.unwrap()
}

fn code(r: Result<(), ClientError>) -> String {
    r.expect_err("accepted")
        .server()
        .expect("an error frame")
        .code
        .clone()
}

for_both_modules!(
    a_room_ticks_with_host_held_state_and_broadcasts_to_its_members,
    a_room_ticks_with_host_held_state_and_broadcasts_to_its_members_ts_with_node,
    ticks
);

async fn ticks(module: &str) {
    let node = node(module).await;
    let (mut ada, mut bob) = (client(&node).await, client(&node).await);
    let () = ada
        .call(471, &json!({ "room": "r1", "from": 5, "tick_ms": 50 }))
        .await
        .unwrap();
    let () = bob.call(472, &json!({ "room": "r1" })).await.unwrap();
    let mut last = None;
    for c in [&mut ada, &mut bob] {
        let mut seen = Vec::new();
        loop {
            let t = tock(c).await;
            assert_eq!(t.room, "r1");
            seen.push((t.tick, t.left));
            if t.left == 0 {
                last = Some(t);
                break;
            }
        }
        // Bob may have joined after the first tick; every tick he saw counts down by one.
        assert!(
            seen.windows(2)
                .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 + 1 == w[0].1),
            "{seen:?}"
        );
        assert_eq!(seen.last(), Some(&(5, 0)));
    }
    let last = last.unwrap();
    assert!(last.elapsed_ms >= 4 * 40, "ticks ran too fast: {last:?}");
    assert!(
        info(&mut ada, "r1").await.is_none(),
        "the room closed itself at 0"
    );
}

for_both_modules!(
    a_room_keeps_its_state_and_tick_across_a_hot_update,
    a_room_keeps_its_state_and_tick_across_a_hot_update_ts_with_node,
    hot_update
);

async fn hot_update(module: &str) {
    let node = node(module).await;
    let mut ada = client(&node).await;
    let () = ada
        .call(471, &json!({ "room": "hot", "from": 40, "tick_ms": 30 }))
        .await
        .unwrap();
    let before = tock(&mut ada).await;
    let again = std::fs::read(firefly_testkit::module_wasm(module)).unwrap();
    node.deploy(module, 2, Some(&again)).await.unwrap();
    let after = tock(&mut ada).await;
    let after = if after.tick == before.tick {
        tock(&mut ada).await
    } else {
        after
    };
    assert!(after.tick > before.tick, "{before:?} then {after:?}");
    assert_eq!(
        u64::from(before.left - after.left),
        after.tick - before.tick,
        "the count went on from the host-held state, not from the start"
    );
    let info = info(&mut ada, "hot").await.unwrap();
    assert_eq!(info.members.len(), 1);
    assert!(info.ticks >= after.tick);
}

for_both_modules!(
    members_are_bounded_leave_on_disconnect_and_bad_input_is_refused,
    members_are_bounded_leave_on_disconnect_and_bad_input_is_refused_ts_with_node,
    members
);

async fn members(module: &str) {
    let node = node(module).await;
    let (mut ada, mut bob, mut cy) = (
        client(&node).await,
        client(&node).await,
        client(&node).await,
    );
    let () = ada
        .call(
            471,
            &json!({ "room": "duel", "from": 1000, "tick_ms": 1000 }),
        )
        .await
        .unwrap();
    let () = bob.call(472, &json!({ "room": "duel" })).await.unwrap();
    assert_eq!(
        code(cy.call(472, &json!({ "room": "duel" })).await),
        "room_full"
    );
    // The module's room event handler tells the members of every join.
    let (kind, ada_id, members) = member(&mut ada).await;
    assert_eq!((kind.as_str(), members), ("joined", vec![ada_id]));
    let (kind, bob_id, members) = member(&mut ada).await;
    assert_eq!(kind, "joined");
    assert_eq!(members, vec![ada_id, bob_id]);
    assert_eq!(
        code(
            cy.call(471, &json!({ "room": "duel", "from": 3, "tick_ms": 50 }))
                .await
        ),
        "room_exists"
    );
    assert_eq!(
        code(
            cy.call(471, &json!({ "room": "", "from": 3, "tick_ms": 50 }))
                .await
        ),
        "invalid_room"
    );
    assert_eq!(
        code(
            cy.call(471, &json!({ "room": "fast", "from": 3, "tick_ms": 1 }))
                .await
        ),
        "invalid_room"
    );
    assert_eq!(
        code(cy.call(472, &json!({ "room": "nowhere" })).await),
        "no_such_room"
    );
    // A field of the wrong type is named.
    let err = cy
        .call::<_, ()>(
            471,
            &json!({ "room": "typo", "from": "three", "tick_ms": 50 }),
        )
        .await
        .unwrap_err();
    let reply = err.server().expect("an error frame");
    assert_eq!(reply.code, "bad_request");
    assert!(reply.message.contains("at `from`"), "{}", reply.message);
    assert_eq!(info(&mut ada, "duel").await.unwrap().members.len(), 2);

    drop(bob);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while info(&mut ada, "duel").await.unwrap().members.len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a disconnected member stayed in the room"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        member(&mut ada).await,
        ("disconnected".to_owned(), bob_id, vec![ada_id])
    );
    // Its place is free again.
    let () = cy.call(472, &json!({ "room": "duel" })).await.unwrap();
    let left: bool = cy.call(473, &json!({ "room": "duel" })).await.unwrap();
    assert!(left);
    let (kind, cy_id, _) = member(&mut ada).await;
    assert_eq!(kind, "joined");
    assert_eq!(
        member(&mut ada).await,
        ("left".to_owned(), cy_id, vec![ada_id])
    );
    let again: bool = cy.call(473, &json!({ "room": "duel" })).await.unwrap();
    assert!(!again);
    assert_eq!(info(&mut ada, "duel").await.unwrap().left, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_routes_every_command_of_a_room_to_the_node_holding_it() {
    use firefly_testkit::{free_addr, start_cluster};
    let (g, a, b) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        "version: 1\ncluster: rooms\nmaster:\n  rpc_timeout: 2s\nmodules:\n  countdown: {{ crate: modules/countdown }}\nnodes:\n  gate:\n    rpc: {g}\n    listen:\n      - tcp: 127.0.0.1:0\n    routes:\n      - {{ commands: \"471-474\", to: [l1, l2], policy: room }}\n  l1: {{ rpc: {a}, modules: [countdown] }}\n  l2: {{ rpc: {b}, modules: [countdown] }}\n"
    );
    let (_, mut nodes) = start_cluster(&yaml, &["gate", "l1", "l2"]).await;
    let gate = nodes[0].client_addrs()[0];
    let (mut ada, mut bob) = (
        Client::connect(gate).await.unwrap(),
        Client::connect(gate).await.unwrap(),
    );
    let rooms: Vec<String> = (0..16).map(|i| format!("arena-{i}")).collect();
    for room in &rooms {
        let () = ada
            .call(471, &json!({ "room": room, "from": 1000, "tick_ms": 1000 }))
            .await
            .unwrap();
        // Another player, another request: it reaches the same node, or the room is not found.
        let () = bob.call(472, &json!({ "room": room })).await.unwrap();
        assert_eq!(
            info(&mut bob, room).await.unwrap().members.len(),
            2,
            "{room}"
        );
    }
    let (on_1, on_2) = (nodes[1].open_rooms(), nodes[2].open_rooms());
    assert_eq!(on_1 + on_2, rooms.len());
    assert!(
        on_1 > 0 && on_2 > 0,
        "rooms spread over both nodes: {on_1} and {on_2}"
    );

    let err = ada
        .call::<_, ()>(472, &json!({ "name": "x" }))
        .await
        .unwrap_err();
    assert_eq!(err.server().unwrap().code, "bad_request", "{err}");

    // The node holding some rooms is lost: their players get an error frame, never a hang;
    // the rooms on the other node carry on.
    let lost = nodes.remove(2);
    lost.shutdown(Duration::from_secs(1)).await;
    let (mut gone, mut alive) = (0, 0);
    for room in &rooms {
        match tokio::time::timeout(
            Duration::from_secs(10),
            bob.call::<_, Option<serde_json::Value>>(474, &json!({ "room": room })),
        )
        .await
        {
            Ok(Ok(Some(_))) => alive += 1,
            Ok(Err(e)) => {
                assert_eq!(
                    e.server().map(|r| r.code.as_str()),
                    Some("node_unavailable"),
                    "{e}"
                );
                gone += 1;
            }
            Ok(Ok(None)) => panic!("room {room} vanished from a live node"),
            Err(_) => panic!("a request for room {room} hung"),
        }
    }
    assert_eq!((alive, gone), (on_1, on_2));
}
