//! Elections: every node runs the real [`ElectionEngine`](crate::engine::election::ElectionEngine), the one the
//! node's election actor drives. This file is its shell: it carries
//! election messages over the simulated network (each one a datagram with
//! its own latency, lost if either end is down, a partition separates them
//! or the receiver is deaf when it arrives), persists votes on the
//! simulated disk before the engine may act on them, tells the node's log
//! owner of every epoch a vote moved it to, starts or stops the leader role
//! when the engine says, and keeps the engine's timer armed for its
//! deadline, as the elector actor does (on the node's own clock, converted
//! to the virtual one).
//!
//! It also checks what no engine may do: vote twice in one epoch, or vote
//! in an epoch below the one on its disk.

use crate::command::NodeId;
use crate::engine::election::{ElectionAction, ElectionInput, ElectionMsg};
use crate::engine::FollowerInput;

use super::check::Invariant;
use super::disk::Meta;
use super::node::node_meta;
use super::{Ev, PlantedBug, Simulation, MS};

impl Simulation {
    /// Feed one input to `id`'s election engine and carry out its actions.
    pub(super) fn election_input(&mut self, id: NodeId, input: ElectionInput) {
        if !self.node(id).up {
            return;
        }
        let now = self.clock(id);
        let node = self.node_mut(id);
        let log = (node.last_epoch(), node.last_offset());
        node.election.handle(now, input, log);
        self.election_actions(id);
        self.arm_election_timer(id);
    }

    /// An election message arrives at `to` (returns false if it is lost).
    pub(super) fn election_deliver(&mut self, from: NodeId, to: NodeId, msg: ElectionMsg) -> bool {
        if !self.node(to).up || !self.node(from).up || !self.net.reachable(from, to) {
            return false;
        }
        if !self.net.delivers(from, to) {
            self.report.blackholed += 1;
            return false;
        }
        self.log(format!("n{to} <- n{from} {msg:?}"));
        self.election_input(to, ElectionInput::Received { from, msg });
        true
    }

    fn election_actions(&mut self, id: NodeId) {
        while let Some(action) = self.node_mut(id).election.poll_action() {
            match action {
                ElectionAction::Send { to, msg } => {
                    let latency = if self.rng.chance(900) {
                        self.rng.range(MS / 5, 3 * MS)
                    } else {
                        self.rng.range(5 * MS, 40 * MS)
                    };
                    self.schedule(latency, Ev::Election { from: id, to, msg });
                }
                ElectionAction::PersistVote { epoch, voted_for } => {
                    if !self.persist_vote(id, epoch, voted_for) {
                        return;
                    }
                    let now = self.clock(id);
                    let node = self.node_mut(id);
                    let log = (node.last_epoch(), node.last_offset());
                    node.election
                        .handle(now, ElectionInput::Persisted { epoch, voted_for }, log);
                }
                ElectionAction::BecomeLeader { epoch } => {
                    self.log(format!("n{id} wins epoch {epoch}"));
                    let log = self.node(id).log.clone();
                    let r = self.checker.on_leader(epoch, id, &log);
                    self.check(r);
                    self.become_leader(id, epoch);
                }
                ElectionAction::StepDown { epoch, leader } => {
                    self.log(format!(
                        "n{id} steps down in epoch {epoch} (leader {leader:?})"
                    ));
                    if self.node(id).is_leader() {
                        self.step_down(id, epoch);
                    }
                    if self.config.bug == Some(PlantedBug::LateElectionTimer) {
                        self.late_timer[id as usize - 1] = true;
                    }
                }
            }
        }
    }

    /// Write a vote to `id`'s disk; tell its log owner of a new epoch.
    /// Returns false if the engine asked for something it must never do.
    fn persist_vote(&mut self, id: NodeId, epoch: u64, voted_for: Option<NodeId>) -> bool {
        let cur = self.node(id).meta();
        if epoch < cur.epoch {
            self.fail(
                Invariant::ElectionSafety,
                format!(
                    "n{id} votes in epoch {epoch}, below its persisted epoch {}",
                    cur.epoch
                ),
            );
            return false;
        }
        if epoch == cur.epoch
            && cur.voted_for.is_some()
            && voted_for.is_some()
            && cur.voted_for != voted_for
        {
            self.fail(
                Invariant::ElectionSafety,
                format!(
                    "n{id} votes twice in epoch {epoch}: for n{} and n{}",
                    cur.voted_for.unwrap_or(0),
                    voted_for.unwrap_or(0)
                ),
            );
            return false;
        }
        let meta = if epoch > cur.epoch {
            Meta {
                epoch,
                leader: None,
                voted_for,
            }
        } else {
            Meta {
                voted_for: voted_for.or(cur.voted_for),
                ..cur
            }
        };
        self.node_mut(id).disk.persist_meta(meta);
        if epoch > cur.epoch {
            self.owner_input(id, FollowerInput::MetaChanged(node_meta(id, meta)));
        }
        true
    }
}
