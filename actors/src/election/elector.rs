//! `Elector`: the shell of this node's `ElectionEngine`.
//!
//! Every election decision is the engine's (see
//! `metawal::engine::election`). This actor feeds it: messages from peers
//! (passed on by the election connections the listener accepts), its timer,
//! and the liveness signals other actors leave in [`NodeShared`] — when the
//! active leader session last delivered something, when each follower last
//! answered this node's links — read before every input, so no message is
//! sent per heartbeat. It carries the engine's actions out *in order, one
//! at a time*: a message goes to the peer's [`VoterLink`]; a vote is
//! persisted only after the log owner fenced lower epochs off, and what
//! waited for it is released with the log as fenced; `BecomeLeader` and
//! `StepDown` run the node's role change to completion before anything
//! else is done (`ctx.wait`), so a vote is never granted by a node that
//! still leads, and nothing is sent for a vote that is not on disk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use metawal::engine::election::{
    ElectionAction, ElectionConfig, ElectionEngine, ElectionInput, ElectionMsg, LastLog,
};
use metawal::engine::epoch::EpochRefused;
use metawal::handshake::HandshakeKeys;
use metawal::{NodeId, ReplicationConfig};
use tokio::sync::watch;

use super::voter_link::{SendElection, StopVoterLink, VoterLink};
use crate::disk::DiskHandle;
use crate::error::RoleError;
use crate::follower::listener::{Fence, ReplicaListener};
use crate::follower::messages::ElectionIn;
use crate::progress::LogProgress;
use crate::shared::{NodeShared, Role};

/// What the elector asks of its node when the engine decides a role
/// change; the node carries it out (`Node` implements this in `node.rs`).
/// A trait, so that the elector does not import the node that starts it.
pub(crate) trait RoleChanges: Send + 'static {
    /// Take the leadership of `epoch` (won by this node).
    fn lead(&self, epoch: u64) -> LocalBoxFuture<'static, Result<(), RoleError>>;
    /// Follow `leader` (if known) in `epoch`.
    fn step_down(&self, epoch: u64, leader: Option<NodeId>) -> LocalBoxFuture<'static, ()>;
}

/// Leader: hand leadership to `to` now (it has caught up).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TransferTo(pub NodeId);

/// Leader shutting down cleanly: tell the others to elect now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Resign;

/// Stop the voter links (after writing what they hold) and the Elector.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopElector;

pub(crate) struct ElectorInit {
    pub node: NodeId,
    pub shared: Arc<NodeShared>,
    pub config: ReplicationConfig,
    pub keys: HandshakeKeys,
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub disk: DiskHandle,
    pub listener: Addr<ReplicaListener>,
    pub progress: watch::Receiver<LogProgress>,
    /// `(epoch, voted_for)` as persisted.
    pub epoch: u64,
    pub voted_for: Option<NodeId>,
    /// The node, for role changes.
    pub roles: Box<dyn RoleChanges>,
}

pub(crate) struct Elector {
    node: NodeId,
    engine: ElectionEngine,
    shared: Arc<NodeShared>,
    config: ReplicationConfig,
    keys: HandshakeKeys,
    peers: BTreeMap<NodeId, SocketAddr>,
    links: BTreeMap<NodeId, Addr<VoterLink>>,
    disk: DiskHandle,
    listener: Addr<ReplicaListener>,
    progress: watch::Receiver<LogProgress>,
    roles: Box<dyn RoleChanges>,
    /// The last leader contact and follower answers fed to the engine.
    fed_leader: Option<Instant>,
    fed_followers: BTreeMap<NodeId, Instant>,
    timer: Option<SpawnHandle>,
    /// An action (vote write, role change) is being carried out.
    busy: bool,
}

impl Elector {
    pub(crate) fn new(init: ElectorInit) -> Elector {
        let voters: Vec<NodeId> = init.peers.keys().copied().collect();
        Elector {
            node: init.node,
            engine: ElectionEngine::new(
                init.node,
                voters,
                ElectionConfig {
                    election_timeout: init.config.election_timeout,
                },
                init.epoch,
                init.voted_for,
                Instant::now(),
                rand::random(),
            ),
            shared: init.shared,
            config: init.config,
            keys: init.keys,
            peers: init.peers,
            links: BTreeMap::new(),
            disk: init.disk,
            listener: init.listener,
            progress: init.progress,
            roles: init.roles,
            fed_leader: None,
            fed_followers: BTreeMap::new(),
            timer: None,
            busy: false,
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

    /// Feed the engine the liveness signals left in `NodeShared` since the
    /// last input, each at the time it happened.
    fn sync_contacts(&mut self) {
        let log = self.log();
        if let Some(at) = self.shared.leader_contact() {
            if self.fed_leader.is_none_or(|t| at > t) {
                self.fed_leader = Some(at);
                if let Some(leader) = self.shared.leader().filter(|&l| l != self.node) {
                    let epoch = self.shared.epoch();
                    self.engine
                        .handle(at, ElectionInput::LeaderHeard { leader, epoch }, log);
                }
            }
        }
        let higher = self.shared.higher_epoch();
        if higher > self.engine.epoch() {
            self.engine.handle(
                Instant::now(),
                ElectionInput::HigherEpoch { epoch: higher },
                log,
            );
        }
        let heard: Vec<(NodeId, Instant)> = self.shared.followers_heard().collect();
        for (peer, at) in heard {
            if self.fed_followers.get(&peer).is_none_or(|&t| at > t) {
                self.fed_followers.insert(peer, at);
                self.engine
                    .handle(at, ElectionInput::FollowerHeard { peer }, log);
            }
        }
    }

    fn input(&mut self, input: ElectionInput, ctx: &mut Context<Self>) {
        if self.shared.role() == Role::Failed {
            // A node whose storage failed takes no part in elections: it
            // neither stands (not even on `ElectNow`) nor votes (it could
            // not keep what it would be given). It stays silent until it
            // is restarted, looking again once per election timeout.
            if let Some(t) = self.timer.take() {
                ctx.cancel_future(t);
            }
            self.timer = Some(ctx.run_later(self.config.election_timeout, |act, ctx| {
                act.timer = None;
                act.input(ElectionInput::Tick, ctx);
            }));
            return;
        }
        self.sync_contacts();
        let log = self.log();
        self.engine.handle(Instant::now(), input, log);
        self.drive(ctx);
    }

    /// Carry out the engine's actions in order; one that takes time
    /// (a vote write, a role change) blocks the rest, and every other
    /// input, until it is done.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        while !self.busy {
            let Some(action) = self.engine.poll_action() else {
                break;
            };
            match action {
                ElectionAction::Send { to, msg } => self.send(to, msg),
                ElectionAction::PersistVote { epoch, voted_for } => {
                    self.persist_vote(epoch, voted_for, ctx)
                }
                ElectionAction::BecomeLeader { epoch } => {
                    self.busy = true;
                    let fut = self.roles.lead(epoch);
                    ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
                        act.busy = false;
                        if let Err(e) = res {
                            tracing::error!(node = act.node, epoch, error = %e, "won the election but could not lead; resigning");
                            act.engine
                                .handle(Instant::now(), ElectionInput::Resign, act.log());
                        }
                        act.drive(ctx);
                    }));
                }
                ElectionAction::StepDown { epoch, leader } => {
                    self.busy = true;
                    let fut = self.roles.step_down(epoch, leader);
                    ctx.wait(fut.into_actor(self).map(|(), act, ctx| {
                        act.busy = false;
                        act.drive(ctx);
                    }));
                }
            }
        }
        self.publish();
        if !self.busy {
            self.arm_timer(ctx);
        }
    }

    fn send(&mut self, to: NodeId, msg: ElectionMsg) {
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
        self.busy = true;
        let listener = self.listener.clone();
        let disk = self.disk.clone();
        let fut = async move {
            let log = listener
                .send(Fence { epoch })
                .await
                .map_err(|e| (None, e.to_string()))?
                .map_err(|e| (None, e))?;
            match disk.run(move |d| d.store_vote(epoch, voted_for)).await {
                Ok(Ok(Ok(meta))) => Ok((meta, log)),
                Ok(Ok(Err(EpochRefused::Stale { current, .. }))) => {
                    Err((Some(current), format!("epoch {current} is on disk")))
                }
                Ok(Ok(Err(refused))) => Err((None, refused.to_string())),
                Ok(Err(e)) => Err((None, e.to_string())),
                Err(e) => Err((None, e.to_string())),
            }
        };
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
            act.busy = false;
            let now = Instant::now();
            match res {
                Ok((meta, log)) => {
                    if meta.current_epoch > act.shared.epoch() {
                        act.shared
                            .set_epoch_leader(meta.current_epoch, meta.leader);
                    }
                    act.engine
                        .handle(now, ElectionInput::Persisted { epoch, voted_for }, log);
                }
                Err((current, why)) => {
                    tracing::warn!(node = act.node, epoch, voted_for = ?voted_for, reason = %why, "vote not persisted; nothing waiting for it is sent");
                    let log = act.log();
                    act.engine.handle(
                        now,
                        ElectionInput::PersistFailed {
                            epoch,
                            voted_for,
                            current,
                        },
                        log,
                    );
                }
            }
            act.drive(ctx);
        }));
    }

    fn publish(&self) {
        self.shared.set_election(
            self.engine.role(),
            self.engine.voted_for(),
            self.engine.elections(),
            self.engine.pre_votes(),
        );
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let wait = self
            .engine
            .poll_timeout()
            .saturating_duration_since(Instant::now());
        self.timer = Some(ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.input(ElectionInput::Tick, ctx);
        }));
    }
}

impl Actor for Elector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        // The peer table records connections from these ids only.
        self.shared
            .metrics
            .register_peers(self.peers.keys().copied());
        self.publish();
        self.arm_timer(ctx);
    }
}

impl Handler<ElectionIn> for Elector {
    type Result = ();

    fn handle(&mut self, msg: ElectionIn, ctx: &mut Context<Self>) {
        tracing::debug!(node = self.node, peer = msg.from, msg = ?msg.msg, "election message");
        self.input(
            ElectionInput::Received {
                from: msg.from,
                msg: msg.msg,
            },
            ctx,
        );
    }
}

impl Handler<TransferTo> for Elector {
    type Result = ();

    fn handle(&mut self, msg: TransferTo, ctx: &mut Context<Self>) {
        self.input(ElectionInput::TransferTo { to: msg.0 }, ctx);
    }
}

impl Handler<Resign> for Elector {
    type Result = ();

    fn handle(&mut self, _msg: Resign, ctx: &mut Context<Self>) {
        self.input(ElectionInput::Resign, ctx);
    }
}

impl Handler<StopElector> for Elector {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: StopElector, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let links: Vec<Addr<VoterLink>> = std::mem::take(&mut self.links).into_values().collect();
        let limit = self.config.heartbeat_interval * 2;
        Box::pin(
            async move {
                for l in &links {
                    let _ = l.send(StopVoterLink).await;
                }
                // Give the links a moment to write a resignation (bounded).
                let stopped = async {
                    for l in &links {
                        while l.connected() {
                            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        }
                    }
                };
                let _ = tokio::time::timeout(limit, stopped).await;
            }
            .into_actor(self)
            .map(|(), _act, ctx| ctx.stop()),
        )
    }
}
