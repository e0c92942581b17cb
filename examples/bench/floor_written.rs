//! The in-run floor of a write made the way the WAL makes it: 100 bytes
//! into blocks already written (the WAL preallocates its segment and keeps
//! the space past its records written with zeros), then `fdatasync`.
//!
//! The floor the ratios use is a 100-byte *append* + `fdatasync`:
//! the append grows the file, so its sync also writes the file's size. On
//! this VM that makes it the dearer of the two, so it flatters the ratios;
//! this one is reported beside it so they can be read against either.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::floor::RECORD;
use crate::stats::{new_hist, ns, Hist};

/// The written span the samples cycle through.
const SPAN_BYTES: u64 = 1 << 20;

/// A file of `SPAN_BYTES` zeros, written and synced once, then written
/// 100 bytes at a time, in order, wrapping around.
pub struct Written {
    path: PathBuf,
    file: std::fs::File,
    at: u64,
    pub fsync: Hist,
}

impl Written {
    /// The file in `dir`, written in full before the first sample.
    pub fn new(dir: &Path) -> Result<Written, String> {
        let path = dir.join("run-floor-written.dat");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let zeros = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < SPAN_BYTES {
            file.write_all_at(&zeros, at)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            at += zeros.len() as u64;
        }
        file.sync_all()
            .map_err(|e| format!("fsync {}: {e}", path.display()))?;
        Ok(Written {
            path,
            file,
            at: 0,
            fsync: new_hist(),
        })
    }

    /// One 100-byte write at the next position + `fdatasync`, timed.
    pub fn sample(&mut self) -> Result<(), String> {
        let t = Instant::now();
        self.file
            .write_all_at(&RECORD, self.at)
            .map_err(|e| format!("write {}: {e}", self.path.display()))?;
        self.file
            .sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", self.path.display()))?;
        self.fsync.saturating_record(ns(t.elapsed()));
        self.at += RECORD.len() as u64;
        if self.at + RECORD.len() as u64 > SPAN_BYTES {
            self.at = 0;
        }
        Ok(())
    }

    /// Remove the file; the samples.
    pub fn finish(self) -> Hist {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
        self.fsync
    }
}
