//! Rooms held by other nodes, as the gate holding their members sees them.
//!
//! A room's members are in the session group `room:<key>` on whichever gate holds them, put
//! there by a `Join` the room's node sends over its link. The gate notes that node as the
//! room's host. When the gate has no link from that node any more (the node died, or its link
//! broke and with it every broadcast the room would send), each member here gets a
//! [`ROOM_LOST_TOPIC`] push and leaves the group: a player is told at once, not on its next
//! request, and never waits for ticks that will not come.

use std::sync::Arc;

use bytes::Bytes;
use firefly_abi::session_status;

use super::{OpReply, SessionOp, Sessions};
use crate::protocol::session::{ROOM_LOST_TOPIC, RoomLost};

/// The prefix of the session groups of rooms' members.
pub const ROOM_GROUP_PREFIX: &str = "room:";

impl Sessions {
    /// Runs an operation peer node `from` sent: as [`Sessions::apply`], and a join to a room's
    /// group records `from` as the room's host.
    pub fn apply_from(&self, from: &str, op: SessionOp) -> OpReply {
        let room = match &op {
            SessionOp::Join { group, .. } if group.starts_with(ROOM_GROUP_PREFIX) => {
                Some(group.clone())
            }
            _ => None,
        };
        let reply = self.apply(op);
        if let Some(group) = room
            && reply.status == session_status::OK
        {
            let mut inner = self.write();
            if inner.groups.contains_key(&group) {
                inner.hosts.insert(group, Arc::from(from));
            }
        }
        reply
    }

    /// Node `node` is gone: the members here of every room it held are told
    /// ([`ROOM_LOST_TOPIC`]) and leave the room's group. Returns how many sessions were told.
    pub fn host_lost(&self, node: &str) -> usize {
        let lost: Vec<(String, Vec<u64>)> = {
            let mut inner = self.write();
            let groups: Vec<String> = inner
                .hosts
                .iter()
                .filter(|(_, host)| &***host == node)
                .map(|(group, _)| group.clone())
                .collect();
            groups
                .into_iter()
                .map(|group| {
                    inner.hosts.remove(&group);
                    let members: Vec<u64> = inner
                        .groups
                        .remove(&group)
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    for m in &members {
                        if let Some(entry) = inner.map.get_mut(m) {
                            entry.groups.retain(|g| *g != group);
                        }
                    }
                    (group, members)
                })
                .collect()
        };
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
