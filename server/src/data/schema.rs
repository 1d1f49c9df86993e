//! Table schemas: what a module may declare, which changes to a table are allowed, and the
//! check every object goes through before it is stored.
//!
//! [`check_upgrade`] is the rule for schema evolution, used when a module loads (and meant for
//! deploy validation): tables and nullable or defaulted fields may be added; dropping or
//! retyping a field, making a field required, or changing the key is refused, naming the table
//! and field.

use firefly_abi::data::{FieldSchema, FieldType, Key, TableSchema};
use rmpv::Value;

use super::DataError;

/// A declared schema, or a change to one, that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table `{table}`: {message}")]
pub struct SchemaError {
    /// The table.
    pub table: String,
    /// What is wrong (names the field when one is at fault).
    pub message: String,
}

fn err(table: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        table: table.to_owned(),
        message: message.into(),
    }
}

/// Whether `name` may be an SQL identifier: lowercase ASCII letters, digits and `_`, starting
/// with a letter, at most 48 characters. Names are checked against this and then quoted, so no
/// module-supplied text ever reaches SQL unchecked.
pub fn valid_ident(name: &str) -> bool {
    name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The name of a field type in messages.
pub fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Int => "int",
        FieldType::Float => "float",
        FieldType::Bool => "bool",
        FieldType::Text => "text",
        FieldType::Bytes => "bytes",
        FieldType::Value => "value",
    }
}

/// Checks that a declared schema is well formed.
pub fn check_schema(t: &TableSchema) -> Result<(), SchemaError> {
    if !valid_ident(&t.name) {
        return Err(err(
            &t.name,
            "not a valid table name (lowercase letters, digits and `_`, starting with a letter, at most 48 characters)",
        ));
    }
    if t.fields.is_empty() || t.fields.len() > 200 {
        return Err(err(&t.name, "a table has 1 to 200 fields"));
    }
    for (i, f) in t.fields.iter().enumerate() {
        if !valid_ident(&f.name) {
            return Err(err(
                &t.name,
                format!("`{}` is not a valid field name", f.name),
            ));
        }
        if t.fields[..i].iter().any(|g| g.name == f.name) {
            return Err(err(
                &t.name,
                format!("field `{}` is declared twice", f.name),
            ));
        }
        if f.indexed && matches!(f.ty, FieldType::Bytes | FieldType::Value) {
            return Err(err(
                &t.name,
                format!(
                    "field `{}`: {} fields cannot be indexed",
                    f.name,
                    type_name(f.ty)
                ),
            ));
        }
    }
    check_rank_schema(t).map_err(|m| err(&t.name, m))?;
    match t.key_field() {
        None => Err(err(
            &t.name,
            format!("the primary key `{}` is not one of its fields", t.key),
        )),
        Some(k) if k.nullable || !matches!(k.ty, FieldType::Int | FieldType::Text) => Err(err(
            &t.name,
            format!(
                "the primary key `{}` must be a non-optional int or text field",
                k.name
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn optional(f: &FieldSchema) -> bool {
    f.nullable || f.defaulted
}

/// Whether table `old` (as stored) may become `new`. `Ok` means the SQL table can be extended
/// in place with no loss; the error names the table and field and says why not.
pub fn check_upgrade(old: &TableSchema, new: &TableSchema) -> Result<(), SchemaError> {
    check_schema(new)?;
    let key_ty = |t: &TableSchema| t.key_field().map(|f| f.ty);
    if old.key != new.key || key_ty(old) != key_ty(new) {
        return Err(err(
            &new.name,
            format!(
                "the primary key changed from `{}` to `{}`; changing the key is a destructive change",
                old.key, new.key
            ),
        ));
    }
    for f in &old.fields {
        let Some(n) = new.field(&f.name) else {
            // An optional field the new version does not declare stays in the table, untouched
            // by that version's writes: this is what lets a rollback run against data a newer
            // version extended. A required one would make the version's inserts fail.
            if optional(f) {
                continue;
            }
            return Err(err(
                &new.name,
                format!(
                    "field `{}` was removed; dropping a column is a destructive change (keep the field, e.g. as an Option)",
                    f.name
                ),
            ));
        };
        if n.ty != f.ty {
            return Err(err(
                &new.name,
                format!(
                    "field `{}` changed type from {} to {}; retyping a column is a destructive change",
                    f.name,
                    type_name(f.ty),
                    type_name(n.ty)
                ),
            ));
        }
        if optional(f) && !optional(n) {
            return Err(err(
                &new.name,
                format!(
                    "field `{}` became required; existing rows may have no value for it",
                    f.name
                ),
            ));
        }
    }
    for n in &new.fields {
        if old.field(&n.name).is_none() && !optional(n) {
            return Err(err(
                &new.name,
                format!(
                    "new field `{}` must be an Option or #[serde(default)]: existing rows have no value for it",
                    n.name
                ),
            ));
        }
    }
    Ok(())
}

/// A field value as bound to (or read from) its SQL column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL of a column of this type.
    Null(FieldType),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes (also `Value` fields, MessagePack-encoded).
    Bytes(Vec<u8>),
}

/// Converts one MessagePack value to the column value of field `f` of table `table`.
pub fn to_sql(table: &str, f: &FieldSchema, v: &Value) -> Result<SqlValue, DataError> {
    let wrong = |got: &str| {
        DataError::Invalid(format!(
            "field `{}` of table `{table}` is {} {}, got {got}",
            f.name,
            if matches!(f.ty, FieldType::Int) {
                "an"
            } else {
                "a"
            },
            type_name(f.ty)
        ))
    };
    if v.is_nil() {
        if f.nullable {
            return Ok(SqlValue::Null(f.ty));
        }
        return Err(DataError::Invalid(format!(
            "field `{}` of table `{table}` is not optional, got nil",
            f.name
        )));
    }
    Ok(match f.ty {
        FieldType::Int => match v {
            Value::Integer(i) => SqlValue::Int(i.as_i64().ok_or_else(|| {
                DataError::Invalid(format!(
                    "field `{}` of table `{table}`: {v} does not fit a signed 64-bit integer",
                    f.name
                ))
            })?),
            other => return Err(wrong(kind(other))),
        },
        FieldType::Float => match v {
            Value::F64(x) => SqlValue::Float(*x),
            Value::F32(x) => SqlValue::Float(f64::from(*x)),
            Value::Integer(i) => SqlValue::Float(i.as_f64().unwrap_or(0.0)),
            other => return Err(wrong(kind(other))),
        },
        FieldType::Bool => match v {
            Value::Boolean(b) => SqlValue::Bool(*b),
            other => return Err(wrong(kind(other))),
        },
        FieldType::Text => match v {
            Value::String(s) => match s.as_str() {
                Some(s) => SqlValue::Text(s.to_owned()),
                None => return Err(wrong("invalid UTF-8")),
            },
            other => return Err(wrong(kind(other))),
        },
        FieldType::Bytes => match v {
            Value::Binary(b) => SqlValue::Bytes(b.clone()),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_u64().and_then(|b| u8::try_from(b).ok()) {
                        Some(b) => out.push(b),
                        None => return Err(wrong("an array that is not bytes")),
                    }
                }
                SqlValue::Bytes(out)
            }
            other => return Err(wrong(kind(other))),
        },
        FieldType::Value => {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, v)
                .map_err(|e| DataError::Invalid(format!("field `{}`: {e}", f.name)))?;
            SqlValue::Bytes(out)
        }
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "a bool",
        Value::Integer(_) => "an int",
        Value::F32(_) | Value::F64(_) => "a float",
        Value::String(_) => "a string",
        Value::Binary(_) => "bytes",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an extension value",
    }
}

/// Checks an object (a MessagePack map) against its table. Returns its key and the column
/// values, in the schema's field order.
pub fn check_object(
    t: &TableSchema,
    bytes: &[u8],
    max_object: usize,
) -> Result<(Key, Vec<SqlValue>), DataError> {
    if bytes.len() > max_object {
        return Err(DataError::TooLarge(format!(
            "a `{}` object of {} bytes exceeds the storage's max_object ({max_object} bytes)",
            t.name,
            bytes.len()
        )));
    }
    let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| {
        DataError::Invalid(format!(
            "a `{}` object is not valid MessagePack: {e}",
            t.name
        ))
    })?;
    let Value::Map(entries) = value else {
        return Err(DataError::Invalid(format!(
            "a `{}` object must be a map of its fields, got {}",
            t.name,
            kind(&value)
        )));
    };
    let mut values: Vec<Option<SqlValue>> = vec![None; t.fields.len()];
    for (k, v) in &entries {
        let Some(name) = k.as_str() else {
            return Err(DataError::Invalid(format!(
                "a `{}` object has a field name that is not a string",
                t.name
            )));
        };
        let Some(i) = t.fields.iter().position(|f| f.name == name) else {
            return Err(DataError::Invalid(format!(
                "table `{}` has no field `{name}`",
                t.name
            )));
        };
        values[i] = Some(to_sql(&t.name, &t.fields[i], v)?);
    }
    let mut out = Vec::with_capacity(values.len());
    let mut key = None;
    for (f, v) in t.fields.iter().zip(values) {
        let v = match v {
            Some(v) => v,
            None if optional(f) && f.name != t.key => SqlValue::Null(f.ty),
            None => {
                return Err(DataError::Invalid(format!(
                    "a `{}` object lacks the field `{}`",
                    t.name, f.name
                )));
            }
        };
        if f.name == t.key {
            key = Some(match &v {
                SqlValue::Int(i) => Key::Int(*i),
                SqlValue::Text(s) => Key::Text(s.clone()),
                _ => {
                    return Err(DataError::Invalid(format!(
                        "the key `{}` of a `{}` object must be an int or text",
                        f.name, t.name
                    )));
                }
            });
        }
        out.push(v);
    }
    let key = key.ok_or_else(|| {
        DataError::Invalid(format!("a `{}` object lacks its key `{}`", t.name, t.key))
    })?;
    Ok((key, out))
}

/// Checks that a key has the type of the table's key field.
pub fn check_key(t: &TableSchema, key: &Key) -> Result<(), DataError> {
    let ty = t.key_field().map(|f| f.ty);
    match (ty, key) {
        (Some(FieldType::Int), Key::Int(_)) | (Some(FieldType::Text), Key::Text(_)) => Ok(()),
        _ => Err(DataError::Invalid(format!(
            "the key of table `{}` is {}, got {key}",
            t.name,
            ty.map(type_name).unwrap_or("?")
        ))),
    }
}

/// Builds the object (MessagePack map) from column values read from SQL. A NULL in a
/// defaulted field is left out, so the module's `#[serde(default)]` supplies it.
pub fn encode_row(t: &TableSchema, values: &[SqlValue]) -> Vec<u8> {
    let mut entries = Vec::with_capacity(values.len());
    for (f, v) in t.fields.iter().zip(values) {
        let value = match v {
            SqlValue::Null(_) if f.nullable => Value::Nil,
            SqlValue::Null(_) => continue,
            SqlValue::Int(i) => Value::from(*i),
            SqlValue::Float(x) => Value::F64(*x),
            SqlValue::Bool(b) => Value::Boolean(*b),
            SqlValue::Text(s) => Value::from(s.as_str()),
            SqlValue::Bytes(b) if f.ty == FieldType::Value => {
                rmpv::decode::read_value(&mut &b[..]).unwrap_or(Value::Nil)
            }
            // As a sequence of integers: what serde's `Vec<u8>` (and `ByteBuf`) decode from.
            SqlValue::Bytes(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        };
        entries.push((Value::from(f.name.as_str()), value));
    }
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &Value::Map(entries));
    out
}

/// The value of field `field` inside an encoded object (for index listing of unflushed
/// objects); `None` when it cannot be read.
pub fn field_of(t: &TableSchema, bytes: &[u8], field: &str) -> Option<SqlValue> {
    let (_, values) = check_object(t, bytes, usize::MAX).ok()?;
    let i = t.fields.iter().position(|f| f.name == field)?;
    values.into_iter().nth(i)
}

#[cfg(test)]
mod tests;

/// The table as stored once `new` is registered over `old`: `new`, plus the optional fields of
/// `old` it does not declare (their columns and values are kept; see [`check_upgrade`]).
pub fn merged(old: Option<&TableSchema>, new: &TableSchema) -> TableSchema {
    let mut out = new.clone();
    if let Some(old) = old {
        for f in &old.fields {
            if out.field(&f.name).is_none() {
                out.fields.push(f.clone());
            }
        }
    }
    out
}

/// The object an update stores: `new`, plus every field of `stored` that `new` does not
/// mention, so a version that does not know a field (an older one, after a rollback) keeps
/// its value instead of erasing it. A field `new` sets (even to nil) wins.
pub fn carry_over(stored: &[u8], new: &[u8]) -> Vec<u8> {
    let (Ok(Value::Map(old)), Ok(Value::Map(mut fresh))) = (
        rmpv::decode::read_value(&mut &stored[..]),
        rmpv::decode::read_value(&mut &new[..]),
    ) else {
        return new.to_vec();
    };
    let before = fresh.len();
    for (k, v) in old {
        if !fresh.iter().any(|(fk, _)| fk.as_str() == k.as_str()) {
            fresh.push((k, v));
        }
    }
    if fresh.len() == before {
        return new.to_vec();
    }
    let mut out = Vec::with_capacity(new.len() + stored.len());
    match rmpv::encode::write_value(&mut out, &Value::Map(fresh)) {
        Ok(()) => out,
        Err(_) => new.to_vec(),
    }
}

/// Whether a table's `rank` is well formed (used by the schema check).
fn check_rank_schema(t: &TableSchema) -> Result<(), String> {
    let Some(rank) = &t.rank else {
        return Ok(());
    };
    match t.field(&rank.field) {
        None => {
            return Err(format!(
                "the #[rank] field `{}` is not one of its fields",
                rank.field
            ));
        }
        Some(f) if f.ty != FieldType::Int => {
            return Err(format!(
                "the #[rank] field `{}` must be an integer",
                rank.field
            ));
        }
        Some(_) => {}
    }
    if let Some(by) = &rank.by {
        match t.field(by) {
            None => {
                return Err(format!(
                    "#[rank(by = \"{by}\")]: `{by}` is not one of its fields"
                ));
            }
            Some(f) if !matches!(f.ty, FieldType::Int | FieldType::Text | FieldType::Bool) => {
                return Err(format!(
                    "#[rank(by = \"{by}\")]: `{by}` must be an integer, text or bool field"
                ));
            }
            Some(_) if *by == rank.field => {
                return Err("#[rank(by = ...)] names the ranked field itself".into());
            }
            Some(_) => {}
        }
    }
    Ok(())
}
