//! Membership changes as an operator makes them (issue 20), with real
//! `metawal-node` processes over TLS, `metawalctl member …` and a writer
//! that never stops: the cluster grows from 3 voters to 5 (each new node
//! started empty with `--join`, added as a learner, promoted once caught
//! up), then moves off its leader (transfer, then remove the old leader
//! from the new one). Every write acknowledged with `acks=all` is on every
//! remaining member at the end.

use metawal_testkit::procs;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procs::http::{self, create_topic_body, Outcome, Writer};
use procs::{Cluster, ClusterOpts};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);
/// Most writes the load makes (it also stops when the test is done).
const MAX_WRITES: usize = 20_000;

/// Run the built metawalctl against `c`'s nodes; (exit code, stdout,
/// stderr).
fn ctl(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let endpoints: Vec<String> = c.nodes.iter().map(|n| n.http.to_string()).collect();
    let ca = c
        .tls
        .as_ref()
        .expect("a TLS cluster")
        .ca
        .ca_path()
        .display()
        .to_string();
    let out = Command::new(procs::ctl_binary())
        .args(["--endpoints", &endpoints.join(","), "--cacert", &ca])
        .args(args)
        .env_remove("METAWAL_ENDPOINTS")
        .env_remove("METAWAL_CACERT")
        .env_remove("METAWAL_CERT")
        .env_remove("METAWAL_KEY")
        .output()
        .expect("run metawalctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ctl_ok(c: &Cluster, args: &[&str]) -> String {
    let (code, out, err) = ctl(c, args);
    assert_eq!(
        code,
        0,
        "metawalctl {args:?} failed:\n{out}\n{err}\n{}",
        c.log_tails(20)
    );
    out
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Wait until node `id` reports `voters` in force.
fn wait_voters(c: &Cluster, id: u64, voters: &[u64]) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let got = http::status(c.node(id).http).map(|s| ids(&s["voters"]));
        if got.as_deref() == Some(voters) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: voters {got:?}, expected {voters:?}\n{}",
            c.log_tails(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The load: `acks=all` topic creations until `stop`, over the nodes in
/// `nodes` (which grows as nodes join). Returns the names acknowledged.
fn load(nodes: Arc<Mutex<Vec<SocketAddr>>>, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let mut known = 0;
    let mut w: Option<Writer> = None;
    for i in 0..MAX_WRITES {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let now: Vec<SocketAddr> = nodes.lock().map(|n| n.clone()).unwrap_or_default();
        if now.len() != known {
            let target = w.as_ref().map_or(0, |w| w.target);
            w = Some(Writer::new(now.clone(), target));
            known = now.len();
        }
        let Some(writer) = w.as_mut() else { break };
        let name = format!("load-{i}");
        let stopping = || stop.load(Ordering::Acquire);
        if let (Outcome::Acked { .. }, _) = writer.write(&create_topic_body(&name), stopping) {
            acked.push(name);
        }
    }
    acked
}

#[test]
fn a_cluster_grows_from_3_to_5_voters_and_moves_off_its_leader_under_load() {
    let mut c = Cluster::start(ClusterOpts::fast(3));
    let nodes = Arc::new(Mutex::new(c.http_addrs()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (nodes, stop) = (nodes.clone(), stop.clone());
        std::thread::spawn(move || load(nodes, stop))
    };

    // Grow: each new node joins empty, is added, then promoted.
    for _ in 0..2 {
        let id = c.add_joiner();
        let n = c.node(id);
        let (repl, web) = (n.repl.to_string(), n.http.to_string());
        let status = http::status(n.http).expect("the joiner's status");
        let directory = status["directory_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(directory.len(), 32, "a directory id: {status}");
        assert!(
            !ids(&status["voters"]).contains(&id),
            "a joiner is not a voter: {status}"
        );
        let added = ctl_ok(
            &c,
            &[
                "member",
                "add",
                "--id",
                &id.to_string(),
                "--replication-addr",
                &repl,
                "--http-addr",
                &web,
                "--directory-id",
                &directory,
            ],
        );
        assert!(
            added.contains(&format!("node {id} added as a learner")),
            "{added}"
        );
        nodes.lock().unwrap().push(c.node(id).http);
        let promoted = ctl_ok(
            &c,
            &["member", "promote", &id.to_string(), "--wait-ms", "20000"],
        );
        assert!(promoted.contains("promoted to voter"), "{promoted}");
    }
    for id in 1..=5 {
        wait_voters(&c, id, &[1, 2, 3, 4, 5]);
    }
    // Refusals say why, and change nothing.
    let (code, _, err) = ctl(&c, &["member", "promote", "2"]);
    assert_ne!(code, 0);
    assert!(err.contains("already_voter"), "{err}");

    // Off the leader: hand the leadership to node 4, then remove the old
    // leader through any node (a follower redirects to the leader).
    let old = c.wait_leader(LIMIT);
    let to = if old == 4 { 5 } else { 4 };
    ctl_ok(&c, &["leader", "transfer", "--to", &to.to_string()]);
    let (code, _, err) = ctl(&c, &["member", "remove", &to.to_string()]);
    assert_ne!(code, 0, "the leader removed itself");
    assert!(err.contains("remove_leader"), "{err}");
    ctl_ok(&c, &["member", "remove", &old.to_string()]);
    let remaining: Vec<u64> = (1..=5).filter(|&id| id != old).collect();
    for &id in &remaining {
        wait_voters(&c, id, &remaining);
    }
    // The operator stops the removed node; the load goes on through the
    // four voters.
    c.kill(old);
    nodes.lock().unwrap().retain(|a| *a != c.node(old).http);
    let listed = ctl_ok(&c, &["member", "list"]);
    assert!(!listed.contains(&format!("\n{old} ")), "{listed}");

    // A few more writes after the move, then stop and check every
    // acknowledged write is on every remaining member.
    let leader = c.wait_leader(LIMIT);
    let after = http::post_once(
        c.node(leader).http,
        "/v1/commands?acks=all",
        &create_topic_body("after-the-move"),
    );
    assert!(
        matches!(after, http::Attempt::Ok { .. }),
        "a write after the move: {after:?}"
    );
    stop.store(true, Ordering::Release);
    let mut acked = writer.join().expect("the writer");
    assert!(
        !acked.is_empty(),
        "no write was acknowledged during the changes"
    );
    acked.push("after-the-move".to_string());
    let deadline = Instant::now() + LIMIT;
    for &id in &remaining {
        loop {
            let topics = http::get_json(c.node(id).http, "/v1/topics", Duration::from_secs(5));
            let have: Vec<String> = topics
                .ok()
                .and_then(|(_, v)| v["topics"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t["name"].as_str().or(t.as_str()).map(str::to_string))
                .collect();
            let missing: Vec<&String> = acked.iter().filter(|n| !have.contains(n)).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} lacks {} acknowledged topics, e.g. {:?}\n{}",
                missing.len(),
                missing.first(),
                c.log_tails(20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        c.node_failures().is_empty(),
        "a node exited: {:?}",
        c.node_failures()
    );
}
