// A module with nothing for the host to call.
#[firefly_sdk::module]
mod nothing {
    pub fn helper() {}
}

fn main() {}
