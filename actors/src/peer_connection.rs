//! How this node's connection to one peer stands ([`PeerConnection`]) and
//! the classes of its failures ([`Unreachable`], [`HandshakeRefusal`]), as
//! `/v1/status`, the metrics and the WARN lines name them.
//!
//! Separate from `status.rs` (the node's own status) and from
//! `peer_table.rs` (where the observations are kept): these are the words
//! for one observation.

use metawal::frame::RejectReason;
use metawal::handshake::HandshakeError;
use serde::Serialize;

use crate::tls::{is_abrupt_close, ConnectError};

/// How this node's connection to one peer stands: the last thing learned
/// about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PeerConnection {
    /// No connection has completed or failed yet (a first attempt may be
    /// under way), or the last one that worked was lost and a new one is
    /// being tried.
    #[default]
    Connecting,
    /// The last connection completed its handshake (TLS and HMAC).
    Connected,
    /// The peer was reached, but the TLS or replication handshake was
    /// refused (by either side) or never completed.
    HandshakeRefused {
        /// Why, as a class.
        reason: HandshakeRefusal,
        /// The error, for a human.
        detail: String,
    },
    /// The peer could not be reached at all.
    Unreachable {
        /// Why, as a class.
        reason: Unreachable,
        /// The error, for a human.
        detail: String,
    },
}

impl PeerConnection {
    /// The state's name (`connecting`, `connected`, `handshake_refused`,
    /// `unreachable`).
    pub fn as_str(&self) -> &'static str {
        match self {
            PeerConnection::Connecting => "connecting",
            PeerConnection::Connected => "connected",
            PeerConnection::HandshakeRefused { .. } => "handshake_refused",
            PeerConnection::Unreachable { .. } => "unreachable",
        }
    }

    /// The failure's reason class, if it is a failure.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            PeerConnection::HandshakeRefused { reason, .. } => Some(reason.as_str()),
            PeerConnection::Unreachable { reason, .. } => Some(reason.as_str()),
            _ => None,
        }
    }

    /// The failure's detail, if it is a failure.
    pub fn detail(&self) -> Option<&str> {
        match self {
            PeerConnection::HandshakeRefused { detail, .. }
            | PeerConnection::Unreachable { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// What an operator should check, for a failure ("" otherwise).
    pub fn hint(&self) -> &'static str {
        match self {
            PeerConnection::Unreachable { reason, .. } => match reason {
                Unreachable::ConnectionRefused => {
                    "nothing listens there: is the peer running, and is this its replication \
                     address (not its HTTP port)?"
                }
                Unreachable::TimedOut => "no answer: is the host up and the port open?",
                Unreachable::Network => "check the address and the network",
            },
            PeerConnection::HandshakeRefused { reason, .. } => match reason {
                HandshakeRefusal::Tls => {
                    "check that both certificates are signed by the CA the other node trusts, \
                     are valid now and are issued for node-<id>.<cluster-id>, and that both \
                     nodes use TLS"
                }
                HandshakeRefusal::SecretMismatch => {
                    "every node must be configured with the same shared secret"
                }
                HandshakeRefusal::ClusterMismatch => {
                    "every node must be configured with the same cluster id"
                }
                HandshakeRefusal::ProtocolMismatch => {
                    "every node must run the same metawal version"
                }
                HandshakeRefusal::WrongNode => {
                    "another node id answers at this address: check the peers list"
                }
                HandshakeRefusal::NotCertified => {
                    "the certificate is not issued for the node id it claims"
                }
                HandshakeRefusal::EpochConflict => {
                    "two leaders claim one epoch: check that no two nodes share an id or a \
                     data directory"
                }
                HandshakeRefusal::Refused | HandshakeRefusal::TimedOut => {
                    "usually resolves on its own; if it persists, check the peer's log"
                }
                HandshakeRefusal::Closed => {
                    "the peer closed the connection: its log says why (often a different \
                     cluster id, secret or CA)"
                }
                HandshakeRefusal::ProtocolError => "check the peer's log",
            },
            _ => "",
        }
    }

    /// Whether this is a failure (refused or unreachable).
    pub fn is_failure(&self) -> bool {
        self.reason().is_some()
    }

    /// A refused handshake.
    pub fn refused(reason: HandshakeRefusal, detail: impl Into<String>) -> PeerConnection {
        PeerConnection::HandshakeRefused {
            reason,
            detail: detail.into(),
        }
    }

    /// An unreachable peer.
    pub fn unreachable(reason: Unreachable, detail: impl Into<String>) -> PeerConnection {
        PeerConnection::Unreachable {
            reason,
            detail: detail.into(),
        }
    }

    /// The state names, in the order `/metrics` lists them.
    pub const STATES: [&'static str; 4] = [
        "connecting",
        "connected",
        "handshake_refused",
        "unreachable",
    ];
}

/// A `Reject` reason in words.
pub(crate) fn reject_text(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::ProtocolMismatch => "it speaks another protocol version",
        RejectReason::ClusterMismatch => "it is in another cluster",
        RejectReason::BadProof => "this node's proof does not verify (the shared secrets differ)",
        RejectReason::StaleEpoch => "it knows a higher epoch",
        RejectReason::EpochConflict => "it knows another leader for this epoch",
        RejectReason::NotFollower => "it is not a follower",
        RejectReason::Unexpected => "unexpected frame",
        RejectReason::NotCertified => "this node's certificate is not for the node id it claims",
    }
}

/// Why a peer could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// Nothing listens at the address (the node is down, or the address or
    /// port is wrong).
    ConnectionRefused,
    /// The TCP connect did not finish in time (a firewall dropping
    /// packets, a host that is down).
    TimedOut,
    /// Another network error (no route, address not available, …).
    Network,
}

impl Unreachable {
    /// The reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreachable::ConnectionRefused => "connection_refused",
            Unreachable::TimedOut => "timed_out",
            Unreachable::Network => "network",
        }
    }

    /// The class of a failed TCP connect.
    pub fn of_io(e: &std::io::Error) -> Unreachable {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Unreachable::ConnectionRefused,
            std::io::ErrorKind::TimedOut => Unreachable::TimedOut,
            _ => Unreachable::Network,
        }
    }
}

/// Why a handshake with a peer was refused or never completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeRefusal {
    /// The TLS handshake failed: a certificate not signed by the CA this
    /// side trusts, not valid for the expected node name, expired, or the
    /// peer does not speak TLS.
    Tls,
    /// The HMAC proof did not verify: the shared secrets differ.
    SecretMismatch,
    /// The peer is configured with another cluster id.
    ClusterMismatch,
    /// The peer speaks another protocol version.
    ProtocolMismatch,
    /// The node at the peer's address answered with another node id (the
    /// peers config is wrong, or two nodes share an id).
    WrongNode,
    /// The node id claimed is not one its TLS certificate names.
    NotCertified,
    /// Two leaders claim the same epoch (a misconfiguration).
    EpochConflict,
    /// The peer refused for a reason of the protocol's normal course (a
    /// stale epoch, it is not a follower): usually resolves on its own.
    Refused,
    /// The peer closed the connection before the handshake completed (it
    /// refused this node without saying why, e.g. a TLS alert it sent
    /// after checking this node's certificate, or a wrong cluster id).
    Closed,
    /// The handshake did not complete in time.
    TimedOut,
    /// A frame that does not belong in the handshake.
    ProtocolError,
}

impl HandshakeRefusal {
    /// The reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeRefusal::Tls => "tls",
            HandshakeRefusal::SecretMismatch => "secret_mismatch",
            HandshakeRefusal::ClusterMismatch => "cluster_mismatch",
            HandshakeRefusal::ProtocolMismatch => "protocol_mismatch",
            HandshakeRefusal::WrongNode => "wrong_node",
            HandshakeRefusal::NotCertified => "not_certified",
            HandshakeRefusal::EpochConflict => "epoch_conflict",
            HandshakeRefusal::Refused => "refused",
            HandshakeRefusal::Closed => "closed",
            HandshakeRefusal::TimedOut => "timed_out",
            HandshakeRefusal::ProtocolError => "protocol_error",
        }
    }

    /// The class of a reason sent in a `Reject`.
    pub fn of_reject(reason: RejectReason) -> HandshakeRefusal {
        match reason {
            RejectReason::ProtocolMismatch => HandshakeRefusal::ProtocolMismatch,
            RejectReason::ClusterMismatch => HandshakeRefusal::ClusterMismatch,
            RejectReason::BadProof => HandshakeRefusal::SecretMismatch,
            RejectReason::NotCertified => HandshakeRefusal::NotCertified,
            RejectReason::EpochConflict => HandshakeRefusal::EpochConflict,
            RejectReason::StaleEpoch | RejectReason::NotFollower => HandshakeRefusal::Refused,
            RejectReason::Unexpected => HandshakeRefusal::ProtocolError,
        }
    }

    /// The class of a handshake check that failed.
    pub fn of_error(e: &HandshakeError) -> HandshakeRefusal {
        match e {
            HandshakeError::ProtocolMismatch { .. } => HandshakeRefusal::ProtocolMismatch,
            HandshakeError::ClusterMismatch { .. } => HandshakeRefusal::ClusterMismatch,
            HandshakeError::BadProof { .. } | HandshakeError::InvalidKeys(_) => {
                HandshakeRefusal::SecretMismatch
            }
            HandshakeError::SameNodeId { .. } | HandshakeError::NodeIdMismatch { .. } => {
                HandshakeRefusal::WrongNode
            }
            HandshakeError::NotCertified { .. } => HandshakeRefusal::NotCertified,
            HandshakeError::EpochConflict { .. } => HandshakeRefusal::EpochConflict,
            HandshakeError::StaleEpoch { .. } | HandshakeError::NotFollower => {
                HandshakeRefusal::Refused
            }
            HandshakeError::Rejected { reason, .. } => HandshakeRefusal::of_reject(*reason),
            HandshakeError::BadNonceLength { .. } | HandshakeError::Unexpected { .. } => {
                HandshakeRefusal::ProtocolError
            }
        }
    }
}

/// Which connection an observation of a peer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerChannel {
    /// The leader's replication link to the peer (outbound).
    Replication,
    /// This node's election connection to the peer (outbound).
    Election,
    /// A connection the peer opened to this node (replication or
    /// election).
    Inbound,
}

impl PeerChannel {
    /// The channel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerChannel::Replication => "replication",
            PeerChannel::Election => "election",
            PeerChannel::Inbound => "inbound",
        }
    }
}
// Here, not in tls.rs: tls knows nothing of the status types (no import
// cycle tls -> status -> shared -> metrics -> error -> tls).
impl ConnectError {
    /// What the failure says about the connection to the peer.
    pub fn connection(&self) -> PeerConnection {
        let detail = self.to_string();
        match self {
            ConnectError::Timeout(_) => PeerConnection::unreachable(Unreachable::TimedOut, detail),
            ConnectError::Tcp(e) => PeerConnection::unreachable(Unreachable::of_io(e), detail),
            ConnectError::TlsTimeout(_) => {
                PeerConnection::refused(HandshakeRefusal::TimedOut, detail)
            }
            // The peer closed (or reset) the connection before TLS could
            // judge anything: it is shutting down, or refused the
            // connection without a TLS alert.
            ConnectError::Tls(e) if is_abrupt_close(e) => {
                PeerConnection::refused(HandshakeRefusal::Closed, detail)
            }
            ConnectError::Tls(_) => PeerConnection::refused(HandshakeRefusal::Tls, detail),
        }
    }
}
