//! Phase 7, second part: a learner's catch-up. A new, empty node joins the
//! catch-up phase's cluster (whose log then holds every write of that
//! phase), is added as a learner and promoted as soon as it is caught up,
//! while one proposer goes on writing `acks=all`: how long the promotion
//! takes, and what the learner's catch-up costs the writes.

use std::time::{Duration, Instant};

use metawal::membership::Member;
use metawal_actors::{Acks, Node, NodeConfig};
use metawal_testkit::{reserve, start_node, TestCluster};

use crate::cli::Out;
use crate::cluster;
use crate::report::Results;
use crate::stats::{new_hist, ns, us};

/// Most writes the proposer makes while the learner catches up.
const MAX_WRITES: u64 = 1_000_000;
/// Longest the promotion may wait for the learner.
const PROMOTE_WAIT: Duration = Duration::from_secs(120);

/// The config of node 4, joining `c`.
fn joiner(c: &TestCluster, port: &metawal_testkit::ReservedPort) -> Result<NodeConfig, String> {
    let mut cfg = NodeConfig::new(
        4,
        cluster::CLUSTER_ID,
        cluster::SECRET.to_vec(),
        c.dir.path().join("node-4"),
        port.addr(),
    );
    cfg.listener = Some(port.bound()?);
    cfg.peers = c.addrs.clone();
    cfg.join = true;
    cfg.insecure_plaintext = true;
    Ok(cfg)
}

/// `acks=all` writes one at a time until `done` resolves; their latencies.
async fn write_until(
    leader: &Node,
    done: &std::cell::Cell<bool>,
) -> Result<crate::stats::Hist, String> {
    let mut h = new_hist();
    for seq in 0..MAX_WRITES {
        if done.get() {
            break;
        }
        let t = Instant::now();
        leader
            .propose(cluster::set_leader(seq), Acks::All)
            .await
            .map_err(|e| format!("write while the learner catches up: {e}"))?;
        let _ = h.record(ns(t.elapsed()).max(1));
    }
    Ok(h)
}

/// The measurement on `c` (node 1 leads).
pub async fn measure(out: Out, c: &TestCluster, r: &mut Results) -> Result<(), String> {
    let leader = c.try_node(1)?.clone();
    let entries = leader
        .status()
        .await
        .map_err(|e| format!("leader status: {e}"))?
        .log_end;
    let port = reserve();
    let (node4, arbiter) = start_node(joiner(c, &port)?).await?;
    let member = Member {
        node_id: 4,
        directory_id: node4.directory_id(),
        replication_addr: port.addr().to_string(),
        http_addr: String::new(),
        kafka_addr: String::new(),
    };
    let done = std::cell::Cell::new(false);
    let t0 = Instant::now();
    let change = async {
        let result = async {
            leader
                .add_learner(member)
                .await
                .map_err(|e| format!("add learner 4: {e}"))?;
            leader
                .promote(4, PROMOTE_WAIT)
                .await
                .map_err(|e| format!("promote 4: {e}"))
        }
        .await;
        done.set(true);
        result.map(|_| t0.elapsed())
    };
    let (promoted, writes) = tokio::join!(change, write_until(&leader, &done));
    node4.shutdown().await;
    arbiter.stop();
    let promoted = promoted?;
    let writes = writes?;
    r.learner_entries = entries;
    r.learner_promote_ms = promoted.as_secs_f64() * 1e3;
    r.learner_write_p50_us = us(&writes, 0.5);
    r.learner_write_p99_us = us(&writes, 0.99);
    r.learner_writes = writes.len();
    out.progress(&format!(
        "      learner: {} entries of state, added and promoted in {:.0} ms; {} acks=all writes meanwhile, p50 {:.0} µs, p99 {:.0} µs",
        entries, r.learner_promote_ms, r.learner_writes, r.learner_write_p50_us, r.learner_write_p99_us
    ));
    Ok(())
}
