//! The link engine: the leader's replication link to one follower.
//!
//! Every decision a `FollowerLink` used to make lives here: when to connect
//! (backoff with jitter, reset after the first ack of a connection, or soon
//! after a wake-up), the authenticated handshake (Challenge → Hello →
//! Welcome, checked with [`HandshakeKeys`]), where the follower's log joins
//! the leader's ([`LogView::start_point`]: match, truncate or snapshot),
//! what to send next (batches from the in-memory tail, else a WAL read, else
//! a snapshot; within the window of [`LinkProgress`]), when to send a
//! heartbeat, when a silent follower is dropped, and what the Replicator is
//! told ([`LinkReport`]).
//!
//! The shape is quinn-proto's `Connection`:
//! - [`FollowerLinkEngine::handle`] takes one [`LinkInput`] at `now`;
//! - [`FollowerLinkEngine::poll_transmit`] returns the next frame to write, and is
//!   only called while the connection's writer has room, so a frame it
//!   returns is a frame sent: nothing is dropped on a full queue, it simply
//!   is not produced yet;
//! - [`FollowerLinkEngine::poll_action`] returns what else the shell must do: open
//!   or close the TCP connection, read the WAL, load the snapshot, report to
//!   the Replicator;
//! - [`FollowerLinkEngine::poll_timeout`] says when to call back with
//!   [`LinkInput::Tick`].
//!
//! The engine holds no socket, file or clock. Randomness (nonces and
//! backoff jitter) comes from the shell: nonces with
//! [`LinkInput::Connected`], jitter from a seed given at construction.
//! Results of asynchronous work carry the connection generation they were
//! asked for, so a result that arrives after a reconnect is recognised as
//! stale and ignored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::command::NodeId;
use crate::config::ReplicationConfig;
use crate::frame::Frame;
use crate::handshake::{HandshakeKeys, Nonce};
use crate::record::Record;
use crate::replication::{AckOutcome, Backoff, LinkProgress, LinkState};

/// How many times the session timeout a follower may stay silent while a
/// snapshot is loaded, sent and installed (it is silent while it installs).
pub const SNAPSHOT_SILENCE_FACTOR: u32 = 10;

/// Probes (heartbeats with a new `seq`) remembered until the follower
/// echoes them. A follower silent for this many heartbeat intervals is
/// past its session timeout long before; an echo of a forgotten probe is
/// not counted as an answer (never counted too early).
pub const MAX_PROBES_IN_FLIGHT: usize = 32;

pub use super::link_io::*;

// What to send next and the connection's lifecycle: child modules, so they
// see the engine's private state.
#[path = "link_connection.rs"]
mod connection;
#[path = "link_send.rs"]
mod send;

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Conn {
    /// No connection; the next attempt is at `retry_at` (none: not
    /// scheduled).
    Idle { retry_at: Option<Instant> },
    /// A TCP connect is in flight.
    Opening,
    /// The connection is up.
    Open(Phase),
}

/// Where an open connection's handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitChallenge,
    AwaitWelcome {
        nonce: Nonce,
    },
    /// A `Truncate` or a snapshot was sent; the follower reports `Position`.
    AwaitPosition,
    /// Matched: appends, acks and heartbeats.
    Streaming,
}

/// The snapshot being sent to the follower.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SnapshotSend {
    None,
    Loading,
    Sending {
        snapshot: SnapshotBytes,
        position: usize,
    },
}

/// Protocol state of the leader's link to one follower (see the module
/// docs).
#[derive(Debug, Clone)]
pub struct FollowerLinkEngine {
    node: NodeId,
    peer: NodeId,
    epoch: u64,
    keys: HandshakeKeys,
    config: ReplicationConfig,
    progress: LinkProgress,
    backoff: Backoff,
    rng: u64,
    log: LogProgress,
    conn: Conn,
    gen: u64,
    /// Our nonce for the `Hello` of the current connection.
    nonce: Option<Nonce>,
    last_attempt: Option<Instant>,
    last_heard: Instant,
    last_sent: Instant,
    /// Commit point last sent to the follower on this connection.
    sent_commit: u64,
    /// When this connection's `Hello` was sent: every answer of the
    /// follower on it was written after that.
    hello_sent: Option<Instant>,
    /// The last probe number sent on this connection (0: none yet).
    probe_seq: u64,
    /// When the last probe was sent.
    last_probe: Instant,
    /// Probes sent and not echoed yet, `(seq, sent at)`, oldest first (at
    /// most [`MAX_PROBES_IN_FLIGHT`]).
    probes: VecDeque<(u64, Instant)>,
    /// The latest send time of a frame the follower is known to have
    /// answered on this connection (see [`LinkReport::Heard`]).
    answered_since: Option<Instant>,
    /// A probe goes out with the next frame (see [`LinkInput::Probe`]).
    probe_wanted: bool,
    /// A WAL read is in flight.
    reading: bool,
    /// The last WAL read found nothing: no new one until the log moves.
    wal_wait: bool,
    /// Records read from the WAL, not sent yet (they start at the next
    /// offset to send).
    loaded: VecDeque<Record>,
    snapshot: SnapshotSend,
    snapshots_sent: u64,
    acked_on_conn: bool,
    /// The Replicator was told this connection is up, so it must be told
    /// when it goes down.
    reported_connected: bool,
    /// Handshake frames waiting for the writer, in order.
    control: VecDeque<Frame>,
    actions: VecDeque<LinkAction>,
}

impl FollowerLinkEngine {
    /// A link as `setup` describes it, not yet connected: the first
    /// [`FollowerLinkEngine::poll_action`] asks to connect. `log` is where the
    /// leader's log stands; `seed` seeds the backoff jitter.
    pub fn new(setup: LinkSetup, log: LogProgress, now: Instant, seed: u64) -> FollowerLinkEngine {
        let LinkSetup {
            node,
            peer,
            epoch,
            keys,
            config,
        } = setup;
        let mut engine = FollowerLinkEngine {
            node,
            peer,
            epoch,
            keys,
            progress: LinkProgress::new(config.window_bytes, config.window_entries),
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            config,
            rng: seed | 1,
            log,
            conn: Conn::Idle { retry_at: None },
            gen: 0,
            nonce: None,
            last_attempt: None,
            last_heard: now,
            last_sent: now,
            sent_commit: 0,
            hello_sent: None,
            probe_seq: 0,
            last_probe: now,
            probes: VecDeque::new(),
            answered_since: None,
            probe_wanted: false,
            reading: false,
            wal_wait: false,
            loaded: VecDeque::new(),
            snapshot: SnapshotSend::None,
            snapshots_sent: 0,
            acked_on_conn: false,
            reported_connected: false,
            control: VecDeque::new(),
            actions: VecDeque::new(),
        };
        engine.connect(now);
        engine
    }

    /// The follower's node id.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The generation of the current (or last) connection.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// The replication progress of the follower.
    pub fn progress(&self) -> &LinkProgress {
        &self.progress
    }

    /// The link's named state.
    pub fn state(&self) -> LinkState {
        self.progress.state()
    }

    /// Whether the handshake is done on a live connection.
    pub fn connected(&self) -> bool {
        self.conn == Conn::Open(Phase::Streaming)
    }

    /// Snapshots sent to this follower.
    pub fn snapshots_sent(&self) -> u64 {
        self.snapshots_sent
    }

    /// The next action for the shell, in order.
    pub fn poll_action(&mut self) -> Option<LinkAction> {
        self.actions.pop_front()
    }

    /// When to call back with [`LinkInput::Tick`]: the reconnect time, the
    /// session deadline, or the next heartbeat, whichever comes first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.conn {
            Conn::Idle { retry_at } => *retry_at,
            Conn::Opening => None,
            Conn::Open(phase) => {
                let deadline = self.last_heard + self.silence_limit();
                // Streaming sends heartbeats; a snapshot being sent has
                // chunks left that a full writer queue held back, and
                // nothing else would wake the shell to send them.
                let sending = matches!(self.snapshot, SnapshotSend::Sending { .. });
                if *phase == Phase::Streaming {
                    Some(deadline.min(self.last_probe + self.config.heartbeat_interval))
                } else if sending {
                    Some(deadline.min(self.last_sent + self.config.heartbeat_interval))
                } else {
                    Some(deadline)
                }
            }
        }
    }

    /// Take one input.
    pub fn handle(&mut self, now: Instant, input: LinkInput, log: &dyn LogView) {
        match input {
            LinkInput::Tick => self.on_tick(now),
            LinkInput::Wake => self.on_wake(now),
            LinkInput::Progress(p) => {
                self.log = p;
                self.wal_wait = false;
            }
            LinkInput::Probe => {
                if self.connected() {
                    self.probe_wanted = true;
                }
            }
            LinkInput::Connected { gen, nonce } => {
                if gen == self.gen && self.conn == Conn::Opening {
                    self.on_connected(now, nonce);
                }
            }
            LinkInput::ConnectFailed { gen, reason } => {
                if gen == self.gen && self.conn == Conn::Opening {
                    tracing::debug!(node = self.node, peer = self.peer, %reason, "connect failed");
                    self.conn = Conn::Idle { retry_at: None };
                    self.schedule_reconnect(now);
                }
            }
            LinkInput::Frame { gen, frame } => {
                if gen == self.gen && matches!(self.conn, Conn::Open(_)) {
                    let since = self.answered(&frame);
                    self.on_frame(now, frame, log);
                    // An answer the link accepted on this epoch's
                    // authenticated connection: the follower is live
                    // (check-quorum, read index) as of `since`. A refusal,
                    // a frame of an old connection or one that broke the
                    // link is not.
                    let live = self.gen == gen
                        && matches!(
                            self.state(),
                            LinkState::Probing | LinkState::Streaming | LinkState::Snapshotting
                        );
                    if let Some(since) = since.filter(|_| live) {
                        self.actions
                            .push_back(LinkAction::Report(LinkReport::Heard { since }));
                    }
                }
            }
            LinkInput::Closed { gen, reason } => {
                if gen == self.gen {
                    self.disconnect(now, &reason);
                }
            }
            LinkInput::WalRead { gen, from, result } => {
                if gen == self.gen {
                    self.on_wal_read(now, from, result);
                }
            }
            LinkInput::SnapshotLoaded { gen, result } => {
                if gen == self.gen && self.snapshot == SnapshotSend::Loading {
                    self.on_snapshot_loaded(now, result);
                }
            }
        }
    }

    /// If `frame` is an answer of the follower (`Welcome`, `Position`,
    /// `Ack`), the latest time at which the leader sent something the
    /// follower had read before it wrote `frame`: the `Hello` for any
    /// answer, the probe an `Ack` echoes. The follower still followed this
    /// leader after that time, which is what a read index or check-quorum
    /// may count; the time the answer arrives is not (it may have waited in
    /// a socket buffer while this leader was paused and another one was
    /// elected).
    fn answered(&mut self, frame: &Frame) -> Option<Instant> {
        let hello = self.hello_sent?;
        let mut since = self.answered_since.unwrap_or(hello).max(hello);
        match frame {
            Frame::Welcome { .. } | Frame::Position { .. } => {}
            // A seq never sent is a protocol error (`on_frame` drops the
            // link); nothing is counted for it.
            Frame::Ack { seq, .. } if *seq > self.probe_seq => return None,
            Frame::Ack { seq, .. } => {
                while let Some(&(s, at)) = self.probes.front() {
                    if s > *seq {
                        break;
                    }
                    since = since.max(at);
                    self.probes.pop_front();
                }
            }
            _ => return None,
        }
        self.answered_since = Some(since);
        Some(since)
    }

    fn silence_limit(&self) -> Duration {
        if self.progress.state() == LinkState::Snapshotting {
            self.config.session_timeout * SNAPSHOT_SILENCE_FACTOR
        } else {
            self.config.session_timeout
        }
    }

    /// A uniform number in [0, 1) from the seeded generator (xorshift64*).
    fn jitter(&mut self) -> f64 {
        super::unit_jitter(&mut self.rng)
    }

    fn on_frame(&mut self, now: Instant, frame: Frame, log: &dyn LogView) {
        self.last_heard = now;
        let Conn::Open(phase) = self.conn else {
            return;
        };
        match (phase, frame) {
            (Phase::AwaitChallenge, frame) => match self.keys.check_challenge(&frame) {
                Ok(info) if info.node_id != self.peer => {
                    tracing::warn!(
                        node = self.node,
                        peer = self.peer,
                        got = info.node_id,
                        "the peer at this address is a different node; check the peers config"
                    );
                    self.disconnect(now, "wrong node id");
                }
                Ok(info) => {
                    let Some(nonce) = self.nonce else {
                        self.disconnect(now, "no nonce for this connection");
                        return;
                    };
                    match self.keys.hello(self.epoch, &info.nonce, &nonce) {
                        Ok(hello) => {
                            self.conn = Conn::Open(Phase::AwaitWelcome { nonce });
                            self.control.push_back(hello);
                        }
                        Err(e) => self.handshake_failed(now, e),
                    }
                }
                Err(e) => self.handshake_failed(now, e),
            },
            (Phase::AwaitWelcome { nonce }, frame) => {
                match self.keys.check_welcome(&nonce, self.peer, &frame) {
                    Ok(w) => {
                        self.actions
                            .push_back(LinkAction::Report(LinkReport::Identified {
                                directory_id: w.directory_id,
                            }));
                        self.decide(now, w.last_offset, w.last_epoch, log)
                    }
                    Err(e) => self.handshake_failed(now, e),
                }
            }
            (
                Phase::AwaitPosition,
                Frame::Position {
                    last_offset,
                    last_epoch,
                },
            ) => self.decide(now, last_offset, last_epoch, log),
            (Phase::Streaming | Phase::AwaitPosition, Frame::Ack { seq, .. })
                if seq > self.probe_seq =>
            {
                tracing::warn!(
                    node = self.node,
                    peer = self.peer,
                    seq,
                    sent = self.probe_seq,
                    "follower echoed a probe that was never sent"
                );
                self.disconnect(now, "protocol error");
            }
            (Phase::Streaming, Frame::Ack { offset, .. }) => self.on_ack(offset),
            // Acks of appends sent before a switch to a snapshot or a
            // truncation, and of snapshot chunks.
            (Phase::AwaitPosition, Frame::Ack { .. }) => {}
            (_, other) => {
                tracing::warn!(
                    node = self.node,
                    peer = self.peer,
                    frame = other.kind(),
                    state = %self.progress.state(),
                    "unexpected frame from follower"
                );
                self.disconnect(now, "protocol error");
            }
        }
    }

    fn on_ack(&mut self, offset: u64) {
        match self.progress.on_ack(offset) {
            AckOutcome::Advanced { from, to } => {
                tracing::trace!(
                    stage = "ack",
                    node = self.node,
                    peer = self.peer,
                    offset = to,
                    entries = to - from
                );
                self.first_ack_on_connection();
                self.actions
                    .push_back(LinkAction::Report(LinkReport::Acked { offset: to }));
            }
            AckOutcome::Stale => self.first_ack_on_connection(),
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

    /// The backoff resets after the first ack of a connection, not on
    /// connect: a follower that accepts and then drops connections keeps
    /// backing off.
    fn first_ack_on_connection(&mut self) {
        if !self.acked_on_conn {
            self.acked_on_conn = true;
            self.backoff.reset();
        }
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
