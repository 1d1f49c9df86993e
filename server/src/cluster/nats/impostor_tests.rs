//! A process started under a node's name without that node's certificate (another cluster
//! secret) must not be asked to answer links meant for the real one. Found from outside: an
//! impostor `logic` on the same NATS answered the real `logic`'s link requests after the real
//! one restarted, and 149 of 149 requests failed `node_unavailable` for 15 s.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};

use super::Fabric;
use crate::cluster::trust::authority::Credential;
use crate::config::{NatsAuth, NatsSpec};
use crate::test_services::private_nats;

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 15 s"))
}

/// `fabric` announcing itself and accepting links until `stop`, each accepted link's first
/// byte sent to `accepted` tagged with `who`.
fn serve(
    fabric: &Arc<Fabric>,
    who: &'static str,
    accepted: mpsc::UnboundedSender<&'static str>,
    stop: &watch::Receiver<bool>,
) {
    tokio::spawn(fabric.clone().run(stop.clone()));
    tokio::spawn(fabric.clone().accept(
        move |_, mut stream| {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = accepted.send(who);
                }
            });
        },
        stop.clone(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_under_a_nodes_name_is_never_dialled_on_nats() {
    let server = private_nats(&[]);
    let spec = NatsSpec {
        servers: vec![server.url.clone()],
        auth: NatsAuth::None,
    };
    let secret = b"impostor-test-secret-0123456789";
    let issue = |node: &str| Credential::issue(secret, "imp", node);
    let gate = Fabric::new(spec.clone(), "imp", "gate", issue("gate"));
    let real = Fabric::new(spec.clone(), "imp", "logic", issue("logic"));
    let stranger = Credential::issue(b"some-other-secret-987654321", "imp", "logic");
    let impostor = Fabric::new(spec, "imp", "logic", stranger);
    let (_stop, run) = watch::channel(false);
    let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
    tokio::spawn(gate.clone().run(run.clone()));
    serve(&impostor, "impostor", accepted_tx.clone(), &run);
    serve(&real, "real", accepted_tx, &run);

    // Until the real `logic` has announced itself, there is no one to dial.
    within("the real logic announced", async {
        while !gate.announced("logic") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for i in 0..20 {
        let mut link = within("a link to logic", async {
            loop {
                match gate.dial("logic").await {
                    Ok(link) => break link,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        link.write_all(b"x").await.unwrap();
        let who = within("accepted", accepted.recv()).await.unwrap();
        assert_eq!(who, "real", "link {i} was answered by the impostor");
    }
}

/// A log sink the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: every task logs to the subscriber this test sets.
#[tokio::test]
async fn a_flood_of_garbage_announcements_costs_one_log_line_on_nats() {
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || sink.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let server = private_nats(&[]);
    let spec = NatsSpec {
        servers: vec![server.url.clone()],
        auth: NatsAuth::None,
    };
    let issue = |node: &str| Credential::issue(b"flood-test-secret-0123456789", "flood", node);
    let gate = Fabric::new(spec.clone(), "flood", "gate", issue("gate"));
    let logic = Fabric::new(spec.clone(), "flood", "logic", issue("logic"));
    let late = Fabric::new(spec, "flood", "late", issue("late"));
    let (_stop, run) = watch::channel(false);
    tokio::spawn(gate.clone().run(run.clone()));
    tokio::spawn(logic.clone().run(run.clone()));
    // Once the gate hears `logic`, it is listening.
    within("logic announced", async {
        while !gate.announced("logic") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let raw = async_nats::connect(&server.url).await.unwrap();
    for i in 0..5_000u32 {
        raw.publish("firefly.flood.announce", i.to_be_bytes().to_vec().into())
            .await
            .unwrap();
    }
    raw.flush().await.unwrap();
    // Announcements are heard in order: once `late`'s is, every garbage one was.
    tokio::spawn(late.clone().run(run));
    within("late announced after the garbage", async {
        while !gate.announced("late") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    let lines = text.matches("ignored an announcement").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines for 5,000 garbage announcements:\n{}",
        &text[..text.len().min(2000)]
    );
}
