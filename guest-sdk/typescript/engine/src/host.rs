//! `globalThis.__firefly`: the host imports as JavaScript functions, for the SDK's `index.js`.
//!
//! These are thin: they move bytes and status codes. Turning statuses into `FireflyError`s,
//! payloads into MessagePack and back, and the shape of the API are the SDK's job. Session ids
//! cross as payload integers do: a `number` up to 2^53, a `bigint` beyond (a session id's high
//! 16 bits are its gate's index), so an id from `ctx.session` equals the same id decoded from a
//! room's member list.

use firefly_abi::data::TableSchema;
use rquickjs::function::{Opt, Rest};
use rquickjs::{Array, BigInt, Ctx, Exception, Function, Object, Persistent, Result, Value};

use crate::codec;
use crate::raw::{self, ffi};
use crate::state::{self, Handler, Key, Registration};

/// A u64 from a `bigint` or a non-negative integral `number`.
fn u64_of(ctx: &Ctx<'_>, value: &Value<'_>) -> Result<u64> {
    if let Some(big) = value.as_big_int() {
        return Ok(big.clone().to_i64()? as u64);
    }
    match value.as_number() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64 => Ok(n as u64),
        _ => Err(Exception::throw_type(ctx, "expected a session id (bigint)")),
    }
}

/// Bytes of a payload argument (the SDK encodes before calling).
fn payload(ctx: &Ctx<'_>, value: &Value<'_>) -> Result<Vec<u8>> {
    if value.is_undefined() {
        return Ok(Vec::new());
    }
    codec::bytes_of(value).ok_or_else(|| Exception::throw_type(ctx, "expected a Uint8Array"))
}

fn throw(ctx: &Ctx<'_>, message: impl std::fmt::Display) -> rquickjs::Error {
    Exception::throw_message(ctx, &message.to_string())
}

/// `[status, Uint8Array]`.
fn answer<'js>(ctx: &Ctx<'js>, status: u32, bytes: &[u8]) -> Result<Array<'js>> {
    let pair = Array::new(ctx.clone())?;
    pair.set(0, status)?;
    pair.set(1, codec::bytes_value(ctx, bytes)?)?;
    Ok(pair)
}

macro_rules! define {
    ($obj:ident, $ctx:ident, $name:literal, $f:expr) => {
        $obj.set($name, Function::new($ctx.clone(), $f)?.with_name($name)?)?;
    };
}

/// Installs `__firefly` and replaces `Math.random` (QuickJS seeds its generator when the
/// context is made, which would be inside the build snapshot: every instance would draw the
/// same numbers) with the host's randomness.
pub fn install(ctx: &Ctx<'_>) -> Result<()> {
    let f = Object::new(ctx.clone())?;
    define!(f, ctx, "register", js_register);
    define!(f, ctx, "table", |ctx: Ctx<'_>,
                              schema: Value<'_>|
     -> Result<()> {
        let bytes = codec::encode(&schema).map_err(|e| throw(&ctx, e))?;
        let schema: TableSchema = rmp_serde::from_slice(&bytes)
            .map_err(|e| throw(&ctx, format!("bad table declaration: {e}")))?;
        state::declare_table(schema).map_err(|e| throw(&ctx, e))
    });
    define!(f, ctx, "encode", js_encode);
    define!(f, ctx, "decode", js_decode);
    define!(f, ctx, "session", js_session);
    define!(f, ctx, "utf8", js_utf8);
    define!(f, ctx, "setContext", js_set_context);
    define!(f, ctx, "command", || -> u32 { state::call().1 });
    define!(f, ctx, "log", |level: u32, text: String| raw::log(
        level, &text
    ));
    // SAFETY (here and below): host imports get pointers to live buffers they only read or
    // write within, or no pointers at all.
    define!(f, ctx, "now", || -> f64 {
        (unsafe { ffi::time_now_micros() }) as f64
    });
    define!(f, ctx, "random", || -> f64 {
        let mut bytes = [0u8; 8];
        unsafe { ffi::random_fill(bytes.as_mut_ptr() as u32, 8) };
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    });
    define!(f, ctx, "push", |ctx: Ctx<'_>,
                             session: Value<'_>,
                             topic: u32,
                             bytes: Value<'_>|
     -> Result<u32> {
        let (session, bytes) = (u64_of(&ctx, &session)?, payload(&ctx, &bytes)?);
        Ok(unsafe { ffi::push(session, topic, bytes.as_ptr() as u32, bytes.len() as u32) })
    });
    define!(f, ctx, "pushSessions", |ctx: Ctx<'_>,
                                     ids: Array<'_>,
                                     topic: u32,
                                     bytes: Value<'_>|
     -> Result<u32> {
        let mut raw_ids = Vec::with_capacity(ids.len() * 8);
        for id in ids.iter::<Value>() {
            raw_ids.extend_from_slice(&u64_of(&ctx, &id?)?.to_le_bytes());
        }
        let bytes = payload(&ctx, &bytes)?;
        let count = (raw_ids.len() / 8) as u32;
        Ok(unsafe {
            ffi::push_sessions(
                raw_ids.as_ptr() as u32,
                count,
                topic,
                bytes.as_ptr() as u32,
                bytes.len() as u32,
            )
        })
    });
    define!(f, ctx, "pushGroup", |ctx: Ctx<'_>,
                                  name: String,
                                  topic: u32,
                                  bytes: Value<'_>|
     -> Result<u32> {
        let bytes = payload(&ctx, &bytes)?;
        Ok(unsafe {
            ffi::push_group(
                name.as_ptr() as u32,
                name.len() as u32,
                topic,
                bytes.as_ptr() as u32,
                bytes.len() as u32,
            )
        })
    });
    define!(f, ctx, "pushUser", |ctx: Ctx<'_>,
                                 user: String,
                                 topic: u32,
                                 bytes: Value<'_>|
     -> Result<u32> {
        let bytes = payload(&ctx, &bytes)?;
        Ok(unsafe {
            ffi::push_user(
                user.as_ptr() as u32,
                user.len() as u32,
                topic,
                bytes.as_ptr() as u32,
                bytes.len() as u32,
            )
        })
    });
    define!(f, ctx, "pushAll", |ctx: Ctx<'_>,
                                topic: u32,
                                bytes: Value<'_>|
     -> Result<u32> {
        let bytes = payload(&ctx, &bytes)?;
        Ok(unsafe { ffi::push_all(topic, bytes.as_ptr() as u32, bytes.len() as u32) })
    });
    define!(f, ctx, "groupJoin", |ctx: Ctx<'_>,
                                  session: Value<'_>,
                                  name: String,
                                  join: bool|
     -> Result<u32> {
        let session = u64_of(&ctx, &session)?;
        Ok(unsafe {
            ffi::group_join(
                session,
                name.as_ptr() as u32,
                name.len() as u32,
                u32::from(join),
            )
        })
    });
    define!(f, ctx, "userBind", |ctx: Ctx<'_>,
                                 session: Value<'_>,
                                 user: String|
     -> Result<u32> {
        let session = u64_of(&ctx, &session)?;
        Ok(unsafe { ffi::user_bind(session, user.as_ptr() as u32, user.len() as u32) })
    });
    define!(f, ctx, "userOf", js_user_of);
    define!(f, ctx, "kick", |ctx: Ctx<'_>,
                             session: Value<'_>|
     -> Result<u32> {
        Ok(unsafe { ffi::session_kick(u64_of(&ctx, &session)?) })
    });
    define!(f, ctx, "callNode", js_call_node);
    define!(f, ctx, "sendNode", |ctx: Ctx<'_>,
                                 node: String,
                                 command: u32,
                                 bytes: Value<'_>|
     -> Result<u32> {
        let bytes = payload(&ctx, &bytes)?;
        Ok(unsafe {
            ffi::send_node(
                node.as_ptr() as u32,
                node.len() as u32,
                command,
                bytes.as_ptr() as u32,
                bytes.len() as u32,
            )
        })
    });
    define!(f, ctx, "timerStart", js_timer_start);
    define!(f, ctx, "timerCancel", |ctx: Ctx<'_>,
                                    id: Value<'_>|
     -> Result<bool> {
        Ok(unsafe { ffi::timer_cancel(u64_of(&ctx, &id)?) } == 1)
    });
    define!(f, ctx, "roomCall", js_room_call);
    define!(f, ctx, "dataCall", js_data_call);
    define!(f, ctx, "print", |level: u32, parts: Rest<String>| raw::log(
        level,
        &parts.0.join(" ")
    ));
    ctx.globals().set("__firefly", f)?;
    let random: Function = ctx.globals().get::<_, Object>("__firefly")?.get("random")?;
    ctx.globals()
        .get::<_, Object>("Math")?
        .set("random", random)?;
    Ok(())
}

fn u32_of(ctx: &Ctx<'_>, value: &Value<'_>) -> Result<u32> {
    match value.as_number() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => Ok(n as u32),
        _ => Err(Exception::throw_type(
            ctx,
            "a command id is an integer from 0 to 2^32 - 1",
        )),
    }
}

fn js_encode<'js>(ctx: Ctx<'js>, value: Value<'js>) -> Result<Value<'js>> {
    let bytes = codec::encode(&value).map_err(|e| throw(&ctx, e))?;
    codec::bytes_value(&ctx, &bytes)
}

fn js_decode<'js>(ctx: Ctx<'js>, value: Value<'js>) -> Result<Value<'js>> {
    let bytes = payload(&ctx, &value)?;
    codec::decode(&ctx, &bytes).map_err(|e| throw(&ctx, e))
}

fn js_session<'js>(ctx: Ctx<'js>) -> Result<Value<'js>> {
    codec::id_value(&ctx, state::call().0)
}

fn js_utf8<'js>(ctx: Ctx<'js>, bytes: Value<'js>) -> Result<String> {
    Ok(String::from_utf8_lossy(&payload(&ctx, &bytes)?).into_owned())
}

fn js_user_of<'js>(ctx: Ctx<'js>, session: Value<'js>) -> Result<Array<'js>> {
    let packed = unsafe { ffi::user_of(u64_of(&ctx, &session)?) };
    answer(&ctx, (packed >> 32) as u32, &raw::call_reply(packed as u32))
}

fn js_call_node<'js>(
    ctx: Ctx<'js>,
    node: String,
    command: u32,
    bytes: Value<'js>,
) -> Result<Array<'js>> {
    let bytes = payload(&ctx, &bytes)?;
    let packed = unsafe {
        ffi::call_node(
            node.as_ptr() as u32,
            node.len() as u32,
            command,
            bytes.as_ptr() as u32,
            bytes.len() as u32,
        )
    };
    answer(&ctx, (packed >> 32) as u32, &raw::call_reply(packed as u32))
}

fn js_timer_start<'js>(
    ctx: Ctx<'js>,
    tag: String,
    delay: f64,
    period: f64,
    flags: u32,
    bytes: Value<'js>,
) -> Result<BigInt<'js>> {
    let bytes = payload(&ctx, &bytes)?;
    let packed = unsafe {
        ffi::timer_start(
            tag.as_ptr() as u32,
            tag.len() as u32,
            delay.max(0.0) as u64,
            period.max(0.0) as u64,
            flags,
            bytes.as_ptr() as u32,
            bytes.len() as u32,
        )
    };
    BigInt::from_u64(ctx, packed)
}

fn js_room_call<'js>(ctx: Ctx<'js>, bytes: Value<'js>) -> Result<Array<'js>> {
    let bytes = payload(&ctx, &bytes)?;
    let packed = unsafe { ffi::room_call(bytes.as_ptr() as u32, bytes.len() as u32) };
    answer(&ctx, (packed >> 32) as u32, &raw::call_reply(packed as u32))
}

fn js_data_call<'js>(ctx: Ctx<'js>, bytes: Value<'js>) -> Result<Array<'js>> {
    let bytes = payload(&ctx, &bytes)?;
    let packed = unsafe { ffi::data_call(bytes.as_ptr() as u32, bytes.len() as u32) };
    answer(&ctx, (packed >> 32) as u32, &raw::data_reply(packed as u32))
}

fn js_register<'js>(
    ctx: Ctx<'js>,
    kind: u32,
    key: Value<'js>,
    function: Function<'js>,
    raw: Opt<bool>,
) -> Result<()> {
    let key = match key.as_string() {
        Some(tag) => Key::Tag(tag.to_string()?),
        None => Key::Id(u32_of(&ctx, &key)?),
    };
    let handler = Handler {
        function: Persistent::save(&ctx, function),
        raw: raw.0.unwrap_or(false),
    };
    state::register(Registration { kind, key, handler }).map_err(|e| throw(&ctx, e))
}

fn js_set_context<'js>(ctx: Ctx<'js>, value: Value<'js>) {
    state::set_context(Persistent::save(&ctx, value));
}
