//! Phases 2 and 3 again over mutual TLS between the nodes (a throwaway CA
//! made at start), on a fresh cluster set up the same way (subscribers on
//! both followers); reported with a `tls_` prefix.

use std::path::Path;

use metawal_testkit::TestCluster;

use crate::cli::{Counts, Out};
use crate::cluster;
use crate::latency::latency_load;
use crate::report::{Results, TlsFigures};
use crate::stats::us;
use crate::throughput::throughput_load;

/// The latency phase's load if `latency`, the throughput phase's if
/// `throughput`, on `c`.
async fn measure(
    out: Out,
    c: &TestCluster,
    counts: Counts,
    (latency, throughput): (bool, bool),
) -> Result<TlsFigures, String> {
    let leader = c.try_node(1)?;
    let mut t = TlsFigures::default();
    if latency {
        let lat = latency_load(out, leader, counts, None).await?;
        t.acks_all_p50_us = us(&lat.latency, 0.5);
        t.acks_all_p99_us = us(&lat.latency, 0.99);
    }
    if throughput {
        let thr = throughput_load(out, leader, counts).await?;
        t.throughput_eps = thr.eps();
        t.throughput_p50_us = us(&thr.latency, 0.5);
        t.throughput_p99_us = us(&thr.latency, 0.99);
    }
    out.progress(&format!(
        "      acks=all p50 {:.0} us, p99 {:.0} us; {:.0} entries/s, p50 {:.0} us, p99 {:.0} us",
        t.acks_all_p50_us,
        t.acks_all_p99_us,
        t.throughput_eps,
        t.throughput_p50_us,
        t.throughput_p99_us
    ));
    Ok(t)
}

/// The TLS comparison of the phases `which` (latency, throughput) asks for.
pub async fn run(
    out: Out,
    parent: &Path,
    counts: Counts,
    which: (bool, bool),
    r: &mut Results,
) -> Result<(), String> {
    out.progress(&format!(
        "[2+3 TLS] latency ({} sequential) and throughput ({} from {} proposers), acks=all, mutual TLS between the nodes",
        counts.latency_writes, counts.throughput_writes, counts.proposers
    ));
    let spec = cluster::followers_subscribed(cluster::spec(parent).tls("bench"));
    let c = cluster::start(spec).await?;
    let measured = measure(out, &c, counts, which).await;
    c.shutdown().await;
    r.tls = Some(measured?);
    Ok(())
}
