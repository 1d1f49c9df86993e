//! `counters`: the cached-database-object operations one by one, for tests and benchmarks.
//! Commands 301-309.

#[firefly_sdk::module]
mod counters {
    use firefly_sdk::data::{self, Table};
    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A named counter.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "counters")]
    pub struct Counter {
        #[primary_key]
        pub id: u64,
        #[index]
        pub name: String,
        pub count: i64,
        /// Free-form bytes (lets tests store large objects).
        #[serde(default)]
        pub blob: Vec<u8>,
        pub note: Option<String>,
    }

    /// A counter and the version it was read at.
    #[derive(Serialize, Deserialize)]
    pub struct Read {
        pub version: u64,
        pub counter: Counter,
    }

    #[derive(Deserialize)]
    pub struct Id {
        pub id: u64,
    }

    /// Command 301: insert a counter; replies with its version.
    #[handler(301)]
    fn put(ctx: &mut Ctx, c: Counter) -> Result<u64> {
        Ok(ctx.insert(&c)?)
    }

    /// Command 302: read a counter (nil when absent).
    #[handler(302)]
    fn get(ctx: &mut Ctx, req: Id) -> Result<Option<Read>> {
        Ok(ctx.get::<Counter>(req.id)?.map(|v| Read {
            version: v.version,
            counter: v.value,
        }))
    }

    #[derive(Deserialize)]
    pub struct Incr {
        pub id: u64,
        pub by: i64,
    }

    /// Command 303: add to a counter, retrying conflicts; replies with the new count.
    #[handler(303)]
    fn incr(ctx: &mut Ctx, req: Incr) -> Result<i64> {
        let c = ctx.modify::<Counter>(req.id, |c| {
            c.count += req.by;
            Ok(())
        })?;
        Ok(c.count)
    }

    #[derive(Deserialize)]
    pub struct SetAt {
        pub id: u64,
        pub version: u64,
        pub count: i64,
    }

    /// Command 304: set the count if the counter is still at `version` (no retry): a stale
    /// version fails with `conflict`.
    #[handler(304)]
    fn set_at(ctx: &mut Ctx, req: SetAt) -> Result<u64> {
        let Some(mut c) = ctx.get::<Counter>(req.id)? else {
            bail!("not_found", "no counter {}", req.id);
        };
        c.version = req.version;
        c.count = req.count;
        Ok(ctx.update(&mut c)?)
    }

    /// Command 305: delete a counter.
    #[handler(305)]
    fn delete(ctx: &mut Ctx, req: Id) -> Result<()> {
        Ok(ctx.delete::<Counter>(req.id)?)
    }

    #[derive(Deserialize)]
    pub struct ByName {
        pub name: String,
    }

    /// Command 306: ids of the counters with this name (through the index).
    #[handler(306)]
    fn by_name(ctx: &mut Ctx, req: ByName) -> Result<Vec<u64>> {
        let keys = ctx.list_by::<Counter, _>("name", &req.name)?;
        Ok(keys
            .into_iter()
            .filter_map(|k| match k {
                data::Key::Int(i) => Some(i as u64),
                data::Key::Text(_) => None,
            })
            .collect())
    }

    /// Command 307: a fresh counter id.
    #[handler(307)]
    fn alloc(ctx: &mut Ctx, _req: ()) -> Result<u64> {
        Ok(ctx.alloc_id::<Counter>()?)
    }

    /// Command 308: runs a raw, hand-encoded `DataOp` (tests send bad input through it);
    /// replies with the raw answer, or fails with the data error's code.
    #[handler(308)]
    fn raw(_ctx: &mut Ctx, op: Raw) -> Result<Raw> {
        Ok(Raw(data::call_bytes(&op.0)?))
    }

    /// Command 309: the schema this module declares (for tests).
    #[handler(309)]
    fn schema(_ctx: &mut Ctx, _req: ()) -> Result<String> {
        Ok(format!("{:?}", Counter::schema()))
    }

    /// Command 310: read-modify-write without retrying (lets a test observe conflicts).
    #[handler(310)]
    fn incr_once(ctx: &mut Ctx, req: Incr) -> Result<i64> {
        let Some(mut c) = ctx.get::<Counter>(req.id)? else {
            bail!("not_found", "no counter {}", req.id);
        };
        c.count += req.by;
        ctx.update(&mut c)?;
        Ok(c.count)
    }
}
