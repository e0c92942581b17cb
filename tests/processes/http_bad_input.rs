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
//! The node serves HTTPS (the harness's default), so these are connections
//! that never start a TLS handshake: the server cannot answer them with a
//! `408` (there is no TLS session to carry it); its TLS handshake timeout
//! (`tls_handshake_timeout`, the same 5 s as the request-head timeout)
//! must close every one of them, and while they are pending they must not
//! stop the server accepting real clients (actix's default limit of 256
//! handshakes in progress per worker would: every listener stops accepting
//! at that limit).
//!
//! Runs in its own test binary (not next to the crash runs in
//! `process_crash.rs`): the 10 000 connections use as many local ports,
//! which should not compete with the crash runs' restarted nodes.

use metawal_testkit::procs;

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

    // Writes never waited for the idle connections' handshake timeouts (a
    // server that stopped accepting at a limit of handshakes in progress
    // would make a write wait 5 s or fail).
    assert!(
        slowest < Duration::from_secs(4),
        "a write took {slowest:?} with {IDLE} idle connections open"
    );

    // The server must give up on every one by itself: its TLS handshake
    // timeout closes them (EOF or a reset on a non-blocking read). Nothing
    // may come back: an HTTP answer (a 408) would mean the port speaks
    // plain HTTP. Polled, bounded: the last ones were opened a few seconds
    // ago.
    for s in &conns {
        s.set_nonblocking(true).unwrap();
    }
    let closed_by = Instant::now() + Duration::from_secs(30);
    let mut open: Vec<usize> = (0..conns.len()).collect();
    let mut answered = Vec::new();
    let closed_after = loop {
        open.retain(|&i| {
            let mut b = [0u8; 16];
            match (&conns[i]).read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                Ok(n) if n > 0 => {
                    answered.push(String::from_utf8_lossy(&b[..n]).to_string());
                    false
                }
                _ => false,
            }
        });
        if open.is_empty() {
            break started.elapsed();
        }
        assert!(
            Instant::now() < closed_by,
            "{} of {IDLE} idle connections still open {:?} after the first was opened (the TLS \
             handshake timeout is 5 s)\n{}",
            open.len(),
            started.elapsed(),
            c.log_tails(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        answered.is_empty(),
        "{} idle connections got bytes back, e.g. {:?}: over HTTPS the server has no TLS \
         session to answer them on",
        answered.len(),
        answered.first()
    );
    eprintln!(
        "{IDLE} connections opened in {open_time:?} ({errors} connect errors); first write acked \
         at {offset} in {write_time:?}, slowest write {slowest:?}; the server had closed all of \
         them {closed_after:?} after the first was opened"
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
