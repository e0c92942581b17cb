//! Three metawal nodes in one process, each on its own actix Arbiter,
//! replicating over loopback TCP; they elect their metadata leader.
//!
//! The story: the election; create topic `orders`, assign its partitions,
//! set leaders and ISRs (each an `acks=all` write, with its latency and what
//! every follower's view shows); a burst of 10 000 `acks=all` writes from 64
//! proposers; a follower stopped while writes go on, then restarted to
//! catch up and rejoin the ISR; the leader killed (a crash: no resignation),
//! a new one elected, writes going on, the old leader back as a follower. It
//! ends by comparing all three nodes' state digests.
//!
//! ```text
//! cargo run --release --example three_node_cluster [-- --data-dir DIR]
//! ```

use metawal_testkit::support::wait_for;
use metawal_testkit::{Subscribers, TestCluster};

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use metawal_actors::{Acks, Applied, Command, Node, NodeId};

/// Changes each node's subscriber keeps (the demo only looks up recent
/// ones).
const ARRIVALS_KEEP: usize = 1024;

#[derive(Parser)]
#[command(about = "Three metawal nodes replicating cluster metadata on loopback")]
struct Args {
    /// Keep the nodes' data here instead of a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Writes in the burst.
    #[arg(long, default_value_t = 10_000)]
    writes: u64,
    /// Concurrent proposers in the burst.
    #[arg(long, default_value_t = 64)]
    proposers: u64,
    /// Run the nodes' connections without TLS (by default a throwaway CA
    /// made at start issues each node a certificate: mutual TLS).
    #[arg(long)]
    insecure_plaintext: bool,
}

/// The demo's cluster id (certificates name nodes `node-<id>.<cluster-id>`).
const CLUSTER_ID: &str = "example-cluster";
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 6;
/// The topic created with its assignments in one atomic batch.
const BATCH_TOPIC: &str = "payments";
/// `show` value of the batch step (partitions are never negative).
const BATCH_SHOWN: i32 = -1;

/// The demo's cluster: the kit's in-process [`TestCluster`] (each node on
/// its own Arbiter, on a reserved loopback port, with a subscriber), and
/// the node that leads now.
struct Demo {
    c: TestCluster,
    /// The node that leads now.
    leader: NodeId,
}

impl Demo {
    fn node(&self, id: NodeId) -> Result<&Node, String> {
        self.c.try_node(id)
    }

    /// When node `id`'s subscriber saw the entry at `offset`.
    fn arrival(&self, id: NodeId, offset: u64) -> Option<Instant> {
        let rec = self.c.try_recording(id).ok()?;
        rec.arrival(offset)
    }

    /// Wait until one running node leads and every running node knows it;
    /// remember it. Returns it and its epoch.
    async fn wait_leader(&mut self, limit: Duration) -> Result<(NodeId, u64), String> {
        let (id, epoch) = self.c.try_wait_leader(limit).await?;
        self.leader = id;
        Ok((id, epoch))
    }

    fn followers(&self) -> Vec<NodeId> {
        (1..=3).filter(|&id| id != self.leader).collect()
    }

    async fn wait_isr(&self, n: usize, limit: Duration) -> Result<(), String> {
        self.c.try_wait_isr_of(self.leader, n, limit).await
    }
}

fn describe(node: &Node, partition: i32) -> String {
    match node.view().partition(TOPIC, partition) {
        Some(p) => format!(
            "replicas {:?} leader {} isr {:?}",
            p.replicas,
            p.leader.map_or("-".into(), |l| l.to_string()),
            p.isr
        ),
        None => "absent".into(),
    }
}

/// What follower `n`'s view shows of the step (`show`: a partition of
/// `orders`, the batch's topic, or the topic itself).
fn follower_view(n: &Node, show: Option<i32>) -> String {
    match show {
        Some(BATCH_SHOWN) => n.view().topic(BATCH_TOPIC).map_or("absent".into(), |t| {
            let assigned = t.partitions.iter().filter(|p| p.is_assigned()).count();
            let led = t.partitions.iter().filter(|p| p.leader.is_some()).count();
            format!(
                "{BATCH_TOPIC}: {} partitions, {assigned} assigned, {led} with a leader",
                t.partitions.len()
            )
        }),
        Some(part) => describe(n, part),
        None => n.view().topic(TOPIC).map_or("absent".into(), |t| {
            format!("{} partitions", t.partitions.len())
        }),
    }
}

async fn step(
    cluster: &Demo,
    label: &str,
    command: Command,
    show: Option<i32>,
) -> Result<u64, String> {
    let leader = cluster.node(cluster.leader)?;
    let started = Instant::now();
    // A batch goes through `propose_batch`: one entry, all or none.
    let p = match command {
        Command::Batch { commands } => leader.propose_batch(commands, Acks::All).await,
        command => leader.propose(command, Acks::All).await,
    }
    .map_err(|e| format!("{label}: {e}"))?;
    let latency = started.elapsed();
    // Every follower's view shows the change once the commit reaches it; the
    // time is when its subscriber was notified, from the proposal's start.
    let mut views = Vec::new();
    for id in cluster.followers() {
        let n = cluster.node(id)?;
        wait_for(
            &format!("node {id} to apply offset {}", p.offset),
            Duration::from_secs(10),
            || async { cluster.arrival(id, p.offset).is_some() },
        )
        .await?;
        let seen = cluster
            .arrival(id, p.offset)
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
        views.push(format!(
            "node {id} +{:.2} ms: {}",
            seen.as_secs_f64() * 1e3,
            follower_view(n, show)
        ));
    }
    println!(
        "  {label:<34} offset {:>3}  acks=all {:>6.2} ms | {}",
        p.offset,
        latency.as_secs_f64() * 1e3,
        views.join(" | ")
    );
    Ok(p.offset)
}

async fn burst(cluster: &Demo, writes: u64, proposers: u64) -> Result<(), String> {
    let leader = cluster.node(cluster.leader)?.clone();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..proposers {
        let (leader, next, done) = (leader.clone(), next.clone(), done.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    return Ok::<_, String>(hist);
                }
                let partition = (i % PARTITIONS as u64) as i32;
                let leader_id = 1 + (i / PARTITIONS as u64) % 3;
                let t = Instant::now();
                leader
                    .propose(
                        Command::SetPartitionLeader {
                            topic: TOPIC.into(),
                            partition,
                            leader: leader_id,
                        },
                        Acks::All,
                    )
                    .await
                    .map_err(|e| format!("burst write {i}: {e}"))?;
                let _ = hist.record(t.elapsed().as_micros() as u64);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let done = done.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let d = done.load(Ordering::Relaxed);
                println!("  ... {d}/{writes} acknowledged");
                if d >= writes {
                    break;
                }
            }
        })
    };
    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for t in tasks {
        let h = t.await.map_err(|e| e.to_string())??;
        hist.add(h).map_err(|e| e.to_string())?;
    }
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  {writes} acks=all writes from {proposers} proposers in {:.2} s: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms",
        secs,
        writes as f64 / secs,
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3
    );
    Ok(())
}

/// Start the three nodes (mutual TLS unless `--insecure-plaintext`), wait
/// for the election and the full ISR, printing each step.
async fn start(args: &Args) -> Result<Demo, String> {
    let spec = TestCluster::builder(3)
        .cluster_id(CLUSTER_ID, b"example-secret")
        .tls_if(!args.insecure_plaintext, "demo")
        .subscribe(Subscribers {
            nodes: vec![1, 2, 3],
            keep: ARRIVALS_KEEP,
            mailbox: 64 * 1024,
        });
    let spec = match &args.data_dir {
        Some(d) => spec.keep_dir(d),
        None => spec,
    };
    let mut cluster = Demo {
        c: spec.prepare().await?,
        leader: 0,
    };
    let c = &mut cluster.c;
    println!(
        "metawal three-node cluster (data in {})",
        c.dir.path().display()
    );
    match &c.tls {
        Some(ca) => println!(
            "  transport: mutual TLS 1.3 (rustls); a throwaway CA made now ({}) issued each \
             node a certificate for node-<id>.{CLUSTER_ID}",
            ca.ca_path().display()
        ),
        None => println!("  transport: plaintext TCP (--insecure-plaintext): anyone on the path can read and inject frames"),
    }
    let started = Instant::now();
    for id in [1, 2, 3] {
        c.try_start_node(id).await?;
        println!("  node {id} listening on {}", c.addrs[&id]);
    }
    let (leader_id, epoch) = cluster.wait_leader(Duration::from_secs(20)).await?;
    println!(
        "  node {leader_id} elected leader of epoch {epoch} after {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    cluster.wait_isr(3, Duration::from_secs(10)).await?;
    println!("  ISR is {{1, 2, 3}}\n");
    Ok(cluster)
}

/// Partition `p`'s replicas and the three writes that assign it, give it
/// a leader and an ISR, named by their kind.
fn partition_commands(topic: &str, p: i32) -> [(&'static str, Command); 3] {
    let r = |k: i32| ((p + k) % 3 + 1) as u64;
    let replicas = vec![r(0), r(1), r(2)];
    [
        (
            "AssignPartition",
            Command::AssignPartition {
                topic: topic.into(),
                partition: p,
                replicas: replicas.clone(),
            },
        ),
        (
            "SetPartitionLeader",
            Command::SetPartitionLeader {
                topic: topic.into(),
                partition: p,
                leader: replicas[0],
            },
        ),
        (
            "UpdateIsr",
            Command::UpdateIsr {
                topic: topic.into(),
                partition: p,
                isr: replicas,
            },
        ),
    ]
}

/// A `CreateTopic` of `name` with the demo's partitions, RF 3.
fn create_topic(name: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        partition_count: PARTITIONS as u32,
        replication_factor: 3,
    }
}

/// Step 1: `orders` created, then each partition assigned, given a leader
/// and an ISR, one write at a time; then `payments` the same in one batch.
async fn seed_story(cluster: &Demo) -> Result<(), String> {
    println!("1. the seed's story, every write acks=all:");
    let label = "CreateTopic orders (6 x RF3)";
    step(cluster, label, create_topic(TOPIC), None).await?;
    for p in 0..PARTITIONS {
        for (kind, command) in partition_commands(TOPIC, p) {
            step(cluster, &format!("{kind} orders-{p}"), command, Some(p)).await?;
        }
    }
    // The same, for a second topic, in one entry: the topic, every
    // partition's replicas, leader and ISR, applied all or none.
    let mut batch = vec![create_topic(BATCH_TOPIC)];
    for p in 0..PARTITIONS {
        batch.extend(partition_commands(BATCH_TOPIC, p).map(|(_, c)| c));
    }
    let label = format!("Batch of {} (payments, assigned)", batch.len());
    let command = Command::Batch { commands: batch };
    step(cluster, &label, command, Some(BATCH_SHOWN)).await?;
    Ok(())
}

/// Steps 3 and 4: a follower stops while writes go on, then restarts,
/// catches up from its own WAL and rejoins the ISR.
async fn follower_down_and_back(cluster: &mut Demo) -> Result<(), String> {
    let leader = cluster.node(cluster.leader)?.clone();
    let follower = cluster.followers()[1];
    println!("\n3. node {follower} (a follower) stops; writes go on:");
    cluster.c.stop_node(follower).await;
    let stopped_at = Instant::now();
    cluster.wait_isr(2, Duration::from_secs(10)).await?;
    println!(
        "  node {follower} left the ISR after {:.1} ms",
        stopped_at.elapsed().as_secs_f64() * 1e3
    );
    let last = writes(&leader, 500, "with a follower down").await?;
    println!("  500 more acks=all writes succeeded with an ISR of 2 (log end {last})");

    println!("\n4. node {follower} restarts:");
    let restarted = Instant::now();
    cluster.c.try_start_node(follower).await?;
    cluster.wait_isr(3, Duration::from_secs(20)).await?;
    let status = leader.status().await.map_err(|e| e.to_string())?;
    if let Some(f) = status.follower(follower) {
        println!(
            "  node {follower} caught up from its own WAL and rejoined the ISR in {:.1} ms (acked {}, reconnects {})",
            restarted.elapsed().as_secs_f64() * 1e3,
            f.acked_offset,
            f.reconnects
        );
    }
    Ok(())
}

/// The first `acks=all` write on the new leader `new` after the kill at
/// `killed` (it needs one follower: the ISR of two that
/// min_insync_replicas = 2 asks for); the time since the kill.
async fn first_write(leader: &Node, new: NodeId, killed: Instant) -> Result<Duration, String> {
    let command = Command::SetPartitionLeader {
        topic: TOPIC.into(),
        partition: 0,
        leader: new,
    };
    loop {
        match leader.propose(command.clone(), Acks::All).await {
            Ok(_) => return Ok(killed.elapsed()),
            Err(e) if killed.elapsed() < Duration::from_secs(20) => {
                tracing::debug!(error = %e, "first write after failover refused; retrying");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(format!("no acks=all write after failover: {e}")),
        }
    }
}

/// Step 5: the leader crashes, a new one is elected and takes writes, the
/// old one comes back as a follower. Returns the new leader.
async fn failover(cluster: &mut Demo) -> Result<Node, String> {
    let old = cluster.leader;
    println!("\n5. the leader, node {old}, is killed (no resignation):");
    cluster.c.crash_node(old).await;
    let killed = Instant::now();
    let (new, epoch) = cluster.wait_leader(Duration::from_secs(20)).await?;
    let elected = killed.elapsed();
    let leader = cluster.node(new)?.clone();
    let first = first_write(&leader, new, killed).await?;
    println!(
        "  node {new} elected leader of epoch {epoch} after {:.0} ms; first acks=all write after {:.0} ms",
        elected.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3
    );
    let last = writes(&leader, 500, "after failover").await?;
    println!("  500 more acks=all writes succeeded on node {new} (log end {last})");
    let restarted = Instant::now();
    cluster.c.try_start_node(old).await?;
    cluster.wait_isr(3, Duration::from_secs(20)).await?;
    let role = cluster.node(old)?.role();
    println!(
        "  node {old} came back as a {role} and rejoined the ISR in {:.1} ms",
        restarted.elapsed().as_secs_f64() * 1e3
    );
    Ok(leader)
}

/// Wait until every node applied `leader`'s commit, and check that all
/// three have the same state digest; returns it with its offset.
async fn converge(cluster: &Demo, leader: &Node) -> Result<Applied, String> {
    let target = leader.status().await.map_err(|e| e.to_string())?.commit;
    for id in 1..=3 {
        let n = cluster.node(id)?;
        wait_for(
            &format!("node {id} to apply offset {target}"),
            Duration::from_secs(20),
            || async { n.view().applied_offset() >= target },
        )
        .await?;
    }
    let mut applied = Vec::new();
    for id in 1..=3 {
        let a = cluster.node(id)?.applied().await;
        applied.push((id, a.map_err(|e| e.to_string())?));
    }
    let reference = applied[0].1;
    for (id, a) in &applied[1..] {
        if a.offset != reference.offset || a.digest != reference.digest {
            return Err(format!(
                "node {id} differs: offset {} digest {} vs node 1 offset {} digest {}",
                a.offset, a.digest, reference.offset, reference.digest
            ));
        }
    }
    Ok(reference)
}

async fn run(args: Args) -> Result<(), String> {
    let mut cluster = start(&args).await?;
    seed_story(&cluster).await?;
    println!("\n2. burst:");
    burst(&cluster, args.writes, args.proposers).await?;
    follower_down_and_back(&mut cluster).await?;
    let leader = failover(&mut cluster).await?;
    // Converge: everyone applies the leader's commit.
    let reference = converge(&cluster, &leader).await?;
    drop(leader);
    cluster.c.shutdown().await;
    println!(
        "\nconverged: 3/3 nodes at offset {}, digest {}",
        reference.offset, reference.digest
    );
    Ok(())
}

/// `n` acks=all writes on `leader`, one at a time; the last offset.
async fn writes(leader: &Node, n: u64, what: &str) -> Result<u64, String> {
    let mut last = 0;
    for i in 0..n {
        let p = leader
            .propose(
                Command::SetPartitionLeader {
                    topic: TOPIC.into(),
                    partition: (i % PARTITIONS as u64) as i32,
                    leader: 1 + i % 3,
                },
                Acks::All,
            )
            .await
            .map_err(|e| format!("write {i} {what}: {e}"))?;
        last = p.offset;
    }
    Ok(last)
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
    let system = actix::System::new();
    let result = system.block_on(async move {
        let local = tokio::task::LocalSet::new();
        local.run_until(run(args)).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
