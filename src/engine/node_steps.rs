//! The role changes the election decides: step-up (release the log,
//! persist the epoch, start leading), step-down (publish follower first,
//! then stop leading and follow), and the rollback of a failed step-up.
//!
//! A child module of `node.rs` (it sees the engine's private state),
//! separate so that `node.rs` holds the engine's inputs and published facts,
//! and this file how a decision starts to change the node's role.

use std::time::Instant;

use super::{ElectionInput, NodeAction, NodeEngine, NodePlant, State, StepUpStep};
use crate::command::NodeId;

impl NodeEngine {
    /// The election won `epoch`: step up (see the module docs).
    pub(super) fn step_up(&mut self, now: Instant, epoch: u64) {
        if self.state != State::Following || epoch < self.epoch {
            // Stopping, failed, or the epoch moved on: the win is not taken
            // and the election gives the epoch up.
            self.election.handle(now, ElectionInput::Resign, (0, 0));
            return;
        }
        self.state = State::SteppingUp {
            epoch,
            step: StepUpStep::ReleaseLog,
            commit: 0,
        };
        self.actions.push_back(NodeAction::ReleaseLog { epoch });
    }

    /// The election says this node follows in `epoch` (`leader` if
    /// known): a leader publishes that first (proposals are refused from
    /// that instant), then stops leading and follows.
    pub(super) fn step_down(&mut self, now: Instant, epoch: u64, leader: Option<NodeId>) {
        let leader = leader.filter(|&l| l != self.node);
        if epoch > self.epoch || (epoch == self.epoch && leader.is_some()) {
            self.epoch = epoch;
            self.leader = leader;
        }
        if self.leader == Some(self.node) {
            self.leader = None;
        }
        if let State::Leading { .. } = self.state {
            self.state = State::Stopping { keep_commit: true };
            self.publish(now);
            self.actions.push_back(NodeAction::StopLeading);
        }
        if let Some(l) = leader {
            self.transfer_seen_leader(l);
        }
    }

    /// A step-up step failed: undo what was started, follow with what is
    /// on disk, and give the epoch up.
    pub(super) fn roll_back(&mut self, now: Instant, _step: StepUpStep, current: Option<u64>) {
        if let Some(c) = current.filter(|&c| c > self.epoch) {
            self.epoch = c;
        }
        if self.leader == Some(self.node) {
            self.leader = None;
        }
        self.election.handle(now, ElectionInput::Resign, (0, 0));
        if let Some(c) = current {
            self.election
                .handle(now, ElectionInput::HigherEpoch { epoch: c }, (0, 0));
        }
        if self.plant == Some(NodePlant::SkipRollback) {
            self.state = State::Following;
            self.publish(now);
            self.drain_election(now);
            return;
        }
        self.state = State::Stopping { keep_commit: false };
        self.publish(now);
        self.actions.push_back(NodeAction::StopLeading);
    }
}
