//! `Replicator`: the leader's log writer and the supervisor of its links.
//!
//! It receives each accepted entry (already numbered and encoded once by the
//! MetadataStore), puts the record in the shared tail cache, publishes the new
//! log end to every [`FollowerLink`] through the progress watch channel — so
//! links start sending while the local fsync runs — and queues the record for
//! the disk thread, keeping one group-commit batch in flight at a time.
//!
//! Link events (handshake matched, cumulative acks, disconnects, a follower
//! reporting a higher epoch, which counts as a disconnect) and local
//! durability feed the core's [`ReplicaSetTracker`], which decides the ISR,
//! the commit point (durable on a majority of the voters, the leader among
//! them: what every node applies) and the ISR watermark
//! (durable on every ISR member: what `acks=all` waits for); the Replicator
//! publishes the commit and resolves waiting proposals. A waiter is registered in the same handler that
//! makes its entry visible to the links, so an ack can never arrive first.
//!
//! It starts one `FollowerLink` per peer and restarts any that died (a
//! panicked actor is not restarted by actix's `Supervised`); a restarted link
//! re-derives its progress from a fresh handshake. On [`WakeLinks`] (someone
//! connected to the leader's replication port) it tells every disconnected
//! link to retry now.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use metawal::engine::{LeaderAction, LeaderInput, ProposalId, ReplicatorEngine};
use metawal::epochs::EpochIndex;
use metawal::handshake::HandshakeKeys;
use metawal::membership::{DirectoryId, Membership};
use metawal::record::Record;
use metawal::replication::{ReplicaSetTracker, TailCache};
use metawal::{NodeId, ReplicationConfig};
use tokio::sync::watch;

use crate::disk::DiskHandle;
use crate::error::{DiskError, ProposeError};
use crate::leader::link::{FollowerLink, LinkStats};
use crate::leader::messages::{LeaderLog, LinkEvent};
use crate::progress::LogProgress;
use crate::shared::NodeShared;
use crate::status::FollowerStatus;
use metawal::engine::Acks;

use crate::proposal::{Proposed, Reply as Waiter};

// Starting, waking, probing and reporting on the links: a child module, so
// it sees the Replicator's private state.
#[path = "replicator_links.rs"]
mod links;

// Following the membership in force, and what a change is admitted on.
#[path = "replicator_members.rs"]
mod members;
pub(crate) use members::{ChangeFacts, GetChangeFacts, SetMembers};

/// An accepted entry for the log (from the MetadataStore).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AppendEntry {
    pub record: Record,
    pub acks: Acks,
    pub reply: Option<Waiter>,
}

/// The WAL dropped segments: the log now starts after `base_offset`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct LogStartMoved {
    pub base_offset: u64,
    pub base_epoch: u64,
}

/// Leader-side replication status.
#[derive(Debug, Clone)]
pub(crate) struct ReplicationStatus {
    pub log_end: u64,
    pub durable: u64,
    pub commit: u64,
    pub followers: Vec<FollowerStatus>,
}

/// Ask for [`ReplicationStatus`].
#[derive(Message)]
#[rtype(result = "ReplicationStatus")]
pub(crate) struct GetReplicationStatus;

/// Someone connected to the leader's replication port: a follower that
/// (re)started. Disconnected links retry now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeLinks;

/// A read index waits for the followers' answers: each connected link
/// sends a probe now instead of at its next heartbeat interval.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ProbeLinks;

/// Answer once `to` has acknowledged the whole log on disk (a leader
/// transfer's catch-up): checked on each acknowledgement, no polling. One
/// watch at a time; a new one replaces the last. Dropped unanswered if the
/// Replicator stops first.
#[derive(Message)]
#[rtype(result = "tokio::sync::oneshot::Receiver<()>")]
pub(crate) struct WatchCatchUp {
    pub to: NodeId,
}

/// Stop the Replicator and its links.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopReplicator {
    /// The node steps down (waiting proposals get `LeadershipLost`), rather
    /// than shutting down (`ShuttingDown`).
    pub step_down: bool,
}

struct LinkSlot {
    addr: Addr<FollowerLink>,
    stats: Arc<LinkStats>,
    /// Times this peer's link actor died and was replaced.
    restarts: u64,
}

/// Everything the Replicator needs at start.
pub(crate) struct ReplicatorInit {
    pub node: NodeId,
    pub epoch: u64,
    pub config: ReplicationConfig,
    pub shared: Arc<NodeShared>,
    pub disk: DiskHandle,
    pub keys: HandshakeKeys,
    /// The membership in force in the log it leads with.
    pub membership: Arc<Membership>,
    pub epochs: EpochIndex,
    pub commit: u64,
    pub progress_tx: watch::Sender<LogProgress>,
    pub progress_rx: watch::Receiver<LogProgress>,
}

/// The leader's replicator actor (see the module docs).
pub struct Replicator {
    node: NodeId,
    epoch: u64,
    config: ReplicationConfig,
    shared: Arc<NodeShared>,
    disk: DiskHandle,
    keys: HandshakeKeys,
    /// Every member but this node (voters and learners), where its link
    /// connects.
    peers: BTreeMap<NodeId, SocketAddr>,
    /// The membership the tracker counts.
    membership: Arc<Membership>,
    log: Arc<Mutex<LeaderLog>>,
    /// Every decision: WAL writes, ISR, commit, which proposal resolves.
    engine: ReplicatorEngine,
    /// Appended records not yet durable (the engine says when to write
    /// them); bounded by the store's limit on uncommitted entries.
    wal_queue: VecDeque<Record>,
    /// Reply channels of waiting proposals, and their entries' epochs, by
    /// the engine's id.
    waiters: HashMap<ProposalId, (Waiter, u64)>,
    next_proposal: ProposalId,
    progress_tx: watch::Sender<LogProgress>,
    progress_rx: watch::Receiver<LogProgress>,
    /// A publish of the progress is scheduled ([`Self::publish_soon`]).
    publish_due: bool,
    links: BTreeMap<NodeId, LinkSlot>,
    /// Each follower's data directory id, as its last handshake proved.
    directories: BTreeMap<NodeId, DirectoryId>,
    /// A transfer target whose catch-up is awaited.
    catch_up: Option<(NodeId, tokio::sync::oneshot::Sender<()>)>,
}

impl Replicator {
    pub(crate) fn new(init: ReplicatorInit) -> Replicator {
        let last = init.epochs.last_offset();
        let now = Instant::now();
        let voters: Vec<NodeId> = init
            .membership
            .voter_ids()
            .filter(|&v| v != init.node)
            .collect();
        let cluster = voters.len() + 1;
        let tracker = ReplicaSetTracker::new(
            init.node,
            voters,
            now,
            init.config.replica_lag_time_max,
            init.config.effective_min_insync(cluster),
            // The epoch starts with the LeaderChange the store appends next.
            last + 1,
            init.commit.min(last),
            last,
            last,
        );
        let log = LeaderLog {
            epochs: init.epochs,
            tail: TailCache::new(init.config.tail_cache_bytes),
        };
        Replicator {
            node: init.node,
            epoch: init.epoch,
            shared: init.shared,
            disk: init.disk,
            keys: init.keys,
            peers: members::peer_addrs(init.node, &init.membership),
            membership: init.membership,
            log: Arc::new(Mutex::new(log)),
            engine: ReplicatorEngine::new(
                init.node,
                init.epoch,
                tracker,
                init.config.request_timeout,
                init.config.request_timeout,
            ),
            wal_queue: VecDeque::new(),
            waiters: HashMap::new(),
            next_proposal: 0,
            progress_tx: init.progress_tx,
            progress_rx: init.progress_rx,
            publish_due: false,
            links: BTreeMap::new(),
            directories: BTreeMap::new(),
            catch_up: None,
            config: init.config,
        }
    }

    /// Answer the catch-up watch if its target has the whole log.
    fn check_catch_up(&mut self) {
        let Some((to, _)) = &self.catch_up else {
            return;
        };
        let tracker = self.engine.tracker();
        if tracker.durable_of(*to).unwrap_or(0) >= tracker.log_end() {
            if let Some((_, tx)) = self.catch_up.take() {
                // The waiter may have gone: nothing to tell.
                let _ = tx.send(());
            }
        }
    }

    fn publish(&self) {
        let t = self.engine.tracker();
        let p = LogProgress {
            log_end: t.log_end(),
            durable: t.local_durable(),
            commit: t.commit(),
        };
        crate::progress::publish(&self.progress_tx, p);
    }

    /// Feed one input to the engine and carry out what it asks.
    fn input(&mut self, input: LeaderInput, ctx: &mut Context<Self>) {
        self.engine.handle(Instant::now(), input);
        while let Some(action) = self.engine.poll_action() {
            self.act(action, ctx);
        }
        self.publish_soon(ctx);
    }

    /// Publish the progress once the messages already in the mailbox are
    /// handled (actix drains the mailbox before it polls spawned futures):
    /// a burst of appends wakes the links and the store once, and sends once
    /// on the watch (each send locks all its notification shards). Nothing
    /// waits longer: the links run only after this actor yields anyway, and
    /// a waiter is registered before its entry can be seen. The one reader
    /// that must not see an older commit, a read index after an answered
    /// write, is served by the publish before each answer (`act`).
    fn publish_soon(&mut self, ctx: &mut Context<Self>) {
        if self.publish_due {
            return;
        }
        self.publish_due = true;
        ctx.spawn(fut::ready(()).map(|(), act: &mut Self, _| {
            act.publish_due = false;
            act.publish();
        }));
    }

    fn act(&mut self, action: LeaderAction, ctx: &mut Context<Self>) {
        match action {
            LeaderAction::WriteWal { up_to } => self.write_wal(up_to, ctx),
            LeaderAction::Resolve {
                proposal,
                offset,
                result,
            } => {
                // A read index starts from the published commit: publish a
                // commit that moved before the answer can reach the
                // proposer, so a read right after it covers the write
                // (read your writes).
                if self.engine.tracker().commit() > self.progress_tx.borrow().commit {
                    self.publish();
                }
                if let Some((w, epoch)) = self.waiters.remove(&proposal) {
                    let result = result
                        .map(|()| Proposed { offset, epoch })
                        .map_err(|e| ProposeError::from_leader(e, offset));
                    // The proposer may have gone: nothing to tell.
                    let _ = w.send(result);
                }
            }
            LeaderAction::IsrChanged {
                joined,
                left,
                isr_len,
            } => {
                let offset = self.engine.tracker().commit();
                for peer in joined {
                    tracing::info!(
                        node = self.node,
                        peer,
                        epoch = self.epoch,
                        offset,
                        "follower joined the ISR"
                    );
                }
                for peer in left {
                    tracing::warn!(
                        node = self.node,
                        peer,
                        epoch = self.epoch,
                        offset,
                        "follower left the ISR"
                    );
                }
                self.shared.set_isr_len(isr_len);
            }
            LeaderAction::Commit { offset } => {
                tracing::trace!(stage = "commit", node = self.node, offset);
            }
            LeaderAction::Failed { .. } => {
                // Fail-stop: no more writes here. The links stop too, so the
                // followers stop hearing this leader and elect another one
                // within [T, 2T) (this node does not stand: it has failed).
                self.shared.fail_stop();
                for slot in self.links.values() {
                    let _ = slot.addr.try_send(crate::leader::link::StopLink);
                }
                // Stopping also ends link supervision (which would restart
                // the links); a link that missed its StopLink stops when it
                // finds the Replicator gone. A stopping actor runs no
                // spawned future, so the progress goes out now.
                self.publish();
                ctx.stop();
            }
        }
    }

    /// Hand the queued records up to `up_to` to the disk thread; the result
    /// goes back to the engine.
    fn write_wal(&mut self, up_to: u64, ctx: &mut Context<Self>) {
        let records: Vec<Record> = self
            .wal_queue
            .iter()
            .take_while(|r| r.offset <= up_to)
            .cloned()
            .collect();
        let rx = match self.disk.append(records) {
            Ok(rx) => rx,
            Err(DiskError::QueueFull(_)) => {
                // Transient: the engine retries on a tick, bounded in time.
                self.engine.handle(Instant::now(), LeaderInput::WalBusy);
                return;
            }
            Err(e) => {
                let reason = format!("cannot queue a WAL write: {e}");
                self.engine
                    .handle(Instant::now(), LeaderInput::StorageFailed { reason });
                return;
            }
        };
        ctx.spawn(rx.into_actor(self).map(move |res, act, ctx| {
            let input = match res {
                Ok(Ok(durable)) => {
                    let durable = durable.min(up_to);
                    while act.wal_queue.front().is_some_and(|r| r.offset <= durable) {
                        act.wal_queue.pop_front();
                    }
                    LeaderInput::WalDurable { up_to: durable }
                }
                Ok(Err(e)) => LeaderInput::StorageFailed {
                    reason: format!("WAL write failed: {e}"),
                },
                Err(_) => LeaderInput::StorageFailed {
                    reason: "the disk thread stopped".into(),
                },
            };
            act.input(input, ctx);
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.input(LeaderInput::Tick, ctx);
        // Restart links that died (a panic is not restarted by actix).
        let dead: Vec<(NodeId, u64)> = self
            .links
            .iter()
            .filter(|(_, l)| !l.addr.connected())
            .map(|(&p, l)| (p, l.restarts + 1))
            .collect();
        for (peer, restarts) in dead {
            tracing::warn!(
                node = self.node,
                peer,
                "follower link died; starting a new one"
            );
            self.input(LeaderInput::Disconnected { peer }, ctx);
            self.start_link(peer, restarts, ctx);
        }
    }
}

impl Actor for Replicator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16 * 1024);
        // Learners too: the tracker follows them, never counting them.
        let (voters, learners) = members::ids(&self.membership);
        self.input(LeaderInput::SetMembers { voters, learners }, ctx);
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.start_link(peer, 0, ctx);
        }
        let every = (self.config.heartbeat_interval / 2).max(Duration::from_millis(10));
        ctx.run_interval(every, |act, ctx| act.tick(ctx));
        self.publish();
    }
}

impl Handler<AppendEntry> for Replicator {
    type Result = ();

    fn handle(&mut self, msg: AppendEntry, ctx: &mut Context<Self>) {
        let record = msg.record;
        let offset = record.offset;
        let proposal = msg.reply.map(|w| {
            let id = self.next_proposal;
            self.next_proposal += 1;
            self.waiters.insert(id, (w, record.epoch));
            id
        });
        if self.engine.failed().is_none() {
            let mut log = match self.log.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            if let Err(e) = log.epochs.append(offset, record.epoch) {
                drop(log);
                let reason = format!("log order broken: {e}");
                self.input(LeaderInput::StorageFailed { reason }, ctx);
            } else {
                log.tail.push(record.clone());
                drop(log);
                self.wal_queue.push_back(record);
            }
        }
        // The engine registers the waiter before the links can see the
        // entry (they see it when this handler publishes the new log end).
        self.input(
            LeaderInput::Append {
                offset,
                acks: msg.acks,
                proposal,
            },
            ctx,
        );
    }
}

impl Handler<LinkEvent> for Replicator {
    type Result = ();

    fn handle(&mut self, msg: LinkEvent, ctx: &mut Context<Self>) {
        let input = match msg {
            LinkEvent::Connected { peer, matched } => {
                tracing::info!(
                    node = self.node,
                    peer,
                    offset = matched,
                    epoch = self.epoch,
                    "follower connected"
                );
                LeaderInput::Connected { peer, matched }
            }
            LinkEvent::Acked { peer, offset } => LeaderInput::Acked { peer, offset },
            LinkEvent::Disconnected { peer } => LeaderInput::Disconnected { peer },
            LinkEvent::Identified { peer, directory_id } => {
                return self.identified(peer, directory_id);
            }
            LinkEvent::Fenced {
                peer,
                epoch,
                leader,
                proven,
            } => {
                if proven && epoch > self.epoch {
                    // The follower proved it knows a higher epoch (e.g. it
                    // stood for election and lost): this leader is stale.
                    // The NodeDriver moves to that epoch and steps down, and
                    // the next election includes the follower again.
                    tracing::warn!(node = self.node, peer, epoch = self.epoch, their_epoch = epoch, their_leader = ?leader, "follower proved a higher epoch; stepping down");
                    self.shared.note_higher_epoch(epoch);
                } else if proven {
                    // Proven, but not higher: another leader claims this
                    // very epoch (an election bug or a misconfiguration).
                    tracing::error!(node = self.node, peer, epoch = self.epoch, their_epoch = epoch, their_leader = ?leader, "follower proved another leader of this epoch; check the cluster's leadership");
                } else {
                    // Unproven: not trusted enough to step down on.
                    tracing::error!(node = self.node, peer, epoch = self.epoch, their_epoch = epoch, their_leader = ?leader, "follower reports a higher epoch without proof: another leader may exist; check the cluster's leadership");
                }
                LeaderInput::Disconnected { peer }
            }
        };
        self.input(input, ctx);
        self.check_catch_up();
    }
}

impl Handler<WatchCatchUp> for Replicator {
    type Result = MessageResult<WatchCatchUp>;

    fn handle(&mut self, msg: WatchCatchUp, _ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.catch_up = Some((msg.to, tx));
        self.check_catch_up();
        MessageResult(rx)
    }
}

impl Handler<LogStartMoved> for Replicator {
    type Result = ();

    fn handle(&mut self, msg: LogStartMoved, _ctx: &mut Context<Self>) {
        let mut log = match self.log.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        log.epochs.truncate_prefix(msg.base_offset, msg.base_epoch);
    }
}

/// Test hook: panic the link to `peer` (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "bool")]
pub struct PanicLink(pub NodeId);

impl Handler<StopReplicator> for Replicator {
    type Result = ();

    fn handle(&mut self, msg: StopReplicator, ctx: &mut Context<Self>) {
        for slot in self.links.values() {
            // A link whose mailbox is full stops on its next heartbeat,
            // when it finds the Replicator gone.
            let _ = slot.addr.try_send(crate::leader::link::StopLink);
        }
        let input = if msg.step_down {
            LeaderInput::StepDown
        } else {
            LeaderInput::Stop
        };
        self.input(input, ctx);
        // A stopping actor runs no spawned future: publish what the last
        // burst moved now (`publish_soon` would be dropped), so the
        // follower side resumes from the latest commit.
        self.publish();
        ctx.stop();
    }
}
