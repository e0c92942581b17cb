//! Why a handshake fails ([`HandshakeError`], [`KeysError`]) and who the
//! transport proved the peer to be ([`PeerIdentity`]).
//!
//! Separate from the proofs and the exchanges: every step of every
//! handshake returns these, and the actors match on them without needing
//! the rest.

use crate::command::NodeId;
use crate::frame::RejectReason;

/// A configuration problem in [`HandshakeKeys`](super::HandshakeKeys).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    /// The shared secret is empty: any peer could authenticate.
    #[error(
        "the replication shared secret is empty; configure the same non-empty secret on every node"
    )]
    EmptySecret,
    /// The cluster id is empty.
    #[error("the cluster id is empty; configure the same non-empty cluster id on every node")]
    EmptyClusterId,
}

/// Why a handshake fails.
///
/// Messages name what mismatched; they never contain the secret or a proof.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: peer speaks {theirs}, this node speaks {ours}")]
    ProtocolMismatch {
        /// The peer's version.
        theirs: u32,
        /// This node's version.
        ours: u32,
    },
    /// The peer belongs to another cluster.
    #[error("cluster id mismatch: peer is in cluster {theirs:?}, this node is in {ours:?}")]
    ClusterMismatch {
        /// The peer's cluster id (cut to 128 bytes).
        theirs: String,
        /// This node's cluster id.
        ours: String,
    },
    /// A nonce in the peer's frame has the wrong length.
    #[error("{frame} nonce is {len} bytes, expected {expected}")]
    BadNonceLength {
        /// The frame kind.
        frame: &'static str,
        /// The nonce length received.
        len: usize,
        /// [`NONCE_LEN`](crate::frame::NONCE_LEN).
        expected: usize,
    },
    /// The peer's proof does not verify: it does not have the same secret (or
    /// the frame was altered or replayed).
    #[error(
        "{frame} proof from node {peer} does not verify: the shared secret differs, \
         or the frame was altered or replayed"
    )]
    BadProof {
        /// The frame kind.
        frame: &'static str,
        /// The node id the peer claimed.
        peer: NodeId,
    },
    /// The leader's epoch is lower than one this node has seen.
    #[error(
        "stale leader epoch: node {leader_id} leads epoch {theirs}, this node has seen \
         epoch {current} (leader {leader:?})"
    )]
    StaleEpoch {
        /// The epoch in the `Hello`.
        theirs: u64,
        /// The leader claiming it.
        leader_id: NodeId,
        /// The highest epoch this node has seen.
        current: u64,
        /// The leader this node knows for `current`, if any.
        leader: Option<NodeId>,
    },
    /// Two different leaders claim the same epoch (a misconfiguration: one
    /// epoch has exactly one leader).
    #[error(
        "two leaders claim epoch {epoch}: node {claimed} says it leads, but this node \
         knows node {known} as that epoch's leader"
    )]
    EpochConflict {
        /// The epoch.
        epoch: u64,
        /// The leader in the `Hello`.
        claimed: NodeId,
        /// The leader this node knows for that epoch.
        known: NodeId,
    },
    /// The peer claims this node's own id (two nodes share an id).
    #[error("peer claims node id {node_id}, which is this node's own id")]
    SameNodeId {
        /// The id.
        node_id: NodeId,
    },
    /// The `Welcome` names another node than the `Challenge` did.
    #[error("Welcome is from node {got}, but the Challenge came from node {expected}")]
    NodeIdMismatch {
        /// The node id in the `Challenge`.
        expected: NodeId,
        /// The node id in the `Welcome`.
        got: NodeId,
    },
    /// A frame arrived that does not belong at this step.
    #[error("unexpected {got} frame during the handshake, expected {expected}")]
    Unexpected {
        /// The frame kind expected.
        expected: &'static str,
        /// The frame kind received.
        got: &'static str,
    },
    /// This node is not a follower and does not accept a leader (used by the
    /// caller, e.g. a node that leads itself, to build a `Reject`).
    #[error("this node is not a follower")]
    NotFollower,
    /// The peer refused the handshake with a `Reject`. Only one whose proof
    /// verified (`proven`) is trusted: a leader steps down on a proven
    /// higher epoch and only reports an unproven one.
    #[error(
        "peer rejected the handshake: {reason:?} (peer knows epoch {epoch}, leader {leader:?})"
    )]
    Rejected {
        /// The peer's reason.
        reason: RejectReason,
        /// The highest epoch the peer knows.
        epoch: u64,
        /// The leader the peer knows for that epoch.
        leader: Option<NodeId>,
        /// The `Reject` carried a valid proof over this side's nonce: the
        /// peer has the secret and really knows `epoch`.
        proven: bool,
    },
    /// This node's own keys are invalid.
    #[error("handshake keys are invalid: {0}")]
    InvalidKeys(#[from] KeysError),
    /// The peer's proof verified, but the node id it claims is not one its
    /// TLS certificate names: a certificate issued for one node is being
    /// used to act as another.
    #[error(
        "peer claims to be node {claimed}, but its TLS certificate is for node(s) {certified:?}"
    )]
    NotCertified {
        /// The node id claimed in the handshake.
        claimed: NodeId,
        /// The node ids the certificate is valid for.
        certified: Vec<NodeId>,
    },
}

/// Who the transport layer proved the peer to be, before the handshake.
///
/// Over TLS the peer's certificate names the node ids it may act as (a
/// `node-<id>.<cluster-id>` subject name); the handshake then refuses any
/// other id with [`HandshakeError::NotCertified`]. Over plaintext nothing
/// is proven and only the shared secret authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PeerIdentity {
    /// No transport identity (plaintext): the secret alone authenticates.
    #[default]
    Unverified,
    /// A verified certificate valid for exactly these node ids (often one;
    /// empty if it names no voter of this cluster).
    Certified(std::collections::BTreeSet<NodeId>),
}

impl PeerIdentity {
    /// Check that a peer claiming `claimed` may be that node.
    pub fn check(&self, claimed: NodeId) -> Result<(), HandshakeError> {
        match self {
            PeerIdentity::Unverified => Ok(()),
            PeerIdentity::Certified(ids) if ids.contains(&claimed) => Ok(()),
            PeerIdentity::Certified(ids) => Err(HandshakeError::NotCertified {
                claimed,
                certified: ids.iter().copied().collect(),
            }),
        }
    }
}

impl HandshakeError {
    /// The reason to send in a `Reject` frame.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            HandshakeError::ProtocolMismatch { .. } => RejectReason::ProtocolMismatch,
            HandshakeError::ClusterMismatch { .. } => RejectReason::ClusterMismatch,
            HandshakeError::BadProof { .. } | HandshakeError::InvalidKeys(_) => {
                RejectReason::BadProof
            }
            HandshakeError::StaleEpoch { .. } => RejectReason::StaleEpoch,
            HandshakeError::EpochConflict { .. } => RejectReason::EpochConflict,
            HandshakeError::NotFollower => RejectReason::NotFollower,
            HandshakeError::NotCertified { .. } => RejectReason::NotCertified,
            HandshakeError::Rejected { reason, .. } => *reason,
            HandshakeError::BadNonceLength { .. }
            | HandshakeError::SameNodeId { .. }
            | HandshakeError::NodeIdMismatch { .. }
            | HandshakeError::Unexpected { .. } => RejectReason::Unexpected,
        }
    }

    /// Whether the error was found after the peer's proof verified, so that
    /// telling the peer this node's epoch and leader discloses nothing to an
    /// unauthenticated peer.
    pub(super) fn after_proof(&self) -> bool {
        matches!(
            self,
            HandshakeError::StaleEpoch { .. }
                | HandshakeError::EpochConflict { .. }
                | HandshakeError::SameNodeId { .. }
        )
    }
}
