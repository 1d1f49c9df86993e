//! Warnings that someone outside can cause at will (garbage on a NATS subject, forged
//! handshakes, malformed link requests) are logged at most once per [`PERIOD`] per call site,
//! with how many were left out since the last one: a flood of garbage costs a line per period,
//! not a line per message (20,000 garbage announcements once grew every log by 6 MB in half a
//! second).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per call site per this long.
pub const PERIOD: Duration = Duration::from_secs(10);

/// One call site's limit (a `static` the macro [`warn_limited!`] declares).
#[derive(Debug)]
pub struct Limit {
    /// When the last line was let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Limit {
    /// A limit that lets the first line through.
    pub const fn new() -> Self {
        Limit {
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now, else `None`
    /// (and this one is counted as held back).
    pub fn pass(&self) -> Option<u64> {
        self.pass_at(Instant::now())
    }

    fn pass_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.0 {
            Some(last) if now.duration_since(last) < PERIOD => {
                state.1 += 1;
                None
            }
            _ => {
                let held = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(held)
            }
        }
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::new()
    }
}

/// `tracing::warn!` at most once per [`PERIOD`] from this call site, with a `suppressed`
/// field counting the lines held back since the last.
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::logs::Limit = $crate::logs::Limit::new();
        if let Some(suppressed) = LIMIT.pass() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}
pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_of_those_held_back() {
        let limit = Limit::new();
        let t0 = Instant::now();
        assert_eq!(limit.pass_at(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(limit.pass_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.pass_at(t0 + PERIOD), Some(1000));
        assert_eq!(limit.pass_at(t0 + PERIOD + Duration::from_secs(1)), None);
    }
}
