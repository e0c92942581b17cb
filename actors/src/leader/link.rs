//! `FollowerLink`: the leader's connection to one follower.
//!
//! Each link owns its TCP stream, its timer, its writer queue and its link
//! engine ([`FollowerLinkEngine`]), so a slow or dead follower only ever slows its
//! own link. The engine decides everything — when to connect, the
//! authenticated handshake, the start point, what to send next and from
//! where, heartbeats, the session timeout, the backoff; this actor carries
//! its decisions out:
//!
//! - [`LinkAction::Connect`]: a TCP connect bounded by the session timeout;
//! - frames from [`FollowerLinkEngine::poll_transmit`], taken only while the
//!   connection's bounded writer queue has room (so none is dropped);
//! - [`LinkAction::ReadWal`] and [`LinkAction::LoadSnapshot`] on the disk
//!   reader thread (never the writer's queue, so a lagging follower never
//!   delays a group commit), answered as inputs tagged with the connection
//!   generation; a read that raced with a truncation is a
//!   [`ReadFailure::Failed`]: the link reconnects and reads again;
//! - one timer, armed at [`FollowerLinkEngine::poll_timeout`].
//!
//! The link also says how its connection stands ([`PeerConnection`]: in
//! [`LinkStats`] for the follower's status, and in the node's peer table
//! with a rate-limited WARN for each failure): a failed connect is
//! `unreachable`, a refused TLS or HMAC handshake — or one that never
//! completes — `handshake_refused` with its reason, worked out here from
//! what the engine was given while it was handshaking.
//!
//! Reports for the Replicator (connected, acked, disconnected, fenced) go
//! through a small ordered outbox, sent with `try_send` (never the unbounded
//! fire-and-forget send): what the Replicator's mailbox cannot take now is
//! sent on the next event or housekeeping tick, in order, so none is lost
//! and an ack never overtakes its connection's `Connected`. Acks coalesce
//! (they are cumulative); at [`MAX_OUTBOX`] events the outbox collapses to
//! the link's current state.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use metawal::engine::{
    FollowerLinkEngine, LinkAction, LinkInput, LinkReport, LinkSetup, LogView, ReadFailure,
};
use metawal::handshake::HandshakeKeys;
use metawal::record::Record;
use metawal::replication::{decide_start, LinkState, StartPoint};
use metawal::wal::WalError;
use metawal::{NodeId, ReplicationConfig};
use tokio::sync::watch;

use crate::conn::{Connection, QueueError};
use crate::disk::DiskHandle;
use crate::error::DiskError;
use crate::leader::messages::{LeaderLog, LinkEvent};
use crate::progress::LogProgress;
use crate::status::{HandshakeRefusal, PeerConnection};

/// Most link events queued for the Replicator (see the module docs).
const MAX_OUTBOX: usize = 8;

/// The soonest the link's timer fires after it is armed.
const MIN_TIMER: Duration = Duration::from_millis(5);

pub use super::link_stats::LinkStats;

// How the link's connection stands, the outbox to the Replicator, and the
// actor's message and stream handlers: child modules, so they see the
// link's private state.
#[path = "link_connection.rs"]
mod connection;
#[path = "link_handlers.rs"]
mod handlers;
#[path = "link_outbox.rs"]
mod outbox;

/// Stop the link.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopLink;

/// A follower may be back: reconnect now if disconnected.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WakeLink;

/// A read waits for this follower's answer: probe it now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ProbeLink;

pub(crate) struct LinkInit {
    pub node: NodeId,
    pub peer: NodeId,
    pub peer_addr: SocketAddr,
    pub epoch: u64,
    pub keys: HandshakeKeys,
    pub config: ReplicationConfig,
    pub log: Arc<Mutex<LeaderLog>>,
    pub disk: DiskHandle,
    pub replicator: Recipient<LinkEvent>,
    pub progress: watch::Receiver<LogProgress>,
    pub stats: Arc<LinkStats>,
    pub shared: Arc<crate::shared::NodeShared>,
}

/// The leader's log behind its mutex, as the link engine reads it (the
/// lock is held for one read at a time).
struct SharedLog<'a>(&'a Mutex<LeaderLog>);

impl SharedLog<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, LeaderLog> {
        // A panic while holding the lock leaves the log as it was between
        // two whole updates: still usable.
        match self.0.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        }
    }
}

impl LogView for SharedLog<'_> {
    fn start_point(&self, last_offset: u64, last_epoch: u64) -> StartPoint {
        decide_start(&self.lock().epochs, last_offset, last_epoch)
    }

    fn read_tail(&self, from: u64, max_entries: usize, max_bytes: usize) -> Option<Vec<Record>> {
        self.lock().tail.read(from, max_entries, max_bytes)
    }
}

/// The leader's link to one follower (see the module docs).
pub struct FollowerLink {
    node: NodeId,
    peer: NodeId,
    peer_addr: SocketAddr,
    connect_timeout: Duration,
    housekeeping: Duration,
    max_frame_bytes: usize,
    log: Arc<Mutex<LeaderLog>>,
    disk: DiskHandle,
    replicator: Recipient<LinkEvent>,
    progress_rx: Option<watch::Receiver<LogProgress>>,
    stats: Arc<LinkStats>,
    /// Where this link records that its follower answered (check-quorum).
    shared: Arc<crate::shared::NodeShared>,
    /// The epoch this link's leader leads.
    epoch: u64,
    /// A copy of the engine's keys, to tell why a handshake failed.
    keys: HandshakeKeys,
    /// How the connection stands, as last published.
    connection: PeerConnection,
    engine: FollowerLinkEngine,
    conn: Option<Connection>,
    /// The armed timer and when it fires.
    timer: Option<(Instant, SpawnHandle)>,
    /// Events the Replicator's mailbox has not taken yet, in order.
    outbox: VecDeque<LinkEvent>,
    stopping: bool,
}

impl FollowerLink {
    pub(crate) fn new(init: LinkInit) -> FollowerLink {
        let log_progress = *init.progress.borrow();
        let keys = init.keys.clone();
        FollowerLink {
            keys,
            connection: PeerConnection::Connecting,
            epoch: init.epoch,
            node: init.node,
            peer: init.peer,
            peer_addr: init.peer_addr,
            connect_timeout: init.config.session_timeout,
            housekeeping: init.config.heartbeat_interval,
            max_frame_bytes: init.config.max_frame_bytes,
            engine: FollowerLinkEngine::new(
                LinkSetup {
                    node: init.node,
                    peer: init.peer,
                    epoch: init.epoch,
                    keys: init.keys,
                    config: init.config,
                },
                log_progress,
                Instant::now(),
                rand::random(),
            ),
            log: init.log,
            disk: init.disk,
            replicator: init.replicator,
            progress_rx: Some(init.progress),
            stats: init.stats,
            shared: init.shared,
            conn: None,
            timer: None,
            outbox: VecDeque::new(),
            stopping: false,
        }
    }

    /// Feed one input to the engine and carry out what it asks.
    fn input(&mut self, input: LinkInput, ctx: &mut Context<Self>) {
        self.input_hinted(input, None, ctx);
    }

    /// [`Self::input`], with what a handshake failure caused by this input
    /// would be (else worked out from the input).
    fn input_hinted(
        &mut self,
        input: LinkInput,
        hint: Option<PeerConnection>,
        ctx: &mut Context<Self>,
    ) {
        if self.stopping {
            return;
        }
        let handshaking = self.engine.state() == LinkState::Handshaking;
        let failure = match hint {
            Some(h) => Some(h),
            None if handshaking => self.handshake_failure(&input),
            None => None,
        };
        self.engine
            .handle(Instant::now(), input, &SharedLog(&self.log));
        if handshaking && self.engine.state() == LinkState::Connecting {
            // The engine dropped the connection before the handshake
            // completed.
            self.observe(failure.unwrap_or_else(|| {
                PeerConnection::refused(
                    HandshakeRefusal::ProtocolError,
                    "the connection ended during the handshake",
                )
            }));
        }
        self.drive(ctx);
    }
    /// Write what the engine has to send while the writer has room, carry
    /// out its actions, publish the stats and arm the timer.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        // Actions can make frames sendable (and sending can ask for a read):
        // a few rounds settle it; the next input continues anything left.
        for _ in 0..4 {
            self.transmit(ctx);
            let mut acted = false;
            while let Some(action) = self.engine.poll_action() {
                acted = true;
                self.act(action, ctx);
            }
            if !acted {
                break;
            }
        }
        self.stats.update(&self.engine);
        if self.engine.state() == LinkState::Connecting
            && self.connection == PeerConnection::Connected
        {
            // Lost after it worked: retrying.
            self.observe(PeerConnection::Connecting);
        }
        if matches!(
            self.engine.state(),
            LinkState::Probing | LinkState::Streaming | LinkState::Snapshotting
        ) {
            self.observe(PeerConnection::Connected);
        }
        self.arm_timer(ctx);
    }

    fn transmit(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        loop {
            let Some(conn) = &self.conn else { return };
            if !conn.has_room() {
                return;
            }
            let gen = conn.gen;
            let Some(frame) = self.engine.poll_transmit(now, &SharedLog(&self.log)) else {
                return;
            };
            let failure = match conn.send(frame) {
                Ok(()) => continue,
                // Only this actor writes to the queue and it had room: a
                // full queue here means the frame is lost, so the engine
                // must resend it on a new connection.
                Err(QueueError::Full) => "writer queue full",
                Err(QueueError::Closed) => "writer closed",
            };
            self.engine.handle(
                now,
                LinkInput::Closed {
                    gen,
                    reason: failure.to_string(),
                },
                &SharedLog(&self.log),
            );
            // The engine's Close action drops the connection.
            while let Some(action) = self.engine.poll_action() {
                self.act(action, ctx);
            }
        }
    }

    fn act(&mut self, action: LinkAction, ctx: &mut Context<Self>) {
        match action {
            LinkAction::Connect { gen } => self.connect(gen, ctx),
            LinkAction::Close { gen } => {
                if self.conn.as_ref().map(|c| c.gen) == Some(gen) {
                    if let Some(conn) = self.conn.take() {
                        conn.close(ctx);
                    }
                }
            }
            LinkAction::ReadWal {
                gen,
                from,
                max_entries,
                max_bytes,
            } => self.read_wal(gen, from, max_entries, max_bytes, ctx),
            LinkAction::LoadSnapshot { gen } => self.load_snapshot(gen, ctx),
            LinkAction::Report(LinkReport::Heard { since }) => {
                // The engine decided the follower counts as heard, as of
                // `since`; tagged with this link's epoch, so a link of an
                // older leadership still running never counts toward a
                // newer one.
                self.shared
                    .note_follower_heard(self.peer, self.epoch, since);
            }
            LinkAction::Report(report) => {
                let peer = self.peer;
                self.emit(match report {
                    LinkReport::Heard { .. } => return,
                    LinkReport::Connected { matched } => LinkEvent::Connected { peer, matched },
                    LinkReport::Acked { offset } => LinkEvent::Acked { peer, offset },
                    LinkReport::Disconnected => LinkEvent::Disconnected { peer },
                    LinkReport::Identified { directory_id } => {
                        LinkEvent::Identified { peer, directory_id }
                    }
                    LinkReport::Fenced {
                        epoch,
                        leader,
                        proven,
                    } => LinkEvent::Fenced {
                        proven,
                        peer,
                        epoch,
                        leader,
                    },
                });
            }
        }
    }

    /// Arm the timer at the engine's next deadline, unless it is already
    /// armed to fire sooner (then it re-arms when it fires).
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.engine.poll_timeout() else {
            return;
        };
        let now = Instant::now();
        // A deadline still past after the engine ran means a heartbeat is
        // due while the writer queue is full: the queued frames keep the
        // follower busy, so look again in half a heartbeat, not at once.
        let at = if deadline <= now {
            now + (self.housekeeping / 2).max(MIN_TIMER)
        } else {
            deadline.max(now + MIN_TIMER)
        };
        if let Some((armed, handle)) = self.timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(at - now, |act, ctx| {
            act.timer = None;
            act.input(LinkInput::Tick, ctx);
        });
        self.timer = Some((at, handle));
    }

    fn connect(&mut self, gen: u64, ctx: &mut Context<Self>) {
        let addr = self.peer_addr;
        let (peer, timeout) = (self.peer, self.connect_timeout);
        let transport = self.shared.transport.clone();
        let fut = async move { transport.connect(addr, peer, timeout).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let input = match res {
                Ok(stream) => {
                    let conn = Connection::attach(ctx, stream, gen, act.max_frame_bytes, &act.shared.metrics);
                    tracing::debug!(node = act.node, peer = act.peer, addr = %conn.peer, "connected");
                    if let Some(old) = act.conn.replace(conn) {
                        old.close(ctx);
                    }
                    LinkInput::Connected {
                        gen,
                        nonce: rand::random(),
                    }
                }
                Err(e) => {
                    // Logged (WARN, rate-limited) and counted by the peer
                    // table; the engine retries with its bounded backoff.
                    act.observe(e.connection());
                    LinkInput::ConnectFailed {
                        gen,
                        reason: e.to_string(),
                    }
                }
            };
            act.input(input, ctx);
        }));
    }

    fn read_wal(
        &mut self,
        gen: u64,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
        ctx: &mut Context<Self>,
    ) {
        let read = self.disk.read_wal(from, max_entries, max_bytes);
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
            let result = match res {
                Ok(records) => Ok(records),
                Err(DiskError::Wal(WalError::OutOfRange { first, .. })) if from < first => {
                    Err(ReadFailure::BelowLogStart)
                }
                Err(DiskError::Wal(WalError::OutOfRange { last, .. })) if from > last => {
                    Err(ReadFailure::NotYetWritten)
                }
                // A race with a truncation, an I/O error, a corrupt record,
                // a full or stopped reader: the engine reconnects and retries.
                Err(e) => Err(ReadFailure::Failed(e.to_string())),
            };
            act.input(LinkInput::WalRead { gen, from, result }, ctx);
        }));
    }

    fn load_snapshot(&mut self, gen: u64, ctx: &mut Context<Self>) {
        // Load and encode on the reader thread: file reading and CPU only,
        // and snapshot files are written atomically (tmp + rename).
        let job = self.disk.load_snapshot();
        ctx.spawn(job.into_actor(self).map(move |result, act, ctx| {
            act.input(LinkInput::SnapshotLoaded { gen, result }, ctx);
        }));
    }
    /// Every heartbeat interval: deliver what the outbox holds, and stop if
    /// the Replicator is gone (its StopLink may not have fit).
    fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        if !self.replicator.connected() {
            self.stop(ctx);
            return;
        }
        self.flush_outbox();
    }

    fn stop(&mut self, ctx: &mut Context<Self>) {
        self.stopping = true;
        if let Some(conn) = self.conn.take() {
            conn.close(ctx);
        }
        ctx.stop();
    }
}

/// Test hook: make the link panic (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;
