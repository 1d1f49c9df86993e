// A table is a struct with named fields.
#[derive(serde::Serialize, serde::Deserialize, firefly_sdk::Table)]
pub enum Mood {
    Happy,
}

fn main() {}
