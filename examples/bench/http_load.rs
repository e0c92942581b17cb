//! The bench's `--http` phases: the latency and throughput phases again,
//! but through real HTTP clients against three `metawal-node` processes,
//! so the figures compare like for like with etcd's and ZooKeeper's
//! client-measured numbers (a client request, the server's JSON parsing,
//! the leader's propose, replication, the response).
//!
//! Each client thread keeps one HTTP/1.1 connection alive (as a real client
//! library would: `metawal-client`'s `Node` with `Reuse::KeepAlive`) and
//! sends `POST /v1/commands?acks=all` one at a time.
//! The processes come from the test harness (`metawal_testkit::procs`): reserved loopback
//! ports, temp data dirs, every child killed when the cluster is dropped,
//! and HTTPS (the harness's TLS set-up: its test CA, `--http-tls`), so the
//! figures include TLS as a production client would pay it (the
//! connection is kept alive: one handshake per client, not per write).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use metawal_testkit::procs;
use procs::http::{Method, Node, Reuse};

use crate::fsync_tail::{parse, show, Syncs};

/// The syncs of the nodes at `addrs` so far, summed, from their `/metrics`.
fn node_syncs(addrs: &[SocketAddr]) -> Result<Syncs, String> {
    let mut sum = Syncs::default();
    for &addr in addrs {
        let answer = procs::http::node(addr, Duration::from_secs(5), Reuse::Fresh)
            .send_once(Method::Get, "/metrics", None)
            .map_err(|e| format!("GET /metrics on {addr}: {e}"))?;
        if answer.status != 200 {
            return Err(format!("GET /metrics on {addr}: status {}", answer.status));
        }
        let s = parse(&answer.body).map_err(|e| format!("/metrics of {addr}: {e}"))?;
        sum.total += s.total;
        sum.slow += s.slow;
    }
    Ok(sum)
}

/// What the HTTP phases measured.
#[derive(Debug, Default, Clone, Copy)]
pub struct HttpFigures {
    /// Sequential `acks=all` writes from one client: median, µs.
    pub acks_all_p50_us: f64,
    /// Its 99th percentile, µs.
    pub acks_all_p99_us: f64,
    /// `clients` concurrent clients: writes per second.
    pub throughput_eps: f64,
    /// Their median latency, µs.
    pub throughput_p50_us: f64,
    /// Their 99th percentile, µs.
    pub throughput_p99_us: f64,
    /// The sequential writes' propagation to a follower's change stream:
    /// from just before the `POST` to the entry's event on `GET /v1/watch`
    /// of a follower (a separate connection, read on its own thread),
    /// median and 99th percentile, µs.
    pub watch_p50_us: f64,
    pub watch_p99_us: f64,
    /// The three nodes' syncs during the sequential writes (their
    /// `/metrics`): the one-writer and watch p99s follow the slow ones.
    pub latency_syncs: Option<Syncs>,
    /// CPU used during the 64-client phase, in cores (CPU seconds / wall
    /// seconds): the bench process (its client threads) and the three node
    /// processes together. Says whether the client shares the machine's
    /// cores with the servers enough to bound the figure.
    pub client_cores: f64,
    pub nodes_cores: f64,
    /// The same writes from `clients` async writers on one thread
    /// (`http_async.rs`): writes per second, p50 and p99 µs, and the CPU
    /// meanwhile in cores.
    pub async_throughput_eps: f64,
    pub async_p50_us: f64,
    pub async_p99_us: f64,
    pub async_client_cores: f64,
    pub async_nodes_cores: f64,
}

/// CPU seconds (user + system) process `pid` (`"self"` or a number) has
/// used so far, from `/proc/<pid>/stat`; 0 if it cannot be read.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses:
    // utime and stime are the 14th and 15th fields of the whole line.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// Longest a single write may take before the phase fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of `leader` on one keep-alive connection (HTTPS with the
/// harness's TLS config for it), each write sent once.
fn client(leader: SocketAddr) -> Node {
    procs::http::node(leader, WRITE_TIMEOUT, Reuse::KeepAlive)
}

/// One `acks=all` create of `name` on `node`: its latency, and the offset
/// and start instant of the write.
fn write(node: &Node, name: &str) -> Result<(Duration, u64, Instant), String> {
    let body = format!(
        r#"{{"CreateTopic":{{"name":"{name}","partition_count":1,"replication_factor":3}}}}"#
    );
    let started = Instant::now();
    // The answer's body is read, so the connection is reused.
    match node.send_once(Method::Post, "/v1/commands?acks=all", Some(&body)) {
        Ok(a) if a.status == 200 => {
            let took = started.elapsed();
            let offset = serde_json::from_str::<serde_json::Value>(&a.body)
                .ok()
                .and_then(|v| v["offset"].as_u64())
                .ok_or_else(|| format!("write {name}: no offset in the answer {}", a.body))?;
            Ok((took, offset, started))
        }
        Ok(a) => Err(format!("write {name}: HTTP {}: {}", a.status, a.body)),
        Err(e) => Err(format!("write {name}: {e}")),
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record(d.as_micros().max(1) as u64);
}

fn hist() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

/// Start three processes, then run `latency_writes` sequential writes and
/// `throughput_writes` from `clients` threads, all `acks=all`.
pub fn run(
    latency_writes: u64,
    throughput_writes: u64,
    clients: u64,
    progress: &dyn Fn(&str),
) -> Result<HttpFigures, String> {
    let mut opts = procs::ClusterOpts::fast(3);
    // The default timeouts: nothing fails over during the bench.
    opts.election_timeout_ms = 1000;
    opts.heartbeat_ms = 100;
    opts.request_timeout_ms = 5000;
    opts.replica_lag_ms = 5000;
    let mut cluster = procs::Cluster::start(opts);
    let leader_id = cluster.wait_leader(Duration::from_secs(30));
    let leader = cluster.node(leader_id).http;
    // Wait for the full ISR: acks=all then waits for both followers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let full = procs::http::status(leader).is_some_and(|s| s["isr_len"].as_u64() == Some(3));
        if full {
            break;
        }
        if Instant::now() > deadline {
            return Err("the ISR did not reach 3 within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut f = HttpFigures::default();
    progress(&format!(
        "[http 1/3] latency: {latency_writes} sequential acks=all writes over HTTP (node {leader_id} leads)"
    ));
    let node = client(leader);
    let follower = (1..=3u64)
        .find(|&id| id != leader_id)
        .map(|id| cluster.node(id).http)
        .ok_or("no follower")?;
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let count = latency_writes as usize;
    let until = Arc::new(AtomicU64::new(u64::MAX));
    let watcher = std::thread::spawn({
        let until = until.clone();
        move || {
            procs::http::watch_arrivals(follower, &until, Duration::from_secs(120), || {
                let _ = opened_tx.send(());
            })
        }
    });
    opened_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the follower's change stream did not open within 30 s".to_string())?;
    let mut lat = hist()?;
    let mut sent = Vec::with_capacity(count);
    let addrs: Vec<SocketAddr> = (1..=3u64).map(|id| cluster.node(id).http).collect();
    let syncs_before = node_syncs(&addrs);
    for i in 0..latency_writes {
        let (took, offset, at) = write(&node, &format!("hl-{i}"))?;
        record(&mut lat, took);
        sent.push((offset, at));
    }
    // Context, not a judged figure: a failed reading costs the count only.
    f.latency_syncs = match (syncs_before, node_syncs(&addrs)) {
        (Ok(b), Ok(a)) => Some(a.since(b)),
        (Err(e), _) | (_, Err(e)) => {
            progress(&format!(
                "      no sync count for the sequential writes: {e}"
            ));
            None
        }
    };
    f.acks_all_p50_us = lat.value_at_quantile(0.5) as f64;
    f.acks_all_p99_us = lat.value_at_quantile(0.99) as f64;
    // The watcher stops at the first event at or past the last write's
    // offset; one more write makes sure such an event comes.
    let last = sent.iter().map(|&(o, _)| o).max().unwrap_or(0);
    until.store(last, Ordering::Release);
    write(&node, "hl-last")?;
    let arrived: std::collections::HashMap<u64, Instant> = watcher
        .join()
        .map_err(|_| "the watch thread panicked".to_string())??
        .into_iter()
        .collect();
    let mut watch = hist()?;
    for (offset, at) in sent {
        let seen = arrived
            .get(&offset)
            .ok_or_else(|| format!("offset {offset} never reached the follower's change stream"))?;
        record(&mut watch, seen.saturating_duration_since(at));
    }
    f.watch_p50_us = watch.value_at_quantile(0.5) as f64;
    f.watch_p99_us = watch.value_at_quantile(0.99) as f64;
    progress(&format!(
        "      p50 {:.0} us, p99 {:.0} us; to a follower's change stream p50 {:.0} us, p99 {:.0} us; {}",
        f.acks_all_p50_us,
        f.acks_all_p99_us,
        f.watch_p50_us,
        f.watch_p99_us,
        show(f.latency_syncs)
    ));

    progress(&format!(
        "[http 2/3] throughput: {throughput_writes} acks=all writes from {clients} HTTP clients"
    ));
    let next = Arc::new(AtomicU64::new(0));
    let pids: Vec<String> = (1..=3u64)
        .filter_map(|id| cluster.node(id).pid())
        .map(|p| p.to_string())
        .collect();
    let nodes_cpu = |pids: &[String]| pids.iter().map(|p| cpu_secs(p)).sum::<f64>();
    let (client_before, nodes_before) = (cpu_secs("self"), nodes_cpu(&pids));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let next = next.clone();
            std::thread::spawn(move || -> Result<Histogram<u64>, String> {
                let node = client(leader);
                let mut h = hist()?;
                // Bounded: each write takes one of `throughput_writes`.
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= throughput_writes {
                        return Ok(h);
                    }
                    record(&mut h, write(&node, &format!("ht-{c}-{i}"))?.0);
                }
            })
        })
        .collect();
    let mut all = hist()?;
    for t in threads {
        let h = t
            .join()
            .map_err(|_| "a client thread panicked".to_string())??;
        all.add(&h).map_err(|e| e.to_string())?;
    }
    let took = started.elapsed();
    let wall = took.as_secs_f64().max(1e-9);
    f.client_cores = (cpu_secs("self") - client_before) / wall;
    f.nodes_cores = (nodes_cpu(&pids) - nodes_before) / wall;
    f.throughput_eps = throughput_writes as f64 / took.as_secs_f64();
    f.throughput_p50_us = all.value_at_quantile(0.5) as f64;
    f.throughput_p99_us = all.value_at_quantile(0.99) as f64;
    progress(&format!(
        "      {:.0} writes/s, p50 {:.0} us, p99 {:.0} us; CPU: client {:.2} cores, nodes {:.2} cores",
        f.throughput_eps, f.throughput_p50_us, f.throughput_p99_us, f.client_cores, f.nodes_cores
    ));

    progress(&format!(
        "[http 3/3] throughput: {throughput_writes} acks=all writes from {clients} async HTTP writers on one thread"
    ));
    let (client_before, nodes_before) = (cpu_secs("self"), nodes_cpu(&pids));
    let started = Instant::now();
    let h = crate::http_async::run(leader, throughput_writes, clients)?;
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    f.async_client_cores = (cpu_secs("self") - client_before) / wall;
    f.async_nodes_cores = (nodes_cpu(&pids) - nodes_before) / wall;
    f.async_throughput_eps = throughput_writes as f64 / wall;
    f.async_p50_us = h.value_at_quantile(0.5) as f64;
    f.async_p99_us = h.value_at_quantile(0.99) as f64;
    progress(&format!(
        "      {:.0} writes/s, p50 {:.0} us, p99 {:.0} us; CPU: client {:.2} cores, nodes {:.2} cores",
        f.async_throughput_eps, f.async_p50_us, f.async_p99_us, f.async_client_cores, f.async_nodes_cores
    ));
    Ok(f)
}
