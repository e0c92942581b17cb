//! Changing and listing the cluster's members through a node: the calls a
//! broker or the HTTP API makes (`add_learner`, `promote`, `remove`,
//! `members`). Each change goes to the NodeDriver, which has the node
//! engine admit it (`metawal::membership` holds the rules), the store
//! append it, and answers once it commits.
//!
//! A child module of `node.rs` (it sees the handle's private fields).

use std::time::Duration;

use metawal::membership::{Member, MemberChange, MemberRole};
use metawal::NodeId;

use super::Node;
use crate::election::ChangeMembers;
use crate::error::MemberError;
use crate::leader::replicator::GetReplicationStatus;
use crate::members::{MemberStatus, Members};
use crate::shared::Role;
use crate::store::ToReplicator;

impl Node {
    /// Leader: add `member` as a learner — replicated to and fsyncing like
    /// a voter, counted for nothing — under an id nobody holds. Its
    /// replication address must be `IP:port`. Returns the offset of the
    /// change once it is committed.
    pub async fn add_learner(&self, member: Member) -> Result<u64, MemberError> {
        if crate::members::socket_addr(&member).is_none() {
            return Err(MemberError::BadAddress {
                addr: member.replication_addr,
            });
        }
        self.change_members(MemberChange::AddLearner(member), Duration::ZERO)
            .await
    }

    /// Leader: make learner `id` a voter, once it is caught up (its
    /// acknowledged offset near the leader's log end and heard within the
    /// election timeout), waiting up to `catch_up_wait` for that (at most
    /// [`crate::MAX_PROMOTE_WAIT`]). Returns the offset of the change once
    /// it is committed by a majority of the new voters.
    pub async fn promote(&self, id: NodeId, catch_up_wait: Duration) -> Result<u64, MemberError> {
        let wait = catch_up_wait.min(crate::members::MAX_PROMOTE_WAIT);
        self.change_members(MemberChange::Promote(id), wait).await
    }

    /// Leader: remove member `id` (a learner or a voter, never the leader
    /// itself: transfer the leadership first, then remove the old leader
    /// from the new one). Returns the offset of the change once committed.
    pub async fn remove(&self, id: NodeId) -> Result<u64, MemberError> {
        self.change_members(MemberChange::Remove(id), Duration::ZERO)
            .await
    }

    async fn change_members(
        &self,
        change: MemberChange,
        catch_up_wait: Duration,
    ) -> Result<u64, MemberError> {
        let Some(driver) = self.driver() else {
            return Err(MemberError::ShuttingDown);
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        // Committing takes a round of replication; an election in between
        // ends the wait with `LeadershipLost`.
        let commit_wait = self.config.replication.request_timeout;
        driver
            .send(ChangeMembers {
                change,
                catch_up_wait,
                commit_wait,
                done,
            })
            .await
            .map_err(|_| MemberError::ShuttingDown)?;
        answer.await.map_err(|_| MemberError::ShuttingDown)?
    }

    /// The membership in force in this node's log, now (no message sent).
    pub fn members_in_force(&self) -> std::sync::Arc<metawal::membership::Membership> {
        self.shared.membership().0
    }

    /// The members as this node knows them: the membership in force in its
    /// log, whether a change is under way, and on the leader how far each
    /// member is.
    pub async fn members(&self) -> Members {
        let (membership, pending_offset) = self.shared.membership();
        // The driver notes a commit at its next input; the commit point is
        // read here, so a change committed since is not shown as pending.
        let commit = self.progress_rx.borrow().commit;
        let pending_offset = pending_offset.filter(|&o| o > commit);
        let leading = self.shared.role() == Role::Leader;
        let replication = if leading {
            self.store
                .send(ToReplicator(GetReplicationStatus))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let log_end = replication.as_ref().map(|r| r.log_end);
        let now = std::time::Instant::now();
        let heard: std::collections::BTreeMap<NodeId, std::time::Duration> = if leading {
            self.shared
                .followers_heard()
                .into_iter()
                .map(|(id, at)| (id, now.saturating_duration_since(at)))
                .collect()
        } else {
            Default::default()
        };
        let status = |m: &Member, role: MemberRole| {
            let (acked_offset, caught_up) = match &replication {
                None => (None, None),
                Some(_) if m.node_id == self.node_id => (log_end, Some(true)),
                Some(r) => match r.followers.iter().find(|f| f.peer == m.node_id) {
                    Some(f) => (
                        Some(f.acked_offset),
                        Some(f.connected && f.lag <= crate::election::PROMOTE_MAX_LAG_ENTRIES),
                    ),
                    None => (None, Some(false)),
                },
            };
            let heard_ago = if !leading {
                None
            } else if m.node_id == self.node_id {
                Some(std::time::Duration::ZERO)
            } else {
                heard.get(&m.node_id).copied()
            };
            MemberStatus {
                member: m.clone(),
                role,
                acked_offset,
                caught_up,
                heard_ago,
            }
        };
        Members {
            node_id: self.node_id,
            leader: self.leader(),
            log_end,
            voters: membership
                .voters()
                .map(|m| status(m, MemberRole::Voter))
                .collect(),
            learners: membership
                .learners()
                .map(|m| status(m, MemberRole::Learner))
                .collect(),
            pending_offset,
        }
    }
}
