//! The `Reject` frames a follower answers a refused handshake with:
//! unsigned when the refusal came before the peer's proof verified (so an
//! unauthenticated peer learns nothing), signed over the leader's nonce
//! when it came after (so the leader can trust the epoch it names).
//!
//! Separate from the errors (`error.rs`): this is what a refusal becomes
//! on the wire.

use hmac::Mac;

use crate::command::NodeId;
use crate::frame::{Frame, RejectReason};

use super::{nonce_from, HandshakeError, HandshakeKeys, Nonce};

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

impl HandshakeKeys {
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
}
