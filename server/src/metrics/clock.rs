//! A cheap clock for request latency: the CPU's time-stamp counter on x86_64 (a few ns per
//! read, against ~20-30 ns for `Instant::now()` through the vDSO, paid twice per request),
//! calibrated once against `Instant`; elsewhere `Instant` itself.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// The current tick count (only differences mean anything).
#[inline]
#[allow(
    clippy::let_and_return,
    reason = "the `allow(unused_unsafe)` needs a statement"
)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(
            unused_unsafe,
            reason = "`_rdtsc` is safe in newer Rust, unsafe in older"
        )]
        // SAFETY: RDTSC has no preconditions on x86_64; it only reads a counter.
        let t = unsafe { core::arch::x86_64::_rdtsc() };
        t
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Ticks per microsecond, measured once (a 5 ms busy wait the first time).
fn per_micro() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        let (i0, t0) = (Instant::now(), ticks());
        while i0.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        let (elapsed, t1) = (i0.elapsed(), ticks());
        let us = elapsed.as_secs_f64() * 1e6;
        let rate = t1.saturating_sub(t0) as f64 / us;
        let _ = base();
        if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1_000.0
        }
    })
}

/// Calibrates now, so no request pays for it.
pub fn calibrate() {
    let _ = per_micro();
}

/// Microseconds between two tick counts.
#[inline]
pub fn micros_between(start: u64, end: u64) -> u64 {
    (end.saturating_sub(start) as f64 / per_micro()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_sleep_roughly() {
        calibrate();
        let t0 = ticks();
        std::thread::sleep(Duration::from_millis(20));
        let us = micros_between(t0, ticks());
        // Loose bounds: only that the scale is microseconds, not a timing assertion on code.
        assert!((15_000..2_000_000).contains(&us), "{us} µs");
    }
}
