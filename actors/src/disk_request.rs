//! What a node asks of its disk writer thread, as typed requests and typed
//! completions (besides appends, which have their own group-commit path).
//!
//! Before this, callers handed the disk thread closures (`run(|d| …)`), so
//! nothing could say what the disk was asked to do. Each request here is
//! one storage operation; [`execute`] is the only code that carries them
//! out, on the writer thread, in queue order.

use bytes::Bytes;
use metawal::engine::disk_io::{
    DiskCompletion, DiskExecutor, DiskRequest, ReadCompletion, ReadExecutor, ReadRequest,
};
use metawal::engine::follower::{plan_snapshot_install, ResetError, SnapshotInstall};
use metawal::engine::link::SnapshotBytes;
use metawal::engine::recovery::{
    self, RecoverError, Recovered, REPLAY_READ_BYTES, REPLAY_READ_ENTRIES,
};
use metawal::epochs::EpochIndex;
use metawal::storage::{NodeMeta, Snapshot};
use metawal::wal::WalError;
use metawal::MetadataState;

use crate::disk_files::{Disk, DiskReader};

impl ReadExecutor for DiskReader {
    /// Carry out the read `request` on the reader thread.
    fn execute_read(&self, request: ReadRequest) -> ReadCompletion {
        let r = self;
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

impl DiskExecutor for Disk {
    /// Carry out `request` on the writer thread.
    fn execute(&mut self, request: DiskRequest) -> DiskCompletion {
        let d = self;
        match request {
            DiskRequest::Recover => DiskCompletion::Recovered(Box::new(recover(d))),
            DiskRequest::PersistMeta(meta) => {
                DiskCompletion::MetaPersisted(d.store_meta_fenced(&meta))
            }
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
fn replay_log(d: &mut Disk, appended: MetadataState) -> Result<(Box<MetadataState>, u64), String> {
    let last = d.wal.last_offset();
    let wal = &d.wal;
    let (state, last) = recovery::replay_appended(appended, last, |next| {
        wal.read(next, REPLAY_READ_ENTRIES, REPLAY_READ_BYTES)
    })?;
    Ok((Box::new(state), last))
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

fn recover(d: &mut Disk) -> Result<Recovered, RecoverError> {
    let meta = NodeMeta::load(&d.data_dir)?;
    let snapshot = Snapshot::load_latest(&d.snapshot_dir())?;
    let mut memberships = recovery::RecoveredMemberships::default();
    let (state, snap_offset) = match snapshot {
        Some(s) => {
            if d.wal.last_offset() < s.offset {
                // The snapshot was installed but the WAL not yet reset.
                d.wal.truncate_prefix(s.offset, s.epoch)?;
            }
            memberships.snapshot = s.state.membership().cloned().map(|m| (s.offset, m));
            (s.state, s.offset)
        }
        None => (MetadataState::new(), 0),
    };
    let first = d.wal.first_offset();
    if first > snap_offset + 1 {
        return Err(RecoverError::Inconsistent {
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
    let dir = d.data_dir.display().to_string();
    let wal = &d.wal;
    let (state, appended) = recovery::replay_log(
        &dir,
        state,
        commit,
        snap_offset + 1,
        wal.last_offset(),
        |next| wal.read(next, REPLAY_READ_ENTRIES, REPLAY_READ_BYTES),
        &mut memberships,
    )?;
    Ok(Recovered {
        meta,
        state,
        appended,
        epochs: d.wal.epochs().clone(),
        commit,
        memberships,
    })
}
