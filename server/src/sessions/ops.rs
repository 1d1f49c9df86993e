//! Session operations across the cluster: broadcasts (to a list, a group, a user, everyone),
//! groups, user binding and kicks.
//!
//! A session's state (its groups, its user) lives on the gate that holds it. An operation on
//! one session runs there: here when the session is ours, else as a [`SessionOp`] request to
//! its gate (the gate is the top 16 bits of the id). Broadcasts to a group, a user or everyone
//! run here and on every other gate, since their members may be anywhere.

use bytes::Bytes;
use firefly_abi::session_status;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::resume::{ResumeError, SECRET_LEN};
use super::{Entry, Handover, KickReason, Outbound, Place, PushError, Sessions};

/// A session operation another node asks a gate to run on its sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionOp {
    /// Push to each of these sessions held by the receiving gate.
    PushMany {
        /// Session ids.
        sessions: Vec<u64>,
        /// Topic id.
        topic: u32,
        /// Payload.
        payload: ByteBuf,
    },
    /// Push to every member of `group` on the receiving gate.
    PushGroup {
        /// Group name.
        group: String,
        /// Topic id.
        topic: u32,
        /// Payload.
        payload: ByteBuf,
    },
    /// Push to every session of the receiving gate.
    PushAll {
        /// Topic id.
        topic: u32,
        /// Payload.
        payload: ByteBuf,
    },
    /// Push to every session bound to `user` on the receiving gate.
    PushUser {
        /// User id.
        user: String,
        /// Topic id.
        topic: u32,
        /// Payload.
        payload: ByteBuf,
    },
    /// Add a session to a group.
    Join {
        /// Session id.
        session: u64,
        /// Group name.
        group: String,
        /// A room's group whose room outlives its node: when the node goes, its members stay
        /// for a while, waiting for the node that takes the room over.
        #[serde(default)]
        durable: bool,
    },
    /// Remove a session from a group.
    Leave {
        /// Session id.
        session: u64,
        /// Group name.
        group: String,
    },
    /// Bind a user id to a session (`None` unbinds).
    Bind {
        /// Session id.
        session: u64,
        /// User id.
        user: Option<String>,
    },
    /// Kick every session of `user` except `except` (a second login elsewhere).
    KickUser {
        /// User id.
        user: String,
        /// The session that logged in.
        except: u64,
    },
    /// Kick a session.
    Kick {
        /// Session id.
        session: u64,
    },
    /// Which user is bound to a session.
    UserOf {
        /// Session id.
        session: u64,
    },
    /// Give a session to gate `to`, whose new connection presented its resume token (the
    /// token's secret part here). See [`super::shared`].
    Hand {
        /// Session id.
        session: u64,
        /// The presented token's secret.
        secret: ByteBuf,
        /// The taking gate's index.
        to: u16,
    },
}

/// A gate's answer to a [`SessionOp`] request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpReply {
    /// A `firefly_abi::session_status` code.
    pub status: u32,
    /// The user, for `UserOf`.
    pub user: Option<String>,
    /// The session, for a successful `Hand`.
    #[serde(default)]
    pub handover: Option<Handover>,
    /// With `NO_SUCH_SESSION`: the gate the session moved to (ask there).
    #[serde(default)]
    pub moved: Option<u16>,
}

impl OpReply {
    /// A reply with only a status.
    pub fn status(status: u32) -> Self {
        OpReply {
            status,
            ..OpReply::default()
        }
    }
}

impl SessionOp {
    /// The one session this operation is about, if it is about one.
    fn session(&self) -> Option<u64> {
        match self {
            SessionOp::Join { session, .. }
            | SessionOp::Leave { session, .. }
            | SessionOp::Bind { session, .. }
            | SessionOp::Kick { session }
            | SessionOp::UserOf { session }
            | SessionOp::Hand { session, .. } => Some(*session),
            _ => None,
        }
    }
}

/// Longest group name or user id accepted.
pub const MAX_NAME: usize = 256;

fn status_of(result: Result<(), PushError>) -> u32 {
    match result {
        Ok(()) => session_status::OK,
        Err(PushError::NoSuchSession) => session_status::NO_SUCH_SESSION,
        Err(PushError::Backpressure) => session_status::BACKPRESSURE,
    }
}

fn push(topic: u32, payload: &Bytes) -> Outbound {
    Outbound::Push {
        topic,
        payload: payload.clone(),
    }
}

impl Sessions {
    /// Runs an operation another node sent for this gate's sessions.
    pub fn apply(&self, op: SessionOp) -> OpReply {
        let status = OpReply::status;
        if let Some(session) = op.session()
            && let Some(gate) = self.moved_away(session)
        {
            return OpReply {
                moved: Some(gate),
                ..status(session_status::NO_SUCH_SESSION)
            };
        }
        match op {
            SessionOp::PushMany {
                sessions,
                topic,
                payload,
            } => {
                let payload = Bytes::from(payload.into_vec());
                for id in sessions {
                    let _ = self.push_from_peer(id, topic, payload.clone());
                }
                status(session_status::OK)
            }
            SessionOp::PushGroup {
                group,
                topic,
                payload,
            } => {
                self.push_group_local(&group, topic, &Bytes::from(payload.into_vec()));
                status(session_status::OK)
            }
            SessionOp::PushAll { topic, payload } => {
                self.push_all_local(topic, &Bytes::from(payload.into_vec()));
                status(session_status::OK)
            }
            SessionOp::PushUser {
                user,
                topic,
                payload,
            } => {
                self.push_user_local(&user, topic, &Bytes::from(payload.into_vec()));
                status(session_status::OK)
            }
            SessionOp::Join { session, group, .. } => {
                status(status_of(self.join_local(session, &group, true)))
            }
            SessionOp::Leave { session, group } => {
                status(status_of(self.join_local(session, &group, false)))
            }
            SessionOp::Bind { session, user } => {
                status(status_of(self.bind_local(session, user.as_deref())))
            }
            SessionOp::KickUser { user, except } => {
                self.kick_user_local(&user, except);
                status(session_status::OK)
            }
            SessionOp::Kick { session } => {
                status(status_of(self.kick_local(session, KickReason::Kicked)))
            }
            SessionOp::UserOf { session } => match self.user_of_local(session) {
                Ok(user) => OpReply {
                    user,
                    ..status(session_status::OK)
                },
                Err(e) => status(status_of(Err(e))),
            },
            SessionOp::Hand {
                session,
                secret,
                to,
            } => {
                let Ok(secret) = <[u8; SECRET_LEN]>::try_from(&secret[..]) else {
                    return status(session_status::INVALID);
                };
                match self.hand_over(session, &secret, to) {
                    Ok(handover) => OpReply {
                        handover: Some(handover),
                        ..status(session_status::OK)
                    },
                    Err(ResumeError::Invalid) if !self.read().map.contains_key(&session) => {
                        status(session_status::NO_SUCH_SESSION)
                    }
                    Err(_) => status(session_status::INVALID),
                }
            }
        }
    }

    /// The gate session `id` went to, if it left this one (it is not held here).
    fn moved_away(&self, id: u64) -> Option<u16> {
        match self.place(id) {
            Place::Gate(gate) if self.remote().and_then(|r| r.moved_to(id)) == Some(gate) => {
                Some(gate)
            }
            _ => None,
        }
    }

    // ----- this gate's sessions -----

    /// Pushes to each listed session held here; returns how many were queued.
    pub fn push_many_local(&self, ids: &[u64], topic: u32, payload: &Bytes) -> usize {
        let inner = self.read();
        ids.iter()
            .filter_map(|id| inner.map.get(id))
            .filter(|e| e.deliver(push(topic, payload)).is_ok())
            .count()
    }

    /// Pushes to every member of `group` held here; returns how many were queued.
    pub fn push_group_local(&self, group: &str, topic: u32, payload: &Bytes) -> usize {
        let inner = self.read();
        let Some(members) = inner.groups.get(group) else {
            return 0;
        };
        members
            .iter()
            .filter_map(|id| inner.map.get(id))
            .filter(|e| e.deliver(push(topic, payload)).is_ok())
            .count()
    }

    /// Pushes to every session held here; returns how many were queued.
    pub fn push_all_local(&self, topic: u32, payload: &Bytes) -> usize {
        let inner = self.read();
        inner
            .map
            .values()
            .filter(|e| e.deliver(push(topic, payload)).is_ok())
            .count()
    }

    /// Pushes to every session of `user` held here; returns how many were queued.
    pub fn push_user_local(&self, user: &str, topic: u32, payload: &Bytes) -> usize {
        let inner = self.read();
        let Some(ids) = inner.users.get(user) else {
            return 0;
        };
        ids.iter()
            .filter_map(|id| inner.map.get(id))
            .filter(|e| e.deliver(push(topic, payload)).is_ok())
            .count()
    }

    /// Adds a session held here to `group` (`join`) or removes it.
    pub fn join_local(&self, id: u64, group: &str, join: bool) -> Result<(), PushError> {
        let mut inner = self.write();
        let entry: &mut Entry = inner.map.get_mut(&id).ok_or(PushError::NoSuchSession)?;
        let at = entry.groups.iter().position(|g| g == group);
        match (join, at) {
            (true, None) => {
                entry.groups.push(group.to_owned());
                inner.groups.entry(group.to_owned()).or_default().insert(id);
            }
            (false, Some(at)) => {
                entry.groups.swap_remove(at);
                inner.group_lost_member(group, id);
            }
            _ => return Ok(()),
        }
        drop(inner);
        self.share(id);
        Ok(())
    }

    /// The groups a session held here belongs to.
    pub fn groups_of_local(&self, id: u64) -> Result<Vec<String>, PushError> {
        let inner = self.read();
        let entry = inner.map.get(&id).ok_or(PushError::NoSuchSession)?;
        Ok(entry.groups.clone())
    }

    /// Binds `user` to a session held here (`None` unbinds). With the session's listener
    /// set to `single_login`, the user's other sessions are kicked, here and on every gate.
    pub fn bind_local(&self, id: u64, user: Option<&str>) -> Result<(), PushError> {
        let mut inner = self.write();
        let entry = inner.map.get_mut(&id).ok_or(PushError::NoSuchSession)?;
        let single = entry.settings.single_login;
        let old = std::mem::replace(&mut entry.user, user.map(str::to_owned));
        if let Some(old) = &old {
            inner.unbind(old, id);
        }
        let Some(user) = user else {
            drop(inner);
            self.share(id);
            return Ok(());
        };
        inner.users.entry(user.to_owned()).or_default().insert(id);
        drop(inner);
        self.share(id);
        if single && old.as_deref() != Some(user) {
            self.kick_user_local(user, id);
            if let Some(remote) = self.remote() {
                remote.broadcast_op(SessionOp::KickUser {
                    user: user.to_owned(),
                    except: id,
                });
            }
        }
        Ok(())
    }

    /// Kicks every session of `user` held here except `except`.
    pub fn kick_user_local(&self, user: &str, except: u64) {
        let others: Vec<u64> = {
            let inner = self.read();
            inner
                .users
                .get(user)
                .map(|ids| ids.iter().copied().filter(|&i| i != except).collect())
                .unwrap_or_default()
        };
        for other in others {
            tracing::debug!(session = other, user, "kicked: the user logged in again");
            let _ = self.kick_local(other, KickReason::LoggedInElsewhere);
        }
    }

    /// The user bound to a session held here.
    pub fn user_of_local(&self, id: u64) -> Result<Option<String>, PushError> {
        let inner = self.read();
        let entry = inner.map.get(&id).ok_or(PushError::NoSuchSession)?;
        Ok(entry.user.clone())
    }

    // ----- the whole cluster -----

    /// Pushes to each listed session, wherever it is connected. Sessions that are gone are
    /// skipped; returns how many were queued here or sent to their gates.
    pub fn push_many(&self, ids: &[u64], topic: u32, payload: Bytes) -> usize {
        let mut remote: std::collections::BTreeMap<u16, Vec<u64>> = Default::default();
        let mut local = Vec::new();
        for &id in ids {
            match self.place(id) {
                Place::Here => local.push(id),
                Place::Gate(gate) => remote.entry(gate).or_default().push(id),
            }
        }
        let mut sent = self.push_many_local(&local, topic, &payload);
        if let Some(cluster) = self.remote() {
            for (gate, sessions) in remote {
                sent += sessions.len();
                cluster.send_op(
                    gate,
                    SessionOp::PushMany {
                        sessions,
                        topic,
                        payload: ByteBuf::from(payload.to_vec()),
                    },
                );
            }
        }
        sent
    }

    /// Pushes to every member of `group`, on every gate.
    pub fn push_group(&self, group: &str, topic: u32, payload: Bytes) {
        self.push_group_local(group, topic, &payload);
        if let Some(cluster) = self.remote() {
            cluster.broadcast_op(SessionOp::PushGroup {
                group: group.to_owned(),
                topic,
                payload: ByteBuf::from(payload.to_vec()),
            });
        }
    }

    /// Pushes to every session of the cluster.
    pub fn push_all(&self, topic: u32, payload: Bytes) {
        self.push_all_local(topic, &payload);
        if let Some(cluster) = self.remote() {
            cluster.broadcast_op(SessionOp::PushAll {
                topic,
                payload: ByteBuf::from(payload.to_vec()),
            });
        }
    }

    /// Pushes to every session bound to `user`, on every gate.
    pub fn push_user(&self, user: &str, topic: u32, payload: Bytes) {
        self.push_user_local(user, topic, &payload);
        if let Some(cluster) = self.remote() {
            cluster.broadcast_op(SessionOp::PushUser {
                user: user.to_owned(),
                topic,
                payload: ByteBuf::from(payload.to_vec()),
            });
        }
    }

    /// Runs a single-session operation where the session is: here, or on its gate. Returns
    /// the gate's answer (`session_status::UNAVAILABLE` when it cannot be reached).
    pub async fn on_session(&self, id: u64, op: SessionOp) -> OpReply {
        let (Place::Gate(mut gate), Some(cluster)) = (self.place(id), self.remote()) else {
            return self.apply(op);
        };
        // A session that moved is followed: the gate it left says where it went.
        for _ in 0..3 {
            match cluster.request_op(gate, op.clone()).await {
                Ok(OpReply {
                    moved: Some(to), ..
                }) if to != gate && to != self.node_index => {
                    cluster.handed_over(id, to);
                    gate = to;
                }
                Ok(reply) => return reply,
                // The gate it moved to is gone: the gate that issued it knows where it is.
                Err(_) if gate != (id >> 48) as u16 && (id >> 48) as u16 != self.node_index => {
                    gate = (id >> 48) as u16;
                    cluster.handed_over(id, gate);
                }
                Err(err) => match cluster.locate(id).await {
                    // Resumed from its shared record on another gate, which told no one.
                    Some(to) if to != gate && to != self.node_index => {
                        cluster.handed_over(id, to);
                        gate = to;
                    }
                    _ => {
                        tracing::debug!(session = id, "session operation failed: {err}");
                        return OpReply::status(session_status::UNAVAILABLE);
                    }
                },
            }
        }
        OpReply::status(session_status::NO_SUCH_SESSION)
    }
}
