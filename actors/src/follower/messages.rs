//! The messages between a follower's `ReplicaSession`s and its
//! `ReplicaListener`, and the handles each side holds of the other.
//!
//! They live apart from both actors so that neither file imports the other's
//! actor type: the listener starts sessions (it imports `session`), and a
//! session reaches the listener only through the [`ListenerHandle`] of
//! recipients it is given.

use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use metawal::engine::election::ElectionMsg;
use metawal::record::Record;
use metawal::{Entry, NodeId};

/// A log end: `(last offset, its epoch)`.
pub(crate) use metawal::engine::follower::LogEnd;

/// Why a leader may not attach (decided by the follower engine).
pub(crate) use metawal::engine::AttachRefused;

/// The listener reports a new durable offset to the active session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Durable {
    pub offset: u64,
}

/// End the session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopSession;

/// What the listener holds of a session.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    pub durable: Recipient<Durable>,
    pub stop: Recipient<StopSession>,
}

impl SessionHandle {
    /// Whether the session is still running.
    pub fn connected(&self) -> bool {
        self.stop.connected()
    }
}

/// What a session holds of its listener.
#[derive(Clone)]
pub(crate) struct ListenerHandle {
    pub attach: Recipient<Attach>,
    pub append: Recipient<SessionAppend>,
    pub commit: Recipient<SessionCommit>,
    pub truncate: Recipient<SessionTruncate>,
    pub snapshot: Recipient<SessionSnapshot>,
    pub gone: Recipient<SessionGone>,
}

/// A session authenticated a leader of `epoch`: make it the active session.
#[derive(Message)]
#[rtype(result = "Result<LogEnd, AttachRefused>")]
pub(crate) struct Attach {
    pub session: u64,
    pub addr: SessionHandle,
    pub leader: NodeId,
    pub epoch: u64,
}

/// Checked records from the active session.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub(crate) struct SessionAppend {
    pub session: u64,
    pub records: Vec<Record>,
    pub entries: Vec<Entry>,
    pub commit: u64,
}

/// The leader's commit, from a heartbeat.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SessionCommit {
    pub session: u64,
    pub commit: u64,
}

/// Truncate after `to`, then report the log end.
#[derive(Message)]
#[rtype(result = "Result<LogEnd, String>")]
pub(crate) struct SessionTruncate {
    pub session: u64,
    pub to: u64,
}

/// Install a snapshot received from the leader, then report the log end.
#[derive(Message)]
#[rtype(result = "Result<LogEnd, String>")]
pub(crate) struct SessionSnapshot {
    pub session: u64,
    /// Offset and epoch the leader announced in the chunks.
    pub offset: u64,
    pub epoch: u64,
    /// The encoded snapshot, decoded and checked on the disk thread.
    pub bytes: bytes::Bytes,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SessionGone {
    pub session: u64,
}

/// What the follower side tells the node engine's pump.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum ElectionIn {
    /// An election message from an authenticated peer, passed on by the
    /// session that received it.
    Message { from: NodeId, msg: ElectionMsg },
    /// The log owner accepted a leader's session (see
    /// `NodeShared::note_leader_attached`).
    LeaderAttached,
    /// The log owner sent a membership log event (on its own channel).
    LogChanged,
}

/// Where sessions deliver election messages: set once the driver runs.
/// (Here, beside the sessions, so that neither the listener nor a session
/// imports the driver, which fences the listener.)
pub(crate) type DriverSlot = Arc<OnceLock<Recipient<ElectionIn>>>;
