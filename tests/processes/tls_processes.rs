//! TLS with real `metawal-node` processes: what an operator does and sees.
//!
//! - **Rolling certificate rotation** to a new CA under an `acks=all`
//!   writer, the way docs/operations.md tells operators to do it: (1) every
//!   node trusts old + new CA (rolling restart), (2) every node gets a
//!   certificate from the new CA (rolling restart), (3) every node trusts
//!   only the new CA (rolling restart). No acknowledged write is lost, the
//!   nodes converge, and afterwards the old CA is refused. First the test
//!   shows why step 1 exists: a node that skips it (new certificate, new CA
//!   only, while its peers still trust only the old CA) cannot rejoin.
//! - **HTTPS client certificates** (`--http-client-ca`): no certificate or
//!   one from another CA is refused at the TLS layer, one from the right CA
//!   gets 200; plain HTTP to the HTTPS port gets no answer, and the node
//!   keeps serving.
//! - **metawalctl over TLS** (the built binary): `--cacert`/`--cert`/`--key`
//!   work, a follower's 307 to an `https://` leader is followed, and every
//!   TLS mistake ends with exit code 4 and a message naming it.
//!
//! Nodes are restarted with the same paths and new file contents (a node
//! reads its PEM files when it starts).

use metawal_testkit::procs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metawal_actors::tls::{http_client_config, peer_name, TlsFiles};
use procs::certs::TestCa;
use procs::check::{check, NodeView};
use procs::http::{self, create_topic_body, Outcome, Writer};
use procs::{Cluster, ClusterOpts, CLUSTER_ID};

/// Poll `cond` every 100 ms until it holds; panic with `what` after `limit`.
fn wait_until(c: &Cluster, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{}",
            c.log_tails(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ISR size the current leader reports.
fn isr_len(c: &Cluster) -> Option<u64> {
    let leader = c.leader()?;
    http::status(c.node(leader).http)?["isr_len"].as_u64()
}

/// Wait until the leader has all `n` nodes in sync.
fn wait_full_isr(c: &Cluster, n: u64, limit: Duration) {
    wait_until(c, &format!("ISR of {n}"), limit, || isr_len(c) == Some(n));
}

/// SIGKILL node `id` and start it again (it reads its files anew).
fn restart(c: &mut Cluster, id: u64) {
    c.kill(id);
    c.restart(id);
}

/// Overwrite `dst` with `src`'s contents.
fn put(src: &Path, dst: &Path) {
    std::fs::copy(src, dst)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
}

/// Node `id`'s files become `new`'s certificate and key.
fn install_cert(c: &Cluster, id: u64, new: &TlsFiles) {
    let f = c.tls_files(id).clone();
    put(&new.cert, &f.cert);
    put(&new.key, &f.key);
}

/// A client for the HTTPS API trusting `ca`, presenting `client` if given.
fn https_agent(ca: &Path, client: Option<&TlsFiles>) -> ureq::Agent {
    let config = http_client_config(ca, client.map(|f| (f.cert.as_path(), f.key.as_path())))
        .expect("client config");
    ureq::AgentBuilder::new()
        .tls_config(Arc::new(config))
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
}

/// `GET https://addr/v1/status` with `agent`: the status code, or the
/// transport error's text (and its TLS cause, found through the io errors).
fn https_status(agent: &ureq::Agent, addr: SocketAddr) -> Result<u16, String> {
    match agent.get(&format!("https://{addr}/v1/status")).call() {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(s, _)) => Ok(s),
        Err(ureq::Error::Transport(t)) => Err(describe(&t)),
    }
}

/// An error and every cause below it, including the payloads of
/// `std::io::Error`s (where rustls' errors sit), as one line.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut stack: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    for _ in 0..16 {
        let Some(e) = stack.pop() else { break };
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            out.push_str(&format!(" / {inner}"));
            stack.push(inner);
        }
        if let Some(next) = e.source() {
            out.push_str(&format!(" / {next}"));
            stack.push(next);
        }
    }
    out
}

/// Connect to peer `peer`'s replication port at `addr` as a node would
/// (mutual TLS 1.3, asking for `node-<peer>.<cluster>`), trusting `ca` and
/// presenting `files`' certificate. `Ok` if the peer kept the connection
/// open for a second after the handshake (it waits for our Hello), `Err`
/// with the reason if the handshake failed or the peer closed it.
fn peer_handshake(addr: SocketAddr, peer: u64, ca: &Path, files: &TlsFiles) -> Result<(), String> {
    let config =
        http_client_config(ca, Some((&files.cert, &files.key))).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(peer_name(peer, CLUSTER_ID))
        .map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| format!("handshake: {}", describe(&e)))?;
    }
    // TLS 1.3: the server checks our certificate after our Finished; a
    // refusal arrives as an alert on the first read.
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut b = [0u8; 64];
    match tls.read(&mut b) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Ok(0) => Err("closed by the peer".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(describe(&e)),
    }
}

/// Writes `acks=all` creates from one thread until stopped; every write's
/// name and outcome.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<u64>>,
    handle: std::thread::JoinHandle<Vec<(String, Outcome)>>,
}

impl Load {
    fn start(c: &Cluster, prefix: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(0));
        let mut w = Writer::new(c.http_addrs(), 0);
        let (s, a) = (stop.clone(), acked.clone());
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            // Bounded: the test stops it; 100 000 writes at most.
            for i in 0..100_000u64 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("{prefix}-{i}");
                let (outcome, _) = w.write(&create_topic_body(&name), || s.load(Ordering::Relaxed));
                if matches!(outcome, Outcome::Acked { .. }) {
                    *a.lock().unwrap() += 1;
                }
                out.push((name, outcome));
                std::thread::sleep(Duration::from_millis(20));
            }
            out
        });
        Load {
            stop,
            acked,
            handle,
        }
    }

    fn acked(&self) -> u64 {
        *self.acked.lock().unwrap()
    }

    fn finish(self) -> Vec<(String, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("writer thread")
    }
}

/// Wait until the writer has `more` acked writes beyond now.
fn wait_progress(c: &Cluster, load: &Load, more: u64, what: &str) {
    let target = load.acked() + more;
    wait_until(
        c,
        &format!("{more} more acked writes {what}"),
        Duration::from_secs(30),
        || load.acked() >= target,
    );
}

#[test]
fn rolling_rotation_to_a_new_ca_under_load() {
    let t0 = Instant::now();
    let mut c = Cluster::start(ClusterOpts::fast(3));
    wait_full_isr(&c, 3, Duration::from_secs(30));
    let dir = c.dir().to_path_buf();
    let old_ca = c.tls.as_ref().unwrap().ca.ca_path();
    let new = TestCa::new(&dir, "new", CLUSTER_ID).unwrap();
    let new_ca = new.ca_path();
    let bundle = dir.join("old+new-ca.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&old_ca).unwrap() + &std::fs::read_to_string(&new_ca).unwrap(),
    )
    .unwrap();
    let new_files: Vec<TlsFiles> = (1..=3).map(|id| new.node(id).unwrap()).collect();
    // The harness's client must accept either CA while the nodes roll.
    c.set_http_trust(&bundle);
    let load = Load::start(&c, "rot");
    wait_progress(&c, &load, 5, "before the roll");

    // Why step 1 is needed: a follower that jumps straight to the new
    // certificate and only the new CA cannot rejoin peers that trust only
    // the old CA (each side refuses the other's certificate).
    let leader = c.wait_leader(Duration::from_secs(30));
    let odd = if leader == 3 { 2 } else { 3 };
    let saved = c.tls_files(odd).clone();
    let backup = |p: &Path| {
        dir.join(format!(
            "backup-{}",
            p.file_name().unwrap().to_string_lossy()
        ))
    };
    for p in [&saved.cert, &saved.key, &saved.ca] {
        put(p, &backup(p));
    }
    install_cert(&c, odd, &new_files[(odd - 1) as usize]);
    put(&new_ca, &saved.ca);
    restart(&mut c, odd);
    wait_until(
        &c,
        "the ISR to drop the node on the new CA only",
        Duration::from_secs(20),
        || isr_len(&c) == Some(2),
    );
    let watch_until = Instant::now() + Duration::from_secs(4);
    let before = load.acked();
    while Instant::now() < watch_until {
        assert_ne!(
            isr_len(&c),
            Some(3),
            "node {odd} rejoined with a new-CA certificate while its peers trust only the old CA"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        load.acked() > before,
        "writes stalled while node {odd} was out"
    );
    let refused = c.log_tail(odd, 200).to_lowercase();
    assert!(
        refused.contains("certificate") || refused.contains("tls"),
        "node {odd}'s log does not say why it cannot connect:\n{refused}"
    );
    for p in [&saved.cert, &saved.key, &saved.ca] {
        put(&backup(p), p);
    }
    restart(&mut c, odd);
    wait_full_isr(&c, 3, Duration::from_secs(30));
    eprintln!("negative control done at {:?}", t0.elapsed());

    // Step 1: every node trusts old + new CA.
    for id in 1..=3 {
        put(&bundle, &c.tls_files(id).ca.clone());
        restart(&mut c, id);
        wait_full_isr(&c, 3, Duration::from_secs(30));
        wait_progress(&c, &load, 3, &format!("after node {id} trusts both CAs"));
    }
    // Step 2: every node gets its certificate from the new CA (peers with
    // old certificates are still accepted: everyone trusts both).
    for id in 1..=3 {
        install_cert(&c, id, &new_files[(id - 1) as usize]);
        restart(&mut c, id);
        wait_full_isr(&c, 3, Duration::from_secs(30));
        wait_progress(&c, &load, 3, &format!("after node {id}'s new certificate"));
    }
    // Step 3: every node trusts only the new CA.
    for id in 1..=3 {
        put(&new_ca, &c.tls_files(id).ca.clone());
        restart(&mut c, id);
        wait_full_isr(&c, 3, Duration::from_secs(30));
        wait_progress(
            &c,
            &load,
            3,
            &format!("after node {id} trusts only the new CA"),
        );
    }
    eprintln!("roll done at {:?}", t0.elapsed());

    // Only the new CA now: the harness trusts only it, and every node
    // answers (so every node serves a new-CA certificate).
    c.set_http_trust(&new_ca);
    let writes = load.finish();
    let (statuses, converged) = c.wait_converged(Duration::from_secs(30));
    assert!(
        converged,
        "not converged: {statuses:?}\n{}",
        c.log_tails(30)
    );
    let upto = statuses[0].as_ref().unwrap()["applied_offset"]
        .as_u64()
        .unwrap();
    let views: Vec<NodeView> = c
        .nodes
        .iter()
        .map(|n| NodeView::Log {
            node: n.id,
            entries: http::read_log(n.http, 1, upto, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("read node {}'s log: {e:?}", n.id)),
            state: None,
        })
        .collect();
    let violations = check(&writes, &views);
    assert!(violations.is_empty(), "history violations: {violations:#?}");
    let acked = writes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Acked { .. }))
        .count();
    let unknown = writes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Unknown { .. }))
        .count();
    assert!(acked >= 30, "only {acked} acked writes");
    assert!(c.node_failures().is_empty(), "{:#?}", c.node_failures());

    // The old CA is refused everywhere: an HTTPS client trusting only it
    // cannot talk to any node, and a peer certificate from it (node 1's
    // old one) is refused on the replication port, where the new one is
    // taken.
    let old_agent = https_agent(&old_ca, None);
    let old_node1 = c.tls.as_ref().unwrap().ca.node(1).unwrap();
    for n in &c.nodes {
        let e = https_status(&old_agent, n.http).expect_err("a client trusting only the old CA");
        assert!(e.contains("UnknownIssuer"), "node {}: {e}", n.id);
        if n.id != 1 {
            let e = peer_handshake(n.repl, n.id, &new_ca, &old_node1)
                .expect_err("an old-CA peer certificate was accepted");
            assert!(
                e.contains("UnknownCA")
                    || e.contains("BadCertificate")
                    || e.contains("certificate")
                    || e.contains("closed"),
                "node {}: {e}",
                n.id
            );
            peer_handshake(n.repl, n.id, &new_ca, &new_files[0])
                .unwrap_or_else(|e| panic!("node {}: the new node-1 certificate: {e}", n.id));
        }
    }
    eprintln!(
        "rotation: {} writes ({acked} acked, {unknown} unknown), converged at offset {upto}, in {:?}",
        writes.len(),
        t0.elapsed()
    );
}

#[test]
fn https_client_certificates() {
    let c = Cluster::start(ClusterOpts {
        http_client_auth: true,
        ..ClusterOpts::fast(1)
    });
    let addr = c.nodes[0].http;
    let tls = c.tls.as_ref().unwrap();
    let ca = tls.ca.ca_path();
    let other = TestCa::new(c.dir(), "other", CLUSTER_ID).unwrap();

    // The right CA: 200.
    let alice = tls.ca.client("alice").unwrap();
    assert_eq!(https_status(&https_agent(&ca, Some(&alice)), addr), Ok(200));
    // No certificate: refused by the TLS layer.
    let e = https_status(&https_agent(&ca, None), addr).expect_err("no client certificate");
    assert!(e.contains("CertificateRequired"), "{e}");
    // A certificate from another CA: refused.
    let mallory = other.client("mallory").unwrap();
    let e = https_status(&https_agent(&ca, Some(&mallory)), addr).expect_err("another CA");
    assert!(
        e.contains("UnknownCA") || e.contains("BadCertificate") || e.contains("DecryptError"),
        "{e}"
    );

    // Plain HTTP to the HTTPS port: no HTTP answer (a TLS alert or just a
    // close), bounded by a read timeout.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.take(4096).read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        got.is_empty() || got[0] == 21,
        "expected a TLS alert (21) or nothing, got {got:?}"
    );
    // And the node still serves.
    assert_eq!(https_status(&https_agent(&ca, Some(&alice)), addr), Ok(200));
    assert!(http::status(addr).is_some());
}

use procs::run_ctl as ctl;

#[test]
fn metawalctl_over_tls() {
    let mut c = Cluster::start(ClusterOpts {
        http_client_auth: true,
        ..ClusterOpts::fast(3)
    });
    let _ = procs::ctl_binary();
    let leader = c.wait_leader(Duration::from_secs(30));
    let tls = c.tls.as_ref().unwrap();
    let ca = tls.ca.ca_path().display().to_string();
    let cert = tls.client.cert.display().to_string();
    let key = tls.client.key.display().to_string();
    let other = TestCa::new(c.dir(), "other", CLUSTER_ID).unwrap();
    let other_ca = other.ca_path().display().to_string();
    let other_client = other.client("mallory").unwrap();
    // A follower first, so that the create is redirected (307) to the
    // leader's https:// URL.
    let mut order: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    order.push(leader);
    let endpoints = order
        .iter()
        .map(|&id| c.node(id).http.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let https_endpoints = order
        .iter()
        .map(|&id| format!("https://{}", c.node(id).http))
        .collect::<Vec<_>>()
        .join(",");
    let tls_args = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    let with = |extra: &[&str], cmd: &[&str]| -> (i32, String, String) {
        let mut a: Vec<&str> = vec!["--endpoints", &endpoints, "--timeout-ms", "5000"];
        a.extend_from_slice(extra);
        a.extend_from_slice(cmd);
        ctl(&a)
    };

    let create = [
        "topic",
        "create",
        "tls-topic",
        "--partitions",
        "2",
        "--replication-factor",
        "1",
    ];
    let (code, out, err) = with(&tls_args, &create);
    assert_eq!(
        code,
        0,
        "create over TLS: {out}\n{err}\n{}",
        c.log_tails(20)
    );
    let (code, out, err) = with(&tls_args, &["topic", "describe", "tls-topic", "--json"]);
    assert_eq!(code, 0, "describe over TLS: {out}\n{err}");
    assert!(out.contains("tls-topic"), "{out}");
    let (code, out, err) = with(&tls_args, &["status", "--all"]);
    assert_eq!(code, 0, "status --all over TLS: {out}\n{err}");
    assert_eq!(out.matches("https://").count(), 3, "{out}");

    // Each TLS mistake: exit 4 (unavailable, nothing done) and a message
    // that names it. `expect` is a lower-case substring of stderr.
    let cases: Vec<(&str, Vec<&str>, bool, &str)> = vec![
        (
            "no --cacert (host:port is http://)",
            vec![],
            false,
            "speaks https",
        ),
        ("https:// without --cacert", vec![], true, "unknown issuer"),
        (
            "--cacert of another CA",
            vec!["--cacert", &other_ca, "--cert", &cert, "--key", &key],
            false,
            "unknown issuer",
        ),
        (
            "no client certificate",
            vec!["--cacert", &ca],
            false,
            "requires a client certificate",
        ),
    ];
    let other_cert = other_client.cert.display().to_string();
    let other_key = other_client.key.display().to_string();
    let mut cases = cases;
    cases.push((
        "a client certificate from another CA",
        vec!["--cacert", &ca, "--cert", &other_cert, "--key", &other_key],
        false,
        "refused the client certificate",
    ));
    for (what, extra, https, expect) in &cases {
        for cmd in [&create[..], &["topic", "describe", "tls-topic"][..]] {
            let mut a: Vec<&str> = vec![
                "--endpoints",
                if *https { &https_endpoints } else { &endpoints },
                "--timeout-ms",
                "5000",
            ];
            a.extend_from_slice(extra);
            a.extend_from_slice(cmd);
            let (code, out, err) = ctl(&a);
            assert_eq!(code, 4, "{what}: {cmd:?}: exit {code}\n{out}\n{err}");
            assert!(
                err.to_lowercase().contains(expect) && err.contains("TLS"),
                "{what}: {cmd:?}: stderr does not say {expect:?}:\n{err}"
            );
        }
    }
    // --cert without --key: a usage error, nothing sent.
    let (code, _, err) = with(&["--cacert", &ca, "--cert", &cert], &["status"]);
    assert_eq!(code, 2, "{err}");
    // None of that created anything or hurt the nodes.
    let (code, out, err) = with(&tls_args, &["topic", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("tls-topic").count(), 1, "{out}");
    c.reap();
    assert!(c.node_failures().is_empty(), "{:#?}", c.node_failures());
}
