//! Membership changes as an operator makes them (issue 20), with real
//! `metawal-node` processes over TLS, `metawalctl member …` and a writer
//! that never stops: the cluster grows from 3 voters to 5 (each new node
//! started empty with `--join`, added as a learner, promoted once caught
//! up), then moves off its leader (transfer, then remove the old leader
//! from the new one). Every write acknowledged with `acks=all` is on every
//! remaining member at the end.

use metawal_testkit::procs;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procs::http::{self, create_topic_body, Outcome, Writer};
use procs::{Cluster, ClusterOpts};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);
/// Most writes the load makes (it also stops when the test is done).
const MAX_WRITES: usize = 20_000;

/// Run the built metawalctl against `c`'s nodes (trusting its CA);
/// (exit code, stdout, stderr).
fn ctl(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let endpoints: Vec<String> = c.nodes.iter().map(|n| n.http.to_string()).collect();
    let endpoints = endpoints.join(",");
    let ca = c
        .tls
        .as_ref()
        .expect("a TLS cluster")
        .ca
        .ca_path()
        .display()
        .to_string();
    let mut all = vec!["--endpoints", endpoints.as_str(), "--cacert", ca.as_str()];
    all.extend_from_slice(args);
    procs::run_ctl(&all)
}

/// Poll `check` until it passes, for at most [`LIMIT`]; a failure names
/// its last reason and the nodes' last log lines.
fn eventually(c: &Cluster, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let why = match check() {
            Ok(()) => return,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "{why} (after {LIMIT:?})\n{}",
            c.log_tails(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
    eventually(c, || {
        let got = http::status(c.node(id).http).map(|s| ids(&s["voters"]));
        match got.as_deref() == Some(voters) {
            true => Ok(()),
            false => Err(format!("node {id}: voters {got:?}, expected {voters:?}")),
        }
    });
}

/// What the load's writes became: the names acknowledged, and the names
/// whose every attempt said nothing was appended.
#[derive(Debug, Default)]
struct Written {
    acked: Vec<String>,
    failed: Vec<String>,
}

/// The load: `acks=all` topic creations until `stop`, over the nodes in
/// `nodes` (which grows as nodes join).
fn load(nodes: Nodes, stop: Arc<AtomicBool>) -> Written {
    let mut out = Written::default();
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
        match writer.write(&create_topic_body(&name), stopping).0 {
            Outcome::Acked { .. } => out.acked.push(name),
            Outcome::Failed { .. } => out.failed.push(name),
            Outcome::Unknown { .. } => {}
        }
    }
    out
}

/// The topics node `id` lists.
fn topics(c: &Cluster, id: u64) -> Option<Vec<String>> {
    let (_, v) = http::get_json(c.node(id).http, "/v1/topics", Duration::from_secs(5)).ok()?;
    Some(
        v["topics"]
            .as_array()?
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Every acknowledged write is on each of `members`, none that failed,
/// and they end on one applied offset and digest.
fn check_members(c: &Cluster, members: &[u64], w: &Written) {
    eventually(c, || {
        let views: Vec<(u64, u64, String)> = members
            .iter()
            .filter_map(|&id| {
                let s = http::status(c.node(id).http)?;
                let applied = s["applied_offset"].as_u64()?;
                Some((id, applied, s["digest"].as_str()?.to_string()))
            })
            .collect();
        let one = views.len() == members.len()
            && views
                .iter()
                .all(|v| (v.1, &v.2) == (views[0].1, &views[0].2));
        match one {
            true => Ok(()),
            false => Err(format!("members {members:?} do not converge: {views:?}")),
        }
    });
    for &id in members {
        let have = topics(c, id).unwrap_or_default();
        let missing: Vec<&String> = w.acked.iter().filter(|n| !have.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks {} acknowledged topics, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        let present: Vec<&String> = w.failed.iter().filter(|n| have.contains(n)).collect();
        assert!(
            present.is_empty(),
            "node {id} holds failed writes {present:?}"
        );
    }
}

#[test]
fn a_cluster_grows_from_3_to_5_voters_and_moves_off_its_leader_under_load() {
    let (mut c, nodes, (stop, writer)) = start_with_load();

    // Grow: each new node joins empty, is added, then promoted.
    for _ in 0..2 {
        grow(&mut c, &nodes);
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
    let mut written = writer.join().expect("the writer");
    assert!(
        !written.acked.is_empty(),
        "no write was acknowledged during the changes"
    );
    written.acked.push("after-the-move".to_string());
    check_members(&c, &remaining, &written);
    assert!(
        c.node_failures().is_empty(),
        "a node exited: {:?}",
        c.node_failures()
    );
}

/// Start a new node with `--join`, add it through the CLI (with its
/// directory id) and promote it; returns its id.
fn grow(c: &mut Cluster, nodes: &Nodes) -> u64 {
    let id = c.add_joiner();
    let n = c.node(id);
    let (repl, web) = (n.repl.to_string(), n.http.to_string());
    let status = http::status(n.http).expect("the joiner's status");
    let dir = status["directory_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(dir.len(), 32, "a directory id: {status}");
    assert!(
        !ids(&status["voters"]).contains(&id),
        "a joiner is not a voter: {status}"
    );
    let sid = id.to_string();
    let added = ctl_ok(
        c,
        &[
            "member",
            "add",
            "--id",
            &sid,
            "--replication-addr",
            &repl,
            "--http-addr",
            &web,
            "--directory-id",
            &dir,
        ],
    );
    assert!(
        added.contains(&format!("node {id} added as a learner")),
        "{added}"
    );
    nodes.lock().unwrap().push(c.node(id).http);
    let promoted = ctl_ok(c, &["member", "promote", &sid, "--wait-ms", "20000"]);
    assert!(promoted.contains("promoted to voter"), "{promoted}");
    id
}

/// The nodes the load writes to (it grows as nodes join).
type Nodes = Arc<Mutex<Vec<SocketAddr>>>;
/// The load's stop flag and its thread.
type Load = (Arc<AtomicBool>, std::thread::JoinHandle<Written>);

/// A TLS cluster of three with the load writing to it.
fn start_with_load() -> (Cluster, Nodes, Load) {
    let c = Cluster::start(ClusterOpts::fast(3));
    let nodes = Arc::new(Mutex::new(c.http_addrs()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (nodes, stop) = (nodes.clone(), stop.clone());
        std::thread::spawn(move || load(nodes, stop))
    };
    (c, nodes, (stop, writer))
}

#[test]
fn a_wiped_node_is_replaced_and_a_leader_killed_mid_change_loses_nothing() {
    let (mut c, nodes, (stop, writer)) = start_with_load();

    // A follower's disk dies: it is killed and wiped, removed, and a new
    // node (a new id, its own directory) takes its place.
    let leader = c.wait_leader(LIMIT);
    let dead = (1..=3).find(|&id| id != leader).unwrap();
    c.kill(dead);
    std::fs::remove_dir_all(&c.node(dead).data_dir).unwrap();
    ctl_ok(&c, &["member", "remove", &dead.to_string()]);
    nodes.lock().unwrap().retain(|a| *a != c.node(dead).http);
    let new = grow(&mut c, &nodes);
    let mut voters: Vec<u64> = (1..=3).filter(|&id| id != dead).chain([new]).collect();
    voters.sort_unstable();
    for &id in &voters {
        wait_voters(&c, id, &voters);
    }

    // The leader dies in the middle of a change: the other voters are
    // frozen, so the change it appends cannot commit; then it is killed
    // and they wake. The change is gone or committed, never half-made.
    let leader = c.wait_leader(LIMIT);
    let others: Vec<u64> = voters.iter().copied().filter(|&v| v != leader).collect();
    let joiner = c.add_joiner();
    let j = c.node(joiner);
    let body = serde_json::json!({
        "node_id": joiner,
        "replication_addr": j.repl.to_string(),
        "http_addr": j.http.to_string(),
    })
    .to_string();
    for &o in &others {
        c.stop(o);
    }
    let at = c.node(leader).http;
    let change = std::thread::spawn(move || http::post_once(at, "/v1/members", &body));
    // The leader appended it (it is in force there) before it dies.
    let deadline = Instant::now() + LIMIT;
    while http::status(at).map(|s| ids(&s["learners"])) != Some(vec![joiner]) {
        assert!(
            Instant::now() < deadline,
            "the leader never appended the change"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.kill(leader);
    for &o in &others {
        c.cont(o);
    }
    let outcome = change.join().expect("the change's request");
    assert!(
        !matches!(outcome, http::Attempt::Ok { .. }),
        "a change committed without a majority: {outcome:?}"
    );
    // A new leader among the others; the dead leader comes back as a
    // voter; the change is asked again and goes through.
    let new_leader = c.wait_leader(LIMIT);
    assert_ne!(new_leader, leader);
    c.restart(leader);
    nodes.lock().unwrap().push(c.node(joiner).http);
    let sid = joiner.to_string();
    let (repl, web) = (
        c.node(joiner).repl.to_string(),
        c.node(joiner).http.to_string(),
    );
    let (code, out, err) = ctl(
        &c,
        &[
            "member",
            "add",
            "--id",
            &sid,
            "--replication-addr",
            &repl,
            "--http-addr",
            &web,
        ],
    );
    assert!(
        code == 0 || err.contains("already_member"),
        "re-adding the learner: {out}\n{err}"
    );
    ctl_ok(&c, &["member", "promote", &sid, "--wait-ms", "20000"]);
    voters.push(joiner);
    for &id in &voters {
        wait_voters(&c, id, &voters);
    }

    stop.store(true, Ordering::Release);
    let written = writer.join().expect("the writer");
    assert!(!written.acked.is_empty(), "no write was acknowledged");
    check_members(&c, &voters, &written);
    let failures: Vec<_> = c
        .node_failures()
        .into_iter()
        .filter(|f| f.node != dead)
        .collect();
    assert!(failures.is_empty(), "a node exited: {failures:?}");
}
