//! Requests to the data-owning node over the cluster's links: the data layer's
//! [`OwnerLink`] seam, implemented by the transport.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::wire::Msg;
use super::{Cluster, Peer};
use crate::data::{OwnerAnswer, OwnerError, OwnerLink, OwnerLinks};

impl OwnerLink for Peer {
    fn owner(&self) -> &str {
        &self.name
    }

    fn request(
        &self,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<OwnerAnswer, OwnerError>> + Send + '_>> {
        Box::pin(async move {
            let body = serde_bytes::ByteBuf::from(body);
            match Peer::request(self, |id| Msg::DataRequest { id, body }).await {
                Ok(Msg::DataReply { status, body, .. }) => Ok((status, body.into_vec())),
                Ok(other) => Err(OwnerError::Unexpected {
                    owner: self.name.clone(),
                    got: other.kind(),
                }),
                Err(e) => Err(OwnerError::Unavailable {
                    owner: self.name.clone(),
                    reason: e.to_string(),
                }),
            }
        })
    }
}

impl OwnerLinks for Cluster {
    fn link(&self, owner: &str) -> Option<Arc<dyn OwnerLink>> {
        self.peer(owner)
            .cloned()
            .map(|peer| peer as Arc<dyn OwnerLink>)
    }
}
