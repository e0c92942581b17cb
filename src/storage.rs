//! Snapshots of the metadata state and the node's `meta` file, both written
//! atomically (temp file, fsync, rename, fsync dir) and checksummed.
//!
//! Both files share one envelope (all integers big-endian):
//!
//! ```text
//! magic: 4 bytes | version: u16 | reserved: u16 = 0 | body_len: u64 | crc32c(body): u32 | body
//! ```
//!
//! The magic is `MWSN` for a snapshot and `MWMT` for the meta file; the body
//! is MessagePack (with field names): `[offset, epoch, state]` for a
//! snapshot, a map of the [`NodeMeta`] fields for the meta file. Snapshot
//! files are named `snapshot-<20-digit offset>.snap`. `docs/storage.md` has
//! the details.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::command::NodeId;
use crate::membership::DirectoryId;
use crate::state::MetadataState;

/// Magic bytes at the start of a snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"MWSN";
/// Magic bytes at the start of the meta file.
pub const META_MAGIC: [u8; 4] = *b"MWMT";
/// Envelope format version written (and the only one read).
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the envelope before the body.
pub const ENVELOPE_HEADER_LEN: usize = 4 + 2 + 2 + 8 + 4;
/// Name of the meta file inside the data dir.
pub const META_FILE_NAME: &str = "meta";

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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Wrap `body` in the envelope.
fn seal(magic: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + body.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Check the envelope and return the body, or why it is bad.
fn open_envelope(magic: [u8; 4], bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < ENVELOPE_HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the {ENVELOPE_HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    let (header, body) = bytes.split_at(ENVELOPE_HEADER_LEN);
    if header[0..4] != magic {
        return Err(format!(
            "bad magic {:02x?} (expected {:?})",
            &header[0..4],
            String::from_utf8_lossy(&magic)
        ));
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version} is not supported (this build reads {FORMAT_VERSION})"
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[8..16]);
    let len = u64::from_be_bytes(len);
    if len != body.len() as u64 {
        return Err(format!(
            "header says {len} body bytes, file has {}",
            body.len()
        ));
    }
    let stored = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    Ok(body)
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

const SNAPSHOT_ADVICE: &str = "Do not start from an older snapshot silently: move this file \
     away (and any WAL segments it replaced) so the node resyncs from the leader, or restore the \
     data dir from a healthy replica";

/// File name of the snapshot at `offset`.
pub fn snapshot_file_name(offset: u64) -> String {
    format!("snapshot-{offset:020}.snap")
}

/// Parse a snapshot file name into its offset.
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Snapshot files in `dir` as `(offset, path)`, unsorted. A missing dir has none.
fn list_snapshots(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(StorageError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    for item in entries {
        let item = item.map_err(io_err(dir))?;
        if let Some(offset) = item.file_name().to_str().and_then(parse_snapshot_file_name) {
            out.push((offset, item.path()));
        }
    }
    Ok(out)
}

/// Create `dir` (and make its entry durable) if it does not exist.
fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(())
}

impl Snapshot {
    /// Encode with magic, version and checksum (the file content, and what a
    /// leader streams in `SnapshotChunk` frames).
    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let body =
            rmp_serde::to_vec_named(&(self.offset, self.epoch, &self.state)).map_err(|e| {
                StorageError::Corrupt {
                    file: PathBuf::from(snapshot_file_name(self.offset)),
                    reason: format!("the state could not be encoded: {e}"),
                }
            })?;
        Ok(seal(SNAPSHOT_MAGIC, &body))
    }

    /// Decode and verify bytes made by [`Snapshot::encode`]; `origin` names
    /// the file or peer in errors.
    pub fn decode(bytes: &[u8], origin: &Path) -> Result<Snapshot, StorageError> {
        let corrupt = |reason: String| StorageError::Corrupt {
            file: origin.to_path_buf(),
            reason: format!("{reason}. {SNAPSHOT_ADVICE}"),
        };
        let body = open_envelope(SNAPSHOT_MAGIC, bytes).map_err(corrupt)?;
        let (offset, epoch, state): (u64, u64, MetadataState) = rmp_serde::from_slice(body)
            .map_err(|e| corrupt(format!("body does not decode: {e}")))?;
        Ok(Snapshot {
            offset,
            epoch,
            state,
        })
    }

    /// Write atomically into `dir` as the newest snapshot; older snapshot
    /// files in `dir` are removed afterwards.
    pub fn store(&self, dir: &Path) -> Result<PathBuf, StorageError> {
        ensure_dir(dir)?;
        let path = dir.join(snapshot_file_name(self.offset));
        atomic_write(&path, &self.encode()?)?;
        let mut removed = false;
        for (offset, old) in list_snapshots(dir)? {
            if offset < self.offset {
                match std::fs::remove_file(&old) {
                    Ok(()) => removed = true,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StorageError::Io {
                            path: old,
                            source: e,
                        })
                    }
                }
            }
        }
        if removed {
            fsync_dir(dir)?;
        }
        tracing::info!(file = %path.display(), offset = self.offset, epoch = self.epoch, "snapshot stored");
        Ok(path)
    }

    /// Load the newest snapshot in `dir`, if any.
    ///
    /// A corrupt newest snapshot is an error, never a silent fall-back to an
    /// older one.
    pub fn load_latest(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
        let Some((offset, path)) = list_snapshots(dir)?.into_iter().max() else {
            return Ok(None);
        };
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let snap = Snapshot::decode(&bytes, &path)?;
        if snap.offset != offset {
            return Err(StorageError::Corrupt {
                file: path,
                reason: format!(
                    "holds offset {} but its name says {offset}. {SNAPSHOT_ADVICE}",
                    snap.offset
                ),
            });
        }
        Ok(Some(snap))
    }
}

/// The node's durable identity and election state (`data_dir/meta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster it belongs to.
    pub cluster_id: String,
    /// This data directory's identity, drawn at its first start and never
    /// changed after ([`DirectoryId::UNKNOWN`] in a meta written before
    /// directory ids, until the next start draws one). A meta write with
    /// `UNKNOWN` keeps the one on disk.
    pub directory_id: DirectoryId,
    /// Highest epoch seen.
    pub current_epoch: u64,
    /// Leader of that epoch, if known.
    pub leader: Option<NodeId>,
    /// The candidate this node voted for in that epoch, if any.
    pub voted_for: Option<NodeId>,
    /// A commit index known to be committed (may lag the real one).
    pub commit_hint: u64,
}

/// The meta file body, field for field (kept apart from [`NodeMeta`] so the
/// on-disk format is spelled out in one place).
#[derive(Serialize, Deserialize)]
struct MetaBody {
    node_id: NodeId,
    cluster_id: String,
    /// Absent in meta files written before directory ids.
    #[serde(default)]
    directory_id: Option<DirectoryId>,
    current_epoch: u64,
    leader: Option<NodeId>,
    /// Absent in meta files written before elections: no vote.
    #[serde(default)]
    voted_for: Option<NodeId>,
    commit_hint: u64,
}

impl NodeMeta {
    /// Write atomically to `dir/meta`.
    pub fn store(&self, dir: &Path) -> Result<(), StorageError> {
        ensure_dir(dir)?;
        let path = dir.join(META_FILE_NAME);
        let body = rmp_serde::to_vec_named(&MetaBody {
            node_id: self.node_id,
            cluster_id: self.cluster_id.clone(),
            directory_id: (!self.directory_id.is_unknown()).then_some(self.directory_id),
            current_epoch: self.current_epoch,
            leader: self.leader,
            voted_for: self.voted_for,
            commit_hint: self.commit_hint,
        })
        .map_err(|e| StorageError::Corrupt {
            file: path.clone(),
            reason: format!("could not be encoded: {e}"),
        })?;
        atomic_write(&path, &seal(META_MAGIC, &body))
    }

    /// Read `dir/meta`, or `None` if the node is new.
    pub fn load(dir: &Path) -> Result<Option<NodeMeta>, StorageError> {
        let path = dir.join(META_FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::Io { path, source: e }),
        };
        let corrupt = |reason: String| StorageError::Corrupt {
            file: path.clone(),
            reason: format!(
                "{reason}. The node's identity and highest epoch are unknown: restore this file \
                 from a backup, or wipe the data dir and let the node rejoin as a new follower"
            ),
        };
        let body = open_envelope(META_MAGIC, &bytes).map_err(corrupt)?;
        let m: MetaBody = rmp_serde::from_slice(body)
            .map_err(|e| corrupt(format!("body does not decode: {e}")))?;
        Ok(Some(NodeMeta {
            node_id: m.node_id,
            cluster_id: m.cluster_id,
            directory_id: m.directory_id.unwrap_or(DirectoryId::UNKNOWN),
            current_epoch: m.current_epoch,
            leader: m.leader,
            voted_for: m.voted_for,
            commit_hint: m.commit_hint,
        }))
    }
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
///
/// The temp file is `path` with `.tmp` appended to its name; a crash leaves
/// either the old file or the new one at `path` (and maybe a stale temp
/// file, which the next write replaces).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fsync_dir(parent)
}

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
