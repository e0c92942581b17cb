//! Reading the node through its actors: a copy of the applied state, what
//! was applied with its digest, a linearizable read index (confirmed by a
//! round of follower answers), and the node's status.
//!
//! A child module of `node.rs` (it sees the handle's private fields),
//! separate because the reads are one concern of their own.

use metawal::MetadataState;

use super::Node;
use crate::error::{MetricsError, ReadError, StateError, StatusError};
use crate::follower::listener::GetPosition;
use crate::leader::replicator::GetReplicationStatus;
use crate::shared::Role;
use crate::status::NodeStatus;
use crate::store::{Applied, GetApplied, GetState, ProbeFollowers, ToReplicator};

impl Node {
    /// The commit point this node knows now (the highest offset it knows
    /// committed; on a follower it may trail the leader's by a round of
    /// replication). No message is sent.
    pub fn commit_point(&self) -> u64 {
        self.progress_rx.borrow().commit
    }

    /// A copy of the applied state, consistent at its applied offset (a
    /// base to resume a [`ChangeStream`](crate::changes::ChangeStream) from
    /// after [`crate::ChangesError::Compacted`]).
    pub async fn state(&self) -> Result<MetadataState, StateError> {
        self.store
            .send(GetState)
            .await
            .map(|s| *s)
            .map_err(|_| StateError::Stopped { node: self.node_id })
    }

    /// Confirm, within `timeout`, that this node still leads and has
    /// applied every entry committed before the call (a read index, see
    /// [`metawal::engine::read_index`]): a read of the
    /// [`MetadataView`](crate::view::MetadataView) after it returns is
    /// linearizable. Returns the read index. Costs one round of heartbeats
    /// (at most `heartbeat_interval` plus a round trip).
    pub async fn read_index(&self, timeout: std::time::Duration) -> Result<u64, ReadError> {
        use metawal::engine::read_index::{LeaderView, ReadIndex, ReadIndexState};
        let deadline = tokio::time::Instant::now() + timeout;
        // Counted over the voters in force (learners answer too, and count
        // for nothing).
        let membership = self.shared.membership().0;
        let voters = membership.voter_count();
        let look = || LeaderView {
            leading: self.shared.role() == Role::Leader,
            epoch: self.shared.epoch(),
            applied_offset: self.view.applied_offset(),
            applied_epoch: self.view.applied_epoch(),
        };
        let mut applied = self.view.applied_watch();
        let read = loop {
            let view = look();
            if !view.leading {
                return Err(ReadError::NotLeader {
                    node: self.node_id,
                    leader: self.shared.leader(),
                });
            }
            let commit = self.progress_rx.borrow().commit;
            if let Some(read) =
                ReadIndex::maybe_start(std::time::Instant::now(), view, commit, voters)
            {
                break read;
            }
            // The leader's own LeaderChange is not applied yet.
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                // The store stopped (the node is shutting down): it no
                // longer leads, and waiting would spin.
                Ok(Err(_)) => return Err(ReadError::LeadershipLost),
                Err(_) => return Err(ReadError::Timeout(timeout)),
            }
        };
        // Ask every follower for a fresh answer now rather than at its next
        // heartbeat interval. Best effort: if the store's mailbox is full,
        // the links' periodic probes answer within one interval.
        let _ = self.store.try_send(ProbeFollowers);
        // Woken by the events the answer depends on: a follower's answer,
        // an apply, a change of leadership; bounded by the deadline.
        let waiter = self.shared.heard_waiter();
        let mut leadership = self.shared.watch_leadership();
        loop {
            let heard = waiter.notified();
            tokio::pin!(heard);
            heard.as_mut().enable();
            let answers = self.shared.followers_heard();
            let answers = answers
                .into_iter()
                .filter(|&(p, _)| p != self.node_id && membership.is_voter(p))
                .map(|(_, t)| t);
            match read.check(look(), answers) {
                ReadIndexState::Ready(index) => return Ok(index),
                ReadIndexState::Lost => return Err(ReadError::LeadershipLost),
                ReadIndexState::Waiting => {}
            }
            let woken = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    _ = &mut heard => Ok(()),
                    r = applied.changed() => r,
                    r = leadership.changed() => r,
                }
            });
            match woken.await {
                Ok(Ok(())) => {}
                // A watch's sender is gone (the node is shutting down): it
                // no longer leads, and waiting would spin.
                Ok(Err(_)) => return Err(ReadError::LeadershipLost),
                Err(_) => return Err(ReadError::Timeout(timeout)),
            }
        }
    }

    /// What the store has applied, with the state's digest.
    pub async fn applied(&self) -> Result<Applied, StateError> {
        self.store
            .send(GetApplied)
            .await
            .map_err(|_| StateError::Stopped { node: self.node_id })
    }

    /// The node's status (and its followers', on the leader).
    pub async fn status(&self) -> Result<NodeStatus, StatusError> {
        let (election_role, voted_for, elections) = self.shared.election();
        let role = self.shared.role();
        let mut status = NodeStatus {
            node_id: self.node_id,
            role,
            election_role,
            epoch: self.shared.epoch(),
            leader: if role == Role::Leader {
                Some(self.node_id)
            } else {
                self.shared.leader()
            },
            voted_for,
            since_leader_contact: if role == Role::Leader {
                Some(std::time::Duration::ZERO)
            } else {
                self.shared.leader_contact().map(|t| t.elapsed())
            },
            elections,
            pre_votes: self.shared.pre_votes(),
            log_end: 0,
            last_log_epoch: 0,
            durable: 0,
            commit: 0,
            applied_offset: self.view.applied_offset(),
            isr_len: 0,
            followers: Vec::new(),
        };
        // A Replicator that fail-stopped answers nothing: the listener's
        // view of the log (the progress channel) stands in.
        let replication = self
            .store
            .send(ToReplicator(GetReplicationStatus))
            .await
            .ok()
            .flatten();
        match replication {
            Some(s) => {
                status.log_end = s.log_end;
                // The leader's last entry is its own epoch's LeaderChange
                // or later.
                status.last_log_epoch = status.epoch;
                status.durable = s.durable;
                status.commit = s.commit;
                status.isr_len = self.shared.isr_len();
                status.followers = s.followers;
            }
            None => {
                let p = self
                    .listener
                    .send(GetPosition)
                    .await
                    .map_err(|_| StatusError::Stopped { node: self.node_id })?;
                status.log_end = p.log_end;
                status.last_log_epoch = self.shared.last_log().0;
                status.durable = p.durable;
                status.commit = p.commit;
            }
        }
        Ok(status)
    }

    /// The node's metrics in the OpenMetrics text format: what `GET
    /// /metrics` serves, for an embedder that exposes them through its own
    /// endpoint. The gauges (role, epoch, offsets, ISR, followers' lag, the
    /// members) are read from [`Node::status`] now; the counters and
    /// histograms are the node's own (the series: docs/api.md, `GET /metrics`).
    pub async fn metrics_text(&self) -> Result<String, MetricsError> {
        let status = self.status().await?;
        let mut scrape: crate::metrics::Scrape = (&status).into();
        let members = self.members_in_force();
        scrape.voters = members.voter_count() as u64;
        scrape.learners = members.learners().count() as u64;
        self.metrics()
            .encode(&scrape)
            .map_err(|_| MetricsError::Encode)
    }
}
