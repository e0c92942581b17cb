//! Phase 5, isolation: 64 proposers, `acks=leader`, node 3 behind a fault
//! proxy; first with the proxy passing frames through (twice: the second
//! window is the baseline, and against the first it is an A/A comparison
//! that shows how much two windows of the same load differ), then with a
//! 50 ms delay on every frame leader → node 3 (measured once node 3 has
//! left the ISR; the time that takes is reported too).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metawal_actors::{Acks, Node, ReplicationConfig};
use metawal_testkit::proxy::Fault;
use metawal_testkit::support::wait_for;
use metawal_testkit::TestCluster;
use tokio::task::JoinHandle;

use crate::cli::{Counts, Out};
use crate::cluster;
use crate::fsync_tail::{show, syncs, window, Syncs};
use crate::load::{acks_leader, load, prop_samples, propagation, LoadCtl, Sample};
use crate::report::Results;
use crate::stats::{new_hist, us, Hist};

/// The slow follower's delay.
const SLOW_DELAY: Duration = Duration::from_millis(50);

async fn follower3_in_isr(leader: &Node) -> Result<bool, String> {
    let s = leader
        .status()
        .await
        .map_err(|e| format!("leader status: {e}"))?;
    Ok(s.follower(3).is_some_and(|f| f.in_isr))
}

/// The nodes whose syncs the ratios depend on: the leader (its own acks)
/// and node 2 (with the leader, the commit node 2 applies at).
fn measured_nodes(c: &TestCluster) -> Result<Vec<Node>, String> {
    Ok(vec![c.try_node(1)?.clone(), c.try_node(2)?.clone()])
}

/// One window of the load with the proxy passing everything: acks=leader
/// p99, node 2's propagation p99 (µs), writes/s, and the syncs meanwhile.
async fn pass_window(
    out: Out,
    c: &TestCluster,
    counts: Counts,
) -> Result<(f64, f64, f64, Option<Syncs>), String> {
    let (writes, p) = (counts.isolation_writes, counts.proposers);
    let leader = c.try_node(1)?;
    let nodes = measured_nodes(c)?;
    let before = syncs(&nodes).await;
    let base = acks_leader(out, leader, writes, p, true).await?;
    // Read once node 2 has applied every write: its last syncs are in.
    let base_prop = propagation(c, 2, &base.sent).await?;
    let during = window(out, "a pass window", &before, syncs(&nodes).await);
    c.try_recording(3)?.clear();
    Ok((
        us(&base.latency, 0.99),
        us(&base_prop, 0.99),
        base.eps(),
        during,
    ))
}

/// With the proxy passing everything, two windows of the same load: the
/// second is the baseline of the ratios (it runs right before the delayed
/// one, on a cluster past its start-up), and its p99s over the first's are
/// an A/A comparison — how far two windows differ with nothing changed,
/// which is the resolution of the isolation ratios.
async fn pass(out: Out, c: &TestCluster, counts: Counts, r: &mut Results) -> Result<(), String> {
    let (ack1, prop1, eps1, syncs1) = pass_window(out, c, counts).await?;
    out.progress(&format!(
        "      pass, first window: {eps1:.0} entries/s, acks=leader p99 {ack1:.0} us, node 2 propagation p99 {prop1:.0} us, {}",
        show(syncs1)
    ));
    let (ack, prop, eps, syncs2) = pass_window(out, c, counts).await?;
    r.iso_syncs[0] = syncs1;
    r.iso_syncs[1] = syncs2;
    r.iso_base_ack_p99_us = ack;
    r.iso_base_prop_p99_us = prop;
    r.iso_base_eps = eps;
    r.isolation_aa_ack_ratio = ack / ack1.max(1e-3);
    r.isolation_aa_propagation_ratio = prop / prop1.max(1e-3);
    out.progress(&format!(
        "      pass: {eps:.0} entries/s, acks=leader p99 {ack:.0} us, node 2 propagation p99 {prop:.0} us, {}; A/A ratios {:.2} / {:.2}",
        show(syncs2), r.isolation_aa_ack_ratio, r.isolation_aa_propagation_ratio
    ));
    Ok(())
}

/// What the ISR watcher saw: when node 3 left the ISR, and in how many of
/// its polls after that node 3 was back in.
struct Watched {
    left: Option<Instant>,
    /// The syncs of the measured nodes when node 3 left.
    syncs_at_left: Result<Syncs, String>,
    back_in: u64,
    polls: u64,
}

/// Poll the leader every 5 ms from `delayed_at`: once node 3 has left the
/// ISR (or not within `shrink_limit`), count polls until `target` more
/// writes are done; then stop the load.
fn watch_isr(
    leader: Node,
    nodes: Vec<Node>,
    ctl: LoadCtl,
    delayed_at: Instant,
    shrink_limit: Duration,
    target: u64,
) -> JoinHandle<Watched> {
    tokio::task::spawn_local(async move {
        let hard_limit = shrink_limit + Duration::from_secs(120);
        let mut left: Option<(Instant, u64)> = None;
        let (mut back_in, mut polls) = (0u64, 0u64);
        let mut syncs_at_left = Err("node 3 did not leave the ISR".to_string());
        while delayed_at.elapsed() < hard_limit {
            let in_isr = follower3_in_isr(&leader).await;
            match left {
                None => {
                    if let Ok(false) = in_isr {
                        left = Some((Instant::now(), ctl.done.load(Ordering::Relaxed)));
                        syncs_at_left = syncs(&nodes).await;
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
        Watched {
            left: left.map(|(t, _)| t),
            syncs_at_left,
            back_in,
            polls,
        }
    })
}

/// The delayed run's writes, split at the moment node 3 left the ISR.
struct Split {
    /// Node 2's propagation before (node 3 still in the ISR).
    transient_prop: Hist,
    transient_n: u64,
    /// Node 2's propagation and the ack latency after.
    slow_prop: Hist,
    slow_ack: Hist,
    slow_n: u64,
    /// The first send and the last ack after.
    slow_span: Option<(Instant, Instant)>,
}

impl Split {
    fn of(sent: &[Sample], props: Vec<u64>, left: Instant) -> Split {
        let mut s = Split {
            transient_prop: new_hist(),
            transient_n: 0,
            slow_prop: new_hist(),
            slow_ack: new_hist(),
            slow_n: 0,
            slow_span: None,
        };
        for (w, pr) in sent.iter().zip(props) {
            if w.at >= left {
                s.slow_prop.saturating_record(pr);
                s.slow_ack.saturating_record(w.latency);
                s.slow_n += 1;
                let end = w.at + Duration::from_nanos(w.latency);
                s.slow_span = Some(
                    s.slow_span
                        .map_or((w.at, end), |(f, l)| (f.min(w.at), l.max(end))),
                );
            } else {
                s.transient_prop.saturating_record(pr);
                s.transient_n += 1;
            }
        }
        s
    }

    /// Writes per second after node 3 left.
    fn slow_eps(&self) -> f64 {
        match self.slow_span {
            Some((f, l)) => {
                self.slow_n as f64 / l.saturating_duration_since(f).as_secs_f64().max(1e-9)
            }
            None => 0.0,
        }
    }
}

/// Once the writes pause, node 3 catches up and rejoins the ISR: how long
/// that took, if within 3 s.
async fn rejoin_after_idle(leader: &Node) -> Option<f64> {
    let idle_at = Instant::now();
    wait_for("node 3 to rejoin", Duration::from_secs(3), || async {
        follower3_in_isr(leader).await.unwrap_or(false)
    })
    .await
    .ok()
    .map(|()| idle_at.elapsed().as_secs_f64() * 1e3)
}

/// Record the delayed run's figures.
fn record_delayed(out: Out, r: &mut Results, s: &Split, w: &Watched, since: Duration) {
    r.iso_isr_shrink_ms = since.as_secs_f64() * 1e3;
    r.iso_transient_prop_p99_us = us(&s.transient_prop, 0.99);
    r.iso_slow_back_in_polls = w.back_in;
    r.iso_slow_polls = w.polls;
    out.progress(&format!(
        "      node 3 left the ISR {:.0} ms after the delay began ({} writes meanwhile, node 2 propagation p99 {:.0} us)",
        r.iso_isr_shrink_ms, s.transient_n, r.iso_transient_prop_p99_us
    ));
    r.iso_slow_ack_p99_us = us(&s.slow_ack, 0.99);
    r.iso_slow_prop_p99_us = us(&s.slow_prop, 0.99);
    r.iso_slow_eps = s.slow_eps();
    r.isolation_ack_ratio = r.iso_slow_ack_p99_us / r.iso_base_ack_p99_us.max(1e-3);
    r.isolation_propagation_ratio = r.iso_slow_prop_p99_us / r.iso_base_prop_p99_us.max(1e-3);
    out.progress(&format!(
        "      delayed: {:.0} entries/s, acks=leader p99 {:.0} us, node 2 propagation p99 {:.0} us, {}; ratios {:.2} / {:.2}",
        r.iso_slow_eps,
        r.iso_slow_ack_p99_us,
        r.iso_slow_prop_p99_us,
        show(r.iso_syncs[2]),
        r.isolation_ack_ratio,
        r.isolation_propagation_ratio
    ));
}

/// With every frame to node 3 delayed. One continuous load: node 3 stays
/// in the ISR while it has caught up within replica_lag_time_max, holding
/// the commit back; it is measured separately ("transient"). The figures
/// for the ratios are the writes sent after node 3 left the ISR,
/// `isolation_writes` of them, with no pause in between (a pause lets node
/// 3 catch up and rejoin).
async fn delayed(out: Out, c: &TestCluster, counts: Counts, r: &mut Results) -> Result<(), String> {
    let leader = c.try_node(1)?.clone();
    c.try_proxy(3)?.set(Fault::Delay(SLOW_DELAY));
    let ctl = LoadCtl::default();
    let shrink_limit = ReplicationConfig::default().replica_lag_time_max + Duration::from_secs(10);
    let delayed_at = Instant::now();
    let target = counts.isolation_writes;
    let nodes = measured_nodes(c)?;
    let watcher = watch_isr(
        leader.clone(),
        nodes.clone(),
        ctl.clone(),
        delayed_at,
        shrink_limit,
        target,
    );
    let p = counts.proposers;
    let run_all = load(out, &leader, u64::MAX, p, Acks::Leader, true, ctl).await?;
    let watched = watcher.await.map_err(|e| format!("ISR watcher: {e}"))?;
    let left = watched.left.ok_or_else(|| {
        format!(
            "node 3 behind a {SLOW_DELAY:?} delay did not leave the ISR within {shrink_limit:?}"
        )
    })?;
    r.iso_rejoin_after_idle_ms = rejoin_after_idle(&leader).await;
    let props = prop_samples(c, 2, &run_all.sent).await?;
    // Node 2 has applied every write: its last syncs are in. (Node 3's
    // catch-up meanwhile makes no sync on these two nodes.)
    r.iso_syncs[2] = window(
        out,
        "the delayed window",
        &watched.syncs_at_left,
        syncs(&nodes).await,
    );
    c.try_recording(3)?.clear();
    let split = Split::of(&run_all.sent, props, left);
    let since = left.saturating_duration_since(delayed_at);
    record_delayed(out, r, &split, &watched, since);
    Ok(())
}

/// Phase 5 on a fresh cluster, node 3 behind a proxy, subscribers on both
/// followers.
pub async fn run(out: Out, parent: &Path, counts: Counts, r: &mut Results) -> Result<(), String> {
    out.progress(&format!(
        "[5/8] isolation: {} acks=leader writes from {} proposers, node 3 behind a proxy: pass, then {} ms delay",
        counts.isolation_writes,
        counts.proposers,
        SLOW_DELAY.as_millis()
    ));
    let spec = cluster::followers_subscribed(cluster::spec(parent).proxied(&[3]));
    let c = cluster::start(spec).await?;
    let mut measured = pass(out, &c, counts, r).await;
    if measured.is_ok() {
        measured = delayed(out, &c, counts, r).await;
    }
    c.shutdown().await;
    measured
}
