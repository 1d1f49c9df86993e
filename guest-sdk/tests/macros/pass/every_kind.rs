//! Every attribute `#[firefly_sdk::module]` knows, each used as documented, and a table: it
//! compiles, and the table's schema is what its attributes say.

#[firefly_sdk::module(name = "everything")]
mod everything {
    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize)]
    pub struct Hello {
        pub name: String,
    }

    #[derive(Serialize)]
    pub struct Greeting {
        pub greeting: String,
    }

    #[derive(Debug, Serialize, Deserialize, Table)]
    #[table(name = "scores")]
    pub struct Score {
        #[primary_key]
        pub id: u64,
        #[index]
        pub name: String,
        pub board: String,
        #[rank(by = "board")]
        pub points: i64,
        pub note: Option<String>,
        #[serde(default)]
        pub blob: Vec<u8>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Count {
        pub left: u32,
    }

    #[handler(101)]
    fn hello(_ctx: &mut Ctx, req: Hello) -> Result<Greeting> {
        Ok(Greeting {
            greeting: format!("Hello, {}!", req.name),
        })
    }

    #[handler(4_294_967_294)]
    fn raw(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }

    #[timer("respawn")]
    fn respawn(_ctx: &mut Ctx, _fired: Fired<String>) -> Result<()> {
        Ok(())
    }

    #[room_tick]
    fn tick(_ctx: &mut Ctx, t: Tick<Count>) -> Result<Option<Count>> {
        Ok(Some(t.state))
    }

    #[room_event]
    fn member(_ctx: &mut Ctx, _e: RoomEvent) -> Result<()> {
        Ok(())
    }

    #[on_connect]
    fn joined(_ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }

    #[on_disconnect]
    fn left(_ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
}

use firefly_sdk::data::Table;

fn main() {
    let schema = everything::Score::schema();
    assert_eq!(everything::Score::NAME, "scores");
    assert_eq!(schema.name, "scores");
    assert_eq!(schema.key, "id");
    let fields: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fields, ["id", "name", "board", "points", "note", "blob"]);
    assert!(schema.fields[1].indexed);
    assert!(schema.fields[4].nullable);
    assert!(schema.fields[5].defaulted);
    let rank = schema.rank.expect("a ranked table");
    assert_eq!((rank.field.as_str(), rank.by.as_deref()), ("points", Some("board")));
}
