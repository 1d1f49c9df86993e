//! The Firefly guest SDK: game logic handlers in Rust, compiled to a WebAssembly module.
//!
//! ```ignore
//! #[firefly_sdk::module]
//! mod lobby {
//!     use firefly_sdk::prelude::*;
//!     use serde::{Deserialize, Serialize};
//!
//!     #[derive(Deserialize)]
//!     pub struct Hello { pub name: String }
//!     #[derive(Serialize)]
//!     pub struct Greeting { pub greeting: String }
//!
//!     #[handler(101)]
//!     fn hello(ctx: &mut Ctx, req: Hello) -> Result<Greeting> {
//!         ensure!(!req.name.is_empty(), "invalid_name", "a name is required");
//!         info!("hello from session {}", ctx.session());
//!         Ok(Greeting { greeting: format!("Hello, {}!", req.name) })
//!     }
//! }
//! ```
//!
//! Requests and replies are MessagePack (maps with named fields) unless a handler uses
//! [`Raw`]. An expected failure is a returned [`Error`] and becomes an error frame with its
//! code; a panic traps only the call that panicked.
//!
//! **Guest memory is scratch space.** The host may reuse an instance for later requests or
//! discard it at any time (after a trap, a hot update, or simply to recycle it), so never keep
//! game state in statics: it belongs in the host's data store.
//!
//! See `guest-sdk/README.md` for the full guide.

mod ctx;
mod ctx_sessions;
pub mod data;
mod error;
mod payload;
mod raw;
pub mod rooms;
pub mod schema;
pub mod timers;

#[doc(hidden)]
pub mod __private;

pub use ctx::Ctx;
pub use error::{Error, Result};
pub use firefly_macros::{Schema, Table, module};
pub use payload::{FromPayload, IntoPayload, Raw};

/// Re-exported so modules need not list it (MessagePack codec used for payloads).
pub use rmp_serde;
/// Re-exported for `#[serde(crate = "firefly_sdk::serde")]` users.
pub use serde;

/// What most modules need: `use firefly_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::data::{DataError, Key, Table, Versioned};
    pub use crate::rooms::{
        RoomEvent, RoomEventKind, RoomList, RoomSpec, RoomSummary, RoomView, Tick,
    };
    pub use crate::schema::Schema;
    pub use crate::timers::{Fired, Timer, TimerId};
    pub use crate::{Ctx, Error, Raw, Result, bail, debug, ensure, error, info, trace, warn};
}

/// Returns early with an [`Error`]: `bail!("not_enough_gold", "needs {} gold", price)`.
#[macro_export]
macro_rules! bail {
    ($code:expr, $($fmt:tt)+) => {
        return ::core::result::Result::Err($crate::Error::new($code, ::std::format!($($fmt)+)))
    };
}

/// Returns early with an [`Error`] unless a condition holds:
/// `ensure!(qty > 0, "invalid_quantity", "quantity must be positive")`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $code:expr, $($fmt:tt)+) => {
        if !$cond {
            $crate::bail!($code, $($fmt)+);
        }
    };
}

/// Logs at error level, tagged by the host with the module, version and session.
#[macro_export]
macro_rules! error {
    ($($fmt:tt)+) => { $crate::__private::log($crate::__private::log_level::ERROR, &::std::format!($($fmt)+)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($fmt:tt)+) => { $crate::__private::log($crate::__private::log_level::WARN, &::std::format!($($fmt)+)) };
}

/// Logs at info level.
#[macro_export]
macro_rules! info {
    ($($fmt:tt)+) => { $crate::__private::log($crate::__private::log_level::INFO, &::std::format!($($fmt)+)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($fmt:tt)+) => { $crate::__private::log($crate::__private::log_level::DEBUG, &::std::format!($($fmt)+)) };
}

/// Logs at trace level.
#[macro_export]
macro_rules! trace {
    ($($fmt:tt)+) => { $crate::__private::log($crate::__private::log_level::TRACE, &::std::format!($($fmt)+)) };
}
