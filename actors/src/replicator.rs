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

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use metawal::epochs::EpochIndex;
use metawal::handshake::HandshakeKeys;
use metawal::record::Record;
use metawal::replication::{IsrChange, ReplicaSetTracker, TailCache};
use metawal::{NodeId, ReplicationConfig};
use tokio::sync::{oneshot, watch};

use crate::disk::DiskHandle;
use crate::error::ProposeError;
use crate::link::{FollowerLink, LinkInit, LinkStats};
use crate::progress::LogProgress;
use crate::shared::{NodeShared, Role};
use crate::status::FollowerStatus;
use crate::store::Acks;

/// The leader's log as links read it: epoch boundaries and recent records.
#[derive(Debug)]
pub struct LeaderLog {
    /// Epoch boundaries of the whole log (for the start-point decision).
    pub epochs: EpochIndex,
    /// The newest records, bounded in bytes.
    pub tail: TailCache,
}

type Waiter = oneshot::Sender<Result<(), ProposeError>>;

/// An accepted entry for the log (from the MetadataStore).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AppendEntry {
    pub record: Record,
    pub acks: Acks,
    pub reply: Option<Waiter>,
}

/// What a link reports.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum LinkEvent {
    /// Handshake done; the follower's log matches up to `matched`.
    Connected { peer: NodeId, matched: u64 },
    /// Cumulative ack.
    Acked { peer: NodeId, offset: u64 },
    /// The connection dropped.
    Disconnected { peer: NodeId },
    /// The follower knows a higher epoch.
    Fenced {
        peer: NodeId,
        epoch: u64,
        leader: Option<NodeId>,
    },
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
    pub hw: u64,
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

/// Stop the Replicator and its links.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopReplicator;

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
    pub peers: BTreeMap<NodeId, SocketAddr>,
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
    peers: BTreeMap<NodeId, SocketAddr>,
    log: Arc<Mutex<LeaderLog>>,
    tracker: ReplicaSetTracker,
    wal_queue: Vec<Record>,
    wal_in_flight: bool,
    leader_waiters: VecDeque<(u64, Waiter)>,
    all_waiters: VecDeque<(u64, Waiter)>,
    progress_tx: watch::Sender<LogProgress>,
    progress_rx: watch::Receiver<LogProgress>,
    links: BTreeMap<NodeId, LinkSlot>,
    failed: Option<String>,
}

impl Replicator {
    pub(crate) fn new(init: ReplicatorInit) -> Replicator {
        let last = init.epochs.last_offset();
        let now = Instant::now();
        let cluster = init.peers.len() + 1;
        let tracker = ReplicaSetTracker::new(
            init.node,
            init.peers.keys().copied(),
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
            peers: init.peers,
            log: Arc::new(Mutex::new(log)),
            tracker,
            wal_queue: Vec::new(),
            wal_in_flight: false,
            leader_waiters: VecDeque::new(),
            all_waiters: VecDeque::new(),
            progress_tx: init.progress_tx,
            progress_rx: init.progress_rx,
            links: BTreeMap::new(),
            failed: None,
            config: init.config,
        }
    }

    fn start_link(&mut self, peer: NodeId, restarts: u64, ctx: &mut Context<Self>) {
        let Some(&addr) = self.peers.get(&peer) else {
            return;
        };
        let stats = Arc::new(LinkStats::default());
        let link = FollowerLink::new(LinkInit {
            node: self.node,
            peer,
            peer_addr: addr,
            epoch: self.epoch,
            keys: self.keys.clone(),
            config: self.config.clone(),
            log: self.log.clone(),
            disk: self.disk.clone(),
            replicator: ctx.address().recipient(),
            progress: self.progress_rx.clone(),
            stats: stats.clone(),
        });
        let addr = link.start();
        self.links.insert(
            peer,
            LinkSlot {
                addr,
                stats,
                restarts,
            },
        );
    }

    fn publish(&self) {
        let p = LogProgress {
            log_end: self.tracker.log_end(),
            durable: self.tracker.local_durable(),
            commit: self.tracker.hw(),
        };
        crate::progress::publish(&self.progress_tx, p);
    }

    fn flush_wal(&mut self, ctx: &mut Context<Self>) {
        if self.wal_in_flight || self.wal_queue.is_empty() || self.failed.is_some() {
            return;
        }
        let records = std::mem::take(&mut self.wal_queue);
        let last = records.last().map_or(0, |r| r.offset);
        let rx = match self.disk.append(records) {
            Ok(rx) => rx,
            Err(e) => {
                self.fail(format!("cannot queue a WAL write: {e}"));
                return;
            }
        };
        self.wal_in_flight = true;
        ctx.spawn(rx.into_actor(self).map(move |res, act, ctx| {
            act.wal_in_flight = false;
            match res {
                Ok(Ok(durable)) => {
                    let change = act.tracker.on_local_durable(durable.min(last));
                    act.resolve_leader_waiters();
                    act.apply_change(change);
                    act.publish();
                    act.flush_wal(ctx);
                }
                Ok(Err(e)) => act.fail(format!("WAL write failed: {e}")),
                Err(_) => act.fail("the disk thread stopped".into()),
            }
        }));
    }

    /// Storage failed: refuse further writes and fail every waiter.
    fn fail(&mut self, why: String) {
        tracing::error!(node = self.node, epoch = self.epoch, reason = %why, "leader storage failed; no longer accepting writes");
        self.shared.set_role(Role::Failed);
        for (_, w) in self
            .leader_waiters
            .drain(..)
            .chain(self.all_waiters.drain(..))
        {
            let _ = w.send(Err(ProposeError::Storage(why.clone())));
        }
        self.failed = Some(why);
    }

    fn resolve_leader_waiters(&mut self) {
        let durable = self.tracker.local_durable();
        while self
            .leader_waiters
            .front()
            .is_some_and(|(o, _)| *o <= durable)
        {
            if let Some((_, w)) = self.leader_waiters.pop_front() {
                let _ = w.send(Ok(()));
            }
        }
    }

    fn apply_change(&mut self, change: IsrChange) {
        if change.is_empty() {
            return;
        }
        for peer in &change.joined {
            tracing::info!(
                node = self.node,
                peer,
                epoch = self.epoch,
                offset = self.tracker.hw(),
                "follower joined the ISR"
            );
        }
        for peer in &change.left {
            tracing::warn!(
                node = self.node,
                peer,
                epoch = self.epoch,
                offset = self.tracker.hw(),
                "follower left the ISR"
            );
        }
        self.shared.set_isr_len(self.tracker.isr_len());
        if let Some(hw) = change.hw_advanced {
            tracing::trace!(stage = "commit", node = self.node, offset = hw);
        }
        // acks=all: durable on every ISR member.
        let Some(covered) = change.isr_durable_advanced else {
            return;
        };
        let isr = self.tracker.isr_len();
        let required = self.tracker.min_insync();
        while self.all_waiters.front().is_some_and(|(o, _)| *o <= covered) {
            if let Some((offset, w)) = self.all_waiters.pop_front() {
                let result = if isr >= required {
                    Ok(())
                } else {
                    Err(ProposeError::NotEnoughReplicasAfterAppend {
                        offset,
                        isr,
                        required,
                    })
                };
                let _ = w.send(result);
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let change = self.tracker.tick(Instant::now());
        self.apply_change(change);
        self.publish();
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
            let change = self.tracker.on_disconnected(peer);
            self.apply_change(change);
            self.start_link(peer, restarts, ctx);
        }
    }
}

impl Actor for Replicator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16 * 1024);
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
        if let Some(why) = &self.failed {
            if let Some(w) = msg.reply {
                let _ = w.send(Err(ProposeError::Storage(why.clone())));
            }
            return;
        }
        let record = msg.record;
        let offset = record.offset;
        {
            let mut log = match self.log.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            if let Err(e) = log.epochs.append(offset, record.epoch) {
                drop(log);
                if let Some(w) = msg.reply {
                    let _ = w.send(Err(ProposeError::Storage(e.to_string())));
                }
                self.fail(format!("log order broken: {e}"));
                return;
            }
            log.tail.push(record.clone());
        }
        // Register the waiter before the links can see the entry.
        if let Some(w) = msg.reply {
            match msg.acks {
                Acks::All => self.all_waiters.push_back((offset, w)),
                Acks::Leader => self.leader_waiters.push_back((offset, w)),
                Acks::None => {
                    let _ = w.send(Ok(()));
                }
            }
        }
        self.wal_queue.push(record);
        self.tracker.on_append(offset);
        self.publish();
        self.flush_wal(ctx);
    }
}

impl Handler<LinkEvent> for Replicator {
    type Result = ();

    fn handle(&mut self, msg: LinkEvent, _ctx: &mut Context<Self>) {
        let now = Instant::now();
        let change = match msg {
            LinkEvent::Connected { peer, matched } => {
                tracing::info!(
                    node = self.node,
                    peer,
                    offset = matched,
                    epoch = self.epoch,
                    "follower connected"
                );
                self.tracker.on_connected(peer, matched, now)
            }
            LinkEvent::Acked { peer, offset } => self.tracker.on_ack(peer, offset, now),
            LinkEvent::Disconnected { peer } => self.tracker.on_disconnected(peer),
            LinkEvent::Fenced {
                peer,
                epoch,
                leader,
            } => {
                // A Reject carries no proof, so it is not trusted enough to
                // step down on; it is reported loudly instead.
                tracing::error!(node = self.node, peer, epoch = self.epoch, their_epoch = epoch, their_leader = ?leader, "follower reports a higher epoch: another leader may exist; check the cluster's leadership");
                self.tracker.on_disconnected(peer)
            }
        };
        self.apply_change(change);
        self.publish();
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

impl Handler<GetReplicationStatus> for Replicator {
    type Result = MessageResult<GetReplicationStatus>;

    fn handle(&mut self, _msg: GetReplicationStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let log_end = self.tracker.log_end();
        let followers = self
            .links
            .iter()
            .map(|(&peer, slot)| {
                let acked = slot.stats.acked();
                FollowerStatus {
                    peer,
                    connected: slot.stats.connected(),
                    state: slot.stats.state(),
                    acked_offset: acked,
                    lag: log_end.saturating_sub(acked),
                    in_isr: self.tracker.in_isr(peer),
                    inflight_bytes: slot.stats.inflight_bytes(),
                    reconnects: slot.stats.reconnects(),
                    snapshots_sent: slot.stats.snapshots_sent(),
                    link_restarts: slot.restarts,
                }
            })
            .collect();
        MessageResult(ReplicationStatus {
            log_end,
            durable: self.tracker.local_durable(),
            hw: self.tracker.hw(),
            followers,
        })
    }
}

impl Handler<WakeLinks> for Replicator {
    type Result = ();

    fn handle(&mut self, _msg: WakeLinks, _ctx: &mut Context<Self>) {
        for slot in self.links.values() {
            if !slot.stats.connected() {
                let _ = slot.addr.try_send(crate::link::WakeLink);
            }
        }
    }
}

/// Test hook: panic the link to `peer` (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "bool")]
pub struct PanicLink(pub NodeId);

#[cfg(feature = "fault-injection")]
impl Handler<PanicLink> for Replicator {
    type Result = bool;

    fn handle(&mut self, msg: PanicLink, _ctx: &mut Context<Self>) -> bool {
        match self.links.get(&msg.0) {
            Some(slot) => {
                slot.addr.do_send(crate::link::InjectPanic);
                true
            }
            None => false,
        }
    }
}

impl Handler<StopReplicator> for Replicator {
    type Result = ();

    fn handle(&mut self, _msg: StopReplicator, ctx: &mut Context<Self>) {
        for slot in self.links.values() {
            slot.addr.do_send(crate::link::StopLink);
        }
        for (_, w) in self
            .leader_waiters
            .drain(..)
            .chain(self.all_waiters.drain(..))
        {
            let _ = w.send(Err(ProposeError::ShuttingDown));
        }
        ctx.stop();
    }
}
