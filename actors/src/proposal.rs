//! What a proposal gets back: [`Proposed`], and the channel that carries it
//! ([`Reply`]). Its own file because both the MetadataStore (which refuses)
//! and the Replicator (which acknowledges) answer proposals, and the store
//! already imports the Replicator.

use tokio::sync::oneshot;

use crate::error::ProposeError;

/// A proposal's success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposed {
    /// Offset of the entry.
    pub offset: u64,
    /// Epoch of the entry.
    pub epoch: u64,
}

/// Where a proposal's answer goes: the store sends a refusal, the
/// Replicator the acknowledgement (or why not, the request timeout
/// included).
pub(crate) type Reply = oneshot::Sender<Result<Proposed, ProposeError>>;
