//! A planned leadership transfer and clean shutdowns close TLS peer
//! connections without a WARN line: a node closing a connection on purpose
//! sends TLS `close_notify`, so its peer reads a clean end of stream, not
//! "peer closed connection without sending TLS close_notify" (issue 18
//! item 7). The assertion reads every captured log line: the test runs
//! alone (`crate::serial`).

use metawal_testkit as common;

use std::time::Duration;

use common::rawpeer::{captured_logs, logged};
use common::{fast_config, wait_until, TestCluster};
use metawal_actors::NodeId;

const LIMIT: Duration = Duration::from_secs(20);

/// WARN lines about connections closing.
fn close_warnings() -> Vec<String> {
    let logs = captured_logs();
    let logs = logs.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| l.contains(" WARN "))
        .filter(|l| {
            ["close_notify", "ended abruptly", "bad data", "write to"]
                .iter()
                .any(|w| l.contains(w))
        })
        .map(str::to_string)
        .collect()
}

#[actix::test]
async fn a_transfer_and_clean_shutdowns_log_no_warning_about_closed_connections() {
    let (_serial, logs) = crate::serial().await;
    let mut c = TestCluster::start_tls(3, fast_config()).await;
    logs.lock().unwrap_or_else(|p| p.into_inner()).clear();

    // A planned transfer: every connection of epoch 1 ends on purpose.
    c.node(1)
        .transfer_leadership(2)
        .await
        .unwrap_or_else(|e| panic!("transfer to node 2: {e}"));
    // Both followers attached to node 2: their sessions from node 1 are
    // gone and node 1's links stopped.
    c.wait_isr_of(2, 3, LIMIT).await;

    // A follower shuts down: the leader reads its close.
    c.stop_node(1).await;
    let leader = c.node(2).clone();
    wait_until("node 2 to see node 1's connection closed", LIMIT, || {
        let leader = leader.clone();
        async move {
            leader
                .status()
                .await
                .is_ok_and(|s| s.follower(1).is_some_and(|f| !f.connected))
        }
    })
    .await;

    // The leader shuts down: node 3 reads its close.
    c.stop_node(2).await;
    let closed = |node: NodeId, peer: NodeId| {
        logged(
            &logs,
            &[
                "replication session closed",
                &format!("node={node} "),
                &format!("peer=Some({peer})"),
            ],
        )
    };
    wait_until("node 3's session from node 2 to close", LIMIT, || {
        let ok = closed(3, 2);
        async move { ok }
    })
    .await;
    c.stop_node(3).await;

    let warnings = close_warnings();
    assert!(
        warnings.is_empty(),
        "planned closes logged warnings:\n{}",
        warnings.join("\n")
    );
}
