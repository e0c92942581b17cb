//! The replication handshake: HMAC-SHA256 proofs and the checks each side
//! makes (protocol steps 1–3 of the design; exact byte layouts in
//! `docs/protocol.md`).
//!
//! ```text
//! follower                                   leader
//!   challenge(nonce_f)        ── Challenge ─▶  check_challenge
//!   check_hello               ◀─ Hello ─────   hello(epoch, nonce_f, nonce_l)
//!   welcome(nonce_l, ..)      ── Welcome ───▶  check_welcome
//!   (or reject(&err, ..)      ── Reject ────▶  → HandshakeError::Rejected)
//! ```
//!
//! Each side proves it knows the shared secret by signing the *other* side's
//! fresh nonce, so a recorded proof cannot be replayed on a new connection.
//! Proofs are verified in constant time ([`hmac::Mac::verify_slice`]).
//!
//! This module has no randomness: nonces are arguments. The caller must draw
//! each nonce from a cryptographically secure random source (e.g.
//! `rand::rngs::OsRng` / `getrandom`), [`NONCE_LEN`] fresh bytes per
//! connection, never reused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::command::NodeId;
use crate::frame::{Frame, RejectReason, NONCE_LEN, PROTOCOL_VERSION};

/// A handshake nonce: [`NONCE_LEN`] bytes from a CSPRNG, fresh per connection.
pub type Nonce = [u8; NONCE_LEN];

/// Length of an HMAC-SHA256 proof.
pub const PROOF_LEN: usize = 32;

/// Domain-separation tag of the leader's proof (in `Hello`).
pub const LEADER_TAG: &[u8] = b"metawal-leader";

/// Domain-separation tag of the follower's proof (in `Welcome`).
pub const FOLLOWER_TAG: &[u8] = b"metawal-follower";

/// Domain-separation tag of a follower's proof in a `Reject`.
pub const REJECT_TAG: &[u8] = b"metawal-reject";

/// Domain-separation tag of a voter's proof (in `VoterHello`).
pub const VOTER_TAG: &[u8] = b"metawal-voter";

/// Domain-separation tag of the accepting node's proof (in `VoterWelcome`).
pub const VOTER_ACCEPT_TAG: &[u8] = b"metawal-voter-accept";

/// Longest peer-supplied cluster id kept in an error message.
const MAX_SHOWN_CLUSTER_ID: usize = 128;

type HmacSha256 = Hmac<Sha256>;

/// A configuration problem in [`HandshakeKeys`].
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
        /// [`NONCE_LEN`].
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
    fn after_proof(&self) -> bool {
        matches!(
            self,
            HandshakeError::StaleEpoch { .. }
                | HandshakeError::EpochConflict { .. }
                | HandshakeError::SameNodeId { .. }
        )
    }
}

/// The `Reject` frame a follower sends for `err`, then closes the connection.
///
/// `current_epoch` and `leader` (the highest epoch this node has seen and
/// its leader) are only sent for errors found after the leader's proof
/// verified (stale epoch, epoch conflict, same node id); otherwise the frame
/// carries epoch 0 and no leader, so an unauthenticated peer learns nothing.
pub fn reject(err: &HandshakeError, current_epoch: u64, leader: Option<NodeId>) -> Frame {
    let (epoch, leader) = if err.after_proof() {
        (current_epoch, leader)
    } else {
        (0, None)
    };
    Frame::Reject {
        reason: err.reject_reason(),
        epoch,
        leader,
        proof: Vec::new(),
    }
}

/// What the leader learns from a valid `Challenge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeInfo {
    /// The follower's node id (not yet authenticated: the `Welcome` proof
    /// binds it).
    pub node_id: NodeId,
    /// The follower's nonce, to sign in the `Hello`.
    pub nonce: Nonce,
}

/// What the follower learns from a valid `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// The leader's node id.
    pub leader_id: NodeId,
    /// The leader's epoch (≥ the follower's current epoch).
    pub epoch: u64,
    /// Whether `epoch` is higher than the follower's current epoch: if so the
    /// follower must persist it (and the leader) before sending `Welcome`.
    pub new_epoch: bool,
    /// The leader's nonce, to sign in the `Welcome`.
    pub nonce: Nonce,
}

/// What the leader learns from a valid `Welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WelcomeInfo {
    /// Last offset in the follower's log (0 if empty).
    pub last_offset: u64,
    /// Epoch of that entry (0 if empty).
    pub last_epoch: u64,
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

/// Appends `field` to `mac` with a u32 big-endian length before it.
fn put_var(mac: &mut HmacSha256, field: &[u8]) {
    mac.update(&(field.len() as u32).to_be_bytes());
    mac.update(field);
}

/// Checks a peer-supplied nonce and copies it into a [`Nonce`].
fn nonce_from(frame: &'static str, nonce: &[u8]) -> Result<Nonce, HandshakeError> {
    Nonce::try_from(nonce).map_err(|_| HandshakeError::BadNonceLength {
        frame,
        len: nonce.len(),
        expected: NONCE_LEN,
    })
}

/// A peer-supplied cluster id, cut short for an error message.
fn shown(cluster_id: &str) -> String {
    if cluster_id.len() <= MAX_SHOWN_CLUSTER_ID {
        return cluster_id.to_string();
    }
    let mut end = MAX_SHOWN_CLUSTER_ID;
    while !cluster_id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &cluster_id[..end])
}

impl HandshakeKeys {
    /// Keys for this node, refusing an empty secret or cluster id.
    pub fn new(
        node_id: NodeId,
        cluster_id: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Result<HandshakeKeys, KeysError> {
        let keys = HandshakeKeys {
            node_id,
            cluster_id: cluster_id.into(),
            secret: secret.into(),
        };
        keys.validate()?;
        Ok(keys)
    }

    /// Checks the keys: the secret and the cluster id must not be empty.
    /// Every function here that makes or checks a proof calls it too.
    pub fn validate(&self) -> Result<(), KeysError> {
        if self.secret.is_empty() {
            return Err(KeysError::EmptySecret);
        }
        if self.cluster_id.is_empty() {
            return Err(KeysError::EmptyClusterId);
        }
        Ok(())
    }

    fn mac(&self) -> Result<HmacSha256, HandshakeError> {
        self.validate()?;
        // HMAC takes keys of any length; the error cannot happen.
        HmacSha256::new_from_slice(&self.secret)
            .map_err(|_| HandshakeError::InvalidKeys(KeysError::EmptySecret))
    }

    /// HMAC(secret, tag ‖ lp(nonce) ‖ lp(cluster_id) ‖ …): the prefix of
    /// every proof, each kind with its own tag, over the other side's nonce.
    fn tagged_mac(&self, tag: &[u8], nonce: &[u8]) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.mac()?;
        mac.update(tag);
        put_var(&mut mac, nonce);
        put_var(&mut mac, self.cluster_id.as_bytes());
        Ok(mac)
    }

    /// HMAC(secret, "metawal-leader" ‖ lp(follower_nonce) ‖ lp(cluster_id)
    /// ‖ leader_id BE ‖ epoch BE ‖ lp(leader_nonce)).
    fn leader_mac(
        &self,
        follower_nonce: &[u8],
        leader_id: NodeId,
        epoch: u64,
        leader_nonce: &[u8],
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.tagged_mac(LEADER_TAG, follower_nonce)?;
        mac.update(&leader_id.to_be_bytes());
        mac.update(&epoch.to_be_bytes());
        put_var(&mut mac, leader_nonce);
        Ok(mac)
    }

    /// HMAC(secret, "metawal-follower" ‖ lp(leader_nonce) ‖ lp(cluster_id)
    /// ‖ node_id BE ‖ last_offset BE ‖ last_epoch BE).
    fn follower_mac(
        &self,
        leader_nonce: &[u8],
        node_id: NodeId,
        last_offset: u64,
        last_epoch: u64,
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.tagged_mac(FOLLOWER_TAG, leader_nonce)?;
        mac.update(&node_id.to_be_bytes());
        mac.update(&last_offset.to_be_bytes());
        mac.update(&last_epoch.to_be_bytes());
        Ok(mac)
    }

    /// Voter, step 2 of an election connection (after the accepting
    /// node's `Challenge`, checked with [`HandshakeKeys::check_challenge`]):
    /// the `VoterHello`. `my_nonce` must be fresh CSPRNG bytes; keep it for
    /// [`HandshakeKeys::check_voter_welcome`]. Fails only if the keys are
    /// invalid.
    pub fn voter_hello(
        &self,
        their_nonce: &Nonce,
        my_nonce: &Nonce,
    ) -> Result<Frame, HandshakeError> {
        let mac = self.voter_mac(their_nonce, self.node_id, my_nonce)?;
        Ok(Frame::VoterHello {
            protocol: PROTOCOL_VERSION,
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            nonce: my_nonce.to_vec(),
            proof: mac.finalize().into_bytes().to_vec(),
        })
    }

    /// Accepting node: checks a `VoterHello` against the nonce of its own
    /// `Challenge` (protocol, cluster id, nonce length, proof in constant
    /// time, not this node's id). Returns the voter's id and nonce.
    pub fn check_voter_hello(
        &self,
        my_nonce: &Nonce,
        frame: &Frame,
    ) -> Result<(NodeId, Nonce), HandshakeError> {
        let Frame::VoterHello {
            protocol,
            cluster_id,
            node_id,
            nonce,
            proof,
        } = frame
        else {
            return Err(HandshakeError::Unexpected {
                expected: "VoterHello",
                got: frame.kind(),
            });
        };
        self.validate()?;
        self.check_protocol_and_cluster(*protocol, cluster_id)?;
        let nonce = nonce_from("VoterHello", nonce)?;
        self.voter_mac(my_nonce, *node_id, &nonce)?
            .verify_slice(proof)
            .map_err(|_| HandshakeError::BadProof {
                frame: "VoterHello",
                peer: *node_id,
            })?;
        if *node_id == self.node_id {
            return Err(HandshakeError::SameNodeId { node_id: *node_id });
        }
        Ok((*node_id, nonce))
    }

    /// Accepting node: the `VoterWelcome` answering a valid `VoterHello`.
    pub fn voter_welcome(&self, voter_nonce: &Nonce) -> Result<Frame, HandshakeError> {
        let mac = self.voter_accept_mac(voter_nonce, self.node_id)?;
        Ok(Frame::VoterWelcome {
            node_id: self.node_id,
            proof: mac.finalize().into_bytes().to_vec(),
        })
    }

    /// Voter, end of the handshake: checks the `VoterWelcome` against the
    /// nonce of its `VoterHello` and the node it meant to reach.
    pub fn check_voter_welcome(
        &self,
        my_nonce: &Nonce,
        expected_node_id: NodeId,
        frame: &Frame,
    ) -> Result<(), HandshakeError> {
        let (node_id, proof) = match frame {
            Frame::VoterWelcome { node_id, proof } => (*node_id, proof),
            Frame::Reject {
                reason,
                epoch,
                leader,
                ..
            } => {
                return Err(HandshakeError::Rejected {
                    reason: *reason,
                    epoch: *epoch,
                    leader: *leader,
                    proven: false,
                })
            }
            other => {
                return Err(HandshakeError::Unexpected {
                    expected: "VoterWelcome",
                    got: other.kind(),
                })
            }
        };
        self.validate()?;
        if node_id != expected_node_id {
            return Err(HandshakeError::NodeIdMismatch {
                expected: expected_node_id,
                got: node_id,
            });
        }
        self.voter_accept_mac(my_nonce, node_id)?
            .verify_slice(proof)
            .map_err(|_| HandshakeError::BadProof {
                frame: "VoterWelcome",
                peer: node_id,
            })
    }

    /// Follower: the `Reject` for a leader whose `Hello` verified (its
    /// nonce `leader_nonce`) but whose epoch this node refuses, with a proof
    /// the leader can check: it then knows the higher epoch is real.
    pub fn signed_reject(
        &self,
        leader_nonce: &Nonce,
        reason: RejectReason,
        epoch: u64,
        leader: Option<NodeId>,
    ) -> Result<Frame, HandshakeError> {
        let mac = self.reject_mac(leader_nonce, self.node_id, reason, epoch, leader)?;
        Ok(Frame::Reject {
            reason,
            epoch,
            leader,
            proof: mac.finalize().into_bytes().to_vec(),
        })
    }

    /// The `Reject` for `err` found while checking `hello`: signed over the
    /// Hello's nonce when the error was found after its proof verified (see
    /// [`reject`]), unsigned otherwise.
    pub fn reject_hello(
        &self,
        err: &HandshakeError,
        current_epoch: u64,
        leader: Option<NodeId>,
        hello: &Frame,
    ) -> Frame {
        if let (true, Frame::Hello { nonce, .. }) = (err.after_proof(), hello) {
            if let Ok(nonce) = nonce_from("Hello", nonce) {
                if let Ok(f) =
                    self.signed_reject(&nonce, err.reject_reason(), current_epoch, leader)
                {
                    return f;
                }
            }
        }
        reject(err, current_epoch, leader)
    }

    /// HMAC(secret, "metawal-reject" ‖ lp(leader_nonce) ‖ lp(cluster_id) ‖
    /// node_id BE ‖ reason u8 ‖ epoch BE ‖ leader BE (0: none)).
    fn reject_mac(
        &self,
        leader_nonce: &[u8],
        node_id: NodeId,
        reason: RejectReason,
        epoch: u64,
        leader: Option<NodeId>,
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.tagged_mac(REJECT_TAG, leader_nonce)?;
        mac.update(&node_id.to_be_bytes());
        mac.update(&[reason as u8]);
        mac.update(&epoch.to_be_bytes());
        mac.update(&leader.unwrap_or(0).to_be_bytes());
        Ok(mac)
    }

    /// HMAC(secret, "metawal-voter" ‖ lp(acceptor_nonce) ‖ lp(cluster_id)
    /// ‖ node_id BE ‖ lp(voter_nonce)).
    fn voter_mac(
        &self,
        acceptor_nonce: &[u8],
        node_id: NodeId,
        voter_nonce: &[u8],
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.tagged_mac(VOTER_TAG, acceptor_nonce)?;
        mac.update(&node_id.to_be_bytes());
        put_var(&mut mac, voter_nonce);
        Ok(mac)
    }

    /// HMAC(secret, "metawal-voter-accept" ‖ lp(voter_nonce) ‖
    /// lp(cluster_id) ‖ node_id BE).
    fn voter_accept_mac(
        &self,
        voter_nonce: &[u8],
        node_id: NodeId,
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.tagged_mac(VOTER_ACCEPT_TAG, voter_nonce)?;
        mac.update(&node_id.to_be_bytes());
        Ok(mac)
    }

    fn check_protocol_and_cluster(
        &self,
        protocol: u32,
        cluster_id: &str,
    ) -> Result<(), HandshakeError> {
        if protocol != PROTOCOL_VERSION {
            return Err(HandshakeError::ProtocolMismatch {
                theirs: protocol,
                ours: PROTOCOL_VERSION,
            });
        }
        if cluster_id != self.cluster_id {
            return Err(HandshakeError::ClusterMismatch {
                theirs: shown(cluster_id),
                ours: self.cluster_id.clone(),
            });
        }
        Ok(())
    }

    /// Follower, step 1: the first frame on a new connection.
    ///
    /// `nonce` must be [`NONCE_LEN`] fresh bytes from a CSPRNG; keep it to
    /// pass to [`HandshakeKeys::check_hello`].
    pub fn challenge(&self, nonce: &Nonce) -> Frame {
        Frame::Challenge {
            protocol: PROTOCOL_VERSION,
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            nonce: nonce.to_vec(),
        }
    }

    /// Leader, step 1: checks a `Challenge` (protocol, cluster id, nonce
    /// length, and that the follower does not claim this node's id).
    pub fn check_challenge(&self, frame: &Frame) -> Result<ChallengeInfo, HandshakeError> {
        let Frame::Challenge {
            protocol,
            cluster_id,
            node_id,
            nonce,
        } = frame
        else {
            return Err(HandshakeError::Unexpected {
                expected: "Challenge",
                got: frame.kind(),
            });
        };
        self.validate()?;
        self.check_protocol_and_cluster(*protocol, cluster_id)?;
        let nonce = nonce_from("Challenge", nonce)?;
        if *node_id == self.node_id {
            return Err(HandshakeError::SameNodeId { node_id: *node_id });
        }
        Ok(ChallengeInfo {
            node_id: *node_id,
            nonce,
        })
    }

    /// Leader, step 2: the `Hello` answering a follower's `Challenge`.
    ///
    /// `leader_nonce` must be [`NONCE_LEN`] fresh bytes from a CSPRNG; keep
    /// it to pass to [`HandshakeKeys::check_welcome`]. Fails only if the keys
    /// are invalid.
    pub fn hello(
        &self,
        epoch: u64,
        follower_nonce: &Nonce,
        leader_nonce: &Nonce,
    ) -> Result<Frame, HandshakeError> {
        let mac = self.leader_mac(follower_nonce, self.node_id, epoch, leader_nonce)?;
        Ok(Frame::Hello {
            protocol: PROTOCOL_VERSION,
            cluster_id: self.cluster_id.clone(),
            leader_id: self.node_id,
            epoch,
            nonce: leader_nonce.to_vec(),
            proof: mac.finalize().into_bytes().to_vec(),
        })
    }

    /// Follower, step 3: checks a `Hello` against this node's `my_nonce`
    /// (sent in its `Challenge`) and the highest epoch it has seen
    /// (`current_epoch`, led by `current_leader` if known).
    ///
    /// Checks, in order: protocol, cluster id, nonce length, proof (constant
    /// time), that the leader is not this node, and epoch fencing: a lower
    /// epoch is [`HandshakeError::StaleEpoch`]; the same epoch with another
    /// known leader is [`HandshakeError::EpochConflict`]. A `Reject` from the
    /// leader gives [`HandshakeError::Rejected`].
    ///
    /// On success with [`HelloInfo::new_epoch`], persist the epoch before
    /// answering with [`HandshakeKeys::welcome`]; on error, answer with
    /// [`reject`] and close.
    pub fn check_hello(
        &self,
        my_nonce: &Nonce,
        current_epoch: u64,
        current_leader: Option<NodeId>,
        frame: &Frame,
    ) -> Result<HelloInfo, HandshakeError> {
        let (protocol, cluster_id, leader_id, epoch, nonce, proof) = match frame {
            Frame::Hello {
                protocol,
                cluster_id,
                leader_id,
                epoch,
                nonce,
                proof,
            } => (*protocol, cluster_id, *leader_id, *epoch, nonce, proof),
            Frame::Reject {
                reason,
                epoch,
                leader,
                ..
            } => {
                return Err(HandshakeError::Rejected {
                    reason: *reason,
                    epoch: *epoch,
                    leader: *leader,
                    proven: false,
                })
            }
            other => {
                return Err(HandshakeError::Unexpected {
                    expected: "Hello",
                    got: other.kind(),
                })
            }
        };
        self.validate()?;
        self.check_protocol_and_cluster(protocol, cluster_id)?;
        let nonce = nonce_from("Hello", nonce)?;
        self.leader_mac(my_nonce, leader_id, epoch, &nonce)?
            .verify_slice(proof)
            .map_err(|_| HandshakeError::BadProof {
                frame: "Hello",
                peer: leader_id,
            })?;
        if leader_id == self.node_id {
            return Err(HandshakeError::SameNodeId { node_id: leader_id });
        }
        if epoch < current_epoch {
            return Err(HandshakeError::StaleEpoch {
                theirs: epoch,
                leader_id,
                current: current_epoch,
                leader: current_leader,
            });
        }
        if epoch == current_epoch {
            if let Some(known) = current_leader {
                if known != leader_id {
                    return Err(HandshakeError::EpochConflict {
                        epoch,
                        claimed: leader_id,
                        known,
                    });
                }
            }
        }
        Ok(HelloInfo {
            leader_id,
            epoch,
            new_epoch: epoch > current_epoch,
            nonce,
        })
    }

    /// Follower, step 3: the `Welcome` accepting the leader, with where this
    /// node's log ends. Fails only if the keys are invalid.
    pub fn welcome(
        &self,
        leader_nonce: &Nonce,
        last_offset: u64,
        last_epoch: u64,
    ) -> Result<Frame, HandshakeError> {
        let mac = self.follower_mac(leader_nonce, self.node_id, last_offset, last_epoch)?;
        Ok(Frame::Welcome {
            node_id: self.node_id,
            last_offset,
            last_epoch,
            proof: mac.finalize().into_bytes().to_vec(),
        })
    }

    /// Leader, end of the handshake: checks the follower's answer against
    /// this leader's `my_nonce` (sent in its `Hello`) and the node id from
    /// the `Challenge`. The proof is verified in constant time.
    ///
    /// A `Reject` gives [`HandshakeError::Rejected`]; the frame is not
    /// authenticated, so the leader reports it and does not step down (see
    /// `docs/protocol.md`).
    pub fn check_welcome(
        &self,
        my_nonce: &Nonce,
        expected_node_id: NodeId,
        frame: &Frame,
    ) -> Result<WelcomeInfo, HandshakeError> {
        let (node_id, last_offset, last_epoch, proof) = match frame {
            Frame::Welcome {
                node_id,
                last_offset,
                last_epoch,
                proof,
            } => (*node_id, *last_offset, *last_epoch, proof),
            Frame::Reject {
                reason,
                epoch,
                leader,
                proof,
            } => {
                // A proof is checked against this leader's nonce and the
                // follower it connected to; an empty one proves nothing.
                let proven = !proof.is_empty()
                    && self
                        .reject_mac(my_nonce, expected_node_id, *reason, *epoch, *leader)?
                        .verify_slice(proof)
                        .is_ok();
                if !proof.is_empty() && !proven {
                    return Err(HandshakeError::BadProof {
                        frame: "Reject",
                        peer: expected_node_id,
                    });
                }
                return Err(HandshakeError::Rejected {
                    reason: *reason,
                    epoch: *epoch,
                    leader: *leader,
                    proven,
                });
            }
            other => {
                return Err(HandshakeError::Unexpected {
                    expected: "Welcome",
                    got: other.kind(),
                })
            }
        };
        self.validate()?;
        if node_id != expected_node_id {
            return Err(HandshakeError::NodeIdMismatch {
                expected: expected_node_id,
                got: node_id,
            });
        }
        self.follower_mac(my_nonce, node_id, last_offset, last_epoch)?
            .verify_slice(proof)
            .map_err(|_| HandshakeError::BadProof {
                frame: "Welcome",
                peer: node_id,
            })?;
        Ok(WelcomeInfo {
            last_offset,
            last_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret-shared-by-all";
    const NF: Nonce = [1; NONCE_LEN];
    const NL: Nonce = [2; NONCE_LEN];

    fn leader() -> HandshakeKeys {
        HandshakeKeys::new(1, "cluster-a", SECRET).unwrap()
    }

    fn follower() -> HandshakeKeys {
        HandshakeKeys::new(2, "cluster-a", SECRET).unwrap()
    }

    fn set_hello_field(frame: &mut Frame, f: impl FnOnce(&mut u64, &mut NodeId, &mut Vec<u8>)) {
        match frame {
            Frame::Hello {
                epoch,
                leader_id,
                nonce,
                ..
            } => f(epoch, leader_id, nonce),
            _ => panic!("not a Hello"),
        }
    }

    #[test]
    fn full_good_exchange() {
        let (l, f) = (leader(), follower());
        let challenge = f.challenge(&NF);
        let ci = l.check_challenge(&challenge).unwrap();
        assert_eq!(
            ci,
            ChallengeInfo {
                node_id: 2,
                nonce: NF
            }
        );
        let hello = l.hello(5, &ci.nonce, &NL).unwrap();
        let hi = f.check_hello(&NF, 4, Some(3), &hello).unwrap();
        assert_eq!(
            hi,
            HelloInfo {
                leader_id: 1,
                epoch: 5,
                new_epoch: true,
                nonce: NL
            }
        );
        let welcome = f.welcome(&hi.nonce, 100, 4).unwrap();
        let wi = l.check_welcome(&NL, ci.node_id, &welcome).unwrap();
        assert_eq!(
            wi,
            WelcomeInfo {
                last_offset: 100,
                last_epoch: 4
            }
        );
        // Same epoch, same known leader (a reconnect): accepted, not new.
        let hi = f.check_hello(&NF, 5, Some(1), &hello).unwrap();
        assert!(!hi.new_epoch);
        // Same epoch, leader not known yet: accepted.
        assert!(f.check_hello(&NF, 5, None, &hello).is_ok());
    }

    #[test]
    fn frames_survive_the_codec() {
        use crate::codec::FrameCodec;
        use bytes::BytesMut;
        use tokio_util::codec::{Decoder, Encoder};
        let mut codec = FrameCodec::new(1 << 20);
        let hello = leader().hello(5, &NF, &NL).unwrap();
        let mut buf = BytesMut::new();
        codec.encode(&hello, &mut buf).unwrap();
        let decoded = codec.decode(&mut buf).unwrap().unwrap();
        assert!(follower().check_hello(&NF, 0, None, &decoded).is_ok());
    }

    #[test]
    fn wrong_secret_is_bad_proof_on_both_sides() {
        let l = leader();
        let mut f = follower();
        f.secret = b"another-secret".to_vec();
        let hello = l.hello(5, &NF, &NL).unwrap();
        let err = f.check_hello(&NF, 0, None, &hello).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::BadProof {
                frame: "Hello",
                peer: 1
            }
        );
        assert_eq!(err.reject_reason(), RejectReason::BadProof);
        let welcome = f.welcome(&NL, 10, 1).unwrap();
        let err = l.check_welcome(&NL, 2, &welcome).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::BadProof {
                frame: "Welcome",
                peer: 2
            }
        );
        // Messages never show the secret or the proof.
        for e in [
            f.check_hello(&NF, 0, None, &hello).unwrap_err(),
            l.check_welcome(&NL, 2, &welcome).unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(!msg.contains("secret-shared"), "{msg}");
            assert!(!msg.contains("another-secret"), "{msg}");
            assert!(msg.contains("does not verify"), "{msg}");
        }
    }

    #[test]
    fn wrong_cluster_id() {
        let l = leader();
        let other = HandshakeKeys::new(2, "cluster-b", SECRET).unwrap();
        let err = l.check_challenge(&other.challenge(&NF)).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::ClusterMismatch {
                theirs: "cluster-b".into(),
                ours: "cluster-a".into()
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("cluster-a") && msg.contains("cluster-b"),
            "{msg}"
        );
        assert_eq!(err.reject_reason(), RejectReason::ClusterMismatch);
        let hello = l.hello(1, &NF, &NL).unwrap();
        assert!(matches!(
            other.check_hello(&NF, 0, None, &hello),
            Err(HandshakeError::ClusterMismatch { .. })
        ));
        // A huge peer cluster id is cut short in the error.
        let big = HandshakeKeys::new(2, "x".repeat(100_000), SECRET).unwrap();
        let err = l.check_challenge(&big.challenge(&NF)).unwrap_err();
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn wrong_protocol() {
        let l = leader();
        let mut challenge = follower().challenge(&NF);
        if let Frame::Challenge { protocol, .. } = &mut challenge {
            *protocol = PROTOCOL_VERSION + 1;
        }
        let err = l.check_challenge(&challenge).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::ProtocolMismatch {
                theirs: PROTOCOL_VERSION + 1,
                ours: PROTOCOL_VERSION
            }
        );
        assert!(err
            .to_string()
            .contains(&format!("{}", PROTOCOL_VERSION + 1)));
        let mut hello = l.hello(1, &NF, &NL).unwrap();
        if let Frame::Hello { protocol, .. } = &mut hello {
            *protocol = 0;
        }
        let err = follower().check_hello(&NF, 0, None, &hello).unwrap_err();
        assert_eq!(err.reject_reason(), RejectReason::ProtocolMismatch);
    }

    #[test]
    fn stale_epoch_and_reject_round_trip() {
        let (l, f) = (leader(), follower());
        let hello = l.hello(3, &NF, &NL).unwrap();
        let err = f.check_hello(&NF, 7, Some(3), &hello).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::StaleEpoch {
                theirs: 3,
                leader_id: 1,
                current: 7,
                leader: Some(3)
            }
        );
        let msg = err.to_string();
        assert!(msg.contains('3') && msg.contains('7'), "{msg}");
        let rej = reject(&err, 7, Some(3));
        assert_eq!(
            rej,
            Frame::Reject {
                reason: RejectReason::StaleEpoch,
                epoch: 7,
                leader: Some(3),
                proof: Vec::new(),
            }
        );
        // The leader sees it while waiting for the Welcome, unproven.
        assert_eq!(
            l.check_welcome(&NL, 2, &rej).unwrap_err(),
            HandshakeError::Rejected {
                reason: RejectReason::StaleEpoch,
                epoch: 7,
                leader: Some(3),
                proven: false,
            }
        );
    }

    /// A follower's signed refusal proves its epoch to the leader it was
    /// answering; any change to it, another nonce or another secret does
    /// not verify.
    #[test]
    fn a_signed_reject_proves_the_epoch_and_nothing_else_does() {
        let keys =
            |id, secret: &[u8]| HandshakeKeys::new(id, "cluster-a", secret.to_vec()).unwrap();
        let f = keys(2, b"s");
        let l = keys(1, b"s");
        let signed = f
            .signed_reject(&NL, RejectReason::StaleEpoch, 9, Some(3))
            .unwrap();
        assert_eq!(
            l.check_welcome(&NL, 2, &signed).unwrap_err(),
            HandshakeError::Rejected {
                reason: RejectReason::StaleEpoch,
                epoch: 9,
                leader: Some(3),
                proven: true,
            }
        );
        let Frame::Reject { proof, .. } = &signed else {
            panic!("{signed:?}");
        };
        let forged = Frame::Reject {
            reason: RejectReason::StaleEpoch,
            epoch: 90,
            leader: Some(3),
            proof: proof.clone(),
        };
        for (frame, nonce, leader_keys) in [
            (&forged, NL, keys(1, b"s")),
            (&signed, [9u8; NONCE_LEN], keys(1, b"s")),
            (&signed, NL, keys(1, b"other")),
        ] {
            assert!(matches!(
                leader_keys.check_welcome(&nonce, 2, frame),
                Err(HandshakeError::BadProof {
                    frame: "Reject",
                    ..
                })
            ));
        }
    }

    #[test]
    fn same_epoch_different_leader() {
        let f = follower();
        let hello = leader().hello(5, &NF, &NL).unwrap();
        let err = f.check_hello(&NF, 5, Some(3), &hello).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::EpochConflict {
                epoch: 5,
                claimed: 1,
                known: 3
            }
        );
        assert_eq!(err.reject_reason(), RejectReason::EpochConflict);
        assert_ne!(
            err,
            HandshakeError::StaleEpoch {
                theirs: 5,
                leader_id: 1,
                current: 5,
                leader: Some(3)
            }
        );
    }

    #[test]
    fn leader_claiming_own_id_refused() {
        let f = follower();
        let impostor = HandshakeKeys::new(2, "cluster-a", SECRET).unwrap();
        let hello = impostor.hello(5, &NF, &NL).unwrap();
        assert_eq!(
            f.check_hello(&NF, 0, None, &hello).unwrap_err(),
            HandshakeError::SameNodeId { node_id: 2 }
        );
        let l = leader();
        let c = HandshakeKeys::new(1, "cluster-a", SECRET)
            .unwrap()
            .challenge(&NF);
        assert_eq!(
            l.check_challenge(&c).unwrap_err(),
            HandshakeError::SameNodeId { node_id: 1 }
        );
    }

    #[test]
    fn proof_is_bound_to_the_nonce() {
        let (l, f) = (leader(), follower());
        // A Hello recorded on an earlier connection (follower nonce NF) is
        // replayed on a new one where the follower sent another nonce.
        let hello = l.hello(5, &NF, &NL).unwrap();
        let new_nonce: Nonce = [9; NONCE_LEN];
        assert!(matches!(
            f.check_hello(&new_nonce, 0, None, &hello),
            Err(HandshakeError::BadProof { .. })
        ));
        // Same for a replayed Welcome.
        let welcome = f.welcome(&NL, 1, 1).unwrap();
        assert!(matches!(
            l.check_welcome(&new_nonce, 2, &welcome),
            Err(HandshakeError::BadProof { .. })
        ));
        // The leader's nonce inside the Hello is signed too.
        let mut hello2 = hello.clone();
        set_hello_field(&mut hello2, |_, _, n| *n = vec![7; NONCE_LEN]);
        assert!(matches!(
            f.check_hello(&NF, 0, None, &hello2),
            Err(HandshakeError::BadProof { .. })
        ));
    }

    #[test]
    fn tampered_fields_fail() {
        let (l, f) = (leader(), follower());
        let hello = l.hello(5, &NF, &NL).unwrap();
        let mut h = hello.clone();
        set_hello_field(&mut h, |e, _, _| *e = 6);
        assert!(matches!(
            f.check_hello(&NF, 0, None, &h),
            Err(HandshakeError::BadProof { .. })
        ));
        let mut h = hello.clone();
        set_hello_field(&mut h, |_, id, _| *id = 3);
        assert!(matches!(
            f.check_hello(&NF, 0, None, &h),
            Err(HandshakeError::BadProof { .. })
        ));
        let mut h = hello;
        if let Frame::Hello { proof, .. } = &mut h {
            proof.truncate(16);
        }
        assert!(matches!(
            f.check_hello(&NF, 0, None, &h),
            Err(HandshakeError::BadProof { .. })
        ));

        let welcome = f.welcome(&NL, 100, 4).unwrap();
        for change in 0..3 {
            let mut w = welcome.clone();
            if let Frame::Welcome {
                last_offset,
                last_epoch,
                node_id,
                ..
            } = &mut w
            {
                match change {
                    0 => *last_offset = 101,
                    1 => *last_epoch = 5,
                    _ => *node_id = 3,
                }
            }
            let err = l
                .check_welcome(&NL, if change == 2 { 3 } else { 2 }, &w)
                .unwrap_err();
            assert!(matches!(err, HandshakeError::BadProof { .. }), "{err}");
        }
        // A Welcome from another node than the Challenge named.
        assert_eq!(
            l.check_welcome(&NL, 4, &welcome).unwrap_err(),
            HandshakeError::NodeIdMismatch {
                expected: 4,
                got: 2
            }
        );
    }

    #[test]
    fn bad_nonce_length() {
        let l = leader();
        for len in [0, NONCE_LEN - 1, NONCE_LEN + 1] {
            let c = Frame::Challenge {
                protocol: PROTOCOL_VERSION,
                cluster_id: "cluster-a".into(),
                node_id: 2,
                nonce: vec![0; len],
            };
            assert_eq!(
                l.check_challenge(&c).unwrap_err(),
                HandshakeError::BadNonceLength {
                    frame: "Challenge",
                    len,
                    expected: NONCE_LEN
                }
            );
        }
        let mut hello = l.hello(5, &NF, &NL).unwrap();
        set_hello_field(&mut hello, |_, _, n| n.push(0));
        let err = follower().check_hello(&NF, 0, None, &hello).unwrap_err();
        assert!(matches!(err, HandshakeError::BadNonceLength { .. }));
        assert_eq!(err.reject_reason(), RejectReason::Unexpected);
    }

    #[test]
    fn unexpected_frames() {
        let (l, f) = (leader(), follower());
        let hb = Frame::Heartbeat { commit: 0 };
        assert_eq!(
            l.check_challenge(&hb).unwrap_err(),
            HandshakeError::Unexpected {
                expected: "Challenge",
                got: "Heartbeat"
            }
        );
        assert!(matches!(
            f.check_hello(&NF, 0, None, &hb),
            Err(HandshakeError::Unexpected { .. })
        ));
        assert!(matches!(
            l.check_welcome(&NL, 2, &hb),
            Err(HandshakeError::Unexpected { .. })
        ));
        let rej = Frame::Reject {
            reason: RejectReason::ClusterMismatch,
            epoch: 0,
            leader: None,
            proof: Vec::new(),
        };
        assert!(matches!(
            f.check_hello(&NF, 0, None, &rej),
            Err(HandshakeError::Rejected {
                reason: RejectReason::ClusterMismatch,
                ..
            })
        ));
    }

    #[test]
    fn reject_hides_epoch_before_authentication() {
        let err = HandshakeError::BadProof {
            frame: "Hello",
            peer: 1,
        };
        assert_eq!(
            reject(&err, 9, Some(3)),
            Frame::Reject {
                reason: RejectReason::BadProof,
                epoch: 0,
                leader: None,
                proof: Vec::new(),
            }
        );
        assert_eq!(
            reject(&HandshakeError::NotFollower, 9, Some(3)),
            Frame::Reject {
                reason: RejectReason::NotFollower,
                epoch: 0,
                leader: None,
                proof: Vec::new(),
            }
        );
    }

    #[test]
    fn empty_secret_or_cluster_refused() {
        assert_eq!(
            HandshakeKeys::new(1, "c", Vec::new()).unwrap_err(),
            KeysError::EmptySecret
        );
        assert_eq!(
            HandshakeKeys::new(1, "", SECRET).unwrap_err(),
            KeysError::EmptyClusterId
        );
        assert!(KeysError::EmptySecret
            .to_string()
            .contains("secret is empty"));
        // Keys built by hand are checked before any proof is made or checked.
        let bad = HandshakeKeys {
            node_id: 1,
            cluster_id: "cluster-a".into(),
            secret: Vec::new(),
        };
        assert_eq!(
            bad.hello(1, &NF, &NL).unwrap_err(),
            HandshakeError::InvalidKeys(KeysError::EmptySecret)
        );
        assert!(bad.welcome(&NL, 0, 0).is_err());
        let hello = leader().hello(1, &NF, &NL).unwrap();
        assert!(matches!(
            bad.check_hello(&NF, 0, None, &hello),
            Err(HandshakeError::InvalidKeys(_))
        ));
        // Debug never shows the secret.
        assert!(!format!("{:?}", leader()).contains("s3cret"));
    }

    #[test]
    fn leader_proof_layout_is_as_documented() {
        // Recompute the documented HMAC input by hand.
        let mut input = Vec::new();
        input.extend_from_slice(b"metawal-leader");
        input.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
        input.extend_from_slice(&NF);
        input.extend_from_slice(&9u32.to_be_bytes());
        input.extend_from_slice(b"cluster-a");
        input.extend_from_slice(&1u64.to_be_bytes());
        input.extend_from_slice(&5u64.to_be_bytes());
        input.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
        input.extend_from_slice(&NL);
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(&input);
        let expected = mac.finalize().into_bytes().to_vec();
        match leader().hello(5, &NF, &NL).unwrap() {
            Frame::Hello { proof, .. } => assert_eq!(proof, expected),
            _ => panic!(),
        }

        let mut input = Vec::new();
        input.extend_from_slice(b"metawal-follower");
        input.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
        input.extend_from_slice(&NL);
        input.extend_from_slice(&9u32.to_be_bytes());
        input.extend_from_slice(b"cluster-a");
        input.extend_from_slice(&2u64.to_be_bytes());
        input.extend_from_slice(&100u64.to_be_bytes());
        input.extend_from_slice(&4u64.to_be_bytes());
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(&input);
        let expected = mac.finalize().into_bytes().to_vec();
        match follower().welcome(&NL, 100, 4).unwrap() {
            Frame::Welcome { proof, .. } => {
                assert_eq!(proof.len(), PROOF_LEN);
                assert_eq!(proof, expected)
            }
            _ => panic!(),
        }
    }
}
