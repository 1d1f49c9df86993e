//! A module of nothing but a table (its name defaults to the crate's), a table named after its
//! struct, and a `#[table]` alias of a table defined outside the module.

mod shared {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, firefly_sdk::Table)]
    pub struct PlayerStats {
        #[primary_key]
        pub player: String,
        pub wins: u32,
    }
}

#[firefly_sdk::module]
mod tables {
    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Table)]
    pub struct MatchRecord {
        #[primary_key]
        pub id: i64,
    }

    #[table]
    pub type Stats = crate::shared::PlayerStats;
}

use firefly_sdk::data::Table;

fn main() {
    assert_eq!(tables::MatchRecord::NAME, "match_record");
    assert_eq!(<tables::Stats as Table>::NAME, "player_stats");
    assert_eq!(tables::Stats::schema().key, "player");
}
