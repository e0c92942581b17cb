//! Phase 2, latency: one proposer, `acks=all`, sequential writes.

use metawal_actors::{Acks, Node};
use metawal_testkit::TestCluster;

use crate::cli::{Counts, Out};
use crate::load::{load, propagation_all, LoadCtl, LoadResult};
use crate::report::Results;
use crate::stats::{max_us, us};

/// Phase 2's load: sequential `acks=all` writes, every one tracked.
pub async fn latency_load(out: Out, leader: &Node, counts: Counts) -> Result<LoadResult, String> {
    let writes = counts.latency_writes;
    load(out, leader, writes, 1, Acks::All, true, LoadCtl::default()).await
}

/// Phase 2 on `c` (node 1 leads, subscribers on both followers).
pub async fn run(out: Out, c: &TestCluster, counts: Counts, r: &mut Results) -> Result<(), String> {
    out.progress(&format!(
        "[2/8] latency: {} sequential acks=all writes",
        counts.latency_writes
    ));
    let lat = latency_load(out, c.try_node(1)?, counts).await?;
    let (lat_prop, _, _) = propagation_all(c, &lat.sent).await?;
    r.acks_all_p50_us = us(&lat.latency, 0.5);
    r.acks_all_p99_us = us(&lat.latency, 0.99);
    r.acks_all_p999_us = us(&lat.latency, 0.999);
    r.acks_all_max_us = max_us(&lat.latency);
    r.latency_propagation_p99_us = us(&lat_prop, 0.99);
    out.progress(&format!(
        "      p50 {:.0} us, p99 {:.0} us, p999 {:.0} us, max {:.0} us",
        r.acks_all_p50_us, r.acks_all_p99_us, r.acks_all_p999_us, r.acks_all_max_us
    ));
    Ok(())
}
