//! Snapshots of the metadata state and the node's `meta` file, both written
//! atomically (temp file, fsync, rename, fsync dir) and checksummed.
//!
//! STUB — to be implemented (see issue 2, item 5).

use std::path::{Path, PathBuf};

use crate::command::NodeId;
use crate::state::MetadataState;

/// Errors of snapshot and meta storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("storage I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file failed its checksum or could not be decoded.
    #[error("{file} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The metadata state as of `offset` (written in `epoch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Last offset the state includes.
    pub offset: u64,
    /// Epoch of that entry.
    pub epoch: u64,
    /// The state.
    pub state: MetadataState,
}

impl Snapshot {
    /// Encode with magic, version and checksum (the file content, and what a
    /// leader streams in `SnapshotChunk` frames).
    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        todo!()
    }

    /// Decode and verify bytes made by [`Snapshot::encode`]; `origin` names
    /// the file or peer in errors.
    pub fn decode(bytes: &[u8], origin: &Path) -> Result<Snapshot, StorageError> {
        let _ = (bytes, origin);
        todo!()
    }

    /// Write atomically into `dir` as the newest snapshot; older snapshot
    /// files in `dir` are removed afterwards.
    pub fn store(&self, dir: &Path) -> Result<PathBuf, StorageError> {
        let _ = dir;
        todo!()
    }

    /// Load the newest snapshot in `dir`, if any.
    pub fn load_latest(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
        let _ = dir;
        todo!()
    }
}

/// The node's durable identity and election state (`data_dir/meta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster it belongs to.
    pub cluster_id: String,
    /// Highest epoch seen.
    pub current_epoch: u64,
    /// Leader of that epoch, if known.
    pub leader: Option<NodeId>,
    /// A commit index known to be committed (may lag the real one).
    pub commit_hint: u64,
}

impl NodeMeta {
    /// Write atomically to `dir/meta`.
    pub fn store(&self, dir: &Path) -> Result<(), StorageError> {
        let _ = dir;
        todo!()
    }

    /// Read `dir/meta`, or `None` if the node is new.
    pub fn load(dir: &Path) -> Result<Option<NodeMeta>, StorageError> {
        let _ = dir;
        todo!()
    }
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let _ = (path, bytes);
    todo!()
}

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    let _ = dir;
    todo!()
}
