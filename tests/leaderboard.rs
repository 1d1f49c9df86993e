//! The `leaderboard` module and the `arena` example game through a real cluster in this
//! process: a players' gate, a back-office gate and two logic nodes hosting `accounts`,
//! `matchmaking`, `arena` and `leaderboard`, real TCP clients on port 0. The leaderboard runs
//! on the embedded storage and (`_on_redis_and_sqlite`) on Redis, where the host keeps its
//! rankings as sorted sets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::time::Duration;

use firefly::client::Client;
use firefly_testkit::{Gated, GatedCluster, service_url};
use serde_json::{Value, json};

fn unique(prefix: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let nanos = now.map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}{:08x}_", (nanos as u32) ^ std::process::id())
}

/// `cache`: `None` for the embedded storage held by l1, or a Redis URL.
async fn cluster(cache: Option<&str>) -> GatedCluster {
    let both = Some("round_robin");
    Gated {
        cluster: "games",
        modules: &["accounts", "matchmaking", "arena", "leaderboard"],
        logic: &["l1", "l2"],
        players: &[
            ("201-207", Some("sticky")),
            ("481-483", Some("sticky")),
            ("491-494", Some("room")),
            ("501-504", both),
            ("506-506", both),
        ],
        ops: &[("500-507", both)],
        redis: cache,
        table_prefix: Some(unique("lb")),
    }
    .start()
    .await
}

struct Player {
    c: Client,
    id: String,
}

async fn login(addr: SocketAddr, name: &str) -> Player {
    let mut c = Client::connect(addr).await.unwrap();
    c.set_timeout(Duration::from_secs(20));
    let creds = json!({"username": name, "password": "correct horse"});
    let _ = c.call::<_, Value>(201, &creds).await;
    let me: Value = c.call(202, &creds).await.unwrap();
    let id = me["account"].as_u64().unwrap().to_string();
    Player { c, id }
}

async fn ok(c: &mut Client, command: u32, body: Value) -> Value {
    c.call(command, &body)
        .await
        .unwrap_or_else(|e| panic!("command {command} {body}: {e}"))
}

async fn code(c: &mut Client, command: u32, body: Value) -> String {
    match c.call::<_, Value>(command, &body).await {
        Ok(reply) => panic!("command {command} {body} succeeded: {reply}"),
        Err(e) => e.server().unwrap_or_else(|| panic!("{e}")).code.clone(),
    }
}

/// The next push on `topic` (pushes on other topics are skipped).
async fn push(c: &mut Client, topic: u32) -> Value {
    loop {
        let frame = c.next_push().await.unwrap();
        if frame.command == topic {
            return rmp_serde::from_slice(&frame.payload).unwrap();
        }
    }
}

fn users(page: &Value) -> Vec<(u64, String, i64)> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["rank"].as_u64().unwrap(),
                e["user"].as_str().unwrap().to_owned(),
                e["score"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Submit, top, my rank, around me, best-score keeping, seasons and bad input, with players
/// whose requests alternate between the two logic nodes.
async fn leaderboard_suite(cache: Option<&str>) {
    let cl = cluster(cache).await;
    let mut ops = Client::connect(cl.ops).await.unwrap();
    let board = ok(
        &mut ops,
        500,
        json!({"board": "runs", "keep": "best", "open": true}),
    )
    .await;
    assert_eq!(board["season"], 0);
    assert_eq!(board["players"], 0);

    let mut players = Vec::new();
    for i in 0..12 {
        players.push(login(cl.gate, &format!("runner{i}")).await);
    }
    // Player i scores 100 * i; then player 0 improves to 1050 and player 11 submits a worse
    // score, which a `best` board ignores.
    for (i, p) in players.iter_mut().enumerate() {
        let s = ok(
            &mut p.c,
            501,
            json!({"board": "runs", "score": 100 * i as i64}),
        )
        .await;
        assert_eq!(s["score"], 100 * i as i64);
    }
    let s = ok(
        &mut players[0].c,
        501,
        json!({"board": "runs", "score": 1050}),
    )
    .await;
    assert_eq!(
        (s["rank"].as_u64(), s["players"].as_u64()),
        (Some(2), Some(12))
    );
    let s = ok(
        &mut players[11].c,
        501,
        json!({"board": "runs", "score": 5}),
    )
    .await;
    assert_eq!(
        (s["rank"].as_u64(), s["score"].as_i64()),
        (Some(1), Some(1100))
    );

    let top = ok(&mut players[3].c, 502, json!({"board": "runs", "count": 3})).await;
    let id_list: Vec<String> = players.iter().map(|p| p.id.clone()).collect();
    let ids = |i: usize| id_list[i].clone();
    assert_eq!(
        users(&top),
        vec![(1, ids(11), 1100), (2, ids(0), 1050), (3, ids(10), 1000)]
    );
    assert_eq!(top["players"], 12);
    let me = ok(&mut players[3].c, 503, json!({"board": "runs"})).await;
    // 11, 0, 10, 9, 8, 7, 6, 5, 4, 3: player 3 is 10th.
    assert_eq!(
        (me["rank"].as_u64(), me["score"].as_i64()),
        (Some(10), Some(300))
    );
    let around = ok(
        &mut players[3].c,
        504,
        json!({"board": "runs", "radius": 2}),
    )
    .await;
    assert_eq!(
        users(&around),
        vec![
            (8, ids(5), 500),
            (9, ids(4), 400),
            (10, ids(3), 300),
            (11, ids(2), 200),
            (12, ids(1), 100)
        ]
    );
    // At the top, `around` starts at rank 1.
    let around = ok(
        &mut players[11].c,
        504,
        json!({"board": "runs", "radius": 1}),
    )
    .await;
    assert_eq!(users(&around).len(), 2);

    // A new season starts empty; the old one stays readable.
    let reset = ok(&mut ops, 505, json!({"board": "runs"})).await;
    assert_eq!(
        (reset["season"].as_u64(), reset["players"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        ok(&mut players[3].c, 503, json!({"board": "runs"})).await,
        Value::Null
    );
    let s = ok(&mut players[3].c, 501, json!({"board": "runs", "score": 7})).await;
    assert_eq!(
        (s["rank"].as_u64(), s["season"].as_u64()),
        (Some(1), Some(1))
    );
    let old = ok(
        &mut players[3].c,
        502,
        json!({"board": "runs", "count": 1, "season": 0}),
    )
    .await;
    assert_eq!(users(&old), vec![(1, ids(11), 1100)]);

    // Back office records for any user; players cannot submit to a closed board.
    ok(&mut ops, 500, json!({"board": "kills", "keep": "sum"})).await;
    let p = &mut players[4].c;
    assert_eq!(
        code(p, 501, json!({"board": "kills", "score": 1})).await,
        "board_closed"
    );
    for _ in 0..3 {
        ok(
            &mut ops,
            507,
            json!({"board": "kills", "user": ids(4), "score": 2}),
        )
        .await;
    }
    let me = ok(&mut players[4].c, 503, json!({"board": "kills"})).await;
    assert_eq!(me["score"], 6);

    // Bad input: clear errors, nothing stored.
    let p = &mut players[5].c;
    assert_eq!(
        code(p, 501, json!({"board": "nope", "score": 1})).await,
        "unknown_board"
    );
    assert_eq!(
        code(p, 501, json!({"board": "bad name", "score": 1})).await,
        "invalid_name"
    );
    assert_eq!(
        code(p, 501, json!({"board": "runs", "score": 1i64 << 60})).await,
        "invalid_score"
    );
    assert_eq!(
        code(p, 502, json!({"board": "runs", "count": 0})).await,
        "invalid_count"
    );
    assert_eq!(
        code(p, 502, json!({"board": "runs", "count": 101})).await,
        "invalid_count"
    );
    assert_eq!(
        code(p, 504, json!({"board": "runs", "radius": 26})).await,
        "invalid_radius"
    );
    assert_eq!(
        code(p, 503, json!({"board": "runs", "season": 9})).await,
        "invalid_season"
    );
    assert_eq!(code(p, 502, json!({"board": 5})).await, "bad_request");
    let mut anonymous = Client::connect(cl.gate).await.unwrap();
    assert_eq!(
        code(&mut anonymous, 501, json!({"board": "runs", "score": 1})).await,
        "not_logged_in"
    );
    assert_eq!(
        code(&mut ops, 500, json!({"board": "runs", "period_secs": 5})).await,
        "invalid_period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderboard_submit_top_rank_around_and_seasons() {
    leaderboard_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderboard_submit_top_rank_around_and_seasons_on_redis_and_sqlite() {
    let url = service_url("FIREFLY_TEST_REDIS_URL");
    leaderboard_suite(Some(&url)).await;
}

/// The example game end to end: two scripted players log in, queue, are matched, play an
/// arena room to its end and see the leaderboard change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_game_from_queue_to_match_to_room_to_leaderboard() {
    let cl = cluster(None).await;
    let mut ann = login(cl.gate, "ann").await;
    let mut bob = login(cl.gate, "bob").await;
    let queue = json!({"mode": "arena", "rating": 1200, "size": 2});
    ok(&mut ann.c, 481, queue.clone()).await;
    ok(&mut bob.c, 481, queue).await;
    let matched = push(&mut ann.c, 4801).await;
    assert_eq!(push(&mut bob.c, 4801).await, matched);
    let room = matched["room"].as_str().unwrap().to_owned();

    // A stranger may not join; the players do, and the game starts.
    let mut eve = login(cl.gate, "eve").await;
    assert_eq!(
        code(&mut eve.c, 491, json!({"room": room})).await,
        "not_in_match"
    );
    ok(&mut ann.c, 491, json!({"room": room})).await;
    assert_eq!(
        code(&mut ann.c, 492, json!({"room": room})).await,
        "not_started"
    );
    ok(&mut bob.c, 491, json!({"room": room})).await;
    let started = push(&mut ann.c, 4901).await;
    assert_eq!(started["started"], true);

    // Ann hits five times, Bob twice: Ann wins on points.
    for _ in 0..2 {
        ok(&mut bob.c, 492, json!({"room": room})).await;
    }
    for n in 1..=5 {
        let points = ok(&mut ann.c, 492, json!({"room": room})).await;
        assert_eq!(points, n);
    }
    let result = push(&mut bob.c, 4902).await;
    assert_eq!(push(&mut ann.c, 4902).await, result);
    assert_eq!(result["winner"], ann.id.as_str());
    assert_eq!(result["reason"], "target");
    assert_eq!(result["points"], json!([5, 2]));
    // The room is closed.
    assert_eq!(
        code(&mut ann.c, 493, json!({"room": room})).await,
        "no_game"
    );

    let top = ok(&mut bob.c, 502, json!({"board": "arena_wins", "count": 10})).await;
    assert_eq!(
        users(&top),
        vec![(1, ann.id.clone(), 1), (2, bob.id.clone(), 0)]
    );
    let me = ok(&mut ann.c, 503, json!({"board": "arena_wins"})).await;
    assert_eq!(
        (me["rank"].as_u64(), me["score"].as_i64()),
        (Some(1), Some(1))
    );

    // A second match: Bob forfeits by leaving, and Ann's wins become 2.
    let queue = json!({"mode": "arena", "rating": 1200, "size": 2});
    ok(&mut ann.c, 481, queue.clone()).await;
    ok(&mut bob.c, 481, queue).await;
    let room = push(&mut ann.c, 4801).await["room"]
        .as_str()
        .unwrap()
        .to_owned();
    push(&mut bob.c, 4801).await;
    ok(&mut ann.c, 491, json!({"room": room})).await;
    ok(&mut bob.c, 491, json!({"room": room})).await;
    push(&mut ann.c, 4901).await;
    assert_eq!(ok(&mut bob.c, 494, json!({"room": room})).await, true);
    let result = push(&mut ann.c, 4902).await;
    assert_eq!(
        (result["winner"].as_str(), result["reason"].as_str()),
        (Some(ann.id.as_str()), Some("forfeit"))
    );
    let me = ok(&mut ann.c, 503, json!({"board": "arena_wins"})).await;
    assert_eq!(me["score"], 2);
}
