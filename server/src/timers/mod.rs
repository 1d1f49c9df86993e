//! The node's timers: every timer a module starts is held here, in the host, and fires into
//! the module's *current* version when it is due.
//!
//! Holding timers in the host is what makes them dependable for game logic: a hot update, an
//! instance recycle or a trap in one firing leaves every timer in place (the next firing runs
//! the new version). Durable timers ([`durable`]) are also stored through the data layer and
//! fire after a node restart: a firing is recorded as done *before* it is handed to the module,
//! so each scheduled firing runs at most once; one that comes due while the node is down fires
//! when it is back, with its lateness reported to the handler.
//!
//! One task per node sleeps until the earliest due time; due firings go out on a channel the
//! node serves (`node/timers.rs`), so this layer knows nothing of modules or routing.

mod durable;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use firefly_abi::{TIMER_ID_BITS, TimerFiring};
use tokio::sync::{Notify, mpsc};

use crate::engine::{NewTimer, Started, TimerHost, TimerRefused};

pub use durable::Durable;

pub use crate::engine::timer_limits::{MAX_DELAY, MAX_PAYLOAD, MAX_TAG, MIN_PERIOD};

/// A firing this late (or later) counts as late in `/metrics`.
pub const LATE: Duration = Duration::from_millis(100);

/// A firing that is due: hand it to the module.
#[derive(Debug)]
pub struct Due {
    /// The module that started the timer.
    pub module: Arc<str>,
    /// What the handler receives.
    pub firing: TimerFiring,
}

/// Counters of one module's timers on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TimerTotals {
    /// The module.
    pub module: String,
    /// Timers waiting to fire.
    pub pending: u64,
    /// Firings handed to the module.
    pub fired: u64,
    /// Firings whose handler failed (error, trap, timeout, no handler for the tag).
    pub failed: u64,
    /// Firings that ran [`LATE`] or later.
    pub late: u64,
}

#[derive(Clone)]
struct Entry {
    module: Arc<str>,
    tag: String,
    period_ms: u64,
    session: u64,
    payload: Bytes,
    due_ms: u64,
    /// Firings so far.
    firing: u64,
    /// The stored object's version, for a durable timer.
    stored: Option<u64>,
}

#[derive(Default)]
struct State {
    /// `(due, id)`, earliest first.
    queue: BTreeSet<(u64, u64)>,
    timers: HashMap<u64, Entry>,
    totals: HashMap<Arc<str>, TimerTotals>,
}

impl State {
    fn totals(&mut self, module: &Arc<str>) -> &mut TimerTotals {
        self.totals
            .entry(module.clone())
            .or_insert_with(|| TimerTotals {
                module: module.to_string(),
                ..TimerTotals::default()
            })
    }

    fn insert(&mut self, id: u64, entry: Entry) {
        self.queue.insert((entry.due_ms, id));
        self.totals(&entry.module).pending += 1;
        self.timers.insert(id, entry);
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.timers.remove(&id)?;
        self.queue.remove(&(entry.due_ms, id));
        let totals = self.totals(&entry.module);
        totals.pending = totals.pending.saturating_sub(1);
        Some(entry)
    }
}

/// A firing taken out of the queue, and what the store must record before it goes out: a
/// durable timer's next state (`Some`), or that it is done (`None`).
struct Taken {
    id: u64,
    due: Due,
    store: Option<Option<Entry>>,
}

/// The node's timer scheduler.
pub struct Scheduler {
    state: Mutex<State>,
    /// Woken when a timer earlier than every other is added.
    wake: Arc<Notify>,
    next_id: AtomicU64,
    due: mpsc::UnboundedSender<Due>,
    durable: Option<Durable>,
}

/// Wall-clock milliseconds since the Unix epoch (timers must mean the same after a restart).
pub(crate) use crate::wall::now_ms;

impl Scheduler {
    /// A scheduler whose due firings arrive on the returned channel; durable timers are kept
    /// through `durable` (`None`: this node has no storage, and durable timers are refused).
    /// Stored timers of this node are loaded in the background and fire when due.
    pub fn start(durable: Option<Durable>) -> (Arc<Scheduler>, mpsc::UnboundedReceiver<Due>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let scheduler = Arc::new(Scheduler {
            state: Mutex::new(State::default()),
            wake: Arc::new(Notify::new()),
            next_id: AtomicU64::new(1),
            due: tx,
            durable,
        });
        tokio::spawn(run(Arc::downgrade(&scheduler)));
        if scheduler.durable.is_some() {
            tokio::spawn(load_stored(Arc::downgrade(&scheduler)));
        }
        (scheduler, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every module's counters, by module name.
    pub fn totals(&self) -> Vec<TimerTotals> {
        let mut all: Vec<TimerTotals> = self.lock().totals.values().cloned().collect();
        all.sort_by(|a, b| a.module.cmp(&b.module));
        all
    }

    /// Records how a firing of `module` ended.
    pub fn record(&self, module: &Arc<str>, ok: bool) {
        if !ok {
            self.lock().totals(module).failed += 1;
        }
    }

    async fn start_timer(&self, timer: NewTimer, cap: u32) -> Started {
        timer.check()?;
        let id = match (&self.durable, timer.durable) {
            (Some(d), true) => d.alloc_id().await?,
            _ => self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        if id >= 1 << TIMER_ID_BITS {
            return Err(TimerRefused::Unavailable("timer ids are exhausted".into()));
        }
        let entry = Entry {
            module: timer.module.clone(),
            tag: timer.tag,
            period_ms: timer.period_ms,
            session: timer.session,
            payload: timer.payload,
            due_ms: now_ms().saturating_add(timer.delay_ms),
            firing: 0,
            stored: None,
        };
        {
            // Claim a place under the cap first, so concurrent starts cannot overshoot it.
            let mut state = self.lock();
            let totals = state.totals(&timer.module);
            if totals.pending >= u64::from(cap) {
                return Err(TimerRefused::Limit(cap));
            }
            totals.pending += 1;
        }
        let mut entry = entry;
        if timer.durable {
            let stored = match &self.durable {
                Some(d) => d.insert(id, &entry).await,
                None => Err(TimerRefused::Unavailable(
                    "durable timers need storage, and this node has none".into(),
                )),
            };
            match stored {
                Ok(version) => entry.stored = Some(version),
                Err(e) => {
                    let mut state = self.lock();
                    let totals = state.totals(&timer.module);
                    totals.pending = totals.pending.saturating_sub(1);
                    return Err(e);
                }
            }
        }
        let mut state = self.lock();
        let earliest = state
            .queue
            .first()
            .is_none_or(|(due, _)| entry.due_ms < *due);
        state.totals(&timer.module).pending -= 1;
        state.insert(id, entry);
        drop(state);
        if earliest {
            self.wake.notify_one();
        }
        Ok(id)
    }

    fn cancel_timer(&self, module: &str, id: u64) -> bool {
        let entry = {
            let mut state = self.lock();
            match state.timers.get(&id) {
                Some(e) if &*e.module == module => state.remove(id),
                _ => None,
            }
        };
        let Some(entry) = entry else {
            return false;
        };
        if let (Some(durable), Some(_)) = (&self.durable, entry.stored) {
            let durable = durable.clone();
            tokio::spawn(async move { durable.delete(id).await });
        }
        true
    }

    /// Takes every firing due by `now` out of the queue (rescheduling repeating timers), and
    /// answers when the next one is due.
    fn take_due(&self, now: u64) -> (Vec<Taken>, Option<u64>) {
        let mut state = self.lock();
        let mut due = Vec::new();
        while let Some(&(at, id)) = state.queue.first() {
            if at > now || due.len() >= 4096 {
                break;
            }
            state.queue.pop_first();
            let Some(mut entry) = state.timers.remove(&id) else {
                continue;
            };
            entry.firing += 1;
            let late_ms = now - at;
            let repeats = entry.period_ms > 0;
            let firing = TimerFiring {
                timer: id,
                tag: entry.tag.clone(),
                session: entry.session,
                firing: entry.firing,
                late_ms,
                repeats,
                payload: entry.payload.to_vec(),
            };
            let module = entry.module.clone();
            let totals = state.totals(&module);
            totals.fired += 1;
            if late_ms >= LATE.as_millis() as u64 {
                totals.late += 1;
            }
            // What the store must record before the firing goes out (durable timers only).
            let mut store = None;
            if repeats {
                // Missed periods are skipped, not fired in a burst: the next firing is the
                // first scheduled time after now.
                let behind = (now - at) / entry.period_ms + 1;
                entry.due_ms = at + behind * entry.period_ms;
                if entry.stored.is_some() {
                    store = Some(Some(entry.clone()));
                }
                state.queue.insert((entry.due_ms, id));
                state.timers.insert(id, entry);
            } else {
                totals.pending = totals.pending.saturating_sub(1);
                if entry.stored.is_some() {
                    store = Some(None);
                }
            }
            due.push(Taken {
                id,
                due: Due { module, firing },
                store,
            });
        }
        (due, state.queue.first().map(|(at, _)| *at))
    }

    /// Sets the stored version of timer `id` (after its store was updated).
    fn stored(&self, id: u64, version: u64) {
        if let Some(e) = self.lock().timers.get_mut(&id) {
            e.stored = Some(version);
        }
    }
}

impl TimerHost for Scheduler {
    fn start(
        &self,
        timer: NewTimer,
        cap: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Started> + Send + '_>> {
        Box::pin(self.start_timer(timer, cap))
    }

    fn cancel(&self, module: &str, id: u64) -> bool {
        self.cancel_timer(module, id)
    }
}

/// The scheduler's task: sleeps until the earliest timer is due, sends what is due, repeats.
/// Ends with the scheduler.
async fn run(scheduler: Weak<Scheduler>) {
    loop {
        let Some(s) = scheduler.upgrade() else {
            return;
        };
        let (due, next) = s.take_due(now_ms());
        for Taken {
            id,
            due: firing,
            store,
        } in due
        {
            if let (Some(durable), Some(next)) = (&s.durable, store) {
                // Recorded before it fires: a crash now loses this firing, never repeats it.
                match durable.advance(id, next.as_ref()).await {
                    Ok(Some(v)) => s.stored(id, v),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(timer = id, "durable timer not advanced, not fired: {e}");
                        continue;
                    }
                }
            }
            if s.due.send(firing).is_err() {
                return;
            }
        }
        let notify = s.wake.clone();
        let wake = notify.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let sleep = match next {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => Duration::from_secs(3600),
        };
        drop(s);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = &mut wake => {}
        }
    }
}

/// Loads this node's stored timers (retrying while the storage is unreachable).
async fn load_stored(scheduler: Weak<Scheduler>) {
    let mut wait = Duration::from_millis(100);
    loop {
        let Some(s) = scheduler.upgrade() else {
            return;
        };
        let Some(durable) = s.durable.clone() else {
            return;
        };
        match durable.load().await {
            Ok(stored) => {
                let count = stored.len();
                let mut state = s.lock();
                for (id, entry) in stored {
                    if !state.timers.contains_key(&id) {
                        state.insert(id, entry);
                    }
                }
                drop(state);
                s.wake.notify_one();
                if count > 0 {
                    tracing::info!("{count} durable timers loaded");
                }
                return;
            }
            Err(e) => {
                tracing::warn!("cannot load durable timers yet: {e}");
                drop(s);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}
