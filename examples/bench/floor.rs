//! Phase 1, the floor: a 100-byte append + fdatasync on the data dir's
//! filesystem, and a 100-byte loopback TCP ping-pong.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use crate::cli::{Counts, Out};
use crate::report::Results;
use crate::stats::{new_hist, ns, us, Hist};

const RECORD: [u8; 100] = [0x5a; 100];

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
