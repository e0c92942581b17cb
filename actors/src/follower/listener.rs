//! `ReplicaListener`: the follower side's acceptor and log owner.
//!
//! It accepts replication connections (a bounded number at once) and starts a
//! [`ReplicaSession`] for each. Sessions do the per-connection protocol; the
//! listener owns what must be single on a node: the follower's log position
//! (its epoch index, including records queued for the disk), the durable
//! offset, the commit index learned from the leader, the current epoch and
//! leader (persisted in `meta` before a higher epoch is acted on), and which
//! session is the active one. A newer authenticated session replaces the
//! older one.
//!
//! A new epoch is persisted one at a time: a session that asks to attach while
//! that write runs is held and then judged against the persisted epoch, so of
//! two leaders racing, a lower epoch gets `StaleEpoch` and a second leader of
//! the same epoch gets `EpochConflict`.
//!
//! On the leader the listener serves no sessions (each ends with
//! `Reject { NotFollower }`); every inbound connection is passed to the
//! Replicator as a wake-up, so that its disconnected links retry now.
//!
//! Records a session passes in are checked for contiguity and epochs, queued,
//! and written by the disk thread one group-commit batch at a time; after each
//! batch the active session is told the durable offset and acks it. Decoded
//! entries go to the MetadataStore, which applies them once committed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use metawal::epochs::EpochIndex;
use metawal::handshake::HandshakeKeys;
use metawal::record::Record;
use metawal::replication::check_append;
use metawal::storage::{NodeMeta, Snapshot};
use metawal::{NodeId, ReplicationConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::disk::DiskHandle;
use crate::error::DiskError;
use crate::follower::messages::{
    Attach, AttachRefused, Durable, ListenerHandle, LogEnd, SessionAppend, SessionCommit,
    SessionGone, SessionHandle, SessionSnapshot, SessionTruncate, StopSession,
};
use crate::follower::session::{ReplicaSession, SessionInit};
use crate::leader::replicator::WakeLinks;
use crate::progress::LogProgress;
use crate::shared::{NodeShared, Role};
use crate::store::{EntriesInFlight, FollowerEntries, InstallSnapshot, MetadataStore, Truncated};
use metawal::engine::epoch::{maybe_advance_epoch, EpochRefused, EpochStep};
use metawal::engine::follower::{maybe_truncate, plan_snapshot_install, SnapshotInstall};

/// Most replication connections served at once.
const MAX_SESSIONS: usize = 16;

type AttachReply = oneshot::Sender<Result<LogEnd, AttachRefused>>;

/// A truncation or snapshot install the store must hear of.
enum StoreEvent {
    Truncated(u64),
    Snapshot(Box<Snapshot>),
}

/// Most truncations/snapshot installs waiting for room in the store's
/// mailbox.
const MAX_STORE_OUTBOX: usize = 8;

/// This node is about to lead: end every session and, once the in-flight
/// write is done, answer the log's epoch index and the known commit.
#[derive(Message)]
#[rtype(result = "(EpochIndex, u64)")]
pub(crate) struct ReleaseLog;

/// While leading, tell this Replicator of every inbound connection
/// (follower wake-ups).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetWake(pub Recipient<WakeLinks>);

/// This node follows again: take the log as the disk thread has it and the
/// new `meta`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ResumeFollowing {
    pub epochs: EpochIndex,
    pub meta: NodeMeta,
    pub commit: u64,
}

/// Stop accepting and end every session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopListener;

/// Follower-side log position, for status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowerPosition {
    pub log_end: u64,
    pub durable: u64,
    pub commit: u64,
}

/// Ask for [`FollowerPosition`].
#[derive(Message)]
#[rtype(result = "FollowerPosition")]
pub(crate) struct GetPosition;

/// A received snapshot, not yet decoded.
pub(crate) struct SnapshotBytes {
    offset: u64,
    epoch: u64,
    bytes: bytes::Bytes,
}

/// A wait for the in-flight write before the log can be reset.
enum Deferred {
    Attach(Attach, oneshot::Sender<Result<LogEnd, AttachRefused>>),
    Truncate(u64, oneshot::Sender<Result<LogEnd, String>>),
    Snapshot(SnapshotBytes, oneshot::Sender<Result<LogEnd, String>>),
    Release(oneshot::Sender<(EpochIndex, u64)>),
}

pub(crate) struct ListenerInit {
    pub node: NodeId,
    pub shared: Arc<NodeShared>,
    pub config: ReplicationConfig,
    pub keys: HandshakeKeys,
    pub disk: DiskHandle,
    pub store: Addr<MetadataStore>,
    pub store_in_flight: EntriesInFlight,
    pub listener: TcpListener,
    pub epochs: EpochIndex,
    pub commit: u64,
    pub meta: NodeMeta,
    pub progress_tx: watch::Sender<LogProgress>,
    /// On the leader: told of every inbound connection (a follower that
    /// started says so by connecting).
    pub wake: Option<Recipient<WakeLinks>>,
}

/// The follower-side acceptor and log owner (see the module docs).
pub struct ReplicaListener {
    node: NodeId,
    shared: Arc<NodeShared>,
    config: ReplicationConfig,
    keys: HandshakeKeys,
    disk: DiskHandle,
    store: Addr<MetadataStore>,
    store_in_flight: EntriesInFlight,
    /// Truncations and snapshot installs the store has not taken yet.
    store_outbox: VecDeque<StoreEvent>,
    listener: Option<TcpListener>,
    epochs: EpochIndex,
    durable: Arc<AtomicU64>,
    commit: u64,
    meta: NodeMeta,
    progress_tx: watch::Sender<LogProgress>,
    sessions: HashMap<u64, SessionHandle>,
    next_session: u64,
    active: Option<u64>,
    write_queue: Vec<Record>,
    write_in_flight: bool,
    deferred: Vec<Deferred>,
    busy: bool,
    wake: Option<Recipient<WakeLinks>>,
    /// A new epoch is being written to `meta`.
    persisting: bool,
    /// Attaches waiting for that write (at most one per session).
    held: Vec<(Attach, AttachReply)>,
}

impl ReplicaListener {
    pub(crate) fn new(init: ListenerInit) -> ReplicaListener {
        let durable = init.epochs.last_offset();
        ReplicaListener {
            node: init.node,
            shared: init.shared,
            config: init.config,
            keys: init.keys,
            disk: init.disk,
            store: init.store,
            store_in_flight: init.store_in_flight,
            store_outbox: VecDeque::new(),
            listener: Some(init.listener),
            epochs: init.epochs,
            durable: Arc::new(AtomicU64::new(durable)),
            commit: init.commit,
            meta: init.meta,
            progress_tx: init.progress_tx,
            sessions: HashMap::new(),
            next_session: 0,
            active: None,
            write_queue: Vec::new(),
            write_in_flight: false,
            deferred: Vec::new(),
            busy: false,
            wake: init.wake,
            persisting: false,
            held: Vec::new(),
        }
    }

    fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    fn publish(&self) {
        let p = LogProgress {
            log_end: self.epochs.last_offset(),
            durable: self.durable(),
            commit: self.commit,
        };
        crate::progress::publish(&self.progress_tx, p);
    }

    /// Back-pressure: a truncation or snapshot install starts only while
    /// the store outbox has room for its event. Otherwise it is refused
    /// before it touches the log; the session closes and the leader retries
    /// after its backoff, by which time the store has caught up. A busy
    /// store so never stops a healthy follower.
    fn store_has_room(&mut self) -> Result<(), String> {
        self.flush_store();
        if self.store_outbox.len() >= MAX_STORE_OUTBOX {
            return Err(format!(
                "the metadata store has not taken the last {MAX_STORE_OUTBOX} truncations/snapshots; \
                 refused for now (the leader retries)"
            ));
        }
        Ok(())
    }

    /// Tell the store of a truncation or snapshot install: in order, never
    /// lost, never with an unbounded send. What its mailbox cannot take now
    /// waits in the bounded outbox for the next event or tick. Resets only
    /// start while the outbox has room ([`Self::store_has_room`], one reset
    /// at a time), so it never holds more than [`MAX_STORE_OUTBOX`]; past
    /// that the bound was broken and the node fail-stops rather than grow it.
    fn tell_store(&mut self, event: StoreEvent) {
        if self.store_outbox.len() >= MAX_STORE_OUTBOX {
            self.fail_stop(format!(
                "bug: the store outbox is over its bound of {MAX_STORE_OUTBOX}"
            ));
            return;
        }
        self.store_outbox.push_back(event);
        self.flush_store();
    }

    fn flush_store(&mut self) {
        while let Some(event) = self.store_outbox.pop_front() {
            let sent = match event {
                StoreEvent::Truncated(to) => match self.store.try_send(Truncated { to }) {
                    Ok(()) => Ok(()),
                    Err(SendError::Full(m)) => Err(Some(StoreEvent::Truncated(m.to))),
                    Err(SendError::Closed(_)) => Err(None),
                },
                StoreEvent::Snapshot(snap) => match self.store.try_send(InstallSnapshot(snap)) {
                    Ok(()) => Ok(()),
                    Err(SendError::Full(m)) => Err(Some(StoreEvent::Snapshot(m.0))),
                    Err(SendError::Closed(_)) => Err(None),
                },
            };
            match sent {
                Ok(()) => {}
                Err(Some(event)) => {
                    // Full: retried on the next event or tick.
                    self.store_outbox.push_front(event);
                    break;
                }
                Err(None) => {
                    // The store stopped: the node is shutting down.
                    self.store_outbox.clear();
                    break;
                }
            }
        }
    }

    /// Every heartbeat interval: retry the store outbox, forget sessions
    /// that ended without a `SessionGone` reaching us.
    fn housekeeping(&mut self) {
        self.flush_store();
        self.sessions.retain(|_, addr| addr.connected());
        if self
            .active
            .is_some_and(|id| !self.sessions.contains_key(&id))
        {
            self.active = None;
        }
    }

    /// The follower's WAL failed: fail-stop. The role becomes `Failed`, so
    /// no session writes or acks anything more and every attach is refused;
    /// the sessions end. What is durable stays; restart the node.
    fn fail_stop(&mut self, reason: String) {
        tracing::error!(node = self.node, %reason, "follower storage failed; no longer replicating: restart the node");
        self.shared.set_role(Role::Failed);
        self.write_queue.clear();
        self.active = None;
        for addr in self.sessions.values() {
            let _ = addr.stop.try_send(StopSession);
        }
        // Nothing queued behind the failure may still touch the log.
        for d in std::mem::take(&mut self.deferred) {
            match d {
                Deferred::Attach(_, tx) => {
                    let _ = tx.send(Err(AttachRefused::Storage(reason.clone())));
                }
                Deferred::Truncate(_, tx) | Deferred::Snapshot(_, tx) => {
                    let _ = tx.send(Err(reason.clone()));
                }
                // Dropping the sender fails the waiting role change.
                Deferred::Release(_) => {}
            }
        }
    }

    fn flush_writes(&mut self, ctx: &mut Context<Self>) {
        if self.write_in_flight || self.write_queue.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.write_queue);
        let last = records.last().map_or(0, |r| r.offset);
        let rx = match self.disk.append(records) {
            Ok(rx) => rx,
            Err(DiskError::QueueFull(_)) => {
                // Transient: drop the unwritten tail; the session's next
                // batch no longer follows the log end, the session closes and
                // the leader resends from the acked offset on a new one.
                tracing::warn!(
                    node = self.node,
                    "disk queue full; dropping the unwritten tail for the leader to resend"
                );
                self.reset_to_durable();
                return;
            }
            Err(e) => {
                self.fail_stop(format!("cannot queue a WAL write: {e}"));
                return;
            }
        };
        self.write_in_flight = true;
        ctx.spawn(rx.into_actor(self).map(move |res, act, ctx| {
            act.write_in_flight = false;
            match res {
                Ok(Ok(durable)) => {
                    let durable = durable.min(last);
                    tracing::trace!(
                        stage = "follower-durable",
                        node = act.node,
                        offset = durable
                    );
                    act.durable.store(durable, Ordering::Release);
                    if let Some(addr) = act.active.and_then(|id| act.sessions.get(&id)) {
                        let _ = addr.durable.try_send(Durable { offset: durable });
                    }
                    act.publish();
                }
                Ok(Err(e)) => {
                    act.fail_stop(format!("WAL write up to offset {last} failed: {e}"));
                }
                Err(_) => act.fail_stop("the disk thread stopped".into()),
            }
            if !act.deferred.is_empty() {
                act.run_deferred(ctx);
            } else {
                act.flush_writes(ctx);
            }
        }));
    }

    /// Forget queued records: the log is what is durable.
    fn reset_to_durable(&mut self) {
        self.write_queue.clear();
        let durable = self.durable();
        if self.epochs.last_offset() > durable {
            self.epochs.truncate_suffix(durable);
            self.tell_store(StoreEvent::Truncated(durable));
        }
        self.publish();
    }

    fn run_deferred(&mut self, ctx: &mut Context<Self>) {
        if self.write_in_flight || self.busy {
            return;
        }
        self.reset_to_durable();
        let Some(job) = (!self.deferred.is_empty()).then(|| self.deferred.remove(0)) else {
            return;
        };
        match job {
            Deferred::Attach(req, tx) => {
                if self.shared.role() != Role::Follower {
                    let _ = tx.send(Err(AttachRefused::NotFollower));
                    self.run_deferred(ctx);
                    return;
                }
                if !req.addr.connected() {
                    // The session ended while waiting.
                    let _ = tx.send(Err(AttachRefused::NotFollower));
                    self.run_deferred(ctx);
                    return;
                }
                if let Some(old) = self.active.take() {
                    if old != req.session {
                        if let Some(addr) = self.sessions.get(&old) {
                            // An inactive session cannot write; if its
                            // mailbox is full it ends on its next refusal.
                            let _ = addr.stop.try_send(StopSession);
                        }
                    }
                }
                self.active = Some(req.session);
                self.sessions.insert(req.session, req.addr);
                let _ = tx.send(Ok((self.epochs.last_offset(), self.epochs.last_epoch())));
                tracing::info!(
                    node = self.node,
                    leader = req.leader,
                    epoch = req.epoch,
                    offset = self.epochs.last_offset(),
                    "following leader"
                );
                self.run_deferred(ctx);
            }
            Deferred::Release(tx) => {
                let _ = tx.send((self.epochs.clone(), self.commit));
                self.run_deferred(ctx);
            }
            Deferred::Truncate(to, tx) => {
                if let Err(e) = self.store_has_room() {
                    let _ = tx.send(Err(e));
                    self.run_deferred(ctx);
                    return;
                }
                if let Err(e) = maybe_truncate(to, self.commit, self.durable()) {
                    let _ = tx.send(Err(e.to_string()));
                    self.run_deferred(ctx);
                    return;
                }
                self.busy = true;
                let job = self.disk.run(move |d| {
                    d.wal.truncate_suffix(to).map_err(|e| e.to_string())?;
                    Ok::<_, String>(d.wal.epochs().clone())
                });
                ctx.spawn(job.into_actor(self).map(move |res, act, ctx| {
                    act.busy = false;
                    let res = match res {
                        Ok(Ok(epochs)) => {
                            act.tell_store(StoreEvent::Truncated(to));
                            tracing::info!(
                                node = act.node,
                                offset = to,
                                "log truncated at the leader's request"
                            );
                            Ok(act.adopt_log(epochs))
                        }
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(res);
                    act.run_deferred(ctx);
                }));
            }
            Deferred::Snapshot(received, tx) => {
                if let Err(e) = self.store_has_room() {
                    let _ = tx.send(Err(e));
                    self.run_deferred(ctx);
                    return;
                }
                self.busy = true;
                // Decode, check, store and reset the WAL on the disk thread:
                // a snapshot may be large.
                let job = self.disk.run(move |d| {
                    let snap = Snapshot::decode(
                        &received.bytes,
                        std::path::Path::new("<snapshot from leader>"),
                    )
                    .map_err(|e| e.to_string())?;
                    if (snap.offset, snap.epoch) != (received.offset, received.epoch) {
                        return Err(format!(
                            "snapshot holds offset {} epoch {}, but its chunks said offset {} epoch {}",
                            snap.offset, snap.epoch, received.offset, received.epoch
                        ));
                    }
                    snap.store(&d.snapshot_dir()).map_err(|e| e.to_string())?;
                    if plan_snapshot_install(d.wal.epochs(), snap.offset, snap.epoch)
                        == SnapshotInstall::ReplaceLog
                    {
                        let base = d.wal.epochs().base_offset();
                        tracing::info!(
                            offset = snap.offset,
                            epoch = snap.epoch,
                            from = base + 1,
                            "the log diverged at the snapshot's offset: dropping all of it"
                        );
                        d.wal.truncate_suffix(base).map_err(|e| e.to_string())?;
                    }
                    d.wal
                        .truncate_prefix(snap.offset, snap.epoch)
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>((d.wal.epochs().clone(), Box::new(snap)))
                });
                ctx.spawn(job.into_actor(self).map(move |res, act, ctx| {
                    act.busy = false;
                    let res = match res {
                        Ok(Ok((epochs, snap))) => {
                            act.commit = act.commit.max(snap.offset);
                            tracing::info!(
                                node = act.node,
                                offset = snap.offset,
                                "snapshot installed"
                            );
                            act.tell_store(StoreEvent::Snapshot(snap));
                            Ok(act.adopt_log(epochs))
                        }
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(res);
                    act.run_deferred(ctx);
                }));
            }
        }
    }

    /// The disk thread reset the log (truncation, snapshot): take its epoch
    /// index; everything in it is durable. Returns the new log end.
    fn adopt_log(&mut self, epochs: EpochIndex) -> LogEnd {
        self.epochs = epochs;
        self.durable
            .store(self.epochs.last_offset(), Ordering::Release);
        self.publish();
        (self.epochs.last_offset(), self.epochs.last_epoch())
    }

    /// Whether `session` may write: it is the active one and this node still
    /// follows (after `become_leader` no session may touch the log).
    fn is_active(&self, session: u64) -> bool {
        self.active == Some(session) && self.shared.role() == Role::Follower
    }

    /// Fence, persist a newer epoch (one at a time: a second leader's Attach
    /// waits until the first is on disk and is then checked against it), and
    /// queue the attach behind the in-flight write.
    fn consider_attach(&mut self, msg: Attach, tx: AttachReply, ctx: &mut Context<Self>) {
        if self.shared.role() != Role::Follower {
            let _ = tx.send(Err(AttachRefused::NotFollower));
            return;
        }
        if self.persisting {
            self.held.push((msg, tx));
            return;
        }
        match maybe_advance_epoch(
            self.meta.current_epoch,
            self.meta.leader,
            msg.epoch,
            msg.leader,
        ) {
            Err(EpochRefused::Stale {
                current, leader, ..
            }) => {
                let _ = tx.send(Err(AttachRefused::StaleEpoch { current, leader }));
                return;
            }
            Err(EpochRefused::Conflict { .. }) => {
                let _ = tx.send(Err(AttachRefused::EpochConflict));
                return;
            }
            Ok(EpochStep::Same) => {
                self.deferred.push(Deferred::Attach(msg, tx));
                self.run_deferred(ctx);
                return;
            }
            Ok(EpochStep::Advance) => {}
        }
        // Persist the new epoch and leader before acting on them.
        let mut meta = self.meta.clone();
        meta.current_epoch = msg.epoch;
        meta.leader = Some(msg.leader);
        meta.commit_hint = meta.commit_hint.max(self.commit.min(self.durable()));
        let to_store = meta.clone();
        self.persisting = true;
        let job = self.disk.run(move |d| d.store_meta_fenced(&to_store));
        ctx.spawn(job.into_actor(self).map(move |res, act, ctx| {
            act.persisting = false;
            match res {
                Ok(Ok(Err(refused))) => {
                    // The node persisted a newer epoch meanwhile.
                    tracing::warn!(node = act.node, epoch = msg.epoch, leader = msg.leader, %refused, "handshake refused: a newer epoch is on disk");
                    let _ = tx.send(Err(match refused {
                        EpochRefused::Stale {
                            current, leader, ..
                        } => AttachRefused::StaleEpoch { current, leader },
                        EpochRefused::Conflict { .. } => AttachRefused::EpochConflict,
                    }));
                }
                Ok(Ok(Ok(()))) => {
                    tracing::info!(
                        node = act.node,
                        epoch = meta.current_epoch,
                        leader = msg.leader,
                        "new epoch persisted"
                    );
                    act.shared.set_epoch_leader(meta.current_epoch, meta.leader);
                    act.meta = meta;
                    act.deferred.push(Deferred::Attach(msg, tx));
                    act.run_deferred(ctx);
                }
                Ok(Err(e)) => {
                    let _ = tx.send(Err(AttachRefused::Storage(e.to_string())));
                }
                Err(e) => {
                    let _ = tx.send(Err(AttachRefused::Storage(e.to_string())));
                }
            }
            // Attaches that arrived meanwhile are judged against the new epoch.
            for (m, t) in std::mem::take(&mut act.held) {
                act.consider_attach(m, t, ctx);
            }
        }));
    }

    /// Queue a truncation or snapshot install from the active `session`; it
    /// runs once the in-flight write is done, and answers the new log end.
    fn defer_log_reset(
        &mut self,
        session: u64,
        job: impl FnOnce(oneshot::Sender<Result<LogEnd, String>>) -> Deferred,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<LogEnd, String>> {
        let (tx, rx) = oneshot::channel();
        if self.is_active(session) {
            self.deferred.push(job(tx));
            self.run_deferred(ctx);
        } else {
            let _ = tx.send(Err("session is not the active one".into()));
        }
        Box::pin(async move { rx.await.unwrap_or(Err("listener stopped".into())) })
    }
}

impl Actor for ReplicaListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        if let Some(listener) = self.listener.take() {
            let accepts = futures::stream::unfold(listener, |l| async move {
                let r = l.accept().await;
                Some((r, l))
            });
            ctx.add_stream(accepts);
        }
        self.publish();
        ctx.run_interval(self.config.heartbeat_interval, |act, _| act.housekeeping());
    }
}

impl StreamHandler<std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>>
    for ReplicaListener
{
    fn handle(
        &mut self,
        item: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
        ctx: &mut Context<Self>,
    ) {
        let (stream, from) = match item {
            Ok(x) => x,
            Err(e) => {
                // E.g. out of file descriptors: pause rather than spin.
                tracing::warn!(node = self.node, error = %e, "accept failed; pausing accepts for 50 ms");
                ctx.wait(actix::fut::wrap_future(tokio::time::sleep(
                    std::time::Duration::from_millis(50),
                )));
                return;
            }
        };
        if self.shared.role() == Role::Leader {
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(WakeLinks);
            }
        }
        self.sessions.retain(|_, a| a.connected());
        if self.sessions.len() >= MAX_SESSIONS {
            tracing::warn!(node = self.node, peer = %from, "too many replication connections; refused");
            return;
        }
        self.next_session += 1;
        let id = self.next_session;
        let init = SessionInit {
            id,
            node: self.node,
            shared: self.shared.clone(),
            config: self.config.clone(),
            keys: self.keys.clone(),
            listener: ListenerHandle {
                attach: ctx.address().recipient(),
                append: ctx.address().recipient(),
                commit: ctx.address().recipient(),
                truncate: ctx.address().recipient(),
                snapshot: ctx.address().recipient(),
                gone: ctx.address().recipient(),
            },
            durable: self.durable.clone(),
            stream,
        };
        let addr = ReplicaSession::new(init).start();
        let handle = SessionHandle {
            durable: addr.clone().recipient(),
            stop: addr.recipient(),
        };
        self.sessions.insert(id, handle);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(node = self.node, "replication listener closed");
    }
}

impl Handler<Attach> for ReplicaListener {
    type Result = ResponseFuture<Result<LogEnd, AttachRefused>>;

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.consider_attach(msg, tx, ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(AttachRefused::Storage("listener stopped".into())))
        })
    }
}

impl Handler<SessionAppend> for ReplicaListener {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: SessionAppend, ctx: &mut Context<Self>) -> Result<(), String> {
        if !self.is_active(msg.session) || !self.deferred.is_empty() || self.busy {
            return Err("session is not the active one".into());
        }
        // A truncation or snapshot the store has not taken yet must reach it
        // before anything that would let durable/commit pass it: refuse (the
        // session closes and the leader resends from the acked offset).
        self.flush_store();
        if !self.store_outbox.is_empty() {
            return Err("the store has not taken the last truncation or snapshot yet".into());
        }
        check_append(&self.epochs, self.meta.current_epoch, &msg.records)
            .map_err(|e| e.to_string())?;
        for r in &msg.records {
            self.epochs
                .append(r.offset, r.epoch)
                .map_err(|e| e.to_string())?;
        }
        self.write_queue.extend(msg.records);
        self.commit = self.commit.max(msg.commit);
        let n = msg.entries.len();
        // Dropped when the store is behind: it reads them back from the WAL.
        // Only while no truncation or snapshot waits for the store: entries
        // must not overtake them.
        if n > 0
            && self.store_outbox.is_empty()
            && self.store_in_flight.reserve(n)
            && self.store.try_send(FollowerEntries(msg.entries)).is_err()
        {
            self.store_in_flight.release(n);
        }
        self.flush_writes(ctx);
        self.publish();
        Ok(())
    }
}

impl Handler<SessionCommit> for ReplicaListener {
    type Result = ();

    fn handle(&mut self, msg: SessionCommit, _ctx: &mut Context<Self>) {
        if self.is_active(msg.session) && msg.commit > self.commit {
            self.commit = msg.commit;
            self.publish();
        }
    }
}

impl Handler<SessionTruncate> for ReplicaListener {
    type Result = ResponseFuture<Result<LogEnd, String>>;

    fn handle(&mut self, msg: SessionTruncate, ctx: &mut Context<Self>) -> Self::Result {
        self.defer_log_reset(msg.session, |tx| Deferred::Truncate(msg.to, tx), ctx)
    }
}

impl Handler<SessionSnapshot> for ReplicaListener {
    type Result = ResponseFuture<Result<LogEnd, String>>;

    fn handle(&mut self, msg: SessionSnapshot, ctx: &mut Context<Self>) -> Self::Result {
        let received = SnapshotBytes {
            offset: msg.offset,
            epoch: msg.epoch,
            bytes: msg.bytes,
        };
        self.defer_log_reset(msg.session, |tx| Deferred::Snapshot(received, tx), ctx)
    }
}

impl Handler<SessionGone> for ReplicaListener {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, _ctx: &mut Context<Self>) {
        self.sessions.remove(&msg.session);
        if self.active == Some(msg.session) {
            self.active = None;
        }
    }
}

impl Handler<GetPosition> for ReplicaListener {
    type Result = MessageResult<GetPosition>;

    fn handle(&mut self, _msg: GetPosition, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(FollowerPosition {
            log_end: self.epochs.last_offset(),
            durable: self.durable(),
            commit: self.commit,
        })
    }
}

impl Handler<ReleaseLog> for ReplicaListener {
    type Result = ResponseFuture<(EpochIndex, u64)>;

    fn handle(&mut self, _msg: ReleaseLog, ctx: &mut Context<Self>) -> Self::Result {
        for addr in self.sessions.values() {
            let _ = addr.stop.try_send(StopSession);
        }
        self.active = None;
        let (tx, rx) = oneshot::channel();
        self.deferred.push(Deferred::Release(tx));
        self.run_deferred(ctx);
        let fallback = (self.epochs.clone(), self.commit);
        Box::pin(async move { rx.await.unwrap_or(fallback) })
    }
}

impl Handler<SetWake> for ReplicaListener {
    type Result = ();

    fn handle(&mut self, msg: SetWake, _ctx: &mut Context<Self>) {
        self.wake = Some(msg.0);
    }
}

impl Handler<ResumeFollowing> for ReplicaListener {
    type Result = ();

    fn handle(&mut self, msg: ResumeFollowing, _ctx: &mut Context<Self>) {
        self.wake = None;
        self.write_queue.clear();
        self.commit = self.commit.max(msg.commit);
        self.meta = msg.meta;
        self.adopt_log(msg.epochs);
    }
}

impl Handler<StopListener> for ReplicaListener {
    type Result = ();

    fn handle(&mut self, _msg: StopListener, ctx: &mut Context<Self>) {
        for addr in self.sessions.values() {
            let _ = addr.stop.try_send(StopSession);
        }
        ctx.stop();
    }
}
