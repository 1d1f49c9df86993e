//! MessagePack to JavaScript values and back, in Rust (faster than a codec in JavaScript).
//!
//! Decoding: nil → `null`, integers → `number` when they fit in 2^53 and `bigint` beyond,
//! floats → `number`, strings → `string`, binary → `Uint8Array`, arrays → `Array`, maps →
//! plain objects (non-string keys become their string form), extensions → `Uint8Array`.
//! Encoding: `undefined`/`null` → nil, integral numbers within 2^53 → integers, other numbers
//! → float64, `bigint` → int64/uint64, `Uint8Array`/`ArrayBuffer` → binary, arrays → arrays,
//! `Map` → map, other objects → maps of their own enumerable properties whose value is not
//! `undefined` (as `JSON.stringify` drops them). Functions and symbols are refused.

use rquickjs::{Array, BigInt, Ctx, Object, Result, TypedArray, Value};

/// Largest integer a JavaScript number holds exactly.
const SAFE: i64 = (1 << 53) - 1;

/// Deepest nesting decoded or encoded: a cycle or a hostile payload stops here.
const MAX_DEPTH: usize = 128;

/// An error of the codec, with a message for the error frame.
#[derive(Debug)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rquickjs::Error> for CodecError {
    fn from(e: rquickjs::Error) -> Self {
        CodecError(e.to_string())
    }
}

/// `bytes` as a `Uint8Array`.
pub fn bytes_value<'js>(ctx: &Ctx<'js>, bytes: &[u8]) -> Result<Value<'js>> {
    Ok(TypedArray::<u8>::new_copy(ctx.clone(), bytes)?.into_value())
}

/// An id (session, timer...) as payload integers decode: a `number` up to 2^53, else `bigint`.
pub fn id_value<'js>(ctx: &Ctx<'js>, id: u64) -> Result<Value<'js>> {
    if id <= SAFE as u64 {
        Ok(Value::new_number(ctx.clone(), id as f64))
    } else {
        Ok(BigInt::from_u64(ctx.clone(), id)?.into_value())
    }
}

/// The bytes of a `Uint8Array` or `ArrayBuffer`.
pub fn bytes_of(value: &Value<'_>) -> Option<Vec<u8>> {
    let object = value.as_object()?;
    if let Some(array) = object.as_typed_array::<u8>() {
        // SAFETY: no JavaScript runs while the slice is alive (it is copied at once).
        return Some(unsafe { array.as_slice() }.to_vec());
    }
    if let Some(buffer) = object.as_array_buffer() {
        // SAFETY: as above.
        return unsafe { buffer.as_bytes() }.map(<[u8]>::to_vec);
    }
    None
}

/// Runs `f` on the bytes of a `Uint8Array` or `ArrayBuffer` in place (no copy); `None` when
/// `value` is neither.
pub fn with_bytes<R>(value: &Value<'_>, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let object = value.as_object()?;
    if let Some(array) = object.as_typed_array::<u8>() {
        // SAFETY: `f` runs no JavaScript while it holds the slice.
        return Some(f(unsafe { array.as_slice() }));
    }
    if let Some(buffer) = object.as_array_buffer() {
        // SAFETY: as above.
        return unsafe { buffer.as_bytes() }.map(f);
    }
    None
}

/// Decodes one MessagePack value (the whole of `bytes`; an empty payload is `undefined`).
pub fn decode<'js>(ctx: &Ctx<'js>, bytes: &[u8]) -> std::result::Result<Value<'js>, CodecError> {
    if bytes.is_empty() {
        return Ok(Value::new_undefined(ctx.clone()));
    }
    // 0xc1 is never used; rmpv would read it as nil.
    if bytes[0] == 0xc1 {
        return Err(CodecError("0xc1 is not a MessagePack value".into()));
    }
    let mut cursor = bytes;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut cursor, MAX_DEPTH)
        .map_err(|e| CodecError(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(CodecError(format!(
            "{} bytes after the value",
            cursor.len()
        )));
    }
    Ok(to_js(ctx, &value)?)
}

fn to_js<'js>(ctx: &Ctx<'js>, value: &rmpv::ValueRef<'_>) -> Result<Value<'js>> {
    use rmpv::ValueRef as V;
    Ok(match value {
        V::Nil => Value::new_null(ctx.clone()),
        V::Boolean(b) => Value::new_bool(ctx.clone(), *b),
        V::Integer(i) => {
            if let Some(n) = i.as_i64() {
                if (-SAFE..=SAFE).contains(&n) {
                    Value::new_number(ctx.clone(), n as f64)
                } else {
                    BigInt::from_i64(ctx.clone(), n)?.into_value()
                }
            } else {
                BigInt::from_u64(ctx.clone(), i.as_u64().unwrap_or(u64::MAX))?.into_value()
            }
        }
        V::F32(f) => Value::new_float(ctx.clone(), f64::from(*f)),
        V::F64(f) => Value::new_float(ctx.clone(), *f),
        V::String(s) => {
            let text = String::from_utf8_lossy(s.as_bytes());
            rquickjs::String::from_str(ctx.clone(), &text)?.into_value()
        }
        V::Binary(b) => bytes_value(ctx, b)?,
        V::Ext(_, b) => bytes_value(ctx, b)?,
        V::Array(items) => {
            let array = Array::new(ctx.clone())?;
            for (i, item) in items.iter().enumerate() {
                array.set(i, to_js(ctx, item)?)?;
            }
            array.into_value()
        }
        V::Map(entries) => {
            let object = Object::new(ctx.clone())?;
            for (k, v) in entries {
                let key = match k {
                    V::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    V::Integer(i) => i.to_string(),
                    V::Boolean(b) => b.to_string(),
                    other => other.to_string(),
                };
                object.set(key, to_js(ctx, v)?)?;
            }
            object.into_value()
        }
    })
}

/// Encodes a JavaScript value as MessagePack.
pub fn encode(value: &Value<'_>) -> std::result::Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    write(&mut out, value, 0)?;
    Ok(out)
}

fn write(
    out: &mut Vec<u8>,
    value: &Value<'_>,
    depth: usize,
) -> std::result::Result<(), CodecError> {
    use rmp::encode as e;
    if depth > MAX_DEPTH {
        return Err(CodecError(format!(
            "nested deeper than {MAX_DEPTH} (a cycle?)"
        )));
    }
    if value.is_undefined() || value.is_null() {
        e::write_nil(out).map_err(|e| CodecError(e.to_string()))?;
    } else if let Some(b) = value.as_bool() {
        e::write_bool(out, b).map_err(|e| CodecError(e.to_string()))?;
    } else if let Some(i) = value.as_int() {
        io(e::write_sint(out, i64::from(i)))?;
    } else if let Some(f) = value.as_float() {
        if f.fract() == 0.0 && f.abs() <= SAFE as f64 {
            io(e::write_sint(out, f as i64))?;
        } else {
            e::write_f64(out, f).map_err(|e| CodecError(e.to_string()))?;
        }
    } else if let Some(s) = value.as_string() {
        io(e::write_str(out, &s.to_string()?))?;
    } else if value.is_big_int() {
        // `to_i64` wraps modulo 2^64; the decimal form tells which half of u64/i64 it was.
        let text: String = value
            .ctx()
            .globals()
            .get::<_, rquickjs::Function>("String")?
            .call((value.clone(),))?;
        match text.parse::<i128>() {
            Ok(n) if n >= 0 && n <= i128::from(u64::MAX) => io(e::write_uint(out, n as u64))?,
            Ok(n) if n < 0 && n >= i128::from(i64::MIN) => io(e::write_sint(out, n as i64))?,
            _ => return Err(CodecError(format!("{text}n does not fit in 64 bits"))),
        }
    } else if let Some(bytes) = bytes_of(value) {
        io(e::write_bin(out, &bytes))?;
    } else if let Some(array) = value.as_array() {
        io(e::write_array_len(out, array.len() as u32))?;
        for item in array.iter::<Value>() {
            write(out, &item?, depth + 1)?;
        }
    } else if value.is_function() || value.is_symbol() {
        return Err(CodecError(format!(
            "a {} cannot be sent",
            value.type_name()
        )));
    } else if let Some(object) = value.as_object() {
        let mut entries = Vec::new();
        if is_map(object) {
            let pairs: Array = value
                .ctx()
                .globals()
                .get::<_, rquickjs::Function>("Array")?
                .get::<_, rquickjs::Function>("from")?
                .call((value.clone(),))?;
            for pair in pairs.iter::<Array>() {
                let pair = pair?;
                entries.push((pair.get::<Value>(0)?, pair.get::<Value>(1)?));
            }
        } else {
            for prop in object.props::<Value, Value>() {
                let (k, v) = prop?;
                if !v.is_undefined() && !v.is_function() {
                    entries.push((k, v));
                }
            }
        }
        io(e::write_map_len(out, entries.len() as u32))?;
        for (k, v) in entries {
            write(out, &k, depth + 1)?;
            write(out, &v, depth + 1)?;
        }
    } else {
        return Err(CodecError(format!(
            "a {} cannot be sent",
            value.type_name()
        )));
    }
    Ok(())
}

fn io<T, E: std::fmt::Display>(
    r: std::result::Result<T, E>,
) -> std::result::Result<(), CodecError> {
    r.map(|_| ()).map_err(|e| CodecError(e.to_string()))
}

fn is_map(object: &Object<'_>) -> bool {
    let Ok(map) = object.ctx().globals().get::<_, rquickjs::Function>("Map") else {
        return false;
    };
    object.is_instance_of(&map)
}
