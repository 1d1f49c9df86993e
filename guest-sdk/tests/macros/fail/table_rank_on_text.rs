// A rank is an integer.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
pub struct Player {
    #[primary_key]
    pub id: u64,
    #[rank]
    pub title: String,
}

fn main() {}
