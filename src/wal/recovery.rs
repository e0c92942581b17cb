//! Recovery at [`Wal::open`]: which bytes of the segments to trust.
//!
//! Every record of every segment is validated on open; a bad record in the
//! last segment is cut off only when it is a torn tail (the rules of
//! `docs/storage.md`: the record looks torn and no valid record that could
//! follow it in this log starts after it), and anything else bad is
//! [`WalError::Corrupt`]. Separate from the write path because these rules
//! decide between dropping bytes and refusing to start, and are easiest to
//! review (and test) on their own.

use std::path::{Path, PathBuf};

use crate::command::Entry;
use crate::epochs::EpochIndex;
use crate::record::{decode_record, RecordError, MAX_RECORD_PAYLOAD, RECORD_HEADER_LEN};

use super::segment::{fsync_dir, io_err, open_rw, parse_segment_file_name, remove_file, Segment};
use super::{Wal, WalError, WalOptions, SEGMENT_SUFFIX};

/// What opening the WAL found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenReport {
    /// Segment files found.
    pub segments: usize,
    /// A torn tail that was cut off: file, byte position, bytes removed.
    pub torn_tail: Option<TornTail>,
    /// Segments deleted at open to finish a [`Wal::truncate_prefix`] that a
    /// crash interrupted (the log had been emptied to a later base).
    pub finished_prefix_truncation: Vec<PathBuf>,
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

/// The result of scanning one segment's bytes.
struct Scan {
    positions: Vec<u64>,
    /// Length of the valid records.
    valid_len: u64,
    /// Set when the bytes after `valid_len` are a torn tail (only computed
    /// when the caller allows a tail).
    torn: bool,
}

/// Does the failure of the record at `pos` look like a torn tail, judged by
/// its own header and the bytes right after it (rules 1-5 of
/// `docs/storage.md`)? [`tail_verdict`] adds the search for a valid record
/// after it.
fn looks_torn(buf: &[u8], pos: usize, err: &RecordError) -> bool {
    let rest = &buf[pos..];
    if rest.len() < RECORD_HEADER_LEN {
        return true;
    }
    let declared = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
    let end = RECORD_HEADER_LEN as u64 + declared;
    if end > rest.len() as u64 {
        return true;
    }
    if end == rest.len() as u64 && matches!(err, RecordError::Checksum { .. }) {
        return true;
    }
    // A record torn inside preallocated space: nothing but zeros after it.
    if matches!(err, RecordError::Checksum { .. }) && rest[end as usize..].iter().all(|&b| b == 0) {
        return true;
    }
    rest.iter().all(|&b| b == 0)
}

/// Most payload bytes [`find_valid_record`] checksums before giving up (a
/// real torn tail has at most a record's worth of bytes before the zeros or
/// the end of the file, so only pathological garbage gets near this).
const TAIL_SEARCH_BUDGET: usize = 256 * 1024 * 1024;

/// What a valid record found after a failure must hold to count as a later
/// record of this log, rather than bytes that merely form a record: an old
/// record copied into a payload, or a record-shaped run of bytes inside a
/// client-supplied string.
///
/// A genuine record after the failed one holds a higher offset than the
/// failed record should have held, and an epoch no lower than the last good
/// record's (epochs never go backwards in a log). Anything else cannot
/// follow the failed record in this log and is skipped by the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Successor {
    /// The offset the failed record should have held (the last good offset
    /// + 1); a later record's offset is strictly greater.
    failed_offset: u64,
    /// Epoch of the last good record (the base epoch when there is none); a
    /// later record's epoch is not lower.
    last_epoch: u64,
}

impl Successor {
    /// The bound for a record failing right after what `epochs` holds.
    fn after(epochs: &EpochIndex) -> Successor {
        Successor {
            failed_offset: epochs.last_offset().saturating_add(1),
            last_epoch: epochs.last_epoch(),
        }
    }

    /// Could `entry` really follow the failed record in this log?
    fn admits(&self, entry: &Entry) -> bool {
        entry.offset > self.failed_offset && entry.epoch >= self.last_epoch
    }
}

/// What the search for a valid record after a failure found.
#[derive(Debug, PartialEq, Eq)]
enum FollowSearch {
    /// No valid record that could follow the failure starts anywhere after it.
    Nothing,
    /// A complete record with a good checksum, decoding as an entry that
    /// [`Successor::admits`], starts at `byte`.
    Found {
        /// Its byte position in the file.
        byte: usize,
        /// The offset it holds.
        offset: u64,
        /// The epoch it holds.
        epoch: u64,
    },
    /// The checksum budget ran out before the end of the data.
    GaveUp {
        /// Byte position the search had reached.
        byte: usize,
    },
}

/// Search `buf` from `from` on for the start of a valid record that could
/// follow the failed one: length within limits, complete, good checksum,
/// decodes as an entry, and that entry is one `successor` admits (higher
/// offset than the failed record's, epoch not lower than the last good
/// one's). A candidate that decodes but is not admitted is skipped and the
/// search goes on from the next byte. Candidates are only tried where the
/// length field is non-zero, so the zeros of preallocated space are skipped;
/// at most `budget` payload bytes are checksummed.
fn find_valid_record(
    buf: &[u8],
    from: usize,
    successor: Successor,
    mut budget: usize,
) -> FollowSearch {
    // A record's length field is not all zero, so no record starts at or
    // after the last non-zero byte's successor.
    let data_end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut q = from;
    while q < data_end && buf.len() - q > RECORD_HEADER_LEN {
        let len = u32::from_be_bytes([buf[q], buf[q + 1], buf[q + 2], buf[q + 3]]) as usize;
        if len == 0 || len > MAX_RECORD_PAYLOAD || len > buf.len() - q - RECORD_HEADER_LEN {
            q += 1;
            continue;
        }
        if len > budget {
            return FollowSearch::GaveUp { byte: q };
        }
        budget -= len;
        if let Ok((entry, _)) = decode_record(&buf[q..]) {
            if successor.admits(&entry) {
                return FollowSearch::Found {
                    byte: q,
                    offset: entry.offset,
                    epoch: entry.epoch,
                };
            }
        }
        q += 1;
    }
    FollowSearch::Nothing
}

/// Is the failure `err` of the record at `pos` in the last segment a torn
/// tail, by the rules of `docs/storage.md`? `Ok` if so, else why not.
/// `epochs` holds the records before `pos` (the last good one is the last).
///
/// A torn tail is only what no valid record follows: the bad record must
/// look torn (its header and the bytes after it) and no valid record that
/// could follow it in this log may start anywhere after `pos` (a bit flip in
/// the length field of a record mid-segment makes it look torn, but the
/// fsynced records after it are still there, and they hold higher offsets).
/// A record-shaped run of bytes inside the torn record's payload (a copy of
/// an earlier record, say) holds an offset at or below the failed one, or an
/// older epoch, and does not count; see [`Successor`]. What this cannot tell
/// apart: a payload crafted to embed a checksum-good record with a later
/// offset (the very next one, say) and a current epoch. That makes the open
/// refuse a genuinely torn tail, which fails safe: nothing is cut.
fn tail_verdict(
    buf: &[u8],
    pos: usize,
    err: &RecordError,
    epochs: &EpochIndex,
) -> Result<(), String> {
    if !looks_torn(buf, pos, err) {
        return Err(format!(
            "{err}, and valid-looking data follows it, so this is not a torn tail"
        ));
    }
    let successor = Successor::after(epochs);
    match find_valid_record(buf, pos + 1, successor, TAIL_SEARCH_BUDGET) {
        FollowSearch::Nothing => Ok(()),
        FollowSearch::Found {
            byte,
            offset,
            epoch,
        } => Err(format!(
            "{err}, but a valid record that can follow it (offset {offset}, epoch {epoch}; \
             this record should hold offset {}) starts after it at byte {byte}, \
             so this is not a torn tail and cutting here would drop written records",
            successor.failed_offset
        )),
        FollowSearch::GaveUp { byte } => Err(format!(
            "{err}; the search for valid records after it gave up at byte {byte} \
             (over {TAIL_SEARCH_BUDGET} bytes checked), so it cannot be shown to be a torn tail"
        )),
    }
}

/// Is everything from `pos` on zero (preallocated, never written)?
fn is_preallocated_rest(buf: &[u8], pos: usize) -> bool {
    buf[pos..].iter().all(|&b| b == 0)
}

/// Validate the records of one segment, continuing `epochs`.
fn scan_segment(
    path: &Path,
    buf: &[u8],
    epochs: &mut EpochIndex,
    allow_torn_tail: bool,
    preallocated: bool,
) -> Result<Scan, WalError> {
    let corrupt = |pos: usize, reason: String| WalError::Corrupt {
        file: path.to_path_buf(),
        byte: pos as u64,
        reason,
    };
    let mut positions = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        match decode_record(&buf[pos..]) {
            Ok((entry, used)) => {
                let expected = epochs.last_offset() + 1;
                if entry.offset != expected {
                    return Err(corrupt(
                        pos,
                        format!(
                            "record holds offset {} where offset {expected} was expected",
                            entry.offset
                        ),
                    ));
                }
                if let Err(e) = epochs.append(entry.offset, entry.epoch) {
                    return Err(corrupt(pos, e.to_string()));
                }
                positions.push(pos as u64);
                pos += used;
            }
            Err(err) => {
                let decode_failure = matches!(err, RecordError::Decode(_));
                if allow_torn_tail && preallocated && is_preallocated_rest(buf, pos) {
                    // The unwritten, preallocated end of the active segment.
                    return Ok(Scan {
                        positions,
                        valid_len: pos as u64,
                        torn: false,
                    });
                }
                let reason = if decode_failure {
                    format!("{err} (its checksum is good, so this is not a torn write)")
                } else if allow_torn_tail {
                    match tail_verdict(buf, pos, &err, epochs) {
                        Ok(()) => {
                            return Ok(Scan {
                                positions,
                                valid_len: pos as u64,
                                torn: true,
                            })
                        }
                        Err(reason) => reason,
                    }
                } else {
                    format!("{err} (in a segment that is not the last one)")
                };
                return Err(corrupt(pos, reason));
            }
        }
    }
    Ok(Scan {
        positions,
        valid_len: pos as u64,
        torn: false,
    })
}

impl Wal {
    /// Open (or create) the WAL in `dir`, recovering as `docs/storage.md` says.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, OpenReport), WalError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        let mut names: Vec<(u64, u64, PathBuf)> = Vec::new();
        for item in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let item = item.map_err(io_err(dir))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.ends_with(SEGMENT_SUFFIX) {
                continue;
            }
            let path = item.path();
            match parse_segment_file_name(name) {
                Some((base, prev_epoch)) if base >= 1 => names.push((base, prev_epoch, path)),
                _ => {
                    return Err(WalError::Corrupt {
                        file: path,
                        byte: 0,
                        reason: "not a segment file name (expected \
                                 <20-digit base offset>-<20-digit epoch>.wal, base >= 1)"
                            .into(),
                    })
                }
            }
        }
        names.sort();
        let mut report = OpenReport {
            segments: names.len(),
            ..OpenReport::default()
        };

        let mut wal = Wal {
            dir: dir.to_path_buf(),
            options,
            segments: Vec::new(),
            epochs: EpochIndex::new(0, 0),
            write_buf: Vec::new(),
            failed: None,
            durable: 0,
            shared: Default::default(),
        };
        if names.is_empty() {
            wal.create_segment(1, 0)?;
            wal.publish_durable();
            return Ok((wal, report));
        }

        let count = names.len();
        for (i, (base, prev_epoch, path)) in names.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let file = open_rw(&path, false)?;
            let file_len = file.metadata().map_err(io_err(&path))?.len();
            if i == 0 {
                wal.epochs = EpochIndex::new(base - 1, prev_epoch);
            } else {
                let expected = wal.epochs.last_offset() + 1;
                let last_epoch = wal.epochs.last_epoch();
                if base != expected || prev_epoch != last_epoch {
                    if is_last && file_len == 0 {
                        // Only `truncate_prefix` past the end makes an empty
                        // segment that does not continue the log, and it
                        // deletes every older segment right after: a crash
                        // came in between. Finish the job.
                        for old in wal.segments.drain(..) {
                            tracing::warn!(
                                file = %old.path.display(),
                                "deleting segment left over by an interrupted prefix truncation"
                            );
                            remove_file(&old.path)?;
                            report.finished_prefix_truncation.push(old.path);
                        }
                        fsync_dir(dir)?;
                        wal.epochs = EpochIndex::new(base - 1, prev_epoch);
                    } else {
                        return Err(WalError::Corrupt {
                            file: path,
                            byte: 0,
                            reason: format!(
                                "segment starts at offset {base} after epoch {prev_epoch}, \
                                 but the log before it ends at offset {} in epoch {last_epoch} \
                                 (a gap or a stray segment)",
                                expected - 1
                            ),
                        });
                    }
                }
            }
            let mut buf = Vec::new();
            {
                use std::io::Read;
                (&file).read_to_end(&mut buf).map_err(io_err(&path))?;
            }
            let scan = scan_segment(&path, &buf, &mut wal.epochs, is_last, options.preallocate)?;
            if !is_last && scan.positions.is_empty() {
                return Err(WalError::Corrupt {
                    file: path,
                    byte: 0,
                    reason: "segment holds no records but is not the last one".into(),
                });
            }
            if scan.torn {
                let removed = buf.len() as u64 - scan.valid_len;
                tracing::warn!(
                    file = %path.display(),
                    byte = scan.valid_len,
                    removed,
                    "cutting off the torn tail of the WAL"
                );
                file.set_len(scan.valid_len).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
                report.torn_tail = Some(TornTail {
                    file: path.clone(),
                    byte: scan.valid_len,
                    removed,
                });
            }
            wal.segments.push(Segment {
                path,
                base,
                prev_epoch,
                file,
                len: scan.valid_len,
                positions: scan.positions,
                dirty: false,
                zeroed: scan.valid_len,
            });
        }
        tracing::debug!(
            dir = %dir.display(),
            segments = wal.segments.len(),
            first = wal.first_offset(),
            last = wal.last_offset(),
            "WAL opened"
        );
        // What recovery found is the log: readers may see all of it.
        wal.publish_durable();
        Ok((wal, report))
    }
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
