//! The `--http` 64-writer phase again with an async client: one thread, one
//! tokio runtime, one task and one keep-alive HTTPS connection per writer.
//!
//! The blocking client (`http_load.rs`) runs a thread per writer in the
//! bench process, on the same 2 cores as the three nodes, and used a third
//! of the CPU the machine gave in the issue-22 runs. This client does the
//! same requests (`POST /v1/commands?acks=all`, one `CreateTopic` each)
//! without a thread per writer, so the two figures say how much of the
//! throughput is the client's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use metawal_testkit::procs;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest one write may take before the phase fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a response's header block may be, in lines.
const MAX_HEADER_LINES: usize = 64;
/// Longest one header line may be, in bytes.
const MAX_LINE_BYTES: u64 = 8 * 1024;
/// Largest response body read, in bytes (a write's answer is ~100).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// One line of the answer, at most [`MAX_LINE_BYTES`].
async fn read_line(conn: &mut BufReader<Stream>, line: &mut String) -> std::io::Result<()> {
    line.clear();
    (&mut *conn).take(MAX_LINE_BYTES).read_line(line).await?;
    Ok(())
}

type Stream = Box<dyn AsyncStream>;
trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

/// A connection to `addr`, over TLS with the harness's config for it if
/// it serves HTTPS.
async fn connect(addr: SocketAddr) -> Result<Stream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    let Some(config) = procs::http::tls_config(addr) else {
        return Ok(Box::new(tcp));
    };
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    Ok(Box::new(tls))
}

/// One `acks=all` create of `name` over `conn`; the answer is read whole
/// (so the connection is reused).
async fn write(conn: &mut BufReader<Stream>, addr: SocketAddr, name: &str) -> Result<(), String> {
    let body = format!(
        r#"{{"CreateTopic":{{"name":"{name}","partition_count":1,"replication_factor":3}}}}"#
    );
    let request = format!(
        "POST /v1/commands?acks=all HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let io = |e: std::io::Error| format!("write {name}: {e}");
    conn.get_mut()
        .write_all(request.as_bytes())
        .await
        .map_err(io)?;
    let mut line = String::new();
    read_line(conn, &mut line).await.map_err(io)?;
    let status = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length = 0usize;
    for _ in 0..MAX_HEADER_LINES {
        read_line(conn, &mut line).await.map_err(io)?;
        if !line.ends_with('\n') {
            return Err(format!(
                "write {name}: a header line over {MAX_LINE_BYTES} bytes, or the connection closed"
            ));
        }
        let header = line.trim_end();
        if header.is_empty() {
            if length > MAX_BODY_BYTES {
                return Err(format!(
                    "write {name}: an answer of {length} bytes (at most {MAX_BODY_BYTES} read)"
                ));
            }
            let mut answer = vec![0u8; length];
            conn.read_exact(&mut answer).await.map_err(io)?;
            if status != "200" {
                return Err(format!(
                    "write {name}: HTTP {status}: {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
            return Ok(());
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("write {name}: bad Content-Length {v:?}"))?;
            }
        }
    }
    Err(format!(
        "write {name}: more than {MAX_HEADER_LINES} header lines"
    ))
}

/// One writer: its own connection, writes until they run out.
async fn writer(
    addr: SocketAddr,
    c: u64,
    writes: u64,
    next: Arc<AtomicU64>,
) -> Result<Histogram<u64>, String> {
    let mut conn = BufReader::new(connect(addr).await?);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    // Bounded: each write takes one of `writes`.
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= writes {
            return Ok(h);
        }
        let started = Instant::now();
        let name = format!("ha-{c}-{i}");
        tokio::time::timeout(WRITE_TIMEOUT, write(&mut conn, addr, &name))
            .await
            .map_err(|_| format!("write {name}: no answer within {WRITE_TIMEOUT:?}"))??;
        let _ = h.record(started.elapsed().as_micros().max(1) as u64);
    }
}

/// `writes` `acks=all` writes to `leader` from `clients` async writers on
/// one thread: the writes' latency histogram (µs).
pub fn run(leader: SocketAddr, writes: u64, clients: u64) -> Result<Histogram<u64>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..clients)
            .map(|c| tokio::spawn(writer(leader, c, writes, next.clone())))
            .collect();
        let mut all =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let mut first_err = None;
        for t in tasks {
            match t.await {
                Ok(Ok(h)) => all.add(&h).map_err(|e| e.to_string())?,
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(format!("writer task: {e}"));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(all),
        }
    })
}
