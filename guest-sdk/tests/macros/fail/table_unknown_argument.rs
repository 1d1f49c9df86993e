// `name` is the only argument of `#[table]`.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
#[table(rename = "players")]
pub struct Player {
    #[primary_key]
    pub id: u64,
}

fn main() {}
