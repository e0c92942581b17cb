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
//!
//! The module is split by concept: [`HandshakeKeys`] and the shared checks
//! here; the errors in `error.rs`; the HMAC input layouts in `proof.rs`;
//! the replication exchange (`Challenge`, `Hello`, `Welcome`) in
//! `exchange.rs`; the election connection's in `voter.rs`; and the
//! `Reject` frames in `refusal.rs`.

use hmac::Hmac;
use sha2::Sha256;

use crate::command::NodeId;
use crate::frame::{NONCE_LEN, PROTOCOL_VERSION};
use crate::membership::DirectoryId;

mod error;
mod exchange;
mod proof;
mod refusal;
mod voter;

pub use error::{HandshakeError, KeysError, PeerIdentity};
pub use exchange::{ChallengeInfo, HelloInfo, WelcomeInfo};
pub use refusal::reject;

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

/// What both sides need to authenticate each other.
#[derive(Clone)]
pub struct HandshakeKeys {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster id both sides must share.
    pub cluster_id: String,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// This node's data directory id, sent (and proven) in its `Welcome`
    /// ([`DirectoryId::UNKNOWN`] unless set with
    /// [`HandshakeKeys::with_directory`]).
    pub directory_id: DirectoryId,
}

impl std::fmt::Debug for HandshakeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeKeys")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("directory_id", &self.directory_id)
            .field("secret", &"<redacted>")
            .finish()
    }
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
            directory_id: DirectoryId::UNKNOWN,
        };
        keys.validate()?;
        Ok(keys)
    }

    /// These keys, for a node whose data directory id is `directory_id`.
    pub fn with_directory(mut self, directory_id: DirectoryId) -> HandshakeKeys {
        self.directory_id = directory_id;
        self
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
}

#[cfg(test)]
mod tests;
