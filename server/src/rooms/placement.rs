//! Where a room lives: rendezvous hashing of its key over the nodes that may hold it. Every
//! gate and every node computes the same answer without talking, and a node added or removed
//! moves only its share of the rooms. Gates route a room's commands with it (skipping nodes
//! known to be down); nodes use it to agree which one takes over a room whose node is gone.

/// The weight of node `node` for room `room`: the room lives on the node of highest weight.
pub fn weight(room: &str, node: &str) -> u64 {
    mix(fnv(room.as_bytes()) ^ fnv(node.as_bytes()))
}

/// The node of `nodes` where `room` lives (`None`: no nodes).
pub fn pick<'a>(room: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes.into_iter().max_by_key(|node| weight(room, node))
}

/// FNV-1a, 64-bit: a stable hash of a name (the same on every gate and every build).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: spreads consecutive ids over the nodes.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn a_room_stays_put_unless_its_node_goes() {
        let nodes = ["a", "b", "c"];
        let rooms: Vec<String> = (0..300).map(|i| format!("room-{i}")).collect();
        let before: Vec<&str> = rooms.iter().map(|r| pick(r, nodes).unwrap()).collect();
        // Every node gets a share.
        for n in nodes {
            assert!(before.iter().filter(|p| **p == n).count() > 50, "{n}");
        }
        // Without `b`, only `b`'s rooms move.
        for (room, was) in rooms.iter().zip(&before) {
            let now = pick(room, ["a", "c"]).unwrap();
            if *was != "b" {
                assert_eq!(now, *was, "{room}");
            }
        }
    }
}
