//! The election connection's handshake: after the accepting node's
//! `Challenge`, the voter's `VoterHello` and the accepting node's
//! `VoterWelcome`, each proving the shared secret over the other's nonce.
//!
//! Separate from the replication exchange (`exchange.rs`): the roles and
//! the frames differ, only the `Challenge` is shared.

use hmac::Mac;

use crate::command::NodeId;
use crate::frame::{Frame, PROTOCOL_VERSION};

use super::{nonce_from, HandshakeError, HandshakeKeys, Nonce};

impl HandshakeKeys {
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
}
