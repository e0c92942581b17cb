//! Phase 1, the floor: a 100-byte append + fdatasync on the data dir's
//! filesystem, and a 100-byte loopback TCP ping-pong.
//!
//! Measured twice. Phase 1 measures it alone, on a quiet machine. This VM's
//! fdatasync takes ~4 ms when the CPUs are idle and 70-250 us when they are
//! busy (a power-state artefact), so a floor taken alone may not be the
//! floor the cluster's writes met. [`FloorSampler`] measures it again
//! *during* phase 2: one fdatasync and one ping-pong after each sequential
//! `acks=all` write, when that write is durable on every node and the CPUs
//! are in the state the writes put them in. The ratios of issue 22 use
//! that in-run floor (`run_floor_*`); both are reported.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::cli::{Counts, Out};
use crate::floor_trio::Trio;
use crate::floor_written::Written;
use crate::report::Results;
use crate::stats::{new_hist, ns, us, Hist};

pub(crate) const RECORD: [u8; 100] = [0x5a; 100];

/// fdatasync of a 100-byte append, in a file in `dir`.
fn fsync(dir: &Path, counts: Counts) -> Result<Hist, String> {
    let path = dir.join("floor-fsync.dat");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut fsync = new_hist();
    for i in 0..counts.fsync_samples + 20 {
        let t = Instant::now();
        file.write_all(&RECORD)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        file.sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", path.display()))?;
        if i >= 20 {
            fsync.saturating_record(ns(t.elapsed()));
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(fsync)
}

/// Loopback TCP ping-pong of 100 bytes.
fn rtt(counts: Counts) -> Result<Hist, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local addr: {e}"))?;
    let total = counts.rtt_samples + 200;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 100];
        for _ in 0..total {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut c = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    let mut buf = [0u8; 100];
    let mut rtt = new_hist();
    for i in 0..total {
        let t = Instant::now();
        c.write_all(&RECORD)
            .map_err(|e| format!("ping write: {e}"))?;
        c.read_exact(&mut buf)
            .map_err(|e| format!("pong read: {e}"))?;
        if i >= 200 {
            rtt.saturating_record(ns(t.elapsed()));
        }
    }
    drop(c);
    server
        .join()
        .map_err(|_| "the ping-pong server thread panicked".to_string())?
        .map_err(|e| format!("ping-pong server: {e}"))?;
    Ok(rtt)
}

/// What a [`FloorSampler`] measured.
pub struct RunFloor {
    /// fdatasync of a 100-byte append.
    pub fsync: Hist,
    /// The 100-byte loopback ping-pong.
    pub rtt: Hist,
    /// The longest of three fdatasyncs at once.
    pub fsync3: Hist,
    /// fdatasync of a 100-byte write into written blocks (`floor_written.rs`).
    pub fsync_written: Hist,
}

/// The floor sampled between the writes of a load: a file in the data
/// dir's filesystem and a connection to a loopback echo thread. One
/// [`FloorSampler::sample`] is one fdatasync of a 100-byte append, one of
/// a 100-byte write into written blocks, one 100-byte ping-pong and one
/// sample of three fdatasyncs at once; the echo thread ends when the
/// connection closes.
pub struct FloorSampler {
    path: PathBuf,
    file: std::fs::File,
    conn: TcpStream,
    echo: JoinHandle<std::io::Result<()>>,
    trio: Trio,
    written: Written,
    pub fsync: Hist,
    pub rtt: Hist,
    /// The longest of three concurrent fdatasyncs (`floor_trio.rs`).
    pub fsync3: Hist,
}

impl FloorSampler {
    /// A sampler with its file in `dir` and its echo thread started.
    pub fn new(dir: &Path) -> Result<FloorSampler, String> {
        let path = dir.join("run-floor-fsync.dat");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("local addr: {e}"))?;
        let echo = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            let mut buf = [0u8; 100];
            loop {
                match s.read_exact(&mut buf) {
                    Ok(()) => s.write_all(&buf)?,
                    // The sampler closed the connection: done.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let conn = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        conn.set_nodelay(true)
            .map_err(|e| format!("set_nodelay: {e}"))?;
        Ok(FloorSampler {
            path,
            file,
            conn,
            echo,
            trio: Trio::new(dir)?,
            written: Written::new(dir)?,
            fsync: new_hist(),
            rtt: new_hist(),
            fsync3: new_hist(),
        })
    }

    /// One fdatasync sample, one RTT sample and one sample of three
    /// fdatasyncs at once (blocking: the caller's
    /// thread waits ~0.1-0.3 ms; phase 2's proposer is idle meanwhile).
    pub fn sample(&mut self) -> Result<(), String> {
        let t = Instant::now();
        self.file
            .write_all(&RECORD)
            .map_err(|e| format!("write {}: {e}", self.path.display()))?;
        self.file
            .sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", self.path.display()))?;
        self.fsync.saturating_record(ns(t.elapsed()));
        self.written.sample()?;
        let mut buf = [0u8; 100];
        let t = Instant::now();
        self.conn
            .write_all(&RECORD)
            .map_err(|e| format!("ping write: {e}"))?;
        self.conn
            .read_exact(&mut buf)
            .map_err(|e| format!("pong read: {e}"))?;
        self.rtt.saturating_record(ns(t.elapsed()));
        let longest = self.trio.sample()?;
        self.fsync3.saturating_record(longest);
        Ok(())
    }

    /// Close the connection, join the echo and sync threads, remove the
    /// files; what was measured.
    pub fn finish(self) -> Result<RunFloor, String> {
        self.trio.finish()?;
        let fsync_written = self.written.finish();
        drop(self.conn);
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
        self.echo
            .join()
            .map_err(|_| "the echo thread panicked".to_string())?
            .map_err(|e| format!("echo thread: {e}"))?;
        Ok(RunFloor {
            fsync: self.fsync,
            rtt: self.rtt,
            fsync3: self.fsync3,
            fsync_written,
        })
    }
}

/// Measure the floor in a temp dir under `parent`.
pub fn run(out: Out, parent: &Path, counts: Counts, r: &mut Results) -> Result<(), String> {
    out.progress(&format!(
        "[1/8] floor: {} x fdatasync of a 100 B append, {} x 100 B loopback ping-pong",
        counts.fsync_samples, counts.rtt_samples
    ));
    let dir = tempfile::Builder::new()
        .prefix("metawal-bench-floor-")
        .tempdir_in(parent)
        .map_err(|e| format!("temp dir in {}: {e}", parent.display()))?;
    let fsync = fsync(dir.path(), counts)?;
    let rtt = rtt(counts)?;
    r.floor_fsync_p50_us = us(&fsync, 0.5);
    r.floor_fsync_p99_us = us(&fsync, 0.99);
    r.floor_rtt_p50_us = us(&rtt, 0.5);
    r.floor_rtt_p99_us = us(&rtt, 0.99);
    out.progress(&format!(
        "      fdatasync p50 {:.0} us p99 {:.0} us; RTT p50 {:.0} us p99 {:.0} us",
        r.floor_fsync_p50_us, r.floor_fsync_p99_us, r.floor_rtt_p50_us, r.floor_rtt_p99_us
    ));
    Ok(())
}
