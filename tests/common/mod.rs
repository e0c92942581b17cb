//! Shared harness for the actor-level tests: a cluster of nodes in one
//! process, each on its own Arbiter, on 127.0.0.1 with temp dirs, optionally
//! with a [`proxy::FaultProxy`] between the leader and some followers.

#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use metawal_actors::{Command, MetadataChanged, Node, NodeConfig, NodeId, ReplicationConfig};
use proxy::FaultProxy;

/// The cluster id and secret every test node uses.
pub const CLUSTER: &str = "test-cluster";
/// The shared secret.
pub const SECRET: &[u8] = b"test-secret";

/// The polling loop the examples and the bench use too.
#[path = "../../examples/support/mod.rs"]
mod support;

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

/// A free loopback port.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// Start `cfg` on a new Arbiter.
pub async fn start_node(cfg: NodeConfig) -> Result<(Node, Arbiter), metawal_actors::NodeError> {
    let arbiter = Arbiter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    arbiter.spawn(async move {
        let _ = tx.send(Node::start(cfg).await);
    });
    let node = rx.await.expect("arbiter dropped the start")?;
    Ok((node, arbiter))
}

/// Nodes `1..=n`, node 1 the first leader.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// Each node's own replication address.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    /// Proxies in front of some followers (the leader connects through them).
    pub proxies: BTreeMap<NodeId, FaultProxy>,
    pub replication: ReplicationConfig,
    nodes: BTreeMap<NodeId, (Node, Arbiter)>,
}

impl TestCluster {
    /// Start `n` nodes; followers in `proxied` are reached through a proxy.
    pub async fn start(n: u64, proxied: &[NodeId], replication: ReplicationConfig) -> TestCluster {
        let mut c = TestCluster::new(n, proxied, replication).await;
        for id in (2..=n).chain([1]) {
            c.start_node(id).await;
        }
        c
    }

    /// Prepare `n` nodes (addresses, data dirs, proxies) without starting
    /// any: start them with [`TestCluster::start_node`].
    pub async fn new(n: u64, proxied: &[NodeId], replication: ReplicationConfig) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let addrs: BTreeMap<NodeId, SocketAddr> = (1..=n).map(|id| (id, free_addr())).collect();
        let mut proxies = BTreeMap::new();
        for &id in proxied {
            proxies.insert(id, FaultProxy::start(addrs[&id]).await.expect("proxy"));
        }
        TestCluster {
            dir,
            addrs,
            proxies,
            replication,
            nodes: BTreeMap::new(),
        }
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
        cfg
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

/// One `MetadataChanged` as a [`Recorder`] saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub offset: u64,
    pub epoch: u64,
    pub command: Command,
    pub at: Instant,
}

/// An actor that records every `MetadataChanged` it receives.
pub struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<MetadataChanged> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: MetadataChanged, _ctx: &mut Context<Self>) {
        self.seen.lock().unwrap().push(Seen {
            offset: msg.offset,
            epoch: msg.epoch,
            command: msg.command,
            at: Instant::now(),
        });
    }
}

/// What a [`Recorder`] subscribed to a node has seen so far.
#[derive(Clone)]
pub struct Recording {
    seen: Arc<Mutex<Vec<Seen>>>,
    _addr: Addr<Recorder>,
}

impl Recording {
    /// Start a recorder (with a mailbox that fits any test's burst) on the
    /// current arbiter and subscribe it to `node`.
    pub fn subscribe(node: &Node) -> Recording {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let addr = Recorder::create(move |ctx| {
            ctx.set_mailbox_capacity(1_000_000);
            Recorder { seen: s }
        });
        node.subscribe(addr.clone().recipient()).expect("subscribe");
        Recording { seen, _addr: addr }
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// (offset, command) pairs seen so far.
    pub fn pairs(&self) -> Vec<(u64, Command)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| (s.offset, s.command.clone()))
            .collect()
    }

    /// Highest offset seen (0 if none).
    pub fn last_offset(&self) -> u64 {
        self.seen.lock().unwrap().last().map_or(0, |s| s.offset)
    }

    /// Wait until an entry at `offset` or beyond was seen.
    pub async fn wait_for(&self, offset: u64, limit: Duration) {
        wait_until(
            &format!("a subscriber to see offset {offset}"),
            limit,
            || {
                let ok = self.last_offset() >= offset;
                async move { ok }
            },
        )
        .await;
    }
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
        session_timeout: Duration::from_millis(400),
        replica_lag_time_max: Duration::from_millis(500),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        ..ReplicationConfig::default()
    }
}
