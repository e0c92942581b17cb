//! Recovery of a data dir at start, on the disk thread: the WAL (torn
//! tail already cut), the newest snapshot and `meta`, replayed by the one
//! rule of `metawal::engine::recovery`.

use metawal::engine::recovery;
use metawal::epochs::EpochIndex;
use metawal::record::decode_record;
use metawal::storage::{NodeMeta, Snapshot};
use metawal::MetadataState;

use crate::disk::Disk;
use crate::error::DiskError;

/// What recovery found in the data directory.
pub(super) struct Recovered {
    pub meta: Option<NodeMeta>,
    /// State up to the known commit.
    pub state: MetadataState,
    /// State with every entry in the WAL.
    pub appended: MetadataState,
    pub epochs: EpochIndex,
    pub commit: u64,
}

pub(super) fn recover(d: &mut Disk) -> Result<Recovered, DiskError> {
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
        let records = d.wal.read(next, 4096, 8 * 1024 * 1024)?;
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
