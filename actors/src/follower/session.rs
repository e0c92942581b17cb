//! `ReplicaSession`: one inbound replication connection on a follower.
//!
//! The protocol of the connection — the handshake it answers, the checks on
//! every frame, snapshot reassembly, acks, the session timeout — is the
//! core's [`ReplicaSessionEngine`]; this actor owns the socket and carries the
//! engine's actions out: frames to the writer, requests to the
//! `ReplicaListener` (which owns the log, reached through a
//! [`ListenerHandle`]), answered back as inputs. While
//! a request is outstanding the actor stops reading the connection
//! (`ctx.wait`), so the engine takes one request at a time.
//!
//! What the connection shows about its peer goes to the node's peer table
//! ([`crate::NodeMetrics::peer_connections`], channel `inbound`): an
//! attached leader (live while the session lasts), a voter that
//! authenticated, or a handshake this node refused or the peer abandoned.
//! The peer is the one node its TLS certificate names, else the id its
//! `Hello`/`VoterHello` claims; only configured voters are recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use metawal::codec::CodecError;
use metawal::engine::{Local, ReplicaSessionEngine, SessionAction, SessionInput};
use metawal::frame::{Frame, RejectReason};
use metawal::handshake::{HandshakeKeys, Nonce, PeerIdentity};
use metawal::{NodeId, ReplicationConfig};
use tokio::net::TcpStream;

use crate::conn::{closed_abruptly, ConnInput, ConnOwner, Connection, Inbound};
use crate::follower::messages::{
    Attach, AttachRefused, DriverSlot, Durable, ElectionIn, ListenerHandle, SessionAppend,
    SessionCommit, SessionGone, SessionHandle, SessionSnapshot, SessionTruncate, StopSession,
};
use crate::shared::NodeShared;
use crate::status::{reject_text, HandshakeRefusal, PeerChannel, PeerConnection};
use crate::tls::{is_tls_refusal, PeerStream};

pub(crate) struct SessionInit {
    pub id: u64,
    pub node: NodeId,
    pub shared: Arc<NodeShared>,
    pub config: ReplicationConfig,
    pub keys: HandshakeKeys,
    pub listener: ListenerHandle,
    pub durable: Arc<AtomicU64>,
    pub driver: DriverSlot,
    pub stream: TcpStream,
}

/// One inbound replication connection (see the module docs).
pub struct ReplicaSession {
    id: u64,
    node: NodeId,
    shared: Arc<NodeShared>,
    config: ReplicationConfig,
    listener: ListenerHandle,
    durable: Arc<AtomicU64>,
    driver: DriverSlot,
    stream: Option<TcpStream>,
    conn: Option<Connection>,
    engine: ReplicaSessionEngine,
    /// The remote address.
    from: Option<SocketAddr>,
    /// The one node the peer's TLS certificate names, if exactly one.
    certified: Option<NodeId>,
    /// The node id the peer's `Hello` or `VoterHello` claimed.
    claimed: Option<NodeId>,
    /// The leader attached on this session, recorded as connected.
    attached: Option<NodeId>,
}

impl ReplicaSession {
    pub(crate) fn new(init: SessionInit) -> ReplicaSession {
        let nonce: Nonce = rand::random();
        ReplicaSession {
            engine: ReplicaSessionEngine::new(
                init.node,
                init.keys,
                init.config.clone(),
                Instant::now(),
                nonce,
            ),
            id: init.id,
            node: init.node,
            shared: init.shared,
            config: init.config,
            listener: init.listener,
            durable: init.durable,
            driver: init.driver,
            stream: Some(init.stream),
            conn: None,
            from: None,
            certified: None,
            claimed: None,
            attached: None,
        }
    }

    /// Who the peer is, as far as this session knows.
    fn peer(&self) -> Option<NodeId> {
        self.engine
            .leader()
            .or(self.engine.voter())
            .or(self.certified)
            .or(self.claimed)
    }

    /// Record how the connection with the peer stands (if the peer is
    /// known).
    fn observe(&self, connection: PeerConnection, live: bool) {
        if let Some(peer) = self.peer() {
            self.shared.metrics.peer_observed(
                self.node,
                peer,
                PeerChannel::Inbound,
                self.from,
                connection,
                live,
            );
        }
    }

    /// Whether the handshake is still under way (no leader attached, no
    /// voter authenticated).
    fn handshaking(&self) -> bool {
        self.engine.leader().is_none() && self.engine.voter().is_none()
    }

    /// The connection ended before the handshake completed.
    fn abandoned(&self, why: String) {
        if self.handshaking() && self.conn.is_some() {
            self.observe(
                PeerConnection::refused(HandshakeRefusal::Closed, why),
                false,
            );
        }
    }

    fn local(&self) -> Local {
        Local {
            epoch: self.shared.epoch(),
            leader: self.shared.leader(),
            durable: self.durable.load(Ordering::Acquire),
        }
    }

    /// Feed one input to the engine and carry out its actions.
    fn input(&mut self, input: SessionInput, ctx: &mut Context<Self>) {
        if self.conn.is_none() {
            // Before the transport is up (its Challenge must not be sent
            // into nothing) or after the connection ended: nothing to do.
            return;
        }
        let local = self.local();
        self.engine.handle(Instant::now(), input, local);
        while let Some(action) = self.engine.poll_action() {
            self.act(action, ctx);
        }
    }

    fn act(&mut self, action: SessionAction, ctx: &mut Context<Self>) {
        match action {
            SessionAction::Send(frame) => {
                match &frame {
                    Frame::Welcome { .. } => {
                        if let Some(leader) = self.engine.leader() {
                            self.attached = Some(leader);
                            self.observe(PeerConnection::Connected, true);
                        }
                    }
                    Frame::VoterWelcome { .. } => self.observe(PeerConnection::Connected, false),
                    _ => {}
                }
                self.send(frame, ctx)
            }
            SessionAction::RejectAndClose { frame, reason } => {
                if let Frame::Reject { reason: why, .. } = &frame {
                    let class = HandshakeRefusal::of_reject(*why);
                    // A stale epoch or a leader that is not one any more is
                    // the protocol's normal course, not a connection
                    // problem.
                    if class != HandshakeRefusal::Refused {
                        self.observe(
                            PeerConnection::refused(
                                class,
                                format!("this node refused the handshake: {}", reject_text(*why)),
                            ),
                            false,
                        );
                    }
                }
                self.reject_and_close(frame, ctx, &reason)
            }
            SessionAction::Close { reason } => self.close(ctx, &reason),
            SessionAction::Attach { leader, epoch } => {
                let req = self.listener.attach.send(Attach {
                    session: self.id,
                    addr: SessionHandle {
                        durable: ctx.address().recipient(),
                        stop: ctx.address().recipient(),
                    },
                    leader,
                    epoch,
                });
                ctx.wait(req.into_actor(self).map(move |res, act, ctx| {
                    let result = match res {
                        Ok(Ok(end)) => Ok(end),
                        Ok(Err(AttachRefused::NotFollower)) => Err(RejectReason::NotFollower),
                        Ok(Err(AttachRefused::StaleEpoch { .. })) => Err(RejectReason::StaleEpoch),
                        Ok(Err(AttachRefused::EpochConflict)) => Err(RejectReason::EpochConflict),
                        Ok(Err(AttachRefused::Storage(e))) => {
                            tracing::error!(node = act.node, error = %e, "cannot persist the new epoch");
                            Err(RejectReason::NotFollower)
                        }
                        Err(_) => Err(RejectReason::NotFollower),
                    };
                    act.input(SessionInput::Attached(result), ctx);
                }));
            }
            SessionAction::Append {
                records,
                entries,
                commit,
            } => {
                let req = self.listener.append.send(SessionAppend {
                    session: self.id,
                    records,
                    entries,
                    commit,
                });
                // Stop reading the socket until the listener took the batch.
                ctx.wait(req.into_actor(self).map(|res, act, ctx| {
                    let result = res.unwrap_or_else(|_| Err("listener gone".into()));
                    act.input(SessionInput::Appended(result), ctx);
                }));
            }
            SessionAction::Commit { commit } => {
                // A heartbeat's commit: if the listener's mailbox is full
                // it is dropped, and the next heartbeat or append carries
                // it (commit points only grow).
                let _ = self.listener.commit.try_send(SessionCommit {
                    session: self.id,
                    commit,
                });
            }
            SessionAction::Election { from, msg } => {
                // Best effort, bounded: if the NodeDriver's mailbox is full the
                // message is dropped and the election retries it.
                if let Some(driver) = self.driver.get() {
                    if driver.try_send(ElectionIn::Message { from, msg }).is_err() {
                        tracing::debug!(
                            node = self.node,
                            peer = from,
                            "election message dropped: driver busy"
                        );
                    }
                }
            }
            SessionAction::Truncate { to } => {
                let req = self.listener.truncate.send(SessionTruncate {
                    session: self.id,
                    to,
                });
                self.wait_log_reset(req, ctx);
            }
            SessionAction::InstallSnapshot {
                offset,
                epoch,
                bytes,
            } => {
                // Decoding (up to the engine's snapshot limit) happens on
                // the disk thread.
                let req = self.listener.snapshot.send(SessionSnapshot {
                    session: self.id,
                    offset,
                    epoch,
                    bytes,
                });
                self.wait_log_reset(req, ctx);
            }
        }
    }

    /// Wait for the listener to reset the log (truncation or snapshot) and
    /// pass its answer to the engine.
    fn wait_log_reset<M>(&mut self, req: actix::dev::RecipientRequest<M>, ctx: &mut Context<Self>)
    where
        M: Message<Result = Result<(u64, u64), String>> + Send + 'static,
    {
        ctx.wait(req.into_actor(self).map(|res, act, ctx| {
            let result = res.unwrap_or_else(|_| Err("listener gone".into()));
            act.input(SessionInput::LogReset(result), ctx);
        }));
    }

    fn close(&mut self, ctx: &mut Context<Self>, reason: &str) {
        if let Some(conn) = self.conn.take() {
            let peer = self.engine.leader().or(self.engine.voter());
            tracing::info!(node = self.node, peer = ?peer, addr = %conn.peer, reason, "replication session closed");
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

    /// The transport is up: attach the connection and start the protocol.
    fn serve(&mut self, stream: PeerStream, identity: PeerIdentity, ctx: &mut Context<Self>) {
        let conn = Connection::attach(
            ctx,
            stream,
            1,
            self.config.max_frame_bytes,
            &self.shared.metrics,
        );
        tracing::debug!(node = self.node, addr = %conn.peer, identity = ?identity, "replication connection accepted");
        self.from = Some(conn.peer);
        if let PeerIdentity::Certified(ids) = &identity {
            if ids.len() == 1 {
                self.certified = ids.iter().next().copied();
            }
        }
        self.conn = Some(conn);
        self.engine.set_peer_identity(identity);
        // The engine's first action sends the Challenge.
        while let Some(action) = self.engine.poll_action() {
            self.act(action, ctx);
        }
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| {
            act.input(SessionInput::Tick, ctx)
        });
    }

    /// Queue a frame; a writer that cannot take it (closed, or 64 frames
    /// behind) ends the session: the leader resends from the acked offset.
    fn send(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let Some(conn) = &self.conn else {
            return;
        };
        if conn.send(frame).is_err() {
            self.close(ctx, "writer closed or stuck");
        }
    }
}

impl Actor for ReplicaSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        let Some(tcp) = self.stream.take() else {
            ctx.stop();
            return;
        };
        // TLS first (bounded by the session timeout: a client that stalls
        // the handshake holds its session slot no longer), then the
        // protocol, bound to the node ids the client certificate names.
        let transport = self.shared.transport.clone();
        let limit = self.config.session_timeout;
        let from = tcp.peer_addr().ok();
        let accept = async move { transport.accept(tcp, limit).await };
        ctx.spawn(accept.into_actor(self).map(move |res, act, ctx| match res {
            Ok((stream, identity)) => act.serve(stream, identity, ctx),
            Err(e) => {
                // Refused: nothing was read as a frame. The peer retries
                // (or was not a peer); this session ends.
                if e.is_silent_close() {
                    tracing::debug!(node = act.node, addr = ?from, error = %e, "connection closed before the TLS handshake finished");
                } else {
                    tracing::warn!(node = act.node, addr = ?from, error = %e, "replication connection refused");
                }
                ctx.stop();
            }
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(leader) = self.attached {
            self.shared
                .metrics
                .peer_released(leader, PeerChannel::Inbound);
        }
        // If the listener's mailbox is full, its housekeeping tick drops
        // this session's address once it is no longer connected.
        let _ = self
            .listener
            .gone
            .try_send(SessionGone { session: self.id });
    }
}

impl StreamHandler<ConnInput> for ReplicaSession {
    fn handle(&mut self, input: ConnInput, ctx: &mut Context<Self>) {
        match input.item {
            Inbound::Frame(f) => {
                if self.handshaking() {
                    match &f {
                        Frame::Hello { leader_id, .. } => self.claimed = Some(*leader_id),
                        Frame::VoterHello { node_id, .. } => self.claimed = Some(*node_id),
                        _ => {}
                    }
                }
                self.input(SessionInput::Frame(f), ctx)
            }
            Inbound::Error(e) => {
                let io = matches!(e, CodecError::Io(_));
                if self.handshaking() {
                    let why = match &e {
                        CodecError::Io(io) if is_tls_refusal(io) => {
                            format!("TLS refused by the peer: {io}")
                        }
                        _ => format!("the connection ended during the handshake: {e}"),
                    };
                    self.abandoned(why);
                }
                if !io {
                    // Bytes that are not a frame: a broken or hostile peer,
                    // during the handshake or after it.
                    tracing::warn!(node = self.node, peer = ?self.peer(), addr = ?self.from, error = %e, "bad data on replication connection");
                } else if self.handshaking() {
                    tracing::debug!(node = self.node, addr = ?self.from, error = %e, "replication connection failed during the handshake");
                } else if closed_abruptly(&e) {
                    // A peer closing on purpose sends close_notify (a clean
                    // end of stream): this one went away.
                    tracing::warn!(node = self.node, peer = ?self.peer(), error = %e, "replication connection ended abruptly (the peer may have crashed)");
                } else {
                    tracing::warn!(node = self.node, peer = ?self.peer(), error = %e, "bad data on replication connection");
                }
                self.close(ctx, "read error");
            }
            Inbound::Closed => {
                self.abandoned("the peer closed the connection during the handshake".into());
                self.close(ctx, "closed by peer")
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl ConnOwner for ReplicaSession {
    fn writer_done(&mut self, _gen: u64, result: Result<(), CodecError>, ctx: &mut Context<Self>) {
        match result {
            // The peer closed or reset the connection (the reader says
            // why, or it was on purpose).
            Err(e) if closed_abruptly(&e) => {
                tracing::debug!(node = self.node, peer = ?self.peer(), error = %e, "write to peer failed: connection closed")
            }
            Err(e) => {
                tracing::warn!(node = self.node, peer = ?self.peer(), error = %e, "write to peer failed")
            }
            Ok(()) => {}
        }
        self.close(ctx, "writer ended");
    }
}

impl Handler<Durable> for ReplicaSession {
    type Result = ();

    fn handle(&mut self, msg: Durable, ctx: &mut Context<Self>) {
        self.input(SessionInput::Durable(msg.offset), ctx);
    }
}

impl Handler<StopSession> for ReplicaSession {
    type Result = ();

    fn handle(&mut self, _msg: StopSession, ctx: &mut Context<Self>) {
        self.close(ctx, "replaced or stopping");
    }
}
