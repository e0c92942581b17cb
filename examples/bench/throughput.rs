//! Phase 3, throughput: 64 proposers, `acks=all`.

use metawal_actors::{Acks, Node};
use metawal_testkit::TestCluster;

use crate::cli::{perf_ctl, Args, Counts, Out};
use crate::load::{load, propagation_all, LoadCtl, LoadResult};
use crate::report::Results;
use crate::stats::us;

/// Phase 3's load: `acks=all` writes from all the proposers, every one
/// tracked.
pub async fn throughput_load(
    out: Out,
    leader: &Node,
    counts: Counts,
) -> Result<LoadResult, String> {
    let (writes, p) = (counts.throughput_writes, counts.proposers);
    load(out, leader, writes, p, Acks::All, true, LoadCtl::default()).await
}

/// Phase 3 on `c` (node 1 leads, subscribers on both followers).
pub async fn run(
    out: Out,
    c: &TestCluster,
    (counts, args): (Counts, &Args),
    r: &mut Results,
) -> Result<(), String> {
    out.progress(&format!(
        "[3/8] throughput: {} acks=all writes from {} proposers",
        counts.throughput_writes, counts.proposers
    ));
    perf_ctl(args, "enable")?;
    let thr = throughput_load(out, c.try_node(1)?, counts).await;
    perf_ctl(args, "disable")?;
    let thr = thr?;
    let (thr_prop, _, _) = propagation_all(c, &thr.sent).await?;
    r.throughput_eps = thr.eps();
    r.throughput_p50_us = us(&thr.latency, 0.5);
    r.throughput_p99_us = us(&thr.latency, 0.99);
    r.throughput_propagation_p99_us = us(&thr_prop, 0.99);
    out.progress(&format!(
        "      {:.0} entries/s, p50 {:.0} us, p99 {:.0} us",
        r.throughput_eps, r.throughput_p50_us, r.throughput_p99_us
    ));
    Ok(())
}
