//! `ReplicaListener`: the follower side's acceptor, and the shell around
//! the follower's log owner, [`ReplicaListenerEngine`].
//!
//! It accepts replication connections (a bounded number at once) and starts a
//! [`ReplicaSession`] for each. Sessions do the per-connection protocol; what
//! must be single on a node — the active session, the epoch persisted before
//! it is acted on, the log position and the group-commit queue, the commit
//! point learned, truncations and snapshot installs, the fail-stop — is
//! decided by the engine (see `metawal::engine::follower`). This actor only
//! carries its actions out: it writes `meta` and the WAL on the disk thread,
//! answers the sessions, hands entries and resets to the MetadataStore, and
//! publishes the log's progress.
//!
//! On the leader the listener serves no sessions (each ends with
//! `Reject { NotFollower }`); every inbound connection is passed to the
//! Replicator as a wake-up, so that its disconnected links retry now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use metawal::engine::follower::{MetaWriteError, RequestId, ResetError, SessionId, WriteError};
use metawal::engine::{
    AttachRefused, FollowerAction, FollowerInput, ReplicaListenerEngine, StoreEvent,
};
use metawal::epochs::EpochIndex;
use metawal::handshake::HandshakeKeys;
use metawal::storage::NodeMeta;
use metawal::{NodeId, ReplicationConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::disk::DiskHandle;
use crate::error::DiskError;
use crate::follower::messages::{
    DriverSlot, Durable, ElectionIn, ListenerHandle, LogEnd, SessionHandle, StopSession,
};
use crate::follower::session::{ReplicaSession, SessionInit};
use crate::leader::replicator::WakeLinks;
use crate::members::{LogEvent, LogEventTx};
use crate::progress::LogProgress;
use crate::shared::NodeShared;
use crate::store::{EntriesInFlight, FollowerEntries, InstallSnapshot, MetadataStore, Truncated};

// The handlers of the sessions' requests: a child module, so it sees the
// listener's private state.
#[path = "listener_sessions.rs"]
mod sessions;

/// Most replication connections served at once.
const MAX_SESSIONS: usize = 16;

/// This node is about to lead: end every session and, once the in-flight
/// write is done, answer the log's epoch index and the known commit (or why
/// not: the follower fail-stopped).
#[derive(Message)]
#[rtype(result = "Result<(EpochIndex, u64), String>")]
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

/// A vote is about to be persisted in `epoch`: from now on take nothing
/// from a leader of a lower epoch (its session ends), and answer the log
/// end `(last epoch, last offset)` as of this fence — records queued for
/// the disk included — against which the vote is decided. Refused while
/// this node leads or after a fail-stop (the log it holds is not the log).
#[derive(Message)]
#[rtype(result = "Result<(u64, u64), String>")]
pub(crate) struct Fence {
    pub epoch: u64,
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

/// A caller waiting for the engine's answer to its request.
enum Reply {
    Attach(oneshot::Sender<Result<LogEnd, AttachRefused>>),
    Reset(oneshot::Sender<Result<LogEnd, String>>),
    Release(oneshot::Sender<Result<(EpochIndex, u64), String>>),
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
    /// Where election connections deliver their messages.
    pub driver: DriverSlot,
    /// Where membership log events go (the NodeDriver).
    pub log_events: LogEventTx,
}

/// The follower-side acceptor and the shell of its log owner (see the
/// module docs).
pub struct ReplicaListener {
    node: NodeId,
    engine: ReplicaListenerEngine,
    shared: Arc<NodeShared>,
    config: ReplicationConfig,
    keys: HandshakeKeys,
    disk: DiskHandle,
    store: Addr<MetadataStore>,
    store_in_flight: EntriesInFlight,
    listener: Option<TcpListener>,
    /// The engine's durable offset, read by the sessions.
    durable: Arc<AtomicU64>,
    progress_tx: watch::Sender<LogProgress>,
    sessions: HashMap<SessionId, SessionHandle>,
    next_session: SessionId,
    replies: HashMap<RequestId, Reply>,
    next_request: RequestId,
    wake: Option<Recipient<WakeLinks>>,
    driver: DriverSlot,
    log_events: LogEventTx,
}

impl ReplicaListener {
    pub(crate) fn new(init: ListenerInit) -> ReplicaListener {
        let durable = init.epochs.last_offset();
        ReplicaListener {
            node: init.node,
            // A listener given a Replicator to wake starts on the leader.
            engine: if init.wake.is_some() {
                ReplicaListenerEngine::leading(init.node, init.epochs, init.meta, init.commit)
            } else {
                ReplicaListenerEngine::new(init.node, init.epochs, init.meta, init.commit)
            },
            shared: init.shared,
            config: init.config,
            keys: init.keys,
            disk: init.disk,
            store: init.store,
            store_in_flight: init.store_in_flight,
            listener: Some(init.listener),
            durable: Arc::new(AtomicU64::new(durable)),
            progress_tx: init.progress_tx,
            sessions: HashMap::new(),
            next_session: 0,
            replies: HashMap::new(),
            next_request: 0,
            wake: init.wake,
            driver: init.driver,
            log_events: init.log_events,
        }
    }

    /// Feed one input to the engine and carry out what it asks.
    fn input(&mut self, input: FollowerInput, ctx: &mut Context<Self>) {
        self.engine.handle(input);
        self.run_actions(ctx);
    }

    fn request(&mut self, reply: Reply) -> RequestId {
        self.next_request += 1;
        self.replies.insert(self.next_request, reply);
        self.next_request
    }

    /// Carry out the engine's actions, then publish its progress and hand
    /// the store what waits for it.
    fn run_actions(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.engine.poll_action() {
            self.act(action, ctx);
        }
        self.flush_store();
        let p = self.engine.progress();
        self.durable.store(p.durable, Ordering::Release);
        // While this node leads, the Replicator is the progress channel's
        // one writer (the engine's position is the log it released).
        if !self.engine.is_leading() {
            crate::progress::publish(&self.progress_tx, p);
            let log = self.engine.epochs();
            self.shared
                .set_last_log(log.last_epoch(), log.last_offset());
        }
    }

    fn act(&mut self, action: FollowerAction, ctx: &mut Context<Self>) {
        match action {
            FollowerAction::PersistMeta(meta) => {
                let job = self.disk.persist_meta(meta);
                ctx.spawn(job.into_actor(self).map(|res, act, ctx| {
                    let result = match res {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(refused)) => Err(MetaWriteError::Fenced(refused)),
                        Err(e) => Err(MetaWriteError::Storage(e.to_string())),
                    };
                    act.input(FollowerInput::MetaWritten(result), ctx);
                }));
            }
            FollowerAction::EpochChanged { epoch, leader } => {
                // The node engine publishes it: noted for its pump, which
                // is woken (bounded; a full mailbox loses only the wake-up,
                // the pump reads the note at its next input).
                if let Some(leader) = leader {
                    self.shared.note_leader_attached(epoch, leader);
                    if let Some(pump) = self.driver.get() {
                        let _ = pump.try_send(ElectionIn::LeaderAttached);
                    }
                }
            }
            FollowerAction::Write(records) => match self.disk.append(records) {
                Ok(rx) => {
                    ctx.spawn(rx.into_actor(self).map(|res, act, ctx| {
                        let result = match res {
                            Ok(Ok(durable)) => Ok(durable),
                            Ok(Err(e)) => Err(WriteError::Failed(e)),
                            Err(_) => Err(WriteError::Failed("the disk thread stopped".into())),
                        };
                        act.input(FollowerInput::Written(result), ctx);
                    }));
                }
                Err(DiskError::QueueFull(_)) => {
                    self.engine
                        .handle(FollowerInput::Written(Err(WriteError::QueueFull)));
                }
                Err(e) => {
                    self.engine
                        .handle(FollowerInput::Written(Err(WriteError::Failed(format!(
                            "cannot queue a WAL write: {e}"
                        )))));
                }
            },
            FollowerAction::TruncateWal { to } => {
                self.log_event(LogEvent::Truncated { after: to });
                let job = self.disk.truncate_suffix(to);
                ctx.spawn(job.into_actor(self).map(|res, act, ctx| {
                    let result = res.map_err(ResetError::Storage);
                    act.input(FollowerInput::Truncated(result), ctx);
                }));
            }
            FollowerAction::InstallSnapshot {
                offset,
                epoch,
                bytes,
                replace_log,
            } => {
                // Decode, check, store and reset the WAL on the disk thread:
                // a snapshot may be large.
                let job = self
                    .disk
                    .install_snapshot(offset, epoch, bytes, replace_log);
                ctx.spawn(job.into_actor(self).map(|result, act, ctx| {
                    if let Ok((_, snap)) = &result {
                        act.log_event(LogEvent::Reset {
                            offset: snap.offset,
                            membership: snap.state.membership().cloned(),
                        });
                    }
                    act.input(FollowerInput::SnapshotInstalled(result), ctx);
                }));
            }
            FollowerAction::MembershipAppended { offset, membership } => {
                self.log_event(LogEvent::Appended { offset, membership });
            }
            FollowerAction::Entries(entries) => {
                // Dropped when the store is behind: it reads them back from
                // the WAL.
                let n = entries.len();
                if self.store_in_flight.reserve(n)
                    && self.store.try_send(FollowerEntries(entries)).is_err()
                {
                    self.store_in_flight.release(n);
                }
            }
            FollowerAction::Durable { session, offset } => {
                if let Some(s) = self.sessions.get(&session) {
                    // A full session mailbox drops this one; the next
                    // durable offset (they only grow) carries it.
                    let _ = s.durable.try_send(Durable { offset });
                }
            }
            FollowerAction::StopSession(session) => {
                if let Some(s) = self.sessions.get(&session) {
                    // An inactive session cannot write; if its mailbox is
                    // full it ends on its next refusal.
                    let _ = s.stop.try_send(StopSession);
                }
            }
            FollowerAction::Attached { req, result } => {
                if result.is_ok() {
                    // A leader authenticated and attached: it is alive.
                    self.shared.note_leader_contact();
                }
                if let Some(Reply::Attach(tx)) = self.replies.remove(&req) {
                    let _ = tx.send(result);
                }
            }
            FollowerAction::LogReset { req, result } => {
                if let Some(Reply::Reset(tx)) = self.replies.remove(&req) {
                    let _ = tx.send(result);
                }
            }
            FollowerAction::Released { req, result } => {
                if let Some(Reply::Release(tx)) = self.replies.remove(&req) {
                    let _ = tx.send(result);
                }
            }
            FollowerAction::FailStop(reason) => {
                // The engine logged it and stops every session; the node
                // takes no more writes or proposals. Restart it.
                tracing::error!(node = self.node, %reason, "follower fail-stopped");
                self.shared.fail_stop();
            }
        }
    }

    /// Tell the NodeDriver what the log did with membership entries, in
    /// order and never dropped: a full channel means the driver is stuck,
    /// and the node fail-stops rather than count voters its log does not
    /// have.
    fn log_event(&mut self, event: LogEvent) {
        if let Err(e) = self.log_events.try_send(event) {
            tracing::error!(node = self.node, error = %e, "cannot pass a membership log event to the node driver; node fail-stops");
            self.shared.fail_stop();
        }
        if let Some(pump) = self.driver.get() {
            // A wake-up: the event waits in its channel, and the pump reads
            // it at its next input if this one does not fit.
            let _ = pump.try_send(ElectionIn::LogChanged);
        }
    }

    /// Hand the store the truncations and installs waiting for it, in
    /// order, never with an unbounded send: what its mailbox cannot take now
    /// stays in the engine's bounded outbox for the next event or tick (and
    /// the engine refuses appends and resets meanwhile).
    fn flush_store(&mut self) {
        while let Some(event) = self.engine.poll_store_event() {
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
                    self.engine.store_busy(event);
                    break;
                }
                // The store stopped: the node is shutting down.
                Err(None) => break,
            }
        }
    }

    /// Every heartbeat interval: retry the store outbox, forget sessions
    /// that ended without a `SessionGone` reaching us.
    fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        let gone: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.connected())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.sessions.remove(&id);
            self.engine.handle(FollowerInput::SessionGone(id));
        }
        self.run_actions(ctx);
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
        self.run_actions(ctx);
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| {
            act.housekeeping(ctx)
        });
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
        if self.engine.is_leading() {
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(WakeLinks);
            }
        }
        self.housekeeping(ctx);
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
            driver: self.driver.clone(),
            stream,
        };
        let addr = ReplicaSession::new(init).start();
        let handle = SessionHandle {
            durable: addr.clone().recipient(),
            stop: addr.recipient(),
        };
        self.sessions.insert(id, handle);
        self.input(FollowerInput::SessionOpened(id), ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(node = self.node, "replication listener closed");
    }
}

impl Handler<GetPosition> for ReplicaListener {
    type Result = MessageResult<GetPosition>;

    fn handle(&mut self, _msg: GetPosition, _ctx: &mut Context<Self>) -> Self::Result {
        // While the node leads (or is stepping down) the log is the
        // Replicator's, as published on the progress channel.
        let p = if self.engine.is_leading() {
            *self.progress_tx.borrow()
        } else {
            self.engine.progress()
        };
        MessageResult(FollowerPosition {
            log_end: p.log_end,
            durable: p.durable,
            commit: p.commit,
        })
    }
}

impl Handler<ReleaseLog> for ReplicaListener {
    type Result = ResponseFuture<Result<(EpochIndex, u64), String>>;

    fn handle(&mut self, _msg: ReleaseLog, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let req = self.request(Reply::Release(tx));
        self.input(FollowerInput::Release { req }, ctx);
        Box::pin(async move { rx.await.unwrap_or(Err("listener stopped".into())) })
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

    fn handle(&mut self, msg: ResumeFollowing, ctx: &mut Context<Self>) {
        self.wake = None;
        self.input(
            FollowerInput::Follow {
                epochs: msg.epochs,
                meta: msg.meta,
                commit: msg.commit,
            },
            ctx,
        );
    }
}

impl Handler<Fence> for ReplicaListener {
    type Result = Result<(u64, u64), String>;

    fn handle(&mut self, msg: Fence, ctx: &mut Context<Self>) -> Self::Result {
        let fenced = self.engine.fence(msg.epoch).map_err(|e| e.to_string());
        self.run_actions(ctx);
        fenced
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
