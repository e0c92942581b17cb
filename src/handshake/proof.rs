//! The HMAC-SHA256 proofs: the exact input layout of each kind (leader,
//! follower, reject, voter, voter-accept), each under its own
//! domain-separation tag.
//!
//! Separate from the exchanges that send and verify them, so the byte
//! layouts `docs/protocol.md` documents are in one place.

use hmac::Mac;

use crate::command::NodeId;
use crate::frame::RejectReason;
use crate::membership::DirectoryId;

use super::{
    HandshakeError, HandshakeKeys, HmacSha256, KeysError, FOLLOWER_TAG, LEADER_TAG, REJECT_TAG,
    VOTER_ACCEPT_TAG, VOTER_TAG,
};

/// Appends `field` to `mac` with a u32 big-endian length before it.
fn put_var(mac: &mut HmacSha256, field: &[u8]) {
    mac.update(&(field.len() as u32).to_be_bytes());
    mac.update(field);
}

impl HandshakeKeys {
    pub(super) fn mac(&self) -> Result<HmacSha256, HandshakeError> {
        self.validate()?;
        // HMAC takes keys of any length; the error cannot happen.
        HmacSha256::new_from_slice(&self.secret)
            .map_err(|_| HandshakeError::InvalidKeys(KeysError::EmptySecret))
    }

    /// HMAC(secret, tag ‖ lp(nonce) ‖ lp(cluster_id) ‖ …): the prefix of
    /// every proof, each kind with its own tag, over the other side's nonce.
    pub(super) fn tagged_mac(
        &self,
        tag: &[u8],
        nonce: &[u8],
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.mac()?;
        mac.update(tag);
        put_var(&mut mac, nonce);
        put_var(&mut mac, self.cluster_id.as_bytes());
        Ok(mac)
    }

    /// HMAC(secret, "metawal-leader" ‖ lp(follower_nonce) ‖ lp(cluster_id)
    /// ‖ leader_id BE ‖ epoch BE ‖ lp(leader_nonce)).
    pub(super) fn leader_mac(
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
    /// ‖ node_id BE ‖ last_offset BE ‖ last_epoch BE ‖ directory_id).
    pub(super) fn follower_mac(
        &self,
        leader_nonce: &[u8],
        node_id: NodeId,
        last_offset: u64,
        last_epoch: u64,
        directory_id: DirectoryId,
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.tagged_mac(FOLLOWER_TAG, leader_nonce)?;
        mac.update(&node_id.to_be_bytes());
        mac.update(&last_offset.to_be_bytes());
        mac.update(&last_epoch.to_be_bytes());
        mac.update(&directory_id.0);
        Ok(mac)
    }

    /// HMAC(secret, "metawal-reject" ‖ lp(leader_nonce) ‖ lp(cluster_id) ‖
    /// node_id BE ‖ reason u8 ‖ epoch BE ‖ leader BE (0: none)).
    pub(super) fn reject_mac(
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
    pub(super) fn voter_mac(
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
    pub(super) fn voter_accept_mac(
        &self,
        voter_nonce: &[u8],
        node_id: NodeId,
    ) -> Result<HmacSha256, HandshakeError> {
        let mut mac = self.tagged_mac(VOTER_ACCEPT_TAG, voter_nonce)?;
        mac.update(&node_id.to_be_bytes());
        Ok(mac)
    }
}
