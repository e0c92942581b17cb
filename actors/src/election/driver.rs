//! `NodeDriver`: the pump of this node's `NodeEngine`.
//!
//! Every decision about what the node is — elections, the steps of a role
//! change and their rollback, shutdown, transfer, the leader it names — is
//! the engine's (see `metawal::engine::node`). This actor feeds it:
//! messages from peers (passed on by the election connections the listener
//! accepts), its timer, and the liveness signals other actors leave in
//! [`NodeShared`] — when the active leader session last delivered
//! something, which leader the log owner last attached to, when each
//! follower last answered this node's links, a fail-stop — read before
//! every input, so no message is sent per heartbeat. It carries the
//! engine's actions out in order: a message goes to the peer's
//! [`VoterLink`]; a vote is persisted only after the log owner fenced lower
//! epochs off; each step of a role change is done by the node
//! ([`RoleChanges`]) and answered back as an input; what the engine
//! publishes goes to [`NodeShared::publish`], the one writer of the node's
//! role, epoch and leader. While a step is out the engine holds every other
//! input itself, so this actor never blocks its arbiter waiting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use metawal::engine::election::{ElectionConfig, ElectionInput, ElectionMsg, LastLog};
use metawal::engine::epoch::EpochRefused;
use metawal::engine::node::{NodeAction, NodeEngine, NodeInput, StepUpStep, TransferFailed};
use metawal::epochs::EpochIndex;
use metawal::handshake::HandshakeKeys;
use metawal::{NodeId, ReplicationConfig};
use tokio::sync::oneshot;
use tokio::sync::watch;

use super::voter_link::{SendElection, StopVoterLink, VoterLink};
use crate::members::LogEventRx;
use metawal::membership::{DirectoryId, Membership, MembershipLog};

// Membership: log events, the membership in force, changes asked for.
#[path = "driver_members.rs"]
mod members;
use crate::disk::DiskHandle;
use crate::follower::listener::{Fence, ReplicaListener};
use crate::follower::messages::ElectionIn;
use crate::progress::LogProgress;
use crate::shared::{NodeShared, Role};
pub(crate) use members::{ChangeMembers, PROMOTE_MAX_LAG_ENTRIES};

// The steps of a role change the node carries out (a trait, so the driver
// does not import the node).
#[path = "role_changes.rs"]
mod role_changes;
pub(crate) use role_changes::{RoleChanges, StepError};

/// Leader: hand the leadership to `to`; the answer comes when the
/// transfer ends.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TransferTo {
    pub to: NodeId,
    pub done: oneshot::Sender<Result<(), TransferFailed>>,
}

/// The node stops: the engine's shutdown (a leader resigns, unless this
/// is a crash), then the voter links (after writing what they hold) and
/// the NodeDriver.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopNodeDriver {
    /// Tell the other voters to elect now (a clean shutdown of a leader).
    pub resign: bool,
}

pub(crate) struct NodeDriverInit {
    pub node: NodeId,
    pub shared: Arc<NodeShared>,
    pub config: ReplicationConfig,
    pub keys: HandshakeKeys,
    /// The membership the node starts with (from its snapshot and log, or
    /// the bootstrap).
    pub membership: MembershipLog,
    /// The bootstrap membership (of the flags), for a snapshot that holds
    /// none.
    pub bootstrap: Membership,
    /// What the log owner does with membership entries.
    pub log_events: LogEventRx,
    /// This node's data directory id.
    pub directory_id: DirectoryId,
    /// Pin unknown directory ids after winning an election.
    pub pin_directories: bool,
    pub disk: DiskHandle,
    pub listener: Addr<ReplicaListener>,
    pub progress: watch::Receiver<LogProgress>,
    /// `(epoch, voted_for, leader)` as persisted.
    pub epoch: u64,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    /// The node, for role changes.
    pub roles: Box<dyn RoleChanges>,
}

pub(crate) struct NodeDriver {
    node: NodeId,
    engine: NodeEngine,
    shared: Arc<NodeShared>,
    config: ReplicationConfig,
    keys: HandshakeKeys,
    peers: BTreeMap<NodeId, SocketAddr>,
    links: BTreeMap<NodeId, Addr<VoterLink>>,
    disk: DiskHandle,
    listener: Addr<ReplicaListener>,
    progress: watch::Receiver<LogProgress>,
    roles: Box<dyn RoleChanges>,
    /// The last leader contact, attach and follower answers fed to the
    /// engine.
    fed_leader: Option<Instant>,
    fed_attached: Option<(u64, NodeId)>,
    fed_followers: BTreeMap<NodeId, Instant>,
    timer: Option<SpawnHandle>,
    /// The log released by step-up 1, for step-up 3.
    released: Option<EpochIndex>,
    /// The caller of the transfer under way.
    transfer: Option<oneshot::Sender<Result<(), TransferFailed>>>,
    /// Stopped: nothing more is sent.
    stopped: bool,
    bootstrap: Membership,
    log_events: LogEventRx,
    directory_id: DirectoryId,
    /// See `NodeConfig::pin_directories`.
    pin_directories: bool,
    /// The commit point last fed to the engine.
    fed_commit: u64,
    /// The pending offset last published to `NodeShared`.
    published_pending: Option<u64>,
    /// The membership change under way, if any.
    change: Option<members::ChangeUnderWay>,
}

impl NodeDriver {
    pub(crate) fn new(init: NodeDriverInit) -> NodeDriver {
        let latest = init.membership.latest();
        let voters: Vec<NodeId> = latest.voter_ids().filter(|&v| v != init.node).collect();
        let peers: BTreeMap<NodeId, SocketAddr> = latest
            .voters()
            .filter(|v| v.node_id != init.node)
            .filter_map(|v| Some((v.node_id, crate::members::socket_addr(v)?)))
            .collect();
        let pending = init.membership.uncommitted(init.progress.borrow().commit);
        init.shared
            .set_membership(latest.clone(), pending.map(|(o, _)| o));
        let published_pending = pending.map(|(o, _)| o);
        let fed_commit = init.progress.borrow().commit;
        NodeDriver {
            node: init.node,
            engine: NodeEngine::new(
                init.node,
                voters,
                ElectionConfig {
                    election_timeout: init.config.election_timeout,
                },
                init.epoch,
                init.voted_for,
                init.leader,
                Instant::now(),
                rand::random(),
            )
            .with_directory(init.directory_id)
            .with_membership(init.membership),
            shared: init.shared,
            config: init.config,
            keys: init.keys,
            peers,
            links: BTreeMap::new(),
            disk: init.disk,
            listener: init.listener,
            progress: init.progress,
            roles: init.roles,
            fed_leader: None,
            fed_attached: None,
            fed_followers: BTreeMap::new(),
            timer: None,
            released: None,
            transfer: None,
            stopped: false,
            bootstrap: init.bootstrap,
            log_events: init.log_events,
            directory_id: init.directory_id,
            pin_directories: init.pin_directories,
            fed_commit,
            published_pending,
            change: None,
        }
    }

    /// This node's log end as the engine judges it: the follower's log as
    /// its owner last published it, or the leader's own. (Votes are decided
    /// again against the log as fenced; see the engine.)
    fn log(&self) -> LastLog {
        if self.shared.role() == Role::Leader {
            (self.shared.epoch(), self.progress.borrow().log_end)
        } else {
            self.shared.last_log()
        }
    }

    /// Feed the engine the signals left in `NodeShared` since the last
    /// input, each at the time it happened.
    fn sync_contacts(&mut self) {
        self.sync_membership();
        let log = self.log();
        let now = Instant::now();
        if self.shared.role() == Role::Failed {
            self.engine.handle(now, NodeInput::StorageFailed, log);
        }
        if let Some(attached) = self.shared.leader_attached() {
            if self.fed_attached != Some(attached) {
                self.fed_attached = Some(attached);
                let (epoch, leader) = attached;
                self.engine
                    .handle(now, NodeInput::LeaderAttached { epoch, leader }, log);
            }
        }
        if let Some(at) = self.shared.leader_contact() {
            if self.fed_leader.is_none_or(|t| at > t) {
                self.fed_leader = Some(at);
                if let Some(leader) = self.engine.known_leader() {
                    let epoch = self.engine.published().epoch;
                    let heard = ElectionInput::LeaderHeard { leader, epoch };
                    self.engine.handle(at, NodeInput::Election(heard), log);
                }
            }
        }
        let higher = self.shared.higher_epoch();
        if higher > self.engine.election().epoch() {
            let input = ElectionInput::HigherEpoch { epoch: higher };
            self.engine.handle(now, NodeInput::Election(input), log);
        }
        let heard: Vec<(NodeId, Instant)> = self.shared.followers_heard();
        for (peer, at) in heard {
            if self.fed_followers.get(&peer).is_none_or(|&t| at > t) {
                self.fed_followers.insert(peer, at);
                let input = ElectionInput::FollowerHeard { peer, since: at };
                self.engine.handle(now, NodeInput::Election(input), log);
            }
        }
    }

    /// Feed one input (after the signals), then carry out the actions.
    fn input(&mut self, input: NodeInput, ctx: &mut Context<Self>) {
        self.sync_contacts();
        let log = self.log();
        self.engine.handle(Instant::now(), input, log);
        self.drive(ctx);
    }

    /// Carry out the engine's actions in order. Those that take time run
    /// beside this actor and come back as inputs; the engine holds what
    /// must wait for them.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                NodeAction::Publish(p) => {
                    tracing::debug!(node = self.node, epoch = p.epoch, role = %p.role, leader = ?p.leader, transferring = p.transferring, "leadership published");
                    if self.pin_directories
                        && p.role == Role::Leader
                        && self.shared.role() != Role::Leader
                    {
                        self.schedule_pin(p.epoch, members::MAX_PIN_ATTEMPTS, ctx);
                    }
                    self.shared.publish(p);
                }
                NodeAction::Send { to, msg } => self.send(to, msg),
                NodeAction::PersistVote { epoch, voted_for } => {
                    self.persist_vote(epoch, voted_for, ctx)
                }
                NodeAction::ReleaseLog { epoch } => {
                    let fut = self.roles.release_log();
                    self.step(ctx, fut, move |act, res| match res {
                        Ok((epochs, commit)) => {
                            act.released = Some(epochs);
                            NodeInput::LogReleased { commit }
                        }
                        Err(e) => act.step_failed(epoch, StepUpStep::ReleaseLog, e),
                    });
                }
                NodeAction::PersistEpoch { epoch, commit_hint } => {
                    let fut = self.roles.persist_epoch(epoch, commit_hint);
                    self.step(ctx, fut, move |act, res| match res {
                        Ok(()) => NodeInput::EpochPersisted,
                        Err(e) => act.step_failed(epoch, StepUpStep::PersistEpoch, e),
                    });
                }
                NodeAction::StartLeading { epoch, commit } => {
                    let epochs = self.released.take().unwrap_or_default();
                    let fut = self.roles.start_leading(epoch, epochs, commit);
                    self.step(ctx, fut, move |act, res| match res {
                        Ok(()) => {
                            tracing::info!(node = act.node, epoch, "became leader");
                            NodeInput::LeadingStarted
                        }
                        Err(e) => act.step_failed(epoch, StepUpStep::TakeLeadership, e),
                    });
                }
                NodeAction::StopLeading => {
                    let epoch = self.engine.published().epoch;
                    tracing::info!(node = self.node, epoch, "stopping leading");
                    let fut = self.roles.stop_leading();
                    self.step(ctx, fut, |_, ()| NodeInput::LeadingStopped);
                }
                NodeAction::ResumeFollowing { keep_commit } => {
                    let fut = self.roles.resume_following(keep_commit);
                    self.step(ctx, fut, |act, res| match res {
                        Ok((epoch, leader)) => {
                            tracing::info!(node = act.node, epoch, leader = ?leader, "following");
                            NodeInput::Resumed { epoch, leader }
                        }
                        Err(why) => {
                            // Fail-stop: the node cannot know what it holds.
                            tracing::error!(node = act.node, reason = %why, "cannot read the log or meta back after a role change; node stopped: restart it");
                            act.shared.fail_stop();
                            NodeInput::ReadBackFailed
                        }
                    });
                }
                NodeAction::WatchCatchUp { to } => {
                    let fut = self.roles.caught_up(to);
                    ctx.spawn(fut.into_actor(self).map(move |caught_up, act, ctx| {
                        // Not caught up: the leadership ended; the
                        // transfer's deadline ends it.
                        if caught_up {
                            act.input(NodeInput::CaughtUp { to }, ctx);
                        }
                    }));
                }
                NodeAction::TransferEnded { to, outcome } => {
                    match &outcome {
                        Ok(()) => tracing::info!(node = self.node, to, "leadership transferred"),
                        Err(e) => {
                            tracing::warn!(node = self.node, to, error = %e, "leadership transfer failed")
                        }
                    }
                    if let Some(done) = self.transfer.take() {
                        // The caller may have gone: nothing to tell.
                        let _ = done.send(outcome);
                    }
                }
                NodeAction::MembershipChanged(m) => {
                    if self.refuses_identity(&m) {
                        self.input(NodeInput::StorageFailed, ctx);
                        return;
                    }
                    self.membership_changed(m, ctx)
                }
            }
        }
        self.publish_membership();
        self.publish_election();
        self.arm_timer(ctx);
    }

    /// Run one role-change step beside the actor; its result, turned into
    /// an input by `answer`, is fed back.
    fn step<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        fut: LocalBoxFuture<'static, T>,
        answer: impl FnOnce(&mut Self, T) -> NodeInput + 'static,
    ) {
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let input = answer(act, res);
            act.input(input, ctx);
        }));
    }

    fn step_failed(&self, epoch: u64, step: StepUpStep, e: StepError) -> NodeInput {
        let current = match e {
            StepError::Stale { current } => {
                tracing::warn!(node = self.node, epoch, current, %step, "could not become leader: a higher epoch is on disk; following again");
                Some(current)
            }
            StepError::Failed(why) => {
                tracing::error!(node = self.node, epoch, %step, reason = %why, "could not become leader; rolling back and following again");
                None
            }
        };
        NodeInput::StepFailed { step, current }
    }

    fn send(&mut self, to: NodeId, msg: ElectionMsg) {
        if self.stopped {
            return;
        }
        let Some(&addr) = self.peers.get(&to) else {
            return;
        };
        let link = self.links.entry(to).or_insert_with(|| {
            VoterLink::new(
                self.node,
                to,
                addr,
                self.keys.clone(),
                self.config.session_timeout,
                self.config.max_frame_bytes,
                &self.shared,
            )
            .start()
        });
        // Best effort, bounded: a full link mailbox drops the message and
        // the election retries it.
        if link.try_send(SendElection(msg)).is_err() {
            tracing::debug!(
                node = self.node,
                peer = to,
                "election message dropped: link busy"
            );
        }
    }

    /// Fence the log owner at `epoch`, write the vote, and give the engine
    /// the answer with the log as fenced. A refusal or a failed write
    /// releases nothing (retry: the election runs again on its timer).
    fn persist_vote(&mut self, epoch: u64, voted_for: Option<NodeId>, ctx: &mut Context<Self>) {
        let listener = self.listener.clone();
        let disk = self.disk.clone();
        let fut = async move {
            let log = listener
                .send(Fence { epoch })
                .await
                .map_err(|e| (None, e.to_string()))?
                .map_err(|e| (None, e))?;
            match disk.persist_vote(epoch, voted_for).await {
                Ok(Ok(_meta)) => Ok(log),
                Ok(Err(EpochRefused::Stale { current, .. })) => {
                    Err((Some(current), format!("epoch {current} is on disk")))
                }
                Ok(Err(refused)) => Err((None, refused.to_string())),
                Err(e) => Err((None, e.to_string())),
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.sync_contacts();
            let now = Instant::now();
            match res {
                Ok(log) => {
                    let persisted = NodeInput::VotePersisted { epoch, voted_for };
                    act.engine.handle(now, persisted, log);
                }
                Err((current, why)) => {
                    tracing::warn!(node = act.node, epoch, voted_for = ?voted_for, reason = %why, "vote not persisted; nothing waiting for it is sent");
                    let failed = NodeInput::VoteFailed {
                        epoch,
                        voted_for,
                        current,
                    };
                    let log = act.log();
                    act.engine.handle(now, failed, log);
                }
            }
            act.drive(ctx);
        }));
    }

    fn publish_election(&self) {
        let e = self.engine.election();
        self.shared
            .set_election(e.role(), e.voted_for(), e.elections(), e.pre_votes());
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        if self.stopped {
            return;
        }
        let wait = self
            .engine
            .poll_timeout()
            .saturating_duration_since(Instant::now());
        self.timer = Some(ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.input(NodeInput::Election(ElectionInput::Tick), ctx);
        }));
    }
}

impl Actor for NodeDriver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        // The peer table records connections from these ids only.
        self.shared
            .metrics
            .register_peers(self.peers.keys().copied());
        let at_start = self.engine.membership().map(|m| m.latest().clone());
        if at_start.is_some_and(|m| self.refuses_identity(&m)) {
            self.input(NodeInput::StorageFailed, ctx);
            return;
        }
        self.publish_election();
        self.arm_timer(ctx);
    }
}

impl Handler<ElectionIn> for NodeDriver {
    type Result = ();

    fn handle(&mut self, msg: ElectionIn, ctx: &mut Context<Self>) {
        match msg {
            ElectionIn::Message { from, msg } => {
                tracing::debug!(node = self.node, peer = from, msg = ?msg, "election message");
                let input = ElectionInput::Received { from, msg };
                self.input(NodeInput::Election(input), ctx);
            }
            // The attach is read from `NodeShared` with the other signals,
            // the log events from their channel.
            ElectionIn::LeaderAttached | ElectionIn::LogChanged => {
                self.sync_contacts();
                self.drive(ctx);
            }
        }
    }
}

impl Handler<TransferTo> for NodeDriver {
    type Result = ();

    fn handle(&mut self, msg: TransferTo, ctx: &mut Context<Self>) {
        if self.transfer.is_some() {
            // The engine refuses it (one transfer at a time); the refusal
            // goes to this caller, not to the one waiting.
            let to = self.engine.transfer_target().unwrap_or(msg.to);
            let _ = msg.done.send(Err(TransferFailed::InProgress { to }));
            return;
        }
        self.transfer = Some(msg.done);
        self.input(NodeInput::Transfer { to: msg.to }, ctx);
    }
}

impl Handler<StopNodeDriver> for NodeDriver {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: StopNodeDriver, ctx: &mut Context<Self>) -> Self::Result {
        if !msg.resign {
            // A crash: nothing more leaves this node.
            self.stopped = true;
        }
        self.input(NodeInput::Shutdown, ctx);
        self.stopped = true;
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let links: Vec<Addr<VoterLink>> = std::mem::take(&mut self.links).into_values().collect();
        let limit = self.config.heartbeat_interval * 2;
        Box::pin(
            async move {
                // Each link writes what it holds (a resignation) and stops;
                // its `done` is dropped then. Bounded by `limit`.
                let mut stopped = Vec::with_capacity(links.len());
                for l in &links {
                    let (done, rx) = oneshot::channel();
                    if l.send(StopVoterLink { done }).await.is_ok() {
                        stopped.push(rx);
                    }
                }
                let all = async {
                    for rx in stopped {
                        // Err: dropped, i.e. stopped.
                        let _ = rx.await;
                    }
                };
                let _ = tokio::time::timeout(limit, all).await;
            }
            .into_actor(self)
            .map(|(), _act, ctx| ctx.stop()),
        )
    }
}
