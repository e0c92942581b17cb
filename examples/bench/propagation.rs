//! Phase 4, propagation: one proposer, `acks=leader`, sequential writes;
//! time from just before the leader's `propose` is called to the
//! `MetadataChanged` notification handled by a subscriber actor on each
//! follower's arbiter.

use metawal_testkit::TestCluster;

use crate::cli::{Counts, Out};
use crate::fsync_tail::{show, syncs, window};
use crate::load::{acks_leader, propagation_all};
use crate::report::Results;
use crate::stats::{max_us, us};

/// Phase 4 on `c` (node 1 leads, subscribers on both followers).
pub async fn run(out: Out, c: &TestCluster, counts: Counts, r: &mut Results) -> Result<(), String> {
    out.progress(&format!(
        "[4/8] propagation: {} sequential acks=leader writes, leader -> follower MetadataChanged",
        counts.propagation_writes
    ));
    let leader = c.try_node(1)?;
    let writes = counts.propagation_writes;
    let nodes = vec![
        leader.clone(),
        c.try_node(2)?.clone(),
        c.try_node(3)?.clone(),
    ];
    let before = syncs(&nodes).await;
    let pr = acks_leader(out, leader, writes, 1, true).await?;
    let (both, f2, f3) = propagation_all(c, &pr.sent).await?;
    // Both followers have applied every write: their last syncs are in.
    r.propagation_syncs = window(out, "phase 4", &before, syncs(&nodes).await);
    r.propagation_p50_us = us(&both, 0.5);
    r.propagation_p99_us = us(&both, 0.99);
    r.propagation_max_us = max_us(&both);
    r.propagation_f2_p99_us = us(&f2, 0.99);
    r.propagation_f3_p99_us = us(&f3, 0.99);
    r.propagation_acks_leader_p50_us = us(&pr.latency, 0.5);
    out.progress(&format!(
        "      p50 {:.0} us, p99 {:.0} us (node 2 p99 {:.0}, node 3 p99 {:.0}); {}",
        r.propagation_p50_us,
        r.propagation_p99_us,
        r.propagation_f2_p99_us,
        r.propagation_f3_p99_us,
        show(r.propagation_syncs)
    ));
    Ok(())
}
