//! Phase 9 (`--http` only): the latency and throughput phases again
//! through real HTTP clients against three `metawal-node` processes
//! (`http_load.rs`), reported with an `http_` prefix.

use crate::cli::{Counts, Out};
use crate::http_load;
use crate::report::Results;

pub fn run(out: Out, counts: Counts, r: &mut Results) -> Result<(), String> {
    let progress = |line: &str| out.progress(line);
    let figures = http_load::run(
        counts.latency_writes,
        counts.throughput_writes,
        counts.proposers,
        &progress,
    )
    .map_err(|e| format!("--http: {e}"))?;
    r.http = Some(figures);
    Ok(())
}
