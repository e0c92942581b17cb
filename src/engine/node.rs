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

use serde::{Deserialize, Serialize};

use super::election::{
    ElectionAction, ElectionConfig, ElectionEngine, ElectionInput, ElectionMsg, LastLog,
};
use super::store::NodeRole;
use crate::command::NodeId;

/// Election inputs that may wait while a step is out; past this one is
/// dropped (a lost election message: the election retries). Ticks never
/// wait (the engine looks again after the step).
pub const DEFERRED_INPUTS_MAX: usize = 256;

/// What a node is doing: the one role type (status, metrics, the HTTP
/// API and the leadership stream show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Appends proposals and replicates them.
    Leader,
    /// Receives the leader's log (also while standing for election or
    /// changing role).
    Follower,
    /// Its storage failed: it no longer appends or votes (restart it).
    Failed,
    /// Shut down (or shutting down).
    Stopped,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Failed => "failed",
            Role::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The steps of taking the leadership, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StepUpStep {
    /// The log owner releasing the follower's log.
    #[error("releasing the follower's log")]
    ReleaseLog,
    /// Persisting the new epoch.
    #[error("persisting the epoch")]
    PersistEpoch,
    /// The Replicator starting and the store taking the leadership
    /// (appending `LeaderChange`).
    #[error("the store taking the leadership")]
    TakeLeadership,
}

/// The leadership facts readers see, published whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The role.
    pub role: Role,
    /// The highest epoch the node acts in.
    pub epoch: u64,
    /// The leader it names: itself when it leads; a follower's leader only
    /// while heard from within the election timeout.
    pub leader: Option<NodeId>,
    /// A leader transfer is under way: proposals are refused.
    pub transferring: bool,
}

/// Why a transfer ended without the target leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferFailed {
    /// This node does not lead (any more).
    #[error("this node does not lead")]
    NotLeader,
    /// Another transfer is under way.
    #[error("another transfer (to node {to}) is under way")]
    InProgress {
        /// Its target.
        to: NodeId,
    },
    /// The target is not a voter (or is this node).
    #[error("node {to} is not another voter")]
    UnknownPeer {
        /// The target asked for.
        to: NodeId,
    },
    /// A step took longer than its limit.
    #[error("timed out {step} after {waited:?}")]
    TimedOut {
        /// "catching up" or "electing".
        step: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// The node is shutting down or failed.
    #[error("the node is stopping")]
    Stopping,
}

/// An event for the node engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeInput {
    /// An input for the election: a tick, a message from a voter, a
    /// leader or follower heard, a higher epoch seen.
    Election(ElectionInput),
    /// A vote write ([`NodeAction::PersistVote`]) is on disk; `log` (the
    /// `log` passed with this input) is the log end as of its fence.
    VotePersisted {
        /// The epoch written.
        epoch: u64,
        /// The vote written.
        voted_for: Option<NodeId>,
    },
    /// A vote write failed or was refused; `current` is a higher epoch on
    /// disk, if that was why.
    VoteFailed {
        /// The epoch of the write.
        epoch: u64,
        /// The vote of the write.
        voted_for: Option<NodeId>,
        /// A higher epoch found on disk.
        current: Option<u64>,
    },
    /// [`NodeAction::ReleaseLog`] done: the log's commit point.
    LogReleased {
        /// The commit point the follower knew.
        commit: u64,
    },
    /// [`NodeAction::PersistEpoch`] done.
    EpochPersisted,
    /// [`NodeAction::StartLeading`] done: the node leads.
    LeadingStarted,
    /// A step-up step failed; `current` is a higher epoch found on disk,
    /// if that was why.
    StepFailed {
        /// The step.
        step: StepUpStep,
        /// A higher epoch on disk.
        current: Option<u64>,
    },
    /// [`NodeAction::StopLeading`] done.
    LeadingStopped,
    /// [`NodeAction::ResumeFollowing`] done: the node follows; `epoch` and
    /// `leader` are its meta as read back.
    Resumed {
        /// The epoch on disk.
        epoch: u64,
        /// The leader on disk.
        leader: Option<NodeId>,
    },
    /// The log or meta could not be read back: the node fail-stops.
    ReadBackFailed,
    /// The log owner accepted `leader`'s session in `epoch` (persisted).
    LeaderAttached {
        /// The epoch.
        epoch: u64,
        /// The leader.
        leader: NodeId,
    },
    /// Hand the leadership to `to`.
    Transfer {
        /// The target.
        to: NodeId,
    },
    /// [`NodeAction::WatchCatchUp`]: `to` has the whole log.
    CaughtUp {
        /// The target.
        to: NodeId,
    },
    /// The node is shutting down.
    Shutdown,
    /// A part of the node (store, log owner, Replicator) fail-stopped on a
    /// storage failure.
    StorageFailed,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Publish the leadership facts (one value, replacing the last).
    Publish(Published),
    /// Send an election message (best effort).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        msg: ElectionMsg,
    },
    /// Fence the log at `epoch`, write the vote; answer
    /// [`NodeInput::VotePersisted`] or [`NodeInput::VoteFailed`].
    PersistVote {
        /// The epoch.
        epoch: u64,
        /// The vote.
        voted_for: Option<NodeId>,
    },
    /// Step-up 1: the log owner ends its sessions and lets its in-flight
    /// write finish; answer [`NodeInput::LogReleased`].
    ReleaseLog {
        /// The epoch won.
        epoch: u64,
    },
    /// Step-up 2: write meta (`epoch`, leader = this node, `commit_hint`),
    /// fenced against the meta on disk; answer [`NodeInput::EpochPersisted`].
    PersistEpoch {
        /// The epoch won.
        epoch: u64,
        /// The commit point the log was released with.
        commit_hint: u64,
    },
    /// Step-up 3: start the Replicator (links to every peer) on the log
    /// released, and the store's leadership (it appends `LeaderChange`);
    /// answer [`NodeInput::LeadingStarted`].
    StartLeading {
        /// The epoch.
        epoch: u64,
        /// The commit point the log was released with.
        commit: u64,
    },
    /// Stop the Replicator if one runs (waiting proposals fail), drop the
    /// store's leadership; answer [`NodeInput::LeadingStopped`].
    StopLeading,
    /// Follow again with the log and meta as on disk once every queued
    /// write is done; answer [`NodeInput::Resumed`] or
    /// [`NodeInput::ReadBackFailed`].
    ResumeFollowing {
        /// Keep the commit point the node knew (a step-down), or start from
        /// what the log owner learns (a rollback: nothing was led).
        keep_commit: bool,
    },
    /// Answer [`NodeInput::CaughtUp`] once `to` has acknowledged the
    /// leader's whole log (no polling: on its acknowledgements).
    WatchCatchUp {
        /// The transfer's target.
        to: NodeId,
    },
    /// A transfer ended: the waiting caller gets this.
    TransferEnded {
        /// The target.
        to: NodeId,
        /// Whether `to` leads.
        outcome: Result<(), TransferFailed>,
    },
}

/// A bug planted on purpose, for the simulation to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePlant {
    /// A failed step-up goes back to following without stopping what it
    /// started or resuming the log owner.
    SkipRollback,
    /// Proposals are admitted while a transfer is under way.
    AdmitWhileTransferring,
}

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
            now,
        }
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
            State::Leading { .. }
                if self.transfer.is_none()
                    || self.plant == Some(NodePlant::AdmitWhileTransferring) =>
            {
                NodeRole::Leader
            }
            State::Leading { .. } => NodeRole::Follower { leader: None },
            State::Failed => NodeRole::Failed,
            State::Stopped => NodeRole::Stopped,
            _ => NodeRole::Follower {
                leader: self.published.leader,
            },
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

    /// The deadline this engine keeps itself: a transfer's.
    fn on_tick_at(&mut self, now: Instant) {
        if let Some(t) = self.transfer {
            if now >= t.deadline {
                let (step, waited) = match t.phase {
                    TransferPhase::CatchingUp => ("catching up", self.election_timeout),
                    TransferPhase::Electing => ("electing", 2 * self.election_timeout),
                };
                self.end_transfer(Err(TransferFailed::TimedOut { step, waited }));
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

    /// The election won `epoch`: step up (see the module docs).
    fn step_up(&mut self, now: Instant, epoch: u64) {
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
    fn step_down(&mut self, now: Instant, epoch: u64, leader: Option<NodeId>) {
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
    fn roll_back(&mut self, now: Instant, _step: StepUpStep, current: Option<u64>) {
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

    fn start_transfer(&mut self, now: Instant, to: NodeId) {
        if let Some(t) = &self.transfer {
            let to_busy = t.to;
            self.actions.push_back(NodeAction::TransferEnded {
                to,
                outcome: Err(TransferFailed::InProgress { to: to_busy }),
            });
            return;
        }
        let outcome = match self.state {
            State::Leading { .. } if to == self.node => Err(TransferFailed::UnknownPeer { to }),
            State::Leading { .. } => Ok(()),
            State::Stopped | State::Failed => Err(TransferFailed::Stopping),
            _ => Err(TransferFailed::NotLeader),
        };
        if let Err(e) = outcome {
            self.actions.push_back(NodeAction::TransferEnded {
                to,
                outcome: Err(e),
            });
            return;
        }
        self.transfer = Some(Transfer {
            to,
            phase: TransferPhase::CatchingUp,
            deadline: now + self.election_timeout,
        });
        self.publish(now);
        self.actions.push_back(NodeAction::WatchCatchUp { to });
    }

    /// `leader` is known to lead: a transfer to it is done.
    fn transfer_seen_leader(&mut self, leader: NodeId) {
        if self
            .transfer
            .is_some_and(|t| t.to == leader && t.phase == TransferPhase::Electing)
        {
            self.end_transfer(Ok(()));
        }
    }

    fn end_transfer(&mut self, outcome: Result<(), TransferFailed>) {
        if let Some(t) = self.transfer.take() {
            self.actions
                .push_back(NodeAction::TransferEnded { to: t.to, outcome });
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
