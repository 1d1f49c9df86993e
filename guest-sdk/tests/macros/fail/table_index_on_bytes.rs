// Only scalar fields can be indexed.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
pub struct Player {
    #[primary_key]
    pub id: u64,
    #[index]
    pub avatar: Vec<u8>,
}

fn main() {}
