//! One segment file of the WAL: its name, its position index, and the
//! file-system calls the log makes on segments.
//!
//! Separate from the log itself because it is about one file (how it is
//! named, reserved with `fallocate`, zeroed ahead of its records and
//! indexed) plus the small file-system helpers (open, delete, directory
//! `fsync`, error mapping) that the write path and recovery share; `mod.rs`
//! decides what to write where and `recovery.rs` what to trust at open.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::WalError;

/// File name suffix of a segment.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The file name of a segment.
pub fn segment_file_name(base: u64, prev_epoch: u64) -> String {
    format!("{base:020}-{prev_epoch:020}{SEGMENT_SUFFIX}")
}

/// Parse a segment file name into `(base offset, epoch of base - 1)`.
pub fn parse_segment_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (base, epoch) = stem.split_once('-')?;
    if base.len() != 20 || epoch.len() != 20 {
        return None;
    }
    if !base.bytes().all(|b| b.is_ascii_digit()) || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base.parse().ok()?, epoch.parse().ok()?))
}

/// One segment file and its position index.
#[derive(Debug)]
pub(super) struct Segment {
    /// The segment file.
    pub(super) path: PathBuf,
    /// Offset of the first record (the next offset when empty).
    pub(super) base: u64,
    /// Epoch of offset `base - 1`, from the file name.
    pub(super) prev_epoch: u64,
    /// Open read + write; writes are positioned (`pwrite`), reads `pread`.
    pub(super) file: File,
    /// Bytes in the file that belong to records.
    pub(super) len: u64,
    /// File position of each record; record `base + i` starts at `positions[i]`.
    pub(super) positions: Vec<u64>,
    /// Written since the last `fdatasync`.
    pub(super) dirty: bool,
    /// The file is written (records or zeros) up to here; see
    /// [`zero_ahead`].
    pub(super) zeroed: u64,
}

impl Segment {
    /// Byte range of record index `i` in the file.
    pub(super) fn record_span(&self, i: usize) -> (u64, u64) {
        let start = self.positions[i];
        let end = self.positions.get(i + 1).copied().unwrap_or(self.len);
        (start, end)
    }
}

/// Reserve `len` bytes for `file` (Linux `fallocate`; elsewhere nothing).
/// Failure (a filesystem without support) only costs speed, so it is logged.
pub(super) fn preallocate(file: &File, path: &Path, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(len) = libc::off_t::try_from(len) else {
            return;
        };
        // SAFETY: `file` is an open descriptor for the duration of the call;
        // fallocate only reads its arguments.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc != 0 {
            tracing::debug!(file = %path.display(), error = %std::io::Error::last_os_error(), "fallocate unsupported; segment grows as written");
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, path, len);
    }
}

/// How far past the end of its records a preallocated segment is kept
/// written with zeros ([`zero_ahead`]).
pub(super) const ZERO_AHEAD_BYTES: u64 = 128 * 1024;

/// Source of the zeros [`zero_ahead`] writes.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Write zeros into `seg` from its written end up to `end +
/// ZERO_AHEAD_BYTES` (at most `limit`, the preallocated size), once less
/// than half of that margin is left.
///
/// Why: `fallocate` reserves *unwritten* extents. The first write into
/// each block converts its extent, and the `fdatasync` after it must then
/// write the extent tree as well as the data: on this VM's ext4 a write of
/// ~3 KB, which starts a new block nearly every time, syncs in ~100 µs
/// with three writers syncing at once against ~62 µs for the same write
/// into blocks already written. Zeroing at least 64 KiB ahead at a time
/// pays the conversion once per zero write instead of once per block. The
/// zeros are what the preallocated space reads as anyway, so recovery sees
/// no difference.
pub(super) fn zero_ahead(seg: &mut Segment, end: u64, limit: u64) -> Result<(), WalError> {
    use std::os::unix::fs::FileExt;
    let target = (end + ZERO_AHEAD_BYTES).min(limit);
    let from = seg.zeroed.max(end);
    if from >= target || seg.zeroed >= end + ZERO_AHEAD_BYTES / 2 {
        return Ok(());
    }
    let mut at = from;
    while at < target {
        let n = (target - at).min(ZEROS.len() as u64) as usize;
        seg.file
            .write_all_at(&ZEROS[..n], at)
            .map_err(io_err(&seg.path))?;
        at += n as u64;
    }
    seg.zeroed = target;
    seg.dirty = true;
    Ok(())
}

impl Segment {
    /// Write `bytes` (whole records) after the segment's records, without
    /// syncing: zeros ahead first when `preallocated` (see [`zero_ahead`];
    /// `limit` is the preallocated size), then the records. On an error
    /// nothing counts as written, and the file is cut back to the records
    /// before.
    pub(super) fn write_end(
        &mut self,
        bytes: &[u8],
        preallocated: bool,
        limit: u64,
    ) -> Result<(), WalError> {
        use std::os::unix::fs::FileExt;
        let start = self.len;
        let size = start + bytes.len() as u64;
        if preallocated {
            // Before the records: a failure here has changed nothing.
            zero_ahead(self, size, limit)?;
        }
        if let Err(source) = self.file.write_all_at(bytes, start) {
            // Do not leave a partial record behind the last good one.
            let _ = self.file.set_len(start);
            self.zeroed = self.zeroed.min(start);
            return Err(WalError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len = size;
        self.dirty = true;
        Ok(())
    }
}

/// Map an I/O error on `path` to [`WalError::Io`].
pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `fsync` the directory `dir`, making file creations and deletions in it durable.
pub(super) fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Open `path` for positioned reads and writes (creating it when `create_new`).
pub(super) fn open_rw(path: &Path, create_new: bool) -> Result<File, WalError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create_new)
        .open(path)
        .map_err(io_err(path))
}

/// Delete `path`; a file that is already gone is not an error.
pub(super) fn remove_file(path: &Path) -> Result<(), WalError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}
