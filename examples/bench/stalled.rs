//! Phase 6, stalled follower: node 3's proxy stops reading from the
//! leader; 64 proposers write `acks=leader`; growth of the process's
//! resident memory (all three nodes are in this process) and the bytes in
//! flight to node 3.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metawal_actors::{Node, ReplicationConfig};
use metawal_testkit::proxy::Fault;
use metawal_testkit::TestCluster;
use tokio::task::JoinHandle;

use crate::cli::{Counts, Out};
use crate::cluster;
use crate::load::acks_leader;
use crate::report::Results;

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

/// Node 3's bytes in flight as the leader reports them (0 if it does not).
async fn inflight(leader: &Node) -> Option<u64> {
    let s = leader.status().await.ok()?;
    s.follower(3).map(|f| f.inflight_bytes as u64)
}

/// Every 20 ms until `done` is set: the largest RSS and bytes in flight to
/// node 3 seen.
fn sampler(leader: Node, rss_base: u64, done: Arc<AtomicBool>) -> JoinHandle<(u64, u64)> {
    tokio::task::spawn_local(async move {
        let (mut rss_max, mut inflight_max) = (rss_base, 0u64);
        // Bounded by the load: the flag is set when it ends.
        while !done.load(Ordering::Relaxed) {
            if let Ok(rss) = rss_bytes() {
                rss_max = rss_max.max(rss);
            }
            if let Some(b) = inflight(&leader).await {
                inflight_max = inflight_max.max(b);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (rss_max, inflight_max)
    })
}

/// The phase on `c` (node 3 behind the proxy).
async fn measure(out: Out, c: &TestCluster, counts: Counts, r: &mut Results) -> Result<(), String> {
    let (leader, p) = (c.try_node(1)?.clone(), counts.proposers);
    // Warm up allocators and caches before the baseline.
    let warm_up = counts.stalled_writes / 10;
    acks_leader(out, &leader, warm_up, p, false).await?;
    c.try_proxy(3)?.set(Fault::Stall);
    let rss_base = rss_bytes()?;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sampler(leader.clone(), rss_base, done.clone());
    let writes = counts.stalled_writes;
    let st = acks_leader(out, &leader, writes, p, false).await?;
    done.store(true, Ordering::Relaxed);
    let (rss_max, mut inflight_max) = sampler.await.map_err(|e| format!("sampler: {e}"))?;
    let rss_end = rss_bytes()?;
    let status = leader.status().await;
    if let Some(f) = status
        .map_err(|e| format!("leader status: {e}"))?
        .follower(3)
    {
        inflight_max = inflight_max.max(f.inflight_bytes as u64);
    }
    let window = ReplicationConfig::default().window_bytes as u64;
    r.stalled_rss_base_bytes = rss_base;
    r.stalled_rss_growth_bytes = rss_max.max(rss_end).saturating_sub(rss_base);
    r.stalled_rss_growth_end_bytes = rss_end.saturating_sub(rss_base);
    r.stalled_inflight_bytes = inflight_max;
    r.stalled_eps = st.eps();
    r.stalled_window_bytes = window;
    out.progress(&format!(
        "      {:.0} entries/s; RSS {:.1} MiB -> +{:.1} MiB max; in flight to node 3 max {:.2} MiB (window {:.0} MiB)",
        r.stalled_eps,
        rss_base as f64 / 1048576.0,
        r.stalled_rss_growth_bytes as f64 / 1048576.0,
        inflight_max as f64 / 1048576.0,
        window as f64 / 1048576.0
    ));
    Ok(())
}

/// Phase 6 on a fresh cluster with node 3 behind a fault proxy.
pub async fn run(out: Out, parent: &Path, counts: Counts, r: &mut Results) -> Result<(), String> {
    out.progress(&format!(
        "[6/8] stalled follower: node 3's proxy stops reading; {} acks=leader writes from {} proposers",
        counts.stalled_writes, counts.proposers
    ));
    let c = cluster::start(cluster::spec(parent).proxied(&[3])).await?;
    let measured = measure(out, &c, counts, r).await;
    c.shutdown().await;
    measured
}
