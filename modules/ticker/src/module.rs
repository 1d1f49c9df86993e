// The `ticker` module's body, shared by `ticker` (generation 1) and `ticker-v2` (generation 2),
// which differ only in `GENERATION`: tests deploy one over the other and see which version a
// timer's firing ran on.

#[firefly_sdk::module(name = "ticker")]
mod ticker {
    use std::time::Duration;

    use firefly_sdk::prelude::*;
    use firefly_sdk::timers::Timer;
    use serde::{Deserialize, Serialize};

    /// Pushed to the session that started a timer, at each firing.
    pub const FIRED_TOPIC: u32 = 4501;
    /// Pushed by `stamp` firings: how late the handler ran, in microseconds.
    pub const LATENESS_TOPIC: u32 = 4502;

    /// One recorded firing.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "ticker_firings")]
    pub struct Firing {
        #[primary_key]
        pub id: u64,
        #[index]
        pub tag: String,
        pub timer: u64,
        pub firing: u64,
        pub late_ms: u64,
        pub generation: u32,
        pub note: String,
    }

    /// Command 451: start a timer.
    #[derive(Deserialize)]
    pub struct Start {
        pub tag: String,
        pub delay_ms: u64,
        #[serde(default)]
        pub period_ms: u64,
        #[serde(default)]
        pub durable: bool,
        #[serde(default)]
        pub note: String,
        /// When set: fire at this wall-clock time (microseconds since the epoch) instead of
        /// after `delay_ms`; the note becomes that time (what `stamp` measures against).
        #[serde(default)]
        pub at_micros: u64,
    }

    #[derive(Deserialize)]
    pub struct Id {
        pub id: u64,
    }

    #[derive(Deserialize)]
    pub struct Tag {
        pub tag: String,
    }

    /// Command 451: starts a timer; replies with its id.
    #[handler(451)]
    fn start(ctx: &mut Ctx, mut req: Start) -> Result<u64> {
        if req.at_micros > 0 {
            let ahead = req.at_micros.saturating_sub(ctx.now_micros());
            req.delay_ms = ahead.div_ceil(1000);
            req.note = req.at_micros.to_string();
        }
        let mut timer = if req.period_ms > 0 {
            Timer::every(Duration::from_millis(req.period_ms), &req.tag)
                .first_after(Duration::from_millis(req.delay_ms))
        } else {
            Timer::after(Duration::from_millis(req.delay_ms), &req.tag)
        }
        .with(&req.note)?;
        if req.durable {
            timer = timer.durable();
        }
        Ok(ctx.start_timer(timer)?.id())
    }

    /// Command 452: cancels a timer; replies whether it was pending.
    #[handler(452)]
    fn cancel(ctx: &mut Ctx, req: Id) -> Result<bool> {
        Ok(ctx.cancel_timer(firefly_sdk::timers::TimerId(req.id)))
    }

    /// Command 453: the recorded firings of a tag, oldest first.
    #[handler(453)]
    fn firings(ctx: &mut Ctx, req: Tag) -> Result<Vec<Firing>> {
        let mut all = Vec::new();
        for key in ctx.list_by::<Firing, _>("tag", &req.tag)? {
            if let Some(f) = ctx.get::<Firing>(key)? {
                all.push(f.value);
            }
        }
        all.sort_by_key(|f| f.id);
        Ok(all)
    }

    /// Command 454: the calling session's id.
    #[handler(454)]
    fn session(ctx: &mut Ctx, _: ()) -> Result<u64> {
        Ok(ctx.session())
    }

    fn record(ctx: &mut Ctx, tag: &str, fired: &Fired<String>) -> Result<()> {
        let firing = Firing {
            id: ctx.alloc_id::<Firing>()?,
            tag: tag.to_owned(),
            timer: fired.timer.id(),
            firing: fired.firing,
            late_ms: u64::try_from(fired.late.as_millis()).unwrap_or(u64::MAX),
            generation: super::GENERATION,
            note: fired.payload.clone(),
        };
        ctx.insert(&firing)?;
        if fired.session != 0 {
            // The starter may have gone; its firing is recorded anyway.
            let _ = ctx.push_sessions(&[fired.session], FIRED_TOPIC, &firing);
        }
        Ok(())
    }

    /// A one-shot or repeating timer: records each firing.
    #[timer("tick")]
    fn tick(ctx: &mut Ctx, fired: Fired<String>) -> Result<()> {
        record(ctx, "tick", &fired)
    }

    /// Another tag, to show firings reach the handler of their own tag.
    #[timer("once")]
    fn once(ctx: &mut Ctx, fired: Fired<String>) -> Result<()> {
        record(ctx, "once", &fired)
    }

    /// Measures how late it runs against the time in its payload, and pushes that (in
    /// microseconds) to the starter: the timer benchmark's probe.
    #[timer("stamp")]
    fn stamp(ctx: &mut Ctx, fired: Fired<String>) -> Result<()> {
        let at: u64 = fired.payload.parse().unwrap_or(0);
        let late = ctx.now_micros().saturating_sub(at);
        let _ = ctx.push_sessions(&[fired.session], LATENESS_TOPIC, &late);
        Ok(())
    }

    /// A handler that traps on every firing: the timer keeps its schedule.
    #[timer("boom")]
    fn boom(_ctx: &mut Ctx, fired: Fired<String>) -> Result<()> {
        panic!("boom at firing {}", fired.firing)
    }
}
