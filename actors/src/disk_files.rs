//! What the disk threads own: the writer's [`Disk`] (the WAL and the data
//! dir, with the `meta` writes that merge with the one on disk) and the
//! reader's [`DiskReader`]. Jobs and requests get access to them on their
//! thread only.

use std::path::{Path, PathBuf};

use metawal::engine::epoch::{merge_meta, vote_meta, EpochRefused};
use metawal::storage::{NodeMeta, Snapshot, StorageError};
use metawal::wal::{Wal, WalReader};
use metawal::NodeId;

/// How often [`DiskReader::load_latest_snapshot`] retries when the newest
/// snapshot file was replaced (and the old one removed) while it was loading.
const SNAPSHOT_LOAD_TRIES: usize = 3;

/// What the disk thread owns; jobs get `&mut` access to it.
#[derive(Debug)]
pub struct Disk {
    /// The node's write-ahead log.
    pub wal: Wal,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// Test hook (feature `fault-injection`): the next WAL append fails as
    /// an I/O error would.
    #[cfg(feature = "fault-injection")]
    pub inject_write_failure: bool,
    /// Test hook (feature `fault-injection`): `Some(k)`: after `k` more
    /// meta writes, the next one fails as an I/O error would.
    #[cfg(feature = "fault-injection")]
    pub inject_meta_failure: std::cell::Cell<Option<u32>>,
}

impl Disk {
    /// Persist `meta` merged with the meta on disk ([`merge_meta`]: never
    /// a lower epoch, a second leader of an epoch or a second vote in one;
    /// what `meta` leaves out of the same epoch is kept). Every meta write
    /// goes through here or [`Disk::store_vote`], on this thread, so two
    /// writers racing can never undo each other.
    pub fn store_meta_fenced(
        &self,
        meta: &NodeMeta,
    ) -> Result<Result<(), EpochRefused>, StorageError> {
        self.injected_meta_failure()?;
        let cur = NodeMeta::load(&self.data_dir)?;
        let merged = match merge_meta(cur.as_ref(), meta) {
            Ok(m) => m,
            Err(refused) => return Ok(Err(refused)),
        };
        if cur.as_ref() != Some(&merged) {
            merged.store(&self.data_dir)?;
        }
        Ok(Ok(()))
    }

    /// Persist a move to `epoch` with a vote for `voted_for` (or none)
    /// ([`vote_meta`]); returns the meta now on disk. Refused (nothing
    /// written) for an epoch below the one on disk or a second vote in it.
    pub fn store_vote(
        &self,
        epoch: u64,
        voted_for: Option<NodeId>,
    ) -> Result<Result<NodeMeta, EpochRefused>, StorageError> {
        self.injected_meta_failure()?;
        let Some(cur) = NodeMeta::load(&self.data_dir)? else {
            return Err(StorageError::Corrupt {
                file: self.data_dir.join(metawal::storage::META_FILE_NAME),
                reason: "missing: a node writes it at start, before any vote".into(),
            });
        };
        let merged = match vote_meta(&cur, epoch, voted_for) {
            Ok(m) => m,
            Err(refused) => return Ok(Err(refused)),
        };
        if merged != cur {
            merged.store(&self.data_dir)?;
        }
        Ok(Ok(merged))
    }

    fn injected_meta_failure(&self) -> Result<(), StorageError> {
        #[cfg(feature = "fault-injection")]
        if let Some(skip) = self.inject_meta_failure.take() {
            if skip > 0 {
                self.inject_meta_failure.set(Some(skip - 1));
                return Ok(());
            }
            return Err(StorageError::Io {
                path: self.data_dir.clone(),
                source: std::io::Error::other("injected meta write failure"),
            });
        }
        Ok(())
    }

    /// Where snapshots live.
    pub fn snapshot_dir(&self) -> PathBuf {
        snapshot_dir(&self.data_dir)
    }
}

/// What the reader thread has; read jobs get `&` access to it.
#[derive(Debug)]
pub struct DiskReader {
    /// This node.
    pub node: NodeId,
    /// The durable records of the node's WAL, read-only.
    pub wal: WalReader,
    /// The node's data directory.
    pub data_dir: PathBuf,
}

impl DiskReader {
    /// Load the newest snapshot, if any. A snapshot stored meanwhile removes
    /// the older file this was about to read: then the listing is taken
    /// again (a few times at most).
    pub fn load_latest_snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        let dir = snapshot_dir(&self.data_dir);
        let mut tries = 1;
        loop {
            match Snapshot::load_latest(&dir) {
                Err(StorageError::Io { path, source })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && tries < SNAPSHOT_LOAD_TRIES =>
                {
                    tracing::debug!(node = self.node, file = %path.display(), "snapshot replaced while loading; retrying");
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}

/// `data_dir/snapshots`.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// `data_dir/wal`.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}
