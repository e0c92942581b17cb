//! The segmented write-ahead log.
//!
//! STUB — to be implemented (see issue 2, item 4).

use std::path::{Path, PathBuf};

use crate::epochs::EpochIndex;
use crate::record::Record;

/// Errors of the WAL layer.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O call failed.
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record that is not the torn tail is bad.
    #[error("WAL corrupt: {file} at byte {byte}: {reason}. The log cannot be trusted from here; restore this node's data dir from a replica (or move the file away to resync it from the leader)")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte position of the bad record in the file.
        byte: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An append was not at the next offset, or its epoch went backwards.
    #[error("WAL append refused: {0}")]
    Order(#[from] crate::epochs::EpochError),
    /// A read asked for offsets outside the log.
    #[error("WAL has no offset {offset} (log holds {first}..={last})")]
    OutOfRange {
        /// The offset asked for.
        offset: u64,
        /// First offset held.
        first: u64,
        /// Last offset held.
        last: u64,
    },
}

/// WAL options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Roll to a new segment once the active one reaches this size.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What opening the WAL found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenReport {
    /// Segment files found.
    pub segments: usize,
    /// A torn tail that was cut off: file, byte position, bytes removed.
    pub torn_tail: Option<TornTail>,
}

/// A partial or CRC-bad last record cut off at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Byte position where the bad record started (the new file length).
    pub byte: u64,
    /// Bytes removed.
    pub removed: u64,
}

/// The write-ahead log of one node.
#[derive(Debug)]
pub struct Wal {
    _private: (),
}

impl Wal {
    /// Open (or create) the WAL in `dir`, recovering as `docs/storage.md` says.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, OpenReport), WalError> {
        let _ = (dir, options);
        todo!()
    }

    /// Write `records` (which must continue the log) without syncing.
    pub fn append(&mut self, records: &[Record]) -> Result<(), WalError> {
        let _ = records;
        todo!()
    }

    /// Make every appended record durable (one fdatasync of each dirty segment).
    pub fn sync(&mut self) -> Result<(), WalError> {
        todo!()
    }

    /// Up to `max_entries` records from `from`, stopping before `max_bytes`
    /// would be passed (but always at least one record when `from` is held).
    pub fn read(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, WalError> {
        let _ = (from, max_entries, max_bytes);
        todo!()
    }

    /// Durably remove every record after `after`.
    pub fn truncate_suffix(&mut self, after: u64) -> Result<(), WalError> {
        let _ = after;
        todo!()
    }

    /// Durably remove whole segments whose records are all at or below
    /// `upto` (`upto` had epoch `upto_epoch`). When `upto` is at or past the
    /// last offset, the log is emptied and continues at `upto + 1`.
    pub fn truncate_prefix(&mut self, upto: u64, upto_epoch: u64) -> Result<(), WalError> {
        let _ = (upto, upto_epoch);
        todo!()
    }

    /// The epoch index of the records held.
    pub fn epochs(&self) -> &EpochIndex {
        todo!()
    }

    /// First offset held (`last_offset() + 1` when empty).
    pub fn first_offset(&self) -> u64 {
        self.epochs().first_offset()
    }

    /// Last offset held (the base offset when empty; 0 for a new log).
    pub fn last_offset(&self) -> u64 {
        self.epochs().last_offset()
    }

    /// Epoch of the last record.
    pub fn last_epoch(&self) -> u64 {
        self.epochs().last_epoch()
    }
}
