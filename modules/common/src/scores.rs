//! Leaderboard scores, shared by the `leaderboard` module (its commands) and by game modules
//! that record results themselves (the `arena` example): one table, `lb_scores`, ranked by the
//! host per board and season, so a rank or a page costs O(log n) at any size.
//!
//! A module that uses these declares the tables in its `#[firefly_sdk::module]` with
//! `#[table] type Score = gameplay_common::scores::Score;` (and the same for [`Board`]).

use firefly_sdk::Schema;
use firefly_sdk::data::Rank;
use firefly_sdk::prelude::*;
use firefly_sdk::serde::{Deserialize, Serialize};

use crate::{check_name, check_user, upsert};

/// Longest board name.
pub const MAX_BOARD: usize = 32;
/// Boards one cluster holds at most ([`BoardList`]).
pub const MAX_BOARDS: usize = 1000;
/// Scores are within ±2^53 (what every store holds exactly).
pub const MAX_SCORE: i64 = 1 << 53;

/// How a new score combines with the player's stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Schema)]
#[serde(crate = "firefly_sdk::serde", rename_all = "snake_case")]
pub enum Keep {
    /// The higher of the two (high scores).
    #[default]
    Best,
    /// The newest (a current rating).
    Last,
    /// Their sum (wins, points over a season).
    Sum,
}

/// A board: how scores combine and how often its season turns.
#[derive(Debug, Clone, Serialize, Deserialize, Table)]
#[serde(crate = "firefly_sdk::serde")]
#[table(name = "lb_boards")]
pub struct Board {
    #[primary_key]
    pub name: String,
    pub keep: Keep,
    /// Whether players may submit their own scores (command 501); otherwise only the back
    /// office and other modules (507, [`record`]) do.
    pub open: bool,
    /// Seasons last this long, aligned to the Unix epoch (0: one season forever).
    pub period_secs: u64,
    /// Added to the season number by each manual reset (505).
    pub resets: u64,
}

impl Board {
    /// A board with the defaults [`record`] creates: best score, closed, one season.
    pub fn new(name: &str, keep: Keep) -> Board {
        Board {
            name: name.to_owned(),
            keep,
            open: false,
            period_secs: 0,
            resets: 0,
        }
    }

    /// The season running at `now_micros`.
    pub fn season(&self, now_micros: u64) -> u64 {
        let turned = match self.period_secs {
            0 => 0,
            p => now_micros / 1_000_000 / p,
        };
        self.resets + turned
    }
}

/// Every board's name, so their number stays bounded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Table)]
#[serde(crate = "firefly_sdk::serde")]
#[table(name = "lb_board_list")]
pub struct BoardList {
    #[primary_key]
    pub id: u64,
    pub names: Vec<String>,
}

/// One player's score on one board in one season.
#[derive(Debug, Clone, Serialize, Deserialize, Table)]
#[serde(crate = "firefly_sdk::serde")]
#[table(name = "lb_scores")]
pub struct Score {
    /// `<board>#<season>#<user>`.
    #[primary_key]
    pub key: String,
    /// `<board>#<season>`: the ranking this score is in.
    pub ranking: String,
    pub user: String,
    #[rank(by = "ranking")]
    pub score: i64,
    pub updated_micros: u64,
    /// The idempotency keys of the last [`APPLIED_KEPT`] submits that gave one
    /// ([`record_once`]): a submit whose key is here was applied already.
    #[serde(default)]
    pub applied: Vec<String>,
}

/// How many idempotency keys a score keeps.
pub const APPLIED_KEPT: usize = 32;

/// The ranking of `board` in `season`.
pub fn ranking(board: &str, season: u64) -> String {
    format!("{board}#{season}")
}

/// The key of `user`'s score in a ranking.
pub fn score_key(ranking: &str, user: &str) -> String {
    format!("{ranking}#{user}")
}

/// A board name: 1 to [`MAX_BOARD`] letters, digits, `-` or `_`.
pub fn check_board(board: &str) -> Result<()> {
    check_name("board", board, 1, MAX_BOARD)?;
    ensure!(
        board
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "invalid_name",
        "a board name is letters, digits, `-` or `_`"
    );
    Ok(())
}

/// A score within ±[`MAX_SCORE`].
pub fn check_score(score: i64) -> Result<()> {
    ensure!(
        (-MAX_SCORE..=MAX_SCORE).contains(&score),
        "invalid_score",
        "scores are within ±2^53"
    );
    Ok(())
}

/// Creates `board` (listing it, at most [`MAX_BOARDS`]) or applies `change` to it.
pub fn configure(
    ctx: &Ctx,
    board: &str,
    fresh: impl Fn() -> Board,
    change: impl FnMut(&mut Board) -> Result<()>,
) -> Result<Board> {
    check_board(board)?;
    if ctx.get::<Board>(board)?.is_none() {
        upsert::<BoardList>(
            ctx,
            1u64,
            || BoardList {
                id: 1,
                names: Vec::new(),
            },
            |list| {
                if !list.names.iter().any(|n| n == board) {
                    ensure!(
                        list.names.len() < MAX_BOARDS,
                        "too_many_boards",
                        "a cluster holds at most {MAX_BOARDS} boards"
                    );
                    list.names.push(board.to_owned());
                }
                Ok(())
            },
        )?;
    }
    upsert::<Board>(ctx, board, fresh, change)
}

/// Records `score` for `user` on `board` (created closed with `keep` if missing), combined
/// with the stored one as the board keeps them; where the player stands now.
pub fn record(ctx: &Ctx, board: &str, keep: Keep, user: &str, score: i64) -> Result<Rank> {
    check_user("user", user)?;
    check_score(score)?;
    let b = match ctx.get::<Board>(board)? {
        Some(b) => b.value,
        None => configure(ctx, board, || Board::new(board, keep), |_| Ok(()))?,
    };
    submit(ctx, &b, user, score)
}

/// [`record`], applied once per `key` (an idempotency key: `arena:<match>`): a retry, or a
/// room's tick re-run after its room was taken over from a snapshot, with a key the score
/// has already seen changes nothing. The key is stored in the same object as the score, so
/// both change together or not at all.
pub fn record_once(
    ctx: &Ctx,
    board: &str,
    keep: Keep,
    user: &str,
    score: i64,
    key: &str,
) -> Result<Rank> {
    check_user("user", user)?;
    check_score(score)?;
    let b = match ctx.get::<Board>(board)? {
        Some(b) => b.value,
        None => configure(ctx, board, || Board::new(board, keep), |_| Ok(()))?,
    };
    apply(ctx, &b, user, score, Some(key))
}

/// Records `score` for `user` on board `b` in its current season.
pub fn submit(ctx: &Ctx, b: &Board, user: &str, score: i64) -> Result<Rank> {
    apply(ctx, b, user, score, None)
}

fn apply(ctx: &Ctx, b: &Board, user: &str, score: i64, once: Option<&str>) -> Result<Rank> {
    check_score(score)?;
    let now = ctx.now_micros();
    let ranking = ranking(&b.name, b.season(now));
    let key = score_key(&ranking, user);
    let fresh = || Score {
        key: key.clone(),
        ranking: ranking.clone(),
        user: user.to_owned(),
        score: match b.keep {
            Keep::Sum => 0,
            _ => score,
        },
        updated_micros: now,
        applied: Vec::new(),
    };
    upsert::<Score>(ctx, key.clone(), fresh, |s| {
        if let Some(once) = once {
            if s.applied.iter().any(|k| k == once) {
                return Ok(());
            }
            if s.applied.len() >= APPLIED_KEPT {
                s.applied.remove(0);
            }
            s.applied.push(once.to_owned());
        }
        s.score = match b.keep {
            Keep::Best => s.score.max(score),
            Keep::Last => score,
            Keep::Sum => s.score.saturating_add(score).clamp(-MAX_SCORE, MAX_SCORE),
        };
        s.updated_micros = now;
        Ok(())
    })?;
    match ctx.rank::<Score>(key)? {
        Some(rank) => Ok(rank),
        None => bail!("not_found", "the score was deleted meanwhile"),
    }
}

/// The user a ranked score belongs to (its key's last part).
pub fn user_of(key: &Key) -> String {
    match key {
        Key::Text(k) => k.splitn(3, '#').nth(2).unwrap_or_default().to_owned(),
        Key::Int(i) => i.to_string(),
    }
}
