//! Deterministic whole-cluster simulation of metawal: many seeds, each a
//! cluster of 3 or 5 nodes under message latency, connection cuts,
//! partitions, one-way partitions, clock steps, crashes (losing unsynced
//! writes, torn records) and restarts, with the invariants checked after
//! every step and, once the faults heal, a leader required within 10 x T.
//!
//! ```text
//! cargo run --release --example simulate -- --seeds 100
//! cargo run --release --example simulate -- --seed 17 --nodes 5 --verbose
//! cargo run --release --example simulate -- --seeds 20 --planted no-up-to-date-rule
//! ```
//!
//! Before it, a line with the new faults and the time from the final heal
//! to one leader every node knows:
//! `faults: O one-way partitions (B messages blackholed), K clock steps, N stale-candidate strikes, F failed step-up steps, C clean shutdowns, T transfers (D completed, U cut off from their target), P paused nodes, R linearizable reads served, F member changes refused, G change races; heal to leader: median M ms, p99 Q ms, max X ms (seed S)`.
//! The last line is always
//! `simulated N seeds (S steps, C crashes, P partitions, M member changes, W acked writes): V violations`
//! and the exit code is non-zero when V > 0.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use metawal::sim::{run_seed, PlantedBug, SimConfig};

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
    /// Plant a known bug, to see the checks catch it: ack-before-fsync,
    /// no-fencing, late-election-timer, no-up-to-date-rule, skip-rollback,
    /// admit-while-transferring, recovery-past-hint. The run then reports
    /// violations (the exit code says so).
    #[arg(long, value_parser = parse_planted)]
    planted: Option<PlantedBug>,
    /// Leave out the nemesis faults: the stale candidate, failed step-up
    /// steps, transfers and clean shutdowns (replays seeds recorded before
    /// they existed).
    #[arg(long)]
    no_nemesis: bool,
}

fn parse_planted(name: &str) -> Result<PlantedBug, String> {
    PlantedBug::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
        format!("unknown bug {name:?}; planted bugs: {}", names.join(", "))
    })
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
    let (mut one_way, mut blackholed, mut clock_steps, mut strikes) = (0, 0, 0, 0);
    let (mut step_faults, mut transfers, mut transfers_done, mut shutdowns) = (0, 0, 0, 0);
    let mut transfer_cuts = 0;
    let (mut member_changes, mut member_refusals, mut change_races) = (0, 0, 0);
    let (mut wipe_races, mut wipes) = (0, 0);
    let (mut pauses, mut reads) = (0, 0);
    // (heal to leader, seed) of every seed that settled.
    let mut heal_to_leader: Vec<(Duration, u64)> = Vec::new();
    for &seed in &seeds {
        let nodes = args.nodes.unwrap_or(if seed % 2 == 0 { 3 } else { 5 });
        let mut config = SimConfig::new(seed, nodes);
        config.steps = args.steps;
        config.keep_events = args.verbose;
        config.bug = args.planted;
        config.nemesis = !args.no_nemesis;
        let report = run_seed(&config);
        if args.verbose {
            for e in &report.events {
                println!("{e}");
            }
            println!(
                "seed {seed}: {} nodes, {} steps, {:?} virtual, {} crashes ({} torn), {} restarts, \
                 {} partitions, {} one-way partitions ({} blackholed), {} clock steps, {} cuts, {} elections, \
                 {} step-downs, {} fenced, {} truncations, {} writes ok ({} acks=all), \
                 {} acks=all refused, {} failed, heal to leader {:?}",
                report.nodes,
                report.steps,
                report.virtual_time,
                report.crashes,
                report.torn_tails,
                report.restarts,
                report.partitions,
                report.one_way_partitions,
                report.blackholed,
                report.clock_steps,
                report.cuts,
                report.elections,
                report.step_downs,
                report.fenced,
                report.truncations,
                report.writes_ok,
                report.acked_all,
                report.refused,
                report.failed,
                report.heal_to_leader
            );
        }
        steps += report.steps;
        crashes += report.crashes;
        partitions += report.partitions;
        writes += report.writes_ok;
        one_way += report.one_way_partitions;
        blackholed += report.blackholed;
        clock_steps += report.clock_steps;
        strikes += report.nemesis_strikes;
        step_faults += report.step_faults;
        shutdowns += report.shutdowns;
        transfers += report.transfers;
        transfers_done += report.transfers_done;
        transfer_cuts += report.transfer_cuts;
        member_changes += report.member_changes;
        member_refusals += report.member_refusals;
        change_races += report.change_races;
        wipe_races += report.wipe_races;
        wipes += report.wipes;
        pauses += report.pauses;
        reads += report.reads_served;
        if let Some(t) = report.heal_to_leader {
            heal_to_leader.push((t, seed));
        }
        if let Some(v) = &report.violation {
            violations += 1;
            println!("{v}");
        }
    }
    eprintln!("wall time {:.1?}", started.elapsed());
    heal_to_leader.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let healed = match heal_to_leader.last() {
        Some(&(max, seed)) => {
            let at = |q: f64| heal_to_leader[((heal_to_leader.len() - 1) as f64 * q) as usize].0;
            format!(
                "median {:.1} ms, p99 {:.1} ms, max {:.1} ms (seed {seed})",
                ms(at(0.5)),
                ms(at(0.99)),
                ms(max)
            )
        }
        None => "no seed settled".into(),
    };
    println!(
        "faults: {one_way} one-way partitions ({blackholed} messages blackholed), {clock_steps} clock steps, {strikes} stale-candidate strikes, {step_faults} failed step-up steps, {shutdowns} clean shutdowns, {transfers} transfers ({transfers_done} completed, {transfer_cuts} cut off from their target), {pauses} paused nodes, {reads} linearizable reads served, {member_refusals} member changes refused, {change_races} change races, {wipe_races} wipe races ({wipes} disks wiped); heal to leader: {healed}"
    );
    println!(
        "simulated {} seeds ({steps} steps, {crashes} crashes, {partitions} partitions, {member_changes} member changes, {writes} acked writes): {violations} violations",
        seeds.len()
    );
    if violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
