//! Matches as `matchmaking` records them (table `mm_matches`), so a game module can check
//! that a player joining `match-<id>` was matched into it. Declare it in the module with
//! `#[table] type MatchRow = gameplay_common::matches::MatchRow;`.

use firefly_sdk::prelude::*;
use firefly_sdk::serde::{Deserialize, Serialize};

/// A match, as `match-<id>` rooms are keyed.
#[derive(Debug, Clone, Serialize, Deserialize, Table)]
#[serde(crate = "firefly_sdk::serde")]
#[table(name = "mm_matches")]
pub struct MatchRow {
    #[primary_key]
    pub id: u64,
    pub mode: String,
    /// The matched sessions.
    pub players: Vec<u64>,
}

/// The room key of match `id`.
pub fn room_of(id: u64) -> String {
    format!("match-{id}")
}

/// The match id in a room key `match-<id>`.
pub fn match_of(room: &str) -> Option<u64> {
    room.strip_prefix("match-")?.parse().ok()
}
