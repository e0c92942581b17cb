//! What a node asks of its disk writer thread, as typed requests and typed
//! completions (besides appends, which have their own group-commit path).
//!
//! Before this, callers handed the disk thread closures (`run(|d| …)`), so
//! nothing could say what the disk was asked to do. Each request here is
//! one storage operation; [`execute`] is the only code that carries them
//! out, on the writer thread, in queue order.

use bytes::Bytes;
use metawal::engine::epoch::EpochRefused;
use metawal::engine::follower::{plan_snapshot_install, ResetError, SnapshotInstall};
use metawal::engine::link::SnapshotBytes;
use metawal::engine::recovery;
use metawal::epochs::EpochIndex;
use metawal::record::{decode_record, Record};
use metawal::storage::{NodeMeta, Snapshot, StorageError};
use metawal::wal::WalError;
use metawal::{MetadataState, NodeId};

use crate::disk_files::{Disk, DiskReader};
use crate::error::DiskError;

/// Most bytes one read of the replay asks the WAL for.
const REPLAY_READ_BYTES: usize = 8 * 1024 * 1024;

/// One storage operation for the writer thread.
#[derive(Debug)]
pub(crate) enum DiskRequest {
    /// Recover the data dir at start: `meta`, the newest snapshot, the WAL
    /// replayed by `engine::recovery`'s rule.
    Recover,
    /// Write `meta`, merged with the one on disk (never a lower epoch).
    PersistMeta(NodeMeta),
    /// Write a vote (or a move to `epoch`), merged with the one on disk.
    PersistVote {
        epoch: u64,
        voted_for: Option<NodeId>,
    },
    /// Read the log's epochs and `meta` back, after every write queued
    /// before.
    ReadBack,
    /// Drop every record after `to`.
    TruncateSuffix { to: u64 },
    /// Decode, check and store a snapshot from the leader, and reset the
    /// WAL to start after it (dropping all of it if it diverged).
    InstallSnapshot {
        offset: u64,
        epoch: u64,
        bytes: Bytes,
        replace_log: bool,
    },
    /// Store a snapshot taken here and drop the WAL before `keep_from`.
    WriteSnapshot {
        snapshot: Box<Snapshot>,
        keep_from: u64,
    },
    /// The appended state for a step-up: `state` with every record of the
    /// log after it applied.
    ReplayLog { state: Box<MetadataState> },
    /// Test hook: after `skip` more `meta` writes, one fails.
    #[cfg(feature = "fault-injection")]
    InjectMetaFailure { skip: u32 },
    /// Test hook: whether an injected `meta` failure is still to come.
    #[cfg(feature = "fault-injection")]
    MetaFailurePending,
    /// Test hook: the next WAL append fails.
    #[cfg(feature = "fault-injection")]
    InjectWalFailure,
}

/// What a [`DiskRequest`] came to, one variant per request.
#[derive(Debug)]
pub(crate) enum DiskCompletion {
    Recovered(Box<Result<Recovered, DiskError>>),
    MetaPersisted(Result<Result<(), EpochRefused>, StorageError>),
    VotePersisted(Result<Result<NodeMeta, EpochRefused>, StorageError>),
    ReadBack {
        epochs: EpochIndex,
        meta: Result<Option<NodeMeta>, StorageError>,
    },
    Truncated(Result<EpochIndex, String>),
    SnapshotInstalled(Result<(EpochIndex, Box<Snapshot>), ResetError>),
    /// The new log start `(base offset, base epoch)`.
    SnapshotWritten(Result<(u64, u64), String>),
    /// The appended state and the log's last offset.
    LogReplayed(Result<(Box<MetadataState>, u64), String>),
    #[cfg(feature = "fault-injection")]
    Injected(bool),
}

/// One read for the reader thread (durable records only; never behind an
/// append).
#[derive(Debug)]
pub(crate) enum ReadRequest {
    /// Up to `max_entries` records from `from` within `max_bytes` (at
    /// least one).
    Range {
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    },
    /// The first offset the WAL holds.
    LogStart,
    /// The newest snapshot, encoded for a follower.
    LoadSnapshot,
}

/// What a [`ReadRequest`] came to.
#[derive(Debug)]
pub(crate) enum ReadCompletion {
    /// The log start at the read, and the records (or why not).
    Range {
        log_start: u64,
        records: Result<Vec<Record>, WalError>,
    },
    LogStart(u64),
    Snapshot(Result<Option<SnapshotBytes>, String>),
}

/// Carry out the read `request` on the reader thread's `r`.
pub(crate) fn execute_read(r: &DiskReader, request: ReadRequest) -> ReadCompletion {
    match request {
        ReadRequest::Range {
            from,
            max_entries,
            max_bytes,
        } => {
            let log_start = r.wal.first_offset();
            let records = r.wal.read(from, max_entries, max_bytes);
            if let Err(e @ WalError::Raced { .. }) = &records {
                tracing::debug!(node = r.node, offset = from, error = %e, "WAL read raced with a truncation");
            }
            ReadCompletion::Range { log_start, records }
        }
        ReadRequest::LogStart => ReadCompletion::LogStart(r.wal.first_offset()),
        ReadRequest::LoadSnapshot => ReadCompletion::Snapshot(load_snapshot(r)),
    }
}

/// Load and encode the newest snapshot (file reading and CPU only:
/// snapshot files are written atomically).
fn load_snapshot(r: &DiskReader) -> Result<Option<SnapshotBytes>, String> {
    let Some(s) = r.load_latest_snapshot().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let bytes = s.encode().map_err(|e| e.to_string())?;
    Ok(Some(SnapshotBytes {
        offset: s.offset,
        epoch: s.epoch,
        bytes: Bytes::from(bytes),
    }))
}

/// Carry out `request` on the writer thread's `d`.
pub(crate) fn execute(d: &mut Disk, request: DiskRequest) -> DiskCompletion {
    match request {
        DiskRequest::Recover => DiskCompletion::Recovered(Box::new(recover(d))),
        DiskRequest::PersistMeta(meta) => DiskCompletion::MetaPersisted(d.store_meta_fenced(&meta)),
        DiskRequest::PersistVote { epoch, voted_for } => {
            DiskCompletion::VotePersisted(d.store_vote(epoch, voted_for))
        }
        DiskRequest::ReadBack => DiskCompletion::ReadBack {
            epochs: d.wal.epochs().clone(),
            meta: NodeMeta::load(&d.data_dir),
        },
        DiskRequest::TruncateSuffix { to } => DiskCompletion::Truncated(
            d.wal
                .truncate_suffix(to)
                .map(|()| d.wal.epochs().clone())
                .map_err(|e| e.to_string()),
        ),
        DiskRequest::InstallSnapshot {
            offset,
            epoch,
            bytes,
            replace_log,
        } => DiskCompletion::SnapshotInstalled(install_snapshot(
            d,
            offset,
            epoch,
            &bytes,
            replace_log,
        )),
        DiskRequest::WriteSnapshot {
            snapshot,
            keep_from,
        } => DiskCompletion::SnapshotWritten(write_snapshot(d, &snapshot, keep_from)),
        DiskRequest::ReplayLog { state } => DiskCompletion::LogReplayed(replay_log(d, *state)),
        #[cfg(feature = "fault-injection")]
        DiskRequest::InjectMetaFailure { skip } => {
            d.inject_meta_failure.set(Some(skip));
            DiskCompletion::Injected(true)
        }
        #[cfg(feature = "fault-injection")]
        DiskRequest::MetaFailurePending => {
            let pending = d.inject_meta_failure.take();
            d.inject_meta_failure.set(pending);
            DiskCompletion::Injected(pending.is_some())
        }
        #[cfg(feature = "fault-injection")]
        DiskRequest::InjectWalFailure => {
            d.inject_write_failure = true;
            DiskCompletion::Injected(true)
        }
    }
}

fn write_snapshot(d: &mut Disk, snapshot: &Snapshot, keep_from: u64) -> Result<(u64, u64), String> {
    snapshot
        .store(&d.snapshot_dir())
        .map_err(|e| e.to_string())?;
    if let Some(epoch) = d.wal.epochs().epoch_at(keep_from) {
        if keep_from >= d.wal.first_offset() {
            d.wal
                .truncate_prefix(keep_from, epoch)
                .map_err(|e| e.to_string())?;
        }
    }
    let e = d.wal.epochs();
    Ok((e.base_offset(), e.base_epoch()))
}

/// The listener released the log: every record in it is durable and
/// nothing is written until the Replicator starts.
fn replay_log(
    d: &mut Disk,
    mut appended: MetadataState,
) -> Result<(Box<MetadataState>, u64), String> {
    let last = d.wal.last_offset();
    let mut next = appended.applied_offset() + 1;
    while next <= last {
        let records = d
            .wal
            .read(next, 4096, REPLAY_READ_BYTES)
            .map_err(|e| e.to_string())?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let (entry, _) = decode_record(&r.bytes).map_err(|e| e.to_string())?;
            // Validated by its leader against the state before it: one
            // that does not apply is a bug or a corruption, and this node
            // does not lead with it (the step fails; the store fail-stops
            // when it reaches it as committed).
            appended
                .apply(&entry)
                .map_err(|e| format!("entry {} of the log does not apply: {e}", entry.offset))?;
            next = entry.offset + 1;
        }
    }
    Ok((Box::new(appended), last))
}

/// The disk side of a snapshot install: decode and check what the leader
/// sent (bad data is refused with nothing changed), store it, then reset
/// the WAL as the engine planned. Runs on the disk thread.
fn install_snapshot(
    d: &mut Disk,
    offset: u64,
    epoch: u64,
    bytes: &[u8],
    replace_log: bool,
) -> Result<(EpochIndex, Box<Snapshot>), ResetError> {
    let snap = Snapshot::decode(bytes, std::path::Path::new("<snapshot from leader>"))
        .map_err(|e| ResetError::Invalid(e.to_string()))?;
    if (snap.offset, snap.epoch) != (offset, epoch) {
        return Err(ResetError::Invalid(format!(
            "snapshot holds offset {} epoch {}, but its chunks said offset {offset} epoch {epoch}",
            snap.offset, snap.epoch
        )));
    }
    let storage = |e: &dyn std::fmt::Display| ResetError::Storage(e.to_string());
    snap.store(&d.snapshot_dir()).map_err(|e| storage(&e))?;
    // The engine planned against its own view of the log, which is the
    // WAL's (nothing is written meanwhile); checked again here.
    let replace = replace_log
        || plan_snapshot_install(d.wal.epochs(), offset, epoch) == SnapshotInstall::ReplaceLog;
    if replace {
        let base = d.wal.epochs().base_offset();
        tracing::info!(
            offset,
            epoch,
            from = base + 1,
            "the log diverged at the snapshot's offset: dropping all of it"
        );
        d.wal.truncate_suffix(base).map_err(|e| storage(&e))?;
    }
    d.wal
        .truncate_prefix(offset, epoch)
        .map_err(|e| storage(&e))?;
    Ok((d.wal.epochs().clone(), Box::new(snap)))
}

/// What recovery found in the data directory.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub meta: Option<NodeMeta>,
    /// State up to the known commit.
    pub state: MetadataState,
    /// State with every entry in the WAL.
    pub appended: MetadataState,
    pub epochs: EpochIndex,
    pub commit: u64,
}

fn recover(d: &mut Disk) -> Result<Recovered, DiskError> {
    let meta = NodeMeta::load(&d.data_dir)?;
    let snapshot = Snapshot::load_latest(&d.snapshot_dir())?;
    let (state, snap_offset) = match snapshot {
        Some(s) => {
            if d.wal.last_offset() < s.offset {
                // The snapshot was installed but the WAL not yet reset.
                d.wal.truncate_prefix(s.offset, s.epoch)?;
            }
            (s.state, s.offset)
        }
        None => (MetadataState::new(), 0),
    };
    let first = d.wal.first_offset();
    if first > snap_offset + 1 {
        return Err(DiskError::Inconsistent {
            dir: d.data_dir.display().to_string(),
            reason: format!(
                "the WAL starts at offset {first} but the newest snapshot covers only up to {snap_offset}; entries in between are missing. Restore the snapshots directory, or empty this data dir to resync from the leader"
            ),
        });
    }
    let commit = recovery::commit_point(
        meta.as_ref().map_or(0, |m| m.commit_hint),
        snap_offset,
        d.wal.last_offset(),
    );
    let mut replay = recovery::Replay::new(state, commit);
    let mut next = snap_offset + 1;
    let last = d.wal.last_offset();
    while next <= last {
        let records = d.wal.read(next, 4096, REPLAY_READ_BYTES)?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let (entry, _) = decode_record(&r.bytes).map_err(|e| DiskError::Inconsistent {
                dir: d.data_dir.display().to_string(),
                reason: format!("record {} does not decode: {e}", r.offset),
            })?;
            // Fail-stop: the node does not start with a state no other
            // node has.
            replay.entry(&entry).map_err(|e| DiskError::Inconsistent {
                dir: d.data_dir.display().to_string(),
                reason: e.to_string(),
            })?;
            next = entry.offset + 1;
        }
    }
    let (state, appended) = replay.finish();
    Ok(Recovered {
        meta,
        state,
        appended,
        epochs: d.wal.epochs().clone(),
        commit,
    })
}
