//! The link's actor: its start and stop, and the handlers of its streams
//! (log progress, connection input), of the connection writer's reports
//! and of its messages.
//!
//! A child module of `link.rs` (it sees the link's private state),
//! separate so that `link.rs` holds the link's own logic and this file only
//! routes what arrives to it.

use actix::prelude::*;
use metawal::codec::CodecError;
use metawal::engine::LinkInput;
use metawal::replication::LinkState;

#[cfg(feature = "fault-injection")]
use super::InjectPanic;
use super::{FollowerLink, ProbeLink, StopLink, WakeLink};
use crate::conn::{closed_abruptly, ConnInput, ConnOwner, Inbound};
use crate::progress::LogProgress;
use crate::status::{HandshakeRefusal, PeerChannel, PeerConnection};
use crate::tls::is_tls_refusal;

impl Actor for FollowerLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        if let Some(rx) = self.progress_rx.take() {
            ctx.add_stream(crate::progress::updates(rx));
        }
        ctx.run_interval(self.housekeeping, |act, ctx| act.housekeeping(ctx));
        // The engine starts by asking to connect.
        self.drive(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.shared
            .metrics
            .peer_released(self.peer, PeerChannel::Replication);
        tracing::debug!(node = self.node, peer = self.peer, "follower link stopped");
    }
}

impl StreamHandler<LogProgress> for FollowerLink {
    fn handle(&mut self, p: LogProgress, ctx: &mut Context<Self>) {
        self.input(LinkInput::Progress(p), ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The Replicator is gone; StopLink follows.
    }
}

impl StreamHandler<ConnInput> for FollowerLink {
    fn handle(&mut self, input: ConnInput, ctx: &mut Context<Self>) {
        let gen = input.gen;
        let input = match input.item {
            Inbound::Frame(frame) => {
                self.input(LinkInput::Frame { gen, frame }, ctx);
                return;
            }
            Inbound::Error(e) => {
                let handshaking = self.engine.state() == LinkState::Handshaking;
                if handshaking {
                    // E.g. the follower's TLS alert: it does not trust
                    // this node's certificate.
                    let hint = match &e {
                        CodecError::Io(io) if is_tls_refusal(io) => PeerConnection::refused(
                            HandshakeRefusal::Tls,
                            format!("TLS refused by the follower: {io}"),
                        ),
                        _ => PeerConnection::refused(
                            HandshakeRefusal::Closed,
                            format!("the connection ended during the handshake: {e}"),
                        ),
                    };
                    tracing::debug!(node = self.node, peer = self.peer, error = %e, "follower connection failed during the handshake");
                    let input = LinkInput::Closed {
                        gen,
                        reason: format!("read error: {e}"),
                    };
                    self.input_hinted(input, Some(hint), ctx);
                    return;
                }
                if closed_abruptly(&e) {
                    // A follower closing on purpose sends close_notify (a
                    // clean end of stream): this one went away.
                    tracing::warn!(node = self.node, peer = self.peer, error = %e, "follower connection ended abruptly (the follower may have crashed)");
                } else {
                    tracing::warn!(node = self.node, peer = self.peer, error = %e, "bad data from follower");
                }
                LinkInput::Closed {
                    gen,
                    reason: format!("read error: {e}"),
                }
            }
            Inbound::Closed => LinkInput::Closed {
                gen,
                reason: "closed by follower".to_string(),
            },
        };
        self.input(input, ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // Overridden: the default stops the actor; the link must reconnect.
    }
}

impl ConnOwner for FollowerLink {
    fn writer_done(&mut self, gen: u64, result: Result<(), CodecError>, ctx: &mut Context<Self>) {
        match &result {
            // The follower closed or reset the connection: the reader
            // says why (or it was closed on purpose).
            Err(e) if closed_abruptly(e) || self.stopping => {
                tracing::debug!(node = self.node, peer = self.peer, error = %e, "write to follower failed: connection closed")
            }
            Err(e) => {
                tracing::warn!(node = self.node, peer = self.peer, error = %e, "write to follower failed")
            }
            Ok(()) => {}
        }
        self.input(
            LinkInput::Closed {
                gen,
                reason: "writer ended".to_string(),
            },
            ctx,
        );
    }
}

impl Handler<ProbeLink> for FollowerLink {
    type Result = ();

    fn handle(&mut self, _msg: ProbeLink, ctx: &mut Context<Self>) {
        self.input(LinkInput::Probe, ctx);
    }
}

impl Handler<WakeLink> for FollowerLink {
    type Result = ();

    fn handle(&mut self, _msg: WakeLink, ctx: &mut Context<Self>) {
        self.input(LinkInput::Wake, ctx);
    }
}

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
        self.stop(ctx);
    }
}
