//! Rooms held by other nodes, as the gate holding their members sees them.
//!
//! A room's members are in the session group `room:<key>` on whichever gate holds them, put
//! there by a `Join` the room's node sends over its link. The gate notes that node as the
//! room's host (and routes the room's commands there). When the gate has no link from that
//! node any more (the node died, or its link broke and with it every broadcast the room would
//! send):
//! - the members of a room that does not outlive its node get a [`ROOM_LOST_TOPIC`] push and
//!   leave the group: a player is told at once, never waits for ticks that will not come;
//! - the members of a durable room stay, waiting for the node that takes the room over to
//!   put them in the group again (it then pushes `room_moved`); if none has after
//!   [`ORPHAN_WAIT`], they are told `room_lost` after all.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use firefly_abi::session_status;

use super::{OpReply, SessionOp, Sessions};
use crate::protocol::session::{ROOM_LOST_TOPIC, RoomLost};

/// The prefix of the session groups of rooms' members.
pub const ROOM_GROUP_PREFIX: &str = "room:";

/// How long the members of a durable room whose node is gone wait for another node to take
/// it over before they are told `room_lost`.
pub const ORPHAN_WAIT: Duration = Duration::from_secs(15);

/// The node holding a room, as a gate knows it.
#[derive(Debug, Clone)]
pub(super) struct Host {
    node: Arc<str>,
    /// The room outlives its node.
    durable: bool,
    /// Its node is gone; another one has not taken it over yet.
    orphaned: bool,
}

impl Sessions {
    /// Runs an operation peer node `from` sent: as [`Sessions::apply`], and a join to a room's
    /// group records `from` as the room's host.
    pub fn apply_from(&self, from: &str, op: SessionOp) -> OpReply {
        let room = match &op {
            SessionOp::Join { group, durable, .. } if group.starts_with(ROOM_GROUP_PREFIX) => {
                Some((group.clone(), *durable))
            }
            _ => None,
        };
        let reply = self.apply(op);
        if let Some((group, durable)) = room
            && reply.status == session_status::OK
        {
            let mut inner = self.write();
            if inner.groups.contains_key(&group) {
                let host = Host {
                    node: Arc::from(from),
                    durable,
                    orphaned: false,
                };
                inner.hosts.insert(group, host);
            }
        }
        reply
    }

    /// The node holding room `room`, as its members here know it (`None`: no member here,
    /// or its node is gone and no other has taken it over yet).
    pub fn room_host(&self, room: &str) -> Option<Arc<str>> {
        let group = format!("{ROOM_GROUP_PREFIX}{room}");
        let inner = self.read();
        inner
            .hosts
            .get(&group)
            .filter(|h| !h.orphaned)
            .map(|h| h.node.clone())
    }

    /// Node `node` is gone: the members here of every room it held that does not outlive it
    /// are told ([`ROOM_LOST_TOPIC`]) and leave the room's group; those of durable rooms wait
    /// (see [`Sessions::orphans_lost`]). Returns how many sessions were told, and whether
    /// durable rooms wait.
    pub fn host_lost(&self, node: &str) -> (usize, bool) {
        let mut waiting = false;
        let lost = {
            let mut inner = self.write();
            for host in inner.hosts.values_mut() {
                if &*host.node == node && host.durable {
                    host.orphaned = true;
                    waiting = true;
                }
            }
            inner.take_rooms(|h| &*h.node == node && !h.durable)
        };
        (self.tell_lost(node, lost), waiting)
    }

    /// The durable rooms node `node` held whose members here are still waiting for another
    /// node to take them over: they are told `room_lost` now. Returns how many were told.
    pub fn orphans_lost(&self, node: &str) -> usize {
        let lost = self.write().take_rooms(|h| &*h.node == node && h.orphaned);
        self.tell_lost(node, lost)
    }

    /// Pushes `room_lost` to the members of each room of `lost` (held by `node`).
    fn tell_lost(&self, node: &str, lost: Vec<(String, Vec<u64>)>) -> usize {
        let mut told = 0;
        for (group, members) in lost {
            let room = group[ROOM_GROUP_PREFIX.len()..].to_owned();
            tracing::info!(%room, node, members = members.len(), "room lost with its node");
            let message = format!("room `{room}` was lost: its node `{node}` is gone");
            let notice = RoomLost {
                room,
                node: node.to_owned(),
                code: "room_lost".to_owned(),
                message,
            };
            let payload = Bytes::from(rmp_serde::to_vec_named(&notice).unwrap_or_default());
            for m in members {
                if self.push_local(m, ROOM_LOST_TOPIC, payload.clone()).is_ok() {
                    told += 1;
                }
            }
        }
        told
    }
}

impl super::Inner {
    /// Removes the rooms whose host `which` picks, with their groups; each group and its
    /// members.
    fn take_rooms(&mut self, which: impl Fn(&Host) -> bool) -> Vec<(String, Vec<u64>)> {
        let groups: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, host)| which(host))
            .map(|(group, _)| group.clone())
            .collect();
        groups
            .into_iter()
            .map(|group| {
                self.hosts.remove(&group);
                let members: Vec<u64> = self
                    .groups
                    .remove(&group)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                for m in &members {
                    if let Some(entry) = self.map.get_mut(m) {
                        entry.groups.retain(|g| *g != group);
                    }
                }
                (group, members)
            })
            .collect()
    }
}
