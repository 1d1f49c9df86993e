// Every field of a described struct describes itself (or is marked `#[schema(any)]`).
use firefly_sdk::Schema;
use serde::Serialize;

#[derive(Serialize)]
pub struct Opaque {
    pub a: u32,
}

#[derive(Serialize, Schema)]
pub struct Outer {
    pub inner: Opaque,
}

fn main() {}
