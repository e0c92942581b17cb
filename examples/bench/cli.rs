//! The bench's command line, how many of everything a run does, and where
//! its lines go.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "metawal cluster benchmark: three nodes on loopback, against the disk and network floor"
)]
pub struct Args {
    /// Scale every count down ~10x (a smoke run; its numbers are not judged).
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object on stdout (progress and table go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Put the nodes' data under this directory (default: the system temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run only these phases (2..=8; the floor always runs), e.g. `--only 3`
    /// to profile one. Figures of skipped phases are reported as 0.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<u32>,
    /// Also run the latency and throughput phases through HTTP clients
    /// against three metawal-node processes (built if needed); figures
    /// with an `http_` prefix.
    #[arg(long)]
    pub http: bool,
    /// Skip the TLS comparison (phases 2 and 3 again with mutual TLS
    /// between the nodes; figures with a `tls_` prefix).
    #[arg(long)]
    pub no_tls: bool,
    /// Count the process's heap allocations during phase 2 and report them
    /// per write (`allocs_per_write`; all three nodes are in the process).
    #[arg(long)]
    pub count_allocs: bool,
    /// A perf control FIFO (`perf stat|record --control fifo:PATH -D -1`):
    /// phases 2 and 3 write `enable` to it before their writes and
    /// `disable` after (phase 2 then takes no floor samples between them),
    /// so perf counts the writes alone (docs/benchmarks.md, "Where the time
    /// goes"); `--only 2` or `--only 3` for one of them.
    #[arg(long)]
    pub perf_ctl: Option<PathBuf>,
}

impl Args {
    /// Whether phase `n` runs (`--only`).
    pub fn wants(&self, n: u32) -> bool {
        self.only.is_empty() || self.only.contains(&n)
    }
}

/// How many of everything a run does.
#[derive(Clone, Copy)]
pub struct Counts {
    pub fsync_samples: u64,
    pub rtt_samples: u64,
    pub latency_writes: u64,
    pub throughput_writes: u64,
    pub propagation_writes: u64,
    pub isolation_writes: u64,
    pub stalled_writes: u64,
    pub catchup_writes: u64,
    pub proposers: u64,
    /// Leader crashes per failover measurement (the median is reported).
    pub failover_kills: usize,
}

impl Counts {
    pub fn new(quick: bool) -> Counts {
        let full = Counts {
            fsync_samples: 2_000,
            rtt_samples: 20_000,
            latency_writes: 5_000,
            throughput_writes: 100_000,
            propagation_writes: 5_000,
            isolation_writes: 100_000,
            stalled_writes: 200_000,
            catchup_writes: 200_000,
            proposers: 64,
            failover_kills: 5,
        };
        if !quick {
            return full;
        }
        Counts {
            fsync_samples: full.fsync_samples / 10,
            rtt_samples: full.rtt_samples / 10,
            latency_writes: full.latency_writes / 10,
            throughput_writes: full.throughput_writes / 10,
            propagation_writes: full.propagation_writes / 10,
            isolation_writes: full.isolation_writes / 10,
            stalled_writes: full.stalled_writes / 10,
            catchup_writes: full.catchup_writes / 10,
            proposers: full.proposers,
            failover_kills: 3,
        }
    }
}

/// Tell perf to start or stop counting (`what`: `enable`, `disable`)
/// through the `--perf-ctl` FIFO, if one was given.
pub fn perf_ctl(args: &Args, what: &str) -> Result<(), String> {
    let Some(fifo) = &args.perf_ctl else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .map_err(|e| format!("open the perf control fifo {}: {e}", fifo.display()))?;
    f.write_all(format!("{what}\n").as_bytes())
        .map_err(|e| format!("write to the perf control fifo {}: {e}", fifo.display()))
}

/// Where progress lines and the table go.
#[derive(Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// A progress line (always stderr).
    pub fn progress(&self, s: &str) {
        eprintln!("{s}");
    }
    /// A line of the result table (stdout, or stderr with --json).
    pub fn table(&self, s: &str) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }
}
