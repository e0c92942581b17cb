//! Deterministic whole-cluster simulation of metawal: many seeds, each a
//! cluster of 3 or 5 nodes under message latency, connection cuts,
//! partitions, crashes (losing unsynced writes, torn records) and restarts,
//! with the invariants checked after every step.
//!
//! ```text
//! cargo run --release --example simulate -- --seeds 100
//! cargo run --release --example simulate -- --seed 17 --nodes 5 --verbose
//! ```
//!
//! The last line is always
//! `simulated N seeds (S steps, C crashes, P partitions, W acked writes): V violations`
//! and the exit code is non-zero when V > 0.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use metawal::sim::{run_seed, SimConfig};

/// Run the metawal cluster simulation over many seeds.
#[derive(Parser, Debug)]
#[command(
    about,
    after_help = "Without --nodes, seeds alternate between 3 nodes (even seeds) and 5 nodes \
                  (odd seeds). With --seed, exactly that one seed runs (its replay command \
                  names its node count). W counts every client write that returned Ok \
                  (acks none, leader or all)."
)]
struct Args {
    /// Number of seeds to run (0, 1, ..., N-1).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// Run only this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes per cluster: 3 or 5 (default: alternate by seed parity).
    #[arg(long)]
    nodes: Option<usize>,
    /// Steps with faults and writes per seed (the settle phase comes after).
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Print every event of every seed run.
    #[arg(long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(n) = args.nodes {
        if n != 3 && n != 5 {
            eprintln!("--nodes must be 3 or 5");
            return ExitCode::from(2);
        }
    }
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (0..args.seeds).collect(),
    };
    let started = Instant::now();
    let (mut steps, mut crashes, mut partitions, mut writes, mut violations) = (0, 0, 0, 0, 0);
    for &seed in &seeds {
        let nodes = args.nodes.unwrap_or(if seed % 2 == 0 { 3 } else { 5 });
        let mut config = SimConfig::new(seed, nodes);
        config.steps = args.steps;
        config.keep_events = args.verbose;
        let report = run_seed(&config);
        if args.verbose {
            for e in &report.events {
                println!("{e}");
            }
            println!(
                "seed {seed}: {} nodes, {} steps, {:?} virtual, {} crashes ({} torn), {} restarts, \
                 {} partitions, {} cuts, {} elections, {} step-downs, {} fenced, {} truncations, {} writes ok ({} acks=all), \
                 {} acks=all refused, {} failed",
                report.nodes,
                report.steps,
                report.virtual_time,
                report.crashes,
                report.torn_tails,
                report.restarts,
                report.partitions,
                report.cuts,
                report.elections,
                report.step_downs,
                report.fenced,
                report.truncations,
                report.writes_ok,
                report.acked_all,
                report.refused,
                report.failed
            );
        }
        steps += report.steps;
        crashes += report.crashes;
        partitions += report.partitions;
        writes += report.writes_ok;
        if let Some(v) = &report.violation {
            violations += 1;
            println!("{v}");
        }
    }
    eprintln!("wall time {:.1?}", started.elapsed());
    println!(
        "simulated {} seeds ({steps} steps, {crashes} crashes, {partitions} partitions, {writes} acked writes): {violations} violations",
        seeds.len()
    );
    if violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
