//! Ranked tables (`#[rank]`): what both caches share. A table may rank its objects by one
//! integer field, highest first, per value of a `by` field (a board, a season). The embedded
//! store keeps each ranking as an order-statistic tree ([`RankTree`]) built from SQL the first
//! time it is asked for and kept current by every write; the Redis store keeps a sorted set per
//! ranking, changed in the same script as the object. Either way a rank and a page cost
//! O(log n).

mod tree;

use std::collections::HashMap;

use firefly_abi::data::{Key, RankSchema, TableSchema};
use rmpv::Value;

use super::DataError;
use super::schema::{self, SqlValue};
pub(crate) use tree::RankTree;

/// Scores are kept within ±2^53, where every store (Redis sorted sets score in `f64`) holds
/// them exactly.
pub const MAX_SCORE: i64 = 1 << 53;

/// Which ranking of a table: the value of its `by` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Group {
    /// The table ranks as a whole (no `by`).
    All,
    Int(i64),
    Text(String),
    Bool(bool),
}

impl Group {
    fn of(v: &SqlValue) -> Option<Group> {
        match v {
            SqlValue::Int(i) => Some(Group::Int(*i)),
            SqlValue::Text(s) => Some(Group::Text(s.clone())),
            SqlValue::Bool(b) => Some(Group::Bool(*b)),
            _ => None,
        }
    }

    /// The `by` column's value (`None` for [`Group::All`]).
    pub fn to_sql(&self) -> Option<SqlValue> {
        match self {
            Group::All => None,
            Group::Int(i) => Some(SqlValue::Int(*i)),
            Group::Text(s) => Some(SqlValue::Text(s.clone())),
            Group::Bool(b) => Some(SqlValue::Bool(*b)),
        }
    }

    /// This group in a store key (`a`, `i<n>`, `t<text>`, `b0` / `b1`).
    pub fn key_part(&self) -> String {
        match self {
            Group::All => "a".into(),
            Group::Int(i) => format!("i{i}"),
            Group::Text(s) => format!("t{s}"),
            Group::Bool(b) => format!("b{}", u8::from(*b)),
        }
    }
}

/// The table's ranked field, or why it has none.
pub(super) fn spec<'a>(name: &str, t: &'a TableSchema) -> Result<&'a RankSchema, DataError> {
    t.rank.as_ref().ok_or_else(|| {
        DataError::Invalid(format!(
            "table `{name}` has no #[rank] field; rank queries need one"
        ))
    })
}

fn position(t: &TableSchema, field: &str) -> Option<usize> {
    t.fields.iter().position(|f| f.name == field)
}

/// The ranking an object with these column values belongs to and its score; `None` when it
/// is not ranked (nil score or nil group) or the table ranks nothing.
pub(super) fn entry_of_values(t: &TableSchema, values: &[SqlValue]) -> Option<(Group, i64)> {
    let rank = t.rank.as_ref()?;
    let SqlValue::Int(score) = values.get(position(t, &rank.field)?)? else {
        return None;
    };
    let group = match &rank.by {
        None => Group::All,
        Some(by) => Group::of(values.get(position(t, by)?)?)?,
    };
    Some((group, *score))
}

/// [`entry_of_values`] of a stored object.
pub(super) fn entry(t: &TableSchema, object: &[u8]) -> Option<(Group, i64)> {
    t.rank.as_ref()?;
    let (_, values) = schema::check_object(t, object, usize::MAX).ok()?;
    entry_of_values(t, &values)
}

/// Refuses an object whose score the stores could not hold exactly.
pub(super) fn check_score(t: &TableSchema, values: &[SqlValue]) -> Result<(), DataError> {
    match entry_of_values(t, values) {
        Some((_, score)) if !(-MAX_SCORE..=MAX_SCORE).contains(&score) => Err(DataError::Invalid(
            format!("a `{}` score must be within ±2^53 (got {score})", t.name),
        )),
        _ => Ok(()),
    }
}

/// The ranking a `RankRange` names: its `group` bytes decoded against the `by` field.
pub(super) fn requested_group(
    name: &str,
    t: &TableSchema,
    rank: &RankSchema,
    group: &[u8],
) -> Result<Group, DataError> {
    let v = rmpv::decode::read_value(&mut &group[..])
        .map_err(|e| DataError::Invalid(format!("undecodable group: {e}")))?;
    let Some(by) = &rank.by else {
        return match v {
            Value::Nil => Ok(Group::All),
            _ => Err(DataError::Invalid(format!(
                "table `{name}` ranks as a whole: the group must be nil"
            ))),
        };
    };
    let Some(f) = t.field(by) else {
        return Err(DataError::Invalid(format!(
            "table `{name}` has no field `{by}`"
        )));
    };
    let value = schema::to_sql(name, f, &v)?;
    Group::of(&value).ok_or_else(|| {
        DataError::Invalid(format!(
            "a ranking of `{name}` is named by a value of `{by}`, not nil"
        ))
    })
}

/// The rankings of one table that are loaded in memory (embedded store).
pub(super) type Rankings = HashMap<Group, RankTree>;

/// Moves `key` from the ranking its `old` state put it in to the one its `new` state does, in
/// the rankings that are loaded.
pub(super) fn apply(
    rankings: &mut Rankings,
    t: &TableSchema,
    key: &Key,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) {
    if let Some((group, _)) = old.and_then(|o| entry(t, o))
        && let Some(tree) = rankings.get_mut(&group)
    {
        tree.remove(key);
    }
    if let Some((group, score)) = new.and_then(|o| entry(t, o))
        && let Some(tree) = rankings.get_mut(&group)
    {
        tree.set(key.clone(), score);
    }
}

/// A member of a Redis sorted set: sorts like [`Key`] (integers numerically, before texts).
pub(super) fn member(key: &Key) -> String {
    match key {
        Key::Int(i) => format!("i{:016x}", (*i as u64) ^ (1 << 63)),
        Key::Text(s) => format!("t{s}"),
    }
}

/// The [`Key`] of a sorted-set member.
pub(super) fn parse_member(m: &[u8]) -> Option<Key> {
    match m.split_first()? {
        (b'i', hex) => {
            let v = u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            Some(Key::Int((v ^ (1 << 63)) as i64))
        }
        (b't', text) => Some(Key::Text(String::from_utf8(text.to_vec()).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_sort_like_keys() {
        let keys = [
            Key::Int(i64::MIN),
            Key::Int(-5),
            Key::Int(0),
            Key::Int(7),
            Key::Int(i64::MAX),
            Key::Text(String::new()),
            Key::Text("ann".into()),
            Key::Text("bob".into()),
        ];
        for w in keys.windows(2) {
            assert!(member(&w[0]) < member(&w[1]), "{:?} < {:?}", w[0], w[1]);
        }
        for k in &keys {
            assert_eq!(parse_member(member(k).as_bytes()).as_ref(), Some(k));
        }
    }
}
