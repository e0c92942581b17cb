//! The Replicator following the membership in force: links opened to the
//! members added and closed to those removed, the tracker told which
//! members count ([`SetMembers`]), and the facts a change is admitted on
//! ([`GetChangeFacts`]).
//!
//! A child module of `replicator.rs` (it sees the Replicator's private
//! state). The rules are the core's (`metawal::membership::admit_change`);
//! this file only reports and follows.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use metawal::engine::LeaderInput;
use metawal::membership::{DirectoryId, LearnerProgress, Membership};
use metawal::NodeId;

use super::Replicator;
use crate::leader::link::StopLink;

/// The membership in force changed (an entry appended, or reverted):
/// replicate to its members and count its voters from now on. The store
/// sends it before the entry that puts it in force, so the tracker counts
/// that entry by the new voters.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetMembers(pub Arc<Membership>);

/// What the leader knows when it admits a change.
#[derive(Debug, Clone)]
pub(crate) struct ChangeFacts {
    pub commit: u64,
    pub epoch_start: u64,
    pub last_offset: u64,
    /// Each member's progress (never this node's).
    pub progress: BTreeMap<NodeId, LearnerProgress>,
}

/// Ask for [`ChangeFacts`].
#[derive(Message)]
#[rtype(result = "ChangeFacts")]
pub(crate) struct GetChangeFacts;

/// Every member but `me`, by its replication address (one that is not an
/// `IP:port` cannot be connected to, and is left out with a warning).
pub(super) fn peer_addrs(me: NodeId, m: &Membership) -> BTreeMap<NodeId, SocketAddr> {
    m.members()
        .filter(|(member, _)| member.node_id != me)
        .filter_map(|(member, _)| match crate::members::socket_addr(member) {
            Some(addr) => Some((member.node_id, addr)),
            None => {
                tracing::warn!(node = me, peer = member.node_id, addr = %member.replication_addr, "member's replication address is not IP:port; not replicating to it");
                None
            }
        })
        .collect()
}

/// The voters and the learners of `m`, by id.
pub(super) fn ids(m: &Membership) -> (Vec<NodeId>, Vec<NodeId>) {
    (
        m.voter_ids().collect(),
        m.learners().map(|l| l.node_id).collect(),
    )
}

impl Handler<SetMembers> for Replicator {
    type Result = ();

    fn handle(&mut self, msg: SetMembers, ctx: &mut Context<Self>) {
        if *msg.0 == *self.membership {
            return;
        }
        let wanted = peer_addrs(self.node, &msg.0);
        let gone: Vec<NodeId> = self
            .links
            .keys()
            .copied()
            .filter(|p| wanted.get(p) != self.peers.get(p))
            .collect();
        for peer in gone {
            if let Some(slot) = self.links.remove(&peer) {
                tracing::info!(
                    node = self.node,
                    peer,
                    epoch = self.epoch,
                    "member removed (or moved); closing its link"
                );
                // Delivered even if its mailbox is full now (the send
                // waits for room): a removed member's link must stop.
                let stop = slot.addr.send(StopLink);
                ctx.spawn(
                    async move {
                        // Err: the link is gone already.
                        let _ = stop.await;
                    }
                    .into_actor(self),
                );
            }
        }
        self.peers = wanted;
        self.membership = msg.0;
        let (voters, learners) = ids(&self.membership);
        self.input(LeaderInput::SetMembers { voters, learners }, ctx);
        let new: Vec<NodeId> = self
            .peers
            .keys()
            .copied()
            .filter(|p| !self.links.contains_key(p))
            .collect();
        for peer in new {
            tracing::info!(
                node = self.node,
                peer,
                epoch = self.epoch,
                "replicating to a new member"
            );
            self.start_link(peer, 0, ctx);
        }
    }
}

impl Replicator {
    /// `peer`'s handshake proved `directory_id`: kept for the next change
    /// (which pins it where the membership does not know it), and checked
    /// against the membership now.
    pub(super) fn identified(&mut self, peer: NodeId, directory_id: DirectoryId) {
        self.directories.insert(peer, directory_id);
        let named = self
            .membership
            .member(peer)
            .map(|(m, _)| m.directory_id)
            .filter(|d| !d.is_unknown());
        if let Some(named) = named.filter(|&d| d != directory_id) {
            // Replication goes on (what it acknowledges it holds); its
            // votes do not count until it is removed and added again.
            tracing::warn!(
                node = self.node,
                peer,
                epoch = self.epoch,
                directory_id = %directory_id,
                member_directory_id = %named,
                "follower's data directory is not the one the membership names (a wiped or replaced disk under its id): its votes do not count; remove it (metawalctl member remove) and add it again"
            );
        }
    }
}

impl Handler<GetChangeFacts> for Replicator {
    type Result = MessageResult<GetChangeFacts>;

    fn handle(&mut self, _msg: GetChangeFacts, _ctx: &mut Context<Self>) -> Self::Result {
        let tracker = self.engine.tracker();
        let now = Instant::now();
        let heard: BTreeMap<NodeId, Instant> = self.shared.followers_heard().into_iter().collect();
        let recent = self.config.election_timeout;
        let progress = self
            .peers
            .keys()
            .filter_map(|&p| {
                let acked = tracker.durable_of(p)?;
                let heard_recently = heard
                    .get(&p)
                    .is_some_and(|&at| now.saturating_duration_since(at) <= recent);
                Some((
                    p,
                    LearnerProgress {
                        acked,
                        heard_recently,
                        directory_id: self
                            .directories
                            .get(&p)
                            .copied()
                            .unwrap_or(DirectoryId::UNKNOWN),
                    },
                ))
            })
            .collect();
        MessageResult(ChangeFacts {
            commit: tracker.commit(),
            epoch_start: tracker.epoch_start(),
            last_offset: tracker.log_end(),
            progress,
        })
    }
}
