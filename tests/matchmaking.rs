//! Matchmaking through a real module (`modules/matchmaking`, on timers and rooms) on a node in
//! this process: close ratings matched at once into a room, a rating window that widens with
//! waiting time, regions kept apart, leaving the queue and disconnecting, bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::time::Duration;

use firefly::client::Client;
use firefly::node::Node;
use serde::Deserialize;
use serde_json::json;

const MATCHED: u32 = 4801;

#[derive(Debug, Deserialize)]
struct Matched {
    id: u64,
    room: String,
    players: Vec<u64>,
    ratings: Vec<i64>,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: 1\ncluster: mm\nmodules:\n  matchmaking: {{ crate: modules/matchmaking }}\nnodes:\n  solo:\n    listen:\n      - tcp: 127.0.0.1:0\n    modules: [matchmaking]\nstorage:\n  database: sqlite://{d}/data.db\n  journal: {d}/journal.db\n",
        d = dir.path().display()
    );
    // The node keeps its files open; the directory may go with the test process.
    std::mem::forget(dir);
    let (_topology, mut nodes) = firefly_testkit::start_cluster(&yaml, &["solo"]).await;
    nodes.remove(0)
}

async fn queue(c: &mut Client, mode: &str, rating: i64, region: &str) -> usize {
    c.call(
        481,
        &json!({ "mode": mode, "rating": rating, "region": region }),
    )
    .await
    .unwrap()
}

async fn matched(c: &mut Client, within: Duration) -> Option<Matched> {
    match tokio::time::timeout(within, c.next_push()).await {
        Ok(frame) => {
            let frame = frame.unwrap();
            assert_eq!(frame.command, MATCHED);
            Some(rmp_serde::from_slice(&frame.payload).unwrap())
        }
        Err(_) => None,
    }
}

async fn clients(node: &Node, n: usize) -> Vec<Client> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(Client::connect(node.client_addrs()[0]).await.unwrap());
    }
    all
}

#[tokio::test]
async fn close_ratings_are_matched_into_a_room_and_far_ones_wait_for_the_window() {
    let node = node().await;
    let mut c = clients(&node, 4).await;
    // Two pairs far apart: each pair is matched, not across.
    for (i, rating) in [1000, 1500, 1010, 1510].into_iter().enumerate() {
        queue(&mut c[i], "duel", rating, "eu").await;
    }
    let mut rooms = Vec::new();
    for client in &mut c {
        let m = matched(client, Duration::from_secs(5))
            .await
            .expect("not matched");
        assert_eq!(m.players.len(), 2);
        let spread = (m.ratings[0] - m.ratings[1]).abs();
        assert_eq!(spread, 10, "matched across the rating gap: {m:?}");
        assert_eq!(m.room, format!("match-{}", m.id));
        rooms.push(m.room);
    }
    rooms.sort();
    rooms.dedup();
    assert_eq!(rooms.len(), 2, "two matches, two rooms");
    assert_eq!(node.open_rooms(), 2);

    // 300 apart: outside the first window (±100), inside once it has widened (+200/s).
    let mut far = clients(&node, 2).await;
    queue(&mut far[0], "duel", 2000, "eu").await;
    queue(&mut far[1], "duel", 2300, "eu").await;
    assert!(
        matched(&mut far[0], Duration::from_millis(500))
            .await
            .is_none(),
        "matched too early"
    );
    let m = matched(&mut far[0], Duration::from_secs(5))
        .await
        .expect("the window never widened");
    assert_eq!(m.ratings.iter().copied().max(), Some(2300));
}

#[tokio::test]
async fn regions_leaving_and_disconnects_keep_players_out_of_matches() {
    let node = node().await;
    let mut c = clients(&node, 4).await;
    queue(&mut c[0], "duel", 1000, "eu").await;
    queue(&mut c[1], "duel", 1000, "us").await;
    assert!(
        matched(&mut c[0], Duration::from_millis(600))
            .await
            .is_none(),
        "matched across regions"
    );

    // c[2] queues then leaves; c[3] queues then disconnects. Their ratings are far from c[0]'s
    // (the window needs seconds to reach them), so no firing between queueing and going can
    // match them first: what the test sees is only the leaving and the disconnect.
    queue(&mut c[2], "duel", 3000, "eu").await;
    let left: bool = c[2].call(482, &()).await.unwrap();
    assert!(left);
    let mut gone = c.remove(3);
    queue(&mut gone, "duel", 5000, "eu").await;
    drop(gone);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting: usize = c[0].call(483, &json!({ "mode": "duel" })).await.unwrap();
    assert_eq!(waiting, 2, "only the eu and us players are queued");
    assert!(
        matched(&mut c[0], Duration::from_millis(400))
            .await
            .is_none()
    );

    // A new eu player is matched with the one still waiting.
    let mut late = clients(&node, 1).await.remove(0);
    queue(&mut late, "duel", 1005, "eu").await;
    let m = matched(&mut late, Duration::from_secs(5))
        .await
        .expect("not matched");
    assert_eq!(m.players.len(), 2);
}

#[tokio::test]
async fn bad_queue_requests_get_clear_errors() {
    let node = node().await;
    let mut c = clients(&node, 1).await.remove(0);
    let code = |r: Result<usize, firefly::client::ClientError>| {
        r.expect_err("accepted")
            .server()
            .expect("an error frame")
            .code
            .clone()
    };
    let bad = [
        (json!({ "mode": "", "rating": 1 }), "invalid_name"),
        (json!({ "mode": "a b", "rating": 1 }), "invalid_name"),
        (
            json!({ "mode": "duel", "rating": 1, "size": 1 }),
            "invalid_size",
        ),
        (
            json!({ "mode": "duel", "rating": 1, "size": 64 }),
            "invalid_size",
        ),
        (
            json!({ "mode": "duel", "rating": 9_000_000 }),
            "invalid_rating",
        ),
        (json!({ "rating": 1 }), "bad_request"),
    ];
    for (req, expected) in bad {
        assert_eq!(code(c.call(481, &req).await), expected, "{req}");
    }
    queue(&mut c, "duel", 1, "").await;
    assert_eq!(
        code(c.call(481, &json!({ "mode": "duel", "rating": 1 })).await),
        "already_queued"
    );
}
