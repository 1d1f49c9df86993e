// A handler takes the context and the request.
#[firefly_sdk::module]
mod game {
    use firefly_sdk::prelude::*;

    #[handler(1)]
    fn echo(payload: Raw) -> Result<Raw> {
        Ok(payload)
    }
}

fn main() {}
