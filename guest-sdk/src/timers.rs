//! Timers, owned by the host: a module asks for a firing later (once, or every period) and the
//! host calls the module's `#[timer("tag")]` handler when it is due.
//!
//! Because the host holds them, timers outlive everything a module instance is: a hot update
//! (the next firing runs the new version), an instance recycle, a trap in an earlier firing. A
//! *durable* timer is stored through the data layer and fires after a node restart too: at most
//! once per scheduled firing, late if the node was down ([`Fired::late`]).
//!
//! ```ignore
//! #[timer("respawn")]
//! fn respawn(ctx: &mut Ctx, fired: Fired<Monster>) -> Result<()> {
//!     ctx.push_group("zone-1", 700, &fired.payload)
//! }
//!
//! #[handler(710)]
//! fn kill(ctx: &mut Ctx, m: Monster) -> Result<u64> {
//!     Ok(ctx.after(Duration::from_secs(30), "respawn", &m)?.id())
//! }
//! ```

use std::time::Duration;

use firefly_abi::{TIMER_ID_BITS, TimerFiring, timer_flags, timer_status};
use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::payload::{FromPayload, IntoPayload};
use crate::raw;

/// A started timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct TimerId(pub u64);

impl TimerId {
    /// The id as a number (to keep in a table or send to a client).
    pub fn id(self) -> u64 {
        self.0
    }
}

/// A timer to start: what fires, when, and whether it survives a restart.
#[derive(Debug, Clone)]
pub struct Timer {
    tag: String,
    delay: Duration,
    period: Option<Duration>,
    durable: bool,
    payload: Vec<u8>,
}

impl Timer {
    /// Fires the `tag` handler once, after `delay`.
    pub fn after(delay: Duration, tag: &str) -> Self {
        Self {
            tag: tag.to_owned(),
            delay,
            period: None,
            durable: false,
            payload: Vec::new(),
        }
    }

    /// Fires the `tag` handler every `period`, the first time one period from now.
    pub fn every(period: Duration, tag: &str) -> Self {
        Self {
            period: Some(period),
            ..Self::after(period, tag)
        }
    }

    /// This timer, first firing after `delay` instead (periodic timers).
    pub fn first_after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// This timer, carrying `payload` (MessagePack) to every firing.
    pub fn with<T: Serialize>(mut self, payload: &T) -> Result<Self> {
        self.payload = payload.into_payload()?;
        Ok(self)
    }

    /// This timer, stored through the data layer so it fires after a node restart too.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }
}

/// One firing of a timer, as its handler receives it.
#[derive(Debug, Clone)]
pub struct Fired<T> {
    /// The timer.
    pub timer: TimerId,
    /// The session that started it (0: none); it may have ended since.
    pub session: u64,
    /// 1 for the first firing, +1 per period.
    pub firing: u64,
    /// How late this firing runs past its scheduled time.
    pub late: Duration,
    /// Whether the timer fires again (periodic, not cancelled).
    pub repeats: bool,
    /// The payload the timer was started with.
    pub payload: T,
}

impl Ctx {
    /// Starts `timer`. Fails with `timer_limit` when the module has as many pending timers as
    /// its `limits.timers` allows, `invalid_timer` for a bad tag, delay, period or payload, and
    /// `storage_unavailable` when a durable timer cannot be stored.
    pub fn start_timer(&self, timer: Timer) -> Result<TimerId> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let flags = if timer.durable {
            timer_flags::DURABLE
        } else {
            0
        };
        // SAFETY: both pointer/length pairs describe live buffers the host only reads.
        let result = unsafe {
            raw::timer_start(
                timer.tag.as_ptr() as u32,
                timer.tag.len() as u32,
                ms(timer.delay),
                timer.period.map_or(0, ms),
                flags,
                timer.payload.as_ptr() as u32,
                timer.payload.len() as u32,
            )
        };
        let (status, id) = (result >> TIMER_ID_BITS, result & ((1 << TIMER_ID_BITS) - 1));
        let what = format!("timer `{}`", timer.tag);
        match status {
            timer_status::OK => Ok(TimerId(id)),
            timer_status::LIMIT => Err(Error::new(
                "timer_limit",
                format!("{what}: the module has as many pending timers as its limit allows"),
            )),
            timer_status::INVALID => Err(Error::new(
                "invalid_timer",
                format!(
                    "{what}: tags are 1 to 64 bytes, delays at most a year, periods at least 10ms, payloads at most 64 KiB"
                ),
            )),
            timer_status::UNAVAILABLE => Err(Error::new(
                "storage_unavailable",
                format!("{what}: a durable timer needs the node's storage, which is unavailable"),
            )),
            other => Err(Error::msg(format!("{what}: failed with status {other}"))),
        }
    }

    /// Fires the `tag` handler once, after `delay`, with `payload`.
    pub fn after<T: Serialize>(&self, delay: Duration, tag: &str, payload: &T) -> Result<TimerId> {
        self.start_timer(Timer::after(delay, tag).with(payload)?)
    }

    /// Fires the `tag` handler every `period`, with `payload`.
    pub fn every<T: Serialize>(&self, period: Duration, tag: &str, payload: &T) -> Result<TimerId> {
        self.start_timer(Timer::every(period, tag).with(payload)?)
    }

    /// Cancels `timer`; returns whether it was still pending. A firing already running
    /// finishes; a periodic timer does not fire again.
    pub fn cancel_timer(&self, timer: TimerId) -> bool {
        // SAFETY: a host import without pointer arguments.
        unsafe { raw::timer_cancel(timer.0) == 1 }
    }
}

/// Decodes a firing for a `#[timer]` handler taking `Fired<T>`.
pub(crate) fn decode<T: FromPayload>(input: &[u8]) -> Result<Fired<T>> {
    let firing: TimerFiring = rmp_serde::from_slice(input)
        .map_err(|e| Error::new("bad_request", format!("unreadable timer firing: {e}")))?;
    Ok(Fired {
        timer: TimerId(firing.timer),
        session: firing.session,
        firing: firing.firing,
        late: Duration::from_millis(firing.late_ms),
        repeats: firing.repeats,
        payload: T::from_payload(&firing.payload)?,
    })
}
