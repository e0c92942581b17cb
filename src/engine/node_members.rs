//! The membership in force, owned by the node engine, and admitting a
//! change to it.
//!
//! Why here: the voter set decides the election's majorities and the
//! Replicator's, so it has one owner, the same one as the role and the
//! epoch. The log owner reports what its log does (a membership entry
//! appended, a suffix truncated, a commit point); this file keeps the
//! [`MembershipLog`] in step, moves the election to the voters in force,
//! and tells the shell ([`NodeAction::MembershipChanged`]) so the
//! Replicator replicates to the new members and counts the new voters.
//! Admitting a change asks the same log ([`NodeEngine::admit_change`]).

use std::collections::BTreeMap;
use std::time::Instant;

use super::{NodeAction, NodeEngine, State};
use crate::engine::election::{ElectionInput, LastLog};
use crate::engine::store::NodeRole;
use crate::id::NodeId;
use crate::membership::{
    admit_change, ChangeContext, ChangeRefused, DirectoryId, LearnerProgress, MemberChange,
    Membership, MembershipLog,
};

/// The voters of `m` with their directory ids, as the election counts them.
fn voter_directories(m: &Membership) -> BTreeMap<NodeId, DirectoryId> {
    m.voters().map(|v| (v.node_id, v.directory_id)).collect()
}

impl NodeEngine {
    /// Start from `log` (the bootstrap membership, or the one recovered
    /// from the snapshot and the log) instead of the fixed voter set given
    /// to [`NodeEngine::new`]. The election counts its voters from now.
    pub fn with_membership(mut self, log: MembershipLog) -> NodeEngine {
        let voters = voter_directories(log.latest());
        let now = self.now;
        let last = (0, 0);
        self.election
            .handle(now, ElectionInput::VotersChanged { voters }, last);
        // Nothing to do yet: a node that is not a voter only stops standing.
        while self.election.poll_action().is_some() {}
        self.members = Some(log);
        self
    }

    /// The membership log, if this node runs with one.
    pub fn membership(&self) -> Option<&MembershipLog> {
        self.members.as_ref()
    }

    /// Whether a leader may append `change` now, and the membership to
    /// append if so (see [`admit_change`]): only a leader that admits
    /// proposals (not transferring, not stepping) may. `progress` is how
    /// far a learner is, from the Replicator's tracker.
    pub fn admit_change(
        &self,
        change: &MemberChange,
        ctx: &ChangeContext,
        progress: impl Fn(NodeId) -> Option<LearnerProgress>,
    ) -> Result<Membership, ChangeRefused> {
        match self.admission() {
            NodeRole::Leader => {}
            NodeRole::Follower { leader } => return Err(ChangeRefused::NotLeader { leader }),
            NodeRole::Failed | NodeRole::Stopped => {
                return Err(ChangeRefused::NotLeader { leader: None })
            }
        }
        let Some(log) = &self.members else {
            return Err(ChangeRefused::FixedMembership);
        };
        admit_change(log, ctx, change, progress)
    }

    pub(super) fn on_membership_appended(
        &mut self,
        now: Instant,
        offset: u64,
        membership: Membership,
        log: LastLog,
    ) {
        let Some(members) = self.members.as_mut() else {
            return;
        };
        if let Err(e) = members.append(offset, membership) {
            // The log owner reported appends out of order: its bug, and the
            // voter set can no longer be trusted. Fail-stop.
            tracing::error!(node = self.node, offset, error = %e, "membership entry out of order; fail-stop");
            self.fail(now);
            return;
        }
        self.membership_changed(now, log);
    }

    pub(super) fn on_log_truncated(&mut self, now: Instant, after: u64, log: LastLog) {
        let reverted = self
            .members
            .as_mut()
            .is_some_and(|m| m.truncate_suffix(after));
        if reverted {
            self.membership_changed(now, log);
        }
    }

    /// Fold the memberships up to `offset` into the base, but never past
    /// this node's own log end: a follower learns a commit point before it
    /// has the entries up to it, and what it appends later must still be
    /// taken in order.
    pub(super) fn on_committed(&mut self, offset: u64, log: LastLog) {
        if let Some(m) = self.members.as_mut() {
            m.compact(offset.min(log.1));
        }
    }

    /// A snapshot replaced the log up to `offset`: its membership is the
    /// base, and is in force now (told to the shell and the election if it
    /// differs from the one in force before).
    pub(super) fn on_membership_reset(
        &mut self,
        now: Instant,
        offset: u64,
        membership: Membership,
        log: LastLog,
    ) {
        let Some(members) = self.members.as_mut() else {
            return;
        };
        let changed = *members.latest() != membership;
        members.reset(offset, membership);
        if changed {
            self.membership_changed(now, log);
        }
    }

    /// The membership in force changed: tell the shell, and the election
    /// (now, or after the step that is out, in order with what waits).
    fn membership_changed(&mut self, now: Instant, log: LastLog) {
        let Some(members) = &self.members else {
            return;
        };
        let latest = members.latest().clone();
        let voters = voter_directories(&latest);
        self.actions
            .push_back(NodeAction::MembershipChanged(latest));
        if matches!(self.state, State::Stopped | State::Failed) {
            return;
        }
        let input = ElectionInput::VotersChanged { voters };
        if self.busy() {
            // Never dropped: the queue's bound is for messages, which the
            // election tolerates losing; a voter set change it must see.
            // One waits at most (the queue stays within its bound plus
            // one): a newer set replaces the waiting one in its place, so
            // everything deferred after it is taken under the set in force
            // now, as the log says.
            let waiting = self
                .deferred
                .iter_mut()
                .find(|(e, _)| matches!(e, ElectionInput::VotersChanged { .. }));
            match waiting {
                Some(slot) => *slot = (input, log),
                None => self.deferred.push_back((input, log)),
            }
            return;
        }
        self.feed_election(now, input, log);
        self.drain_election(now);
    }
}
