//! What the engine needs from the node's timer scheduler (`crate::timers`): the `timer_start`
//! and `timer_cancel` imports reach it through [`TimerHost`]. The scheduler owns every timer;
//! the engine only asks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

/// A timer a module asks for.
#[derive(Debug, Clone)]
pub struct NewTimer {
    /// The module that started it (its firings go to that module's current version).
    pub module: Arc<str>,
    /// The `#[timer]` tag it fires.
    pub tag: String,
    /// Milliseconds until the first firing.
    pub delay_ms: u64,
    /// Milliseconds between firings (0: fires once).
    pub period_ms: u64,
    /// Stored through the data layer, so it fires after a restart.
    pub durable: bool,
    /// The session whose call started it (0: none).
    pub session: u64,
    /// Carried to every firing.
    pub payload: Bytes,
}

impl NewTimer {
    /// Refuses a bad tag, delay, period or payload.
    pub fn check(&self) -> Result<(), TimerRefused> {
        let invalid = |m: String| Err(TimerRefused::Invalid(m));
        if self.tag.is_empty() || self.tag.len() > MAX_TAG {
            return invalid(format!("a timer tag is 1 to {MAX_TAG} bytes"));
        }
        if self.delay_ms > MAX_DELAY.as_millis() as u64 {
            return invalid(format!("a timer's delay is at most {MAX_DELAY:?}"));
        }
        if self.period_ms != 0 && self.period_ms < MIN_PERIOD.as_millis() as u64 {
            return invalid(format!(
                "a repeating timer's period is at least {MIN_PERIOD:?}"
            ));
        }
        if self.period_ms > MAX_DELAY.as_millis() as u64 {
            return invalid(format!("a timer's period is at most {MAX_DELAY:?}"));
        }
        if self.payload.len() > MAX_PAYLOAD {
            return invalid(format!("a timer's payload is at most {MAX_PAYLOAD} bytes"));
        }
        Ok(())
    }
}

/// Bounds on what a timer may ask for.
pub mod timer_limits {
    use std::time::Duration;

    /// Longest delay before a first firing.
    pub const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);
    /// Shortest period of a repeating timer (the engine's clock ticks every 10 ms).
    pub const MIN_PERIOD: Duration = Duration::from_millis(10);
    /// Largest payload a timer carries.
    pub const MAX_PAYLOAD: usize = 64 * 1024;
    /// Longest tag.
    pub const MAX_TAG: usize = 64;
}

use timer_limits::{MAX_DELAY, MAX_PAYLOAD, MAX_TAG, MIN_PERIOD};

/// Why a timer was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerRefused {
    /// The module has as many pending timers as its `limits.timers` allows.
    #[error("the module has {0} pending timers, its limit")]
    Limit(u32),
    /// A bad tag, delay, period or payload.
    #[error("{0}")]
    Invalid(String),
    /// A durable timer could not be stored.
    #[error("{0}")]
    Unavailable(String),
}

/// The node's timers, as modules reach them.
pub trait TimerHost: Send + Sync {
    /// Starts `timer` for a module allowed `cap` pending timers; answers its id (below
    /// 2^[`firefly_abi::TIMER_ID_BITS`]). A durable timer is stored before the answer.
    fn start(
        &self,
        timer: NewTimer,
        cap: u32,
    ) -> Pin<Box<dyn Future<Output = Started> + Send + '_>>;

    /// Cancels timer `id` of `module`; whether it was pending.
    fn cancel(&self, module: &str, id: u64) -> bool;
}

/// What [`TimerHost::start`] answers.
pub type Started = Result<u64, TimerRefused>;
