//! Phase 2, latency: one proposer, `acks=all`, sequential writes, and
//! the floor sampled between them (see `floor.rs`).

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use metawal_actors::{Acks, Node};
use metawal_testkit::TestCluster;

use crate::allocs::Counting;
use crate::cli::{perf_ctl, Args, Counts, Out};
use crate::floor::FloorSampler;
use crate::load::{load, propagation_all, LoadCtl, LoadResult};
use crate::report::Results;
use crate::stats::{max_us, us};

/// Phase 2's load: sequential `acks=all` writes, every one tracked, with
/// `floor` sampled after each.
pub async fn latency_load(
    out: Out,
    leader: &Node,
    counts: Counts,
    floor: Option<Rc<RefCell<FloorSampler>>>,
) -> Result<LoadResult, String> {
    let writes = counts.latency_writes;
    let ctl = LoadCtl {
        floor,
        ..LoadCtl::default()
    };
    load(out, leader, writes, 1, Acks::All, true, ctl).await
}

/// Phase 2 on `c` (node 1 leads, subscribers on both followers); the
/// in-run floor's file in a temp dir under `parent`; the process's
/// allocations counted with `--count-allocs`; perf told to count the
/// writes alone with `--perf-ctl` (no floor samples then).
pub async fn run(
    out: Out,
    parent: &Path,
    c: &TestCluster,
    (counts, args): (Counts, &Args),
    r: &mut Results,
) -> Result<(), String> {
    let count_allocs = args.count_allocs;
    out.progress(&format!(
        "[2/8] latency: {} sequential acks=all writes; after each, the floor: one fdatasync of an append, one of a write into written blocks, one ping-pong, three fdatasyncs at once{}",
        counts.latency_writes,
        if args.perf_ctl.is_some() { " (not with --perf-ctl)" } else { "" }
    ));
    let dir = tempfile::Builder::new()
        .prefix("metawal-bench-run-floor-")
        .tempdir_in(parent)
        .map_err(|e| format!("temp dir in {}: {e}", parent.display()))?;
    let floor = Rc::new(RefCell::new(FloorSampler::new(dir.path())?));
    let sampled = args.perf_ctl.is_none().then(|| floor.clone());
    perf_ctl(args, "enable")?;
    if count_allocs {
        Counting::on();
    }
    let lat = latency_load(out, c.try_node(1)?, counts, sampled).await;
    if count_allocs {
        let (allocs, bytes) = Counting::off();
        let writes = counts.latency_writes.max(1) as f64;
        r.allocs_per_write = Some((allocs as f64 / writes, bytes as f64 / writes));
    }
    perf_ctl(args, "disable")?;
    let lat = lat?;
    let sampler = Rc::try_unwrap(floor)
        .map_err(|_| "the floor sampler is still shared after the load".to_string())?;
    let floor = sampler.into_inner().finish()?;
    let (fsync, rtt, fsync3) = (floor.fsync, floor.rtt, floor.fsync3);
    r.run_floor_fsync_written_p50_us = us(&floor.fsync_written, 0.5);
    r.run_floor_fsync_written_p99_us = us(&floor.fsync_written, 0.99);
    r.run_floor_fsync3_p50_us = us(&fsync3, 0.5);
    r.run_floor_fsync3_p99_us = us(&fsync3, 0.99);
    r.run_floor_fsync_p50_us = us(&fsync, 0.5);
    r.run_floor_fsync_p99_us = us(&fsync, 0.99);
    r.run_floor_rtt_p50_us = us(&rtt, 0.5);
    r.run_floor_rtt_p99_us = us(&rtt, 0.99);
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
    if let Some((allocs, bytes)) = r.allocs_per_write {
        out.progress(&format!(
            "      {allocs:.1} allocations ({bytes:.0} bytes) per write, whole process"
        ));
    }
    out.progress(&format!(
        "      floor between the writes: fdatasync p50 {:.0} us p99 {:.0} us (into written blocks p50 {:.0} us p99 {:.0} us); RTT p50 {:.0} us p99 {:.0} us; 3 fdatasyncs at once p50 {:.0} us p99 {:.0} us",
        r.run_floor_fsync_p50_us, r.run_floor_fsync_p99_us,
        r.run_floor_fsync_written_p50_us, r.run_floor_fsync_written_p99_us,
        r.run_floor_rtt_p50_us, r.run_floor_rtt_p99_us,
        r.run_floor_fsync3_p50_us, r.run_floor_fsync3_p99_us
    ));
    Ok(())
}
