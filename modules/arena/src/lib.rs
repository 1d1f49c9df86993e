//! `arena`: the example game tying the ready modules together. Commands 491-494, pushes on
//! topics 4901 (the score, every tick) and 4902 (the result).
//!
//! Players log in (`accounts` 202), queue for mode `arena` (`matchmaking` 481, `size` 2) and
//! are told their match (`matchmaking` push 4801, room `match-<id>`). Each joins the arena
//! room of that name (491, routed by `policy: room`); only the sessions `matchmaking` put in
//! the match may. Once all are in, the game starts: every hit (492) is a point, the room ticks
//! at 10 Hz and broadcasts the score, and the first to [`TARGET`] points wins; a player who
//! leaves (494) or disconnects forfeits, and after [`MAX_SECS`] the leader wins (or nobody,
//! on a tie). The winner gets a win on the `arena_wins` leaderboard (`leaderboard` 502/503);
//! every player of a finished match is on it.
//!
//! The players' inputs live in the room: a hit adds to the hitter's points in the room's state
//! with `update_room`, and the tick reads them from there (no store round trip per input or
//! per tick). The room is the one writer of its state (README "Rooms"), so no hit is lost to
//! a tick running at the same time.
//!
//! A match outlives its node: the room is durable (a snapshot every second and after every
//! hit), so when its node dies another arena node takes it over and the players get
//! `room_moved` and play on; the win is recorded with the match id as idempotency key, so a
//! match's end run again from a snapshot counts once.

#[firefly_sdk::module]
mod arena {
    use std::time::Duration;

    use firefly_sdk::prelude::*;
    use gameplay_common::caller;
    use gameplay_common::matches::match_of;
    use gameplay_common::scores::{self, Keep};
    use serde::{Deserialize, Serialize};

    #[table]
    type MatchRow = gameplay_common::matches::MatchRow;
    #[table]
    type Score = gameplay_common::scores::Score;
    #[table]
    type Board = gameplay_common::scores::Board;
    #[table]
    type BoardList = gameplay_common::scores::BoardList;

    /// Points that win.
    pub const TARGET: u32 = 5;
    /// Longest game.
    pub const MAX_SECS: u64 = 60;
    /// Tick period.
    const TICK: Duration = Duration::from_millis(100);
    /// The leaderboard wins are recorded on.
    pub const BOARD: &str = "arena_wins";
    /// Pushed every tick once started.
    pub const SCORE_TOPIC: u32 = 4901;
    /// Pushed once, when the game ends.
    pub const RESULT_TOPIC: u32 = 4902;
    /// Ticks between snapshots of a match (one second).
    const SNAPSHOT_TICKS: u64 = 10;

    /// The room's state: the tick writes `started` and `ticks`, the players' requests their
    /// own entries of `users` and `points` (through `update_room`).
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Game {
        pub match_id: u64,
        /// The matched sessions, in match order.
        pub players: Vec<u64>,
        /// Each player's user id, taken at join (empty for one who never joined; kept when
        /// the player disconnects). Defaulted, as for `points`, so a room opened by an arena
        /// that kept points in the store goes on after a hot update.
        #[serde(default)]
        pub users: Vec<String>,
        /// Each player's points: one per hit.
        #[serde(default)]
        pub points: Vec<u32>,
        pub started: bool,
        /// Ticks since the start.
        pub ticks: u64,
    }

    impl Game {
        /// One entry of `users` and `points` per player (a state from before they were kept
        /// in the room has none).
        fn seated(mut self) -> Self {
            self.users.resize(self.players.len(), String::new());
            self.points.resize(self.players.len(), 0);
            self
        }
    }

    /// Where `session` is in `game.players`.
    fn seat(game: &mut Game, session: u64) -> Result<usize> {
        let taken = std::mem::take(game);
        *game = taken.seated();
        match game.players.iter().position(|p| *p == session) {
            Some(i) => Ok(i),
            None => bail!(
                "not_in_match",
                "session {session} is not a player of this match"
            ),
        }
    }

    #[derive(Deserialize)]
    pub struct Room {
        pub room: String,
    }

    /// Pushed every tick (4901) and answered by 493.
    #[derive(Debug, Serialize)]
    pub struct ScoreBoard {
        pub room: String,
        pub started: bool,
        pub players: Vec<u64>,
        pub points: Vec<u32>,
    }

    /// Pushed at the end (4902).
    #[derive(Debug, Serialize)]
    pub struct Result_ {
        pub room: String,
        /// The winner's user id (`None`: a draw).
        pub winner: Option<String>,
        pub users: Vec<String>,
        pub points: Vec<u32>,
        /// Why it ended: `target`, `forfeit` or `time`.
        pub reason: &'static str,
    }

    fn matched(ctx: &Ctx, room: &str) -> Result<MatchRow> {
        let Some(id) = match_of(room) else {
            bail!(
                "invalid_room",
                "arena rooms are `match-<id>`, from matchmaking"
            );
        };
        match ctx.get::<MatchRow>(id)? {
            Some(m) => Ok(m.value),
            None => bail!("unknown_match", "no match {id}"),
        }
    }

    /// 491: joins the caller's match room (opening it for the first to come).
    #[handler(491)]
    fn join(ctx: &mut Ctx, req: Room) -> Result<ScoreBoard> {
        let user = caller(ctx)?;
        let m = matched(ctx, &req.room)?;
        ensure!(
            m.players.contains(&ctx.session()),
            "not_in_match",
            "this session was not matched into {}",
            req.room
        );
        let game = Game {
            match_id: m.id,
            users: vec![String::new(); m.players.len()],
            points: vec![0; m.players.len()],
            players: m.players.clone(),
            ..Game::default()
        };
        // Durable: stored every second (and after every hit), so the match goes on on
        // another arena node when its node dies (README "Rooms that outlive their node").
        let spec = RoomSpec::new()
            .tick(TICK)
            .max_members(m.players.len() as u32)
            .snapshot_every_ticks(SNAPSHOT_TICKS)
            .state(&game)?;
        match ctx.open_room(&req.room, spec) {
            Ok(()) => {}
            Err(e) if e.code == "room_exists" => {}
            Err(e) => return Err(e),
        }
        let me = ctx.session();
        ctx.update_room(&req.room, |g: &mut Game| {
            let i = seat(g, me)?;
            g.users[i].clone_from(&user);
            Ok(())
        })?;
        ctx.join_room(&req.room, me)?;
        state(ctx, Room { room: req.room })
    }

    /// 492: one point for the caller, once the game has started; the caller's points.
    #[handler(492)]
    fn hit(ctx: &mut Ctx, req: Room) -> Result<u32> {
        let Some(room) = ctx.room::<Game>(&req.room)? else {
            bail!("no_game", "{} is not being played", req.room);
        };
        let me = ctx.session();
        ensure!(
            room.members.contains(&me),
            "not_in_room",
            "join {} first",
            req.room
        );
        // Started once every player is in: the tick that says so may still be running.
        let all_in = room.state.players.iter().all(|p| room.members.contains(p));
        ensure!(
            room.state.started || all_in,
            "not_started",
            "wait for the other players"
        );
        // Into the room's state, as its one writer: a tick running now is waited for.
        let no_game = |e: Error| match e.code.as_str() {
            // The game ended since the read above.
            "no_such_room" => Error::new("no_game", format!("{} is not being played", req.room)),
            _ => e,
        };
        let points = ctx
            .update_room(&req.room, |g: &mut Game| {
                let i = seat(g, me)?;
                g.points[i] = g.points[i].saturating_add(1);
                Ok(g.points[i])
            })
            .map_err(no_game)?;
        // An acknowledged point survives the death of the room's node.
        ctx.snapshot_room(&req.room).map_err(no_game)?;
        Ok(points)
    }

    /// 493: the score of a room.
    #[handler(493)]
    fn state(ctx: &mut Ctx, req: Room) -> Result<ScoreBoard> {
        let Some(room) = ctx.room::<Game>(&req.room)? else {
            bail!("no_game", "{} is not being played", req.room);
        };
        let game = room.state.seated();
        Ok(ScoreBoard {
            points: game.points,
            room: req.room,
            started: game.started,
            players: game.players,
        })
    }

    /// 494: leaves (forfeits) a game; whether the caller was in it.
    #[handler(494)]
    fn leave(ctx: &mut Ctx, req: Room) -> Result<bool> {
        ctx.leave_room(&req.room, ctx.session())
    }

    /// Starts the game once every player is in, broadcasts the score, and ends it.
    #[room_tick]
    fn tick(ctx: &mut Ctx, t: Tick<Game>) -> Result<Option<Game>> {
        let mut game = t.state.seated();
        let all_in = game.players.iter().all(|p| t.members.contains(p));
        if !game.started {
            if !all_in {
                // Waiting; a match nobody completes within the time limit is dropped.
                if t.tick > MAX_SECS * 10 {
                    finish(
                        ctx,
                        &t.key,
                        &t.members,
                        &game,
                        None,
                        vec![0; game.players.len()],
                        "time",
                    )?;
                }
                return Ok(Some(game));
            }
            game.started = true;
        }
        game.ticks += 1;
        let points = game.points.clone();
        let board = ScoreBoard {
            room: t.key.clone(),
            started: true,
            players: game.players.clone(),
            points: points.clone(),
        };
        ctx.broadcast_room(&t.key, SCORE_TOPIC, &board)?;
        let best = points.iter().copied().max().unwrap_or(0);
        let leaders: Vec<usize> = (0..points.len()).filter(|i| points[*i] == best).collect();
        if best >= TARGET {
            finish(
                ctx,
                &t.key,
                &t.members,
                &game,
                Some(leaders[0]),
                points,
                "target",
            )?;
        } else if !all_in {
            // The first player still in wins by forfeit.
            let stayed = game.players.iter().position(|p| t.members.contains(p));
            finish(ctx, &t.key, &t.members, &game, stayed, points, "forfeit")?;
        } else if game.ticks >= MAX_SECS * 10 {
            let winner = (leaders.len() == 1).then(|| leaders[0]);
            finish(ctx, &t.key, &t.members, &game, winner, points, "time")?;
        }
        Ok(Some(game))
    }

    /// Records the result on the leaderboard, closes the room and tells its members.
    fn finish(
        ctx: &mut Ctx,
        room: &str,
        members: &[u64],
        game: &Game,
        winner: Option<usize>,
        points: Vec<u32>,
        reason: &'static str,
    ) -> Result<()> {
        let users = game.users.clone();
        if game.started {
            for (i, user) in users.iter().enumerate() {
                if !user.is_empty() {
                    // Once per match, even when the room is taken over from a snapshot
                    // taken before this and its end runs again on another node.
                    let win = i64::from(winner == Some(i));
                    let once = format!("arena:{}", game.match_id);
                    scores::record_once(ctx, BOARD, Keep::Sum, user, win, &once)?;
                }
            }
        }
        let result = Result_ {
            room: room.to_owned(),
            winner: winner.map(|i| users[i].clone()),
            users,
            points,
            reason,
        };
        // Closed before the players hear of it, so nothing they send after sees it open.
        ctx.close_room(room)?;
        ctx.push_sessions(members, RESULT_TOPIC, &result)
    }
}
