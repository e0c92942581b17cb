//! WAL micro-benchmark: appends/s and append+fdatasync latency for batches of
//! 1, 16 and 256 records of ~100 bytes (one fdatasync per batch), and the raw
//! fdatasync latency of a 100-byte write on the same filesystem.
//!
//! ```text
//! cargo run --release --example wal_bench -- [--dir DIR] [--quick]
//! ```

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use metawal::wal::{Wal, WalOptions};
use metawal::{Command, Entry, Record};

#[derive(Parser, Debug)]
#[command(about = "WAL append + fdatasync micro-benchmark")]
struct Args {
    /// Directory to benchmark in (a fresh sub-directory is created and
    /// removed); default: a temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Short run (0.5 s per case instead of 5 s).
    #[arg(long)]
    quick: bool,
}

fn encode(offset: u64, pad: usize) -> Record {
    Record::encode(&Entry {
        offset,
        epoch: 1,
        command: Command::CreateTopic {
            name: format!("t{offset}-{}", "x".repeat(pad)),
            partition_count: 12,
            replication_factor: 3,
        },
    })
    .expect("encode")
}

/// A record of about 100 bytes at `offset` (the padding is found once).
fn record(offset: u64) -> Record {
    static PAD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let pad = *PAD.get_or_init(|| {
        (0..120usize)
            .rev()
            .find(|&p| encode(1_000_000, p).len() <= 100)
            .unwrap_or(0)
    });
    encode(offset, pad)
}

struct Row {
    case: String,
    ops: u64,
    records: u64,
    secs: f64,
    hist: Histogram<u64>,
}

impl Row {
    fn print(&self) {
        println!(
            "| {:<28} | {:>8} | {:>10.0} | {:>10.0} | {:>8.1} | {:>8.1} | {:>8.1} |",
            self.case,
            self.ops,
            self.ops as f64 / self.secs,
            self.records as f64 / self.secs,
            self.hist.value_at_quantile(0.50) as f64 / 1000.0,
            self.hist.value_at_quantile(0.99) as f64 / 1000.0,
            self.hist.max() as f64 / 1000.0,
        );
    }
}

fn bench_wal(dir: &std::path::Path, batch: usize, run_for: Duration) -> Row {
    let wal_dir = dir.join(format!("wal-batch-{batch}"));
    let (mut wal, _) = Wal::open(&wal_dir, WalOptions::default()).expect("open WAL");
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut next = 1u64;
    // Warm-up: a few batches outside the measurement.
    for _ in 0..5 {
        let recs: Vec<Record> = (next..next + batch as u64).map(record).collect();
        next += batch as u64;
        wal.append(&recs).expect("append");
        wal.sync().expect("sync");
    }
    let (mut ops, mut records) = (0u64, 0u64);
    let mut busy = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < run_for {
        let recs: Vec<Record> = (next..next + batch as u64).map(record).collect();
        next += batch as u64;
        let t = Instant::now();
        wal.append(&recs).expect("append");
        wal.sync().expect("sync");
        let dt = t.elapsed();
        busy += dt;
        hist.record(dt.as_nanos().max(1) as u64).expect("record");
        ops += 1;
        records += batch as u64;
    }
    drop(wal);
    let _ = std::fs::remove_dir_all(&wal_dir);
    Row {
        case: format!("WAL append+sync, batch {batch}"),
        ops,
        records,
        // Rates over the time spent in append+sync (record encoding excluded).
        secs: busy.as_secs_f64(),
        hist,
    }
}

fn bench_raw_fdatasync(dir: &std::path::Path, run_for: Duration) -> Row {
    let path = dir.join("raw-fdatasync");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("open raw file");
    let buf = [0x42u8; 100];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut pos = 0u64;
    let mut ops = 0u64;
    let start = Instant::now();
    while start.elapsed() < run_for {
        let t = Instant::now();
        file.write_all_at(&buf, pos).expect("write");
        file.sync_data().expect("fdatasync");
        hist.record(t.elapsed().as_nanos().max(1) as u64)
            .expect("record");
        pos += buf.len() as u64;
        ops += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Row {
        case: "raw 100 B write + fdatasync".into(),
        ops,
        records: ops,
        secs,
        hist,
    }
}

fn main() {
    let args = Args::parse();
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            let d = d.join(format!("wal-bench-{}", std::process::id()));
            std::fs::create_dir_all(&d).expect("create bench dir");
            d
        }
        None => {
            tmp = tempfile::tempdir().expect("temp dir");
            tmp.path().to_path_buf()
        }
    };
    let run_for = if args.quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    println!(
        "WAL micro-benchmark in {} ({} s per case, records of {}..={} bytes)",
        dir.display(),
        run_for.as_secs_f64(),
        record(1).len(),
        record(1_000_000).len()
    );
    println!();
    println!(
        "| {:<28} | {:>8} | {:>10} | {:>10} | {:>8} | {:>8} | {:>8} |",
        "case", "batches", "batches/s", "records/s", "p50 µs", "p99 µs", "max µs"
    );
    println!(
        "|{:-<30}|{:->10}|{:->12}|{:->12}|{:->10}|{:->10}|{:->10}|",
        "", "", "", "", "", "", ""
    );
    bench_raw_fdatasync(&dir, run_for).print();
    for batch in [1usize, 16, 256] {
        bench_wal(&dir, batch, run_for).print();
    }
    if args.dir.is_some() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
