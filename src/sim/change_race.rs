//! The change race: the history the own-epoch barrier of membership
//! changes exists to prevent (Ongaro's single-server change bug, 2015),
//! staged on purpose because random faults never build it.
//!
//! With four voters and a fifth node `l` that is not a member:
//!
//! 0. the leader `a` adds `l` as a learner, and waits until it may
//!    promote it (the add committed, `l` caught up);
//! 1. `a` promotes `l` (`C1`: five voters) and is cut off with
//!    `l` at once: `C1` is on `a` and `l` only, uncommitted;
//! 2. the other three voters elect `b`; the moment `b` wins, `b` and one
//!    of them (`x`) are cut off from the rest, and `b` is asked to remove
//!    the third (`y`, who voted for `b` but holds nothing of its epoch):
//!    `C2` = `{a, b, x}`, whose majority `{b, x}` is on `b`'s side;
//! 3. `a`, `l` and `y` are a majority of `C1`, and `y`'s log is behind
//!    `a`'s: they elect `a` again, which commits `C1`'s offset — where `b`
//!    committed its own entries if it appended `C2` before committing an
//!    entry of its own epoch.
//!
//! With the barrier, `b` refuses `C2` (`LeaderNotReady`) and the race ends
//! harmlessly; with the planted `no-own-epoch-barrier`, two leaders commit
//! different entries at one offset. The cut heals with the next partition
//! fault, or at the end of the run.

use crate::command::NodeId;
use crate::membership::MemberChange;

use super::Simulation;

/// The race between its acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangeRace {
    /// `a` added `l` as a learner; it is promoted (and the race goes on)
    /// once the leader admits it, or the race ends if `a` stops leading.
    AwaitPromotion { a: NodeId, l: NodeId },
    /// `a` appended `C1` and is cut off with `l`; waiting for another
    /// leader among the three others.
    AwaitSecondLeader { a: NodeId, l: NodeId },
    /// `b` won and is cut off with `x`; at the next client event (its
    /// leadership has started by then) it is asked to remove `y`.
    AwaitRemoval { b: NodeId, y: NodeId },
    /// The removal was asked for: the cut holds, with no other fault,
    /// until this virtual time (for `a` to be elected again).
    Hold { until: u64 },
}

impl Simulation {
    /// Whether a race is under way: the random faults wait (client
    /// writes go on) so that its acts play out as staged.
    pub(super) fn change_race_running(&self) -> bool {
        self.change_race.is_some()
    }

    /// Start the race if the cluster is in its opening position: five
    /// nodes, four voters and one learner, a leader, no partition.
    pub(super) fn maybe_start_change_race(&mut self) -> bool {
        if self.change_race.is_some() || self.net.partition().is_some() || self.nodes.len() != 5 {
            return false;
        }
        let n = self.nodes.len() as NodeId;
        let Some(a) = (1..=n).find(|&i| self.node(i).is_leader() && !self.paused(i)) else {
            return false;
        };
        let (voters, learners) = self.members_of(a);
        let outsiders: Vec<NodeId> = (1..=n)
            .filter(|i| !voters.contains(i) && !learners.contains(i))
            .collect();
        let (&[], &[l], 4) = (&learners[..], &outsiders[..], voters.len()) else {
            return false;
        };
        if (1..=n).any(|i| !self.node(i).up) || !self.rng.chance(100) {
            return false;
        }
        let before = self.report.member_changes;
        self.member_change(
            a,
            MemberChange::AddLearner(super::node::sim_member_at(l, self.node(l).directory)),
        );
        if self.report.member_changes == before {
            return false;
        }
        self.log(format!("change race: n{a} adds n{l} as a learner"));
        self.report.change_races += 1;
        self.change_race = Some(ChangeRace::AwaitPromotion { a, l });
        true
    }

    /// Act 1: promote `l` and cut `a` off with it.
    fn promote_and_cut(&mut self, a: NodeId, l: NodeId) {
        if !self.node(a).is_leader() {
            self.change_race = None;
            return;
        }
        let before = self.report.member_changes;
        self.member_change(a, MemberChange::Promote(l));
        if self.report.member_changes == before {
            // Not caught up (or the add not committed) yet: next event.
            return;
        }
        let n = self.nodes.len() as NodeId;
        self.log(format!("change race: n{a} promoted n{l}; cut off with it"));
        let side: Vec<bool> = (1..=n).map(|i| i == a || i == l).collect();
        for (id, c) in self.net.split(side) {
            self.ends_closed(id, &c);
        }
        self.change_race = Some(ChangeRace::AwaitSecondLeader { a, l });
    }

    /// Drive the race: the moment another node leads, cut it off with one
    /// voter; at the next client event, ask it to remove the third.
    pub(super) fn drive_change_race(&mut self) {
        let (a, l) = match self.change_race {
            Some(ChangeRace::AwaitPromotion { a, l }) => {
                self.promote_and_cut(a, l);
                return;
            }
            Some(ChangeRace::AwaitSecondLeader { a, l }) => (a, l),
            Some(ChangeRace::AwaitRemoval { b, y }) => {
                if self.node(b).is_leader()
                    && self.node(b).engine.published().role == crate::engine::node::Role::Leader
                {
                    let t = self.config.election_timeout.as_nanos() as u64;
                    self.change_race = Some(ChangeRace::Hold {
                        until: self.now + 8 * t,
                    });
                    self.log(format!("change race: n{b} is asked to remove n{y}"));
                    self.member_change(b, MemberChange::Remove(y));
                }
                return;
            }
            Some(ChangeRace::Hold { until }) => {
                if self.now >= until {
                    self.change_race = None;
                }
                return;
            }
            None => return,
        };
        if self.net.partition().is_none() {
            // Healed by another fault before a second leader: over.
            self.change_race = None;
            return;
        }
        let n = self.nodes.len() as NodeId;
        let Some(b) = (1..=n).find(|&i| i != a && i != l && self.node(i).is_leader()) else {
            return;
        };
        let others: Vec<NodeId> = (1..=n).filter(|&i| i != a && i != l && i != b).collect();
        let [x, y] = others[..] else {
            return;
        };
        self.log(format!("change race: n{b} leads; cut off with n{x}"));
        let side: Vec<bool> = (1..=n).map(|i| i == b || i == x).collect();
        for (id, c) in self.net.split(side) {
            self.ends_closed(id, &c);
        }
        self.change_race = Some(ChangeRace::AwaitRemoval { b, y });
    }
}
