//! The segmented write-ahead log.
//!
//! An etcd-shaped log: a directory of segment files, each holding a run of
//! contiguous [`Record`]s, named by the offset of its first record and the
//! epoch of the record just before it:
//!
//! ```text
//! <base offset, 20 digits>-<epoch of offset base-1, 20 digits>.wal
//! 00000000000000000001-00000000000000000000.wal   (a brand-new log)
//! ```
//!
//! Records are written verbatim ([`Record::bytes`]: `len u32 BE | crc32c u32
//! BE | MessagePack Entry`). [`Wal::append`] writes a batch with one
//! positioned write per segment it touches, [`Wal::sync`] runs one
//! `fdatasync` per dirty segment: the building block of group commit. An
//! in-memory index of record positions lets [`Wal::read`] `pread` any range.
//!
//! Recovery on [`Wal::open`] validates every record; a torn tail of the last
//! segment (a bad record that no valid record of this log follows: a later
//! offset, an epoch not lower) is cut off and reported, anything else bad
//! stops the open with a [`WalError::Corrupt`] naming the file and byte.
//! `docs/storage.md` has the exact format and rules.
//!
//! In the source the module is split by concept, one file each: `mod.rs`
//! holds [`Wal`] with its write and read paths (append, sync, read,
//! truncations), [`WalError`] and [`WalOptions`]; `segment.rs` one segment
//! file (naming, preallocation, the file-system helpers); `recovery.rs`
//! [`Wal::open`]: validating segments and the torn-tail rules, with
//! [`OpenReport`] and [`TornTail`]. The submodules are private: every item is
//! used through this module (`metawal::wal::X`).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::epochs::EpochIndex;
use crate::record::{Record, RECORD_HEADER_LEN};

mod reader;
mod recovery;
mod segment;

pub use reader::WalReader;
pub use recovery::{OpenReport, TornTail};
pub use segment::{parse_segment_file_name, segment_file_name, SEGMENT_SUFFIX};

use reader::{write_lock, SharedIndex};
use segment::{fsync_dir, io_err, open_rw, preallocate, remove_file, Segment};

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
    /// An appended record's bytes do not form one valid record (its header
    /// length does not match its size, or its checksum is wrong). Nothing of
    /// the batch was written.
    #[error("WAL append refused: record at offset {offset} is malformed: {reason}")]
    BadRecord {
        /// The record's offset.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An earlier `fdatasync` failed, so what is on disk is unknown (the
    /// kernel may have dropped the dirty pages). Every later call fails; the
    /// node must restart and recover from the files.
    #[error(
        "WAL is unusable after an earlier failure: {0}. Restart the node to recover from disk"
    )]
    Failed(String),
    /// A [`WalReader`] read was overtaken by a concurrent suffix truncation
    /// (or lost a segment it had planned to read); nothing was returned.
    /// Retrying reads the log as it is now.
    #[error("WAL read from offset {offset} raced with a truncation ({reason}); retry")]
    Raced {
        /// The offset the read asked for (or the record it stopped at).
        offset: u64,
        /// What changed.
        reason: String,
    },
}

/// WAL options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Roll to a new segment once the active one reaches this size.
    pub segment_bytes: u64,
    /// Reserve each new segment's full size with `fallocate` (Linux), so an
    /// append does not change the file size and `fdatasync` has no metadata
    /// to write (about 40% cheaper on ext4 here), and keep the space just
    /// past the records written with zeros (see docs/storage.md: a write
    /// into a reserved, unwritten block costs its sync an extent update).
    /// The zeros after the last record are preallocated space, not a torn
    /// tail.
    pub preallocate: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            preallocate: true,
        }
    }
}

/// The write-ahead log of one node.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// In base order; never empty; the last one is the active segment.
    segments: Vec<Segment>,
    epochs: EpochIndex,
    /// Reused buffer for concatenating a batch.
    write_buf: Vec<u8>,
    /// Set after a failed `fdatasync`; every later call fails.
    failed: Option<String>,
    /// Last offset known durable (synced, or found on disk at open).
    durable: u64,
    /// The index of durable records that [`WalReader`]s read through; kept
    /// up to date by [`Wal::sync`] and the truncations (see `reader.rs`).
    shared: SharedIndex,
}

impl Wal {
    /// Create an empty segment at `base` and make it the active one.
    fn create_segment(&mut self, base: u64, prev_epoch: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment_file_name(base, prev_epoch));
        let file = open_rw(&path, true)?;
        if self.options.preallocate {
            preallocate(&file, &path, self.options.segment_bytes);
        }
        fsync_dir(&self.dir)?;
        tracing::debug!(file = %path.display(), "created WAL segment");
        self.segments.push(Segment {
            path,
            base,
            prev_epoch,
            file,
            len: 0,
            positions: Vec::new(),
            dirty: false,
            zeroed: 0,
        });
        Ok(())
    }

    fn check_usable(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(reason) => Err(WalError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Everything appended is durable now: let readers see it.
    fn publish_durable(&mut self) {
        self.durable = self.last_offset();
        self.publish();
    }

    /// Mirror the segments, up to `durable`, into the readers' index.
    fn publish(&self) {
        write_lock(&self.shared).mirror(&self.segments, &self.epochs, self.durable);
    }

    /// A read-only view of this log's durable records for another thread
    /// (see [`WalReader`]). Cheap; every reader shares one index.
    pub fn reader(&self) -> WalReader {
        WalReader::new(Arc::clone(&self.shared))
    }

    /// Last offset known durable: synced by [`Wal::sync`] (or found on disk
    /// at open). What a [`WalReader`] can see.
    pub fn durable_offset(&self) -> u64 {
        self.durable
    }

    fn active(&mut self) -> &mut Segment {
        // `segments` is never empty after open.
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Start a new segment after the active one (which is synced first, so a
    /// segment before the last is always complete on disk).
    fn roll(&mut self) -> Result<(), WalError> {
        if self.options.preallocate {
            // A segment before the last ends at its last record: trim the
            // preallocated rest (made durable by the sync below).
            let active = self.active();
            let len = active.len;
            if let Err(source) = active.file.set_len(len) {
                let path = active.path.clone();
                return Err(WalError::Io { path, source });
            }
            active.dirty = true;
        }
        self.sync_segment(self.segments.len() - 1)?;
        let base = self.epochs.last_offset() + 1;
        let prev_epoch = self.epochs.last_epoch();
        self.create_segment(base, prev_epoch)
    }

    fn sync_segment(&mut self, i: usize) -> Result<(), WalError> {
        let seg = &mut self.segments[i];
        if !seg.dirty {
            return Ok(());
        }
        if let Err(source) = seg.file.sync_data() {
            let reason = format!("fdatasync of {} failed: {source}", seg.path.display());
            tracing::error!(file = %seg.path.display(), error = %source, "WAL fdatasync failed");
            self.failed = Some(reason);
            return Err(WalError::Io {
                path: seg.path.clone(),
                source,
            });
        }
        seg.dirty = false;
        Ok(())
    }

    /// Write `records` (which must continue the log) without syncing.
    ///
    /// The whole batch is checked first (offsets contiguous from
    /// `last_offset() + 1`, epochs non-decreasing, each record's header
    /// consistent with its bytes); a refused batch writes nothing. The bytes
    /// are written verbatim, one positioned write per segment touched. On an
    /// I/O error the records before the failing segment may have been
    /// appended: check [`Wal::last_offset`].
    pub fn append(&mut self, records: &[Record]) -> Result<(), WalError> {
        self.check_usable()?;
        let mut check = self.epochs.clone();
        for r in records {
            check.append(r.offset, r.epoch)?;
            check_record_bytes(r)?;
        }
        let segment_bytes = self.options.segment_bytes;
        let mut i = 0;
        while i < records.len() {
            {
                let active = self.active();
                if active.len >= segment_bytes && !active.positions.is_empty() {
                    self.roll()?;
                }
            }
            let mut buf = std::mem::take(&mut self.write_buf);
            buf.clear();
            let preallocated = self.options.preallocate;
            let active = self.active();
            let mut size = active.len;
            let mut new_positions = Vec::new();
            let first = i;
            while i < records.len() && (i == first || size < segment_bytes) {
                new_positions.push(size);
                buf.extend_from_slice(&records[i].bytes);
                size += records[i].len() as u64;
                i += 1;
            }
            let written = active.write_end(&buf, preallocated, segment_bytes);
            if written.is_ok() {
                active.positions.extend_from_slice(&new_positions);
            }
            self.write_buf = buf;
            written?;
            for r in &records[first..i] {
                self.epochs.append(r.offset, r.epoch)?;
            }
        }
        Ok(())
    }

    /// Make every appended record durable (one fdatasync of each dirty segment).
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        for i in 0..self.segments.len() {
            self.sync_segment(i)?;
        }
        self.publish_durable();
        Ok(())
    }

    /// Up to `max_entries` records from `from`, stopping before `max_bytes`
    /// would be passed (but always at least one record when `from` is held).
    ///
    /// `from == last_offset() + 1` gives an empty `Vec`; any other offset
    /// outside `first_offset()..=last_offset()` is [`WalError::OutOfRange`].
    /// A `max_entries` of 0 is treated as 1. The records share one buffer
    /// per segment read, and their bytes are exactly what was appended.
    pub fn read(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, WalError> {
        let (first, last) = (self.first_offset(), self.last_offset());
        if from == last + 1 {
            return Ok(Vec::new());
        }
        if from < first || from > last {
            return Err(WalError::OutOfRange {
                offset: from,
                first,
                last,
            });
        }
        let max_entries = max_entries.max(1);
        let mut out = Vec::new();
        let mut total: u64 = 0;
        let mut offset = from;
        // The segment holding `from`: the last one whose base is <= from.
        let mut seg_idx = self.segments.partition_point(|s| s.base <= from) - 1;
        'segments: while seg_idx < self.segments.len() && offset <= last {
            let seg = &self.segments[seg_idx];
            let first_idx = (offset - seg.base) as usize;
            let mut end_idx = first_idx;
            let (start_pos, _) = seg.record_span(first_idx);
            let mut end_pos = start_pos;
            let mut full = false;
            while end_idx < seg.positions.len() {
                let (_, e) = seg.record_span(end_idx);
                let len = e - end_pos;
                let taken = out.len() + (end_idx - first_idx);
                // The first record is always taken, whatever the limits.
                if taken > 0 && (taken >= max_entries || total + len > max_bytes as u64) {
                    full = true;
                    break;
                }
                total += len;
                end_pos = e;
                end_idx += 1;
            }
            if end_idx > first_idx {
                let mut buf = vec![0u8; (end_pos - start_pos) as usize];
                seg.file
                    .read_exact_at(&mut buf, start_pos)
                    .map_err(io_err(&seg.path))?;
                let buf = Bytes::from(buf);
                for idx in first_idx..end_idx {
                    let (s, e) = seg.record_span(idx);
                    let off = seg.base + idx as u64;
                    let epoch = self.epochs.epoch_at(off).ok_or(WalError::OutOfRange {
                        offset: off,
                        first,
                        last,
                    })?;
                    out.push(Record {
                        offset: off,
                        epoch,
                        bytes: buf.slice((s - start_pos) as usize..(e - start_pos) as usize),
                    });
                }
                offset = seg.base + end_idx as u64;
            }
            if full {
                break 'segments;
            }
            seg_idx += 1;
        }
        Ok(out)
    }

    /// Durably remove every record after `after`.
    ///
    /// `after` at or past the last offset changes nothing; `after` below the
    /// base offset (`first_offset() - 1`) is [`WalError::OutOfRange`];
    /// `after == first_offset() - 1` empties the log. Later segments are
    /// deleted newest first (then the directory is fsynced), then the segment
    /// holding `after + 1` is cut (`ftruncate` + `fdatasync`). Appends
    /// continue at `after + 1`.
    pub fn truncate_suffix(&mut self, after: u64) -> Result<(), WalError> {
        self.check_usable()?;
        if after >= self.last_offset() {
            return Ok(());
        }
        if after < self.epochs.base_offset() {
            return Err(WalError::OutOfRange {
                offset: after,
                first: self.first_offset(),
                last: self.last_offset(),
            });
        }
        // Readers first: no read planned from here on sees offsets past
        // `after`, and reads in flight fail their generation check, before
        // any file changes.
        self.durable = self.durable.min(after);
        {
            let mut shared = write_lock(&self.shared);
            shared.bump_rewrites();
            shared.mirror(&self.segments, &self.epochs, self.durable);
        }
        let cut = after + 1;
        let keep = self.segments.partition_point(|s| s.base <= cut) - 1;
        let mut removed_any = false;
        while self.segments.len() > keep + 1 {
            if let Some(seg) = self.segments.pop() {
                remove_file(&seg.path)?;
                tracing::debug!(file = %seg.path.display(), "deleted WAL segment (suffix truncation)");
                removed_any = true;
            }
        }
        if removed_any {
            fsync_dir(&self.dir)?;
        }
        let seg = self.active();
        let idx = (cut - seg.base) as usize;
        if idx < seg.positions.len() {
            let new_len = seg.positions[idx];
            seg.file.set_len(new_len).map_err(io_err(&seg.path))?;
            seg.positions.truncate(idx);
            seg.len = new_len;
            seg.zeroed = new_len;
            seg.dirty = true;
        }
        let last = self.segments.len() - 1;
        self.sync_segment(last)?;
        self.epochs.truncate_suffix(after);
        self.publish();
        tracing::info!(after, "WAL suffix truncated");
        Ok(())
    }

    /// Durably remove whole segments whose records are all at or below
    /// `upto` (`upto` had epoch `upto_epoch`). When `upto` is at or past the
    /// last offset, the log is emptied and continues at `upto + 1`.
    ///
    /// Segments are deleted oldest first (a crash leaves a contiguous log)
    /// and the directory is fsynced; the active segment is kept unless the
    /// log is emptied. Emptying creates the new segment
    /// `<upto+1>-<upto_epoch>.wal` first, then deletes the old ones; a crash
    /// in between is finished by [`Wal::open`]. `upto_epoch` is only used
    /// when the log is emptied; otherwise the base epoch comes from the
    /// first kept segment's name.
    pub fn truncate_prefix(&mut self, upto: u64, upto_epoch: u64) -> Result<(), WalError> {
        self.check_usable()?;
        if upto <= self.epochs.base_offset() {
            return Ok(());
        }
        if upto >= self.last_offset() {
            let base = upto + 1;
            let old: Vec<Segment> = std::mem::take(&mut self.segments);
            let reuse = old
                .iter()
                .position(|s| s.base == base && s.prev_epoch == upto_epoch && s.len == 0);
            let mut old = old;
            if let Some(i) = reuse {
                let seg = old.remove(i);
                self.segments.push(seg);
            } else if let Err(e) = self.create_segment(base, upto_epoch) {
                self.segments = old;
                return Err(e);
            }
            // From here on the new segment is the log (open finishes the
            // deletions below if a crash interrupts them).
            self.epochs.truncate_prefix(upto, upto_epoch);
            // Readers stop planning reads in the old files before they go
            // (a read already under way finds them gone: below the start).
            self.durable = upto;
            self.publish();
            for seg in &old {
                remove_file(&seg.path)?;
                tracing::debug!(file = %seg.path.display(), "deleted WAL segment (log emptied)");
            }
            fsync_dir(&self.dir)?;
            tracing::info!(upto, upto_epoch, "WAL emptied by prefix truncation");
            return Ok(());
        }
        let mut gone = 0;
        while gone + 1 < self.segments.len() && self.segments[gone + 1].base <= upto + 1 {
            gone += 1;
        }
        if gone > 0 {
            let old: Vec<Segment> = self.segments.drain(..gone).collect();
            let first = &self.segments[0];
            self.epochs
                .truncate_prefix(first.base - 1, first.prev_epoch);
            // Readers stop planning reads in the old files before they go.
            self.publish();
            for seg in &old {
                remove_file(&seg.path)?;
                tracing::debug!(file = %seg.path.display(), "deleted WAL segment (prefix truncation)");
            }
            fsync_dir(&self.dir)?;
            let removed = old.len();
            let first = &self.segments[0];
            tracing::info!(
                upto,
                segments = removed,
                first = first.base,
                "WAL prefix truncated"
            );
        }
        Ok(())
    }

    /// The epoch index of the records held.
    pub fn epochs(&self) -> &EpochIndex {
        &self.epochs
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

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths of the segment files, oldest first (the last is the active one).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// Bytes of records held in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }
}

/// Check that a record's header agrees with its bytes and its checksum holds.
fn check_record_bytes(r: &Record) -> Result<(), WalError> {
    let bad = |reason: String| WalError::BadRecord {
        offset: r.offset,
        reason,
    };
    let b = &r.bytes[..];
    if b.len() <= RECORD_HEADER_LEN {
        return Err(bad(format!("only {} bytes", b.len())));
    }
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if len + RECORD_HEADER_LEN != b.len() {
        return Err(bad(format!(
            "header says {len} payload bytes, record has {}",
            b.len() - RECORD_HEADER_LEN
        )));
    }
    let stored = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let computed = crc32c::crc32c(&b[RECORD_HEADER_LEN..]);
    if stored != computed {
        return Err(bad(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    Ok(())
}
