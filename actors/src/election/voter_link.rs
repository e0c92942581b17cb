//! `VoterLink`: this node's election connection to one peer.
//!
//! Election messages are datagrams to the engine: a lost one is retried by
//! the next round. So the link is simple and bounded. It connects when it
//! has something to send, answers the peer's `Challenge` with a
//! `VoterHello` (HMAC proof over the peer's nonce), checks the peer's
//! `VoterWelcome` (its proof over ours) and then writes `Election` frames.
//! The peer closes an idle connection after its session timeout; the next
//! message reconnects. One link per peer, so a slow or dead peer delays no
//! other.
//!
//! Every connect and handshake result goes to the node's peer table
//! ([`NodeMetrics::peer_observed`]): a failure is logged at WARN at most
//! once per peer per [`crate::status::PEER_WARN_INTERVAL`], with its reason
//! (unreachable, TLS, secret, cluster id, wrong node …).
//!
//! Bounds: at most [`MAX_QUEUED`] messages wait (the oldest is dropped);
//! one connection attempt at a time, each bounded by the session timeout;
//! a failed connect or handshake drops what waited (no retry loop: the
//! engine's timers are the retry).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use metawal::codec::CodecError;
use metawal::engine::election::ElectionMsg;
use metawal::frame::Frame;
use metawal::handshake::{HandshakeKeys, Nonce};
use metawal::NodeId;

use crate::conn::{closed_abruptly, ConnInput, ConnOwner, Connection, Inbound};
use crate::metrics::NodeMetrics;
use crate::shared::NodeShared;
use crate::status::{reject_text, HandshakeRefusal, PeerChannel, PeerConnection};
use crate::tls::{is_tls_refusal, PeerTransport};

/// Most election messages waiting for the connection.
const MAX_QUEUED: usize = 16;

/// Send one election message to the peer (best effort).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SendElection(pub ElectionMsg);

/// Write what is queued, then stop (bounded by the connect timeout).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopVoterLink {
    /// Dropped when the link stops (after writing what it holds, or at the
    /// connect timeout): the stopper awaits it instead of polling.
    pub done: tokio::sync::oneshot::Sender<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Connecting,
    AwaitChallenge,
    AwaitWelcome { nonce: Nonce },
    Ready,
}

pub(crate) struct VoterLink {
    node: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    keys: HandshakeKeys,
    connect_timeout: Duration,
    max_frame_bytes: usize,
    phase: Phase,
    conn: Option<Connection>,
    gen: u64,
    queue: VecDeque<ElectionMsg>,
    stopping: bool,
    /// Held until the link stops (see [`StopVoterLink`]).
    stopped_tx: Option<tokio::sync::oneshot::Sender<()>>,
    metrics: NodeMetrics,
    transport: PeerTransport,
}

impl VoterLink {
    pub(crate) fn new(
        node: NodeId,
        peer: NodeId,
        addr: SocketAddr,
        keys: HandshakeKeys,
        connect_timeout: Duration,
        max_frame_bytes: usize,
        shared: &NodeShared,
    ) -> VoterLink {
        VoterLink {
            node,
            peer,
            addr,
            keys,
            connect_timeout,
            max_frame_bytes,
            phase: Phase::Idle,
            conn: None,
            gen: 0,
            queue: VecDeque::new(),
            stopping: false,
            stopped_tx: None,
            metrics: shared.metrics.clone(),
            transport: shared.transport.clone(),
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.phase = Phase::Connecting;
        let (addr, peer, limit) = (self.addr, self.peer, self.connect_timeout);
        let transport = self.transport.clone();
        let fut = async move { transport.connect(addr, peer, limit).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(stream) => {
                act.gen += 1;
                act.conn = Some(Connection::attach(
                    ctx,
                    stream,
                    act.gen,
                    act.max_frame_bytes,
                    &act.metrics,
                ));
                act.phase = Phase::AwaitChallenge;
            }
            Err(e) => {
                act.observe(e.connection());
                act.give_up(ctx, &e.to_string())
            }
        }));
    }

    /// Record (and, rate-limited, log) how the connection to the peer
    /// stands.
    fn observe(&self, connection: PeerConnection) {
        self.metrics.peer_observed(
            self.node,
            self.peer,
            PeerChannel::Election,
            Some(self.addr),
            connection,
            false,
        );
    }

    /// Whether the handshake is under way on a connection.
    fn handshaking(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitChallenge | Phase::AwaitWelcome { .. }
        )
    }

    /// Drop the connection and what waited for it (the engine retries).
    fn give_up(&mut self, ctx: &mut Context<Self>, why: &str) {
        if !self.queue.is_empty() {
            tracing::debug!(
                node = self.node,
                peer = self.peer,
                dropped = self.queue.len(),
                why,
                "election messages dropped"
            );
        }
        self.queue.clear();
        self.close(ctx);
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        if let Some(conn) = self.conn.take() {
            conn.close(ctx);
        }
        self.phase = Phase::Idle;
        if self.stopping {
            ctx.stop();
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Ready {
            return;
        }
        let Some(conn) = &self.conn else {
            return;
        };
        while let Some(msg) = self.queue.pop_front() {
            if conn.send(Frame::Election { msg }).is_err() {
                // The writer is stuck or gone: drop the rest; reconnect on
                // the next message.
                self.give_up(ctx, "writer full or closed");
                return;
            }
        }
        if self.stopping {
            if let Some(conn) = self.conn.take() {
                conn.close_after_flush(ctx);
            }
        }
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        match self.phase {
            Phase::AwaitChallenge => {
                let info = match self.keys.check_challenge(&frame) {
                    Ok(info) if info.node_id == self.peer => info,
                    Ok(info) => {
                        self.observe(PeerConnection::refused(
                            HandshakeRefusal::WrongNode,
                            format!(
                                "node {} answered at {}, not node {}",
                                info.node_id, self.addr, self.peer
                            ),
                        ));
                        self.give_up(ctx, "wrong peer");
                        return;
                    }
                    Err(e) => {
                        self.observe(PeerConnection::refused(
                            HandshakeRefusal::of_error(&e),
                            e.to_string(),
                        ));
                        self.give_up(ctx, "handshake refused");
                        return;
                    }
                };
                let nonce: Nonce = rand::random();
                match self.keys.voter_hello(&info.nonce, &nonce) {
                    Ok(hello) => {
                        if let Some(conn) = &self.conn {
                            if conn.send(hello).is_err() {
                                self.give_up(ctx, "writer closed");
                                return;
                            }
                        }
                        self.phase = Phase::AwaitWelcome { nonce };
                    }
                    Err(e) => {
                        tracing::error!(node = self.node, error = %e, "cannot sign a VoterHello");
                        self.give_up(ctx, "keys invalid");
                    }
                }
            }
            Phase::AwaitWelcome { nonce } => {
                match self.keys.check_voter_welcome(&nonce, self.peer, &frame) {
                    Ok(()) => {
                        tracing::debug!(
                            node = self.node,
                            peer = self.peer,
                            "election connection ready"
                        );
                        self.observe(PeerConnection::Connected);
                        self.phase = Phase::Ready;
                        self.flush(ctx);
                    }
                    Err(e) => {
                        let refusal = match &frame {
                            Frame::Reject { reason, .. } => PeerConnection::refused(
                                HandshakeRefusal::of_reject(*reason),
                                format!(
                                    "node {} refused the election handshake: {}",
                                    self.peer,
                                    reject_text(*reason)
                                ),
                            ),
                            _ => PeerConnection::refused(
                                HandshakeRefusal::of_error(&e),
                                e.to_string(),
                            ),
                        };
                        self.observe(refusal);
                        self.give_up(ctx, "handshake refused");
                    }
                }
            }
            Phase::Ready | Phase::Idle | Phase::Connecting => {
                tracing::warn!(
                    node = self.node,
                    peer = self.peer,
                    frame = frame.kind(),
                    "unexpected frame on an election connection; closed"
                );
                self.close(ctx);
            }
        }
    }
}

impl Actor for VoterLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
    }
}

impl Handler<SendElection> for VoterLink {
    type Result = ();

    fn handle(&mut self, msg: SendElection, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(msg.0);
        match self.phase {
            Phase::Idle => self.connect(ctx),
            Phase::Ready => self.flush(ctx),
            _ => {}
        }
    }
}

impl Handler<StopVoterLink> for VoterLink {
    type Result = ();

    fn handle(&mut self, msg: StopVoterLink, ctx: &mut Context<Self>) {
        self.stopping = true;
        self.stopped_tx = Some(msg.done);
        match self.phase {
            Phase::Ready => self.flush(ctx),
            Phase::Idle => ctx.stop(),
            _ if self.queue.is_empty() => self.close(ctx),
            _ => {}
        }
        // Whatever happens, stop within the connect timeout.
        ctx.run_later(self.connect_timeout, |_, ctx| ctx.stop());
    }
}

impl StreamHandler<ConnInput> for VoterLink {
    fn handle(&mut self, input: ConnInput, ctx: &mut Context<Self>) {
        if input.gen != self.gen {
            return;
        }
        match input.item {
            Inbound::Frame(frame) => self.on_frame(frame, ctx),
            Inbound::Error(e) => {
                if self.handshaking() {
                    // E.g. the peer's TLS alert: it does not trust this
                    // node's certificate.
                    self.observe(match &e {
                        CodecError::Io(io) if is_tls_refusal(io) => PeerConnection::refused(
                            HandshakeRefusal::Tls,
                            format!("TLS refused by node {}: {io}", self.peer),
                        ),
                        _ => PeerConnection::refused(
                            HandshakeRefusal::Closed,
                            format!("the connection ended during the handshake: {e}"),
                        ),
                    });
                } else if !closed_abruptly(&e) && !self.stopping {
                    tracing::warn!(node = self.node, peer = self.peer, error = %e, "bad data on an election connection");
                }
                self.give_up(ctx, &format!("read error: {e}"))
            }
            // The peer closes idle election connections: reconnect on the
            // next message.
            Inbound::Closed => {
                if self.handshaking() {
                    self.observe(PeerConnection::refused(
                        HandshakeRefusal::Closed,
                        format!(
                            "node {} closed the connection during the handshake",
                            self.peer
                        ),
                    ));
                }
                self.give_up(ctx, "closed by peer")
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl ConnOwner for VoterLink {
    fn writer_done(&mut self, gen: u64, result: Result<(), CodecError>, ctx: &mut Context<Self>) {
        if gen != self.gen {
            return;
        }
        if let Err(e) = result {
            tracing::debug!(node = self.node, peer = self.peer, error = %e, "election connection write failed");
        }
        self.close(ctx);
        if self.stopping {
            ctx.stop();
        }
    }
}
