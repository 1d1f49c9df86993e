//! `matchmaking`: queues that form matches. Commands 481-483, pushes on topic 4801.
//!
//! A player queues for a mode with a rating and a region (481); every 200 ms a repeating durable
//! host timer (one per mode, on the node that saw the mode first) forms matches per mode: players of the same region whose ratings lie within a window
//! that widens the longer the earliest of them has waited (±100, +200 per second waited, at most
//! ±2000), `size` players a match (2 to 16, given by the first to queue for the mode). Each
//! match opens a room `match-<id>` with its players as members and pushes a [`Matched`] to each.
//! Leaving the queue (482) and disconnecting both take the player out. One queue entry per
//! session; at most 10,000 queued per mode; at most 200 matches and 250 ms formed per firing (the
//! rest 200 ms later), so a long queue never runs a firing past the module's budgets.

#[firefly_sdk::module]
mod matchmaking {
    use std::time::Duration;

    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// Pushed to every player of a new match.
    pub const MATCHED_TOPIC: u32 = 4801;
    /// How often matches are formed.
    const EVERY: Duration = Duration::from_millis(200);
    const MAX_QUEUED: usize = 10_000;
    /// Matches formed by one firing at most, so a firing stays well inside the module's CPU
    /// budget however long the queue; the rest are formed 200 ms later.
    const MAX_MATCHES_PER_FIRING: usize = 200;
    /// Wall time one firing spends forming matches at most (each match is a few journaled
    /// writes), well inside the module's CPU budget and timeout: a firing stopped by them would
    /// have taken players out of the queue without telling them. The rest wait for the next
    /// firing.
    const FIRING_BUDGET_MICROS: u64 = 250_000;

    /// One queued player.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "mm_queue")]
    pub struct Queued {
        #[primary_key]
        pub session: u64,
        #[index]
        pub mode: String,
        pub region: String,
        pub rating: i64,
        pub size: u32,
        pub since_micros: u64,
    }

    /// A match being made: written before its players leave the queue and deleted once they
    /// were told, so a firing stopped in between (by the module's limits, a trap, its node's
    /// end) is finished or undone by the next firing of the mode, and no player is left out
    /// of the queue untold.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "mm_forming")]
    pub struct Forming {
        #[primary_key]
        pub id: u64,
        #[index]
        pub mode: String,
        pub players: Vec<Queued>,
    }

    /// The mode's forming timer, started once.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "mm_modes")]
    pub struct Mode {
        #[primary_key]
        pub mode: String,
        pub timer: u64,
        /// Until when (µs) a firing is forming this mode's matches: firings of a repeating
        /// timer may overlap when one runs longer than the period, and only one may form.
        #[serde(default)]
        pub forming_until: u64,
    }

    /// How many are queued for a mode, in [`COUNT_SHARDS`] shards (a session counts in shard
    /// `session % COUNT_SHARDS`): the cap is checked against their sum, so queueing costs the
    /// same with 10 or 10,000 players waiting, and thousands of players queueing at once do not
    /// all write one object (a single counter failed them with `conflict`, found by the
    /// matchmaking bench). Kept by every write to the queue.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "mm_counts")]
    pub struct Count {
        /// `<mode>#<shard>`.
        #[primary_key]
        pub shard: String,
        pub queued: u32,
    }

    /// Shards of a mode's count.
    const COUNT_SHARDS: u64 = 16;

    fn shard_key(mode: &str, session: u64) -> String {
        format!("{mode}#{}", session % COUNT_SHARDS)
    }

    /// Players queued for `mode`: the sum of its shards.
    fn queued_total(ctx: &Ctx, mode: &str) -> Result<u32> {
        let mut total = 0u32;
        for shard in 0..COUNT_SHARDS {
            if let Some(c) = ctx.get::<Count>(format!("{mode}#{shard}"))? {
                total = total.saturating_add(c.value.queued);
            }
        }
        Ok(total)
    }

    /// Adds `delta` to `session`'s shard of the mode's count (never below 0; created on
    /// first use).
    fn count(ctx: &Ctx, mode: &str, session: u64, delta: i64) -> Result<()> {
        let key = shard_key(mode, session);
        let change = |c: &mut Count| {
            c.queued = (i64::from(c.queued) + delta).max(0) as u32;
            Ok(())
        };
        loop {
            match ctx.modify::<Count>(key.clone(), change) {
                Ok(_) => return Ok(()),
                Err(e) if e.code == "not_found" => {}
                Err(e) => return Err(e),
            }
            let mut fresh = Count {
                shard: key.clone(),
                queued: 0,
            };
            change(&mut fresh)?;
            match ctx.insert(&fresh) {
                Ok(_) => return Ok(()),
                // Another request created it first: modify that one.
                Err(DataError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A match, as `match-<id>` rooms are keyed (shared with the games that host them).
    #[table]
    type MatchRow = gameplay_common::matches::MatchRow;

    /// Command 481.
    #[derive(Deserialize)]
    pub struct Queue {
        pub mode: String,
        pub rating: i64,
        #[serde(default)]
        pub region: String,
        #[serde(default = "two")]
        pub size: u32,
    }

    fn two() -> u32 {
        2
    }

    /// Pushed when a match forms.
    #[derive(Debug, Serialize)]
    pub struct Matched {
        pub id: u64,
        pub mode: String,
        pub room: String,
        pub players: Vec<u64>,
        pub ratings: Vec<i64>,
    }

    #[derive(Deserialize)]
    pub struct ModeName {
        pub mode: String,
    }

    fn check_name(what: &str, name: &str) -> Result<()> {
        ensure!(
            !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "invalid_name",
            "a {what} is 1 to 32 letters, digits, `-` or `_`"
        );
        Ok(())
    }

    /// Command 481: queues the caller; replies how many are queued for the mode.
    #[handler(481)]
    fn queue(ctx: &mut Ctx, req: Queue) -> Result<usize> {
        check_name("mode", &req.mode)?;
        if !req.region.is_empty() {
            check_name("region", &req.region)?;
        }
        ensure!(
            (2..=16).contains(&req.size),
            "invalid_size",
            "a match has 2 to 16 players"
        );
        ensure!(
            req.rating.abs() <= 1_000_000,
            "invalid_rating",
            "ratings are within ±1,000,000"
        );
        // The shards are summed, then one is written: requests racing past the cap may
        // overshoot it by as many as run at once.
        let queued = queued_total(ctx, &req.mode)? as usize;
        ensure!(
            queued < MAX_QUEUED,
            "queue_full",
            "{MAX_QUEUED} players are queued for `{}`",
            req.mode
        );
        count(ctx, &req.mode, ctx.session(), 1)?;
        let entry = Queued {
            session: ctx.session(),
            mode: req.mode.clone(),
            region: req.region,
            rating: req.rating,
            size: req.size,
            since_micros: ctx.now_micros(),
        };
        if let Err(e) = ctx.insert(&entry) {
            count(ctx, &req.mode, ctx.session(), -1)?;
            if e.code() == "already_exists" {
                bail!("already_queued", "this session is already queued")
            }
            return Err(e.into());
        }
        if ctx.get::<Mode>(req.mode.clone())?.is_none() {
            // Durable: the mode keeps forming matches after its node restarts.
            let timer = ctx.start_timer(Timer::every(EVERY, "form").with(&req.mode)?.durable())?;
            if ctx
                .insert(&Mode {
                    mode: req.mode.clone(),
                    timer: timer.id(),
                    forming_until: 0,
                })
                .is_err()
            {
                // Another request started the mode's timer first.
                ctx.cancel_timer(timer);
            }
        }
        Ok(queued + 1)
    }

    /// Command 482: takes the caller out of the queue; whether it was queued.
    #[handler(482)]
    fn leave(ctx: &mut Ctx, _: ()) -> Result<bool> {
        dequeue(ctx)
    }

    /// Takes the caller out of its queue; whether it was queued.
    fn dequeue(ctx: &mut Ctx) -> Result<bool> {
        let Some(entry) = ctx.get::<Queued>(ctx.session())? else {
            return Ok(false);
        };
        match ctx.delete_versioned(&entry) {
            Ok(()) => {}
            // Claimed by a match (or changed) meanwhile: the match keeps the count right.
            Err(DataError::NotFound(_) | DataError::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        count(ctx, &entry.value.mode, entry.value.session, -1)?;
        Ok(true)
    }

    /// Command 483: how many are queued for a mode.
    #[handler(483)]
    fn queued(ctx: &mut Ctx, req: ModeName) -> Result<usize> {
        check_name("mode", &req.mode)?;
        Ok(queued_total(ctx, &req.mode)? as usize)
    }

    #[on_disconnect]
    fn gone(ctx: &mut Ctx) -> Result<()> {
        dequeue(ctx).map(drop)
    }

    /// The rating window of a group whose earliest member has waited `waited`.
    fn window(waited: Duration) -> i64 {
        (100 + (waited.as_millis() as i64) / 5).min(2000)
    }

    /// How long a firing holds the right to form a mode's matches (past its timeout, so a
    /// firing that failed midway never blocks the mode for long).
    const LEASE_MICROS: u64 = 6_000_000;

    /// Forms every match it can for one mode, unless an earlier firing still is.
    #[timer("form")]
    fn form(ctx: &mut Ctx, fired: Fired<String>) -> Result<()> {
        let mode = fired.payload;
        let now = ctx.now_micros();
        let lease = ctx.modify::<Mode>(mode.clone(), |m| {
            ensure!(m.forming_until <= now, "busy", "another firing is forming");
            m.forming_until = now + LEASE_MICROS;
            Ok(())
        });
        match lease {
            Ok(_) => {}
            Err(e) if e.code == "busy" || e.code == "not_found" => return Ok(()),
            Err(e) => return Err(e),
        }
        let formed = recover(ctx, &mode).and_then(|()| form_matches(ctx, &mode, now));
        ctx.modify::<Mode>(mode, |m| {
            m.forming_until = 0;
            Ok(())
        })?;
        formed
    }

    fn form_matches(ctx: &mut Ctx, mode: &str, now: u64) -> Result<()> {
        let mut queued = Vec::new();
        for key in ctx.list_by::<Queued, _>("mode", &mode)? {
            if let Some(q) = ctx.get::<Queued>(key)? {
                queued.push(q.value);
            }
        }
        queued.sort_by_key(|q| (q.region.clone(), q.rating));
        let (mut i, mut formed) = (0, 0);
        // Counted from here, after the queue is read, so every firing forms what it can.
        let deadline = ctx.now_micros() + FIRING_BUDGET_MICROS;
        while i < queued.len() && formed < MAX_MATCHES_PER_FIRING && ctx.now_micros() < deadline {
            let size = queued[i].size as usize;
            let group = match queued.get(i..i + size) {
                Some(g) => g,
                None => break,
            };
            let earliest = group.iter().map(|q| q.since_micros).min().unwrap_or(now);
            let spread = group[size - 1].rating - group[0].rating;
            let same_region = group.iter().all(|q| q.region == group[0].region);
            if same_region && spread <= window(Duration::from_micros(now.saturating_sub(earliest)))
            {
                if start_match(ctx, mode, group)? {
                    formed += 1;
                }
                i += size;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Finishes or undoes the matches an earlier firing of `mode` was stopped in the middle
    /// of: a match that was recorded is told (again) to its players; one that was not puts
    /// its players back in the queue, as they were.
    fn recover(ctx: &mut Ctx, mode: &str) -> Result<()> {
        for key in ctx.list_by::<Forming, _>("mode", &mode)? {
            let Some(forming) = ctx.get::<Forming>(key)? else {
                continue;
            };
            let Forming { id, players, .. } = forming.value;
            if ctx.get::<MatchRow>(id)?.is_some() {
                tell(ctx, mode, id, &players)?;
            } else {
                // The room, if it was opened, has no match: close it.
                let _ = ctx.close_room(&gameplay_common::matches::room_of(id));
                for q in &players {
                    match ctx.insert(q) {
                        Ok(_) => count(ctx, mode, q.session, 1)?,
                        Err(DataError::AlreadyExists(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                warn!(
                    "match {id} of `{mode}` was stopped before its players were told: {} put back in the queue",
                    players.len()
                );
            }
            match ctx.delete::<Forming>(id) {
                Ok(()) | Err(DataError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Pushes match `id` to its players.
    fn tell(ctx: &Ctx, mode: &str, id: u64, group: &[Queued]) -> Result<()> {
        let players: Vec<u64> = group.iter().map(|q| q.session).collect();
        let matched = Matched {
            id,
            mode: mode.to_owned(),
            room: gameplay_common::matches::room_of(id),
            players: players.clone(),
            ratings: group.iter().map(|q| q.rating).collect(),
        };
        ctx.push_sessions(&players, MATCHED_TOPIC, &matched)
    }

    /// Takes `group` out of the queue and into a new match; `false` (nothing changed) when one
    /// of them left the queue meanwhile. The match is written down first ([`Forming`]), so
    /// being stopped anywhere after that is finished or undone by [`recover`].
    fn start_match(ctx: &mut Ctx, mode: &str, group: &[Queued]) -> Result<bool> {
        let id = ctx.alloc_id::<MatchRow>()?;
        ctx.insert(&Forming {
            id,
            mode: mode.to_owned(),
            players: group.to_vec(),
        })?;
        let mut claimed = Vec::with_capacity(group.len());
        for q in group {
            match ctx.delete::<Queued>(q.session) {
                Ok(()) => claimed.push(q),
                Err(DataError::NotFound(_)) => {
                    // Gone (left, disconnected): put the others back for the next firing.
                    for c in claimed {
                        match ctx.insert(c) {
                            Ok(_) | Err(DataError::AlreadyExists(_)) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    ctx.delete::<Forming>(id)?;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        for q in group {
            count(ctx, mode, q.session, -1)?;
        }
        let players: Vec<u64> = group.iter().map(|q| q.session).collect();
        let room = gameplay_common::matches::room_of(id);
        ctx.open_room(&room, RoomSpec::new().max_members(group.len() as u32))?;
        for q in group {
            // A player gone since it queued is simply not in the room.
            let _ = ctx.join_room(&room, q.session);
        }
        ctx.insert(&MatchRow {
            id,
            mode: mode.to_owned(),
            players: players.clone(),
        })?;
        tell(ctx, mode, id, group)?;
        match ctx.delete::<Forming>(id) {
            Ok(()) | Err(DataError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(true)
    }
}
