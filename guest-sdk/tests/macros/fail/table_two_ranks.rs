// A table has one rank.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
pub struct Player {
    #[primary_key]
    pub id: u64,
    #[rank]
    pub wins: u32,
    #[rank]
    pub losses: u32,
}

fn main() {}
