use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::*;
use crate::config::ResumeSettings;

fn topic_of(msg: Outbound) -> u32 {
    match msg {
        Outbound::Push { topic, .. } => topic,
        Outbound::Kick(reason) => panic!("expected a push, got a kick ({reason:?})"),
    }
}

#[test]
fn push_reaches_the_queue_and_is_bounded() {
    let sessions = Sessions::new();
    let (id, mut rx) = sessions.register();
    assert_eq!(sessions.len(), 1);
    sessions.push(id, 7, Bytes::from_static(b"x")).unwrap();
    match rx.try_recv().unwrap() {
        Outbound::Push { topic, payload } => {
            assert_eq!(topic, 7);
            assert_eq!(&payload[..], b"x");
        }
        Outbound::Kick(_) => panic!("expected a push"),
    }
    for _ in 0..OUTBOUND_QUEUE {
        sessions.push(id, 1, Bytes::new()).unwrap();
    }
    assert_eq!(
        sessions.push(id, 1, Bytes::new()),
        Err(PushError::Backpressure)
    );
    assert_eq!(
        sessions.push(id + 1, 1, Bytes::new()),
        Err(PushError::NoSuchSession)
    );
    sessions.remove(id);
    assert!(sessions.is_empty());
}

#[tokio::test]
async fn groups_users_and_single_login() {
    let ended = Arc::new(AtomicUsize::new(0));
    let e = ended.clone();
    let sessions = Arc::new(Sessions::new().on_end(move |_| {
        e.fetch_add(1, Ordering::Relaxed);
    }));
    let mut a = sessions.attach_new(SessionSettings::default());
    let mut b = sessions.attach_new(SessionSettings::default());
    sessions.join_local(a.id, "red", true).unwrap();
    sessions.join_local(b.id, "red", true).unwrap();
    sessions.join_local(b.id, "blue", true).unwrap();
    assert_eq!(sessions.push_group_local("red", 1, &Bytes::new()), 2);
    assert_eq!(sessions.push_group_local("blue", 2, &Bytes::new()), 1);
    sessions.join_local(b.id, "red", false).unwrap();
    assert_eq!(sessions.push_group_local("red", 3, &Bytes::new()), 1);
    assert_eq!(topic_of(a.rx.try_recv().unwrap()), 1);
    assert_eq!(topic_of(a.rx.try_recv().unwrap()), 3);
    assert_eq!(topic_of(b.rx.try_recv().unwrap()), 1);
    assert_eq!(topic_of(b.rx.try_recv().unwrap()), 2);

    sessions.bind_local(a.id, Some("ada")).unwrap();
    assert_eq!(
        sessions.user_of_local(a.id).unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(sessions.push_user_local("ada", 4, &Bytes::new()), 1);
    assert_eq!(topic_of(a.rx.try_recv().unwrap()), 4);
    // A second login of the same user kicks the first session.
    sessions.bind_local(b.id, Some("ada")).unwrap();
    assert!(matches!(
        a.rx.try_recv().unwrap(),
        Outbound::Kick(KickReason::LoggedInElsewhere)
    ));
    sessions.detach(a, true);
    assert_eq!(ended.load(Ordering::Relaxed), 1);
    assert_eq!(sessions.push_user_local("ada", 5, &Bytes::new()), 1);
    assert_eq!(sessions.push_group_local("red", 6, &Bytes::new()), 0);
}

#[tokio::test]
async fn parked_sessions_buffer_then_resume_or_expire() {
    let ended = Arc::new(AtomicUsize::new(0));
    let e = ended.clone();
    let sessions = Arc::new(Sessions::new().on_end(move |_| {
        e.fetch_add(1, Ordering::Relaxed);
    }));
    let settings = SessionSettings {
        single_login: true,
        resume: Some(ResumeSettings {
            grace: Duration::from_secs(60),
            buffer: 2,
        }),
    };
    let a = sessions.attach_new(settings.clone());
    let id = a.id;
    let token = sessions.issue_token(id).unwrap();
    sessions.join_local(id, "g", true).unwrap();
    sessions.push_local(id, 1, Bytes::new()).unwrap();
    sessions.detach(a, false);
    assert_eq!(sessions.len(), 1, "parked, not ended");
    sessions.push_local(id, 2, Bytes::new()).unwrap();
    assert_eq!(
        sessions.push_local(id, 3, Bytes::new()),
        Err(PushError::Backpressure)
    );
    assert_eq!(sessions.resume("0000").unwrap_err(), ResumeError::Invalid);
    let resumed = sessions.resume(&token).unwrap();
    assert_eq!(resumed.attached.id, id);
    let topics: Vec<u32> = resumed.replay.iter().map(|(t, _)| *t).collect();
    assert_eq!(topics, vec![1, 2]);
    assert_eq!(resumed.dropped, 1);
    // Single use.
    assert_eq!(sessions.resume(&token).unwrap_err(), ResumeError::Invalid);
    assert_eq!(sessions.groups_of_local(id).unwrap(), vec!["g".to_owned()]);
    assert_eq!(ended.load(Ordering::Relaxed), 0);

    // A short window: the session ends when it runs out.
    let b = sessions.attach_new(SessionSettings {
        resume: Some(ResumeSettings {
            grace: Duration::from_millis(20),
            buffer: 2,
        }),
        ..settings
    });
    sessions.detach(b, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ended.load(Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sessions.len(), 1);
}

use resume::ResumeError;

#[tokio::test]
async fn a_session_is_handed_to_another_gate_with_its_user_groups_and_pushes() {
    let ended = Arc::new(AtomicUsize::new(0));
    let e = ended.clone();
    let a = Arc::new(Sessions::for_node(1).on_end(move |_| {
        e.fetch_add(1, Ordering::Relaxed);
    }));
    let b = Sessions::for_node(2);
    let settings = SessionSettings {
        single_login: true,
        resume: Some(ResumeSettings {
            grace: Duration::from_secs(60),
            buffer: 4,
        }),
    };
    let attached = a.attach_new(settings.clone());
    let id = attached.id;
    a.bind_local(id, Some("ann")).unwrap();
    a.join_local(id, "room", true).unwrap();
    let token = a.issue_token(id).unwrap();
    a.detach(attached, false);
    a.push_local(id, 9, Bytes::from_static(b"missed")).unwrap();
    let (_, secret) = resume::parse_token(&token).unwrap();

    let wrong = [0u8; resume::SECRET_LEN];
    assert_eq!(a.hand_over(id, &wrong, 2), Err(ResumeError::Invalid));
    let handover = a.hand_over(id, &secret, 2).unwrap();
    assert_eq!(handover.user.as_deref(), Some("ann"));
    assert_eq!(handover.groups, vec!["room".to_owned()]);
    assert_eq!(handover.replay.len(), 1);
    assert!(a.is_empty(), "gone from the old gate");
    assert_eq!(a.push_group_local("room", 1, &Bytes::new()), 0);
    assert_eq!(ended.load(Ordering::Relaxed), 0, "a hand-over ends nothing");
    // Once only.
    assert_eq!(a.hand_over(id, &secret, 2), Err(ResumeError::Invalid));

    let mut adopted = b.adopt(id, &handover, settings, [7; resume::SECRET_LEN]);
    assert_eq!(adopted.id, id, "the same session id on the new gate");
    assert_eq!(b.user_of_local(id).unwrap().as_deref(), Some("ann"));
    assert_eq!(b.push_group_local("room", 5, &Bytes::new()), 1);
    assert_eq!(b.push_user_local("ann", 6, &Bytes::new()), 1);
    assert_eq!(topic_of(adopted.rx.try_recv().unwrap()), 5);
    assert_eq!(topic_of(adopted.rx.try_recv().unwrap()), 6);
}

#[test]
fn a_shared_record_keeps_at_most_its_buffer_and_knows_its_token() {
    let secret = [3u8; resume::SECRET_LEN];
    let mut record = SessionRecord {
        token: serde_bytes::ByteBuf::from(shared::token_hash(&secret)),
        buffer: 2,
        ..SessionRecord::default()
    };
    for topic in 1..=3 {
        record.keep(topic, b"x");
    }
    assert_eq!((record.pushes.len(), record.dropped), (2, 1));
    assert!(record.token_is(&secret));
    assert!(!record.token_is(&[4u8; resume::SECRET_LEN]));
    let handover = record.into_handover();
    assert_eq!(handover.replay[0].0, 1);
    assert_eq!(handover.dropped, 1);
}
