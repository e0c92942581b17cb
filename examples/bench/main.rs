//! The cluster benchmark (issue 4): how fast a metadata change reaches every
//! node of a three-node metawal cluster in one process, measured against this
//! machine's disk and network floor.
//!
//! ```text
//! cargo run --release --example bench -- [--quick] [--json] [--data-dir DIR]
//! ```
//!
//! Phases, in one run (each on a fresh cluster where it needs one; node 1 is
//! the leader until phase 8 kills leaders, nodes on their own Arbiters,
//! loopback TCP, data dirs in the system temp dir or under `--data-dir`):
//!
//! 1. floor: 100-byte append + fdatasync on the data dir's filesystem, and a
//!    100-byte loopback TCP ping-pong.
//! 2. latency: one proposer, `acks=all`, sequential writes.
//! 3. throughput: 64 proposers, `acks=all`.
//! 4. propagation: one proposer, `acks=leader`, sequential writes; time from
//!    just before the leader's `propose` is called to the `MetadataChanged`
//!    notification handled by a subscriber actor on each follower's arbiter.
//! 5. isolation: 64 proposers, `acks=leader`, node 3 behind a fault proxy;
//!    first with the proxy passing frames through, then with a 50 ms delay
//!    on every frame leader → node 3 (measured once node 3 has left the ISR;
//!    the time that takes is reported too).
//! 6. stalled follower: the proxy stops reading from the leader; 64
//!    proposers write `acks=leader`; growth of the process's resident memory
//!    (all three nodes are in this process) and the bytes in flight to node 3.
//! 7. catch-up: node 3 stopped, writes go on, node 3 restarted: entries per
//!    second from its restart until the leader has it back in the ISR.
//! 8. failover: the leader crashes (`Node::crash`: no resignation), 5 times
//!    (3 with `--quick`) with the default timeouts (T = 1 s) and as often with
//!    `election_timeout` 150 ms (heartbeat 20 ms); time from the crash to
//!    the first `acks=all` write a surviving node accepts, and to a new
//!    leader. Each kill starts from a full ISR that has run 2 T without
//!    election traffic; the killed node is restarted and back in the ISR
//!    before the next. Also 3 clean shutdowns (the leader resigns) with the
//!    default timeouts, for comparison.
//!
//! 2+3 TLS (unless `--no-tls`): the latency and throughput phases again on a
//!    fresh cluster with mutual TLS between the nodes (a throwaway CA made
//!    at start), reported with a `tls_` prefix beside the plaintext figures.
//!
//! 9. `--http` only: the latency and throughput phases again through real
//!    HTTP clients (keep-alive connections, `POST /v1/commands?acks=all`)
//!    against three `metawal-node` processes, reported with an `http_`
//!    prefix beside the in-process figures.
//!
//! `--json` prints exactly one JSON object on stdout; progress and the table
//! then go to stderr. See docs/benchmarks.md for what every figure means.

#![recursion_limit = "256"]

mod http_load;

use metawal_testkit::{certs, proxy, support};

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{on_arbiter, reserve_port, start_on_arbiter, wait_for, Recording};

use actix::prelude::*;
use clap::Parser;
use hdrhistogram::Histogram;
use metawal_actors::{
    Acks, Command, ElectionRole, Node, NodeConfig, NodeId, ReplicationConfig, Role,
};
use proxy::{Fault, FaultProxy};

#[derive(Parser)]
#[command(
    about = "metawal cluster benchmark: three nodes on loopback, against the disk and network floor"
)]
struct Args {
    /// Scale every count down ~10x (a smoke run; its numbers are not judged).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object on stdout (progress and table go to stderr).
    #[arg(long)]
    json: bool,
    /// Put the nodes' data under this directory (default: the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run only these phases (2..=8; the floor always runs), e.g. `--only 3`
    /// to profile one. Figures of skipped phases are reported as 0.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
    /// Also run the latency and throughput phases through HTTP clients
    /// against three metawal-node processes (built if needed); figures
    /// with an `http_` prefix.
    #[arg(long)]
    http: bool,
    /// Skip the TLS comparison (phases 2 and 3 again with mutual TLS
    /// between the nodes; figures with a `tls_` prefix).
    #[arg(long)]
    no_tls: bool,
}

/// How many of everything a run does.
#[derive(Clone, Copy)]
struct Counts {
    fsync_samples: u64,
    rtt_samples: u64,
    latency_writes: u64,
    throughput_writes: u64,
    propagation_writes: u64,
    isolation_writes: u64,
    stalled_writes: u64,
    catchup_writes: u64,
    proposers: u64,
    /// Leader crashes per failover measurement (the median is reported).
    failover_kills: usize,
}

impl Counts {
    fn new(quick: bool) -> Counts {
        let full = Counts {
            fsync_samples: 2_000,
            rtt_samples: 20_000,
            latency_writes: 5_000,
            throughput_writes: 100_000,
            propagation_writes: 5_000,
            isolation_writes: 100_000,
            stalled_writes: 200_000,
            catchup_writes: 200_000,
            proposers: 64,
            failover_kills: 5,
        };
        if !quick {
            return full;
        }
        Counts {
            fsync_samples: full.fsync_samples / 10,
            rtt_samples: full.rtt_samples / 10,
            latency_writes: full.latency_writes / 10,
            throughput_writes: full.throughput_writes / 10,
            propagation_writes: full.propagation_writes / 10,
            isolation_writes: full.isolation_writes / 10,
            stalled_writes: full.stalled_writes / 10,
            catchup_writes: full.catchup_writes / 10,
            proposers: full.proposers,
            failover_kills: 3,
        }
    }
}

const TOPIC: &str = "bench";
const PARTITIONS: u64 = 16;
const CLUSTER_ID: &str = "bench-cluster";
const SECRET: &[u8] = b"bench-secret";
/// The slow follower's delay in the isolation phase.
const SLOW_DELAY: Duration = Duration::from_millis(50);
/// The short election timeout of the failover phase, and a heartbeat that
/// keeps it valid (`election_timeout >= 3 x heartbeat_interval`).
const FAST_ELECTION_TIMEOUT: Duration = Duration::from_millis(150);
const FAST_HEARTBEAT: Duration = Duration::from_millis(20);

type Hist = Histogram<u64>;

fn new_hist() -> Hist {
    // Nanoseconds from 1 ns to 1 hour, 3 significant digits.
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("1 ns ..= 1 h at 3 significant digits is a valid histogram")
}

fn us(h: &Hist, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn max_us(h: &Hist) -> f64 {
    h.max() as f64 / 1e3
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Round to one decimal for the JSON.
fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Where progress lines and the table go.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    /// A progress line (always stderr).
    fn progress(&self, s: &str) {
        eprintln!("{s}");
    }
    /// A line of the result table (stdout, or stderr with --json).
    fn table(&self, s: &str) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }
}

// ---------------------------------------------------------------- floor

struct Floor {
    fsync: Hist,
    rtt: Hist,
}

fn floor(dir: &Path, counts: Counts) -> Result<Floor, String> {
    // fdatasync of a 100-byte append, in a file on the data dir's filesystem.
    let path = dir.join("floor-fsync.dat");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let record = [0x5au8; 100];
    let mut fsync = new_hist();
    for i in 0..counts.fsync_samples + 20 {
        let t = Instant::now();
        file.write_all(&record)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        file.sync_data()
            .map_err(|e| format!("fdatasync {}: {e}", path.display()))?;
        if i >= 20 {
            fsync.saturating_record(ns(t.elapsed()));
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&path);

    // Loopback TCP ping-pong of 100 bytes.
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
        c.write_all(&record)
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
    Ok(Floor { fsync, rtt })
}

// ---------------------------------------------------------------- cluster

/// Changes a follower's subscriber keeps (more than any phase writes).
const NOTES_KEEP: usize = 1 << 22;

struct Cluster {
    _dir: tempfile::TempDir,
    base: PathBuf,
    /// Real listen addresses of nodes 1..=3.
    listen: Vec<SocketAddr>,
    /// Where the leader reaches node 3 (the proxy, if any).
    node3_via: SocketAddr,
    nodes: Vec<Option<(Node, Arbiter)>>,
    proxy: Option<(FaultProxy, Arbiter)>,
    /// Subscribers on nodes 2 and 3, when asked for.
    notes: HashMap<NodeId, Recording>,
    /// Every node's replication and election tunables.
    replication: ReplicationConfig,
    /// With TLS between the nodes: the throwaway CA that issued their
    /// certificates (None: plaintext).
    ca: Option<certs::TestCa>,
}

impl Cluster {
    /// Start nodes 2, 3, 1 (node 3 behind a fault proxy if `with_proxy`),
    /// wait for the full ISR, subscribe recorders on the followers if
    /// `subscribe`, and create the benchmark topic.
    async fn start(parent: &Path, with_proxy: bool, subscribe: bool) -> Result<Cluster, String> {
        Cluster::start_with(parent, with_proxy, subscribe, ReplicationConfig::default()).await
    }

    /// [`Cluster::start`] with these tunables on every node.
    async fn start_with(
        parent: &Path,
        with_proxy: bool,
        subscribe: bool,
        replication: ReplicationConfig,
    ) -> Result<Cluster, String> {
        Cluster::start_opts(parent, with_proxy, subscribe, replication, false).await
    }

    /// [`Cluster::start`] with mutual TLS between the nodes.
    async fn start_tls(parent: &Path, subscribe: bool) -> Result<Cluster, String> {
        Cluster::start_opts(parent, false, subscribe, ReplicationConfig::default(), true).await
    }

    async fn start_opts(
        parent: &Path,
        with_proxy: bool,
        subscribe: bool,
        replication: ReplicationConfig,
        tls: bool,
    ) -> Result<Cluster, String> {
        // A reserved port can be taken by someone else before a node binds
        // it: start again on new ports (a few times at most).
        let mut attempt = 1;
        loop {
            match Cluster::try_start(parent, with_proxy, replication.clone(), tls).await {
                Ok(c) => return c.setup(subscribe).await,
                Err(e) if attempt < 4 && e.contains("Address already in use") => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Start the nodes (and the proxy); stop whatever started on failure.
    async fn try_start(
        parent: &Path,
        with_proxy: bool,
        replication: ReplicationConfig,
        tls: bool,
    ) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("metawal-bench-")
            .tempdir_in(parent)
            .map_err(|e| format!("temp dir in {}: {e}", parent.display()))?;
        let base = dir.path().to_path_buf();
        let ca = if tls {
            Some(
                certs::TestCa::new(&base, "bench", CLUSTER_ID)
                    .map_err(|e| format!("bench certificates: {e}"))?,
            )
        } else {
            None
        };
        // Hold the reserved ports while the proxy binds its own.
        let reserved = [reserve_port()?, reserve_port()?, reserve_port()?];
        let listen = reserved
            .iter()
            .map(|l| l.local_addr().map_err(|e| format!("local addr: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let proxy = if with_proxy {
            let target = listen[2];
            Some(
                on_arbiter("fault proxy", async move {
                    FaultProxy::start(target)
                        .await
                        .map_err(|e| format!("proxy start: {e}"))
                })
                .await?,
            )
        } else {
            None
        };
        let node3_via = proxy.as_ref().map_or(listen[2], |(p, _)| p.addr());
        let mut c = Cluster {
            _dir: dir,
            base,
            listen,
            node3_via,
            nodes: vec![None, None, None],
            proxy,
            notes: HashMap::new(),
            replication,
            ca,
        };
        drop(reserved);
        for id in [2, 3, 1] {
            if let Err(e) = c.start_node(id).await {
                c.stop().await;
                return Err(e);
            }
        }
        Ok(c)
    }

    /// Wait for the full ISR, subscribe recorders on the followers if
    /// `subscribe`, and create the benchmark topic.
    async fn setup(mut self, subscribe: bool) -> Result<Cluster, String> {
        let c = &mut self;
        // The phases measure node 1 as leader (node 3 is behind the proxy
        // on its links): if another node won the first election, hand
        // leadership to node 1.
        c.make_leader(1, Duration::from_secs(20)).await?;
        let leader = c.node(1)?.clone();
        wait_isr(&leader, 3, Duration::from_secs(10)).await?;
        if subscribe {
            for id in [2, 3] {
                let arbiter = c.arbiter(id)?;
                // The store drops a subscriber whose mailbox is full: make
                // room for any burst this benchmark produces.
                let rec = Recording::start(c.node(id)?, Some(&arbiter), NOTES_KEEP, 1 << 20)
                    .map_err(|e| format!("node {id}: {e}"))?;
                c.notes.insert(id, rec);
            }
        }
        // The topic every write touches: PARTITIONS partitions on all three nodes.
        let setup = |cmd: Command| {
            let leader = leader.clone();
            async move {
                leader
                    .propose(cmd, Acks::All)
                    .await
                    .map_err(|e| format!("setup write: {e}"))
            }
        };
        setup(Command::CreateTopic {
            name: TOPIC.into(),
            partition_count: PARTITIONS as u32,
            replication_factor: 3,
        })
        .await?;
        let mut last = 0;
        for p in 0..PARTITIONS {
            let r = |k: u64| (p + k) % 3 + 1;
            last = setup(Command::AssignPartition {
                topic: TOPIC.into(),
                partition: p as i32,
                replicas: vec![r(0), r(1), r(2)],
            })
            .await?
            .offset;
        }
        for id in [2, 3] {
            let n = c.node(id)?;
            wait_for(
                &format!("node {id} to apply the setup"),
                Duration::from_secs(10),
                || async { n.view().applied_offset() >= last },
            )
            .await?;
            if let Some(notes) = c.notes.get(&id) {
                wait_for(
                    &format!("node {id}'s subscriber to see the setup"),
                    Duration::from_secs(10),
                    || async { notes.last_offset() >= last },
                )
                .await?;
                notes.clear();
            }
        }
        Ok(self)
    }

    fn config(&self, id: NodeId) -> Result<NodeConfig, String> {
        let mut cfg = NodeConfig::new(
            id,
            CLUSTER_ID,
            SECRET.to_vec(),
            self.base.join(format!("node-{id}")),
            self.listen[(id - 1) as usize],
        );
        cfg.replication = self.replication.clone();
        cfg.peers = (1..=3u64)
            .filter(|&p| p != id)
            .map(|p| {
                let addr = if id == 1 && p == 3 {
                    self.node3_via
                } else {
                    self.listen[(p - 1) as usize]
                };
                (p, addr)
            })
            .collect();
        match &self.ca {
            Some(ca) => {
                cfg.tls = Some(
                    ca.node(id)
                        .map_err(|e| format!("node {id}'s certificate: {e}"))?,
                )
            }
            None => cfg.insecure_plaintext = true,
        }
        Ok(cfg)
    }

    async fn start_node(&mut self, id: NodeId) -> Result<(), String> {
        let cfg = self.config(id)?;
        let started = start_on_arbiter(cfg).await?;
        self.nodes[(id - 1) as usize] = Some(started);
        Ok(())
    }

    async fn stop_node(&mut self, id: NodeId) {
        if let Some((node, arbiter)) = self.nodes[(id - 1) as usize].take() {
            node.shutdown().await;
            arbiter.stop();
        }
    }

    /// Stop node `id` as a crash would (feature `fault-injection`): no
    /// resignation, so its followers elect only after their timeout.
    async fn crash_node(&mut self, id: NodeId) {
        if let Some((node, arbiter)) = self.nodes[(id - 1) as usize].take() {
            node.crash().await;
            arbiter.stop();
        }
    }

    /// The running nodes, by id.
    fn running(&self) -> Vec<(NodeId, Node)> {
        self.nodes
            .iter()
            .zip(1..)
            .filter_map(|(n, id)| n.as_ref().map(|(n, _)| (id, n.clone())))
            .collect()
    }

    /// Wait for a leader; hand leadership to `id` if another node won.
    async fn make_leader(&self, id: NodeId, limit: Duration) -> Result<(), String> {
        let running: Vec<Node> = self
            .nodes
            .iter()
            .flatten()
            .map(|(n, _)| n.clone())
            .collect();
        let (l, _) = support::wait_leader(&running, limit).await?;
        if l != id {
            self.node(l)?
                .transfer_leadership(id)
                .await
                .map_err(|e| format!("transfer from node {l} to node {id}: {e}"))?;
        }
        Ok(())
    }

    fn node(&self, id: NodeId) -> Result<&Node, String> {
        self.nodes[(id - 1) as usize]
            .as_ref()
            .map(|(n, _)| n)
            .ok_or_else(|| format!("node {id} is not running"))
    }

    fn arbiter(&self, id: NodeId) -> Result<ArbiterHandle, String> {
        self.nodes[(id - 1) as usize]
            .as_ref()
            .map(|(_, a)| a.handle())
            .ok_or_else(|| format!("node {id} is not running"))
    }

    fn proxy(&self) -> Result<&FaultProxy, String> {
        self.proxy
            .as_ref()
            .map(|(p, _)| p)
            .ok_or_else(|| "this cluster has no proxy".to_string())
    }

    fn notes(&self, id: NodeId) -> Result<&Recording, String> {
        self.notes
            .get(&id)
            .ok_or_else(|| format!("node {id} has no subscriber"))
    }

    async fn stop(mut self) {
        if let Some((p, _)) = &self.proxy {
            // Let anything held drain so shutdown does not wait on a stall.
            p.set(Fault::Pass);
        }
        for id in [1, 2, 3] {
            self.stop_node(id).await;
        }
        if let Some((_, arbiter)) = self.proxy.take() {
            arbiter.stop();
        }
    }
}

async fn wait_isr(leader: &Node, len: usize, limit: Duration) -> Result<(), String> {
    wait_for(&format!("an ISR of {len}"), limit, || async {
        leader
            .status()
            .await
            .map(|s| s.isr_len == len)
            .unwrap_or(false)
    })
    .await
}

async fn follower3_in_isr(leader: &Node) -> Result<bool, String> {
    let s = leader
        .status()
        .await
        .map_err(|e| format!("leader status: {e}"))?;
    Ok(s.follower(3).is_some_and(|f| f.in_isr))
}

// ---------------------------------------------------------------- load

/// One tracked write.
#[derive(Clone, Copy)]
struct Sample {
    offset: u64,
    /// Just before `propose` was called.
    at: Instant,
    /// Until `propose` returned, in ns.
    latency: u64,
}

struct LoadResult {
    writes: u64,
    secs: f64,
    latency: Hist,
    /// Every write, if tracked.
    sent: Vec<Sample>,
}

impl LoadResult {
    fn eps(&self) -> f64 {
        self.writes as f64 / self.secs.max(1e-9)
    }
}

/// Phase 2's load: sequential `acks=all` writes, every one tracked.
async fn latency_load(out: Out, leader: &Node, counts: Counts) -> Result<LoadResult, String> {
    let writes = counts.latency_writes;
    load(out, leader, writes, 1, Acks::All, true, LoadCtl::default()).await
}

/// Phase 3's load: `acks=all` writes from all the proposers, every one
/// tracked.
async fn throughput_load(out: Out, leader: &Node, counts: Counts) -> Result<LoadResult, String> {
    let (writes, p) = (counts.throughput_writes, counts.proposers);
    load(out, leader, writes, p, Acks::All, true, LoadCtl::default()).await
}

/// Outside control of a load: a stop flag and the count of completed writes.
#[derive(Clone, Default)]
struct LoadCtl {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
}

/// Up to `writes` valid writes (`SetPartitionLeader`, cycling partitions and
/// leaders among the replicas) from `proposers` concurrent proposers, until
/// `ctl.stop` is set. Latency is from just before `propose` to its return.
async fn load(
    out: Out,
    leader: &Node,
    writes: u64,
    proposers: u64,
    acks: Acks,
    track: bool,
    ctl: LoadCtl,
) -> Result<LoadResult, String> {
    let next = Arc::new(AtomicU64::new(0));
    let done = ctl.done.clone();
    let started = Instant::now();
    // One histogram for all proposers (they share this thread): a histogram
    // is ~270 KB, and the stalled phase measures the process's memory.
    let hist = Rc::new(RefCell::new(new_hist()));
    let mut tasks = Vec::new();
    for _ in 0..proposers {
        let hist = hist.clone();
        let (leader, next, done, stop) =
            (leader.clone(), next.clone(), done.clone(), ctl.stop.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut sent = Vec::new();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    break;
                }
                let command = Command::SetPartitionLeader {
                    topic: TOPIC.into(),
                    partition: (i % PARTITIONS) as i32,
                    leader: 1 + (i / PARTITIONS) % 3,
                };
                let at = Instant::now();
                let p = leader
                    .propose(command, acks)
                    .await
                    .map_err(|e| format!("write {i} ({acks:?}): {e}"))?;
                let latency = ns(at.elapsed());
                hist.borrow_mut().saturating_record(latency);
                if track {
                    sent.push(Sample {
                        offset: p.offset,
                        at,
                        latency,
                    });
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(sent)
        }));
    }
    let reporter = {
        let done = done.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let d = done.load(Ordering::Relaxed);
                out.progress(&format!(
                    "      ... {d} writes, {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
            }
        })
    };
    let mut sent = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => sent.extend(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("proposer task: {e}"));
            }
        }
    }
    reporter.abort();
    if let Some(e) = first_err {
        return Err(e);
    }
    let latency = hist.replace(new_hist());
    Ok(LoadResult {
        writes: done.load(Ordering::Relaxed),
        secs: started.elapsed().as_secs_f64(),
        latency,
        sent,
    })
}

/// Propagation of each of `sent` to follower `id`, in ns, in `sent`'s
/// order: notification instant minus the instant just before `propose`.
/// Waits for the last notification; fails if any is missing.
async fn prop_samples(c: &Cluster, id: NodeId, sent: &[Sample]) -> Result<Vec<u64>, String> {
    let notes = c.notes(id)?;
    let last = sent.iter().map(|s| s.offset).max().unwrap_or(0);
    wait_for(
        &format!("node {id}'s subscriber to see offset {last}"),
        Duration::from_secs(60),
        || async { notes.last_offset() >= last },
    )
    .await?;
    let seen: HashMap<u64, Instant> = notes.take_arrivals().into_iter().collect();
    let mut v = Vec::with_capacity(sent.len());
    let mut missing = 0u64;
    for s in sent {
        match seen.get(&s.offset) {
            Some(at) => v.push(ns(at.saturating_duration_since(s.at))),
            None => missing += 1,
        }
    }
    if missing > 0 {
        return Err(format!(
            "node {id}'s subscriber missed {missing} of {} notifications (dropped for a full mailbox?)",
            sent.len()
        ));
    }
    Ok(v)
}

/// Propagation of `sent` to follower `id` as a histogram.
async fn propagation(c: &Cluster, id: NodeId, sent: &[Sample]) -> Result<Hist, String> {
    let mut h = new_hist();
    for v in prop_samples(c, id, sent).await? {
        h.saturating_record(v);
    }
    Ok(h)
}

/// Both followers' propagation in one histogram, and each one's.
async fn propagation_all(c: &Cluster, sent: &[Sample]) -> Result<(Hist, Hist, Hist), String> {
    let f2 = propagation(c, 2, sent).await?;
    let f3 = propagation(c, 3, sent).await?;
    let mut both = f2.clone();
    both.add(&f3)
        .map_err(|e| format!("merge histograms: {e}"))?;
    Ok((both, f2, f3))
}

fn rss_bytes() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("read /proc/self/status: {e}"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/self/status")?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|e| format!("VmRSS {line:?}: {e}"))?;
    Ok(kb * 1024)
}

// ---------------------------------------------------------------- failover

/// How a failover sample takes the leader away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// `Node::crash`: no resignation, no last `meta` write; the followers
    /// stand only once their election timeout ran out.
    Crash,
    /// `Node::shutdown`: the leader resigns and the followers elect within a
    /// short random delay.
    Resign,
}

/// One leader taken away; both times from just before the kill.
#[derive(Clone, Copy)]
struct FailoverSample {
    /// Until a surviving node's election engine first reported itself
    /// leader (polled before each write attempt).
    elected: Duration,
    /// Until the first `acks=all` write on the new leader returned `Ok`.
    written: Duration,
}

/// Clean shutdowns (resignations) measured for comparison.
const FAILOVER_RESIGNS: usize = 3;
/// `acks=all` writes to the leader just before each kill.
const FAILOVER_WRITES: u64 = 10;
/// Before a crash, the full cluster runs this many election timeouts `T`
/// with no election traffic. A follower re-arms its election timer at each
/// election input (a vote, a pre-vote, its start) and reads the leader's
/// last contact only when that timer fires; a crash right after a failover
/// and restart finds both followers with a timer armed moments ago, and
/// each stands at the later of that deadline and a fresh draw from the last
/// contact (median ~1.5 T instead of ~1.3 T; docs/benchmarks.md, issue 8).
/// After 2 T every follower has re-armed from a leader contact, as under a
/// leader that has been up for a while.
const FAILOVER_SETTLE_TIMEOUTS: u32 = 2;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, min and max (0 for none).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// A valid write that changes something (cycling partitions and leaders).
fn failover_command(seq: u64) -> Command {
    Command::SetPartitionLeader {
        topic: TOPIC.into(),
        partition: (seq % PARTITIONS) as i32,
        leader: 1 + (seq / PARTITIONS) % 3,
    }
}

/// `kills` times: wait for a leader and the full ISR (and, before a crash,
/// [`FAILOVER_SETTLE_TIMEOUTS`] x T more), write [`FAILOVER_WRITES`]
/// entries `acks=all`, take the leader away (`how`),
/// then propose `acks=all` on each surviving node in turn, 1 ms between
/// rounds, until one accepts; restart the killed node and wait until the
/// new leader has all three in its ISR again.
async fn failover_samples(
    out: Out,
    c: &mut Cluster,
    kills: usize,
    how: Kill,
) -> Result<Vec<FailoverSample>, String> {
    let t = c.replication.election_timeout;
    // Far above the expected [T, 2T) + one election: only a cluster that
    // does not recover hits it.
    let limit = 10 * t + Duration::from_secs(10);
    out.progress(&format!(
        "      {} x {}, election timeout {t:?}, heartbeat {:?}:",
        kills,
        match how {
            Kill::Crash => "leader crash",
            Kill::Resign => "clean leader shutdown (resigns)",
        },
        c.replication.heartbeat_interval
    ));
    let mut seq = 0u64;
    let mut samples = Vec::with_capacity(kills);
    for k in 1..=kills {
        let running = c.running();
        let nodes: Vec<Node> = running.iter().map(|(_, n)| n.clone()).collect();
        let (l, epoch) = support::wait_leader(&nodes, Duration::from_secs(30)).await?;
        let leader = c.node(l)?.clone();
        wait_isr(&leader, 3, Duration::from_secs(30)).await?;
        if how == Kill::Crash {
            // A resigning leader's followers draw a fresh delay at once.
            tokio::time::sleep(FAILOVER_SETTLE_TIMEOUTS * t).await;
        }
        for _ in 0..FAILOVER_WRITES {
            seq += 1;
            leader
                .propose(failover_command(seq), Acks::All)
                .await
                .map_err(|e| format!("failover: write to leader {l} before the kill: {e}"))?;
        }
        drop(leader);
        let others: Vec<(NodeId, Node)> = running.into_iter().filter(|(id, _)| *id != l).collect();
        drop(nodes);

        let t0 = Instant::now();
        match how {
            Kill::Crash => c.crash_node(l).await,
            Kill::Resign => c.stop_node(l).await,
        }
        let stopped = t0.elapsed();
        let deadline = t0 + limit;
        let mut elected: Option<(NodeId, Duration)> = None;
        let mut written: Option<(NodeId, Duration)> = None;
        let mut attempts = 0u64;
        let mut last_err = String::from("none");
        'rounds: loop {
            for (id, n) in &others {
                // Elected: the node's election engine won (its role as a
                // replicating leader follows once it has taken over).
                if elected.is_none()
                    && (n.role() == Role::Leader
                        || n.status()
                            .await
                            .is_ok_and(|s| s.election_role == ElectionRole::Leader))
                {
                    elected = Some((*id, t0.elapsed()));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break 'rounds;
                }
                seq += 1;
                attempts += 1;
                match tokio::time::timeout(left, n.propose(failover_command(seq), Acks::All)).await
                {
                    Ok(Ok(_)) => {
                        written = Some((*id, t0.elapsed()));
                        break 'rounds;
                    }
                    Ok(Err(e)) => last_err = format!("node {id}: {e}"),
                    Err(_) => last_err = format!("node {id}: no answer before the deadline"),
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let Some((w, written_after)) = written else {
            return Err(format!(
                "failover {k}: no acks=all write succeeded within {limit:?} of taking leader {l} away ({attempts} attempts; last error: {last_err})"
            ));
        };
        // The winner may have been elected between two role checks.
        let elected = elected.unwrap_or((w, written_after));

        let restart = Instant::now();
        c.start_node(l).await?;
        let nodes: Vec<Node> = c.running().into_iter().map(|(_, n)| n).collect();
        let (nl, new_epoch) = support::wait_leader(&nodes, Duration::from_secs(30)).await?;
        wait_isr(c.node(nl)?, 3, Duration::from_secs(30)).await?;
        out.progress(&format!(
            "        {k}: leader {l} (epoch {epoch}) {} in {:.1} ms; node {} leader after {:.1} ms; first acks=all write on node {w} after {:.1} ms ({attempts} attempts); node {l} back, ISR 3 (leader {nl}, epoch {new_epoch}) {:.0} ms later",
            if how == Kill::Crash { "crashed" } else { "shut down" },
            ms(stopped),
            elected.0,
            ms(elected.1),
            ms(written_after),
            ms(restart.elapsed()),
        ));
        samples.push(FailoverSample {
            elected: elected.1,
            written: written_after,
        });
    }
    Ok(samples)
}

/// Start a cluster with `replication`, take the samples `hows` asks for
/// (how, how many), stop it.
async fn failover_phase(
    out: Out,
    parent: &Path,
    replication: ReplicationConfig,
    hows: &[(Kill, usize)],
) -> Result<Vec<Vec<FailoverSample>>, String> {
    let mut c = Cluster::start_with(parent, false, false, replication).await?;
    let mut all = Vec::new();
    let mut result = Ok(());
    for &(how, kills) in hows {
        match failover_samples(out, &mut c, kills, how).await {
            Ok(s) => all.push(s),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    c.stop().await;
    result.map(|()| all)
}

// ---------------------------------------------------------------- phases

#[derive(Default)]
struct Results {
    floor_fsync_p50_us: f64,
    floor_fsync_p99_us: f64,
    floor_rtt_p50_us: f64,
    floor_rtt_p99_us: f64,
    acks_all_p50_us: f64,
    acks_all_p99_us: f64,
    acks_all_p999_us: f64,
    acks_all_max_us: f64,
    latency_propagation_p99_us: f64,
    throughput_eps: f64,
    throughput_p50_us: f64,
    throughput_p99_us: f64,
    throughput_propagation_p99_us: f64,
    propagation_p50_us: f64,
    propagation_p99_us: f64,
    propagation_max_us: f64,
    propagation_f2_p99_us: f64,
    propagation_f3_p99_us: f64,
    propagation_acks_leader_p50_us: f64,
    iso_base_ack_p99_us: f64,
    iso_base_prop_p99_us: f64,
    iso_base_eps: f64,
    iso_isr_shrink_ms: f64,
    iso_transient_prop_p99_us: f64,
    iso_slow_ack_p99_us: f64,
    iso_slow_prop_p99_us: f64,
    iso_slow_eps: f64,
    iso_slow_back_in_polls: u64,
    iso_slow_polls: u64,
    iso_rejoin_after_idle_ms: Option<f64>,
    isolation_ack_ratio: f64,
    isolation_propagation_ratio: f64,
    stalled_rss_base_bytes: u64,
    stalled_rss_growth_bytes: u64,
    stalled_rss_growth_end_bytes: u64,
    stalled_inflight_bytes: u64,
    stalled_eps: f64,
    stalled_window_bytes: u64,
    catchup_entries: u64,
    catchup_secs: f64,
    catchup_start_ms: f64,
    catchup_eps: f64,
    catchup_connect_ms: f64,
    catchup_stream_eps: f64,
    /// Failover after a leader crash, default timeouts: ms to the first
    /// acks=all write, and to a new leader, per kill.
    failover_ms: Vec<f64>,
    failover_election_ms: Vec<f64>,
    /// The same with election_timeout = 150 ms, heartbeat 20 ms.
    failover_150_ms: Vec<f64>,
    failover_150_election_ms: Vec<f64>,
    /// The same after a clean shutdown (the leader resigns), default timeouts.
    resign_failover_ms: Vec<f64>,
    resign_election_ms: Vec<f64>,
    /// Phase 9 (`--http`).
    http: Option<http_load::HttpFigures>,
    /// Phases 2 and 3 again with mutual TLS between the nodes.
    tls: Option<TlsFigures>,
}

/// The latency and throughput phases over TLS.
#[derive(Clone, Copy, Default)]
struct TlsFigures {
    acks_all_p50_us: f64,
    acks_all_p99_us: f64,
    throughput_eps: f64,
    throughput_p50_us: f64,
    throughput_p99_us: f64,
}

async fn run(args: Args, out: Out, parent: PathBuf, r: &mut Results) -> Result<(), String> {
    let counts = Counts::new(args.quick);
    let p = counts.proposers;
    let defaults = ReplicationConfig::default();
    let want = |n: u32| args.only.is_empty() || args.only.contains(&n);

    // 6: stalled follower. It runs first, in a fresh process, so that its
    // resident-memory growth is not hidden by memory the earlier phases
    // freed (the allocator reuses it without growing the RSS).
    if want(6) {
        out.progress(&format!(
        "[6/8] stalled follower: node 3's proxy stops reading; {} acks=leader writes from {p} proposers",
        counts.stalled_writes
    ));
        let c = Cluster::start(&parent, true, false).await?;
        let leader = c.node(1)?.clone();
        // Warm up allocators and caches before the baseline.
        load(
            out,
            &leader,
            counts.stalled_writes / 10,
            p,
            Acks::Leader,
            false,
            LoadCtl::default(),
        )
        .await?;
        c.proxy()?.set(Fault::Stall);
        let rss_base = rss_bytes()?;
        let sampling = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (leader, sampling) = (leader.clone(), sampling.clone());
            tokio::task::spawn_local(async move {
                let (mut rss_max, mut inflight_max) = (rss_base, 0u64);
                // Bounded by the load: the flag is set when it ends.
                while !sampling.load(Ordering::Relaxed) {
                    if let Ok(rss) = rss_bytes() {
                        rss_max = rss_max.max(rss);
                    }
                    if let Ok(s) = leader.status().await {
                        if let Some(f) = s.follower(3) {
                            inflight_max = inflight_max.max(f.inflight_bytes as u64);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (rss_max, inflight_max)
            })
        };
        let st = load(
            out,
            &leader,
            counts.stalled_writes,
            p,
            Acks::Leader,
            false,
            LoadCtl::default(),
        )
        .await?;
        sampling.store(true, Ordering::Relaxed);
        let (rss_max, mut inflight_max) = sampler.await.map_err(|e| format!("sampler: {e}"))?;
        let rss_end = rss_bytes()?;
        if let Some(f) = leader
            .status()
            .await
            .map_err(|e| format!("leader status: {e}"))?
            .follower(3)
        {
            inflight_max = inflight_max.max(f.inflight_bytes as u64);
        }
        r.stalled_rss_base_bytes = rss_base;
        r.stalled_rss_growth_bytes = rss_max.max(rss_end).saturating_sub(rss_base);
        r.stalled_rss_growth_end_bytes = rss_end.saturating_sub(rss_base);
        r.stalled_inflight_bytes = inflight_max;
        r.stalled_eps = st.eps();
        r.stalled_window_bytes = defaults.window_bytes as u64;
        out.progress(&format!(
        "      {:.0} entries/s; RSS {:.1} MiB -> +{:.1} MiB max; in flight to node 3 max {:.2} MiB (window {:.0} MiB)",
        r.stalled_eps,
        rss_base as f64 / 1048576.0,
        r.stalled_rss_growth_bytes as f64 / 1048576.0,
        inflight_max as f64 / 1048576.0,
        defaults.window_bytes as f64 / 1048576.0
    ));
        c.stop().await;
    }

    if [2, 3, 4].iter().any(|&n| want(n)) {
        // 2-4: one cluster, subscribers on both followers.
        let c = Cluster::start(&parent, false, true).await?;
        let leader = c.node(1)?.clone();
        if want(2) {
            out.progress(&format!(
                "[2/8] latency: {} sequential acks=all writes",
                counts.latency_writes
            ));
            let lat = latency_load(out, &leader, counts).await?;
            let (lat_prop, _, _) = propagation_all(&c, &lat.sent).await?;
            r.acks_all_p50_us = us(&lat.latency, 0.5);
            r.acks_all_p99_us = us(&lat.latency, 0.99);
            r.acks_all_p999_us = us(&lat.latency, 0.999);
            r.acks_all_max_us = max_us(&lat.latency);
            r.latency_propagation_p99_us = us(&lat_prop, 0.99);
            out.progress(&format!(
                "      p50 {:.0} us, p99 {:.0} us, p999 {:.0} us, max {:.0} us",
                r.acks_all_p50_us, r.acks_all_p99_us, r.acks_all_p999_us, r.acks_all_max_us
            ));
        }
        if want(3) {
            out.progress(&format!(
                "[3/8] throughput: {} acks=all writes from {p} proposers",
                counts.throughput_writes
            ));
            let thr = throughput_load(out, &leader, counts).await?;
            let (thr_prop, _, _) = propagation_all(&c, &thr.sent).await?;
            r.throughput_eps = thr.eps();
            r.throughput_p50_us = us(&thr.latency, 0.5);
            r.throughput_p99_us = us(&thr.latency, 0.99);
            r.throughput_propagation_p99_us = us(&thr_prop, 0.99);
            out.progress(&format!(
                "      {:.0} entries/s, p50 {:.0} us, p99 {:.0} us",
                r.throughput_eps, r.throughput_p50_us, r.throughput_p99_us
            ));
        }
        if want(4) {
            out.progress(&format!(
        "[4/8] propagation: {} sequential acks=leader writes, leader -> follower MetadataChanged",
        counts.propagation_writes
    ));
            let pr = load(
                out,
                &leader,
                counts.propagation_writes,
                1,
                Acks::Leader,
                true,
                LoadCtl::default(),
            )
            .await?;
            let (both, f2, f3) = propagation_all(&c, &pr.sent).await?;
            r.propagation_p50_us = us(&both, 0.5);
            r.propagation_p99_us = us(&both, 0.99);
            r.propagation_max_us = max_us(&both);
            r.propagation_f2_p99_us = us(&f2, 0.99);
            r.propagation_f3_p99_us = us(&f3, 0.99);
            r.propagation_acks_leader_p50_us = us(&pr.latency, 0.5);
            out.progress(&format!(
                "      p50 {:.0} us, p99 {:.0} us (node 2 p99 {:.0}, node 3 p99 {:.0})",
                r.propagation_p50_us,
                r.propagation_p99_us,
                r.propagation_f2_p99_us,
                r.propagation_f3_p99_us
            ));
        }
        c.stop().await;
    }

    // 2 and 3 again over mutual TLS, on a fresh cluster set up the same
    // way (subscribers on both followers).
    if (want(2) || want(3)) && !args.no_tls {
        out.progress(&format!(
            "[2+3 TLS] latency ({} sequential) and throughput ({} from {p} proposers), acks=all, mutual TLS between the nodes",
            counts.latency_writes, counts.throughput_writes
        ));
        let c = Cluster::start_tls(&parent, true).await?;
        let leader = c.node(1)?.clone();
        let mut t = TlsFigures::default();
        if want(2) {
            let lat = latency_load(out, &leader, counts).await?;
            t.acks_all_p50_us = us(&lat.latency, 0.5);
            t.acks_all_p99_us = us(&lat.latency, 0.99);
        }
        if want(3) {
            let thr = throughput_load(out, &leader, counts).await?;
            t.throughput_eps = thr.eps();
            t.throughput_p50_us = us(&thr.latency, 0.5);
            t.throughput_p99_us = us(&thr.latency, 0.99);
        }
        out.progress(&format!(
            "      acks=all p50 {:.0} us, p99 {:.0} us; {:.0} entries/s, p50 {:.0} us, p99 {:.0} us",
            t.acks_all_p50_us, t.acks_all_p99_us, t.throughput_eps, t.throughput_p50_us, t.throughput_p99_us
        ));
        r.tls = Some(t);
        c.stop().await;
    }

    // 5: isolation.
    if want(5) {
        out.progress(&format!(
        "[5/8] isolation: {} acks=leader writes from {p} proposers, node 3 behind a proxy: pass, then {} ms delay",
        counts.isolation_writes,
        SLOW_DELAY.as_millis()
    ));
        let c = Cluster::start(&parent, true, true).await?;
        let leader = c.node(1)?.clone();
        let base = load(
            out,
            &leader,
            counts.isolation_writes,
            p,
            Acks::Leader,
            true,
            LoadCtl::default(),
        )
        .await?;
        let base_prop = propagation(&c, 2, &base.sent).await?;
        c.notes(3)?.clear();
        r.iso_base_ack_p99_us = us(&base.latency, 0.99);
        r.iso_base_prop_p99_us = us(&base_prop, 0.99);
        r.iso_base_eps = base.eps();
        out.progress(&format!(
        "      pass: {:.0} entries/s, acks=leader p99 {:.0} us, node 2 propagation p99 {:.0} us",
        r.iso_base_eps, r.iso_base_ack_p99_us, r.iso_base_prop_p99_us
    ));
        c.proxy()?.set(Fault::Delay(SLOW_DELAY));
        // One continuous load: node 3 stays in the ISR while it has caught up
        // within replica_lag_time_max, holding the commit back; it is measured
        // separately ("transient"). The figures for the ratios are the writes
        // sent after node 3 left the ISR, `isolation_writes` of them, with no
        // pause in between (a pause lets node 3 catch up and rejoin).
        let ctl = LoadCtl::default();
        let shrink_limit = defaults.replica_lag_time_max + Duration::from_secs(10);
        let delayed_at = Instant::now();
        let target = counts.isolation_writes;
        let watcher = {
            let (leader, ctl) = (leader.clone(), ctl.clone());
            tokio::task::spawn_local(async move {
                let hard_limit = shrink_limit + Duration::from_secs(120);
                let mut left: Option<(Instant, u64)> = None;
                let (mut back_in, mut polls) = (0u64, 0u64);
                while delayed_at.elapsed() < hard_limit {
                    let in_isr = follower3_in_isr(&leader).await;
                    match left {
                        None => {
                            if let Ok(false) = in_isr {
                                left = Some((Instant::now(), ctl.done.load(Ordering::Relaxed)));
                            } else if delayed_at.elapsed() > shrink_limit {
                                break;
                            }
                        }
                        Some((_, done_then)) => {
                            polls += 1;
                            if let Ok(true) = in_isr {
                                back_in += 1;
                            }
                            if ctl.done.load(Ordering::Relaxed) >= done_then + target {
                                break;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                ctl.stop.store(true, Ordering::Relaxed);
                (left.map(|(t, _)| t), back_in, polls)
            })
        };
        let run_all = load(out, &leader, u64::MAX, p, Acks::Leader, true, ctl.clone()).await?;
        let (left, back_in, polls) = watcher.await.map_err(|e| format!("ISR watcher: {e}"))?;
        let left = left.ok_or_else(|| {
            format!(
            "node 3 behind a {SLOW_DELAY:?} delay did not leave the ISR within {shrink_limit:?}"
        )
        })?;
        // Once the writes pause, node 3 catches up and rejoins the ISR.
        let idle_at = Instant::now();
        r.iso_rejoin_after_idle_ms =
            match wait_for("node 3 to rejoin", Duration::from_secs(3), || async {
                follower3_in_isr(&leader).await.unwrap_or(false)
            })
            .await
            {
                Ok(()) => Some(idle_at.elapsed().as_secs_f64() * 1e3),
                Err(_) => None,
            };
        let props = prop_samples(&c, 2, &run_all.sent).await?;
        c.notes(3)?.clear();
        let (mut trans_prop, mut slow_prop, mut slow_ack) = (new_hist(), new_hist(), new_hist());
        let (mut slow_n, mut trans_n) = (0u64, 0u64);
        let (mut slow_first, mut slow_last) = (None::<Instant>, None::<Instant>);
        for (s, pr) in run_all.sent.iter().zip(props) {
            if s.at >= left {
                slow_prop.saturating_record(pr);
                slow_ack.saturating_record(s.latency);
                slow_n += 1;
                let end = s.at + Duration::from_nanos(s.latency);
                slow_first = Some(slow_first.map_or(s.at, |f| f.min(s.at)));
                slow_last = Some(slow_last.map_or(end, |l| l.max(end)));
            } else {
                trans_prop.saturating_record(pr);
                trans_n += 1;
            }
        }
        r.iso_isr_shrink_ms = left.saturating_duration_since(delayed_at).as_secs_f64() * 1e3;
        r.iso_transient_prop_p99_us = us(&trans_prop, 0.99);
        r.iso_slow_back_in_polls = back_in;
        r.iso_slow_polls = polls;
        out.progress(&format!(
        "      node 3 left the ISR {:.0} ms after the delay began ({trans_n} writes meanwhile, node 2 propagation p99 {:.0} us)",
        r.iso_isr_shrink_ms, r.iso_transient_prop_p99_us
    ));
        r.iso_slow_ack_p99_us = us(&slow_ack, 0.99);
        r.iso_slow_prop_p99_us = us(&slow_prop, 0.99);
        r.iso_slow_eps = match (slow_first, slow_last) {
            (Some(f), Some(l)) => {
                slow_n as f64 / l.saturating_duration_since(f).as_secs_f64().max(1e-9)
            }
            _ => 0.0,
        };
        r.isolation_ack_ratio = r.iso_slow_ack_p99_us / r.iso_base_ack_p99_us.max(1e-3);
        r.isolation_propagation_ratio = r.iso_slow_prop_p99_us / r.iso_base_prop_p99_us.max(1e-3);
        out.progress(&format!(
        "      delayed: {:.0} entries/s, acks=leader p99 {:.0} us, node 2 propagation p99 {:.0} us; ratios {:.2} / {:.2}",
        r.iso_slow_eps,
        r.iso_slow_ack_p99_us,
        r.iso_slow_prop_p99_us,
        r.isolation_ack_ratio,
        r.isolation_propagation_ratio
    ));
        c.stop().await;
    }

    // 7: catch-up.
    if want(7) {
        out.progress(&format!(
            "[7/8] catch-up: node 3 stopped, {} acks=leader writes, node 3 restarted",
            counts.catchup_writes
        ));
        let mut c = Cluster::start(&parent, false, false).await?;
        let leader = c.node(1)?.clone();
        c.stop_node(3).await;
        wait_isr(&leader, 2, Duration::from_secs(15)).await?;
        let from = leader
            .status()
            .await
            .map_err(|e| format!("leader status: {e}"))?
            .follower(3)
            .map_or(0, |f| f.acked_offset);
        load(
            out,
            &leader,
            counts.catchup_writes,
            p,
            Acks::Leader,
            false,
            LoadCtl::default(),
        )
        .await?;
        let to = leader
            .status()
            .await
            .map_err(|e| format!("leader status: {e}"))?
            .log_end;
        let t0 = Instant::now();
        c.start_node(3).await?;
        let started = t0.elapsed();
        // Poll the leader: when its link to node 3 is up again, and when node 3
        // is back in the ISR.
        let deadline = t0 + Duration::from_secs(120);
        let mut connected_at = None;
        loop {
            let s = leader
                .status()
                .await
                .map_err(|e| format!("leader status: {e}"))?;
            if let Some(f) = s.follower(3) {
                if f.connected && connected_at.is_none() {
                    connected_at = Some(t0.elapsed());
                }
                if f.in_isr {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err("node 3 did not rejoin the ISR within 120 s of its restart".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        r.catchup_entries = to.saturating_sub(from);
        r.catchup_secs = secs;
        r.catchup_start_ms = started.as_secs_f64() * 1e3;
        r.catchup_eps = r.catchup_entries as f64 / secs.max(1e-9);
        let connected = connected_at.unwrap_or_default().as_secs_f64();
        r.catchup_connect_ms = connected * 1e3;
        r.catchup_stream_eps = r.catchup_entries as f64 / (secs - connected).max(1e-9);
        out.progress(&format!(
        "      {} entries in {:.3} s (node start {:.1} ms, leader reconnected at {:.1} ms): {:.0} entries/s; {:.0} entries/s from the reconnect",
        r.catchup_entries, secs, r.catchup_start_ms, r.catchup_connect_ms, r.catchup_eps, r.catchup_stream_eps
    ));
        c.stop().await;
    }

    // 8: failover.
    if want(8) {
        let kills = counts.failover_kills;
        // Informative only, and each costs a restart: a few.
        let resigns = kills.min(FAILOVER_RESIGNS);
        let fast = ReplicationConfig {
            election_timeout: FAST_ELECTION_TIMEOUT,
            heartbeat_interval: FAST_HEARTBEAT,
            ..ReplicationConfig::default()
        };
        fast.validate()
            .map_err(|e| format!("the fast failover config: {e}"))?;
        out.progress(&format!(
            "[8/8] failover: {kills} leader crashes and {resigns} clean shutdowns with T = {:?} (heartbeat {:?}), {kills} crashes with T = {:?} (heartbeat {:?})",
            defaults.election_timeout,
            defaults.heartbeat_interval,
            fast.election_timeout,
            fast.heartbeat_interval
        ));
        let written = |v: &[FailoverSample]| v.iter().map(|s| ms(s.written)).collect::<Vec<_>>();
        let elected = |v: &[FailoverSample]| v.iter().map(|s| ms(s.elected)).collect::<Vec<_>>();
        let slow = failover_phase(
            out,
            &parent,
            defaults.clone(),
            &[(Kill::Crash, kills), (Kill::Resign, resigns)],
        )
        .await?;
        if let [crash, resign] = slow.as_slice() {
            r.failover_ms = written(crash);
            r.failover_election_ms = elected(crash);
            r.resign_failover_ms = written(resign);
            r.resign_election_ms = elected(resign);
        }
        let fast = failover_phase(out, &parent, fast, &[(Kill::Crash, kills)]).await?;
        if let [crash] = fast.as_slice() {
            r.failover_150_ms = written(crash);
            r.failover_150_election_ms = elected(crash);
        }
        let line = |name: &str, v: &[f64], e: &[f64]| {
            let (m, lo, hi) = spread(v);
            let (em, _, _) = spread(e);
            format!("      {name}: first acks=all write median {m:.0} ms ({lo:.0}-{hi:.0}), new leader median {em:.0} ms")
        };
        out.progress(&line(
            "crash, T = 1 s",
            &r.failover_ms,
            &r.failover_election_ms,
        ));
        out.progress(&line(
            "crash, T = 150 ms",
            &r.failover_150_ms,
            &r.failover_150_election_ms,
        ));
        out.progress(&line(
            "clean shutdown, T = 1 s",
            &r.resign_failover_ms,
            &r.resign_election_ms,
        ));
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn print_table(out: Out, r: &Results, quick: bool) {
    let mib = |b: u64| b as f64 / 1048576.0;
    let floor_sum = r.floor_fsync_p50_us + r.floor_rtt_p50_us;
    out.table("");
    out.table(&format!(
        "metawal cluster benchmark{}",
        if quick {
            " (--quick: counts / 10, numbers not judged)"
        } else {
            ""
        }
    ));
    out.table(&format!(
        "{:<44} {:>14}  {:<28} {}",
        "figure", "value", "target", ""
    ));
    out.table(&"-".repeat(98));
    let row = |name: &str, value: String, target: String, ok: Option<bool>| {
        out.table(&format!(
            "{:<44} {:>14}  {:<28} {}",
            name,
            value,
            target,
            ok.map_or("", verdict)
        ));
    };
    row(
        "floor fdatasync 100 B p50 / p99 (us)",
        format!("{:.0} / {:.0}", r.floor_fsync_p50_us, r.floor_fsync_p99_us),
        String::new(),
        None,
    );
    row(
        "floor loopback RTT 100 B p50 / p99 (us)",
        format!("{:.0} / {:.0}", r.floor_rtt_p50_us, r.floor_rtt_p99_us),
        String::new(),
        None,
    );
    row(
        "acks=all sequential p50 (us)",
        format!("{:.0}", r.acks_all_p50_us),
        format!("<= 1.5 x floor = {:.0}", 1.5 * floor_sum),
        Some(r.acks_all_p50_us <= 1.5 * floor_sum),
    );
    row(
        "acks=all sequential p99 (us)",
        format!("{:.0}", r.acks_all_p99_us),
        "<= 1000".into(),
        Some(r.acks_all_p99_us <= 1000.0),
    );
    row(
        "acks=all sequential p999 / max (us)",
        format!("{:.0} / {:.0}", r.acks_all_p999_us, r.acks_all_max_us),
        String::new(),
        None,
    );
    row(
        "  ratio p50 / (fsync p50 + RTT p50)",
        format!("{:.2}", r.acks_all_p50_us / floor_sum.max(1e-3)),
        String::new(),
        None,
    );
    row(
        "throughput, 64 proposers acks=all (1/s)",
        format!("{:.0}", r.throughput_eps),
        ">= 50000".into(),
        Some(r.throughput_eps >= 50_000.0),
    );
    row(
        "  latency p50 / p99 (us)",
        format!("{:.0} / {:.0}", r.throughput_p50_us, r.throughput_p99_us),
        String::new(),
        None,
    );
    row(
        "  propagation p99 under this load (us)",
        format!("{:.0}", r.throughput_propagation_p99_us),
        String::new(),
        None,
    );
    if let Some(t) = r.tls {
        let cost = |tls: f64, plain: f64| {
            if plain > 0.0 {
                format!("{:+.1} %", (tls / plain - 1.0) * 100.0)
            } else {
                String::new()
            }
        };
        row(
            "TLS acks=all sequential p50 / p99 (us)",
            format!("{:.0} / {:.0}", t.acks_all_p50_us, t.acks_all_p99_us),
            format!(
                "p50 <= +10 %: {}",
                cost(t.acks_all_p50_us, r.acks_all_p50_us)
            ),
            Some(t.acks_all_p50_us <= 1.1 * r.acks_all_p50_us),
        );
        row(
            "TLS throughput, 64 proposers acks=all (1/s)",
            format!("{:.0}", t.throughput_eps),
            format!(">= -10 %: {}", cost(t.throughput_eps, r.throughput_eps)),
            Some(t.throughput_eps >= 0.9 * r.throughput_eps),
        );
        row(
            "  TLS latency p50 / p99 (us)",
            format!("{:.0} / {:.0}", t.throughput_p50_us, t.throughput_p99_us),
            String::new(),
            None,
        );
    }
    if let Some(h) = r.http {
        row(
            "HTTP acks=all sequential p50 / p99 (us)",
            format!("{:.0} / {:.0}", h.acks_all_p50_us, h.acks_all_p99_us),
            String::new(),
            None,
        );
        row(
            "HTTP throughput, 64 clients acks=all (1/s)",
            format!("{:.0}", h.throughput_eps),
            String::new(),
            None,
        );
        row(
            "  HTTP latency p50 / p99 (us)",
            format!("{:.0} / {:.0}", h.throughput_p50_us, h.throughput_p99_us),
            String::new(),
            None,
        );
    }
    row(
        "propagation p50 (us)",
        format!("{:.0}", r.propagation_p50_us),
        String::new(),
        None,
    );
    row(
        "propagation p99 (us)",
        format!("{:.0}", r.propagation_p99_us),
        "<= 1000".into(),
        Some(r.propagation_p99_us <= 1000.0),
    );
    row(
        "  node 2 / node 3 p99, max (us)",
        format!(
            "{:.0} / {:.0}, {:.0}",
            r.propagation_f2_p99_us, r.propagation_f3_p99_us, r.propagation_max_us
        ),
        String::new(),
        None,
    );
    row(
        "  ratio p50 / (fsync p50 + RTT p50)",
        format!("{:.2}", r.propagation_p50_us / floor_sum.max(1e-3)),
        String::new(),
        None,
    );
    row(
        "  (during the acks=all latency run, p99 us)",
        format!("{:.0}", r.latency_propagation_p99_us),
        String::new(),
        None,
    );
    row(
        "isolation: acks=leader p99 pass -> slow (us)",
        format!(
            "{:.0} -> {:.0}",
            r.iso_base_ack_p99_us, r.iso_slow_ack_p99_us
        ),
        String::new(),
        None,
    );
    row(
        "isolation_ack_ratio",
        format!("{:.2}", r.isolation_ack_ratio),
        "<= 1.2".into(),
        Some(r.isolation_ack_ratio <= 1.2),
    );
    row(
        "isolation: node 2 prop. p99 pass -> slow (us)",
        format!(
            "{:.0} -> {:.0}",
            r.iso_base_prop_p99_us, r.iso_slow_prop_p99_us
        ),
        String::new(),
        None,
    );
    row(
        "isolation_propagation_ratio",
        format!("{:.2}", r.isolation_propagation_ratio),
        "<= 1.2".into(),
        Some(r.isolation_propagation_ratio <= 1.2),
    );
    row(
        "  entries/s pass -> slow",
        format!("{:.0} -> {:.0}", r.iso_base_eps, r.iso_slow_eps),
        String::new(),
        None,
    );
    row(
        "  node 3 left the ISR after (ms)",
        format!("{:.0}", r.iso_isr_shrink_ms),
        String::new(),
        None,
    );
    row(
        "  node 2 prop. p99 until then (us)",
        format!("{:.0}", r.iso_transient_prop_p99_us),
        String::new(),
        None,
    );
    row(
        "  node 3 seen in ISR while measured",
        format!("{}/{} polls", r.iso_slow_back_in_polls, r.iso_slow_polls),
        String::new(),
        None,
    );
    row(
        "  node 3 back in the ISR after idle (ms)",
        r.iso_rejoin_after_idle_ms
            .map_or("no (3 s)".to_string(), |m| format!("{m:.0}")),
        String::new(),
        None,
    );
    let window = r.stalled_window_bytes;
    row(
        "stalled: process RSS growth (MiB)",
        format!("{:.1}", mib(r.stalled_rss_growth_bytes)),
        format!("<= window + 16 = {:.0}", mib(window) + 16.0),
        Some(r.stalled_rss_growth_bytes <= window + 16 * 1048576),
    );
    row(
        "  RSS at start / growth at end (MiB)",
        format!(
            "{:.1} / {:.1}",
            mib(r.stalled_rss_base_bytes),
            mib(r.stalled_rss_growth_end_bytes)
        ),
        String::new(),
        None,
    );
    row(
        "stalled: in flight to node 3 (MiB)",
        format!("{:.2}", mib(r.stalled_inflight_bytes)),
        format!("<= window = {:.0}", mib(window)),
        Some(r.stalled_inflight_bytes <= window),
    );
    row(
        "  entries/s while stalled",
        format!("{:.0}", r.stalled_eps),
        String::new(),
        None,
    );
    row(
        "catch-up (entries/s)",
        format!("{:.0}", r.catchup_eps),
        ">= 200000".into(),
        Some(r.catchup_eps >= 200_000.0),
    );
    row(
        "  leader link up again after (ms)",
        format!("{:.1}", r.catchup_connect_ms),
        String::new(),
        None,
    );
    row(
        "  entries/s from that reconnect",
        format!("{:.0}", r.catchup_stream_eps),
        String::new(),
        None,
    );
    row(
        "  entries / seconds / node start (ms)",
        format!(
            "{} / {:.2} / {:.0}",
            r.catchup_entries, r.catchup_secs, r.catchup_start_ms
        ),
        String::new(),
        None,
    );
    let failover_row = |name: &str, v: &[f64], e: &[f64]| {
        let (m, lo, hi) = spread(v);
        row(name, format!("{m:.0}"), String::new(), None);
        row(
            "  min / max (ms)",
            format!("{lo:.0} / {hi:.0}"),
            String::new(),
            None,
        );
        row(
            "  new leader known after, median (ms)",
            format!("{:.0}", spread(e).0),
            String::new(),
            None,
        );
    };
    failover_row(
        "failover, crash, T = 1 s: median (ms)",
        &r.failover_ms,
        &r.failover_election_ms,
    );
    failover_row(
        "failover, crash, T = 150 ms: median (ms)",
        &r.failover_150_ms,
        &r.failover_150_election_ms,
    );
    failover_row(
        "failover, resign, T = 1 s: median (ms)",
        &r.resign_failover_ms,
        &r.resign_election_ms,
    );
}

fn json(r: &Results, quick: bool) -> serde_json::Value {
    let fo = spread(&r.failover_ms);
    let fast = spread(&r.failover_150_ms);
    serde_json::json!({
        "floor_fsync_p50_us": r1(r.floor_fsync_p50_us),
        "floor_fsync_p99_us": r1(r.floor_fsync_p99_us),
        "floor_rtt_p50_us": r1(r.floor_rtt_p50_us),
        "acks_all_p50_us": r1(r.acks_all_p50_us),
        "acks_all_p99_us": r1(r.acks_all_p99_us),
        "acks_all_p999_us": r1(r.acks_all_p999_us),
        "throughput_eps": r.throughput_eps.round(),
        "throughput_p99_us": r1(r.throughput_p99_us),
        "propagation_p50_us": r1(r.propagation_p50_us),
        "propagation_p99_us": r1(r.propagation_p99_us),
        "isolation_ack_ratio": (r.isolation_ack_ratio * 100.0).round() / 100.0,
        "isolation_propagation_ratio": (r.isolation_propagation_ratio * 100.0).round() / 100.0,
        "stalled_rss_growth_bytes": r.stalled_rss_growth_bytes,
        "stalled_inflight_bytes": r.stalled_inflight_bytes,
        "catchup_eps": r.catchup_eps.round(),
        // Extra context (not targets).
        "quick": quick,
        "floor_rtt_p99_us": r1(r.floor_rtt_p99_us),
        "throughput_p50_us": r1(r.throughput_p50_us),
        "isolation_isr_shrink_ms": r1(r.iso_isr_shrink_ms),
        "isolation_transient_propagation_p99_us": r1(r.iso_transient_prop_p99_us),
        "stalled_window_bytes": r.stalled_window_bytes,
        "catchup_connect_ms": r1(r.catchup_connect_ms),
        "catchup_stream_eps": r.catchup_stream_eps.round(),
        // Failover (issue 8): ms from killing the leader to the first
        // acks=all write on the new leader, median over the kills.
        "failover_ms": r1(fo.0),
        "failover_min_ms": r1(fo.1),
        "failover_max_ms": r1(fo.2),
        "failover_samples_ms": r.failover_ms.iter().map(|&x| r1(x)).collect::<Vec<_>>(),
        "failover_election_ms": r1(spread(&r.failover_election_ms).0),
        "failover_150ms_ms": r1(fast.0),
        "failover_150ms_min_ms": r1(fast.1),
        "failover_150ms_max_ms": r1(fast.2),
        "failover_150ms_samples_ms": r.failover_150_ms.iter().map(|&x| r1(x)).collect::<Vec<_>>(),
        "failover_150ms_election_ms": r1(spread(&r.failover_150_election_ms).0),
        "resign_failover_ms": r1(spread(&r.resign_failover_ms).0),
        "resign_failover_samples_ms": r.resign_failover_ms.iter().map(|&x| r1(x)).collect::<Vec<_>>(),
        // --http (issue 9): the same through HTTP clients and processes.
        "http_acks_all_p50_us": r.http.map(|h| r1(h.acks_all_p50_us)),
        "http_acks_all_p99_us": r.http.map(|h| r1(h.acks_all_p99_us)),
        "http_throughput_eps": r.http.map(|h| h.throughput_eps.round()),
        "http_throughput_p50_us": r.http.map(|h| r1(h.throughput_p50_us)),
        "http_throughput_p99_us": r.http.map(|h| r1(h.throughput_p99_us)),
        // Issue 10: phases 2 and 3 again with mutual TLS between the nodes.
        "tls_acks_all_p50_us": r.tls.map(|t| r1(t.acks_all_p50_us)),
        "tls_acks_all_p99_us": r.tls.map(|t| r1(t.acks_all_p99_us)),
        "tls_throughput_eps": r.tls.map(|t| t.throughput_eps.round()),
        "tls_throughput_p50_us": r.tls.map(|t| r1(t.throughput_p50_us)),
        "tls_throughput_p99_us": r.tls.map(|t| r1(t.throughput_p99_us)),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let out = Out { json: args.json };
    let quick = args.quick;
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    if let Err(e) = std::fs::create_dir_all(&parent) {
        eprintln!("error: create {}: {e}", parent.display());
        return ExitCode::FAILURE;
    }
    let counts = Counts::new(quick);
    let mut r = Results::default();

    out.progress(&format!(
        "metawal bench{} (data under {})",
        if quick { " --quick" } else { "" },
        parent.display()
    ));
    out.progress(&format!(
        "[1/8] floor: {} x fdatasync of a 100 B append, {} x 100 B loopback ping-pong",
        counts.fsync_samples, counts.rtt_samples
    ));
    let fl = match tempfile::Builder::new()
        .prefix("metawal-bench-floor-")
        .tempdir_in(&parent)
        .map_err(|e| format!("temp dir in {}: {e}", parent.display()))
        .and_then(|d| floor(d.path(), counts))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    r.floor_fsync_p50_us = us(&fl.fsync, 0.5);
    r.floor_fsync_p99_us = us(&fl.fsync, 0.99);
    r.floor_rtt_p50_us = us(&fl.rtt, 0.5);
    r.floor_rtt_p99_us = us(&fl.rtt, 0.99);
    out.progress(&format!(
        "      fdatasync p50 {:.0} us p99 {:.0} us; RTT p50 {:.0} us p99 {:.0} us",
        r.floor_fsync_p50_us, r.floor_fsync_p99_us, r.floor_rtt_p50_us, r.floor_rtt_p99_us
    ));

    let http = args.http;
    let system = actix::System::new();
    let result = system.block_on(async {
        let local = tokio::task::LocalSet::new();
        local.run_until(run(args, out, parent, &mut r)).await
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if http {
        let progress = |line: &str| out.progress(line);
        match http_load::run(
            counts.latency_writes,
            counts.throughput_writes,
            counts.proposers,
            &progress,
        ) {
            Ok(f) => r.http = Some(f),
            Err(e) => {
                eprintln!("error: --http: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(out, &r, quick);
    if out.json {
        println!("{}", json(&r, quick));
    }
    ExitCode::SUCCESS
}
