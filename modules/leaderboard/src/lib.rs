//! `leaderboard`: boards of ranked scores with seasons. Commands 500-507 (see
//! `docs/modules.md`); 500, 505 and 507 are for back-office gates and other nodes only.
//!
//! Scores are cached objects of `lb_scores` (`gameplay_common::scores`), ranked by the host
//! per board and season, so a player's rank, the top N and the ranks around a player cost
//! O(log n) however many players a board holds. A board keeps the best, the last or the sum
//! of the scores submitted; its season turns every `period_secs` (aligned to the Unix epoch)
//! or when the back office resets it, and a new season starts empty while old seasons stay
//! readable (`season` in the queries).

#[firefly_sdk::module]
mod leaderboard {
    use firefly_sdk::data::RankEntry;
    use firefly_sdk::prelude::*;
    use gameplay_common::scores::{self, Keep};
    use gameplay_common::{caller, check_user};
    use serde::{Deserialize, Serialize};

    #[table]
    type Score = gameplay_common::scores::Score;
    #[table]
    type Board = gameplay_common::scores::Board;
    #[table]
    type BoardList = gameplay_common::scores::BoardList;

    /// Most entries one `top` answers.
    pub const MAX_TOP: u32 = 100;
    /// Most ranks on each side one `around` answers.
    pub const MAX_RADIUS: u32 = 25;

    /// Request of 500.
    #[derive(Deserialize, Schema)]
    pub struct Configure {
        pub board: String,
        #[serde(default)]
        pub keep: Option<Keep>,
        #[serde(default)]
        pub open: Option<bool>,
        #[serde(default)]
        pub period_secs: Option<u64>,
    }

    /// Reply of 500 and 506.
    #[derive(Serialize, Schema)]
    pub struct BoardInfo {
        pub board: String,
        pub keep: Keep,
        pub open: bool,
        pub period_secs: u64,
        pub season: u64,
        /// Scores in the current season.
        pub players: u64,
    }

    /// Request of 501.
    #[derive(Deserialize, Schema)]
    pub struct Submit {
        pub board: String,
        pub score: i64,
    }

    /// Request of 507.
    #[derive(Deserialize, Schema)]
    pub struct SystemSubmit {
        pub board: String,
        pub user: String,
        pub score: i64,
    }

    /// Reply of 501, 503 and 507: where a player stands.
    #[derive(Serialize, Schema)]
    pub struct Standing {
        pub board: String,
        pub season: u64,
        pub user: String,
        /// 1 = best.
        pub rank: u64,
        pub score: i64,
        /// Players on the board this season.
        pub players: u64,
    }

    /// Request of 502.
    #[derive(Deserialize, Schema)]
    pub struct Top {
        pub board: String,
        #[serde(default = "ten")]
        pub count: u32,
        #[serde(default)]
        pub season: Option<u64>,
    }

    fn ten() -> u32 {
        10
    }

    /// Request of 503, 504, 505 and 506.
    #[derive(Deserialize, Schema)]
    pub struct Query {
        pub board: String,
        #[serde(default)]
        pub season: Option<u64>,
        /// 504: ranks on each side (default 5).
        #[serde(default)]
        pub radius: Option<u32>,
    }

    /// One line of a ranking.
    #[derive(Serialize, Schema)]
    pub struct Line {
        pub rank: u64,
        pub user: String,
        pub score: i64,
    }

    /// Reply of 502 and 504.
    #[derive(Serialize, Schema)]
    pub struct Page {
        pub board: String,
        pub season: u64,
        pub players: u64,
        pub entries: Vec<Line>,
    }

    fn board(ctx: &Ctx, name: &str) -> Result<Board> {
        scores::check_board(name)?;
        match ctx.get::<Board>(name)? {
            Some(b) => Ok(b.value),
            None => bail!("unknown_board", "no board `{name}`"),
        }
    }

    /// The season a query names (default: the current one); a future one is refused.
    fn season(ctx: &Ctx, b: &Board, asked: Option<u64>) -> Result<u64> {
        let now = b.season(ctx.now_micros());
        match asked {
            None => Ok(now),
            Some(s) if s <= now => Ok(s),
            Some(s) => bail!("invalid_season", "season {s} has not started (now {now})"),
        }
    }

    fn lines(entries: Vec<RankEntry>) -> Vec<Line> {
        entries
            .into_iter()
            .map(|e| Line {
                rank: e.rank,
                user: scores::user_of(&e.key),
                score: e.score,
            })
            .collect()
    }

    fn info(ctx: &Ctx, b: &Board) -> Result<BoardInfo> {
        let season = b.season(ctx.now_micros());
        let page = ctx.rank_range::<Score, _>(&scores::ranking(&b.name, season), 0, 0)?;
        Ok(BoardInfo {
            board: b.name.clone(),
            keep: b.keep,
            open: b.open,
            period_secs: b.period_secs,
            season,
            players: page.total,
        })
    }

    fn standing(b: &Board, season: u64, user: &str, rank: firefly_sdk::data::Rank) -> Standing {
        Standing {
            board: b.name.clone(),
            season,
            user: user.to_owned(),
            rank: rank.rank,
            score: rank.score,
            players: rank.total,
        }
    }

    /// 500 (back office): creates a board or changes its settings.
    #[handler(500)]
    fn configure(ctx: &mut Ctx, req: Configure) -> Result<BoardInfo> {
        if let Some(p) = req.period_secs {
            ensure!(
                p == 0 || (60..=366 * 24 * 3600).contains(&p),
                "invalid_period",
                "`period_secs` is 0 (no seasons) or 60 s to 366 days"
            );
        }
        let keep = req.keep.unwrap_or_default();
        let b = scores::configure(
            ctx,
            &req.board,
            || scores::Board::new(&req.board, keep),
            |b| {
                if let Some(k) = req.keep {
                    b.keep = k;
                }
                if let Some(o) = req.open {
                    b.open = o;
                }
                if let Some(p) = req.period_secs {
                    b.period_secs = p;
                }
                Ok(())
            },
        )?;
        info(ctx, &b)
    }

    /// 501: the caller submits a score to an open board.
    #[handler(501)]
    fn submit(ctx: &mut Ctx, req: Submit) -> Result<Standing> {
        let user = caller(ctx)?;
        let b = board(ctx, &req.board)?;
        ensure!(
            b.open,
            "board_closed",
            "scores of `{}` are recorded by the game, not submitted by players",
            b.name
        );
        let rank = scores::submit(ctx, &b, &user, req.score)?;
        Ok(standing(&b, b.season(ctx.now_micros()), &user, rank))
    }

    /// 502: the best `count` (1 to 100) of a season.
    #[handler(502)]
    fn top(ctx: &mut Ctx, req: Top) -> Result<Page> {
        ensure!(
            (1..=MAX_TOP).contains(&req.count),
            "invalid_count",
            "`count` is 1 to {MAX_TOP}"
        );
        let b = board(ctx, &req.board)?;
        let season = season(ctx, &b, req.season)?;
        let page = ctx.rank_range::<Score, _>(&scores::ranking(&b.name, season), 0, req.count)?;
        Ok(Page {
            board: b.name,
            season,
            players: page.total,
            entries: lines(page.entries),
        })
    }

    /// 503: where the caller stands (`null` when it has no score this season).
    #[handler(503)]
    fn me(ctx: &mut Ctx, req: Query) -> Result<Option<Standing>> {
        let user = caller(ctx)?;
        let b = board(ctx, &req.board)?;
        let season = season(ctx, &b, req.season)?;
        let key = scores::score_key(&scores::ranking(&b.name, season), &user);
        Ok(ctx
            .rank::<Score>(key)?
            .map(|rank| standing(&b, season, &user, rank)))
    }

    /// 504: the ranks around the caller (`radius` 0 to 25 on each side); empty when it has
    /// no score this season.
    #[handler(504)]
    fn around(ctx: &mut Ctx, req: Query) -> Result<Page> {
        let user = caller(ctx)?;
        let radius = req.radius.unwrap_or(5);
        ensure!(
            radius <= MAX_RADIUS,
            "invalid_radius",
            "`radius` is 0 to {MAX_RADIUS}"
        );
        let b = board(ctx, &req.board)?;
        let season = season(ctx, &b, req.season)?;
        let ranking = scores::ranking(&b.name, season);
        let Some(mine) = ctx.rank::<Score>(scores::score_key(&ranking, &user))? else {
            return Ok(Page {
                board: b.name,
                season,
                players: 0,
                entries: Vec::new(),
            });
        };
        let start = mine.rank.saturating_sub(1 + u64::from(radius));
        let count = (mine.rank - 1 - start) as u32 + 1 + radius;
        let page = ctx.rank_range::<Score, _>(&ranking, start, count)?;
        Ok(Page {
            board: b.name,
            season,
            players: page.total,
            entries: lines(page.entries),
        })
    }

    /// 505 (back office): starts a new season now.
    #[handler(505)]
    fn reset(ctx: &mut Ctx, req: Query) -> Result<BoardInfo> {
        let b = board(ctx, &req.board)?;
        let b = scores::configure(
            ctx,
            &b.name,
            || b.clone(),
            |b| {
                b.resets += 1;
                Ok(())
            },
        )?;
        info(ctx, &b)
    }

    /// 506: a board's settings, season and size.
    #[handler(506)]
    fn describe(ctx: &mut Ctx, req: Query) -> Result<BoardInfo> {
        let b = board(ctx, &req.board)?;
        info(ctx, &b)
    }

    /// 507 (back office, other modules): records a score for any user, open board or not.
    #[handler(507)]
    fn record(ctx: &mut Ctx, req: SystemSubmit) -> Result<Standing> {
        check_user("user", &req.user)?;
        let b = board(ctx, &req.board)?;
        let rank = scores::submit(ctx, &b, &req.user, req.score)?;
        Ok(standing(&b, b.season(ctx.now_micros()), &req.user, rank))
    }
}
