//! The session engine: one inbound replication connection on a follower.
//!
//! Every decision a `ReplicaSession` makes lives here:
//! - it speaks first (`Challenge` with the nonce the shell drew);
//! - it checks the leader's `Hello` ([`HandshakeKeys::check_hello`]:
//!   protocol, cluster id, proof, epoch fencing against what this node
//!   knows), asks the log owner to attach it ([`SessionAction::Attach`],
//!   which persists a higher epoch first) and answers `Welcome` with the
//!   log end, or `Reject` with the reason;
//! - it decodes every `Append` (CRC, contiguity of the batch with its
//!   `first_offset`) before passing it on, reassembles snapshot chunks
//!   (in order, bounded by [`MAX_SNAPSHOT_BYTES`]), and passes truncations
//!   on; after a truncation or a snapshot install it reports `Position`;
//! - it acks durable offsets, answers heartbeats with an ack (so the
//!   leader's link hears from an idle follower), and drops a leader silent
//!   for the session timeout.
//!
//! Anything malformed closes the connection with a reason
//! ([`SessionAction::Close`]); nothing from it reaches the log.
//!
//! The shape is the link engine's: [`ReplicaSessionEngine::handle`] takes one
//! [`SessionInput`] at `now` with what this node knows ([`Local`]);
//! [`ReplicaSessionEngine::poll_action`] returns what to do, in order. One request
//! to the log owner (attach, append, truncate, install) is outstanding at a
//! time: the shell stops reading the connection until it is answered.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::command::{Entry, NodeId};
use crate::config::ReplicationConfig;
use crate::frame::{Frame, RejectReason};
use crate::handshake::{reject, HandshakeKeys, Nonce, PeerIdentity};
use crate::record::Record;

// What an attached leader sends (appends, heartbeats, truncations, snapshot
// chunks): a child module, so it sees the engine's private state.
#[path = "session_ready.rs"]
mod ready;
use ready::SnapshotRecv;

/// Largest snapshot a follower accepts.
pub const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;

/// What this node knows when an input arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// The highest epoch this node has seen (persisted).
    pub epoch: u64,
    /// The leader it knows for that epoch.
    pub leader: Option<NodeId>,
    /// The last offset durable in its WAL.
    pub durable: u64,
}

/// An event for a session engine.
#[derive(Debug, Clone)]
pub enum SessionInput {
    /// A frame from the leader.
    Frame(Frame),
    /// The answer to [`SessionAction::Attach`]: the log end `(offset,
    /// epoch)`, or why the leader may not attach.
    Attached(Result<(u64, u64), RejectReason>),
    /// The answer to [`SessionAction::Append`].
    Appended(Result<(), String>),
    /// The answer to [`SessionAction::Truncate`] or
    /// [`SessionAction::InstallSnapshot`]: the new log end `(offset,
    /// epoch)`.
    LogReset(Result<(u64, u64), String>),
    /// The log is durable up to this offset.
    Durable(u64),
    /// The housekeeping timer: session timeout, a missed ack.
    Tick,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAction {
    /// Write this frame; if the writer cannot take it, close.
    Send(Frame),
    /// Write this `Reject`, then close once it is flushed.
    RejectAndClose {
        /// The `Reject` frame.
        frame: Frame,
        /// Why, for the log.
        reason: String,
    },
    /// Close the connection now.
    Close {
        /// Why, for the log.
        reason: String,
    },
    /// Make this session the active one for leader `leader` of `epoch`
    /// (persisting a higher epoch first); answer [`SessionInput::Attached`].
    Attach {
        /// The authenticated leader.
        leader: NodeId,
        /// Its epoch.
        epoch: u64,
    },
    /// Append these decoded records (checked against the log by its owner)
    /// and learn `commit`; answer [`SessionInput::Appended`].
    Append {
        /// The records, byte for byte as the leader sent them.
        records: Vec<Record>,
        /// Their decoded entries, for the store.
        entries: Vec<Entry>,
        /// The leader's commit point.
        commit: u64,
    },
    /// Learn the leader's commit point (from a heartbeat).
    Commit {
        /// The leader's commit point.
        commit: u64,
    },
    /// Drop every entry after `to`; answer [`SessionInput::LogReset`].
    Truncate {
        /// Last offset to keep.
        to: u64,
    },
    /// An election message from the authenticated voter `from`, for this
    /// node's election engine (best effort: elections retry).
    Election {
        /// The voter.
        from: NodeId,
        /// The message.
        msg: crate::engine::election::ElectionMsg,
    },
    /// Install the snapshot the leader sent; answer
    /// [`SessionInput::LogReset`].
    InstallSnapshot {
        /// Offset the chunks announced.
        offset: u64,
        /// Epoch the chunks announced.
        epoch: u64,
        /// The encoded snapshot (decoded and checked by the shell's disk
        /// thread).
        bytes: Bytes,
    },
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello {
        nonce: Nonce,
    },
    Attaching {
        leader: NodeId,
        epoch: u64,
        leader_nonce: Nonce,
    },
    Ready {
        leader: NodeId,
        epoch: u64,
        pending: Pending,
    },
    /// An election connection from an authenticated voter.
    Voter {
        from: NodeId,
    },
    Closed,
}

/// The request to the log owner that is outstanding, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Append,
    Reset,
}

/// Protocol state of one inbound replication connection (see the module
/// docs).
#[derive(Debug, Clone)]
pub struct ReplicaSessionEngine {
    node: NodeId,
    keys: HandshakeKeys,
    identity: PeerIdentity,
    config: ReplicationConfig,
    phase: Phase,
    last_heard: Instant,
    last_ack: Instant,
    acked: u64,
    /// The highest `Heartbeat::seq` received on this connection: every
    /// `Ack` echoes it.
    probe_seq: u64,
    /// The `probe_seq` the last `Ack` echoed.
    probe_acked: u64,
    snapshot: Option<SnapshotRecv>,
    actions: VecDeque<SessionAction>,
}

impl ReplicaSessionEngine {
    /// A session on node `node` that just accepted a connection: its first
    /// action sends the `Challenge` with `nonce` (fresh bytes from a
    /// CSPRNG).
    pub fn new(
        node: NodeId,
        keys: HandshakeKeys,
        config: ReplicationConfig,
        now: Instant,
        nonce: Nonce,
    ) -> ReplicaSessionEngine {
        let challenge = keys.challenge(&nonce);
        ReplicaSessionEngine {
            node,
            keys,
            identity: PeerIdentity::Unverified,
            config,
            phase: Phase::AwaitHello { nonce },
            last_heard: now,
            last_ack: now,
            acked: 0,
            probe_seq: 0,
            probe_acked: 0,
            snapshot: None,
            actions: VecDeque::from([SessionAction::Send(challenge)]),
        }
    }

    /// Bind the session to what the transport proved about the peer (its
    /// TLS certificate's node ids): a `Hello` or `VoterHello` claiming any
    /// other node is refused with `Reject { NotCertified }`, even with a
    /// valid proof.
    /// Call it before the first frame is handled.
    pub fn set_peer_identity(&mut self, identity: PeerIdentity) {
        self.identity = identity;
    }

    /// The leader this session follows, once attached.
    pub fn leader(&self) -> Option<NodeId> {
        match self.phase {
            Phase::Ready { leader, .. } => Some(leader),
            _ => None,
        }
    }

    /// The epoch of the leader this session follows, once attached.
    pub fn epoch(&self) -> Option<u64> {
        match self.phase {
            Phase::Ready { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    /// The voter of an election connection, once authenticated.
    pub fn voter(&self) -> Option<NodeId> {
        match self.phase {
            Phase::Voter { from } => Some(from),
            _ => None,
        }
    }

    /// Whether the session ended (a close or reject was asked for).
    pub fn closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The highest offset acked on this session.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<SessionAction> {
        self.actions.pop_front()
    }

    /// When the leader counts as silent (call back with
    /// [`SessionInput::Tick`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.phase != Phase::Closed).then(|| self.last_heard + self.config.session_timeout)
    }

    /// Take one input.
    pub fn handle(&mut self, now: Instant, input: SessionInput, local: Local) {
        if self.phase == Phase::Closed {
            return;
        }
        match input {
            SessionInput::Frame(frame) => {
                self.last_heard = now;
                self.on_frame(now, frame, local);
            }
            SessionInput::Attached(result) => self.on_attached(result, local),
            SessionInput::Appended(result) => {
                if self.take_pending(Pending::Append) {
                    if let Err(e) = result {
                        tracing::warn!(node = self.node, error = %e, "append refused");
                        self.close("append refused");
                    }
                }
            }
            SessionInput::LogReset(result) => {
                if self.take_pending(Pending::Reset) {
                    match result {
                        Ok((last_offset, last_epoch)) => {
                            // The log end may have moved down: ack from here.
                            self.acked = last_offset;
                            self.actions.push_back(SessionAction::Send(Frame::Position {
                                last_offset,
                                last_epoch,
                            }));
                        }
                        Err(e) => {
                            tracing::error!(node = self.node, error = %e, "log reset refused or failed");
                            self.close("truncation or snapshot install failed");
                        }
                    }
                }
            }
            SessionInput::Durable(offset) => {
                if offset > self.acked {
                    self.ack(now, offset);
                }
            }
            SessionInput::Tick => {
                if now.saturating_duration_since(self.last_heard) > self.config.session_timeout {
                    let why = if self.voter().is_some() {
                        "election connection idle past the session timeout"
                    } else {
                        "leader silent past the session timeout"
                    };
                    self.close(why);
                } else if local.durable > self.acked
                    && now.saturating_duration_since(self.last_ack)
                        >= self.config.heartbeat_interval
                {
                    // A durable notification was missed: re-ack.
                    self.ack(now, local.durable);
                }
            }
        }
    }

    /// Clear the outstanding request of kind `kind`; false if none was.
    fn take_pending(&mut self, kind: Pending) -> bool {
        match &mut self.phase {
            Phase::Ready { pending, .. } if *pending == kind => {
                *pending = Pending::None;
                true
            }
            _ => false,
        }
    }

    fn set_pending(&mut self, kind: Pending) {
        if let Phase::Ready { pending, .. } = &mut self.phase {
            *pending = kind;
        }
    }

    fn close(&mut self, reason: &str) {
        self.phase = Phase::Closed;
        self.actions.push_back(SessionAction::Close {
            reason: reason.to_string(),
        });
    }

    fn reject_and_close(&mut self, frame: Frame, reason: &str) {
        self.phase = Phase::Closed;
        self.actions.push_back(SessionAction::RejectAndClose {
            frame,
            reason: reason.to_string(),
        });
    }

    fn ack(&mut self, now: Instant, offset: u64) {
        if matches!(self.phase, Phase::Ready { .. }) {
            self.acked = self.acked.max(offset);
            self.last_ack = now;
            self.probe_acked = self.probe_seq;
            self.actions.push_back(SessionAction::Send(Frame::Ack {
                offset,
                seq: self.probe_seq,
            }));
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Frame, local: Local) {
        match (self.phase, frame) {
            (Phase::AwaitHello { nonce }, frame @ Frame::VoterHello { .. }) => {
                match self
                    .keys
                    .check_voter_hello(&nonce, &frame)
                    .and_then(|(from, theirs)| {
                        self.identity.check(from)?;
                        Ok((from, self.keys.voter_welcome(&theirs)?))
                    }) {
                    Ok((from, welcome)) => {
                        self.phase = Phase::Voter { from };
                        self.actions.push_back(SessionAction::Send(welcome));
                    }
                    Err(e) => {
                        tracing::warn!(node = self.node, error = %e, "election connection refused");
                        self.reject_and_close(reject(&e, 0, None), "voter handshake refused");
                    }
                }
            }
            (Phase::Voter { from }, Frame::Election { msg }) => {
                self.actions
                    .push_back(SessionAction::Election { from, msg });
            }
            (Phase::Voter { from }, other) => {
                tracing::warn!(
                    node = self.node,
                    peer = from,
                    frame = other.kind(),
                    "unexpected frame on an election connection"
                );
                self.close("protocol error");
            }
            (Phase::AwaitHello { nonce }, frame) => {
                match self
                    .keys
                    .check_hello(&nonce, local.epoch, local.leader, &frame)
                    .and_then(|info| {
                        self.identity.check(info.leader_id)?;
                        Ok(info)
                    }) {
                    Ok(info) => {
                        self.phase = Phase::Attaching {
                            leader: info.leader_id,
                            epoch: info.epoch,
                            leader_nonce: info.nonce,
                        };
                        self.actions.push_back(SessionAction::Attach {
                            leader: info.leader_id,
                            epoch: info.epoch,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(node = self.node, epoch = local.epoch, error = %e, "leader handshake refused");
                        let refusal = self
                            .keys
                            .reject_hello(&e, local.epoch, local.leader, &frame);
                        self.reject_and_close(refusal, "handshake refused");
                    }
                }
            }
            (
                Phase::Ready {
                    pending: Pending::None,
                    epoch,
                    ..
                },
                frame,
            ) => self.on_ready_frame(now, epoch, frame, local),
            (_, other) => {
                tracing::warn!(
                    node = self.node,
                    frame = other.kind(),
                    "frame from the leader while the handshake or a request is pending"
                );
                self.close("protocol error");
            }
        }
    }

    fn on_attached(&mut self, result: Result<(u64, u64), RejectReason>, local: Local) {
        let Phase::Attaching {
            leader,
            epoch,
            leader_nonce,
        } = self.phase
        else {
            return;
        };
        let refused = match result {
            Ok((last_offset, last_epoch)) => {
                match self.keys.welcome(&leader_nonce, last_offset, last_epoch) {
                    Ok(frame) => {
                        self.phase = Phase::Ready {
                            leader,
                            epoch,
                            pending: Pending::None,
                        };
                        self.acked = last_offset;
                        self.actions.push_back(SessionAction::Send(frame));
                        return;
                    }
                    Err(e) => {
                        tracing::error!(node = self.node, error = %e, "cannot build Welcome");
                        RejectReason::BadProof
                    }
                }
            }
            Err(reason) => reason,
        };
        tracing::warn!(node = self.node, leader, epoch, reason = ?refused, "leader refused");
        // The leader's Hello verified: sign the refusal, so that a leader
        // fenced by a higher epoch can trust it and step down.
        let frame = self
            .keys
            .signed_reject(&leader_nonce, refused, local.epoch, local.leader)
            .unwrap_or(Frame::Reject {
                reason: refused,
                epoch: local.epoch,
                leader: local.leader,
                proof: Vec::new(),
            });
        self.reject_and_close(frame, "leader refused");
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
