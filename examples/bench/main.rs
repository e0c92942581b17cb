//! The cluster benchmark (issue 4): how fast a metadata change reaches every
//! node of a three-node metawal cluster in one process, measured against this
//! machine's disk and network floor.
//!
//! ```text
//! cargo run --release --example bench -- [--quick] [--json] [--data-dir DIR]
//! ```
//!
//! Phases, in one run (each on a fresh cluster where it needs one; node 1 is
//! the leader until phase 8 kills leaders, nodes on their own Arbiters,
//! loopback TCP, data dirs in the system temp dir or under `--data-dir`):
//!
//! 1. floor: 100-byte append + fdatasync on the data dir's filesystem, and a
//!    100-byte loopback TCP ping-pong.
//! 2. latency: one proposer, `acks=all`, sequential writes.
//! 3. throughput: 64 proposers, `acks=all`.
//! 4. propagation: one proposer, `acks=leader`, sequential writes; time from
//!    just before the leader's `propose` is called to the `MetadataChanged`
//!    notification handled by a subscriber actor on each follower's arbiter.
//! 5. isolation: 64 proposers, `acks=leader`, node 3 behind a fault proxy;
//!    first with the proxy passing frames through, then with a 50 ms delay
//!    on every frame leader → node 3 (measured once node 3 has left the ISR;
//!    the time that takes is reported too).
//! 6. stalled follower: the proxy stops reading from the leader; 64
//!    proposers write `acks=leader`; growth of the process's resident memory
//!    (all three nodes are in this process) and the bytes in flight to node 3.
//! 7. catch-up: node 3 stopped, writes go on, node 3 restarted: entries per
//!    second from its restart until the leader has it back in the ISR.
//! 8. failover: the leader crashes (`Node::crash`: no resignation), 5 times
//!    (3 with `--quick`) with the default timeouts (T = 1 s) and as often with
//!    `election_timeout` 150 ms (heartbeat 20 ms); time from the crash to
//!    the first `acks=all` write a surviving node accepts, and to a new
//!    leader. Each kill starts from a full ISR that has run 2 T without
//!    election traffic; the killed node is restarted and back in the ISR
//!    before the next. Also 3 clean shutdowns (the leader resigns) with the
//!    default timeouts, for comparison.
//!
//! 2+3 TLS (unless `--no-tls`): the latency and throughput phases again on a
//!    fresh cluster with mutual TLS between the nodes (a throwaway CA made
//!    at start), reported with a `tls_` prefix beside the plaintext figures.
//!
//! 9. `--http` only: the latency and throughput phases again through real
//!    HTTP clients (keep-alive connections, `POST /v1/commands?acks=all`)
//!    against three `metawal-node` processes, reported with an `http_`
//!    prefix beside the in-process figures.
//!
//! `--json` prints exactly one JSON object on stdout; progress and the table
//! then go to stderr. See docs/benchmarks.md for what every figure means.
//!
//! Layout: one module per phase (`floor`, `latency`, `throughput`,
//! `propagation`, `isolation`, `stalled`, `catchup`, `failover`, `tls`,
//! `http` over `http_load`), `load` (the write load and propagation),
//! `cluster` (the kit's `TestCluster` with the benchmark topic), `report`
//! (the table and the JSON), `cli`; this file runs the phases in order.

#![recursion_limit = "512"]

mod allocs;
mod catchup;
mod cli;
mod cluster;
mod failover;
mod floor;
mod floor_trio;
mod floor_written;
mod fsync_tail;
mod http;
mod http_async;
mod http_load;
mod isolation;
mod kafka;
mod latency;
mod learner;
mod load;
mod propagation;
mod report;
mod report_json;
mod stalled;
mod stats;
mod throughput;
mod tls;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use metawal_testkit::TestCluster;

use cli::{Args, Counts, Out};
use report::Results;

/// Counts allocations during phase 2 with `--count-allocs` (see `allocs.rs`).
#[global_allocator]
static GLOBAL: allocs::Counting = allocs::Counting;

/// Phases 2-4 on `c`, as far as `args` wants them.
async fn shared_phases(
    args: &Args,
    out: Out,
    parent: &Path,
    c: &TestCluster,
    counts: Counts,
    r: &mut Results,
) -> Result<(), String> {
    if args.wants(2) {
        latency::run(out, parent, c, (counts, args), r).await?;
        kafka::run(out, c, counts, r).await?;
    }
    if args.wants(3) {
        throughput::run(out, c, (counts, args), r).await?;
    }
    if args.wants(4) {
        propagation::run(out, c, counts, r).await?;
    }
    Ok(())
}

/// The in-process phases 2-8, as far as `args` wants them.
async fn run(args: &Args, out: Out, parent: &Path, r: &mut Results) -> Result<(), String> {
    let counts = Counts::new(args.quick);
    // 6: stalled follower. It runs first, in a fresh process, so that its
    // resident-memory growth is not hidden by memory the earlier phases
    // freed (the allocator reuses it without growing the RSS).
    if args.wants(6) {
        stalled::run(out, parent, counts, r).await?;
    }
    if [2, 3, 4].iter().any(|&n| args.wants(n)) {
        // 2-4: one cluster, subscribers on both followers.
        let c = cluster::start(cluster::followers_subscribed(cluster::spec(parent))).await?;
        let measured = shared_phases(args, out, parent, &c, counts, r).await;
        c.shutdown().await;
        measured?;
    }
    if (args.wants(2) || args.wants(3)) && !args.no_tls {
        tls::run(out, parent, counts, (args.wants(2), args.wants(3)), r).await?;
    }
    if args.wants(5) {
        isolation::run(out, parent, counts, r).await?;
    }
    if args.wants(7) {
        catchup::run(out, parent, counts, r).await?;
    }
    if args.wants(8) {
        failover::run(out, parent, counts, r).await?;
    }
    Ok(())
}

/// Every phase `args` asks for, in order: the floor, the in-process phases
/// on an actix system, `--http`.
fn run_all(args: &Args, out: Out, parent: &Path, r: &mut Results) -> Result<(), String> {
    let counts = Counts::new(args.quick);
    floor::run(out, parent, counts, r)?;
    let system = actix::System::new();
    system.block_on(async {
        let local = tokio::task::LocalSet::new();
        local.run_until(run(args, out, parent, r)).await
    })?;
    if args.http {
        http::run(out, counts, r)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let out = Out { json: args.json };
    let parent: PathBuf = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    if let Err(e) = std::fs::create_dir_all(&parent) {
        eprintln!("error: create {}: {e}", parent.display());
        return ExitCode::FAILURE;
    }
    out.progress(&format!(
        "metawal bench{} (data under {})",
        if args.quick { " --quick" } else { "" },
        parent.display()
    ));
    let mut r = Results::default();
    if let Err(e) = run_all(&args, out, &parent, &mut r) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    report::print_table(out, &r, args.quick);
    if out.json {
        println!("{}", report_json::json(&r, args.quick));
    }
    ExitCode::SUCCESS
}
