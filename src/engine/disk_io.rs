//! What a node asks of its storage, as typed requests and typed
//! completions: the one vocabulary both executors carry out — the disk
//! threads of `metawal-actors` (real files, on threads of their own) and
//! the simulation's disk (`sim::disk`, in memory, with its faults).
//!
//! Before this, the actors handed their disk thread closures and the
//! simulation called methods of its own, so nothing could say what the
//! disk was asked to do, and the two could apply different rules. Each
//! request here is one storage operation; the rules they apply (the meta
//! merge and fencing of [`crate::engine::epoch`], the recovery of
//! [`crate::engine::recovery`]) are the engines' one copy, called by both
//! executors.
//!
//! Appends and their fsyncs keep a path of their own in each executor
//! (group commit on the disk thread; the unsynced tail and timed fsyncs of
//! the simulated disk): they are the hot path, and batching them is the
//! executor's job, not a request's.

use bytes::Bytes;

use crate::command::NodeId;
use crate::engine::epoch::EpochRefused;
use crate::engine::follower_io::ResetError;
use crate::engine::link_io::SnapshotBytes;
use crate::engine::recovery::{RecoverError, Recovered};
use crate::epochs::EpochIndex;
use crate::record::Record;
use crate::state::MetadataState;
use crate::storage::{NodeMeta, Snapshot, StorageError};
use crate::wal::WalError;

/// One storage operation for the writer (the only one that changes the
/// node's files), carried out in queue order after every append queued
/// before it.
#[derive(Debug)]
pub enum DiskRequest {
    /// Recover at start: `meta`, the newest snapshot, the log replayed by
    /// [`crate::engine::recovery`]'s rule.
    Recover,
    /// Write `meta`, merged with the one on disk
    /// ([`crate::engine::epoch::merge_meta`]: never a lower epoch).
    PersistMeta(NodeMeta),
    /// Write a vote (or a move to `epoch`), merged with the one on disk
    /// ([`crate::engine::epoch::vote_meta`]).
    PersistVote {
        /// The epoch voted in.
        epoch: u64,
        /// The candidate voted for, or `None` for only the move to `epoch`.
        voted_for: Option<NodeId>,
    },
    /// Read the log's epochs and `meta` back, after every write queued
    /// before.
    ReadBack,
    /// Drop every record after `to`.
    TruncateSuffix {
        /// The last offset kept.
        to: u64,
    },
    /// Decode, check and store a snapshot from the leader, and reset the
    /// log to start after it (dropping all of it if it diverged).
    InstallSnapshot {
        /// Last offset the snapshot covers.
        offset: u64,
        /// Epoch of that entry.
        epoch: u64,
        /// The encoded snapshot.
        bytes: Bytes,
        /// Whether the engine planned to drop the whole log.
        replace_log: bool,
    },
    /// Store a snapshot taken here and drop the log before `keep_from`.
    WriteSnapshot {
        /// The snapshot.
        snapshot: Box<Snapshot>,
        /// The first offset the log keeps.
        keep_from: u64,
    },
    /// The appended state for a step-up: `state` with every record of the
    /// log after it applied ([`crate::engine::recovery::replay_appended`]).
    ReplayLog {
        /// The applied state.
        state: Box<MetadataState>,
    },
}

/// What a [`DiskRequest`] came to, one variant per request.
#[derive(Debug)]
pub enum DiskCompletion {
    /// [`DiskRequest::Recover`].
    Recovered(Box<Result<Recovered, RecoverError>>),
    /// [`DiskRequest::PersistMeta`]: written, refused by the merge, or the
    /// write failed.
    MetaPersisted(Result<Result<(), EpochRefused>, StorageError>),
    /// [`DiskRequest::PersistVote`]: the meta now on disk, refused, or the
    /// write failed.
    VotePersisted(Result<Result<NodeMeta, EpochRefused>, StorageError>),
    /// [`DiskRequest::ReadBack`].
    ReadBack {
        /// The log's epochs.
        epochs: EpochIndex,
        /// The meta on disk.
        meta: Result<Option<NodeMeta>, StorageError>,
    },
    /// [`DiskRequest::TruncateSuffix`]: the log's epochs after it.
    Truncated(Result<EpochIndex, String>),
    /// [`DiskRequest::InstallSnapshot`]: the log's epochs after it and the
    /// snapshot.
    SnapshotInstalled(Result<(EpochIndex, Box<Snapshot>), ResetError>),
    /// [`DiskRequest::WriteSnapshot`]: the new log start `(base offset,
    /// base epoch)`.
    SnapshotWritten(Result<(u64, u64), String>),
    /// [`DiskRequest::ReplayLog`]: the appended state and the log's last
    /// offset.
    LogReplayed(Result<(Box<MetadataState>, u64), String>),
}

/// One read for the reader (durable records only; never behind an append).
#[derive(Debug)]
pub enum ReadRequest {
    /// Up to `max_entries` records from `from` within `max_bytes` (at
    /// least one).
    Range {
        /// The first offset.
        from: u64,
        /// Most records.
        max_entries: usize,
        /// Most bytes (at least one record is returned).
        max_bytes: usize,
    },
    /// The first offset the log holds.
    LogStart,
    /// The newest snapshot, encoded for a follower.
    LoadSnapshot,
}

/// What a [`ReadRequest`] came to.
#[derive(Debug)]
pub enum ReadCompletion {
    /// The log start at the read, and the records (or why not).
    Range {
        /// The first offset the log held at the read.
        log_start: u64,
        /// The records.
        records: Result<Vec<Record>, WalError>,
    },
    /// [`ReadRequest::LogStart`].
    LogStart(u64),
    /// [`ReadRequest::LoadSnapshot`]: the newest snapshot, if any.
    Snapshot(Result<Option<SnapshotBytes>, String>),
}

/// Carries out [`DiskRequest`]s: the disk thread's files, or the
/// simulation's disk.
pub trait DiskExecutor {
    /// Carry out `request` (after every write queued before it).
    fn execute(&mut self, request: DiskRequest) -> DiskCompletion;
}

/// Carries out [`ReadRequest`]s (reads never change the node's files).
pub trait ReadExecutor {
    /// Carry out the read `request`.
    fn execute_read(&self, request: ReadRequest) -> ReadCompletion;
}
