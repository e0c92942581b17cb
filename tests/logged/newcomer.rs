//! What a newcomer running three nodes by hand must be told (issue 18
//! item 7, node side): a node that cannot reach a peer, or whose handshake
//! with it is refused, says so at the default log level (WARN, at most once
//! per peer per 30 s, naming the peer, the address and the reason), and
//! its status and metrics show the refused handshake instead of a normal
//! follower.

use metawal_testkit as common;

use std::time::Duration;

use common::rawpeer::{captured_logs, logged};
use common::{fast_config, wait_until, TestCluster};
use metawal_actors::http::{serve, HttpConfig};
use metawal_actors::{Node, NodeId};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(15);

/// The WARN lines of node `node` about peer `peer` containing `what` and
/// `mark` (something only this test's lines have, though each test of
/// this binary runs alone with its own log: `crate::serial`).
fn warnings(node: NodeId, peer: NodeId, what: &str, mark: &str) -> usize {
    let logs = captured_logs();
    let logs = logs.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| {
            l.contains(" WARN ")
                && l.contains(what)
                && l.contains(mark)
                && l.contains(&format!(" node={node} "))
                && l.contains(&format!(" peer={peer} "))
        })
        .count()
}

/// How many failed attempts node `node` counted with `peer`.
fn failures(node: &Node, peer: NodeId) -> u64 {
    node.metrics()
        .peer_connections()
        .iter()
        .find(|p| p.peer == peer)
        .map_or(0, |p| p.failures)
}

/// The value of the `/metrics` series starting with `series` on `node`.
async fn counter(node: &Node, series: &str) -> u64 {
    let Ok(status) = node.status().await else {
        return 0;
    };
    let text = node.metrics().encode(&(&status).into()).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// GET `path` from an HTTP API at `addr`, as JSON or text.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || match ureq::get(&url).call() {
        Ok(r) => r.into_string().unwrap_or_default(),
        Err(e) => format!("error: {e}"),
    })
    .await
    .unwrap_or_default()
}

#[actix::test]
async fn a_node_with_the_wrong_secret_shows_a_refused_handshake_in_status_metrics_and_logs() {
    let (_serial, logs) = crate::serial().await;
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    c.start_node(1).await;
    c.start_node(2).await;
    let leader = c.wait_leader(LIMIT).await;
    // Node 3 joins with another secret.
    c.start_node_with(3, |cfg| cfg.secret = b"not-the-cluster-secret".to_vec())
        .await;

    // The leader's follower status: not just "connecting".
    let l = c.node(leader).clone();
    wait_until(
        "the leader to see node 3's handshake refused",
        LIMIT,
        || {
            let l = l.clone();
            async move {
                l.status().await.is_ok_and(|s| {
                    s.follower(3).is_some_and(|f| {
                        f.connection.as_str() == "handshake_refused"
                            && f.connection.reason() == Some("secret_mismatch")
                    })
                })
            }
        },
    )
    .await;

    // Node 3's own view: it refused the leader's Hello.
    let bad = c.node(3).clone();
    wait_until(
        "node 3 to show its leader's handshake refused",
        LIMIT,
        || {
            let found = bad.metrics().peer_connections().iter().any(|p| {
                p.peer == leader
                    && p.via.as_str() == "inbound"
                    && p.connection.reason() == Some("secret_mismatch")
            });
            async move { found }
        },
    )
    .await;

    // The same through the HTTP API: /v1/status and /metrics.
    let bad_http = serve(bad.clone(), HttpConfig::new(([127, 0, 0, 1], 0).into()))
        .await
        .expect("node 3's HTTP API serves");
    let leader_http = serve(l.clone(), HttpConfig::new(([127, 0, 0, 1], 0).into()))
        .await
        .expect("the leader's HTTP API serves");
    let status: Value =
        serde_json::from_str(&get(bad_http.addr(), "/v1/status").await).unwrap_or(Value::Null);
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    assert!(
        peers.iter().any(|p| p["peer"] == leader
            && p["connection"]["state"] == "handshake_refused"
            && p["connection"]["reason"] == "secret_mismatch"
            && p["connection"]["detail"].is_string()),
        "node 3's /v1/status: {status}"
    );
    let status: Value =
        serde_json::from_str(&get(leader_http.addr(), "/v1/status").await).unwrap_or(Value::Null);
    let followers = status["followers"].as_array().cloned().unwrap_or_default();
    assert!(
        followers.iter().any(|f| f["peer"] == 3
            && f["connection"]["state"] == "handshake_refused"
            && f["connection"]["reason"] == "secret_mismatch"),
        "the leader's /v1/status: {status}"
    );
    let metrics = get(leader_http.addr(), "/metrics").await;
    for line in [
        "metawal_peer_connection{peer=\"3\",state=\"handshake_refused\"} 1",
        "metawal_peer_connection_failures_total{peer=\"3\",state=\"handshake_refused\",reason=\"secret_mismatch\"}",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }

    // Logged at WARN with the reason, once however many attempts failed.
    wait_until("the leader to retry node 3 a few times", LIMIT, || {
        let l = l.clone();
        async move {
            let series = "metawal_peer_connection_failures_total{peer=\"3\",state=\"handshake_refused\",reason=\"secret_mismatch\"}";
            counter(&l, series).await >= 4
        }
    })
    .await;
    assert!(
        logged(
            &logs,
            &[
                " WARN ",
                "handshake with peer refused",
                "secret_mismatch",
                "peer=3"
            ]
        ),
        "no WARN about node 3's refused handshake in:\n{}",
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner()))
    );
    let n = warnings(leader, 3, "handshake with peer refused", "secret_mismatch");
    assert_eq!(n, 1, "{n} WARN lines about node 3 in less than 30 s");

    bad_http.stop().await;
    leader_http.stop().await;
    c.shutdown().await;
}

#[actix::test]
async fn a_peer_that_is_not_running_is_reported_unreachable_at_warn_once() {
    let (_serial, logs) = crate::serial().await;
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    // Node 3 is configured but never started: connections to its port are
    // refused.
    c.start_node(1).await;
    c.start_node(2).await;
    let leader = c.wait_leader(LIMIT).await;
    let l = c.node(leader).clone();
    let addr3 = c.addrs[&3];
    wait_until("the leader to find node 3 unreachable", LIMIT, || {
        let l = l.clone();
        async move {
            l.status().await.is_ok_and(|s| {
                s.follower(3).is_some_and(|f| {
                    f.connection.as_str() == "unreachable"
                        && f.connection.reason() == Some("connection_refused")
                })
            })
        }
    })
    .await;
    wait_until("the leader to retry node 3 a few times", LIMIT, || {
        let n = failures(&l, 3);
        async move { n >= 4 }
    })
    .await;
    assert!(
        logged(
            &logs,
            &[
                " WARN ",
                "cannot reach peer",
                &format!("node={leader} "),
                "peer=3",
                &addr3.to_string(),
                "connection_refused",
            ]
        ),
        "no WARN naming node 3, its address and the reason"
    );
    let n = warnings(leader, 3, "cannot reach peer", &format!("addr={addr3} "));
    assert_eq!(n, 1, "{n} WARN lines about node 3 in less than 30 s");

    // Node 3 starts: the leader reports it connected, and says so.
    c.start_node(3).await;
    wait_until("the leader to connect to node 3", LIMIT, || {
        let l = l.clone();
        async move {
            l.status().await.is_ok_and(|s| {
                s.follower(3)
                    .is_some_and(|f| f.connection.as_str() == "connected")
            })
        }
    })
    .await;
    wait_until("the restored connection to be logged", LIMIT, || {
        let ok = logged(
            &logs,
            &[
                "connection to peer restored",
                &format!("node={leader} "),
                "peer=3",
            ],
        );
        async move { ok }
    })
    .await;
    c.shutdown().await;
}
