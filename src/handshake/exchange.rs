//! The replication handshake proper: the follower's `Challenge`, the
//! leader's `Hello`, the follower's `Welcome`, the checks each side makes,
//! and what each side learns ([`ChallengeInfo`], [`HelloInfo`],
//! [`WelcomeInfo`]).
//!
//! Separate from the election connection's exchange (`voter.rs`) and the
//! `Reject` frames (`refusal.rs`), which reuse its `Challenge`.

use hmac::Mac;

use crate::command::NodeId;
use crate::frame::{Frame, PROTOCOL_VERSION};
use crate::membership::DirectoryId;

use super::{nonce_from, HandshakeError, HandshakeKeys, Nonce};

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
    /// The follower's data directory id (proven with the rest).
    pub directory_id: DirectoryId,
}

impl HandshakeKeys {
    /// Follower, step 1: the first frame on a new connection.
    ///
    /// `nonce` must be [`NONCE_LEN`](crate::frame::NONCE_LEN) fresh bytes from a CSPRNG; keep it to
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
    /// `leader_nonce` must be [`NONCE_LEN`](crate::frame::NONCE_LEN) fresh bytes from a CSPRNG; keep
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
    /// [`reject`](super::reject) and close.
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
        let mac = self.follower_mac(
            leader_nonce,
            self.node_id,
            last_offset,
            last_epoch,
            self.directory_id,
        )?;
        Ok(Frame::Welcome {
            node_id: self.node_id,
            last_offset,
            last_epoch,
            directory_id: self.directory_id,
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
        let (node_id, last_offset, last_epoch, directory_id, proof) = match frame {
            Frame::Welcome {
                node_id,
                last_offset,
                last_epoch,
                directory_id,
                proof,
            } => (*node_id, *last_offset, *last_epoch, *directory_id, proof),
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
        self.follower_mac(my_nonce, node_id, last_offset, last_epoch, directory_id)?
            .verify_slice(proof)
            .map_err(|_| HandshakeError::BadProof {
                frame: "Welcome",
                peer: node_id,
            })?;
        Ok(WelcomeInfo {
            last_offset,
            last_epoch,
            directory_id,
        })
    }
}
