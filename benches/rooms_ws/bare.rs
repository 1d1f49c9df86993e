//! The bare baseline: a tokio WebSocket server running the room loop natively, speaking the same
//! frames as Firefly (join 521, input 522 answered with a reply frame, state pushed on 5201).
//! Per connection a reader (the connection's task) and a writer task draining an unbounded queue;
//! per room a mutex-held state and a 50 ms `tokio::time::interval` task that applies the inputs,
//! encodes the state (MessagePack, as the module does) and queues it to each member.
//!
//! Run as its own process by the bench (`rooms_ws --bare-server`), so its CPU and memory are
//! read from /proc like the others'. Prints `listening <addr>` once it accepts clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::clients::{ERROR, HEADER, INPUT, JOIN, STATE_TOPIC, command_of, frame};

#[derive(Default)]
struct Field {
    x: i64,
    y: i64,
    inputs: u64,
    pending_x: i64,
    pending_y: i64,
    pending: u32,
    tick: u64,
}

/// The state broadcast each tick: the same fields as `modules/roombench`'s.
#[derive(Serialize)]
struct State<'a> {
    room: &'a str,
    tick: u64,
    x: i64,
    y: i64,
    inputs: u64,
    members: u32,
    t_ms: u64,
    hp: [u8; 4],
}

struct Room {
    field: Mutex<Field>,
    members: Mutex<Vec<mpsc::UnboundedSender<Message>>>,
}

#[derive(Deserialize)]
struct Req {
    room: String,
    #[serde(default)]
    x: i32,
    #[serde(default)]
    y: i32,
}

type Rooms = Arc<Mutex<HashMap<String, Arc<Room>>>>;

/// Serves until the process is killed.
pub fn serve() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        let rooms: Rooms = Arc::default();
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            tokio::spawn(connection(tcp, rooms.clone()));
        }
    })
}

async fn connection(tcp: tokio::net::TcpStream, rooms: Rooms) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            // Everything queued goes out in one flush.
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut joined: Option<Arc<Room>> = None;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Binary(bytes) = msg else {
            continue;
        };
        let (Some(command), Some(payload)) = (command_of(&bytes), bytes.get(HEADER..)) else {
            return;
        };
        let Ok(req) = rmp_serde::from_slice::<Req>(payload) else {
            let _ = tx.send(Message::binary(frame(
                ERROR,
                b"\x81\xa4code\xabbad_request",
            )));
            continue;
        };
        match command {
            JOIN => {
                let room = rooms
                    .lock()
                    .unwrap()
                    .entry(req.room.clone())
                    .or_insert_with(|| open(req.room.clone()))
                    .clone();
                room.members.lock().unwrap().push(tx.clone());
                joined = Some(room);
                let _ = tx.send(Message::binary(frame(JOIN, &[0xc0])));
            }
            INPUT => {
                if let Some(room) = &joined {
                    let mut f = room.field.lock().unwrap();
                    f.pending_x += i64::from(req.x);
                    f.pending_y += i64::from(req.y);
                    f.pending += 1;
                }
                let _ = tx.send(Message::binary(frame(INPUT, &[0xc0])));
            }
            _ => {
                let _ = tx.send(Message::binary(frame(
                    ERROR,
                    b"\x81\xa4code\xafunknown_command",
                )));
            }
        }
    }
}

/// A new room and its tick task.
fn open(key: String) -> Arc<Room> {
    let room = Arc::new(Room {
        field: Mutex::new(Field::default()),
        members: Mutex::new(Vec::new()),
    });
    let ticking = room.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            let members = ticking.members.lock().unwrap().clone();
            let payload = {
                let mut f = ticking.field.lock().unwrap();
                f.tick += 1;
                f.x += f.pending_x;
                f.y += f.pending_y;
                f.inputs += u64::from(f.pending);
                (f.pending_x, f.pending_y, f.pending) = (0, 0, 0);
                rmp_serde::to_vec_named(&State {
                    room: &key,
                    tick: f.tick,
                    x: f.x,
                    y: f.y,
                    inputs: f.inputs,
                    members: members.len() as u32,
                    t_ms: f.tick * 50,
                    hp: [100; 4],
                })
                .unwrap_or_default()
            };
            let msg = Message::binary(frame(STATE_TOPIC, &payload));
            for member in &members {
                let _ = member.send(msg.clone());
            }
        }
    });
    room
}
