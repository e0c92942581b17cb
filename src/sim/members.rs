//! Membership faults and their invariants.
//!
//! **The fault** ([`Simulation::nemesis_member_change`]): at random steps
//! the leader is asked for one membership change, through the real node
//! engine's `admit_change` (the rules under test) and the real store's
//! admission of the control entry, appended like any other entry: promote
//! a learner, remove a voter (never below a majority of the simulated
//! nodes, so the cluster can still elect after crashes), or add a node
//! that is not a member as a learner. A removed node keeps running: it is
//! no longer replicated to, and must not disrupt the cluster. Changes are
//! refused as often as the rules say (a change in progress, a leader whose
//! epoch has not committed, a learner not caught up) and counted.
//!
//! **The invariants** ([`Simulation::check_member_commit`],
//! [`Simulation::check_one_pending_change`]):
//! - every entry a leader commits is durable on a majority of the voters
//!   in force at its offset (as the leader's membership log says): the
//!   majorities of a changing voter set still intersect;
//! - no log holds more than one membership entry past the highest offset
//!   committed anywhere: one change at a time.
//!
//! At the end of a run only the members of the final leader's membership
//! must converge (see `settle.rs`).

use super::check::Invariant;
use super::node::{sim_member_at, Role};
use super::*;
use crate::command::{Command, Entry};
use crate::engine::store::{Admission, NodeRole};
use crate::membership::{ChangeContext, LearnerProgress, MemberChange};
use crate::sim::PlantedBug;

/// How far behind the leader's last offset a learner may be and still be
/// promoted.
const PROMOTE_MAX_LAG_ENTRIES: u64 = 16;

impl Simulation {
    /// Ask the leader for one membership change (see the module docs).
    pub(super) fn nemesis_member_change(&mut self) {
        let n = self.nodes.len() as NodeId;
        let Some(leader) = (1..=n).find(|&i| self.node(i).is_leader() && !self.paused(i)) else {
            return;
        };
        let (voters, learners) = self.members_of(leader);
        let outsiders: Vec<NodeId> = (1..=n)
            .filter(|i| !voters.contains(i) && !learners.contains(i))
            .collect();
        let keep = self.nodes.len() / 2 + 1;
        let removable: Vec<NodeId> = voters.iter().copied().filter(|&v| v != leader).collect();
        let wiped = self.wiped_voters(leader);
        let change = if let Some(&w) = wiped.first() {
            // What the runbook says: remove the voter whose disk was
            // wiped (it is added again later, as any outsider, with its
            // new directory), and nothing else meanwhile: removing a
            // healthy voter first could leave a set whose majority needs
            // the wiped one's vote, which never counts.
            MemberChange::Remove(w)
        } else if let Some(&l) = learners.first() {
            if self.rng.chance(200) {
                MemberChange::Remove(l)
            } else {
                MemberChange::Promote(l)
            }
        } else if !outsiders.is_empty() && (voters.len() <= keep || self.rng.chance(500)) {
            match self.rng.pick(&outsiders) {
                Some(o) => MemberChange::AddLearner(sim_member_at(o, self.node(o).directory)),
                None => return,
            }
        } else if voters.len() > keep {
            match self.rng.pick(&removable) {
                Some(v) => MemberChange::Remove(v),
                None => return,
            }
        } else {
            return;
        };
        self.member_change(leader, change);
    }

    /// The voters in force on `leader` whose node runs on another directory
    /// than the one the membership names (a wiped disk, `wipe_race.rs`).
    pub(super) fn wiped_voters(&self, leader: NodeId) -> Vec<NodeId> {
        let Some(log) = self.node(leader).engine.membership() else {
            return Vec::new();
        };
        log.latest()
            .voters()
            .filter(|v| v.directory_id != self.node(v.node_id).directory)
            .map(|v| v.node_id)
            .collect()
    }

    /// Ask `leader` for `change` through its node engine's `admit_change`
    /// and, if admitted, append it (counted in the report either way).
    pub(super) fn member_change(&mut self, leader: NodeId, change: MemberChange) {
        let node = self.node(leader);
        let Role::Leader(l) = &node.role else {
            return;
        };
        let tracker = l.engine.tracker();
        let ctx = ChangeContext {
            leader,
            leader_directory: node.directory,
            commit: if self.config.bug == Some(PlantedBug::TwoPendingChanges) {
                node.last_offset()
            } else {
                tracker.commit()
            },
            epoch_start: if self.config.bug == Some(PlantedBug::NoOwnEpochBarrier) {
                0
            } else {
                tracker.epoch_start()
            },
            last_offset: node.last_offset(),
            max_lag_entries: PROMOTE_MAX_LAG_ENTRIES,
        };
        let progress = |id: NodeId| {
            tracker.durable_of(id).map(|acked| LearnerProgress {
                acked,
                heard_recently: l.links.get(&id).is_some_and(|k| k.conn.is_some()),
                directory_id: l
                    .links
                    .get(&id)
                    .map_or(crate::membership::DirectoryId::UNKNOWN, |k| k.directory),
            })
        };
        let admitted = node.engine.admit_change(&change, &ctx, progress);
        let membership = match admitted {
            Ok(m) => m,
            Err(e) => {
                self.report.member_refusals += 1;
                self.log(format!("nemesis: n{leader} refuses {change:?}: {e}"));
                return;
            }
        };
        let adm = Admission {
            role: NodeRole::Leader,
            isr_len: 1,
            min_insync: 1,
        };
        let command = Command::Membership(membership);
        match self.node(leader).store.admit(command, false, true, adm) {
            Ok(admitted) => {
                self.report.member_changes += 1;
                self.log(format!(
                    "nemesis: n{leader} appends {change:?} at {}",
                    admitted.entry.offset
                ));
                self.leader_append(leader, admitted, None);
            }
            Err(e) => self.fail(
                Invariant::Protocol,
                format!("n{leader}: the store refused an admitted membership change: {e}"),
            ),
        }
    }

    /// Leader `id` committed `entries`: each is durable on a majority of
    /// the voters in force when it commits them (the latest membership in
    /// its log: as in Raft, a leader counts every entry by the newest
    /// voter set it holds, committed or not; one change at a time keeps
    /// that set's majorities meeting the previous set's).
    pub(super) fn check_member_commit(&mut self, id: NodeId, entries: &[Entry]) {
        let Some(log) = self.node(id).engine.membership() else {
            return;
        };
        let m = log.latest().clone();
        for e in entries {
            let holders: Vec<NodeId> = m
                .voter_ids()
                .filter(|&v| {
                    let n = self.node(v);
                    n.disk.durable() >= e.offset && n.log.get(e.offset as usize - 1) == Some(e)
                })
                .collect();
            if holders.len() < m.majority() {
                let voters: Vec<NodeId> = m.voter_ids().collect();
                self.fail(
                    Invariant::MemberQuorum,
                    format!(
                        "n{id} committed offset {} held durably by {holders:?} only, of the voters {voters:?} in force",
                        e.offset
                    ),
                );
                return;
            }
        }
    }

    /// No log holds two membership entries past the highest offset
    /// committed anywhere.
    pub(super) fn check_one_pending_change(&mut self, id: NodeId) {
        let committed = self.checker.committed_upto();
        let node = self.node(id);
        let pending: Vec<u64> = node
            .log
            .iter()
            .skip(committed as usize)
            .filter(|e| e.is_membership())
            .map(|e| e.offset)
            .collect();
        if pending.len() > 1 {
            self.fail(
                Invariant::MemberQuorum,
                format!(
                    "n{id} holds membership entries at {pending:?}, more than one past the commit point {committed}"
                ),
            );
        }
    }
}
