//! A real `metawal-node` process against clients that misbehave at the
//! socket level.
//!
//! Idle connections are the cheapest attack on an HTTP server (and what a
//! fleet of crashed or hung brokers leaves behind): each costs the server a
//! file descriptor and a slot in its connection table, and a server that
//! handles them badly (a worker per connection, accept stalled at a limit,
//! a busy loop over the idle ones) stops serving everyone. The node must
//! keep taking writes and answering status while 10 000 such connections
//! are open. It may close them itself (a request-head timeout is the usual
//! defence); it must not stall.
//!
//! Runs in its own test binary (not next to the crash runs in
//! `process_crash.rs`): the 10 000 connections use as many local ports,
//! which should not compete with the crash runs' restarted nodes.

mod procs;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use procs::http::{self, create_topic_body, Outcome, Writer};
use procs::{Cluster, ClusterOpts};

const IDLE: usize = 10_000;

/// Raise this process's soft `RLIMIT_NOFILE` to its hard limit (the node
/// started afterwards inherits it); panic if that is below `need`.
fn raise_nofile(need: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0, "getrlimit");
    }
    assert!(
        r.rlim_max >= need,
        "this test opens {IDLE} connections and needs RLIMIT_NOFILE >= {need}, but the hard \
         limit is {} (raise it, e.g. `ulimit -Hn 20000` as root or in /etc/security/limits.conf)",
        r.rlim_max
    );
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
        assert_eq!(rc, 0, "setrlimit(RLIMIT_NOFILE, {})", r.rlim_max);
    }
    r.rlim_cur
}

/// Write one new topic through `w`; the offset, or panic after `limit`.
fn write_within(w: &mut Writer, name: &str, limit: Duration, c: &Cluster) -> (u64, Duration) {
    let started = Instant::now();
    w.give_up = limit;
    let (outcome, attempts) = w.write(&create_topic_body(name), || false);
    match outcome {
        Outcome::Acked { offset } => (offset, started.elapsed()),
        other => panic!(
            "write {name:?} not acked within {limit:?} ({attempts} attempts): {other:?}\n{}",
            c.log_tails(40)
        ),
    }
}

#[test]
fn node_serves_with_10000_idle_connections() {
    let nofile = raise_nofile(IDLE as u64 + 1000);
    let c = Cluster::start(ClusterOpts::fast(1));
    let addr = c.nodes[0].http;
    let mut w = Writer::new(c.http_addrs(), 0);
    let (first, _) = write_within(&mut w, "before-idle", Duration::from_secs(30), &c);

    // Open the connections; bounded in count and time.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut conns = Vec::with_capacity(IDLE);
    let mut errors = 0;
    while conns.len() < IDLE {
        assert!(
            Instant::now() < deadline,
            "opened only {} of {IDLE} connections in 120 s ({errors} connect errors; nofile {nofile})\n{}",
            conns.len(),
            c.log_tails(40)
        );
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => conns.push(s),
            Err(e) => {
                errors += 1;
                assert!(
                    errors <= 100,
                    "connect #{} failed 100 times, last: {e} (nofile {nofile})\n{}",
                    conns.len() + 1,
                    c.log_tails(40)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let open_time = started.elapsed();

    // With all of them open: a write and a status, within a deadline.
    let (offset, write_time) = write_within(&mut w, "during-idle", Duration::from_secs(20), &c);
    assert!(offset > first, "offset {offset} after {first}");
    let status_deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = http::status(addr) {
            break s;
        }
        assert!(
            Instant::now() < status_deadline,
            "GET /v1/status unanswered for 10 s with {IDLE} idle connections\n{}",
            c.log_tails(40)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status["applied_offset"].as_u64().unwrap_or(0) >= offset,
        "status {status} behind the acked offset {offset}"
    );

    // Keep them open past the usual request-head timeouts (actix-web: 5 s)
    // so that the server also has to drop them all at once, writing and
    // asking the status every 250 ms meanwhile; bounded in count and time.
    let mut slowest = write_time;
    let hold_until = Instant::now() + Duration::from_secs(7);
    for i in 0..100 {
        if Instant::now() >= hold_until {
            break;
        }
        let (_, t) = write_within(&mut w, &format!("idle-{i}"), Duration::from_secs(20), &c);
        slowest = slowest.max(t);
        assert!(
            http::status(addr).is_some(),
            "GET /v1/status unanswered (1.5 s timeout) at round {i}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // How many did the server give up on by itself: a 408 (a request-head
    // timeout) or EOF or a reset, on a non-blocking read.
    let mut closed = 0;
    for s in &mut conns {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    eprintln!(
        "{IDLE} connections opened in {open_time:?} ({errors} connect errors); first write acked \
         at {offset} in {write_time:?}, slowest write {slowest:?}; after ~8 s the server had \
         answered 408 or closed {closed} of them"
    );
    drop(conns);

    let (after, _) = write_within(&mut w, "after-idle", Duration::from_secs(20), &c);
    assert!(after > offset);
    let failures = {
        let mut c = c;
        c.reap();
        c.node_failures().into_iter().cloned().collect::<Vec<_>>()
    };
    assert!(failures.is_empty(), "the node exited: {failures:#?}");
}
