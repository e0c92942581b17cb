//! The candidate's and leader's side of the election engine: the timer
//! (a follower's timeout starts a pre-vote, a leader's is check-quorum),
//! the rounds (pre-vote, vote, win) and the role changes (follower, a
//! higher epoch).
//!
//! Why a file of its own: these are the transitions between roles, apart
//! from the inputs that trigger them (`election.rs`) and the voter's
//! answers (`election_vote.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::vote::AfterPersist;
use crate::command::NodeId;
use crate::engine::election::{ElectionAction, ElectionEngine, ElectionMsg, ElectionRole, LastLog};
use crate::membership::DirectoryId;

impl ElectionEngine {
    pub(super) fn on_tick(&mut self, now: Instant, log: LastLog) {
        match self.role {
            ElectionRole::Leader => {
                // Check-quorum: heard from a majority (itself counted)
                // within T?
                let t = self.config.election_timeout;
                let live = 1 + self
                    .heard
                    .values()
                    .filter(|&&at| now.saturating_duration_since(at) < t)
                    .count();
                if live < self.majority() {
                    tracing::warn!(
                        node = self.node,
                        epoch = self.epoch,
                        live,
                        "leader has not heard from a majority within the election timeout; stepping down"
                    );
                    self.become_follower(now, None);
                }
                self.deadline = now + t / 4;
            }
            // A learner, or a node removed from the voters, never stands:
            // it waits for a leader to replicate to it.
            _ if now >= self.deadline && !self.is_voter() => self.reset_timeout(now),
            _ if now >= self.deadline => self.start_pre_vote(now, log),
            _ => {}
        }
    }

    pub(super) fn broadcast(&mut self, msg: ElectionMsg) {
        let peers: Vec<NodeId> = self
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.node)
            .collect();
        for to in peers {
            self.actions.push_back(ElectionAction::Send { to, msg });
        }
    }

    pub(super) fn start_pre_vote(&mut self, now: Instant, log: LastLog) {
        self.role = ElectionRole::PreCandidate;
        self.pre_votes += 1;
        self.leader = None;
        self.granted = BTreeSet::from([self.node]);
        self.reset_timeout(now);
        tracing::debug!(
            node = self.node,
            epoch = self.epoch + 1,
            "election timeout: asking for pre-votes"
        );
        if self.granted_quorum() {
            self.start_vote(now, false);
            return;
        }
        self.broadcast(ElectionMsg::PreVote {
            epoch: self.epoch + 1,
            last_epoch: log.0,
            last_offset: log.1,
        });
    }

    /// Stand in `epoch + 1`: vote for itself, and once that is on disk ask
    /// for votes.
    pub(super) fn start_vote(&mut self, now: Instant, transfer: bool) {
        self.role = ElectionRole::Candidate;
        self.epoch += 1;
        self.voted_for = Some(self.node);
        self.leader = None;
        self.leader_contact = None;
        self.granted = BTreeSet::from([self.node]);
        self.elections += 1;
        self.reset_timeout(now);
        tracing::info!(
            node = self.node,
            epoch = self.epoch,
            "standing for election"
        );
        // The requests carry the log as fenced at this epoch, so they are
        // built once the vote is on disk.
        self.persist(vec![AfterPersist::RequestVotes {
            epoch: self.epoch,
            transfer,
        }]);
        // A single voter wins on its own vote. `BecomeLeader` is queued
        // after the `PersistVote`, and shells carry actions out in order
        // (the Elector one at a time), so it leads only once that vote is
        // on disk.
        if self.granted_quorum() {
            self.win(now);
        }
    }

    pub(super) fn win(&mut self, now: Instant) {
        self.role = ElectionRole::Leader;
        self.leader = Some(self.node);
        // Check-quorum counts from the win: every follower has `T` to be
        // heard from.
        self.heard = self
            .voters
            .iter()
            .filter(|&&v| v != self.node)
            .map(|&v| (v, now))
            .collect();
        self.deadline = now + self.config.election_timeout / 4;
        tracing::info!(node = self.node, epoch = self.epoch, "won the election");
        self.actions
            .push_back(ElectionAction::BecomeLeader { epoch: self.epoch });
    }

    pub(super) fn become_follower(&mut self, now: Instant, leader: Option<NodeId>) {
        let was = self.role;
        self.role = ElectionRole::Follower;
        self.leader = leader;
        self.granted.clear();
        self.heard.clear();
        self.reset_timeout(now);
        if was == ElectionRole::Leader || was == ElectionRole::Candidate {
            self.actions.push_back(ElectionAction::StepDown {
                epoch: self.epoch,
                leader,
            });
        }
    }

    /// Move to a higher `epoch` without voting (persisted).
    pub(super) fn move_to_epoch(&mut self, now: Instant, epoch: u64) {
        debug_assert!(epoch > self.epoch);
        self.epoch = epoch;
        self.voted_for = None;
        self.leader = None;
        // The leader heard was the old epoch's: it no longer keeps this
        // node from granting (pre-)votes in the new one.
        self.leader_contact = None;
        if self.role != ElectionRole::Follower {
            self.become_follower(now, None);
        }
        self.persist(Vec::new());
    }

    /// The voter set in force is now `voters`. The leader forgets when it
    /// heard nodes that no longer vote (check-quorum and reads count
    /// voters only); a candidate or pre-candidate that is no longer a
    /// voter gives up its round; a leader that is no longer a voter steps
    /// down (it cannot be: a leader is never removed, it transfers first —
    /// this is the fence if that rule is ever broken).
    pub(super) fn set_voters(&mut self, now: Instant, voters: BTreeMap<NodeId, DirectoryId>) {
        self.voters = voters.keys().copied().collect();
        self.directories = voters
            .into_iter()
            .filter(|(_, d)| !d.is_unknown())
            .collect();
        let voters = &self.voters;
        self.heard.retain(|id, _| voters.contains(id));
        if !self.is_voter() && self.role != ElectionRole::Follower {
            tracing::info!(
                node = self.node,
                epoch = self.epoch,
                role = ?self.role,
                "no longer a voter: following"
            );
            self.become_follower(now, None);
        }
    }
}
