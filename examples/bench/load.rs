//! The bench's write load, and the propagation of its writes to the
//! followers' subscribers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metawal_actors::{Acks, Node, NodeId};
use metawal_testkit::support::wait_for;
use metawal_testkit::TestCluster;
use tokio::task::JoinHandle;

use crate::cli::Out;
use crate::cluster::set_leader;
use crate::floor::FloorSampler;
use crate::stats::{new_hist, ns, Hist};

/// One tracked write.
#[derive(Clone, Copy)]
pub struct Sample {
    pub offset: u64,
    /// Just before `propose` was called.
    pub at: Instant,
    /// Until `propose` returned, in ns.
    pub latency: u64,
}

pub struct LoadResult {
    pub writes: u64,
    pub secs: f64,
    pub latency: Hist,
    /// Every write, if tracked.
    pub sent: Vec<Sample>,
}

impl LoadResult {
    pub fn eps(&self) -> f64 {
        self.writes as f64 / self.secs.max(1e-9)
    }
}

/// Outside control of a load: a stop flag, the count of completed writes,
/// and the floor to sample after each write, if any (phase 2: one proposer,
/// `acks=all`, so each sample runs when the write is durable everywhere).
#[derive(Clone, Default)]
pub struct LoadCtl {
    pub stop: Arc<AtomicBool>,
    pub done: Arc<AtomicU64>,
    pub floor: Option<Rc<RefCell<FloorSampler>>>,
}

/// What the proposers of one load share.
#[derive(Clone)]
struct Proposers {
    leader: Node,
    writes: u64,
    acks: Acks,
    track: bool,
    next: Arc<AtomicU64>,
    ctl: LoadCtl,
    // One histogram for all proposers (they share this thread): a histogram
    // is ~270 KB, and the stalled phase measures the process's memory.
    hist: Rc<RefCell<Hist>>,
}

impl Proposers {
    /// One proposer: writes until the writes run out or the load stops.
    async fn run(self) -> Result<Vec<Sample>, String> {
        let mut sent = Vec::new();
        loop {
            if self.ctl.stop.load(Ordering::Relaxed) {
                break;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.writes {
                break;
            }
            let (acks, command) = (self.acks, set_leader(i));
            let at = Instant::now();
            let p = self
                .leader
                .propose(command, acks)
                .await
                .map_err(|e| format!("write {i} ({acks:?}): {e}"))?;
            let latency = ns(at.elapsed());
            self.hist.borrow_mut().saturating_record(latency);
            if self.track {
                sent.push(Sample {
                    offset: p.offset,
                    at,
                    latency,
                });
            }
            self.ctl.done.fetch_add(1, Ordering::Relaxed);
            if let Some(floor) = &self.ctl.floor {
                floor.borrow_mut().sample()?;
            }
        }
        Ok(sent)
    }
}

/// A progress line every 2 s until aborted.
fn reporter(out: Out, done: Arc<AtomicU64>, started: Instant) -> JoinHandle<()> {
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let d = done.load(Ordering::Relaxed);
            out.progress(&format!(
                "      ... {d} writes, {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
    })
}

/// Every proposer's samples, or the first error once all have ended.
async fn join(tasks: Vec<JoinHandle<Result<Vec<Sample>, String>>>) -> Result<Vec<Sample>, String> {
    let mut sent = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => sent.extend(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("proposer task: {e}"));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(sent),
    }
}

/// Up to `writes` valid writes (`SetPartitionLeader`, cycling partitions and
/// leaders among the replicas) from `proposers` concurrent proposers, until
/// `ctl.stop` is set. Latency is from just before `propose` to its return.
pub async fn load(
    out: Out,
    leader: &Node,
    writes: u64,
    proposers: u64,
    acks: Acks,
    track: bool,
    ctl: LoadCtl,
) -> Result<LoadResult, String> {
    let started = Instant::now();
    let shared = Proposers {
        leader: leader.clone(),
        writes,
        acks,
        track,
        next: Arc::new(AtomicU64::new(0)),
        ctl: ctl.clone(),
        hist: Rc::new(RefCell::new(new_hist())),
    };
    let tasks = (0..proposers)
        .map(|_| tokio::task::spawn_local(shared.clone().run()))
        .collect();
    let reporter = reporter(out, ctl.done.clone(), started);
    let sent = join(tasks).await;
    reporter.abort();
    let sent = sent?;
    let latency = shared.hist.replace(new_hist());
    Ok(LoadResult {
        writes: ctl.done.load(Ordering::Relaxed),
        secs: started.elapsed().as_secs_f64(),
        latency,
        sent,
    })
}

/// [`load`] with `acks=leader`, to its end (no outside control).
pub async fn acks_leader(
    out: Out,
    leader: &Node,
    writes: u64,
    proposers: u64,
    track: bool,
) -> Result<LoadResult, String> {
    let ctl = LoadCtl::default();
    load(out, leader, writes, proposers, Acks::Leader, track, ctl).await
}

/// Propagation of each of `sent` to follower `id`, in ns, in `sent`'s
/// order: notification instant minus the instant just before `propose`.
/// Waits for the last notification; fails if any is missing.
pub async fn prop_samples(
    c: &TestCluster,
    id: NodeId,
    sent: &[Sample],
) -> Result<Vec<u64>, String> {
    let notes = c.try_recording(id)?;
    let last = sent.iter().map(|s| s.offset).max().unwrap_or(0);
    wait_for(
        &format!("node {id}'s subscriber to see offset {last}"),
        Duration::from_secs(60),
        || async { notes.last_offset() >= last },
    )
    .await?;
    let seen: HashMap<u64, Instant> = notes.take_arrivals().into_iter().collect();
    let mut v = Vec::with_capacity(sent.len());
    let mut missing = 0u64;
    for s in sent {
        match seen.get(&s.offset) {
            Some(at) => v.push(ns(at.saturating_duration_since(s.at))),
            None => missing += 1,
        }
    }
    if missing > 0 {
        return Err(format!(
            "node {id}'s subscriber missed {missing} of {} notifications (dropped for a full mailbox?)",
            sent.len()
        ));
    }
    Ok(v)
}

/// Propagation of `sent` to follower `id` as a histogram.
pub async fn propagation(c: &TestCluster, id: NodeId, sent: &[Sample]) -> Result<Hist, String> {
    let mut h = new_hist();
    for v in prop_samples(c, id, sent).await? {
        h.saturating_record(v);
    }
    Ok(h)
}

/// Both followers' propagation in one histogram, and each one's.
pub async fn propagation_all(
    c: &TestCluster,
    sent: &[Sample],
) -> Result<(Hist, Hist, Hist), String> {
    let f2 = propagation(c, 2, sent).await?;
    let f3 = propagation(c, 3, sent).await?;
    let mut both = f2.clone();
    both.add(&f3)
        .map_err(|e| format!("merge histograms: {e}"))?;
    Ok((both, f2, f3))
}
