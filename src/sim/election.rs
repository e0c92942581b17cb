//! The node engine in the simulation: every node runs the real
//! [`NodeEngine`](crate::engine::node::NodeEngine) — its election and its
//! role changes — the one the node's actors pump. This file is its shell:
//! it carries election messages over the simulated network (each one a
//! datagram with its own latency, lost if either end is down, a partition
//! separates them or the receiver is deaf when it arrives), persists votes
//! and epochs on the simulated disk before the engine may act on them,
//! carries out each step of a role change and answers it, and keeps the
//! engine's timer armed for its deadline, as the actors do (on the node's
//! own clock, converted to the virtual one).
//!
//! With the nemesis on, a step-up step fails now and then (the meta write,
//! or the store refusing `LeaderChange` after the leader state started),
//! so the engine's rollback runs.
//!
//! It also checks what no engine may do: vote twice in one epoch, vote in
//! an epoch below the one on its disk, or publish a role other than the
//! one the node runs (a leader state and a released log owner exist only
//! while the node publishes `Leader`, once no step is out).

use crate::command::NodeId;
use crate::engine::disk_io::{DiskCompletion, DiskExecutor, DiskRequest};
use crate::engine::election::{ElectionInput, ElectionMsg, ElectionRole};
use crate::engine::epoch::EpochRefused;
use crate::engine::node::{NodeAction, NodeInput, Role as PublishedRole, StepUpStep};
use crate::engine::FollowerInput;
use crate::storage::NodeMeta;

use super::check::Invariant;
use super::disk::Meta;
use super::node::{node_meta, Role};
use super::{Ev, PlantedBug, Simulation, MS};

/// How often (per mille) a step-up step fails when the nemesis is on.
const STEP_FAULT_PER_MILLE: u64 = 40;

impl Simulation {
    /// Feed one input to `id`'s election (through its node engine).
    pub(super) fn election_input(&mut self, id: NodeId, input: ElectionInput) {
        self.node_input(id, NodeInput::Election(input));
    }

    /// Hand `id`'s node engine what its log did (membership entries
    /// appended, truncations, commits), in order, as the log owner reports
    /// it to the real node engine.
    pub(super) fn flush_log_events(&mut self, id: NodeId) {
        let events = std::mem::take(&mut self.node_mut(id).log_events);
        for event in events {
            let appended = matches!(event, NodeInput::MembershipAppended { .. });
            self.node_input(id, event);
            if appended {
                self.check_one_pending_change(id);
            }
        }
    }

    /// Feed one input to `id`'s node engine and carry out its actions.
    pub(super) fn node_input(&mut self, id: NodeId, input: NodeInput) {
        if !self.node(id).up {
            return;
        }
        let before = self.node(id).election().role();
        self.answer(id, input);
        self.node_actions(id);
        let after = self.node(id).election().role();
        if self.config.bug == Some(PlantedBug::LateElectionTimer)
            && matches!(before, ElectionRole::Leader | ElectionRole::Candidate)
            && after == ElectionRole::Follower
        {
            self.late_timer[id as usize - 1] = true;
        }
        self.check_role_agreement(id);
        self.arm_election_timer(id);
    }

    /// Give `id`'s engine one input (its actions are carried out by
    /// [`Self::node_actions`]).
    fn answer(&mut self, id: NodeId, input: NodeInput) {
        let now = self.clock(id);
        let node = self.node_mut(id);
        let log = (node.last_epoch(), node.last_offset());
        node.engine.handle(now, input, log);
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
        if let ElectionMsg::ElectNow { epoch } = msg {
            self.check_transfer_target(from, to, epoch);
            self.maybe_cut_transfer(from, to);
        }
        self.election_input(to, ElectionInput::Received { from, msg });
        true
    }

    /// Whether a step-up step fails now (the nemesis's fault).
    fn step_fails(&mut self) -> bool {
        let fails = self.config.nemesis && self.rng.chance(STEP_FAULT_PER_MILLE);
        if fails {
            self.report.step_faults += 1;
        }
        fails
    }

    /// The nemesis asks the leader to hand its leadership to a random
    /// other node.
    pub(super) fn nemesis_transfer(&mut self) {
        let n = self.nodes.len() as NodeId;
        let Some(leader) = (1..=n).find(|&i| self.node(i).is_leader() && !self.paused(i)) else {
            return;
        };
        let peers: Vec<NodeId> = (1..=n).filter(|&i| i != leader).collect();
        let Some(to) = self.rng.pick(&peers) else {
            return;
        };
        self.report.transfers += 1;
        self.log(format!("nemesis: n{leader} is asked to transfer to n{to}"));
        self.node_input(leader, NodeInput::Transfer { to });
    }

    /// A transfer's target has the leader's whole log on disk: tell the
    /// engine (checked on the leader's ticks and at once when asked).
    pub(super) fn watch_catch_up(&mut self, id: NodeId) {
        let Some(to) = self.catch_up_watch[id as usize - 1] else {
            return;
        };
        let node = self.node(id);
        let Role::Leader(l) = &node.role else {
            return;
        };
        let has = l.engine.tracker().durable_of(to).unwrap_or(0);
        if has >= node.last_offset() {
            self.catch_up_watch[id as usize - 1] = None;
            self.node_input(id, NodeInput::CaughtUp { to });
        }
    }

    /// The transfer cut, half the time a transfer's `ElectNow` arrives: the
    /// leader `from` and the target `to` lose each other for 4–8 election
    /// timeouts while both still reach the rest. The target wins with the
    /// others' votes; the leader hears nothing of it, resumes when its
    /// transfer times out, and still reaches the voters that elected the
    /// target. Only their fencing (they end the old leader's sessions when
    /// they vote) keeps its reads from being confirmed.
    fn maybe_cut_transfer(&mut self, from: NodeId, to: NodeId) {
        if !self.config.nemesis
            || !self.faults
            || self.net.pair_cut().is_some()
            || !self.rng.chance(500)
        {
            return;
        }
        let t = self.config.election_timeout.as_nanos() as u64;
        self.cut_until = self.now + self.rng.range(4 * t, 8 * t);
        self.report.transfer_cuts += 1;
        self.log(format!("fault: transfer cut n{from} | n{to}"));
        for (id, c) in self.net.cut_pair(from, to) {
            self.ends_closed(id, &c);
        }
    }

    /// A transfer's `ElectNow` from `from` reaches `to`: while `from`
    /// still leads that epoch, `to` must hold everything `from` has (the
    /// leader stopped admitting when the transfer began).
    fn check_transfer_target(&mut self, from: NodeId, to: NodeId, epoch: u64) {
        let leader = self.node(from);
        if !leader.is_leader() || leader.meta().epoch != epoch {
            return;
        }
        let (theirs, ours) = (self.node(to).last_offset(), leader.last_offset());
        if theirs < ours {
            self.fail(
                Invariant::Protocol,
                format!(
                    "n{from} told n{to} to stand in a transfer with log {ours} while n{to} has {theirs}"
                ),
            );
        }
    }

    fn node_actions(&mut self, id: NodeId) {
        while let Some(action) = self.node_mut(id).engine.poll_action() {
            match action {
                NodeAction::Publish(p) => {
                    self.log(format!(
                        "n{id} publishes {} in e{} (leader {:?}{})",
                        p.role,
                        p.epoch,
                        p.leader,
                        if p.transferring { ", transferring" } else { "" }
                    ));
                }
                NodeAction::Send { to, msg } => {
                    let latency = if self.rng.chance(900) {
                        self.rng.range(MS / 5, 3 * MS)
                    } else {
                        self.rng.range(5 * MS, 40 * MS)
                    };
                    self.schedule(latency, Ev::Election { from: id, to, msg });
                }
                NodeAction::PersistVote { epoch, voted_for } => {
                    let Some(answer) = self.persist_vote(id, epoch, voted_for) else {
                        return;
                    };
                    self.answer(id, answer);
                }
                NodeAction::ReleaseLog { epoch } => {
                    self.log(format!("n{id} wins epoch {epoch}"));
                    let log = self.node(id).log.clone();
                    let r = self.checker.on_leader(epoch, id, &log);
                    self.check(r);
                    // The log owner ends every session and lets none
                    // attach from now.
                    self.owner_input(id, FollowerInput::Release { req: 0 });
                    let commit = self.node(id).commit;
                    self.answer(id, NodeInput::LogReleased { commit });
                }
                NodeAction::PersistEpoch { epoch, commit_hint } => {
                    let input = self.persist_epoch(id, epoch, commit_hint);
                    self.answer(id, input);
                }
                NodeAction::StartLeading { epoch, .. } => {
                    let refuses = self.step_fails();
                    let input = if self.start_leading(id, epoch, refuses) {
                        NodeInput::LeadingStarted
                    } else {
                        NodeInput::StepFailed {
                            step: StepUpStep::TakeLeadership,
                            current: None,
                        }
                    };
                    self.answer(id, input);
                }
                NodeAction::StopLeading => {
                    self.stop_leading(id);
                    self.answer(id, NodeInput::LeadingStopped);
                }
                NodeAction::ResumeFollowing { keep_commit } => {
                    let meta = self.resume_following(id, keep_commit);
                    let resumed = NodeInput::Resumed {
                        epoch: meta.epoch,
                        leader: meta.leader,
                    };
                    self.answer(id, resumed);
                }
                NodeAction::WatchCatchUp { to } => {
                    self.catch_up_watch[id as usize - 1] = Some(to);
                    self.watch_catch_up(id);
                }
                NodeAction::TransferEnded { to, outcome } => {
                    self.catch_up_watch[id as usize - 1] = None;
                    if outcome.is_ok() {
                        self.report.transfers_done += 1;
                    }
                    self.log(format!("n{id}: transfer to n{to} ended: {outcome:?}"));
                }
                NodeAction::MembershipChanged(m) => self.members_changed(id, &m),
            }
        }
    }

    /// Step-up 2: write `epoch` with this node as its leader, fenced as
    /// the disk thread's `store_meta_fenced` is (never below the epoch on
    /// disk; the vote of the same epoch kept) — or fail (the nemesis).
    fn persist_epoch(&mut self, id: NodeId, epoch: u64, commit_hint: u64) -> NodeInput {
        if self.step_fails() {
            self.log(format!("fault: n{id}'s meta write for epoch {epoch} fails"));
            self.node_mut(id).disk.fail_next_meta_write();
        }
        let meta = NodeMeta {
            current_epoch: epoch,
            leader: Some(id),
            // Kept from disk in the same epoch (the node's own vote).
            voted_for: None,
            commit_hint,
            ..node_meta(id, Meta::default())
        };
        let current = match self
            .node_mut(id)
            .disk
            .execute(DiskRequest::PersistMeta(meta))
        {
            DiskCompletion::MetaPersisted(Ok(Ok(()))) => return NodeInput::EpochPersisted,
            DiskCompletion::MetaPersisted(Ok(Err(EpochRefused::Stale { current, .. }))) => {
                Some(current)
            }
            _ => None,
        };
        NodeInput::StepFailed {
            step: StepUpStep::PersistEpoch,
            current,
        }
    }

    /// What `id` publishes is what it runs, once no step is out: a leader
    /// state and a released log owner exactly while it publishes `Leader`.
    fn check_role_agreement(&mut self, id: NodeId) {
        let node = self.node(id);
        if !node.up || node.engine.busy() || node.engine.published().role == PublishedRole::Stopped
        {
            return;
        }
        let publishes = node.engine.published().role == PublishedRole::Leader;
        let runs = node.is_leader();
        let released = node.owner.is_leading();
        if publishes != runs || publishes != released {
            let detail = format!(
                "n{id} publishes {} but {} a leader state and its log owner is {}",
                node.engine.published().role,
                if runs { "runs" } else { "runs no" },
                if released { "released" } else { "following" }
            );
            self.fail(Invariant::RoleAgreement, detail);
        }
    }

    /// Fence `id`'s log owner at `epoch` and write the vote to its disk;
    /// the engine's answer, or `None` if the engine asked for something it
    /// must never do (a violation).
    fn persist_vote(
        &mut self,
        id: NodeId,
        epoch: u64,
        voted_for: Option<NodeId>,
    ) -> Option<NodeInput> {
        let cur = self.node(id).meta();
        if epoch < cur.epoch {
            self.fail(
                Invariant::ElectionSafety,
                format!(
                    "n{id} votes in epoch {epoch}, below its persisted epoch {}",
                    cur.epoch
                ),
            );
            return None;
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
            return None;
        }
        // The log owner's fence, then the disk's merge: the engines' one
        // copy of each rule, as the Elector has them carried out.
        let fenced = {
            let node = self.node_mut(id);
            node.owner.fence(epoch)
        };
        self.owner_actions(id);
        if let Err(refused) = fenced {
            self.log(format!(
                "n{id}: vote in epoch {epoch} not fenced: {refused}"
            ));
            return Some(NodeInput::VoteFailed {
                epoch,
                voted_for,
                current: None,
            });
        }
        let request = DiskRequest::PersistVote { epoch, voted_for };
        let DiskCompletion::VotePersisted(written) = self.node_mut(id).disk.execute(request) else {
            self.fail(
                Invariant::Protocol,
                format!("n{id}'s disk answered a vote with another completion"),
            );
            return None;
        };
        let input = match written {
            Ok(Ok(_)) => NodeInput::VotePersisted { epoch, voted_for },
            Ok(Err(EpochRefused::Stale { current, .. })) => NodeInput::VoteFailed {
                epoch,
                voted_for,
                current: Some(current),
            },
            Ok(Err(_)) | Err(_) => NodeInput::VoteFailed {
                epoch,
                voted_for,
                current: None,
            },
        };
        Some(input)
    }
}
