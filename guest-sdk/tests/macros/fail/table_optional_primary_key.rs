// The primary key is an integer or a String, never absent.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
pub struct Player {
    #[primary_key]
    pub id: Option<u64>,
}

fn main() {}
