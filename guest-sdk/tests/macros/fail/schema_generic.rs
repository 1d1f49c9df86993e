// A described type has no generic parameters (a typed client names each type once).
use firefly_sdk::Schema;

#[derive(Schema)]
pub struct Page<T> {
    pub items: Vec<T>,
}

fn main() {}
