//! The disk's tail during a window of load: how many of the nodes'
//! `fdatasync`s took longer than [`SLOW_SYNC_US`], read from each node's
//! `metawal_fsync_latency_seconds` histogram (`Node::metrics_text`) before
//! and after the window.
//!
//! Why: on this VM a p99 under load follows the few syncs that take 0.4 ms
//! or more, and how many there are changes several-fold between two
//! windows of the same load (docs/benchmarks.md, "What the remaining misses
//! are made of"). The isolation phase compares p99s of different windows,
//! so the report shows each window's slow syncs beside them.

use metawal_actors::Node;

use crate::cli::Out;

/// A sync slower than this is counted as slow: the histogram's bucket
/// boundary (50 µs doubling) nearest the ~0.3–1.2 ms syncs seen in the
/// tails.
pub const SLOW_SYNC_US: f64 = 400.0;

/// Syncs of some nodes, cumulative since their start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Syncs {
    /// All `fdatasync`s.
    pub total: u64,
    /// Those slower than [`SLOW_SYNC_US`].
    pub slow: u64,
}

impl Syncs {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Syncs) -> Syncs {
        Syncs {
            total: self.total.saturating_sub(earlier.total),
            slow: self.slow.saturating_sub(earlier.slow),
        }
    }

    /// Slow syncs per thousand.
    pub fn slow_permille(self) -> f64 {
        self.slow as f64 * 1000.0 / (self.total.max(1) as f64)
    }
}

/// The fsync counts in one node's metrics text: the histogram's count, and
/// the count minus its bucket at [`SLOW_SYNC_US`].
pub fn parse(text: &str) -> Result<Syncs, String> {
    const NAME: &str = "metawal_fsync_latency_seconds";
    let mut total = None;
    let mut within = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(NAME) else {
            continue;
        };
        let value = |s: &str| -> Result<u64, String> {
            s.trim()
                .parse::<f64>()
                .map(|v| v as u64)
                .map_err(|e| format!("{NAME}: bad value in {line:?}: {e}"))
        };
        if let Some(v) = rest.strip_prefix("_count ") {
            total = Some(value(v)?);
        } else if let Some(b) = rest.strip_prefix("_bucket{le=\"") {
            let Some((le, v)) = b.split_once("\"} ") else {
                return Err(format!("{NAME}: bad bucket line {line:?}"));
            };
            let le: f64 = le.parse().unwrap_or(f64::INFINITY);
            if (le * 1e6 - SLOW_SYNC_US).abs() < 1e-3 {
                within = Some(value(v)?);
            }
        }
    }
    match (total, within) {
        (Some(total), Some(within)) => Ok(Syncs {
            total,
            slow: total.saturating_sub(within),
        }),
        _ => Err(format!(
            "{NAME}: no count or no bucket at {SLOW_SYNC_US} us in the node's metrics"
        )),
    }
}

/// Longest wait for one node's metrics.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The syncs of `nodes` so far, summed.
pub async fn syncs(nodes: &[Node]) -> Result<Syncs, String> {
    let mut sum = Syncs::default();
    for n in nodes {
        let text = tokio::time::timeout(READ_TIMEOUT, n.metrics_text())
            .await
            .map_err(|_| format!("node {} metrics: no answer in {READ_TIMEOUT:?}", n.id()))?
            .map_err(|e| format!("node {} metrics: {e}", n.id()))?;
        let s = parse(&text)?;
        sum.total += s.total;
        sum.slow += s.slow;
    }
    Ok(sum)
}

/// The syncs between two readings. The counts are context, not judged
/// figures: a reading that failed costs the window's count (`None`, shown
/// as "n/a" and `null`, with the reason in the progress output), not the
/// phase's figures.
pub fn window(
    out: Out,
    what: &str,
    before: &Result<Syncs, String>,
    after: Result<Syncs, String>,
) -> Option<Syncs> {
    let why = match (before, after) {
        (Ok(b), Ok(a)) => return Some(a.since(*b)),
        (Err(e), _) => e.clone(),
        (_, Err(e)) => e,
    };
    out.progress(&format!("      no sync count for {what}: {why}"));
    None
}

/// "slow of total syncs over [`SLOW_SYNC_US`]", or that there is no count.
pub fn show(w: Option<Syncs>) -> String {
    match w {
        Some(s) => format!("{} of {} syncs over {SLOW_SYNC_US:.0} us", s.slow, s.total),
        None => format!("no count of syncs over {SLOW_SYNC_US:.0} us"),
    }
}
