// Table names are lowercase letters, digits and `_`.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
#[table(name = "Players")]
pub struct Player {
    #[primary_key]
    pub id: u64,
}

fn main() {}
