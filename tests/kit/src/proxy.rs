//! A small TCP fault proxy for tests and the benchmark: it sits between the
//! leader (which connects to it) and one follower, and can delay every frame,
//! stall (stop forwarding and stop reading, so TCP buffers fill and the
//! sender's window is what bounds its memory), or cut (drop every connection
//! and refuse new ones).
//!
//! Delay is per frame (frames are u32-length-prefixed) and pipelined: each
//! frame leaves `delay` after it arrived, as on a long link, rather than
//! frames queueing behind each other's delays. Only loopback addresses are
//! used.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Hold each frame leader → follower for this long.
    Delay(Duration),
    /// Stop forwarding (and reading) in both directions.
    Stall,
    /// Close every connection; refuse new ones.
    Cut,
}

/// A running proxy.
#[derive(Clone)]
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    forwarded: Arc<AtomicU64>,
}

/// Largest frame the proxy parses (matches the default max_frame_bytes).
const MAX_FRAME: usize = 16 * 1024 * 1024;

impl FaultProxy {
    /// Listen on 127.0.0.1:0 and forward to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(Fault::Pass);
        let forwarded = Arc::new(AtomicU64::new(0));
        let fwd = forwarded.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *rx.borrow() == Fault::Cut {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, rx.clone(), true, fwd.clone()));
                tokio::spawn(pipe(sr, cw, rx.clone(), false, fwd.clone()));
            }
        });
        Ok(FaultProxy {
            addr,
            fault: Arc::new(tx),
            forwarded,
        })
    }

    /// Where the leader should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Change what the proxy does.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Frames forwarded so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

async fn read_frame(r: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return None;
    }
    let mut buf = vec![0u8; 4 + n];
    buf[..4].copy_from_slice(&len);
    r.read_exact(&mut buf[4..]).await.ok()?;
    Some(buf)
}

/// Forward frames from `r` to `w`, applying the fault. `downstream` is the
/// leader → follower direction (the one delays apply to).
async fn pipe(
    mut r: OwnedReadHalf,
    w: OwnedWriteHalf,
    fault: watch::Receiver<Fault>,
    downstream: bool,
    forwarded: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(4096);
    let mut writer_fault = fault.clone();
    let writer = tokio::spawn(async move {
        let mut w = w;
        while let Some((due, frame)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // Hold frames while stalled.
            while *writer_fault.borrow_and_update() == Fault::Stall {
                if writer_fault.changed().await.is_err() {
                    return;
                }
            }
            if w.write_all(&frame).await.is_err() {
                return;
            }
            forwarded.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut read_fault = fault.clone();
    let reader = async move {
        loop {
            // Stop reading while stalled: the sender's TCP window fills.
            while *read_fault.borrow_and_update() == Fault::Stall {
                if read_fault.changed().await.is_err() {
                    return;
                }
            }
            let Some(frame) = read_frame(&mut r).await else {
                return;
            };
            let delay = match *read_fault.borrow() {
                Fault::Delay(d) if downstream => d,
                _ => Duration::ZERO,
            };
            if tx.send((Instant::now() + delay, frame)).await.is_err() {
                return;
            }
        }
    };
    let mut cut_fault = fault;
    let cut = async move {
        loop {
            if *cut_fault.borrow_and_update() == Fault::Cut {
                return;
            }
            if cut_fault.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = reader => {
            // Let queued frames drain, unless cut meanwhile.
        }
        _ = cut => {
            writer.abort();
        }
    }
}
