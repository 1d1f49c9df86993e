// `#[serde(flatten)]` fields are not described.
use firefly_sdk::Schema;
use serde::Serialize;

#[derive(Serialize, Schema)]
pub struct Inner {
    pub a: u32,
}

#[derive(Serialize, Schema)]
pub struct Outer {
    #[serde(flatten)]
    pub inner: Inner,
}

fn main() {}
