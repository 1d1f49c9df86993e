// A table has a primary key.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
pub struct Player {
    pub id: u64,
    pub name: String,
}

fn main() {}
