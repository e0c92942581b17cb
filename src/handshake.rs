//! The replication handshake: HMAC-SHA256 proofs and the checks each side makes.
//!
//! STUB — to be implemented (see issue 2, item 7; protocol steps 1–3 of the design).

use crate::command::NodeId;
use crate::frame::RejectReason;

/// Why a handshake fails.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// Placeholder.
    #[error("placeholder")]
    Placeholder,
}

impl HandshakeError {
    /// The reason to send in a `Reject` frame.
    pub fn reject_reason(&self) -> RejectReason {
        todo!()
    }
}

/// What both sides need to authenticate each other.
#[derive(Clone)]
pub struct HandshakeKeys {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster id both sides must share.
    pub cluster_id: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for HandshakeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeKeys")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}
