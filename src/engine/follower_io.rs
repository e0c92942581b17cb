//! The follower engine's vocabulary: its inputs and actions, the refusals
//! and errors it reports, and the pure rules of truncation and snapshot
//! installs (see [`super::follower`], which decides).

use crate::command::{Entry, NodeId};
use crate::engine::epoch::EpochRefused;
use crate::epochs::EpochIndex;
use crate::record::Record;
use crate::storage::{NodeMeta, Snapshot};

/// One inbound replication connection, as the shell numbers them.
pub type SessionId = u64;

/// A request answered later by an action that carries the same id.
pub type RequestId = u64;

/// Most truncations/snapshot installs waiting for the metadata store to
/// take them. A reset starts only while there is room for its event.
pub const MAX_STORE_OUTBOX: usize = 8;

/// Most attaches held while a new epoch is being persisted (one per
/// session, at most as many as the shell's session limit).
pub const MAX_HELD_ATTACHES: usize = 64;

/// Most requests waiting for the write in flight.
pub const MAX_DEFERRED: usize = 64;

/// A log end: `(last offset, its epoch)`.
pub type LogEnd = (u64, u64);

/// Why a leader may not attach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachRefused {
    /// This node leads, has failed, or the session ended.
    #[error("this node does not follow")]
    NotFollower,
    /// The leader's epoch is lower than this node's.
    #[error("stale epoch: this node is at epoch {current}")]
    StaleEpoch {
        /// This node's epoch.
        current: u64,
        /// Its leader, if known.
        leader: Option<NodeId>,
    },
    /// Another leader already claims the same epoch.
    #[error("another leader holds this epoch")]
    EpochConflict,
    /// The higher epoch could not be persisted, or the disk failed.
    #[error("storage: {0}")]
    Storage(String),
}

/// Why an append from a session is refused. The session closes; the
/// leader resends from the acked offset on a new connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRefused {
    /// Not the active session, or a log reset is under way.
    #[error("session is not the active one")]
    NotActive,
    /// A truncation or snapshot the store has not taken yet must reach it
    /// before anything that would let the commit point pass it.
    #[error("the store has not taken the last truncation or snapshot yet")]
    StoreBehind,
    /// The records do not continue the log.
    #[error("{0}")]
    Invalid(String),
}

/// How writing `meta` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaWriteError {
    /// The meta on disk holds a newer epoch (written meanwhile).
    Fenced(EpochRefused),
    /// The write failed.
    Storage(String),
}

/// How a WAL write ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The disk thread's queue was full: nothing was written. Transient.
    QueueFull,
    /// The write failed: the WAL's state is unknown.
    Failed(String),
}

/// How a truncation or snapshot install ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetError {
    /// The leader's data was bad (an undecodable snapshot, or one that is
    /// not what its chunks announced). Nothing on disk changed.
    Invalid(String),
    /// The disk failed: the WAL's state is unknown.
    Storage(String),
}

/// An event for the follower engine.
#[derive(Debug)]
pub enum FollowerInput {
    /// The shell started a session (counts as live until `SessionGone`).
    SessionOpened(SessionId),
    /// A session ended.
    SessionGone(SessionId),
    /// A session authenticated a leader of `epoch`: make it the active one.
    /// Answered by [`FollowerAction::Attached`].
    Attach {
        /// The answer's id.
        req: RequestId,
        /// The session.
        session: SessionId,
        /// The leader it authenticated.
        leader: NodeId,
        /// The leader's epoch.
        epoch: u64,
    },
    /// The answer to [`FollowerAction::PersistMeta`].
    MetaWritten(Result<(), MetaWriteError>),
    /// The leader's commit point, from a heartbeat on `session`.
    Commit {
        /// The session.
        session: SessionId,
        /// The leader's commit point.
        commit: u64,
    },
    /// The answer to [`FollowerAction::Write`]: durable up to this offset.
    Written(Result<u64, WriteError>),
    /// Truncate after `to`, at the active session's request. Answered by
    /// [`FollowerAction::LogReset`].
    Truncate {
        /// The answer's id.
        req: RequestId,
        /// The session.
        session: SessionId,
        /// The last offset to keep.
        to: u64,
    },
    /// The answer to [`FollowerAction::TruncateWal`]: the WAL's epoch
    /// index afterwards.
    Truncated(Result<EpochIndex, ResetError>),
    /// Install a snapshot received on the active session. Answered by
    /// [`FollowerAction::LogReset`].
    Snapshot {
        /// The answer's id.
        req: RequestId,
        /// The session.
        session: SessionId,
        /// The offset the chunks announced.
        offset: u64,
        /// The epoch the chunks announced.
        epoch: u64,
        /// The encoded snapshot.
        bytes: bytes::Bytes,
    },
    /// The answer to [`FollowerAction::InstallSnapshot`]: the WAL's epoch
    /// index afterwards and the decoded snapshot.
    SnapshotInstalled(Result<(EpochIndex, Box<Snapshot>), ResetError>),
    /// This node is about to lead: end every session, and once the write in
    /// flight is done answer the log ([`FollowerAction::Released`]).
    Release {
        /// The answer's id.
        req: RequestId,
    },
    /// Another path persisted `meta` (a vote, a role change): adopt it if
    /// its epoch is newer. The active session's leader no longer leads this
    /// node's epoch, so that session ends.
    MetaChanged(NodeMeta),
    /// This node follows again: the log as the disk has it, and `meta`.
    Follow {
        /// The WAL's epoch index (everything in it durable).
        epochs: EpochIndex,
        /// The persisted meta.
        meta: NodeMeta,
        /// A commit point known to be committed.
        commit: u64,
    },
}

/// A truncation or snapshot install the metadata store must hear of,
/// before any entry that follows it.
#[derive(Debug, Clone)]
pub enum StoreEvent {
    /// Everything after this offset is gone.
    Truncated(u64),
    /// The state is this snapshot.
    Snapshot(Box<Snapshot>),
}

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum FollowerAction {
    /// Write this meta (fenced against the meta on disk); answer
    /// [`FollowerInput::MetaWritten`].
    PersistMeta(NodeMeta),
    /// The epoch and leader this node follows changed (persisted).
    EpochChanged {
        /// The epoch.
        epoch: u64,
        /// Its leader.
        leader: Option<NodeId>,
    },
    /// Append these records to the WAL and sync; answer
    /// [`FollowerInput::Written`].
    Write(Vec<Record>),
    /// Drop every WAL record after `to`; answer [`FollowerInput::Truncated`].
    TruncateWal {
        /// The last offset to keep.
        to: u64,
    },
    /// Decode and check the snapshot, store it, then drop the WAL up to its
    /// offset (all of it first if `replace_log`); answer
    /// [`FollowerInput::SnapshotInstalled`].
    InstallSnapshot {
        /// The offset the chunks announced.
        offset: u64,
        /// The epoch the chunks announced.
        epoch: u64,
        /// The encoded snapshot.
        bytes: bytes::Bytes,
        /// The local log diverged at the snapshot's offset: drop all of it.
        replace_log: bool,
    },
    /// Decoded entries for the metadata store (which applies them once
    /// committed). Dropping them is safe: the store reads them back from
    /// the WAL.
    Entries(Vec<Entry>),
    /// A `Membership` entry was appended to the log at `offset` (its record
    /// goes to the disk with the `Write` that follows): it is in force from
    /// now. For the node engine (`NodeInput::MembershipAppended`); never
    /// dropped. Records the engine drops before they are written (a session
    /// that ends with writes queued) are never reported.
    MembershipAppended {
        /// Its offset.
        offset: u64,
        /// The membership it holds.
        membership: crate::membership::Membership,
    },
    /// Tell the session the log is durable up to `offset` (it acks).
    Durable {
        /// The session.
        session: SessionId,
        /// The durable offset.
        offset: u64,
    },
    /// End this session.
    StopSession(SessionId),
    /// The answer to an attach.
    Attached {
        /// The request.
        req: RequestId,
        /// The log end, or why not.
        result: Result<LogEnd, AttachRefused>,
    },
    /// The answer to a truncation or snapshot install: the new log end.
    LogReset {
        /// The request.
        req: RequestId,
        /// The new log end, or why not.
        result: Result<LogEnd, String>,
    },
    /// The answer to a release: the log to lead with, and the commit point.
    Released {
        /// The request.
        req: RequestId,
        /// The log, or why not (the node fail-stopped).
        result: Result<(EpochIndex, u64), String>,
    },
    /// The disk failed: no longer replicating. Every session was told to
    /// stop; restart the node.
    FailStop(String),
}

/// Why a vote's fence was refused (`ReplicaListenerEngine::fence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FenceRefused {
    /// The node leads: its log owner holds no follower log to vote with.
    #[error("this node leads: its log owner holds no log to vote with")]
    Leading,
    /// The log owner fail-stopped.
    #[error("this node has failed: its log owner holds no log to vote with")]
    Failed,
}

/// What a follower does with its log when it installs a snapshot taken at
/// `(offset, epoch)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotInstall {
    /// The local log ends at or before the snapshot, or holds the same
    /// entry at the snapshot's offset (same epoch, so by log matching the
    /// same prefix): drop everything up to the snapshot and keep the rest.
    KeepSuffix,
    /// The local entry at the snapshot's offset was written in another
    /// epoch: the suffix diverged from the leader's log. Drop the whole log;
    /// the leader sends everything after the snapshot. (Keeping it would
    /// report a diverged log end after the install, and the leader would
    /// send the snapshot again, forever.)
    ReplaceLog,
}

/// Decide how to install a snapshot at `(offset, epoch)` over `log`.
pub fn plan_snapshot_install(log: &EpochIndex, offset: u64, epoch: u64) -> SnapshotInstall {
    if log.last_offset() <= offset || log.epoch_at(offset) == Some(epoch) {
        SnapshotInstall::KeepSuffix
    } else {
        SnapshotInstall::ReplaceLog
    }
}

/// Why a truncation asked for by the leader is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TruncateRefused {
    /// It would remove entries this node knows are committed.
    #[error("refusing to truncate to {to}: entries up to {floor} are committed here")]
    Committed {
        /// The asked-for last offset to keep.
        to: u64,
        /// Committed (and durable) up to here.
        floor: u64,
    },
}

/// May the follower drop every entry after `to`? Not below what it knows is
/// committed and has on disk (`min(commit, durable)`): a committed entry is
/// in every later leader's log, so a leader asking for that is broken.
pub fn maybe_truncate(to: u64, commit: u64, durable: u64) -> Result<(), TruncateRefused> {
    let floor = commit.min(durable);
    if to < floor {
        return Err(TruncateRefused::Committed { to, floor });
    }
    Ok(())
}
