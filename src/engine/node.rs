//! The node engine: what a node *is* — follower, leader, stepping up or
//! down, stopped or failed — decided in one place.
//!
//! It composes the [`ElectionEngine`] (who should lead) with the role
//! change that follows a decision, and is the only writer of the node's
//! role, epoch and published leader: every change leaves it as one
//! [`NodeAction::Publish`] of a whole [`Published`] value, so a reader never
//! sees a torn pair. Why one engine: a role change is a sequence of steps on
//! other parts (the log owner, the disk, the Replicator, the store), any of
//! which can fail, and while it runs nothing else may be decided on a
//! half-changed node. Written as awaits in an actor, each such rule existed
//! once per caller; here each is a state, and the unit tests and the
//! simulation drive the same code the actors drive.
//!
//! The steps, each an action the shell carries out and answers:
//!
//! - **step-up** (the election won `epoch`): [`NodeAction::ReleaseLog`]
//!   (end the follower's sessions; the log to lead with) →
//!   [`NodeAction::PersistEpoch`] (meta: `epoch`, leader = this node; the
//!   role is published *after* it is on disk) →
//!   [`NodeAction::StartLeading`] (the Replicator and the store; the store
//!   appends `LeaderChange`) → leading.
//! - **rollback** (any step-up step failed): [`NodeAction::StopLeading`] →
//!   [`NodeAction::ResumeFollowing`] with the log and meta as on disk, and
//!   the election resigns the epoch.
//! - **step-down** (check-quorum, a higher epoch, a transfer): publish
//!   follower first (proposals are refused from that instant), then
//!   [`NodeAction::StopLeading`] → [`NodeAction::ResumeFollowing`].
//! - **transfer**: admission stops, [`NodeAction::WatchCatchUp`] until the
//!   target has the whole log, then the election tells it to stand, and
//!   the transfer ends when the target is known to lead — or when its
//!   deadline passes ([`NodeAction::TransferEnded`]).
//! - **shutdown**: a state; a stopping node never takes a leadership it
//!   wins meanwhile, and a leader resigns first.
//!
//! While a step or a vote write is out, every other input waits in a
//! bounded queue ([`DEFERRED_INPUTS_MAX`]; beyond it an input is dropped,
//! which the election tolerates as a lost message) and is taken, in order,
//! once the step is answered.
//!
//! Liveness is decided here too: the leader this node names to a client
//! (`NotLeader { leader }`) is published only while that leader has been
//! heard from within the election timeout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::election::{ElectionAction, ElectionConfig, ElectionEngine, ElectionInput, LastLog};
use super::store::NodeRole;
use crate::command::NodeId;

pub use super::node_io::{
    NodeAction, NodeInput, NodePlant, Published, Role, StepUpStep, TransferFailed,
};

/// Election inputs that may wait while a step is out; past this one is
/// dropped (a lost election message: the election retries). Ticks never
/// wait (the engine looks again after the step).
pub const DEFERRED_INPUTS_MAX: usize = 256;

// The role changes the election decides, and a leadership transfer: child
// modules, so they see the engine's private state.
#[path = "node_steps.rs"]
mod steps;
#[path = "node_transfer.rs"]
mod transfer;
// The membership in force, and admitting a change to it.
#[path = "node_members.rs"]
mod members;

/// Where the node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Following,
    SteppingUp {
        epoch: u64,
        step: StepUpStep,
        commit: u64,
    },
    Leading {
        epoch: u64,
    },
    /// Stopping what the leadership (or a failed step-up) started.
    Stopping {
        keep_commit: bool,
    },
    /// Waiting for the log owner to follow again.
    Resuming,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferPhase {
    CatchingUp,
    Electing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Transfer {
    to: NodeId,
    phase: TransferPhase,
    deadline: Instant,
}

/// The node engine of one voter (see the module docs).
#[derive(Debug, Clone)]
pub struct NodeEngine {
    node: NodeId,
    election: ElectionEngine,
    election_timeout: Duration,
    state: State,
    /// The highest epoch this node acts in, and the leader it knows there.
    epoch: u64,
    leader: Option<NodeId>,
    /// When `leader` was last heard from.
    leader_heard: Option<Instant>,
    vote_in_flight: bool,
    transfer: Option<Transfer>,
    deferred: VecDeque<(ElectionInput, LastLog)>,
    published: Published,
    actions: VecDeque<NodeAction>,
    plant: Option<NodePlant>,
    /// The membership in force at each offset of this node's log (None: a
    /// fixed voter set, the one given to [`NodeEngine::new`]).
    members: Option<crate::membership::MembershipLog>,
    /// The time of the last input.
    now: Instant,
}

impl NodeEngine {
    /// A node starting as a follower in `epoch` (from its meta), having
    /// voted for `voted_for` there, knowing `leader` (from its meta; named
    /// to clients only once heard).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeId,
        voters: Vec<NodeId>,
        config: ElectionConfig,
        epoch: u64,
        voted_for: Option<NodeId>,
        leader: Option<NodeId>,
        now: Instant,
        seed: u64,
    ) -> NodeEngine {
        let election_timeout = config.election_timeout;
        let published = Published {
            role: Role::Follower,
            epoch,
            leader: None,
            transferring: false,
        };
        NodeEngine {
            node,
            election: ElectionEngine::new(node, voters, config, epoch, voted_for, now, seed),
            election_timeout,
            state: State::Following,
            epoch,
            leader: leader.filter(|&l| l != node),
            leader_heard: None,
            vote_in_flight: false,
            transfer: None,
            deferred: VecDeque::new(),
            published,
            actions: VecDeque::new(),
            plant: None,
            members: None,
            now,
        }
    }

    /// This node's data directory id is `directory`: its vote replies carry
    /// it, and it stands for election only while the membership in force
    /// names it with this directory (see [`ElectionInput::VotersChanged`]).
    pub fn with_directory(mut self, directory: crate::membership::DirectoryId) -> NodeEngine {
        self.election = self.election.with_directory(directory);
        self
    }

    /// Plant `bug` (simulation only).
    pub fn plant(&mut self, bug: NodePlant) {
        self.plant = Some(bug);
    }

    /// The election engine (read-only: its role, vote and counters).
    pub fn election(&self) -> &ElectionEngine {
        &self.election
    }

    /// Plant the election engine's up-to-date bug (simulation only).
    pub fn election_mut_for_planting(&mut self) -> &mut ElectionEngine {
        &mut self.election
    }

    /// The leadership facts as last published.
    pub fn published(&self) -> Published {
        self.published
    }

    /// The leader this node knows in its epoch (heard or not).
    pub fn known_leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The target of the transfer under way, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.to)
    }

    /// Whether a role change or a vote write is out.
    pub fn busy(&self) -> bool {
        self.vote_in_flight
            || matches!(
                self.state,
                State::SteppingUp { .. } | State::Stopping { .. } | State::Resuming
            )
    }

    /// What a proposal arriving now is told: only a leader that is not
    /// transferring admits; everyone else names the leader it publishes.
    pub fn admission(&self) -> NodeRole {
        match self.state {
            State::Leading { .. } if self.plant == Some(NodePlant::AdmitWhileTransferring) => {
                NodeRole::Leader
            }
            // Published as leader once the epoch is on disk, but the store
            // takes the leadership only at the step's end.
            State::SteppingUp { .. } => NodeRole::Follower {
                leader: self.published.leader,
            },
            _ => self.published.admission(),
        }
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<NodeAction> {
        self.actions.pop_front()
    }

    /// When to feed [`ElectionInput::Tick`] next. While a step is out, or
    /// once stopped or failed, the election's timer does not run (its
    /// deadline would be due at once and again): the engine looks again
    /// after an election timeout, or at a transfer's deadline.
    pub fn poll_timeout(&self) -> Instant {
        let idle = self.busy() || matches!(self.state, State::Stopped | State::Failed);
        let mut at = if idle {
            self.now + self.election_timeout
        } else {
            self.election.poll_timeout()
        };
        if let Some(t) = &self.transfer {
            at = at.min(t.deadline);
        }
        if let (Some(h), Some(_)) = (self.leader_heard, self.published.leader) {
            if self.published.role == Role::Follower {
                at = at.min(h + self.election_timeout);
            }
        }
        at
    }

    /// Take one input at `now`; `log` is this node's log end.
    pub fn handle(&mut self, now: Instant, input: NodeInput, log: LastLog) {
        self.now = self.now.max(now);
        match input {
            NodeInput::Election(e) => {
                if matches!(self.state, State::Stopped | State::Failed) {
                    return;
                }
                if self.busy() && e == ElectionInput::Tick {
                    // The election's own timer waits for the step; a
                    // transfer's deadline does not.
                    self.on_tick_at(now);
                    self.publish(now);
                    return;
                }
                if self.busy() {
                    if self.deferred.len() < DEFERRED_INPUTS_MAX {
                        self.deferred.push_back((e, log));
                    }
                    return;
                }
                self.feed_election(now, e, log);
                self.drain_election(now);
            }
            NodeInput::VotePersisted { epoch, voted_for } => {
                self.vote_in_flight = false;
                self.election
                    .handle(now, ElectionInput::Persisted { epoch, voted_for }, log);
                self.raise_epoch(epoch, None);
                self.drain_election(now);
            }
            NodeInput::VoteFailed {
                epoch,
                voted_for,
                current,
            } => {
                self.vote_in_flight = false;
                let input = ElectionInput::PersistFailed {
                    epoch,
                    voted_for,
                    current,
                };
                self.election.handle(now, input, log);
                self.drain_election(now);
            }
            NodeInput::LogReleased { commit } => {
                if let State::SteppingUp {
                    epoch,
                    step: StepUpStep::ReleaseLog,
                    ..
                } = self.state
                {
                    self.state = State::SteppingUp {
                        epoch,
                        step: StepUpStep::PersistEpoch,
                        commit,
                    };
                    self.actions.push_back(NodeAction::PersistEpoch {
                        epoch,
                        commit_hint: commit,
                    });
                }
            }
            NodeInput::EpochPersisted => {
                if let State::SteppingUp {
                    epoch,
                    step: StepUpStep::PersistEpoch,
                    commit,
                } = self.state
                {
                    self.epoch = epoch;
                    self.leader = Some(self.node);
                    self.state = State::SteppingUp {
                        epoch,
                        step: StepUpStep::TakeLeadership,
                        commit,
                    };
                    // The role is published once the epoch is on disk.
                    self.publish(now);
                    self.actions
                        .push_back(NodeAction::StartLeading { epoch, commit });
                }
            }
            NodeInput::LeadingStarted => {
                if let State::SteppingUp {
                    epoch,
                    step: StepUpStep::TakeLeadership,
                    ..
                } = self.state
                {
                    self.state = State::Leading { epoch };
                    self.publish(now);
                    self.drain_election(now);
                }
            }
            NodeInput::StepFailed { step, current } => {
                if let State::SteppingUp { .. } = self.state {
                    self.roll_back(now, step, current);
                }
            }
            NodeInput::LeadingStopped => {
                if let State::Stopping { keep_commit } = self.state {
                    self.state = State::Resuming;
                    self.actions
                        .push_back(NodeAction::ResumeFollowing { keep_commit });
                }
            }
            NodeInput::Resumed { epoch, leader } => {
                if self.state == State::Resuming {
                    self.state = State::Following;
                    if epoch > self.epoch {
                        self.epoch = epoch;
                        self.leader = leader.filter(|&l| l != self.node);
                    }
                    self.publish(now);
                    self.drain_election(now);
                }
            }
            NodeInput::ReadBackFailed => self.fail(now),
            NodeInput::LeaderAttached { epoch, leader } => {
                // As a live leader heard (the election moves to its epoch
                // and names it).
                let heard = ElectionInput::LeaderHeard { leader, epoch };
                self.handle(now, NodeInput::Election(heard), log);
            }
            NodeInput::Transfer { to } => self.start_transfer(now, to),
            NodeInput::CaughtUp { to } => {
                if let Some(t) = &mut self.transfer {
                    if t.to == to && t.phase == TransferPhase::CatchingUp {
                        t.phase = TransferPhase::Electing;
                        t.deadline = now + 2 * self.election_timeout;
                        self.election
                            .handle(now, ElectionInput::TransferTo { to }, log);
                        self.drain_election(now);
                    }
                }
            }
            NodeInput::Shutdown => self.shut_down(now, log),
            NodeInput::StorageFailed => self.fail(now),
            NodeInput::MembershipAppended { offset, membership } => {
                self.on_membership_appended(now, offset, membership, log)
            }
            NodeInput::LogTruncated { after } => self.on_log_truncated(now, after, log),
            NodeInput::Committed { offset } => self.on_committed(offset, log),
            NodeInput::MembershipReset { offset, membership } => {
                self.on_membership_reset(now, offset, membership, log)
            }
        }
        self.publish(now);
    }

    /// Feed the election one input (no actions carried out yet).
    fn feed_election(&mut self, now: Instant, input: ElectionInput, log: LastLog) {
        if let ElectionInput::LeaderHeard { leader, epoch } = input {
            if epoch >= self.epoch && leader != self.node {
                self.leader_heard = Some(now);
            }
        }
        if input == ElectionInput::Tick {
            self.on_tick_at(now);
        }
        self.election.handle(now, input, log);
        if let Some(l) = self.election.leader().filter(|&l| l != self.node) {
            if self.election.epoch() >= self.epoch && self.leader != Some(l) {
                self.epoch = self.election.epoch();
                self.leader = Some(l);
                self.transfer_seen_leader(l);
            }
        }
    }

    /// Carry out the election's actions until one makes the engine wait
    /// (a vote write, a role change); then take the inputs that waited, in
    /// order, the same way.
    fn drain_election(&mut self, now: Instant) {
        loop {
            while !self.busy() {
                let Some(action) = self.election.poll_action() else {
                    break;
                };
                match action {
                    ElectionAction::Send { to, msg } => {
                        self.actions.push_back(NodeAction::Send { to, msg })
                    }
                    ElectionAction::PersistVote { epoch, voted_for } => {
                        self.vote_in_flight = true;
                        self.actions
                            .push_back(NodeAction::PersistVote { epoch, voted_for });
                    }
                    ElectionAction::BecomeLeader { epoch } => self.step_up(now, epoch),
                    ElectionAction::StepDown { epoch, leader } => {
                        self.step_down(now, epoch, leader)
                    }
                }
            }
            if self.busy() {
                return;
            }
            let Some((input, log)) = self.deferred.pop_front() else {
                return;
            };
            self.feed_election(now, input, log);
        }
    }

    fn shut_down(&mut self, now: Instant, log: LastLog) {
        if matches!(self.state, State::Stopped | State::Failed) {
            return;
        }
        if let State::Leading { .. } = self.state {
            // The followers elect at once instead of after the timeout.
            self.election.handle(now, ElectionInput::Resign, log);
            while let Some(a) = self.election.poll_action() {
                if let ElectionAction::Send { to, msg } = a {
                    self.actions.push_back(NodeAction::Send { to, msg });
                }
            }
        }
        self.state = State::Stopped;
        self.deferred.clear();
        self.end_transfer(Err(TransferFailed::Stopping));
        self.publish(now);
    }

    fn fail(&mut self, now: Instant) {
        if self.state == State::Failed {
            return;
        }
        self.state = State::Failed;
        self.deferred.clear();
        self.end_transfer(Err(TransferFailed::Stopping));
        self.publish(now);
    }

    /// A vote moved the node to `epoch` (it follows no one known there yet).
    fn raise_epoch(&mut self, epoch: u64, leader: Option<NodeId>) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.leader = leader;
        }
    }

    /// Publish the facts if they changed.
    fn publish(&mut self, now: Instant) {
        let role = match self.state {
            State::Leading { .. } => Role::Leader,
            // The role is published once the epoch is on disk.
            State::SteppingUp {
                step: StepUpStep::TakeLeadership,
                ..
            } => Role::Leader,
            State::Stopped => Role::Stopped,
            State::Failed => Role::Failed,
            _ => Role::Follower,
        };
        let leader = match role {
            Role::Leader => Some(self.node),
            Role::Follower => self.leader.filter(|&l| {
                l != self.node
                    && self
                        .leader_heard
                        .is_some_and(|h| now.saturating_duration_since(h) < self.election_timeout)
            }),
            _ => None,
        };
        let next = Published {
            role,
            epoch: self.epoch,
            leader,
            transferring: self.transfer.is_some(),
        };
        if next != self.published {
            self.published = next;
            self.actions.push_back(NodeAction::Publish(next));
        }
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
