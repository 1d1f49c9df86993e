//! Rooms as the single writer of their state, through a real module (`modules/tally`) on a
//! node in this process: request handlers that read, change and write a room's state while its
//! tick runs (and burns CPU) never lose an acknowledged write.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::Client;
use serde::Deserialize;
use serde_json::json;

/// Clients sending increments at once.
const CLIENTS: u64 = 10;
/// Increments each client sends, one after another.
const EACH: u64 = 50;

#[derive(Debug, Deserialize)]
struct Tally {
    count: u64,
    ticks: u64,
    pokes: u64,
    poked: u64,
    busy: u64,
}

async fn read(c: &mut Client, room: &str) -> Tally {
    let tally: Option<Tally> = c.call(463, &json!({ "room": room })).await.unwrap();
    tally.expect("the room is open")
}

/// Opens room `room` with a 50 ms tick that works 20 ms: a tick runs about 40% of the time.
async fn busy_room(c: &mut Client, room: &str) {
    let () = c
        .call(
            461,
            &json!({ "room": room, "tick_ms": 50, "work_us": 20_000 }),
        )
        .await
        .unwrap();
}

/// The count once every tick that may have started before the last write has ended.
async fn settled(c: &mut Client, room: &str) -> Tally {
    let after = read(c, room).await.ticks;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tally = read(c, room).await;
        if tally.ticks >= after + 2 {
            return tally;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the room stopped ticking: {tally:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The defect as reported: a read then a blind `set_room_state` from a request handler, made
/// while the room's tick runs, was acknowledged and then overwritten by the tick's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_while_the_tick_runs_is_not_overwritten_by_it() {
    let node = firefly_testkit::start_node(&["tally"]).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    busy_room(&mut c, "blind").await;
    let mut acked = 0u64;
    for _ in 0..CLIENTS * EACH {
        let _count: u64 = c.call(464, &json!({ "room": "blind" })).await.unwrap();
        acked += 1;
    }
    let tally = settled(&mut c, "blind").await;
    assert!(tally.ticks > 0);
    assert_eq!(
        tally.count,
        acked,
        "{} of {acked} acknowledged writes were lost",
        acked.saturating_sub(tally.count)
    );
}

/// Many clients at once, each read-modify-write through `update_room`: all are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_to_a_busy_ticking_room_is_kept() {
    let node = firefly_testkit::start_node(&["tally"]).await;
    let addr = node.client_addrs()[0];
    let mut admin = Client::connect(addr).await.unwrap();
    busy_room(&mut admin, "busy").await;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = Client::connect(addr).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut acked = 0u64;
            for _ in 0..EACH {
                if c.call::<_, u64>(462, &json!({ "room": "busy" }))
                    .await
                    .is_ok()
                {
                    acked += 1;
                }
            }
            acked
        }));
    }
    let mut acked = 0;
    for task in tasks {
        acked += task.await.unwrap();
    }
    assert_eq!(acked, CLIENTS * EACH, "every increment was acknowledged");
    // A tick that started before the last acknowledgement may still be running.
    let tally = settled(&mut admin, "busy").await;
    assert!(tally.ticks > 0);
    assert_eq!(
        tally.count,
        acked,
        "{} of {acked} acknowledged increments were lost",
        acked.saturating_sub(tally.count)
    );
}

/// Two busy rooms whose ticks write each other's state: neither waits for the other (a tick's
/// write to a room that is mid-tick is refused with `room_busy`), both keep ticking, and every
/// acknowledged poke is counted by the room it reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_writing_each_others_rooms_never_wait_for_each_other() {
    let node = firefly_testkit::start_node(&["tally"]).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    for (room, other) in [("ping", "pong"), ("pong", "ping")] {
        let open = json!({ "room": room, "tick_ms": 20, "work_us": 5_000, "poke": other });
        let () = c.call(461, &open).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ping, pong) = (read(&mut c, "ping").await, read(&mut c, "pong").await);
        if ping.ticks >= 30 && pong.ticks >= 30 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rooms stopped ticking: {ping:?} {pong:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Acknowledged once no tick of the room runs: no poke is made after these.
    for room in ["ping", "pong"] {
        let _: Tally = c.call(465, &json!({ "room": room })).await.unwrap();
    }
    let (ping, pong) = (read(&mut c, "ping").await, read(&mut c, "pong").await);
    assert!(ping.poked > 0 && pong.poked > 0, "{ping:?} {pong:?}");
    assert_eq!(ping.pokes, pong.poked, "{ping:?} {pong:?}");
    assert_eq!(pong.pokes, ping.poked, "{ping:?} {pong:?}");
    eprintln!(
        "pokes refused as busy: {} of {} and {} of {}",
        ping.busy,
        ping.busy + ping.poked,
        pong.busy,
        pong.busy + pong.poked
    );
}

/// A room that closes itself in a busy tick while writers wait for that tick: every waiting
/// write is answered (`no_such_room`), none hangs, and every acknowledged one was counted
/// before the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_waiting_for_a_tick_that_closes_the_room_are_told_it_is_gone() {
    let node = firefly_testkit::start_node(&["tally"]).await;
    let addr = node.client_addrs()[0];
    let mut c = Client::connect(addr).await.unwrap();
    let open = json!({ "room": "last", "tick_ms": 50, "work_us": 20_000, "close_at": 4 });
    let () = c.call(461, &open).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = Client::connect(addr).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let add = json!({ "room": "last" });
            loop {
                let call = c.call::<_, u64>(462, &add);
                match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return e.server().map(|r| r.code.clone()),
                    Err(_) => panic!("a write waiting for the room's tick hung"),
                }
            }
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().as_deref(), Some("no_such_room"));
    }
    let gone: Option<serde_json::Value> = c.call(463, &json!({ "room": "last" })).await.unwrap();
    assert!(gone.is_none());
}

/// A handler lists its module's rooms on its node (by key, with members, capacity and tick)
/// and learns the node's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_lists_its_rooms_and_learns_its_node() {
    #[derive(Debug, Deserialize)]
    struct Listed {
        node: String,
        rooms: Vec<Summary>,
    }
    #[derive(Debug, Deserialize)]
    struct Summary {
        key: String,
        members: u32,
        max_members: u32,
        tick_ms: u64,
    }
    let node = firefly_testkit::start_node(&["tally"]).await;
    let mut c = Client::connect(node.client_addrs()[0]).await.unwrap();
    let (empty, name): (Listed, String) = c.call(466, &()).await.unwrap();
    assert!(empty.rooms.is_empty(), "{empty:?}");
    assert_eq!(empty.node, name);
    assert_eq!(name, node.name());
    for room in ["b-room", "a-room"] {
        let open = json!({ "room": room, "tick_ms": 50, "work_us": 0 });
        let () = c.call(461, &open).await.unwrap();
    }
    let (listed, _): (Listed, String) = c.call(466, &()).await.unwrap();
    let keys: Vec<&str> = listed.rooms.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["a-room", "b-room"]);
    assert!(
        listed
            .rooms
            .iter()
            .all(|r| r.members == 0 && r.tick_ms == 50)
    );
    assert!(listed.rooms.iter().all(|r| r.max_members > 0));
}
