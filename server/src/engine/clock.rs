//! Time inside the engine: the epoch ticker that drives CPU budgets and a coarse millisecond
//! clock for request deadlines.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often every engine's epoch advances. CPU budgets are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A millisecond clock advanced by the epoch ticker: reading it is one load of a cache line
/// that changes only every tick, where `Instant::now()` is a clock read on every request.
/// Precise to one [`EPOCH_TICK`], which is plenty for request deadlines.
#[derive(Debug)]
pub(crate) struct CoarseClock {
    base: Instant,
    ms: AtomicU64,
}

impl CoarseClock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    pub(crate) fn new_for_tests() -> Self {
        Self::new()
    }

    fn tick(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    /// Milliseconds since the clock started, as of the last tick.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::Relaxed)
    }
}

/// One thread that advances the epoch of every registered engine each [`EPOCH_TICK`].
pub(crate) struct EpochTicker {
    engines: Arc<Mutex<Vec<Engine>>>,
    pub(crate) clock: Arc<CoarseClock>,
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start() -> Self {
        let engines: Arc<Mutex<Vec<Engine>>> = Arc::default();
        let clock = Arc::new(CoarseClock::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s, c) = (engines.clone(), stop.clone(), clock.clone());
        let spawned = std::thread::Builder::new()
            .name("firefly-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    c.tick();
                    for engine in e.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        engine.increment_epoch();
                    }
                }
            });
        if let Err(err) = spawned {
            // Without the ticker, CPU budgets never fire, but wall-clock timeouts still do.
            tracing::error!("cannot start the epoch ticker thread: {err}");
        }
        Self {
            engines,
            clock,
            stop,
        }
    }

    pub(crate) fn add(&self, engine: Engine) {
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(engine);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
