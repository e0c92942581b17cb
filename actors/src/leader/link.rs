//! `FollowerLink`: the leader's connection to one follower.
//!
//! Each link owns its TCP stream, its reconnect backoff, its window of unacked
//! data and its ack tracking, so a slow or dead follower only ever slows its
//! own link. The link's replication state lives in the core's
//! [`LinkProgress`] (Connecting → Handshaking → Probing → Streaming, or
//! Snapshotting); the actor carries out what it allows:
//!
//! 1. connect (after the backoff delay), wait for the follower's `Challenge`,
//!    answer `Hello` with proof, check the `Welcome` proof;
//! 2. decide the start point with the leader's epoch index: send from the
//!    match point, or `Truncate` and wait for `Position`, or send the latest
//!    snapshot in chunks;
//! 3. stream `Append` frames — records read from the shared tail cache or,
//!    for a follower further behind, from the WAL on the disk thread — while
//!    the window has room; the Replicator only publishes "log end is N,
//!    commit is C" on the progress watch channel;
//! 4. pass cumulative acks to the Replicator; send `Heartbeat`s on its own
//!    timer (and at once when the commit moves while idle); drop a follower
//!    silent for `session_timeout` (10 × that while `Snapshotting`) and
//!    reconnect with backoff and jitter, reset after the first ack of a
//!    connection — or at once when woken (a follower connected to the
//!    leader's port), unless the last attempt was less than a
//!    `heartbeat_interval` ago, in which case when that interval is over.
//!
//! Events for the Replicator (connected, acked, disconnected, fenced) go
//! through a small ordered outbox, sent with `try_send` (never the unbounded fire-and-forget send):
//! what the Replicator's mailbox cannot take now is sent on the next event
//! or heartbeat tick, in order, so none is lost and an ack never overtakes
//! its connection's `Connected`. Acks coalesce (they are cumulative); at
//! [`MAX_OUTBOX`] events the outbox collapses to the link's current state.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use metawal::codec::CodecError;
use metawal::frame::{Frame, RejectReason};
use metawal::handshake::{HandshakeError, HandshakeKeys, Nonce};
use metawal::record::{concat_records, Record};
use metawal::replication::{
    decide_start, AckOutcome, Backoff, LinkProgress, LinkState, StartPoint,
};
use metawal::storage::Snapshot;
use metawal::wal::WalError;
use metawal::{NodeId, ReplicationConfig};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::conn::{ConnInput, ConnOwner, Connection, Inbound, QueueError};
use crate::disk::DiskHandle;
use crate::leader::replicator::{LeaderLog, LinkEvent};
use crate::progress::LogProgress;

/// Most link events queued for the Replicator (see the module docs).
const MAX_OUTBOX: usize = 8;

/// Link figures the Replicator reads for status without a message.
#[derive(Debug, Default)]
pub struct LinkStats {
    state: AtomicU8,
    connected: AtomicBool,
    acked: AtomicU64,
    inflight_bytes: AtomicUsize,
    reconnects: AtomicU64,
    snapshots_sent: AtomicU64,
}

impl LinkStats {
    fn update(&self, p: &LinkProgress, connected: bool) {
        let s = match p.state() {
            LinkState::Connecting => 0,
            LinkState::Handshaking => 1,
            LinkState::Probing => 2,
            LinkState::Streaming => 3,
            LinkState::Snapshotting => 4,
        };
        self.state.store(s, Ordering::Relaxed);
        self.connected.store(connected, Ordering::Relaxed);
        self.acked.store(p.acked_offset(), Ordering::Relaxed);
        self.inflight_bytes
            .store(p.inflight_bytes(), Ordering::Relaxed);
        self.reconnects.store(p.reconnects(), Ordering::Relaxed);
    }

    /// The link's state.
    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            1 => LinkState::Handshaking,
            2 => LinkState::Probing,
            3 => LinkState::Streaming,
            4 => LinkState::Snapshotting,
            _ => LinkState::Connecting,
        }
    }

    /// Whether a connection is up (handshake done).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Acked offset.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Bytes in flight.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes.load(Ordering::Relaxed)
    }

    /// Reconnections.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Snapshots sent.
    pub fn snapshots_sent(&self) -> u64 {
        self.snapshots_sent.load(Ordering::Relaxed)
    }
}

/// Stop the link.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopLink;

/// A follower may be back: reconnect now if disconnected.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WakeLink;

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    AwaitChallenge,
    AwaitWelcome { nonce: Nonce },
    AwaitPosition,
    Done,
}

/// A snapshot being sent.
struct SnapshotSend {
    offset: u64,
    epoch: u64,
    bytes: Bytes,
    position: usize,
}

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
}

/// The leader's link to one follower (see the module docs).
pub struct FollowerLink {
    node: NodeId,
    peer: NodeId,
    peer_addr: SocketAddr,
    epoch: u64,
    keys: HandshakeKeys,
    config: ReplicationConfig,
    log: Arc<Mutex<LeaderLog>>,
    disk: DiskHandle,
    replicator: Recipient<LinkEvent>,
    progress_rx: Option<watch::Receiver<LogProgress>>,
    stats: Arc<LinkStats>,
    log_progress: LogProgress,
    link: LinkProgress,
    backoff: Backoff,
    conn: Option<Connection>,
    gen: u64,
    handshake: Handshake,
    connecting: Option<SpawnHandle>,
    retry: Option<SpawnHandle>,
    last_attempt: Option<Instant>,
    reading_wal: bool,
    acked_on_conn: bool,
    last_heard: Instant,
    last_sent: Instant,
    sent_commit: u64,
    /// Highest acked offset the Replicator has been told of.
    reported_ack: u64,
    /// The Replicator was told this connection is up (so it must be told
    /// when it goes down, whatever state the link is in by then).
    reported_connected: bool,
    /// Events the Replicator's mailbox has not taken yet, in order.
    outbox: VecDeque<LinkEvent>,
    snapshot: Option<SnapshotSend>,
    stopping: bool,
}

impl FollowerLink {
    pub(crate) fn new(init: LinkInit) -> FollowerLink {
        let now = Instant::now();
        let log_progress = *init.progress.borrow();
        FollowerLink {
            node: init.node,
            peer: init.peer,
            peer_addr: init.peer_addr,
            epoch: init.epoch,
            keys: init.keys,
            log: init.log,
            disk: init.disk,
            replicator: init.replicator,
            progress_rx: Some(init.progress),
            stats: init.stats,
            log_progress,
            link: LinkProgress::new(init.config.window_bytes, init.config.window_entries),
            backoff: Backoff::new(init.config.backoff_min, init.config.backoff_max),
            config: init.config,
            conn: None,
            gen: 0,
            handshake: Handshake::AwaitChallenge,
            connecting: None,
            retry: None,
            last_attempt: None,
            reading_wal: false,
            acked_on_conn: false,
            last_heard: now,
            last_sent: now,
            sent_commit: 0,
            reported_ack: 0,
            reported_connected: false,
            outbox: VecDeque::new(),
            snapshot: None,
            stopping: false,
        }
    }

    fn update_stats(&self) {
        self.stats.update(
            &self.link,
            self.handshake == Handshake::Done && self.conn.is_some(),
        );
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.conn.is_some() || self.connecting.is_some() {
            return;
        }
        let addr = self.peer_addr;
        let timeout = self.config.session_timeout;
        self.last_attempt = Some(Instant::now());
        let fut = async move { tokio::time::timeout(timeout, TcpStream::connect(addr)).await };
        let handle = ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.connecting = None;
            match res {
                Ok(Ok(stream)) => act.on_connected(stream, ctx),
                Ok(Err(e)) => {
                    tracing::debug!(node = act.node, peer = act.peer, error = %e, "connect failed");
                    act.schedule_reconnect(ctx);
                }
                Err(_) => {
                    tracing::debug!(node = act.node, peer = act.peer, "connect timed out");
                    act.schedule_reconnect(ctx);
                }
            }
        }));
        self.connecting = Some(handle);
    }

    fn schedule_reconnect(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let delay = self.backoff.next_delay(rand::random::<f64>());
        tracing::debug!(
            node = self.node,
            peer = self.peer,
            delay_ms = delay.as_millis() as u64,
            "reconnecting after backoff"
        );
        self.retry = Some(ctx.run_later(delay, |act, ctx| {
            act.retry = None;
            act.connect(ctx);
        }));
    }

    /// The follower signalled it is back: retry now instead of waiting out
    /// the backoff — or, if the last attempt was less than a
    /// `heartbeat_interval` ago, as soon as that interval is over.
    fn wake(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.conn.is_some() || self.connecting.is_some() {
            return;
        }
        if let Some(h) = self.retry.take() {
            ctx.cancel_future(h);
        }
        let since = self.last_attempt.map(|t| t.elapsed());
        let wait = since.map_or(Duration::ZERO, |s| {
            self.config.heartbeat_interval.saturating_sub(s)
        });
        tracing::debug!(
            node = self.node,
            peer = self.peer,
            wait_ms = wait.as_millis() as u64,
            "woken: reconnecting"
        );
        self.retry = Some(ctx.run_later(wait, |act, ctx| {
            act.retry = None;
            act.connect(ctx);
        }));
    }

    fn on_connected(&mut self, stream: TcpStream, ctx: &mut Context<Self>) {
        self.gen += 1;
        let conn = Connection::attach(ctx, stream, self.gen, self.config.max_frame_bytes);
        tracing::debug!(node = self.node, peer = self.peer, addr = %conn.peer, "connected; awaiting challenge");
        self.conn = Some(conn);
        self.link.on_connected();
        self.handshake = Handshake::AwaitChallenge;
        self.acked_on_conn = false;
        self.reading_wal = false;
        self.snapshot = None;
        let now = Instant::now();
        self.last_heard = now;
        self.last_sent = now;
        self.update_stats();
    }

    /// Drop the connection (if any) and reconnect later.
    fn disconnect(&mut self, ctx: &mut Context<Self>, reason: &str) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let was_connected = std::mem::take(&mut self.reported_connected);
        tracing::info!(
            node = self.node,
            peer = self.peer,
            epoch = self.epoch,
            offset = self.link.acked_offset(),
            reason,
            "follower link down"
        );
        conn.close(ctx);
        self.link.on_disconnected();
        self.handshake = Handshake::AwaitChallenge;
        self.snapshot = None;
        self.update_stats();
        if was_connected {
            self.emit(LinkEvent::Disconnected { peer: self.peer });
        }
        self.schedule_reconnect(ctx);
    }

    fn send(&mut self, frame: Frame, ctx: &mut Context<Self>) -> bool {
        let Some(conn) = &self.conn else {
            return false;
        };
        match conn.send(frame) {
            Ok(()) => {
                self.last_sent = Instant::now();
                true
            }
            Err(QueueError::Full) => false,
            Err(QueueError::Closed) => {
                self.disconnect(ctx, "writer closed");
                false
            }
        }
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match (self.handshake, frame) {
            (Handshake::AwaitChallenge, frame) => match self.keys.check_challenge(&frame) {
                Ok(info) if info.node_id != self.peer => {
                    tracing::warn!(
                        node = self.node,
                        peer = self.peer,
                        got = info.node_id,
                        "the peer at this address is a different node; check the peers config"
                    );
                    self.disconnect(ctx, "wrong node id");
                }
                Ok(info) => {
                    let nonce: Nonce = rand::random();
                    match self.keys.hello(self.epoch, &info.nonce, &nonce) {
                        Ok(hello) => {
                            self.handshake = Handshake::AwaitWelcome { nonce };
                            self.send(hello, ctx);
                        }
                        Err(e) => self.handshake_failed(e, ctx),
                    }
                }
                Err(e) => self.handshake_failed(e, ctx),
            },
            (Handshake::AwaitWelcome { nonce }, frame) => {
                match self.keys.check_welcome(&nonce, self.peer, &frame) {
                    Ok(w) => self.decide(w.last_offset, w.last_epoch, ctx),
                    Err(e) => self.handshake_failed(e, ctx),
                }
            }
            (
                Handshake::AwaitPosition,
                Frame::Position {
                    last_offset,
                    last_epoch,
                },
            ) => self.decide(last_offset, last_epoch, ctx),
            (Handshake::Done, Frame::Ack { offset }) => self.on_ack(offset, ctx),
            // Acks of appends sent before a switch to a snapshot.
            (Handshake::AwaitPosition, Frame::Ack { .. }) => {}
            (_, other) => {
                tracing::warn!(node = self.node, peer = self.peer, frame = other.kind(), state = %self.link.state(), "unexpected frame from follower");
                self.disconnect(ctx, "protocol error");
            }
        }
    }

    fn handshake_failed(&mut self, e: HandshakeError, ctx: &mut Context<Self>) {
        if let HandshakeError::Rejected {
            reason: RejectReason::StaleEpoch | RejectReason::EpochConflict,
            epoch,
            leader,
        } = &e
        {
            self.emit(LinkEvent::Fenced {
                peer: self.peer,
                epoch: *epoch,
                leader: *leader,
            });
        }
        tracing::warn!(node = self.node, peer = self.peer, epoch = self.epoch, error = %e, "handshake with follower failed");
        self.disconnect(ctx, "handshake failed");
    }

    /// Pick the start point for a follower whose log ends at `(offset, epoch)`.
    fn decide(&mut self, last_offset: u64, last_epoch: u64, ctx: &mut Context<Self>) {
        let start = {
            let log = match self.log.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            decide_start(&log.epochs, last_offset, last_epoch)
        };
        tracing::debug!(
            node = self.node,
            peer = self.peer,
            offset = last_offset,
            epoch = last_epoch,
            ?start,
            "start point"
        );
        match start {
            StartPoint::Matched { matched } => {
                self.handshake = Handshake::Done;
                self.link.on_matched(matched);
                self.update_stats();
                self.reported_ack = matched;
                self.reported_connected = true;
                self.emit(LinkEvent::Connected {
                    peer: self.peer,
                    matched,
                });
                self.pump(ctx);
            }
            StartPoint::Truncate { to } => {
                self.handshake = Handshake::AwaitPosition;
                tracing::info!(
                    node = self.node,
                    peer = self.peer,
                    offset = to,
                    "follower's log diverged; truncating it"
                );
                self.send(Frame::Truncate { to }, ctx);
            }
            StartPoint::Snapshot => self.start_snapshot(ctx),
        }
    }

    fn start_snapshot(&mut self, ctx: &mut Context<Self>) {
        self.handshake = Handshake::AwaitPosition;
        self.link.on_snapshot_started();
        self.update_stats();
        let gen = self.gen;
        let job = self
            .disk
            .run(|d| -> Result<Option<(u64, u64, Vec<u8>)>, String> {
                let snap = Snapshot::load_latest(&d.snapshot_dir()).map_err(|e| e.to_string())?;
                match snap {
                    None => Ok(None),
                    Some(s) => {
                        let bytes = s.encode().map_err(|e| e.to_string())?;
                        Ok(Some((s.offset, s.epoch, bytes)))
                    }
                }
            });
        ctx.spawn(job.into_actor(self).map(move |res, act, ctx| {
            if act.gen != gen || act.conn.is_none() {
                return;
            }
            match res {
                Ok(Ok(Some((offset, epoch, bytes)))) => {
                    tracing::info!(node = act.node, peer = act.peer, offset, bytes = bytes.len(), "follower is behind the log start; sending a snapshot");
                    act.stats.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    act.snapshot = Some(SnapshotSend {
                        offset,
                        epoch,
                        bytes: Bytes::from(bytes),
                        position: 0,
                    });
                    act.pump_snapshot(ctx);
                }
                Ok(Ok(None)) => {
                    tracing::error!(node = act.node, peer = act.peer, "follower needs a snapshot but none exists");
                    act.disconnect(ctx, "no snapshot");
                }
                Ok(Err(e)) => {
                    tracing::error!(node = act.node, peer = act.peer, error = %e, "cannot load the snapshot");
                    act.disconnect(ctx, "snapshot unavailable");
                }
                Err(e) => {
                    tracing::error!(node = act.node, peer = act.peer, error = %e, "cannot load the snapshot");
                    act.disconnect(ctx, "snapshot unavailable");
                }
            }
        }));
    }

    fn pump_snapshot(&mut self, ctx: &mut Context<Self>) {
        let chunk = self.config.batch_bytes;
        while let Some(s) = self.snapshot.as_mut() {
            if s.position >= s.bytes.len() {
                self.snapshot = None;
                break;
            }
            let end = (s.position + chunk).min(s.bytes.len());
            let frame = Frame::SnapshotChunk {
                offset: s.offset,
                epoch: s.epoch,
                total_len: s.bytes.len() as u64,
                position: s.position as u64,
                data: s.bytes.slice(s.position..end),
            };
            if !self.send(frame, ctx) {
                // Writer busy: the heartbeat tick continues.
                return;
            }
            if let Some(s) = self.snapshot.as_mut() {
                s.position = end;
            }
        }
    }

    fn on_ack(&mut self, offset: u64, ctx: &mut Context<Self>) {
        match self.link.on_ack(offset) {
            AckOutcome::Advanced { from, to } => {
                tracing::trace!(
                    stage = "ack",
                    node = self.node,
                    peer = self.peer,
                    offset = to,
                    entries = to - from
                );
                if !self.acked_on_conn {
                    self.acked_on_conn = true;
                    self.backoff.reset();
                }
                self.update_stats();
                self.report_ack();
                self.pump(ctx);
            }
            AckOutcome::Stale => {
                if !self.acked_on_conn {
                    self.acked_on_conn = true;
                    self.backoff.reset();
                }
            }
            AckOutcome::Beyond { sent } => {
                tracing::warn!(
                    node = self.node,
                    peer = self.peer,
                    offset,
                    sent,
                    "follower acked more than was sent; ignored"
                );
            }
        }
    }

    /// Pass the acked offset to the Replicator. If its mailbox is full the
    /// heartbeat tick tries again: the last ack of a burst must arrive.
    fn report_ack(&mut self) {
        let offset = self.link.acked_offset();
        if offset <= self.reported_ack {
            return;
        }
        self.reported_ack = offset;
        self.emit(LinkEvent::Acked {
            peer: self.peer,
            offset,
        });
    }

    /// Queue `event` for the Replicator, in order, and send what its
    /// mailbox takes now (see the module docs).
    fn emit(&mut self, event: LinkEvent) {
        if matches!(event, LinkEvent::Acked { .. })
            && matches!(self.outbox.back(), Some(LinkEvent::Acked { .. }))
        {
            self.outbox.pop_back();
        }
        if self.outbox.len() >= MAX_OUTBOX {
            // Collapse to what the Replicator must end up knowing: the
            // connection went down, and is up again at the acked offset if
            // the link is streaming now.
            tracing::warn!(
                node = self.node,
                peer = self.peer,
                "Replicator busy; link events collapsed to the link's state"
            );
            self.outbox.clear();
            self.outbox
                .push_back(LinkEvent::Disconnected { peer: self.peer });
            if self.reported_connected {
                self.outbox.push_back(LinkEvent::Connected {
                    peer: self.peer,
                    matched: self.link.acked_offset(),
                });
            }
            if !matches!(
                event,
                LinkEvent::Connected { .. }
                    | LinkEvent::Acked { .. }
                    | LinkEvent::Disconnected { .. }
            ) {
                self.outbox.push_back(event);
            }
        } else {
            self.outbox.push_back(event);
        }
        self.flush_outbox();
    }

    /// Send queued events until the Replicator's mailbox is full.
    fn flush_outbox(&mut self) {
        while let Some(event) = self.outbox.pop_front() {
            match self.replicator.try_send(event) {
                Ok(()) => {}
                Err(SendError::Full(event)) => {
                    self.outbox.push_front(event);
                    break;
                }
                Err(SendError::Closed(_)) => {
                    // The Replicator stopped: it stops this link too.
                    self.outbox.clear();
                    break;
                }
            }
        }
    }

    /// Send what the window allows.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.snapshot.is_some() {
            self.pump_snapshot(ctx);
            return;
        }
        let mut sent_any = false;
        while self.conn.is_some() && self.link.can_send() && !self.reading_wal {
            let next = self.link.next_offset();
            let end = self.log_progress.log_end;
            if next > end {
                break;
            }
            let (room_bytes, room_entries) = self.link.room();
            let max_bytes = self.config.batch_bytes.min(room_bytes).max(1);
            let max_entries = (room_entries as u64).min(end - next + 1) as usize;
            let cached = {
                let log = match self.log.lock() {
                    Ok(l) => l,
                    Err(p) => p.into_inner(),
                };
                log.tail.read(next, max_entries, max_bytes)
            };
            match cached {
                Some(records) if !records.is_empty() => {
                    if !self.send_append(records, ctx) {
                        break;
                    }
                    sent_any = true;
                }
                _ if next > self.log_progress.durable => {
                    // Not cached and not yet written: the next progress
                    // update (durability) brings it within reach.
                    break;
                }
                _ => {
                    let upto = self.log_progress.durable;
                    let max_entries = max_entries.min((upto - next + 1) as usize);
                    self.read_wal(next, max_entries, max_bytes, ctx);
                    break;
                }
            }
        }
        // Tell an idle follower about a new commit at once.
        if !sent_any
            && self.handshake == Handshake::Done
            && self.log_progress.commit > self.sent_commit
        {
            let commit = self.log_progress.commit;
            if self.send(Frame::Heartbeat { commit }, ctx) {
                self.sent_commit = commit;
            }
        }
    }

    fn send_append(&mut self, mut records: Vec<Record>, ctx: &mut Context<Self>) -> bool {
        // Reads return at least one record even past `max_bytes`: keep the
        // batch within the window's byte room unless nothing is in flight
        // (a single record is always allowed into an empty window).
        if self.link.inflight_bytes() > 0 {
            let (room, _) = self.link.room();
            let mut total = 0;
            let fit = records
                .iter()
                .take_while(|r| {
                    total += r.len();
                    total <= room
                })
                .count();
            records.truncate(fit);
        }
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return false;
        };
        let (first, last) = (first.offset, last.offset);
        let entries = records.len();
        let payload = concat_records(&records);
        let bytes = payload.len();
        let commit = self.log_progress.commit;
        let frame = Frame::Append {
            first_offset: first,
            records: payload,
            commit,
        };
        if !self.send(frame, ctx) {
            return false;
        }
        self.sent_commit = commit;
        self.link.on_sent(last, entries, bytes);
        self.update_stats();
        tracing::trace!(
            stage = "send",
            node = self.node,
            peer = self.peer,
            offset = first,
            entries,
            bytes
        );
        true
    }

    fn read_wal(
        &mut self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
        ctx: &mut Context<Self>,
    ) {
        self.reading_wal = true;
        let gen = self.gen;
        let read = self
            .disk
            .run(move |d| d.wal.read(from, max_entries, max_bytes));
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
            act.reading_wal = false;
            if act.gen != gen || act.link.next_offset() != from {
                act.pump(ctx);
                return;
            }
            match res {
                Ok(Ok(records)) if !records.is_empty() => {
                    if act.send_append(records, ctx) {
                        act.pump(ctx);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(WalError::OutOfRange { first, .. })) if from < first => {
                    // The WAL dropped these entries since the handshake.
                    act.start_snapshot(ctx);
                }
                Ok(Err(WalError::OutOfRange { last, .. })) if from > last => {
                    // Not written yet; a later progress update retries.
                }
                Ok(Err(e)) => {
                    tracing::error!(node = act.node, peer = act.peer, offset = from, error = %e, "cannot read the WAL for a follower");
                    act.disconnect(ctx, "WAL read failed");
                }
                Err(e) => {
                    tracing::error!(node = act.node, peer = act.peer, offset = from, error = %e, "disk thread unavailable");
                    act.disconnect(ctx, "WAL read failed");
                }
            }
        }));
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if !self.replicator.connected() {
            // The Replicator stopped (its StopLink may not have fit).
            self.stopping = true;
            ctx.stop();
            return;
        }
        self.flush_outbox();
        if self.conn.is_none() {
            return;
        }
        if self.handshake == Handshake::Done {
            self.report_ack();
        }
        let now = Instant::now();
        // Loading, sending and installing a snapshot can take longer than a
        // heartbeat round trip; the follower acks as it receives chunks, but
        // is silent while it installs.
        let limit = if self.link.state() == LinkState::Snapshotting {
            self.config.session_timeout * 10
        } else {
            self.config.session_timeout
        };
        if now.saturating_duration_since(self.last_heard) > limit {
            self.disconnect(ctx, "follower silent past the session timeout");
            return;
        }
        if self.handshake == Handshake::Done
            && now.saturating_duration_since(self.last_sent) >= self.config.heartbeat_interval
        {
            let commit = self.log_progress.commit;
            if self.send(Frame::Heartbeat { commit }, ctx) {
                self.sent_commit = commit;
            }
        }
        self.pump(ctx);
    }
}

impl Actor for FollowerLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        if let Some(rx) = self.progress_rx.take() {
            ctx.add_stream(crate::progress::updates(rx));
        }
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| {
            act.heartbeat(ctx)
        });
        self.connect(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        tracing::debug!(node = self.node, peer = self.peer, "follower link stopped");
    }
}

impl StreamHandler<LogProgress> for FollowerLink {
    fn handle(&mut self, p: LogProgress, ctx: &mut Context<Self>) {
        self.log_progress = p;
        self.pump(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The Replicator is gone; StopLink follows.
    }
}

impl StreamHandler<ConnInput> for FollowerLink {
    fn handle(&mut self, input: ConnInput, ctx: &mut Context<Self>) {
        if self.conn.as_ref().map(|c| c.gen) != Some(input.gen) {
            return; // from an older connection
        }
        match input.item {
            Inbound::Frame(f) => self.on_frame(f, ctx),
            Inbound::Error(e) => {
                tracing::warn!(node = self.node, peer = self.peer, error = %e, "bad data from follower");
                self.disconnect(ctx, "read error");
            }
            Inbound::Closed => self.disconnect(ctx, "closed by follower"),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // Overridden: the default stops the actor; the link must reconnect.
    }
}

impl ConnOwner for FollowerLink {
    fn writer_done(&mut self, gen: u64, result: Result<(), CodecError>, ctx: &mut Context<Self>) {
        if self.conn.as_ref().map(|c| c.gen) != Some(gen) {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(node = self.node, peer = self.peer, error = %e, "write to follower failed");
        }
        self.disconnect(ctx, "writer ended");
    }
}

impl Handler<WakeLink> for FollowerLink {
    type Result = ();

    fn handle(&mut self, _msg: WakeLink, ctx: &mut Context<Self>) {
        self.wake(ctx);
    }
}

/// Test hook: make the link panic (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(feature = "fault-injection")]
impl Handler<InjectPanic> for FollowerLink {
    type Result = ();

    fn handle(&mut self, _msg: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("fault injection: FollowerLink to node {} panics", self.peer);
    }
}

impl Handler<StopLink> for FollowerLink {
    type Result = ();

    fn handle(&mut self, _msg: StopLink, ctx: &mut Context<Self>) {
        self.stopping = true;
        if let Some(conn) = self.conn.take() {
            conn.close(ctx);
        }
        ctx.stop();
    }
}
