//! The link a node needs to the node that owns the data (the embedded cache lives on one
//! node; the others send it their requests). Data declares it; the cluster transport
//! implements it (`cluster::data_link`), so data knows nothing of links or wire messages.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What the owner answered: a `firefly_abi::data::data_status` code and the body (the answer
/// on OK, or a UTF-8 explanation).
pub type OwnerAnswer = (u32, Vec<u8>);

/// Why the data owner gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// It could not be reached, or did not answer in time.
    #[error("the data owner `{owner}` is unavailable: {reason}")]
    Unavailable {
        /// The owner's node name.
        owner: String,
        /// Why, in the transport's words.
        reason: String,
    },
    /// It answered something that is not a data answer.
    #[error("unexpected answer from the data owner `{owner}`: {got}")]
    Unexpected {
        /// The owner's node name.
        owner: String,
        /// What came.
        got: &'static str,
    },
}

/// One node's link to the data owner.
pub trait OwnerLink: Send + Sync {
    /// The owner's node name, for messages.
    fn owner(&self) -> &str;

    /// Sends an encoded request to the owner and waits for its answer; `Err` says why the
    /// owner could not be reached (or answered something else).
    fn request(
        &self,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<OwnerAnswer, OwnerError>> + Send + '_>>;
}

/// Finds the link to a named owner node.
pub trait OwnerLinks {
    /// The link to node `owner`, if it is a known peer.
    fn link(&self, owner: &str) -> Option<Arc<dyn OwnerLink>>;
}
