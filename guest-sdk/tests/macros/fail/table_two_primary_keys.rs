// A table has one primary key.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
pub struct Player {
    #[primary_key]
    pub id: u64,
    #[primary_key]
    pub name: String,
}

fn main() {}
