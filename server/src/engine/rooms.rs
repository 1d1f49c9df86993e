//! What the engine needs from the node's rooms (`crate::rooms`): the `room_call` import reaches
//! them through [`RoomHost`]. The node holds every room; the engine only asks.

use std::future::Future;
use std::pin::Pin;

use firefly_abi::rooms::RoomOp;

/// A room operation's outcome: a `room_status` code and the answer (or an explanation).
pub type RoomAnswer = (u32, Vec<u8>);

/// The node's rooms, as modules reach them.
pub trait RoomHost: Send + Sync {
    /// Runs `op` for `module` (each module has rooms of its own). `tick` is the room whose tick
    /// makes the call (`None`: a request, timer or event handler), which changes whether a
    /// write may wait for a running tick (see `crate::rooms`).
    fn call<'a>(
        &'a self,
        module: &'a str,
        tick: Option<&'a str>,
        op: RoomOp,
    ) -> Pin<Box<dyn Future<Output = RoomAnswer> + Send + 'a>>;
}
