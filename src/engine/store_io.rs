//! The store engine's vocabulary: the node's role and what admission needs
//! to know, the refusals and admitted proposals it answers with, the sink
//! applied entries go to, and its inputs and actions (see
//! [`super::store`], which decides).

use crate::command::{Entry, NodeId};
use crate::engine::LogProgress;
use crate::record::Record;
use crate::state::{MetadataState, ValidationError};
use crate::storage::Snapshot;

/// What this node is, as far as admission is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// It leads.
    Leader,
    /// It follows `leader` (if known).
    Follower {
        /// The leader this node knows.
        leader: Option<NodeId>,
    },
    /// Its storage failed.
    Failed,
    /// It is shutting down.
    Stopped,
}

/// What admission needs to know besides the store's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The node's role.
    pub role: NodeRole,
    /// The ISR size (leader included).
    pub isr_len: usize,
    /// `min_insync_replicas` in force.
    pub min_insync: usize,
}

/// Why a proposal was refused. Nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitRefused {
    /// This node does not lead.
    #[error("not the leader")]
    NotLeader {
        /// The leader it knows, if any.
        leader: Option<NodeId>,
    },
    /// This node's storage failed.
    #[error("this node's storage failed")]
    Failed,
    /// This node is shutting down.
    #[error("shutting down")]
    Stopped,
    /// `acks=all` with an ISR below `min_insync_replicas`.
    #[error("not enough in-sync replicas: {isr} of {required}")]
    NotEnoughReplicas {
        /// ISR size.
        isr: usize,
        /// Required.
        required: usize,
    },
    /// The command breaks a metadata rule.
    #[error("invalid command: {0}")]
    Invalid(ValidationError),
    /// Too much is appended but not committed.
    #[error("{entries} entries appended but not committed (at most {max})")]
    Uncommitted {
        /// Entries appended but not committed.
        entries: u64,
        /// The limit.
        max: u64,
    },
    /// The entry's record would exceed the record size limit.
    #[error("the entry is {bytes} bytes encoded, above the {max}-byte record limit")]
    TooLarge {
        /// Encoded payload size.
        bytes: usize,
        /// [`crate::record::MAX_RECORD_PAYLOAD`].
        max: usize,
    },
    /// The entry could not be encoded.
    #[error("cannot encode entry: {0}")]
    Encode(crate::record::RecordError),
}

/// An admitted proposal: its entry and the record to hand to the
/// Replicator.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The entry (offset and epoch assigned).
    pub entry: Entry,
    /// Its encoded record.
    pub record: Record,
}

/// Where applied entries go, as they are applied (the shell's view and
/// subscribers).
pub trait ApplySink {
    /// `entry` was applied (it is handed over: the engine keeps nothing of
    /// it); `state` is the state right after it.
    fn applied(&mut self, state: &MetadataState, entry: Entry);
    /// The state was replaced (a snapshot install).
    fn reset(&mut self, state: &MetadataState);
}

/// An event for the store engine.
#[derive(Debug, Clone)]
pub enum StoreInput {
    /// The log progress moved (commit point, local durability).
    Progress(LogProgress),
    /// Decoded entries a follower received (may be dropped when the queue
    /// is full: they are read back from the WAL).
    Entries(Vec<Entry>),
    /// The answer to [`StoreAction::ReadWal`].
    WalRead {
        /// The first offset asked for.
        from: u64,
        /// The last offset it may apply from this read.
        upto: u64,
        /// The records, or why not.
        result: Result<Vec<Record>, String>,
    },
    /// The pause after a failed read is over.
    RetryRead,
    /// Everything after `to` was truncated.
    Truncated {
        /// The last offset kept.
        to: u64,
    },
    /// A snapshot from the leader replaced the log up to its offset.
    SnapshotInstalled(Box<Snapshot>),
    /// The snapshot at `offset` is on disk.
    SnapshotWritten {
        /// Its offset.
        offset: u64,
    },
    /// The snapshot at `offset` failed.
    SnapshotFailed {
        /// Its offset.
        offset: u64,
        /// Why.
        error: String,
    },
    /// This node leads `epoch` now: `appended` is the state of its whole
    /// log, which ends at `next_offset - 1`.
    Lead {
        /// The epoch.
        epoch: u64,
        /// The state with every entry of the log applied.
        appended: MetadataState,
        /// The next offset to assign.
        next_offset: u64,
    },
    /// This node no longer leads.
    StepDown,
}

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum StoreAction {
    /// Read committed records from `from` (at most `count`), on the reader
    /// thread; answer [`StoreInput::WalRead`] with `upto`.
    ReadWal {
        /// First offset.
        from: u64,
        /// Most records.
        count: usize,
        /// The last offset it may apply.
        upto: u64,
    },
    /// Answer [`StoreInput::RetryRead`] after a pause (a heartbeat
    /// interval).
    RetryReadLater,
    /// Write this snapshot, then drop the WAL before `keep_from`; answer
    /// [`StoreInput::SnapshotWritten`] or [`StoreInput::SnapshotFailed`].
    TakeSnapshot {
        /// The snapshot.
        snapshot: Snapshot,
        /// Keep the log from here (one interval behind the snapshot, for
        /// followers that lag).
        keep_from: u64,
    },
    /// This node cannot apply its committed log: it applies nothing more
    /// and takes no proposals. Restart it once the disk is fixed.
    FailStop(String),
}
