//! Three fdatasyncs at once, one per thread and file: the disk floor of an
//! `acks=all` write when the three nodes share one disk, as the bench's do.
//!
//! An `acks=all` write waits for the leader's and both followers' syncs,
//! which run at nearly the same time. On this VM's one virtual disk three
//! concurrent `fdatasync`s take longer than one (the flushes queue), so one
//! sync plus a round trip understates what such a write must wait for. A
//! sample here is the longest of the three syncs' own durations (each
//! timed by its thread, so the hand-off to the threads is not counted),
//! taken when the three threads are released together.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::stats::ns;

const RECORD: [u8; 100] = [0x3c; 100];
const THREADS: usize = 3;

/// What the threads share with the sampler.
struct Shared {
    start: Barrier,
    done: Barrier,
    stop: AtomicBool,
    took_ns: [AtomicU64; THREADS],
    failed: Mutex<Option<String>>,
}

/// Three sync threads, each with its own file, released together.
pub struct Trio {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    paths: Vec<PathBuf>,
}

/// One thread: on each release, a 100-byte append and its fdatasync,
/// timed; an error is kept for the sampler (the thread still meets the
/// `done` barrier, so the sampler never waits forever).
fn worker(shared: Arc<Shared>, i: usize, mut file: std::fs::File) {
    loop {
        shared.start.wait();
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let t = Instant::now();
        let result = file.write_all(&RECORD).and_then(|()| file.sync_data());
        shared.took_ns[i].store(ns(t.elapsed()), Ordering::Release);
        if let Err(e) = result {
            if let Ok(mut f) = shared.failed.lock() {
                f.get_or_insert(format!("write + fdatasync on sync thread {i}: {e}"));
            }
        }
        shared.done.wait();
    }
}

impl Trio {
    /// Three threads with their files in `dir`.
    pub fn new(dir: &Path) -> Result<Trio, String> {
        let shared = Arc::new(Shared {
            start: Barrier::new(THREADS + 1),
            done: Barrier::new(THREADS + 1),
            stop: AtomicBool::new(false),
            took_ns: Default::default(),
            failed: Mutex::new(None),
        });
        let mut workers = Vec::with_capacity(THREADS);
        let mut paths = Vec::with_capacity(THREADS);
        for i in 0..THREADS {
            let path = dir.join(format!("run-floor-trio-{i}.dat"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            let shared = shared.clone();
            workers.push(std::thread::spawn(move || worker(shared, i, file)));
            paths.push(path);
        }
        Ok(Trio {
            shared,
            workers,
            paths,
        })
    }

    /// Release the three syncs and wait for them: the longest one, in ns.
    pub fn sample(&self) -> Result<u64, String> {
        self.shared.start.wait();
        self.shared.done.wait();
        if let Some(e) = self.shared.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        let longest = self
            .shared
            .took_ns
            .iter()
            .map(|t| t.load(Ordering::Acquire))
            .max()
            .unwrap_or(0);
        Ok(longest)
    }

    /// Stop and join the threads, remove the files.
    pub fn finish(self) -> Result<(), String> {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.start.wait();
        for w in self.workers {
            w.join()
                .map_err(|_| "a sync thread of the floor panicked".to_string())?;
        }
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}
