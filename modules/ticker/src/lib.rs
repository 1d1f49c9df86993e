//! `ticker`: timers for tests and benchmarks. Commands 451-454: start a timer (once or
//! repeating, optionally durable), cancel it, list the recorded firings of a tag, and the
//! caller's session id. Timer tags
//! `tick` and `once` record each firing in the `ticker_firings` table and push it (topic 4501)
//! to the session that started the timer; `stamp` pushes how late it ran (topic 4502, the
//! timer benchmark's probe); `boom` traps.

/// Which build this is (`ticker-v2` says 2).
const GENERATION: u32 = 1;

include!("module.rs");
