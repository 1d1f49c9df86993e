//! What the ready gameplay modules (`chat`, `friends`, `mail`, `guild`) share.
//!
//! * **Who calls.** Players are the user ids bound to their sessions ([`caller`]): `accounts`
//!   binds its account id at login (command 202), so these modules compose with it, and any
//!   other login module that calls `ctx.bind_user` works the same.
//! * **Input checks** that answer clear error frames: [`check_user`], [`check_name`],
//!   [`check_text`].
//! * **Bounded lists** kept inside one cached object: [`add_bounded`], [`remove`].
//! * **Shared messages**: [`Done`] and [`UserReq`].
//! * **Insert or modify** a per-player object that may not exist yet: [`upsert`].
//!
//! * **Tables two modules share**: [`scores`] (leaderboards, ranked by the host) and
//!   [`matches`] (what `matchmaking` formed). A module lists them in its manifest with
//!   `#[table] type Score = gameplay_common::scores::Score;`.
//!
//! A plain library, not a module: a module's tables go into that module's manifest.

pub mod matches;
pub mod scores;

use firefly_sdk::Schema;
use firefly_sdk::prelude::*;
use firefly_sdk::serde::{Deserialize, Serialize};

/// Reply of the commands that only change something: `{ok: true}`.
#[derive(Debug, Serialize, Schema)]
#[serde(crate = "firefly_sdk::serde")]
pub struct Done {
    /// Always `true` (a failure is an error frame).
    pub ok: bool,
}

/// Request of the commands that name another user: `{user}`.
#[derive(Debug, Deserialize, Schema)]
#[serde(crate = "firefly_sdk::serde")]
pub struct UserReq {
    /// The user id.
    pub user: String,
}

/// Longest user id the modules accept (the host allows 256 bytes; ids from `accounts` are
/// decimal numbers).
pub const MAX_USER: usize = 64;

/// The user bound to the calling session, or a `not_logged_in` error frame.
pub fn caller(ctx: &Ctx) -> Result<String> {
    match ctx.user()? {
        Some(user) => Ok(user),
        None => bail!(
            "not_logged_in",
            "log in first (accounts command 202 binds your user id)"
        ),
    }
}

/// A user id named in a request: 1 to [`MAX_USER`] bytes, no control characters or spaces.
pub fn check_user(field: &str, user: &str) -> Result<()> {
    ensure!(
        !user.is_empty()
            && user.len() <= MAX_USER
            && !user.chars().any(|c| c.is_control() || c.is_whitespace()),
        "invalid_user",
        "`{field}` must be a user id of 1 to {MAX_USER} bytes without spaces"
    );
    Ok(())
}

/// A name (channel, guild): `min..=max` characters, letters, digits, `_` or `-` only.
pub fn check_name(field: &str, name: &str, min: usize, max: usize) -> Result<()> {
    ensure!(
        (min..=max).contains(&name.chars().count())
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-'),
        "invalid_name",
        "`{field}` must have {min} to {max} letters, digits, `_` or `-`"
    );
    Ok(())
}

/// Free text (a message, a subject): at most `max` bytes, no control characters other than
/// newlines and tabs; empty only if `allow_empty`.
pub fn check_text(field: &str, text: &str, max: usize, allow_empty: bool) -> Result<()> {
    ensure!(
        allow_empty || !text.trim().is_empty(),
        "invalid_text",
        "`{field}` cannot be empty"
    );
    ensure!(
        text.len() <= max,
        "too_long",
        "`{field}` is {} bytes; the limit is {max}",
        text.len()
    );
    ensure!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "invalid_text",
        "`{field}` contains control characters"
    );
    Ok(())
}

/// Adds `item` to `list` unless it is there already (returns whether it was added); refuses
/// with `code` once the list holds `cap` items.
pub fn add_bounded<T: PartialEq>(
    list: &mut Vec<T>,
    item: T,
    cap: usize,
    code: &str,
    what: &str,
) -> Result<bool> {
    if list.contains(&item) {
        return Ok(false);
    }
    ensure!(list.len() < cap, code, "{what} is full ({cap} at most)");
    list.push(item);
    Ok(true)
}

/// Removes every `item` from `list`; returns whether it was there.
pub fn remove<T: PartialEq>(list: &mut Vec<T>, item: &T) -> bool {
    let before = list.len();
    list.retain(|x| x != item);
    list.len() != before
}

/// How many create-or-modify rounds [`upsert`] tries before giving up with `conflict`.
pub const UPSERT_ATTEMPTS: u32 = 16;

/// Applies `change` to the object `key` of `T`, creating it from `fresh()` first when it does
/// not exist. Conflicts with other writers are retried (a concurrent creation included), so
/// `change` may run several times and must only change the object.
pub fn upsert<T: Table>(
    ctx: &Ctx,
    key: impl Into<Key>,
    fresh: impl Fn() -> T,
    mut change: impl FnMut(&mut T) -> Result<()>,
) -> Result<T> {
    let key = key.into();
    for _ in 0..UPSERT_ATTEMPTS {
        if ctx.get::<T>(key.clone())?.is_some() {
            match ctx.modify::<T>(key.clone(), &mut change) {
                Ok(object) => return Ok(object.value),
                // Deleted between the read and the write: create it below.
                Err(e) if e.code == "not_found" => {}
                Err(e) => return Err(e),
            }
        }
        let mut object = fresh();
        change(&mut object)?;
        match ctx.insert(&object) {
            Ok(_) => return Ok(object),
            // Someone created it meanwhile: modify theirs.
            Err(DataError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!(
        "conflict",
        "`{}` {key} kept being created and deleted under us",
        T::NAME
    )
}

/// Reads the object `key` of `T`, or `fresh()` when there is none (nothing is written).
pub fn get_or<T: Table>(ctx: &Ctx, key: impl Into<Key>, fresh: impl FnOnce() -> T) -> Result<T> {
    Ok(match ctx.get::<T>(key)? {
        Some(object) => object.value,
        None => fresh(),
    })
}

/// Deletes the object `key` of `T`; an absent object is not an error.
pub fn delete_if_there<T: Table>(ctx: &Ctx, key: impl Into<Key>) -> Result<()> {
    match ctx.delete::<T>(key) {
        Ok(()) | Err(DataError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Seconds to microseconds, saturating.
pub fn secs_to_micros(secs: u64) -> u64 {
    secs.saturating_mul(1_000_000)
}
