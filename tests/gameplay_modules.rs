//! The ready gameplay modules (`modules/chat`, `modules/friends`, `modules/mail`,
//! `modules/guild`) through a real cluster in this process: a players' gate, a back-office gate
//! and a logic node hosting them beside `accounts`, real TCP clients on port 0 that register
//! and log in, cached objects on the embedded storage. The chat tests run twice: against
//! `chat` and against its TypeScript twin `chat-ts` (named `..._ts_with_node`: building a
//! TypeScript module needs Node).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on purpose"
)]

use std::net::SocketAddr;
use std::time::Duration;

use firefly::client::Client;
use firefly_testkit::topology::{Listener, Storage, Topology};
use firefly_testkit::{Gated, GatedCluster, free_addr, start_cluster};
use serde_json::{Value, json};

use firefly_abi::data::{DataOp, Key};

/// `gate` routes the player commands (accounts 201-207, chat 320-330, friends 340-348, mail
/// 360-364, guild 380-391); `ops` is a back-office gate that also reaches system mail (370).
async fn cluster() -> GatedCluster {
    cluster_with("chat").await
}

/// [`cluster`] with `chat` (the Rust module) or `chat-ts` (its TypeScript twin) as the chat.
async fn cluster_with(chat: &str) -> GatedCluster {
    Gated {
        cluster: "gameplay",
        modules: &["accounts", chat, "friends", "mail", "guild"],
        logic: &["logic"],
        players: &[("201-207", None), ("320-364", None), ("380-399", None)],
        ops: &[("360-379", None)],
        ..Gated::default()
    }
    .start()
    .await
}

/// A logged-in player: its connection and its user id (the account id `accounts` binds).
struct Player {
    c: Client,
    id: String,
}

/// Registers `name` (unless `registered`) and logs in on a fresh connection.
async fn login(addr: SocketAddr, name: &str) -> Player {
    let mut c = Client::connect(addr).await.unwrap();
    let creds = json!({"username": name, "password": "correct horse"});
    if c.call::<_, Value>(201, &creds).await.is_err() {
        // Registered before (a second login).
    }
    let me: Value = c.call(202, &creds).await.unwrap();
    let id = me["account"].as_u64().unwrap().to_string();
    Player { c, id }
}

/// A successful call's reply.
async fn ok(c: &mut Client, command: u32, body: Value) -> Value {
    c.call(command, &body)
        .await
        .unwrap_or_else(|e| panic!("command {command} {body}: {e}"))
}

/// A call that must fail: its error frame's code and message.
async fn err(c: &mut Client, command: u32, body: Value) -> (String, String) {
    match c.call::<_, Value>(command, &body).await {
        Ok(reply) => panic!("command {command} {body} succeeded: {reply}"),
        Err(e) => {
            let reply = e.server().unwrap_or_else(|| panic!("{e}")).clone();
            assert_eq!(reply.command, command, "{reply:?}");
            (reply.code, reply.message)
        }
    }
}

/// The code of a failing call.
async fn code(c: &mut Client, command: u32, body: Value) -> String {
    err(c, command, body).await.0
}

/// The next push, which must be on `topic`.
async fn push(c: &mut Client, topic: u32) -> Value {
    let frame = c.next_push().await.unwrap();
    let body: Value = rmp_serde::from_slice(&frame.payload).unwrap();
    assert_eq!(frame.command, topic, "unexpected push {body}");
    body
}

// ---------------------------------------------------------------------------------------
// chat

/// One chat test body, run as two tests: against `chat` and against `chat-ts`.
macro_rules! for_both_chats {
    ($rust:ident, $ts:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $rust() {
            $body("chat").await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $ts() {
            $body("chat-ts").await
        }
    };
}

for_both_chats!(
    chat_channel_messages_reach_members_through_the_filter_and_history_is_bounded,
    chat_channel_messages_reach_members_through_the_filter_and_history_is_bounded_ts_with_node,
    chat_channels
);

async fn chat_channels(chat: &str) {
    let cl = cluster_with(chat).await;
    let mut a = login(cl.gate, "alice").await;
    let mut b = login(cl.gate, "bob").await;
    let mut c = login(cl.gate, "carol").await;

    let joined = ok(&mut a.c, 320, json!({"channel": "General"})).await;
    assert_eq!(
        (joined["channel"].clone(), joined["members"].clone()),
        (json!("general"), json!(1))
    );
    let joined = ok(&mut b.c, 320, json!({"channel": "general"})).await;
    assert_eq!(joined["members"], 2);
    let members = ok(&mut b.c, 324, json!({"channel": "general"})).await;
    assert_eq!(members, json!([a.id, b.id]));

    // A line reaches the other member, not the sender, and not a non-member.
    let line = ok(
        &mut a.c,
        322,
        json!({"channel": "general", "text": "hello"}),
    )
    .await;
    assert_eq!(
        (line["id"].clone(), line["from"].clone()),
        (json!(1), json!(a.id))
    );
    let heard = push(&mut b.c, 335).await;
    assert_eq!(
        (
            heard["channel"].clone(),
            heard["from"].clone(),
            heard["text"].clone()
        ),
        (json!("general"), json!(a.id), json!("hello"))
    );
    // The word filter masks before storing and delivering.
    let line = ok(
        &mut a.c,
        322,
        json!({"channel": "general", "text": "what a BadWord"}),
    )
    .await;
    assert_eq!(line["text"], "what a *******");
    assert_eq!(push(&mut b.c, 335).await["text"], "what a *******");

    // History keeps the last 50 lines.
    for i in 0..55 {
        ok(
            &mut a.c,
            322,
            json!({"channel": "general", "text": format!("line {i}")}),
        )
        .await;
    }
    let history = ok(&mut b.c, 323, json!({"channel": "general"})).await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 50);
    assert_eq!(history[0]["id"], 8, "lines 1-7 dropped");
    assert_eq!(history[49]["text"], "line 54");
    let last = ok(&mut b.c, 323, json!({"channel": "general", "limit": 2})).await;
    assert_eq!(last.as_array().unwrap().len(), 2);
    assert_eq!(last[1]["text"], "line 54");
    // A late joiner gets the history with its join.
    let joined = ok(&mut c.c, 320, json!({"channel": "general"})).await;
    assert_eq!(joined["history"].as_array().unwrap().len(), 50);
    // Bob heard all 55 lines.
    for i in 0..55 {
        assert_eq!(push(&mut b.c, 335).await["text"], format!("line {i}"));
    }

    // Leaving stops delivery; members outside see nothing.
    ok(&mut c.c, 321, json!({"channel": "general"})).await;
    assert_eq!(
        code(&mut c.c, 323, json!({"channel": "general"})).await,
        "not_member"
    );
    assert_eq!(
        code(&mut c.c, 322, json!({"channel": "general", "text": "hi"})).await,
        "not_member"
    );
    ok(
        &mut a.c,
        322,
        json!({"channel": "general", "text": "after carol left"}),
    )
    .await;
    assert_eq!(push(&mut b.c, 335).await["text"], "after carol left");
    // Carol's next push is a private one, so she got nothing from the channel.
    ok(&mut a.c, 325, json!({"to": c.id, "text": "psst"})).await;
    assert_eq!(push(&mut c.c, 336).await["text"], "psst");
}

for_both_chats!(
    chat_private_messages_mute_and_block,
    chat_private_messages_mute_and_block_ts_with_node,
    chat_private
);

async fn chat_private(chat: &str) {
    let cl = cluster_with(chat).await;
    let mut a = login(cl.gate, "alice").await;
    let mut b = login(cl.gate, "bob").await;
    let mut c = login(cl.gate, "carol").await;
    for p in [&mut a, &mut b, &mut c] {
        ok(&mut p.c, 320, json!({"channel": "town"})).await;
    }

    let sent = ok(&mut a.c, 325, json!({"to": b.id, "text": "hi bob"})).await;
    assert_eq!(sent["to"], json!(b.id));
    let pm = push(&mut b.c, 336).await;
    assert_eq!(
        (pm["from"].clone(), pm["text"].clone()),
        (json!(a.id), json!("hi bob"))
    );

    // Bob mutes Alice: her channel lines no longer reach him (Carol's do), her private
    // messages still do.
    let prefs = ok(&mut b.c, 326, json!({"user": a.id})).await;
    assert_eq!(prefs["muted"], json!([a.id]));
    ok(
        &mut a.c,
        322,
        json!({"channel": "town", "text": "from alice"}),
    )
    .await;
    ok(
        &mut c.c,
        322,
        json!({"channel": "town", "text": "from carol"}),
    )
    .await;
    assert_eq!(push(&mut b.c, 335).await["text"], "from carol");
    ok(&mut a.c, 325, json!({"to": b.id, "text": "still private"})).await;
    assert_eq!(push(&mut b.c, 336).await["text"], "still private");
    // His history hides her lines too.
    let history = ok(&mut b.c, 323, json!({"channel": "town"})).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");

    // Bob blocks Alice: her private messages are refused, her channel lines not delivered.
    ok(&mut b.c, 327, json!({"user": a.id})).await;
    let prefs = ok(&mut b.c, 328, json!({"user": a.id})).await;
    assert_eq!(
        (prefs["muted"].clone(), prefs["blocked"].clone()),
        (json!([]), json!([a.id]))
    );
    let (code_, message) = err(&mut a.c, 325, json!({"to": b.id, "text": "let me in"})).await;
    assert_eq!(code_, "blocked", "{message}");
    ok(
        &mut a.c,
        322,
        json!({"channel": "town", "text": "blocked line"}),
    )
    .await;
    ok(&mut c.c, 325, json!({"to": b.id, "text": "carol here"})).await;
    let next = push(&mut b.c, 336).await;
    assert_eq!(
        (next["from"].clone(), next["text"].clone()),
        (json!(c.id), json!("carol here"))
    );
    // Unblocked, she reaches him again.
    ok(&mut b.c, 329, json!({"user": a.id})).await;
    ok(&mut a.c, 325, json!({"to": b.id, "text": "friends again"})).await;
    assert_eq!(push(&mut b.c, 336).await["text"], "friends again");
    let settings = ok(&mut b.c, 330, json!(null)).await;
    assert_eq!(settings["channels"], json!(["town"]));
    assert_eq!(settings["blocked"], json!([]));
}

for_both_chats!(
    chat_refuses_bad_input_and_bounds_what_one_user_holds,
    chat_refuses_bad_input_and_bounds_what_one_user_holds_ts_with_node,
    chat_bad_input
);

async fn chat_bad_input(chat: &str) {
    let cl = cluster_with(chat).await;
    let mut anon = Client::connect(cl.gate).await.unwrap();
    assert_eq!(
        code(&mut anon, 320, json!({"channel": "x"})).await,
        "not_logged_in"
    );
    let mut a = login(cl.gate, "alice").await;
    let c = &mut a.c;
    assert_eq!(
        code(c, 320, json!({"channel": "no spaces"})).await,
        "invalid_name"
    );
    assert_eq!(code(c, 320, json!({"channel": ""})).await, "invalid_name");
    assert_eq!(
        code(c, 320, json!({"channel": "x".repeat(33)})).await,
        "invalid_name"
    );
    assert_eq!(
        code(c, 320, json!({"name": "general"})).await,
        "bad_request"
    );
    let raw = c.request(320, b"\xc1not msgpack").await.unwrap_err();
    assert_eq!(raw.server().unwrap().code, "bad_request");
    ok(c, 320, json!({"channel": "general"})).await;
    let (code_, message) = err(
        c,
        322,
        json!({"channel": "general", "text": "x".repeat(501)}),
    )
    .await;
    assert_eq!(code_, "too_long");
    assert!(message.contains("500"), "{message}");
    assert_eq!(
        code(c, 322, json!({"channel": "general", "text": "  "})).await,
        "invalid_text"
    );
    assert_eq!(
        code(c, 322, json!({"channel": "general", "text": "a\u{7}b"})).await,
        "invalid_text"
    );
    assert_eq!(
        code(c, 323, json!({"channel": "general", "limit": 51})).await,
        "invalid_limit"
    );
    assert_eq!(
        code(c, 325, json!({"to": "", "text": "hi"})).await,
        "invalid_user"
    );
    assert_eq!(
        code(c, 326, json!({"user": "x".repeat(65)})).await,
        "invalid_user"
    );
    // Sixteen channels at most.
    for i in 1..16 {
        ok(c, 320, json!({"channel": format!("c{i}")})).await;
    }
    assert_eq!(
        code(c, 320, json!({"channel": "one-more"})).await,
        "too_many_channels"
    );
    // A hundred muted users at most.
    for i in 0..100 {
        ok(c, 326, json!({"user": format!("u{i}")})).await;
    }
    assert_eq!(code(c, 326, json!({"user": "u100"})).await, "list_full");
    // The connection still serves.
    assert_eq!(
        ok(c, 330, json!(null)).await["channels"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
}

// ---------------------------------------------------------------------------------------
// mail

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_reaches_offline_players_and_attachments_are_claimed_once() {
    let cl = cluster().await;
    let mut a = login(cl.gate, "alice").await;
    let b = login(cl.gate, "bob").await;
    let bob = b.id.clone();
    drop(b);

    // Bob is offline: mail waits for him.
    let sent = ok(
        &mut a.c,
        360,
        json!({"to": bob, "subject": "welcome", "body": "see you in town"}),
    )
    .await;
    let first = sent["id"].as_u64().unwrap();
    let mut b = login(cl.gate, "bob").await;
    let mailbox = ok(&mut b.c, 361, json!(null)).await;
    assert_eq!(mailbox.as_array().unwrap().len(), 1, "{mailbox}");
    assert_eq!(
        (
            mailbox[0]["from"].clone(),
            mailbox[0]["subject"].clone(),
            mailbox[0]["read"].clone()
        ),
        (json!(a.id), json!("welcome"), json!(false))
    );
    let read = ok(&mut b.c, 362, json!({"id": first})).await;
    assert_eq!(
        (read["body"].clone(), read["read"].clone()),
        (json!("see you in town"), json!(true))
    );
    // Someone else's mail does not exist for Alice.
    assert_eq!(code(&mut a.c, 362, json!({"id": first})).await, "not_found");
    // Player mail carries no attachments: there is nothing to claim.
    assert_eq!(
        code(&mut b.c, 363, json!({"id": first})).await,
        "no_attachments"
    );

    // System mail (rewards) comes from the back-office gate; the players' gate does not route
    // it at all.
    let reward = json!({
        "to": bob, "from": "events", "subject": "season reward",
        "attachments": [{"kind": "gold", "qty": 500}, {"kind": "gem", "qty": 3}],
    });
    assert_eq!(code(&mut a.c, 370, reward.clone()).await, "unknown_command");
    let mut ops = Client::connect(cl.ops).await.unwrap();
    let reward_id = ok(&mut ops, 370, reward).await["id"].as_u64().unwrap();
    let note = push(&mut b.c, 375).await;
    assert_eq!(
        (
            note["id"].clone(),
            note["from"].clone(),
            note["attachments"].clone()
        ),
        (json!(reward_id), json!("events"), json!(2))
    );
    // Unclaimed attachments keep the mail from being deleted.
    assert_eq!(
        code(&mut b.c, 364, json!({"id": reward_id})).await,
        "unclaimed_attachments"
    );
    assert_eq!(
        code(&mut a.c, 363, json!({"id": reward_id})).await,
        "not_found"
    );
    let claimed = ok(&mut b.c, 363, json!({"id": reward_id})).await;
    assert_eq!(
        claimed["attachments"],
        json!([{"kind": "gold", "qty": 500}, {"kind": "gem", "qty": 3}])
    );
    let (code_, message) = err(&mut b.c, 363, json!({"id": reward_id})).await;
    assert_eq!(code_, "already_claimed", "{message}");
    // Claimed even after logging in again.
    drop(b);
    let mut b = login(cl.gate, "bob").await;
    assert_eq!(
        code(&mut b.c, 363, json!({"id": reward_id})).await,
        "already_claimed"
    );
    let mailbox = ok(&mut b.c, 361, json!(null)).await;
    assert_eq!(mailbox[0]["id"], reward_id, "newest first");
    assert_eq!(mailbox[0]["claimed"], true);
    ok(&mut b.c, 364, json!({"id": reward_id})).await;
    ok(&mut b.c, 364, json!({"id": first})).await;
    assert_eq!(ok(&mut b.c, 361, json!(null)).await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_expires_and_mailboxes_and_payloads_are_bounded() {
    let cl = cluster().await;
    let mut a = login(cl.gate, "alice").await;
    let mut b = login(cl.gate, "bob").await;
    let mut ops = Client::connect(cl.ops).await.unwrap();

    // A mail that lives one second is gone after it, attachments and all.
    let short = ok(
        &mut ops,
        370,
        json!({"to": b.id, "from": "events", "subject": "flash sale",
               "attachments": [{"kind": "coupon", "qty": 1}], "ttl_secs": 1}),
    )
    .await["id"]
        .as_u64()
        .unwrap();
    push(&mut b.c, 375).await;
    assert_eq!(
        ok(&mut b.c, 361, json!(null))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mailbox = ok(&mut b.c, 361, json!(null)).await;
        if mailbox == json!([]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still there: {mailbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code(&mut b.c, 363, json!({"id": short})).await, "not_found");
    assert_eq!(code(&mut b.c, 362, json!({"id": short})).await, "not_found");

    // Bad payloads.
    let to = b.id.clone();
    let c = &mut a.c;
    assert_eq!(
        code(c, 360, json!({"to": to, "subject": ""})).await,
        "invalid_text"
    );
    assert_eq!(
        code(c, 360, json!({"to": to, "subject": "x".repeat(81)})).await,
        "too_long"
    );
    assert_eq!(
        code(
            c,
            360,
            json!({"to": to, "subject": "s", "body": "x".repeat(2001)})
        )
        .await,
        "too_long"
    );
    assert_eq!(
        code(c, 360, json!({"to": to, "subject": "s", "ttl_secs": 0})).await,
        "invalid_ttl"
    );
    assert_eq!(
        code(
            c,
            360,
            json!({"to": to, "subject": "s", "ttl_secs": 91 * 24 * 3600})
        )
        .await,
        "invalid_ttl"
    );
    assert_eq!(
        code(c, 360, json!({"to": "", "subject": "s"})).await,
        "invalid_user"
    );
    assert_eq!(code(c, 360, json!({"subject": "s"})).await, "bad_request");
    let many: Vec<Value> = (0..9).map(|_| json!({"kind": "gold", "qty": 1})).collect();
    let base = json!({"to": to, "from": "events", "subject": "s"});
    let with = |attachments: Value| {
        let mut m = base.clone();
        m["attachments"] = attachments;
        m
    };
    assert_eq!(
        code(&mut ops, 370, with(json!(many))).await,
        "too_many_attachments"
    );
    assert_eq!(
        code(&mut ops, 370, with(json!([{"kind": "gold", "qty": 0}]))).await,
        "invalid_attachment"
    );
    assert_eq!(
        code(&mut ops, 370, with(json!([{"kind": "bad kind", "qty": 1}]))).await,
        "invalid_name"
    );
    let mut anon = Client::connect(cl.gate).await.unwrap();
    assert_eq!(code(&mut anon, 361, json!(null)).await, "not_logged_in");

    // A mailbox holds 100 mails, and a sender may have 100 mails waiting; past either, sending
    // is refused until a mail is deleted.
    for i in 0..100 {
        ok(c, 360, json!({"to": to, "subject": format!("spam {i}")})).await;
    }
    let mut carol = login(cl.gate, "carol").await;
    let (code_, message) = err(c, 360, json!({"to": carol.id, "subject": "hi"})).await;
    assert_eq!(code_, "outbox_full", "{message}");
    let (code_, message) = err(&mut carol.c, 360, json!({"to": to, "subject": "hi"})).await;
    assert_eq!(code_, "mailbox_full", "{message}");
    let mailbox = ok(&mut b.c, 361, json!(null)).await;
    assert_eq!(mailbox.as_array().unwrap().len(), 100);
    let oldest = mailbox[99]["id"].clone();
    ok(&mut b.c, 364, json!({"id": oldest})).await;
    ok(
        &mut carol.c,
        360,
        json!({"to": to, "subject": "now it fits"}),
    )
    .await;
    // Bob's mailbox is full again, but Alice's deleted mail freed her a place.
    ok(c, 360, json!({"to": carol.id, "subject": "room again"})).await;
    assert_eq!(
        code(c, 360, json!({"to": carol.id, "subject": "no more"})).await,
        "outbox_full"
    );
}

// ---------------------------------------------------------------------------------------
// friends

/// The friends of a list reply, as `(user, online)`.
fn friends_of(view: &Value) -> Vec<(String, bool)> {
    view["friends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["user"].as_str().unwrap().to_owned(),
                f["online"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_requests_accept_decline_and_presence_follow_sessions() {
    let cl = cluster().await;
    let mut a = login(cl.gate, "alice").await;
    let mut b = login(cl.gate, "bob").await;
    let mut c = login(cl.gate, "carol").await;
    for p in [&mut a, &mut b, &mut c] {
        assert_eq!(friends_of(&ok(&mut p.c, 340, json!(null)).await), vec![]);
    }

    // Alice asks Bob; he accepts; both see each other online.
    let view = ok(&mut a.c, 341, json!({"user": b.id})).await;
    assert_eq!(view["outgoing"], json!([b.id]));
    assert_eq!(push(&mut b.c, 355).await["from"], json!(a.id));
    assert_eq!(
        ok(&mut b.c, 346, json!(null)).await["incoming"],
        json!([a.id])
    );
    let view = ok(&mut b.c, 342, json!({"user": a.id})).await;
    assert_eq!(friends_of(&view), vec![(a.id.clone(), true)]);
    assert_eq!(view["incoming"], json!([]));
    assert_eq!(push(&mut a.c, 356).await["user"], json!(b.id));
    let view = ok(&mut a.c, 346, json!(null)).await;
    assert_eq!(friends_of(&view), vec![(b.id.clone(), true)]);
    assert_eq!(view["outgoing"], json!([]));
    assert_eq!(
        code(&mut a.c, 341, json!({"user": b.id})).await,
        "already_friends"
    );

    // Carol asks Alice, who declines; Carol asks again and withdraws.
    ok(&mut c.c, 341, json!({"user": a.id})).await;
    assert_eq!(push(&mut a.c, 355).await["from"], json!(c.id));
    let view = ok(&mut a.c, 343, json!({"user": c.id})).await;
    assert_eq!(view["incoming"], json!([]));
    assert_eq!(ok(&mut c.c, 346, json!(null)).await["outgoing"], json!([]));
    ok(&mut c.c, 341, json!({"user": a.id})).await;
    assert_eq!(push(&mut a.c, 355).await["from"], json!(c.id));
    assert_eq!(
        ok(&mut c.c, 344, json!({"user": a.id})).await["outgoing"],
        json!([])
    );
    assert_eq!(ok(&mut a.c, 346, json!(null)).await["incoming"], json!([]));
    assert_eq!(
        code(&mut a.c, 342, json!({"user": c.id})).await,
        "no_request"
    );

    // Bob's session ends: Alice is told, and her list shows him offline.
    let bob = b.id.clone();
    drop(b);
    let gone = push(&mut a.c, 357).await;
    assert_eq!(
        (gone["user"].clone(), gone["online"].clone()),
        (json!(bob), json!(false))
    );
    assert_eq!(
        friends_of(&ok(&mut a.c, 346, json!(null)).await),
        vec![(bob.clone(), false)]
    );
    // He comes back and announces himself.
    let mut b = login(cl.gate, "bob").await;
    let view = ok(&mut b.c, 340, json!(null)).await;
    assert_eq!(friends_of(&view), vec![(a.id.clone(), true)]);
    let back = push(&mut a.c, 357).await;
    assert_eq!(
        (back["user"].clone(), back["online"].clone()),
        (json!(b.id), json!(true))
    );
    assert_eq!(
        friends_of(&ok(&mut a.c, 346, json!(null)).await),
        vec![(b.id.clone(), true)]
    );

    // Two requests the other way round make a friendship.
    ok(&mut c.c, 341, json!({"user": b.id})).await;
    assert_eq!(push(&mut b.c, 355).await["from"], json!(c.id));
    let view = ok(&mut b.c, 341, json!({"user": c.id})).await;
    assert_eq!(
        friends_of(&view),
        vec![(a.id.clone(), true), (c.id.clone(), true)]
    );
    assert_eq!(push(&mut c.c, 356).await["user"], json!(b.id));

    // Alice blocks Bob: the friendship ends on both sides and his requests are refused.
    let view = ok(&mut a.c, 347, json!({"user": b.id})).await;
    assert_eq!(
        (friends_of(&view), view["blocked"].clone()),
        (vec![], json!([b.id]))
    );
    assert_eq!(
        friends_of(&ok(&mut b.c, 346, json!(null)).await),
        vec![(c.id.clone(), true)]
    );
    assert_eq!(code(&mut b.c, 341, json!({"user": a.id})).await, "blocked");
    assert_eq!(
        code(&mut a.c, 341, json!({"user": b.id})).await,
        "blocked_by_you"
    );
    ok(&mut a.c, 348, json!({"user": b.id})).await;
    assert_eq!(
        ok(&mut b.c, 341, json!({"user": a.id})).await["outgoing"],
        json!([a.id])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_refuse_bad_input_and_bound_pending_requests() {
    let cl = cluster().await;
    let mut anon = Client::connect(cl.gate).await.unwrap();
    assert_eq!(code(&mut anon, 346, json!(null)).await, "not_logged_in");
    let mut a = login(cl.gate, "alice").await;
    let me = a.id.clone();
    let c = &mut a.c;
    assert_eq!(code(c, 341, json!({"user": ""})).await, "invalid_user");
    assert_eq!(
        code(c, 341, json!({"user": "has space"})).await,
        "invalid_user"
    );
    assert_eq!(code(c, 341, json!({"user": me})).await, "invalid_user");
    assert_eq!(code(c, 341, json!({"who": "x"})).await, "bad_request");
    assert_eq!(code(c, 345, json!({"user": "nobody"})).await, "not_friends");
    assert_eq!(code(c, 343, json!({"user": "nobody"})).await, "no_request");
    assert_eq!(code(c, 344, json!({"user": "nobody"})).await, "no_request");
    for i in 0..50 {
        ok(c, 341, json!({"user": format!("u{i}")})).await;
    }
    assert_eq!(
        code(c, 341, json!({"user": "u50"})).await,
        "too_many_requests"
    );
    assert_eq!(
        ok(c, 346, json!(null)).await["outgoing"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
}

// ---------------------------------------------------------------------------------------
// guild

/// The next guild event (topic 395), which must be `kind` about `user`.
async fn event(c: &mut Client, kind: &str, user: &str) -> Value {
    let e = push(c, 395).await;
    assert_eq!(
        (e["kind"].as_str(), e["user"].as_str()),
        (Some(kind), Some(user)),
        "{e}"
    );
    e
}

/// A guild view's members as `(user, role)`.
fn roster(view: &Value) -> Vec<(String, String)> {
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_join_by_request_and_invite_roles_leave_and_disband() {
    let cl = cluster().await;
    let mut a = login(cl.gate, "alice").await;
    let mut b = login(cl.gate, "bob").await;
    let mut c = login(cl.gate, "carol").await;
    let mut d = login(cl.gate, "dave").await;
    let (ai, bi, ci, di) = (a.id.clone(), b.id.clone(), c.id.clone(), d.id.clone());
    let r = |u: &str, role: &str| (u.to_owned(), role.to_owned());

    let view = ok(&mut a.c, 380, json!({"name": "Knights"})).await;
    let guild = view["id"].as_u64().unwrap();
    assert_eq!(roster(&view), vec![r(&ai, "leader")]);
    assert_eq!(
        code(&mut b.c, 380, json!({"name": "knights"})).await,
        "name_taken"
    );
    assert_eq!(
        code(&mut a.c, 380, json!({"name": "Other"})).await,
        "already_in_guild"
    );

    // By request: Bob asks, the leader is told and accepts.
    ok(&mut b.c, 382, json!({"guild": guild})).await;
    event(&mut a.c, "request", &bi).await;
    assert_eq!(
        code(&mut b.c, 383, json!({"user": bi})).await,
        "not_in_guild"
    );
    let view = ok(&mut a.c, 383, json!({"user": bi})).await;
    assert_eq!(roster(&view), vec![r(&ai, "leader"), r(&bi, "member")]);
    assert_eq!(view["requests"], json!([]));
    event(&mut a.c, "joined", &bi).await;
    event(&mut b.c, "joined", &bi).await;
    // Members see no pending lists, and may not invite.
    let seen = ok(&mut b.c, 381, json!(null)).await;
    assert_eq!(
        (seen["id"].as_u64(), seen["requests"].clone()),
        (Some(guild), json!([]))
    );
    assert_eq!(
        code(&mut b.c, 385, json!({"user": ci})).await,
        "not_allowed"
    );

    // Roles: the leader makes Bob an officer; now he invites Carol, who accepts.
    let view = ok(&mut a.c, 390, json!({"user": bi, "role": "officer"})).await;
    assert_eq!(roster(&view)[1], r(&bi, "officer"));
    assert_eq!(event(&mut a.c, "role", &bi).await["role"], "officer");
    event(&mut b.c, "role", &bi).await;
    // Only the leader sets roles, and not their own.
    assert_eq!(
        code(&mut b.c, 390, json!({"user": bi, "role": "leader"})).await,
        "not_allowed"
    );
    assert_eq!(
        code(&mut a.c, 390, json!({"user": ai, "role": "member"})).await,
        "invalid_user"
    );
    assert_eq!(
        code(&mut b.c, 390, json!({"user": ai, "role": "member"})).await,
        "not_allowed"
    );
    let view = ok(&mut b.c, 385, json!({"user": ci})).await;
    assert_eq!(view["invites"], json!([ci]));
    assert_eq!(event(&mut c.c, "invited", &ci).await["by"], json!(bi));
    assert_eq!(
        code(&mut d.c, 386, json!({"guild": guild})).await,
        "no_invite"
    );
    let view = ok(&mut c.c, 386, json!({"guild": guild})).await;
    assert_eq!(roster(&view).len(), 3);
    for p in [&mut a, &mut b, &mut c] {
        event(&mut p.c, "joined", &ci).await;
    }

    // Kicks go down the ranks only.
    assert_eq!(
        code(&mut c.c, 389, json!({"user": bi})).await,
        "not_allowed"
    );
    assert_eq!(
        code(&mut b.c, 389, json!({"user": ai})).await,
        "not_allowed"
    );
    let view = ok(&mut b.c, 389, json!({"user": ci})).await;
    assert_eq!(roster(&view), vec![r(&ai, "leader"), r(&bi, "officer")]);
    for p in [&mut a, &mut b, &mut c] {
        assert_eq!(event(&mut p.c, "kicked", &ci).await["by"], json!(bi));
    }
    assert_eq!(code(&mut c.c, 381, json!(null)).await, "not_in_guild");

    // A declined request.
    ok(&mut d.c, 382, json!({"guild": guild})).await;
    event(&mut a.c, "request", &di).await;
    event(&mut b.c, "request", &di).await;
    assert_eq!(
        ok(&mut b.c, 384, json!({"user": di})).await["requests"],
        json!([])
    );
    assert_eq!(code(&mut b.c, 383, json!({"user": di})).await, "no_request");

    // The leader hands over the lead before leaving.
    assert_eq!(
        code(&mut a.c, 388, json!(null)).await,
        "leader_must_transfer"
    );
    let view = ok(&mut a.c, 390, json!({"user": bi, "role": "leader"})).await;
    assert_eq!(roster(&view), vec![r(&ai, "officer"), r(&bi, "leader")]);
    event(&mut a.c, "role", &bi).await;
    event(&mut b.c, "role", &bi).await;
    ok(&mut a.c, 388, json!(null)).await;
    event(&mut a.c, "left", &ai).await;
    event(&mut b.c, "left", &ai).await;
    assert_eq!(code(&mut a.c, 381, json!(null)).await, "not_in_guild");
    assert_eq!(
        roster(&ok(&mut b.c, 381, json!({"guild": guild})).await),
        vec![r(&bi, "leader")]
    );

    // Disbanded, the guild and its name are free.
    assert_eq!(code(&mut a.c, 391, json!(null)).await, "not_in_guild");
    ok(&mut b.c, 391, json!(null)).await;
    event(&mut b.c, "disbanded", &bi).await;
    assert_eq!(code(&mut b.c, 381, json!(null)).await, "not_in_guild");
    assert_eq!(
        code(&mut d.c, 381, json!({"guild": guild})).await,
        "no_such_guild"
    );
    let view = ok(&mut d.c, 380, json!({"name": "Knights"})).await;
    assert_eq!(roster(&view), vec![r(&di, "leader")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_refuses_bad_input() {
    let cl = cluster().await;
    let mut anon = Client::connect(cl.gate).await.unwrap();
    assert_eq!(
        code(&mut anon, 380, json!({"name": "Knights"})).await,
        "not_logged_in"
    );
    let mut a = login(cl.gate, "alice").await;
    let c = &mut a.c;
    assert_eq!(code(c, 380, json!({"name": "ab"})).await, "invalid_name");
    assert_eq!(
        code(c, 380, json!({"name": "x".repeat(25)})).await,
        "invalid_name"
    );
    assert_eq!(
        code(c, 380, json!({"name": "bad name!"})).await,
        "invalid_name"
    );
    assert_eq!(
        code(c, 380, json!({"title": "Knights"})).await,
        "bad_request"
    );
    assert_eq!(
        code(c, 382, json!({"guild": 999_999})).await,
        "no_such_guild"
    );
    assert_eq!(code(c, 381, json!(null)).await, "not_in_guild");
    ok(c, 380, json!({"name": "Knights"})).await;
    assert_eq!(
        code(c, 390, json!({"user": "x", "role": "king"})).await,
        "bad_request"
    );
    assert_eq!(code(c, 389, json!({"user": ""})).await, "invalid_user");
    assert_eq!(code(c, 389, json!({"user": "nobody"})).await, "not_member");
    // Fifty invitations at most.
    for i in 0..50 {
        ok(c, 385, json!({"user": format!("u{i}")})).await;
    }
    assert_eq!(code(c, 385, json!({"user": "u50"})).await, "invites_full");
}

/// Two logic nodes serving `mail` (requests spread round-robin) and a listener that lets one
/// user hold several sessions: concurrent claims of one mail, on both nodes, succeed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_attachments_are_claimed_once_among_concurrent_claims_on_two_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let both = ["l1", "l2"];
    let mut topology = Topology::new("gameplay").rpc_timeout("5s");
    for module in ["accounts", "chat", "friends", "mail", "guild"] {
        topology = topology.module(module);
    }
    let topology = topology
        .node("gate", |n| {
            n.rpc(free_addr())
                .listen(Listener {
                    single_login: Some(false),
                    ..Listener::tcp("127.0.0.1:0".parse().unwrap())
                })
                .route_by("201-207", &both, "round_robin")
                // A back-office gate of its own here: 370 (system mail) is routed too.
                .route_by("360-379", &both, "round_robin")
        })
        .node("l1", |n| n.rpc(free_addr()).modules(&["accounts", "mail"]))
        .node("l2", |n| n.rpc(free_addr()).modules(&["accounts", "mail"]))
        .storage(Storage {
            database: Some(format!("sqlite://{d}/data.db")),
            owner: Some("l1".into()),
            journal: Some(format!("{d}/journal.db")),
            flush_interval: Some("50ms"),
            ..Storage::default()
        });
    let (_, nodes) = start_cluster(&topology.yaml(), &["l1", "l2", "gate"]).await;
    let gate = nodes[2].client_addrs()[0];
    let mut bobs = Vec::new();
    for _ in 0..4 {
        bobs.push(login(gate, "bob").await);
    }
    let bob = bobs[0].id.clone();
    assert!(bobs.iter().all(|b| b.id == bob), "one user, four sessions");
    let mut ops = Client::connect(gate).await.unwrap();
    for round in 0..5 {
        let id = ok(
            &mut ops,
            370,
            json!({"to": bob, "from": "events", "subject": format!("reward {round}"),
                   "attachments": [{"kind": "gold", "qty": 100}]}),
        )
        .await["id"]
            .as_u64()
            .unwrap();
        // Every session sends its claim before any waits for its answer.
        let claim = rmp_serde::to_vec_named(&json!({"id": id})).unwrap();
        for b in &mut bobs {
            b.c.send(363, &claim).await.unwrap();
        }
        let mut granted = 0;
        for b in &mut bobs {
            match b.c.reply_to(363).await {
                Ok(reply) => {
                    let reply: Value = rmp_serde::from_slice(&reply).unwrap();
                    assert_eq!(reply["attachments"], json!([{"kind": "gold", "qty": 100}]));
                    granted += 1;
                }
                Err(e) => assert_eq!(e.server().unwrap().code, "already_claimed", "{e}"),
            }
        }
        assert_eq!(granted, 1, "round {round}: one claim wins");
    }
}

/// Whether the logic node stores an object of `table` under `key`.
async fn stored(cl: &GatedCluster, table: &str, key: impl Into<Key>) -> bool {
    let op = DataOp::Get {
        table: table.into(),
        key: key.into(),
    };
    let data = cl.nodes[0].data().unwrap();
    match data.call(&rmp_serde::to_vec_named(&op).unwrap()).await {
        Ok(_) => true,
        Err(e) => {
            assert!(format!("{e:?}").contains("NotFound"), "{e:?}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_and_requests_to_unknown_users_leave_nothing_behind() {
    let cl = cluster().await;
    let mut a = login(cl.gate, "alice").await;

    // Mail to a user id nobody reads is deleted with its mailbox once it expires: the
    // sender's next send sweeps it.
    let sent = ok(
        &mut a.c,
        360,
        json!({"to": "ghost-1", "subject": "boo", "ttl_secs": 1}),
    )
    .await;
    let id = sent["id"].as_u64().unwrap();
    assert!(stored(&cl, "mails", id).await);
    assert!(stored(&cl, "mailboxes", "ghost-1").await);
    let expires = sent["expires_micros"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while firefly_now_micros() <= expires {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ok(&mut a.c, 360, json!({"to": "ghost-2", "subject": "boo"})).await;
    assert!(
        !stored(&cl, "mails", id).await,
        "the expired mail is deleted"
    );
    assert!(
        !stored(&cl, "mailboxes", "ghost-1").await,
        "and its empty mailbox"
    );
    assert!(stored(&cl, "mailboxes", "ghost-2").await);

    // A friend request to a made-up user, withdrawn, leaves no list behind.
    ok(&mut a.c, 341, json!({"user": "ghost-3"})).await;
    assert!(stored(&cl, "friend_lists", "ghost-3").await);
    ok(&mut a.c, 344, json!({"user": "ghost-3"})).await;
    assert!(!stored(&cl, "friend_lists", "ghost-3").await);
    assert!(!stored(&cl, "friend_lists", a.id.as_str()).await);
}

/// The wall clock, as the modules read it.
fn firefly_now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_holds_fifty_members_at_most() {
    let cl = cluster().await;
    let mut leader = login(cl.gate, "leader").await;
    let guild = ok(&mut leader.c, 380, json!({"name": "Crowded"})).await["id"].clone();
    for i in 1..50 {
        let mut p = login(cl.gate, &format!("member{i}")).await;
        ok(&mut p.c, 382, json!({"guild": guild})).await;
        ok(&mut leader.c, 383, json!({"user": p.id})).await;
    }
    let view = ok(&mut leader.c, 381, json!(null)).await;
    assert_eq!(view["members"].as_array().unwrap().len(), 50);
    let mut late = login(cl.gate, "late").await;
    ok(&mut late.c, 382, json!({"guild": guild})).await;
    let (code_, message) = err(&mut leader.c, 383, json!({"user": late.id})).await;
    assert_eq!(code_, "guild_full", "{message}");
    // The refused user is in no guild: they can found their own.
    assert_eq!(code(&mut late.c, 381, json!(null)).await, "not_in_guild");
    ok(&mut late.c, 380, json!({"name": "Overflow"})).await;
}
