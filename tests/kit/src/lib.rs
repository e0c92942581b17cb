//! # metawal-testkit — the one test kit of metawal
//!
//! Every harness the tests, the bench and the demo need, in one place, so a
//! fix to how a test waits, starts a node or plays a fault reaches all of
//! them:
//!
//! - [`TestCluster`]: a cluster of nodes in one process, each on its own
//!   Arbiter, on 127.0.0.1 with temp dirs, optionally with a
//!   [`proxy::FaultProxy`] between the leader and some followers;
//! - [`support`]: polling with a deadline, starting a node on its own
//!   Arbiter, reserved loopback ports, a recorder of what a node applied;
//! - [`proxy`]: the fault-injecting TCP proxy;
//! - [`rawpeer`]: a hand-driven replication peer that speaks raw frames;
//! - [`certs`]: a throwaway CA and certificates made at run time;
//! - [`procs`]: real `metawal-node` processes and the history checker.
//!
//! Dev-only: no package depends on it outside `[dev-dependencies]`.

pub mod certs;
pub mod procs;
pub mod proxy;
pub mod rawpeer;
pub mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use actix::prelude::*;
use metawal_actors::{Command, Node, NodeConfig, NodeId, ReplicationConfig};
use proxy::FaultProxy;

/// The cluster id and secret every test node uses.
pub const CLUSTER: &str = "test-cluster";
/// The shared secret.
pub const SECRET: &[u8] = b"test-secret";

pub use support::{Recording, ReservedPort};

/// Poll `cond` until it holds; panic with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if let Err(e) = support::wait_for(what, limit, cond).await {
        panic!("{e}");
    }
}

/// A loopback port reserved for as long as the value lives (see
/// [`support::ReservedPort`]).
pub fn reserve() -> ReservedPort {
    ReservedPort::new().expect("a free loopback port")
}

/// Start `cfg` on a new Arbiter.
pub async fn start_node(cfg: NodeConfig) -> Result<(Node, Arbiter), String> {
    support::start_on_arbiter(cfg).await
}

/// Subscribe a recorder (keeping everything a test writes) to `node`.
pub fn record(node: &Node) -> Recording {
    Recording::start(node, None, 1_000_000, 1_000_000).expect("subscribe")
}

/// Wait until `rec` saw an entry at `offset` or beyond; panic after `limit`.
pub async fn wait_seen(rec: &Recording, offset: u64, limit: Duration) {
    if let Err(e) = rec.wait_for(offset, limit).await {
        panic!("{e}");
    }
}

/// Nodes `1..=n`. [`TestCluster::start`] makes node 1 the leader (by
/// election, then a transfer if another node won).
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// Each node's own replication address.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    /// The ports behind `addrs`, held for the cluster's lifetime.
    ports: BTreeMap<NodeId, ReservedPort>,
    /// Proxies in front of some followers (the leader connects through them).
    pub proxies: BTreeMap<NodeId, FaultProxy>,
    pub replication: ReplicationConfig,
    nodes: BTreeMap<NodeId, (Node, Arbiter)>,
    /// With [`TestCluster::new_tls`]: the CA that issues node certificates.
    pub tls: Option<certs::TestCa>,
}

impl TestCluster {
    /// Start `n` nodes; followers in `proxied` are reached through a proxy.
    pub async fn start(n: u64, proxied: &[NodeId], replication: ReplicationConfig) -> TestCluster {
        let mut c = TestCluster::new(n, proxied, replication).await;
        for id in 1..=n {
            c.start_node(id).await;
        }
        c.make_leader(1).await;
        c
    }

    /// Like [`TestCluster::start`], with mutual TLS between the nodes.
    pub async fn start_tls(n: u64, replication: ReplicationConfig) -> TestCluster {
        let mut c = TestCluster::new_tls(n, &[], replication).await;
        for id in 1..=n {
            c.start_node(id).await;
        }
        c.make_leader(1).await;
        c
    }

    /// Wait until some running node leads and every running node knows it;
    /// returns it.
    pub async fn wait_leader(&self, limit: Duration) -> NodeId {
        let running: Vec<Node> = self.nodes.values().map(|(n, _)| n.clone()).collect();
        match support::wait_leader(&running, limit).await {
            Ok((id, _)) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// Wait for a leader, and hand leadership to `id` if another node won.
    pub async fn make_leader(&self, id: NodeId) {
        let limit = Duration::from_secs(20);
        let l = self.wait_leader(limit).await;
        if l != id {
            self.node(l)
                .transfer_leadership(id)
                .await
                .unwrap_or_else(|e| panic!("transfer from {l} to {id}: {e}"));
        }
        self.wait_isr_of(id, self.nodes.len(), limit).await;
    }

    /// Prepare `n` nodes (addresses, data dirs, proxies) without starting
    /// any: start them with [`TestCluster::start_node`].
    pub async fn new(n: u64, proxied: &[NodeId], replication: ReplicationConfig) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: BTreeMap<NodeId, ReservedPort> = (1..=n).map(|id| (id, reserve())).collect();
        let addrs: BTreeMap<NodeId, SocketAddr> =
            ports.iter().map(|(&id, p)| (id, p.addr())).collect();
        let mut proxies = BTreeMap::new();
        for &id in proxied {
            proxies.insert(id, FaultProxy::start(addrs[&id]).await.expect("proxy"));
        }
        TestCluster {
            dir,
            addrs,
            ports,
            proxies,
            replication,
            nodes: BTreeMap::new(),
            tls: None,
        }
    }

    /// Like [`TestCluster::new`], with mutual TLS between the nodes: a
    /// throwaway CA in the cluster's temp dir issues each node's
    /// certificate when it starts.
    pub async fn new_tls(
        n: u64,
        proxied: &[NodeId],
        replication: ReplicationConfig,
    ) -> TestCluster {
        let mut c = TestCluster::new(n, proxied, replication).await;
        c.tls = Some(certs::TestCa::new(c.dir.path(), "cluster", CLUSTER).expect("test CA"));
        c
    }

    /// The config node `id` starts with.
    pub fn config(&self, id: NodeId) -> NodeConfig {
        let mut cfg = NodeConfig::new(
            id,
            CLUSTER,
            SECRET.to_vec(),
            self.data_dir(id),
            self.addrs[&id],
        );
        cfg.peers = self
            .addrs
            .keys()
            .filter(|&&p| p != id)
            .map(|&p| (p, self.proxies.get(&p).map_or(self.addrs[&p], |x| x.addr())))
            .collect();
        cfg.replication = self.replication.clone();
        cfg.listener = Some(self.ports[&id].bound().expect("listen on a reserved port"));
        match &self.tls {
            Some(ca) => cfg.tls = Some(ca.node(id).expect("node certificate")),
            None => cfg.insecure_plaintext = true,
        }
        cfg
    }

    /// A new listening socket on node `id`'s reserved port, for a test
    /// that plays that node itself (an impostor, a raw peer): nothing else
    /// can bind the port while the cluster holds it.
    pub fn listener(&self, id: NodeId) -> std::net::TcpListener {
        self.ports[&id]
            .listener()
            .expect("listen on a reserved port")
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// (Re)start node `id`.
    pub async fn start_node(&mut self, id: NodeId) {
        let (node, arbiter) = start_node(self.config(id)).await.expect("node starts");
        self.nodes.insert(id, (node, arbiter));
    }

    /// (Re)start node `id` with its config changed by `f`.
    pub async fn start_node_with(&mut self, id: NodeId, f: impl FnOnce(&mut NodeConfig)) {
        let mut cfg = self.config(id);
        f(&mut cfg);
        let (node, arbiter) = start_node(cfg).await.expect("node starts");
        self.nodes.insert(id, (node, arbiter));
    }

    /// Wait until node `leader` leads with an ISR of `n`.
    pub async fn wait_isr_of(&self, leader: NodeId, n: usize, limit: Duration) {
        let node = self.node(leader).clone();
        wait_until(
            &format!("node {leader} to lead an ISR of {n}"),
            limit,
            || {
                let node = node.clone();
                async move {
                    node.status()
                        .await
                        .is_ok_and(|s| s.role == metawal_actors::Role::Leader && s.isr_len == n)
                }
            },
        )
        .await;
    }

    /// Node `id` (panics if stopped).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes.get(&id).expect("node is running").0
    }

    /// Whether node `id` is running.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The proxy in front of `id`.
    pub fn proxy(&self, id: NodeId) -> &FaultProxy {
        &self.proxies[&id]
    }

    /// Stop node `id` as a crash would (no resignation) and its arbiter.
    pub async fn crash_node(&mut self, id: NodeId) {
        if let Some((node, arbiter)) = self.nodes.remove(&id) {
            node.crash().await;
            arbiter.stop();
        }
    }

    /// Shut node `id` down and stop its arbiter.
    pub async fn stop_node(&mut self, id: NodeId) {
        if let Some((node, arbiter)) = self.nodes.remove(&id) {
            node.shutdown().await;
            arbiter.stop();
        }
    }

    /// Wait until the leader's ISR has `n` members.
    pub async fn wait_isr(&self, n: usize, limit: Duration) {
        let leader = self.node(1).clone();
        wait_until(&format!("ISR of {n}"), limit, || {
            let leader = leader.clone();
            async move {
                leader
                    .status()
                    .await
                    .map(|s| s.isr_len == n)
                    .unwrap_or(false)
            }
        })
        .await;
    }

    /// Stop every node.
    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }
}

/// Wait until every running node has applied the leader's (node 1's) log end,
/// and return the leader's log end.
pub async fn wait_converged(c: &TestCluster, ids: &[NodeId], limit: Duration) -> u64 {
    let end = c.node(1).status().await.expect("leader status").log_end;
    for &id in ids {
        let view = c.node(id).view();
        wait_until(&format!("node {id} to apply offset {end}"), limit, || {
            let ok = view.applied_offset() >= end;
            async move { ok }
        })
        .await;
    }
    end
}

/// A `CreateTopic` command.
pub fn create_topic(name: &str, partitions: u32, rf: u32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        partition_count: partitions,
        replication_factor: rf,
    }
}

/// Tunables that make failure tests quick.
pub fn fast_config() -> ReplicationConfig {
    ReplicationConfig {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout: Duration::from_millis(300),
        session_timeout: Duration::from_millis(400),
        replica_lag_time_max: Duration::from_millis(500),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        ..ReplicationConfig::default()
    }
}
