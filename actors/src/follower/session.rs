//! `ReplicaSession`: one inbound replication connection on a follower.
//!
//! It speaks first (`Challenge` with a fresh nonce), checks the leader's
//! `Hello` (protocol, cluster id, HMAC proof, epoch fencing), asks the
//! [`ReplicaListener`] to make it the active session (which persists a higher
//! epoch first) and answers `Welcome` with its log end, or `Reject` with the
//! reason. Then it checks every `Append` — CRC and decoding of each record,
//! contiguity and epochs — before passing it on, carries out `Truncate` and
//! snapshot installs, and acks durable offsets as the listener reports them.
//!
//! Anything malformed closes the connection with a logged reason; nothing from
//! it is applied. A leader silent for `session_timeout` is dropped too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use metawal::codec::CodecError;
use metawal::frame::{Frame, RejectReason};
use metawal::handshake::{reject, HandshakeKeys, Nonce};
use metawal::record::RecordReader;
use metawal::{NodeId, ReplicationConfig};
use tokio::net::TcpStream;

use crate::conn::{ConnInput, ConnOwner, Connection, Inbound};
use crate::follower::listener::{
    Attach, AttachRefused, ReplicaListener, SessionAppend, SessionCommit, SessionGone,
    SessionSnapshot, SessionTruncate,
};
use crate::shared::NodeShared;

/// Largest snapshot a follower accepts.
const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;

/// The listener reports a new durable offset.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Durable {
    pub offset: u64,
}

/// End the session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopSession;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello { nonce: Nonce },
    Attaching,
    Ready { leader: NodeId, epoch: u64 },
}

struct SnapshotRecv {
    offset: u64,
    epoch: u64,
    total: u64,
    buf: BytesMut,
}

pub(crate) struct SessionInit {
    pub id: u64,
    pub node: NodeId,
    pub shared: Arc<NodeShared>,
    pub config: ReplicationConfig,
    pub keys: HandshakeKeys,
    pub listener: Addr<ReplicaListener>,
    pub durable: Arc<AtomicU64>,
    pub stream: TcpStream,
}

/// One inbound replication connection (see the module docs).
pub struct ReplicaSession {
    id: u64,
    node: NodeId,
    shared: Arc<NodeShared>,
    config: ReplicationConfig,
    keys: HandshakeKeys,
    listener: Addr<ReplicaListener>,
    durable: Arc<AtomicU64>,
    stream: Option<TcpStream>,
    conn: Option<Connection>,
    phase: Phase,
    last_heard: Instant,
    last_ack: Instant,
    acked: u64,
    snapshot: Option<SnapshotRecv>,
}

impl ReplicaSession {
    pub(crate) fn new(init: SessionInit) -> ReplicaSession {
        let now = Instant::now();
        ReplicaSession {
            id: init.id,
            node: init.node,
            shared: init.shared,
            config: init.config,
            keys: init.keys,
            listener: init.listener,
            durable: init.durable,
            stream: Some(init.stream),
            conn: None,
            phase: Phase::AwaitHello { nonce: [0; 16] },
            last_heard: now,
            last_ack: now,
            acked: 0,
            snapshot: None,
        }
    }

    fn leader(&self) -> Option<NodeId> {
        match self.phase {
            Phase::Ready { leader, .. } => Some(leader),
            _ => None,
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>, reason: &str) {
        if let Some(conn) = self.conn.take() {
            tracing::info!(node = self.node, peer = ?self.leader(), addr = %conn.peer, reason, "replication session closed");
            conn.close(ctx);
        }
        ctx.stop();
    }

    /// Send a `Reject` and close once it is written (closing at once would
    /// drop it unsent). The writer's end stops the session; a peer that does
    /// not read is cut off after the session timeout.
    fn reject_and_close(&mut self, frame: Frame, ctx: &mut Context<Self>, reason: &str) {
        let Some(conn) = self.conn.take() else {
            ctx.stop();
            return;
        };
        if conn.send(frame).is_err() {
            self.conn = Some(conn);
            self.close(ctx, reason);
            return;
        }
        tracing::info!(node = self.node, addr = %conn.peer, reason, "replication session closed");
        conn.close_after_flush(ctx);
        ctx.run_later(self.config.session_timeout, |_, ctx| ctx.stop());
    }

    fn send(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let Some(conn) = &self.conn else {
            return;
        };
        if conn.send(frame).is_err() {
            self.close(ctx, "writer closed or stuck");
        }
    }

    fn ack(&mut self, offset: u64, ctx: &mut Context<Self>) {
        if matches!(self.phase, Phase::Ready { .. }) {
            self.acked = self.acked.max(offset);
            self.last_ack = Instant::now();
            self.send(Frame::Ack { offset }, ctx);
        }
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match (self.phase, frame) {
            (Phase::AwaitHello { nonce }, frame) => self.on_hello(nonce, frame, ctx),
            (Phase::Attaching, other) => {
                tracing::warn!(
                    node = self.node,
                    frame = other.kind(),
                    "frame before the handshake finished"
                );
                self.close(ctx, "protocol error");
            }
            (
                Phase::Ready { epoch, .. },
                Frame::Append {
                    first_offset,
                    records,
                    commit,
                },
            ) => self.on_append(epoch, first_offset, records, commit, ctx),
            (Phase::Ready { .. }, Frame::Heartbeat { commit }) => {
                let _ = self.listener.try_send(SessionCommit {
                    session: self.id,
                    commit,
                });
                if self.last_ack.elapsed() >= self.config.heartbeat_interval / 2 {
                    let durable = self.durable.load(Ordering::Acquire);
                    self.ack(durable, ctx);
                }
            }
            (Phase::Ready { .. }, Frame::Truncate { to }) => {
                let req = self.listener.send(SessionTruncate {
                    session: self.id,
                    to,
                });
                self.report_position(req, "truncation refused", ctx);
            }
            (
                Phase::Ready { .. },
                Frame::SnapshotChunk {
                    offset,
                    epoch,
                    total_len,
                    position,
                    data,
                },
            ) => self.on_snapshot_chunk(offset, epoch, total_len, position, data, ctx),
            (_, other) => {
                tracing::warn!(
                    node = self.node,
                    frame = other.kind(),
                    "unexpected frame from leader"
                );
                self.close(ctx, "protocol error");
            }
        }
    }

    fn on_hello(&mut self, nonce: Nonce, frame: Frame, ctx: &mut Context<Self>) {
        let current = self.shared.epoch();
        let known_leader = self.shared.leader();
        let info = match self.keys.check_hello(&nonce, current, known_leader, &frame) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(node = self.node, epoch = current, error = %e, "leader handshake refused");
                let frame = reject(&e, current, known_leader);
                self.reject_and_close(frame, ctx, "handshake refused");
                return;
            }
        };
        self.phase = Phase::Attaching;
        let req = self.listener.send(Attach {
            session: self.id,
            addr: ctx.address(),
            leader: info.leader_id,
            epoch: info.epoch,
        });
        ctx.wait(req.into_actor(self).map(move |res, act, ctx| {
            let refused = match res {
                Ok(Ok((last_offset, last_epoch))) => {
                    match act.keys.welcome(&info.nonce, last_offset, last_epoch) {
                        Ok(frame) => {
                            act.phase = Phase::Ready {
                                leader: info.leader_id,
                                epoch: info.epoch,
                            };
                            act.acked = last_offset;
                            act.send(frame, ctx);
                            return;
                        }
                        Err(e) => {
                            tracing::error!(node = act.node, error = %e, "cannot build Welcome");
                            RejectReason::BadProof
                        }
                    }
                }
                Ok(Err(AttachRefused::NotFollower)) => RejectReason::NotFollower,
                Ok(Err(AttachRefused::StaleEpoch { .. })) => RejectReason::StaleEpoch,
                Ok(Err(AttachRefused::EpochConflict)) => RejectReason::EpochConflict,
                Ok(Err(AttachRefused::Storage(e))) => {
                    tracing::error!(node = act.node, error = %e, "cannot persist the new epoch");
                    RejectReason::NotFollower
                }
                Err(_) => RejectReason::NotFollower,
            };
            tracing::warn!(node = act.node, leader = info.leader_id, epoch = info.epoch, reason = ?refused, "leader refused");
            let frame = Frame::Reject {
                reason: refused,
                epoch: act.shared.epoch(),
                leader: act.shared.leader(),
            };
            act.reject_and_close(frame, ctx, "leader refused");
        }));
    }

    fn on_append(
        &mut self,
        epoch: u64,
        first_offset: u64,
        records: Bytes,
        commit: u64,
        ctx: &mut Context<Self>,
    ) {
        let mut recs = Vec::new();
        let mut entries = Vec::new();
        for item in RecordReader::new(records) {
            match item {
                Ok((r, e)) => {
                    recs.push(r);
                    entries.push(e);
                }
                Err(e) => {
                    tracing::warn!(node = self.node, epoch, offset = first_offset + recs.len() as u64, error = %e, "bad record from leader; nothing of this batch is written");
                    self.close(ctx, "bad record");
                    return;
                }
            }
        }
        if recs.first().is_some_and(|r| r.offset != first_offset) {
            tracing::warn!(
                node = self.node,
                offset = first_offset,
                "Append's first_offset does not match its first record"
            );
            self.close(ctx, "bad append");
            return;
        }
        let req = self.listener.send(SessionAppend {
            session: self.id,
            records: recs,
            entries,
            commit,
        });
        // Wait: stop reading the socket until the listener took the batch.
        ctx.wait(req.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(node = act.node, offset = first_offset, error = %e, "append refused");
                act.close(ctx, "append refused");
            }
            Err(_) => act.close(ctx, "listener gone"),
        }));
    }

    fn on_snapshot_chunk(
        &mut self,
        offset: u64,
        epoch: u64,
        total: u64,
        position: u64,
        data: Bytes,
        ctx: &mut Context<Self>,
    ) {
        if total > MAX_SNAPSHOT_BYTES {
            tracing::warn!(node = self.node, bytes = total, "snapshot too large");
            self.close(ctx, "snapshot too large");
            return;
        }
        if position == 0 {
            self.snapshot = Some(SnapshotRecv {
                offset,
                epoch,
                total,
                buf: BytesMut::new(),
            });
        }
        let Some(s) = self.snapshot.as_mut() else {
            self.close(ctx, "snapshot chunk out of order");
            return;
        };
        if s.offset != offset
            || s.epoch != epoch
            || s.total != total
            || s.buf.len() as u64 != position
            || position + data.len() as u64 > total
        {
            self.close(ctx, "snapshot chunk out of order");
            return;
        }
        s.buf.extend_from_slice(&data);
        if (s.buf.len() as u64) < total {
            // Keep the leader's link from timing out during a long transfer.
            if self.last_ack.elapsed() >= self.config.heartbeat_interval {
                let durable = self.durable.load(Ordering::Acquire);
                self.ack(durable, ctx);
            }
            return;
        }
        let Some(s) = self.snapshot.take() else {
            return;
        };
        // Decoding (up to MAX_SNAPSHOT_BYTES) happens on the disk thread.
        let req = self.listener.send(SessionSnapshot {
            session: self.id,
            offset,
            epoch,
            bytes: s.buf.freeze(),
        });
        self.report_position(req, "snapshot install failed", ctx);
    }

    /// Wait for the listener to reset the log (truncation or snapshot), then
    /// tell the leader where the log ends now; on failure, close.
    fn report_position<M>(
        &mut self,
        req: actix::dev::Request<ReplicaListener, M>,
        failure: &'static str,
        ctx: &mut Context<Self>,
    ) where
        M: Message<Result = Result<(u64, u64), String>> + Send + 'static,
        ReplicaListener: Handler<M>,
    {
        ctx.wait(req.into_actor(self).map(move |res, act, ctx| match res {
            Ok(Ok((last_offset, last_epoch))) => {
                // The log end may have moved down: ack from here on.
                act.acked = last_offset;
                act.send(
                    Frame::Position {
                        last_offset,
                        last_epoch,
                    },
                    ctx,
                )
            }
            Ok(Err(e)) => {
                tracing::error!(node = act.node, error = %e, "{failure}");
                act.close(ctx, failure);
            }
            Err(_) => act.close(ctx, "listener gone"),
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let silent = self.last_heard.elapsed();
        if silent > self.config.session_timeout {
            self.close(ctx, "leader silent past the session timeout");
            return;
        }
        // Re-ack if a durable notification was missed.
        let durable = self.durable.load(Ordering::Acquire);
        if durable > self.acked && self.last_ack.elapsed() >= self.config.heartbeat_interval {
            self.ack(durable, ctx);
        }
    }
}

impl Actor for ReplicaSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        let Some(stream) = self.stream.take() else {
            ctx.stop();
            return;
        };
        let conn = Connection::attach(ctx, stream, 1, self.config.max_frame_bytes);
        tracing::debug!(node = self.node, addr = %conn.peer, "replication connection accepted");
        self.conn = Some(conn);
        let nonce: Nonce = rand::random();
        self.phase = Phase::AwaitHello { nonce };
        let challenge = self.keys.challenge(&nonce);
        self.send(challenge, ctx);
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| act.tick(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // If the listener's mailbox is full, its housekeeping tick drops
        // this session's address once it is no longer connected.
        let _ = self.listener.try_send(SessionGone { session: self.id });
    }
}

impl StreamHandler<ConnInput> for ReplicaSession {
    fn handle(&mut self, input: ConnInput, ctx: &mut Context<Self>) {
        match input.item {
            Inbound::Frame(f) => self.on_frame(f, ctx),
            Inbound::Error(e) => {
                tracing::warn!(node = self.node, peer = ?self.leader(), error = %e, "bad data on replication connection");
                self.close(ctx, "read error");
            }
            Inbound::Closed => self.close(ctx, "closed by leader"),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl ConnOwner for ReplicaSession {
    fn writer_done(&mut self, _gen: u64, result: Result<(), CodecError>, ctx: &mut Context<Self>) {
        if let Err(e) = result {
            tracing::warn!(node = self.node, error = %e, "write to leader failed");
        }
        self.close(ctx, "writer ended");
    }
}

impl Handler<Durable> for ReplicaSession {
    type Result = ();

    fn handle(&mut self, msg: Durable, ctx: &mut Context<Self>) {
        if msg.offset > self.acked {
            self.ack(msg.offset, ctx);
        }
    }
}

impl Handler<StopSession> for ReplicaSession {
    type Result = ();

    fn handle(&mut self, _msg: StopSession, ctx: &mut Context<Self>) {
        self.close(ctx, "replaced or stopping");
    }
}
