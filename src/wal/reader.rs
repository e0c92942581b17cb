//! [`WalReader`]: a read-only view of the durable part of a [`Wal`](super::Wal), for a
//! thread other than the one that owns the log.
//!
//! The leader's catch-up reads for lagging followers must not wait behind (or
//! delay) group commits, so they run on a thread of their own. That thread
//! cannot borrow the [`Wal`](super::Wal) (the writer owns it, `&mut`), so the writer
//! publishes a small shared index, the [`ReadIndex`] behind an
//! `Arc<RwLock<..>>`: for each segment its file path, base offset and the byte
//! position of every *durable* record, plus the epochs of those records. The
//! writer updates it after every successful [`Wal::sync`] (extending the
//! position lists: amortised O(records appended)), and before a truncation
//! touches any file. The lock is held only to copy a few numbers out, never
//! across I/O.
//!
//! A read plans its byte ranges under the read lock, then opens the segment
//! files read-only and `pread`s them without the lock, and checks every
//! record again (length, CRC, and that the entry inside carries the offset
//! and epoch the index promised). Two races are possible and both are caught:
//!
//! - a prefix truncation deleted the segment (records only ever leave the
//!   front of the log that way, never change): the open fails with
//!   `NotFound` and the read reports [`WalError::OutOfRange`] below the new
//!   log start, exactly as [`Wal::read`](super::Wal::read) would now;
//! - a suffix truncation cut (and maybe rewrote) records that the read had
//!   planned: every suffix truncation bumps a generation number *before* it
//!   changes any file, and the read compares it after its `pread`s, so such a
//!   read fails with [`WalError::Raced`] (the caller retries) and never
//!   returns bytes that are no longer the log's.
//!
//! Only durable records are ever visible: the index is extended after the
//! `fdatasync` returns, never before.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::epochs::EpochIndex;
use crate::record::{decode_record, Record};

use super::segment::Segment;
use super::WalError;

/// One segment as readers see it: only its durable records.
#[derive(Debug)]
struct ReadSegment {
    path: PathBuf,
    base: u64,
    /// File position of each durable record.
    positions: Vec<u64>,
    /// Byte just past the last durable record.
    end: u64,
}

impl ReadSegment {
    fn record_span(&self, i: usize) -> (u64, u64) {
        let start = self.positions[i];
        let end = self.positions.get(i + 1).copied().unwrap_or(self.end);
        (start, end)
    }
}

/// The shared index of durable records (see the module docs).
#[derive(Debug, Default)]
pub(super) struct ReadIndex {
    /// In base order, mirroring the log's segments.
    segments: Vec<ReadSegment>,
    /// Epochs of the durable records (its last offset is the durable end).
    epochs: EpochIndex,
    /// Bumped by every suffix truncation, before it changes any file.
    rewrites: u64,
}

impl ReadIndex {
    /// Mirror `segments` up to offset `durable`.
    ///
    /// Relies on what the writer guarantees: below `durable`, a segment's
    /// positions only ever change through a suffix truncation, which lowers
    /// `durable` and calls this first; so the positions held here are always
    /// a prefix of the log's and only need extending.
    pub(super) fn mirror(&mut self, segments: &[Segment], epochs: &EpochIndex, durable: u64) {
        if let Some(first) = segments.first() {
            // Segments that prefix truncation removed.
            self.segments.retain(|s| s.base >= first.base);
        }
        for (i, seg) in segments.iter().enumerate() {
            let count = if durable >= seg.base {
                seg.positions
                    .len()
                    .min((durable - seg.base + 1).try_into().unwrap_or(usize::MAX))
            } else {
                0
            };
            let end = seg.positions.get(count).copied().unwrap_or(seg.len);
            match self.segments.get_mut(i) {
                Some(s) if s.base == seg.base && s.path == seg.path => {
                    if s.positions.len() > count {
                        s.positions.truncate(count);
                    } else {
                        s.positions
                            .extend_from_slice(&seg.positions[s.positions.len()..count]);
                    }
                    s.end = end;
                }
                _ => {
                    self.segments.truncate(i);
                    self.segments.push(ReadSegment {
                        path: seg.path.clone(),
                        base: seg.base,
                        positions: seg.positions[..count].to_vec(),
                        end,
                    });
                }
            }
        }
        self.segments.truncate(segments.len());
        let mut epochs = epochs.clone();
        epochs.truncate_suffix(durable);
        self.epochs = epochs;
    }

    /// A suffix truncation is about to change the files: invalidate reads
    /// in progress.
    pub(super) fn bump_rewrites(&mut self) {
        self.rewrites = self.rewrites.wrapping_add(1);
    }
}

/// The index behind its lock, as the writer and the readers share it.
pub(super) type SharedIndex = Arc<RwLock<ReadIndex>>;

/// The read lock; a writer that panicked holding the lock left the index
/// between two whole updates, which is still consistent.
fn read_lock(index: &RwLock<ReadIndex>) -> RwLockReadGuard<'_, ReadIndex> {
    index.read().unwrap_or_else(|p| p.into_inner())
}

/// The write lock (see [`read_lock`]).
pub(super) fn write_lock(index: &RwLock<ReadIndex>) -> RwLockWriteGuard<'_, ReadIndex> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

/// One contiguous byte range of one segment, planned under the lock.
struct Chunk {
    path: PathBuf,
    /// Offset of the first record.
    first: u64,
    start: u64,
    /// `(start, end)` of each record in the file, and its epoch.
    records: Vec<(u64, u64, u64)>,
}

/// A read-only, cloneable view of a [`Wal`](super::Wal)'s durable records, usable from
/// any thread while the writer keeps appending (see the module docs).
/// Get one with [`Wal::reader`](super::Wal::reader).
#[derive(Debug, Clone)]
pub struct WalReader {
    index: SharedIndex,
}

impl WalReader {
    pub(super) fn new(index: SharedIndex) -> WalReader {
        WalReader { index }
    }

    /// First durable offset held (`last_durable_offset() + 1` when empty).
    pub fn first_offset(&self) -> u64 {
        read_lock(&self.index).epochs.first_offset()
    }

    /// Last durable offset held.
    pub fn last_durable_offset(&self) -> u64 {
        read_lock(&self.index).epochs.last_offset()
    }

    /// Up to `max_entries` durable records from `from`, stopping before
    /// `max_bytes` would be passed (but at least one record when `from` is
    /// held): the same contract as [`Wal::read`](super::Wal::read), over the durable records.
    ///
    /// `from == last_durable_offset() + 1` gives an empty `Vec`; an offset
    /// below the log start or past the durable end is
    /// [`WalError::OutOfRange`]. A read that a concurrent suffix truncation
    /// overtook is [`WalError::Raced`]; a record that fails its checks with
    /// no truncation in between is [`WalError::Corrupt`].
    pub fn read(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, WalError> {
        let (chunks, rewrites) = {
            let index = read_lock(&self.index);
            match plan(&index, from, max_entries, max_bytes)? {
                Some(chunks) => (chunks, index.rewrites),
                None => return Ok(Vec::new()),
            }
        };
        let mut out = Vec::new();
        for chunk in chunks {
            let file = match File::open(&chunk.path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if !out.is_empty() {
                        // Records are only removed from the front: what was
                        // read so far is still the log's.
                        break;
                    }
                    return Err(self.vanished(from, &chunk.path, rewrites));
                }
                Err(source) => {
                    return Err(WalError::Io {
                        path: chunk.path,
                        source,
                    })
                }
            };
            let end = chunk.records.last().map_or(chunk.start, |r| r.1);
            let mut buf = vec![0u8; usize::try_from(end - chunk.start).unwrap_or(0)];
            if let Err(source) = file.read_exact_at(&mut buf, chunk.start) {
                if source.kind() == ErrorKind::UnexpectedEof {
                    // The file is shorter than the index says: cut under us.
                    return Err(self.raced_or(from, rewrites, || WalError::Corrupt {
                        file: chunk.path.clone(),
                        byte: chunk.start,
                        reason: format!("file ends before byte {end}, where durable records end"),
                    }));
                }
                return Err(WalError::Io {
                    path: chunk.path,
                    source,
                });
            }
            let buf = Bytes::from(buf);
            for (i, &(s, e, epoch)) in chunk.records.iter().enumerate() {
                let offset = chunk.first + i as u64;
                let (lo, hi) = ((s - chunk.start) as usize, (e - chunk.start) as usize);
                let checked = match decode_record(&buf[lo..hi]) {
                    Ok((_, used)) if used != hi - lo => Err(format!(
                        "record is {used} bytes, the index says {}",
                        hi - lo
                    )),
                    Ok((entry, _)) if entry.offset != offset || entry.epoch != epoch => {
                        Err(format!(
                            "holds offset {} epoch {}, expected offset {offset} epoch {epoch}",
                            entry.offset, entry.epoch
                        ))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(reason) = checked {
                    return Err(self.raced_or(offset, rewrites, || WalError::Corrupt {
                        file: chunk.path.clone(),
                        byte: s,
                        reason,
                    }));
                }
                out.push(Record {
                    offset,
                    epoch,
                    bytes: buf.slice(lo..hi),
                });
            }
        }
        // Bytes read before a suffix truncation began are the log's; after,
        // they may not be: refuse the whole read if one ran meanwhile.
        if read_lock(&self.index).rewrites != rewrites {
            return Err(WalError::Raced {
                offset: from,
                reason: "a suffix truncation ran during the read".into(),
            });
        }
        Ok(out)
    }

    /// A segment planned for the read is gone.
    fn vanished(&self, from: u64, path: &Path, rewrites: u64) -> WalError {
        let index = read_lock(&self.index);
        let (first, last) = (index.epochs.first_offset(), index.epochs.last_offset());
        if index.rewrites == rewrites && from < first {
            // A prefix truncation removed it: as if the read came after.
            return WalError::OutOfRange {
                offset: from,
                first,
                last,
            };
        }
        WalError::Raced {
            offset: from,
            reason: format!("segment {} vanished during the read", path.display()),
        }
    }

    /// [`WalError::Raced`] if a suffix truncation ran since the read was
    /// planned, else `corrupt()`.
    fn raced_or(&self, offset: u64, rewrites: u64, corrupt: impl FnOnce() -> WalError) -> WalError {
        if read_lock(&self.index).rewrites != rewrites {
            WalError::Raced {
                offset,
                reason: "a suffix truncation ran during the read".into(),
            }
        } else {
            corrupt()
        }
    }
}

/// The byte ranges to read for `from`, or `None` for the empty read at the
/// durable end (the bounds as in [`Wal::read`](super::Wal::read)).
fn plan(
    index: &ReadIndex,
    from: u64,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Option<Vec<Chunk>>, WalError> {
    let (first, last) = (index.epochs.first_offset(), index.epochs.last_offset());
    if from == last + 1 {
        return Ok(None);
    }
    if from < first || from > last {
        return Err(WalError::OutOfRange {
            offset: from,
            first,
            last,
        });
    }
    let out_of_range = |offset| WalError::OutOfRange {
        offset,
        first,
        last,
    };
    let max_entries = max_entries.max(1);
    let mut chunks = Vec::new();
    let mut taken = 0usize;
    let mut total: u64 = 0;
    let mut offset = from;
    let mut seg_idx = index
        .segments
        .partition_point(|s| s.base <= from)
        .checked_sub(1)
        .ok_or_else(|| out_of_range(from))?;
    'segments: while seg_idx < index.segments.len() && offset <= last {
        let seg = &index.segments[seg_idx];
        let first_idx = usize::try_from(offset - seg.base).map_err(|_| out_of_range(offset))?;
        let mut records = Vec::new();
        let mut idx = first_idx;
        let mut full = false;
        while idx < seg.positions.len() {
            let (s, e) = seg.record_span(idx);
            // The first record is always taken, whatever the limits.
            if taken > 0 && (taken >= max_entries || total + (e - s) > max_bytes as u64) {
                full = true;
                break;
            }
            let off = seg.base + idx as u64;
            let epoch = index
                .epochs
                .epoch_at(off)
                .ok_or_else(|| out_of_range(off))?;
            records.push((s, e, epoch));
            total += e - s;
            taken += 1;
            idx += 1;
        }
        if let Some(&(start, _, _)) = records.first() {
            chunks.push(Chunk {
                path: seg.path.clone(),
                first: offset,
                start,
                records,
            });
            offset = seg.base + idx as u64;
        }
        if full {
            break 'segments;
        }
        seg_idx += 1;
    }
    Ok(Some(chunks))
}
