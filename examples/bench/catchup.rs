//! Phase 7, catch-up: node 3 stopped, writes go on, node 3 restarted:
//! entries per second from its restart until the leader has it back in
//! the ISR. Then a new node joins as a learner (`learner.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use metawal_actors::{Node, NodeStatus};
use metawal_testkit::TestCluster;

use crate::cli::{Counts, Out};
use crate::cluster;
use crate::load::acks_leader;
use crate::report::Results;

async fn status(leader: &Node) -> Result<NodeStatus, String> {
    leader
        .status()
        .await
        .map_err(|e| format!("leader status: {e}"))
}

/// Poll the leader from node 3's restart at `t0`: when its link to node 3
/// is up again (the time since `t0`), and until node 3 is back in the ISR.
async fn wait_rejoined(leader: &Node, t0: Instant) -> Result<Option<Duration>, String> {
    let deadline = t0 + Duration::from_secs(120);
    let mut connected_at = None;
    loop {
        if let Some(f) = status(leader).await?.follower(3) {
            if f.connected && connected_at.is_none() {
                connected_at = Some(t0.elapsed());
            }
            if f.in_isr {
                return Ok(connected_at);
            }
        }
        if Instant::now() > deadline {
            return Err("node 3 did not rejoin the ISR within 120 s of its restart".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The phase on `c`.
async fn measure(
    out: Out,
    c: &mut TestCluster,
    counts: Counts,
    r: &mut Results,
) -> Result<(), String> {
    let leader = c.try_node(1)?.clone();
    c.stop_node(3).await;
    c.try_wait_isr_of(1, 2, Duration::from_secs(15)).await?;
    let from = status(&leader)
        .await?
        .follower(3)
        .map_or(0, |f| f.acked_offset);
    let (writes, p) = (counts.catchup_writes, counts.proposers);
    acks_leader(out, &leader, writes, p, false).await?;
    let to = status(&leader).await?.log_end;
    let t0 = Instant::now();
    c.try_start_node(3).await?;
    let started = t0.elapsed();
    let connected_at = wait_rejoined(&leader, t0).await?;
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
    Ok(())
}

/// Phase 7 on a fresh cluster.
pub async fn run(out: Out, parent: &Path, counts: Counts, r: &mut Results) -> Result<(), String> {
    out.progress(&format!(
        "[7/8] catch-up: node 3 stopped, {} acks=leader writes, node 3 restarted",
        counts.catchup_writes
    ));
    let mut c = cluster::start(cluster::spec(parent)).await?;
    let mut measured = measure(out, &mut c, counts, r).await;
    if measured.is_ok() {
        measured = crate::learner::measure(out, &c, r).await;
    }
    c.shutdown().await;
    measured
}
