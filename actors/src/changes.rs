//! `ChangeStream`: the committed entries of a node's log from any offset,
//! read back from the WAL.
//!
//! Why it exists: [`crate::Node::subscribe`] only delivers what is applied
//! *after* the subscription, so a consumer that restarts, or starts late,
//! could not catch up on a running node. A change stream starts wherever it
//! is told, reads what is already applied from the WAL (on the disk reader
//! thread, never on an arbiter), then follows the applied offset as it
//! moves.
//!
//! Bounded: the stream holds at most [`READ_ENTRIES`] decoded entries (and
//! reads at most [`READ_BYTES`] at once), and reads only when its consumer
//! asks for more. A consumer that stops reading costs one buffer and never
//! slows the node down: nothing is pushed to it.
//!
//! Only committed entries are yielded (offset ≤ applied), so a stream never
//! sees an entry that a later truncation removes. An offset below the log
//! start (compacted into a snapshot) is [`ChangesError::Compacted`]: reload
//! the state ([`crate::Node::state`]) and resume after its offset.

use std::collections::VecDeque;
use std::time::Duration;

use metawal::wal::WalError;
use metawal::Entry;
use tokio::sync::watch;

use crate::disk::DiskHandle;
use crate::error::DiskError;
use crate::view::MetadataView;

/// Most entries one WAL read brings in (and the stream buffers).
pub const READ_ENTRIES: usize = 256;
/// Most record bytes one WAL read brings in.
pub const READ_BYTES: usize = 1024 * 1024;
/// How long a read that finds the disk reader's queue full waits before it
/// tries again, and how many times it tries: a bounded retry, after which
/// the stream ends with [`ChangesError::Overloaded`].
const BUSY_RETRY: Duration = Duration::from_millis(20);
const BUSY_TRIES: u32 = 50;

/// Why a change stream ended.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChangesError {
    /// The entries from `requested` were compacted into a snapshot: the log
    /// starts at `log_start`. Reload the whole state and resume after it.
    #[error("offset {requested} is below the log start {log_start}: those entries were compacted into a snapshot; reload the state and resume after its offset")]
    Compacted {
        /// The offset asked for.
        requested: u64,
        /// The first offset the log holds.
        log_start: u64,
    },
    /// The disk reader stayed busy; the stream gave up. Resume from
    /// [`ChangeStream::position`].
    #[error("the disk reader is overloaded; resume from offset {position} later")]
    Overloaded {
        /// The offset to resume from.
        position: u64,
    },
    /// The WAL could not be read.
    #[error("reading the WAL failed: {0}")]
    Storage(String),
    /// The node stopped.
    #[error("node is shutting down")]
    ShuttingDown,
}

/// The committed entries of a node's log, in order, from an offset.
/// Create with [`crate::Node::changes_from`].
pub struct ChangeStream {
    disk: DiskHandle,
    applied: watch::Receiver<u64>,
    /// The disk writer's publish count: an applied entry that is not
    /// durable in the local WAL yet (a follower may apply an entry the
    /// leader committed a moment before its own fsync finished) is read
    /// again when this moves, not on a timer.
    published: watch::Receiver<u64>,
    next: u64,
    buf: VecDeque<Entry>,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("next", &self.next)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl ChangeStream {
    pub(crate) fn new(disk: DiskHandle, view: &MetadataView, from: u64) -> ChangeStream {
        ChangeStream {
            published: disk.wal_published(),
            disk,
            applied: view.applied_watch(),
            next: from.max(1),
            buf: VecDeque::new(),
        }
    }

    /// The offset of the next entry this stream yields: where to resume.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next committed entry; waits while there is none. Ends with an
    /// error only ([`ChangesError`]); it is cancel-safe (dropping the future
    /// loses no entry).
    pub async fn next(&mut self) -> Result<Entry, ChangesError> {
        let mut busy_tries = 0;
        loop {
            if let Some(entry) = self.buf.pop_front() {
                self.next = entry.offset + 1;
                return Ok(entry);
            }
            let applied = *self.applied.borrow_and_update();
            if applied < self.next {
                self.applied
                    .changed()
                    .await
                    .map_err(|_| ChangesError::ShuttingDown)?;
                continue;
            }
            let from = self.next;
            // Seen before the read: a publish after this point wakes the
            // wait below, one before it is visible to the read.
            self.published.borrow_and_update();
            let max = usize::try_from(applied - from + 1)
                .unwrap_or(usize::MAX)
                .min(READ_ENTRIES);
            let read = self
                .disk
                .read_range(from, max, READ_BYTES)
                .await
                .map(|(start, records)| {
                    if from < start {
                        return Err(ChangesError::Compacted {
                            requested: from,
                            log_start: start,
                        });
                    }
                    match records {
                        Ok(records) => Ok(records),
                        // Applied, not yet durable here (or a truncation of
                        // the uncommitted tail raced the read): read again.
                        Err(WalError::OutOfRange { .. } | WalError::Raced { .. }) => Ok(Vec::new()),
                        Err(e) => Err(ChangesError::Storage(e.to_string())),
                    }
                });
            let records = match read {
                Ok(r) => r?,
                Err(DiskError::QueueFull(_)) if busy_tries < BUSY_TRIES => {
                    busy_tries += 1;
                    tokio::time::sleep(BUSY_RETRY).await;
                    continue;
                }
                Err(DiskError::QueueFull(_)) => {
                    return Err(ChangesError::Overloaded { position: from })
                }
                Err(_) => return Err(ChangesError::ShuttingDown),
            };
            if records.is_empty() {
                self.published
                    .changed()
                    .await
                    .map_err(|_| ChangesError::ShuttingDown)?;
                continue;
            }
            for (expect, record) in (from..).zip(records) {
                let entry = record.entry().map_err(|e| {
                    ChangesError::Storage(format!("record at offset {expect}: {e}"))
                })?;
                if entry.offset != expect {
                    return Err(ChangesError::Storage(format!(
                        "the WAL gave offset {} where {expect} was next",
                        entry.offset
                    )));
                }
                if entry.offset > applied {
                    break;
                }
                self.buf.push_back(entry);
            }
        }
    }
}
