// The attribute goes on an inline module, not on a function.
#[firefly_sdk::module]
fn game() {}

fn main() {}
