//! Crash test with real `metawal-node` processes.
//!
//! Why processes: the in-process tests crash a node by stopping its actors,
//! which still runs destructors and shares one page cache and one clock
//! with the survivors. Here each node is a process that gets `SIGKILL`
//! (nothing runs after it: whatever the node acknowledged must already be
//! durable) or `SIGSTOP` / `SIGCONT` (a frozen process — a long GC pause, a
//! VM stall — that wakes up later still believing what it believed before,
//! e.g. that it leads), and clients talk to it over the real HTTP API
//! (docs/api.md) with its status codes as the only source of truth.
//! As in production, everything runs over TLS (the harness's default):
//! mutual TLS between the nodes, HTTPS for the clients, so a restarted
//! node's TLS handshakes are part of every recovery.
//!
//! The run: client threads each keep one `acks=all` write in flight
//! (`CreateTopic` with a name never used before), and a chaos thread kills
//! a node (the leader half the time) and restarts it after 0–1 s, or stops
//! one for longer than the election timeout. Every write ends up *acked*
//! (200, at an offset), *failed* (every attempt was answered by a status
//! that promises nothing was appended: 503, 400, 413; a refused connect) or
//! *unknown* (504, or the connection broke after the request was sent:
//! the entry may be in the log). At the end every node is healed, the
//! cluster must converge (same applied offset and digest on every node),
//! and every node's log, read back through `GET /v1/watch`, must hold
//! every acked write exactly once at its acked offset, no failed write, no
//! unknown write twice, and the same entry at every offset
//! ([`procs::check::check`]).
//!
//! The short runs (3 nodes ~30 s, 5 nodes ~18 s of chaos) are part of
//! `cargo test --workspace --release`. The long run is the same code, chosen
//! with environment variables (docs/operations.md, "Crash-testing with real
//! processes"):
//!
//! ```text
//! METAWAL_CRASH_SECS=600 METAWAL_CRASH_NODES=5 \
//!     cargo test --release --test processes process_crash -- --nocapture
//! ```
//!
//! `METAWAL_CRASH_SEED` fixes the chaos thread's choices (the timing of a
//! real cluster is not reproducible, but the sequence of victims and
//! delays is); `METAWAL_CRASH_CLIENTS` sets the number of writers (4),
//! `METAWAL_CRASH_SNAPSHOT_EVERY` the nodes' `--snapshot-every`.

use metawal_testkit::procs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use procs::check::{check, created_names, NodeView};
use procs::http::{self, create_topic_body, LogEntry, Outcome, WatchError, WriteRecord, Writer};
use procs::{Cluster, ClusterOpts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The crash runs share the 2 cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone)]
struct Params {
    nodes: u64,
    duration: Duration,
    /// Chaos stops this long before the end, so that the clients write to
    /// a healed cluster at the end.
    tail: Duration,
    clients: usize,
    min_kills: u32,
    seed: u64,
    /// `--snapshot-every` for the nodes (None: the default, 100 000).
    snapshot_every: Option<u64>,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

fn seed() -> u64 {
    env_u64("METAWAL_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    })
}

#[derive(Debug, Default)]
struct ChaosStats {
    kills: u32,
    leader_kills: u32,
    stops: u32,
    leader_stops: u32,
    last_restart: Option<Instant>,
    /// The longest a restart took until the node served `/livez` (WAL
    /// replay since the last snapshot, bind retries).
    slowest_restart: Duration,
    /// (seconds since start, what happened)
    events: Vec<(f64, String)>,
}

/// Sets `stop` if the thread holding it panics, so the others end early.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Sleep `d` in small steps; false if `stop` was set.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
    true
}

fn chaos(
    cluster: &Mutex<Cluster>,
    p: &Params,
    t0: Instant,
    chaos_end: Instant,
    stop: &AtomicBool,
) -> ChaosStats {
    let _guard = StopOnPanic(stop);
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut st = ChaosStats::default();
    let t = cluster.lock().unwrap().opts.election_timeout_ms;
    let at = || t0.elapsed().as_secs_f64();
    for _ in 0..100_000 {
        let gap = Duration::from_millis(rng.gen_range(800..2200));
        let wake = (Instant::now() + gap).min(chaos_end);
        if !nap(wake.saturating_duration_since(Instant::now()), stop) || Instant::now() >= chaos_end
        {
            break;
        }
        let mut c = cluster.lock().unwrap();
        for e in c.reap() {
            st.events.push((
                at(),
                format!("node {} exited by itself ({})", e.node, e.status),
            ));
            c.restart(e.node);
            st.last_restart = Some(Instant::now());
        }
        let leader = c.leader();
        let frac = (t0.elapsed().as_secs_f64() / (chaos_end - t0).as_secs_f64()).min(1.0);
        let behind = (st.kills as f64) < p.min_kills as f64 * 1.3 * frac;
        let target = match leader {
            Some(l) if rng.gen_bool(0.5) => l,
            _ => rng.gen_range(1..=p.nodes),
        };
        let is_leader = Some(target) == leader;
        if behind || rng.gen_bool(0.65) {
            let mut victims = vec![target];
            // Five nodes survive two losses: sometimes take two down at once.
            if p.nodes >= 5 && rng.gen_bool(0.25) {
                let other = loop {
                    let o = rng.gen_range(1..=p.nodes);
                    if o != target {
                        break o;
                    }
                };
                victims.push(other);
            }
            for &v in &victims {
                c.kill(v);
                st.kills += 1;
                if Some(v) == leader {
                    st.leader_kills += 1;
                }
            }
            let down = Duration::from_millis(rng.gen_range(0..1000));
            st.events.push((
                at(),
                format!("SIGKILL {victims:?} (leader {leader:?}), restart in {down:?}"),
            ));
            std::thread::sleep(down);
            let restart_began = Instant::now();
            for &v in &victims {
                c.restart(v);
            }
            st.slowest_restart = st.slowest_restart.max(restart_began.elapsed());
            st.last_restart = Some(Instant::now());
            st.events.push((at(), format!("restarted {victims:?}")));
        } else {
            c.stop(target);
            st.stops += 1;
            if is_leader {
                st.leader_stops += 1;
            }
            // Longer than the election timeout: the others move on.
            let pause = Duration::from_millis(rng.gen_range(t * 4 / 3..t * 4));
            st.events.push((
                at(),
                format!("SIGSTOP {target} (leader {leader:?}) for {pause:?}"),
            ));
            std::thread::sleep(pause);
            c.cont(target);
        }
    }
    let mut c = cluster.lock().unwrap();
    if c.heal() > 0 {
        st.last_restart = Some(Instant::now());
    }
    st
}

fn client(
    id: usize,
    addrs: Vec<std::net::SocketAddr>,
    end: Instant,
    stop: &AtomicBool,
    out: &Mutex<Vec<WriteRecord>>,
) {
    let _guard = StopOnPanic(stop);
    let mut w = Writer::new(addrs, id);
    for seq in 0..1_000_000u64 {
        if Instant::now() >= end || stop.load(Ordering::SeqCst) {
            break;
        }
        let name = format!("w-{id}-{seq}");
        let sent = Instant::now();
        let (outcome, attempts) = w.write(&create_topic_body(&name), || {
            Instant::now() >= end || stop.load(Ordering::SeqCst)
        });
        out.lock().unwrap().push(WriteRecord {
            client: id,
            name,
            outcome,
            sent,
            done: Instant::now(),
            attempts,
        });
    }
}

/// Read back what every node holds up to `upto`: its log through
/// `GET /v1/watch?from=1`; if that is compacted (410), its log from the log
/// start plus the topic names of its state (`GET /v1/snapshot`).
fn read_views(c: &Cluster, upto: u64) -> Vec<NodeView> {
    let limit = Duration::from_secs(300);
    let mut views = Vec::new();
    for n in &c.nodes {
        let fail =
            |e: String| -> ! { panic!("reading node {}'s log: {e}\n{}", n.id, c.log_tails(30)) };
        let view = match http::read_log(n.http, 1, upto, limit) {
            Ok(entries) => NodeView::Log {
                node: n.id,
                entries,
                state: None,
            },
            Err(WatchError::Compacted(body)) => {
                let start = body["detail"]["log_start"]
                    .as_u64()
                    .unwrap_or_else(|| fail(format!("410 without detail.log_start: {body}")));
                eprintln!(
                    "node {}: log compacted below {start}; reading the state too",
                    n.id
                );
                let entries = match http::read_log(n.http, start, upto, limit) {
                    Ok(e) => e,
                    Err(e) => fail(format!("from the log start {start}: {e:?}")),
                };
                let (status, snap) =
                    http::get_json(n.http, "/v1/snapshot", Duration::from_secs(60))
                        .unwrap_or_else(|e| fail(e));
                if status != 200 {
                    fail(format!("GET /v1/snapshot: {status} {snap}"));
                }
                let topics = snap["topics"]
                    .as_array()
                    .unwrap_or_else(|| fail(format!("snapshot without topics: {snap}")))
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect();
                let at = snap["offset"].as_u64().unwrap_or(0);
                NodeView::Log {
                    node: n.id,
                    entries,
                    state: Some((at, topics)),
                }
            }
            Err(WatchError::Other(e)) => fail(e),
        };
        views.push(view);
    }
    views
}

fn run_crash(p: Params) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "crash run: {p:?} (set METAWAL_CRASH_SEED={} to repeat the chaos)",
        p.seed
    );
    let mut opts = ClusterOpts::fast(p.nodes);
    if let Some(n) = p.snapshot_every {
        opts.extra_args
            .extend(["--snapshot-every".to_string(), n.to_string()]);
    }
    let cluster = Mutex::new(Cluster::start(opts));
    let addrs = cluster.lock().unwrap().http_addrs();
    let t0 = Instant::now();
    let end = t0 + p.duration;
    let chaos_end = end - p.tail;
    let stop = AtomicBool::new(false);
    let records = Mutex::new(Vec::<WriteRecord>::new());

    let st = std::thread::scope(|s| {
        for id in 0..p.clients {
            let (addrs, stop, records) = (addrs.clone(), &stop, &records);
            s.spawn(move || client(id, addrs, end, stop, records));
        }
        let h = s.spawn(|| chaos(&cluster, &p, t0, chaos_end, &stop));
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    let run_time = t0.elapsed();

    let mut c = cluster.into_inner().unwrap_or_else(|e| e.into_inner());
    c.heal();
    c.reap();
    let outside = c
        .unexpected_exits
        .iter()
        .filter(|e| e.external_shutdown)
        .count();
    let failures: Vec<_> = c.node_failures().into_iter().cloned().collect();
    assert!(
        failures.is_empty(),
        "nodes exited by themselves during the run: {failures:#?}"
    );
    let (statuses, converged) = c.wait_converged(Duration::from_secs(90));
    let summary: Vec<String> = statuses
        .iter()
        .map(|s| match s {
            Some(s) => format!(
                "node {} {} epoch {} applied {} commit {} digest {}",
                s["node_id"], s["role"], s["epoch"], s["applied_offset"], s["commit"], s["digest"]
            ),
            None => "no answer".into(),
        })
        .collect();
    assert!(
        converged,
        "the nodes did not converge within 90 s: {summary:#?}\n{}",
        c.log_tails(40)
    );
    let applied = statuses[0].as_ref().unwrap()["applied_offset"]
        .as_u64()
        .unwrap();

    let records = records.into_inner().unwrap();
    let writes: Vec<(String, Outcome)> = records
        .iter()
        .map(|r| (r.name.clone(), r.outcome.clone()))
        .collect();
    let views = read_views(&c, applied);
    let violations = check(&writes, &views);

    // Figures.
    let acked: Vec<&WriteRecord> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Acked { .. }))
        .collect();
    let failed = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
        .count();
    let unknown = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Unknown { .. }))
        .count();
    // Why writes failed or are unknown, without the node's address.
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let strip = |why: &str| match why.find("acks=all: ") {
        Some(i) => why[i + "acks=all: ".len()..].to_string(),
        None => why.to_string(),
    };
    for r in &records {
        match &r.outcome {
            Outcome::Failed { why } => {
                *reasons
                    .entry(format!("failed: {}", strip(why)))
                    .or_default() += 1
            }
            Outcome::Unknown { why } => {
                *reasons
                    .entry(format!("unknown: {}", strip(why)))
                    .or_default() += 1
            }
            _ => {}
        }
    }
    let mut latencies: Vec<Duration> = acked.iter().map(|r| r.done - r.sent).collect();
    latencies.sort();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut done: Vec<Instant> = acked.iter().map(|r| r.done).collect();
    done.sort();
    let (gap, gap_at) = done
        .windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .max()
        .map(|(g, at)| (g, (at - t0).as_secs_f64()))
        .unwrap_or_default();
    let after_last_restart = st
        .last_restart
        .map(|lr| acked.iter().filter(|r| r.sent >= lr).count())
        .unwrap_or(0);
    let unknown_in_log = {
        let in_log: std::collections::BTreeSet<String> = views
            .iter()
            .flat_map(|NodeView::Log { entries, state, .. }| {
                let mut names: Vec<String> = entries
                    .iter()
                    .flat_map(|e: &LogEntry| created_names(&e.command))
                    .collect();
                if let Some((_, topics)) = state {
                    names.extend(topics.iter().cloned());
                }
                names
            })
            .collect();
        records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Unknown { .. }) && in_log.contains(&r.name))
            .count()
    };
    eprintln!("chaos events:");
    for (t, e) in &st.events {
        eprintln!("  {t:8.3}s {e}");
    }
    eprintln!("outcome reasons: {reasons:#?}");
    eprintln!(
        "CRASH RUN nodes={} seed={} duration={:.1}s: kills={} (leader {}), stops={} (leader {}), \
         writes={} (attempts {}) acked={} failed={} unknown={} (of which in the log: {}), \
         acked after the last restart={}, longest gap between acks={:?} (after t={:.1}s), \
         ack latency p50={:?} p99={:?} max={:?}, slowest restart to /livez={:?}, final applied offset={}, digest={}, graceful exits from outside signals={}",
        p.nodes,
        p.seed,
        run_time.as_secs_f64(),
        st.kills,
        st.leader_kills,
        st.stops,
        st.leader_stops,
        records.len(),
        records.iter().map(|r| r.attempts as u64).sum::<u64>(),
        acked.len(),
        failed,
        unknown,
        unknown_in_log,
        after_last_restart,
        gap,
        gap_at,
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or_default(),
        st.slowest_restart,
        applied,
        statuses[0].as_ref().unwrap()["digest"],
        outside,
    );

    assert!(
        violations.is_empty(),
        "{} violations (seed {}):\n{}\n{}",
        violations.len(),
        p.seed,
        violations
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        c.log_tails(40)
    );
    assert!(
        st.kills >= p.min_kills,
        "only {} kills (wanted at least {})",
        st.kills,
        p.min_kills
    );
    assert!(!acked.is_empty(), "no write was acked\n{}", c.log_tails(40));
    assert!(
        after_last_restart > 0,
        "no write was acked after the last restart\n{}",
        c.log_tails(40)
    );
}

/// True (and a note printed) when `METAWAL_CRASH_SECS` asks for the
/// configured run instead of the short ones.
fn configured_run_requested(test: &str) -> bool {
    let yes = std::env::var_os("METAWAL_CRASH_SECS").is_some();
    if yes {
        eprintln!(
            "{test}: skipped, METAWAL_CRASH_SECS is set (crash_configured_by_env runs instead)"
        );
    }
    yes
}

#[test]
fn crash_3_nodes_short() {
    if configured_run_requested("crash_3_nodes_short") {
        return;
    }
    run_crash(Params {
        nodes: 3,
        duration: Duration::from_secs(30),
        tail: Duration::from_secs(6),
        clients: 4,
        min_kills: 5,
        seed: seed(),
        snapshot_every: None,
    });
}

#[test]
fn crash_5_nodes_short() {
    if configured_run_requested("crash_5_nodes_short") {
        return;
    }
    run_crash(Params {
        nodes: 5,
        duration: Duration::from_secs(18),
        tail: Duration::from_secs(5),
        clients: 4,
        min_kills: 3,
        seed: seed(),
        // Snapshots during the run: restarts load one and replay the WAL after it.
        snapshot_every: Some(5000),
    });
}

/// The long run: `METAWAL_CRASH_SECS` (and optionally `METAWAL_CRASH_NODES`,
/// `METAWAL_CRASH_CLIENTS`, `METAWAL_CRASH_SEED`). Without
/// `METAWAL_CRASH_SECS` it does nothing: the short runs above cover the
/// default test run.
#[test]
fn crash_configured_by_env() {
    let Some(secs) = env_u64("METAWAL_CRASH_SECS") else {
        return;
    };
    assert!(secs >= 20, "METAWAL_CRASH_SECS must be at least 20");
    let nodes = env_u64("METAWAL_CRASH_NODES").unwrap_or(3);
    assert!(
        nodes == 3 || nodes == 5,
        "METAWAL_CRASH_NODES must be 3 or 5"
    );
    run_crash(Params {
        nodes,
        duration: Duration::from_secs(secs),
        tail: Duration::from_secs(10),
        clients: env_u64("METAWAL_CRASH_CLIENTS").unwrap_or(4) as usize,
        min_kills: (secs / 6) as u32,
        seed: seed(),
        snapshot_every: env_u64("METAWAL_CRASH_SNAPSHOT_EVERY"),
    });
}

/// The checker flags every kind of planted inconsistency, and passes a
/// consistent history.
#[test]
fn checker_flags_planted_inconsistencies() {
    use serde_json::json;
    let ct = |name: &str| json!({"CreateTopic": {"name": name, "partition_count": 1, "replication_factor": 1}});
    let e = |offset: u64, epoch: u64, command: serde_json::Value| LogEntry {
        offset,
        epoch,
        command,
    };
    let lc = json!({"LeaderChange": {"leader": 1, "epoch": 1}});
    let log = vec![
        e(1, 1, lc.clone()),
        e(2, 1, ct("a")),
        e(3, 1, ct("u")),
        e(4, 1, json!({"Batch": {"commands": [ct("b")]}})),
    ];
    let writes = vec![
        ("a".to_string(), Outcome::Acked { offset: 2 }),
        ("b".to_string(), Outcome::Acked { offset: 4 }),
        ("f".to_string(), Outcome::Failed { why: "503".into() }),
        ("u".to_string(), Outcome::Unknown { why: "504".into() }),
        ("v".to_string(), Outcome::Unknown { why: "504".into() }),
    ];
    let good = |entries: Vec<LogEntry>| {
        vec![
            NodeView::Log {
                node: 1,
                entries: log.clone(),
                state: None,
            },
            NodeView::Log {
                node: 2,
                entries,
                state: None,
            },
        ]
    };
    assert_eq!(check(&writes, &good(log.clone())), Vec::<String>::new());
    // A node whose log starts at 3 (1 and 2 compacted): "a" is checked in its state.
    let compacted = |names: &[&str], entries: Vec<LogEntry>| {
        let topics = names.iter().map(|s| s.to_string()).collect();
        check(
            &writes,
            &[NodeView::Log {
                node: 3,
                entries,
                state: Some((4, topics)),
            }],
        )
    };
    assert_eq!(
        compacted(&["a", "b", "u"], log[2..].to_vec()),
        Vec::<String>::new()
    );

    // Each mutation is planted on both nodes (so only the check aimed at
    // it can fire) and must be flagged with the expected words.
    let flagged = |entries: Vec<LogEntry>, words: &str| {
        let views = [
            NodeView::Log {
                node: 1,
                entries: entries.clone(),
                state: None,
            },
            NodeView::Log {
                node: 2,
                entries,
                state: None,
            },
        ];
        let v = check(&writes, &views);
        assert!(
            v.iter().any(|m| m.contains(words)),
            "not flagged as {words:?}: {v:?}"
        );
    };
    // An acked write lost (its entry replaced by another).
    let mut lost = log.clone();
    lost[1] = e(2, 1, ct("v"));
    flagged(lost, "acked write \"a\" at offset 2 found at []");
    // An acked write at another offset than acked.
    let mut moved = log.clone();
    moved.swap(1, 2);
    moved[1].offset = 2;
    moved[2].offset = 3;
    flagged(moved, "acked write \"a\" at offset 2 found at [3]");
    // An acked write applied twice.
    let mut twice = log.clone();
    twice.push(e(5, 2, ct("a")));
    flagged(twice, "found at [2, 5]");
    // A failed write present.
    let mut failed = log.clone();
    failed.push(e(5, 2, ct("f")));
    flagged(failed, "failed write \"f\"");
    // An unknown write applied twice.
    let mut unknown = log.clone();
    unknown.push(e(5, 2, ct("u")));
    flagged(unknown, "applied more than once");
    // A topic nobody asked for.
    let mut phantom = log.clone();
    phantom.push(e(5, 2, ct("zz")));
    flagged(phantom, "was never written");
    // A hole in the log.
    let mut hole = log.clone();
    hole.remove(2);
    flagged(hole, "not dense");
    // Two nodes with different entries at one offset (here: another epoch).
    let mut diverged = log.clone();
    diverged[0].epoch = 2;
    let v = check(&writes, &good(diverged));
    assert!(
        v.iter().any(|m| m.contains("offset 1: node 2 has epoch 2")),
        "{v:?}"
    );
    // Compacted views: an acked write missing from the state, a failed
    // write in the state, an acked write below the log start applied again.
    assert!(
        !compacted(&["b", "u"], log[2..].to_vec()).is_empty(),
        "acked missing from the state"
    );
    assert!(
        !compacted(&["a", "b", "u", "f"], log[2..].to_vec()).is_empty(),
        "failed in the state"
    );
    let mut again = log[2..].to_vec();
    again.push(e(5, 2, ct("a")));
    assert!(
        !compacted(&["a", "b", "u"], again).is_empty(),
        "acked below the start applied again"
    );
    // A log that does not start at 1 without a state read.
    let v = check(
        &writes,
        &[NodeView::Log {
            node: 3,
            entries: log[2..].to_vec(),
            state: None,
        }],
    );
    assert!(!v.is_empty(), "log not starting at 1");
}
