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

    /// How many are queued for a mode: the cap is checked against it, so queueing costs the
    /// same with 10 or 10,000 players waiting. Kept by every write to the queue.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "mm_counts")]
    pub struct Count {
        #[primary_key]
        pub mode: String,
        pub queued: u32,
    }

    /// Adds `delta` to the mode's count (never below 0; the count is created on first use).
    /// With `cap`, refuses to go past it (`queue_full`).
    fn count(ctx: &Ctx, mode: &str, delta: i64, cap: Option<usize>) -> Result<u32> {
        let change = |c: &mut Count| {
            let next = (i64::from(c.queued) + delta).max(0);
            if let Some(cap) = cap {
                ensure!(
                    next <= cap as i64,
                    "queue_full",
                    "{cap} players are queued for `{mode}`"
                );
            }
            c.queued = next as u32;
            Ok(())
        };
        loop {
            match ctx.modify::<Count>(mode.to_owned(), change) {
                Ok(c) => return Ok(c.value.queued),
                Err(e) if e.code == "not_found" => {}
                Err(e) => return Err(e),
            }
            let mut fresh = Count {
                mode: mode.to_owned(),
                queued: 0,
            };
            change(&mut fresh)?;
            match ctx.insert(&fresh) {
                Ok(_) => return Ok(fresh.queued),
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
        let queued = count(ctx, &req.mode, 1, Some(MAX_QUEUED))?;
        let entry = Queued {
            session: ctx.session(),
            mode: req.mode.clone(),
            region: req.region,
            rating: req.rating,
            size: req.size,
            since_micros: ctx.now_micros(),
        };
        if let Err(e) = ctx.insert(&entry) {
            count(ctx, &req.mode, -1, None)?;
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
        Ok(queued as usize)
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
        count(ctx, &entry.value.mode, -1, None)?;
        Ok(true)
    }

    /// Command 483: how many are queued for a mode.
    #[handler(483)]
    fn queued(ctx: &mut Ctx, req: ModeName) -> Result<usize> {
        check_name("mode", &req.mode)?;
        Ok(ctx
            .get::<Count>(req.mode)?
            .map_or(0, |c| c.value.queued as usize))
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
        let formed = form_matches(ctx, &mode, now);
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

    /// Takes `group` out of the queue and into a new match; `false` (nothing changed) when one
    /// of them left the queue meanwhile.
    fn start_match(ctx: &mut Ctx, mode: &str, group: &[Queued]) -> Result<bool> {
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
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        count(ctx, mode, -(group.len() as i64), None)?;
        let id = ctx.alloc_id::<MatchRow>()?;
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
        let matched = Matched {
            id,
            mode: mode.to_owned(),
            room,
            players: players.clone(),
            ratings: group.iter().map(|q| q.rating).collect(),
        };
        ctx.push_sessions(&players, MATCHED_TOPIC, &matched)?;
        Ok(true)
    }
}
