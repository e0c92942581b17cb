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
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;
use metawal_actors::{Acks, Appended, Command, Node, NodeConfig, NodeId, ReplicationConfig};
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

/// Where a [`TestCluster`] keeps its nodes' data (`node-<id>` under it) and
/// its CA.
#[derive(Debug)]
pub enum DataDir {
    /// A temporary directory, removed with the cluster.
    Temp(tempfile::TempDir),
    /// A directory the caller named ([`ClusterSpec::keep_dir`]), kept.
    Kept(PathBuf),
}

impl DataDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            DataDir::Temp(d) => d.path(),
            DataDir::Kept(p) => p,
        }
    }
}

/// Which nodes get a subscriber ([`Recording`]) each time they start, and
/// its sizes (see [`Recording::start`]).
#[derive(Debug, Clone)]
pub struct Subscribers {
    /// The nodes to subscribe to.
    pub nodes: Vec<NodeId>,
    /// Changes each recording keeps.
    pub keep: usize,
    /// Its mailbox capacity (the store drops a subscriber whose mailbox is
    /// full).
    pub mailbox: usize,
}

#[derive(Debug, Clone)]
enum DirSpec {
    Temp {
        parent: Option<PathBuf>,
        prefix: String,
    },
    Keep(PathBuf),
}

/// What a [`TestCluster`] is made of: [`TestCluster::builder`] makes one
/// with the tests' defaults (plaintext, default tunables, [`CLUSTER`] and
/// [`SECRET`], a temp dir, no proxies, no subscribers); its methods change
/// one thing each; [`ClusterSpec::prepare`] and [`ClusterSpec::start`]
/// report failures as `Err` (the bench and the demo print them) where
/// [`TestCluster::start`] and friends panic.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    n: u64,
    proxied: Vec<NodeId>,
    replication: ReplicationConfig,
    tls_ca: Option<String>,
    cluster_id: String,
    secret: Vec<u8>,
    dir: DirSpec,
    subscribers: Option<Subscribers>,
}

impl ClusterSpec {
    /// Every other node reaches these nodes through a [`FaultProxy`] (each
    /// on its own Arbiter).
    pub fn proxied(mut self, ids: &[NodeId]) -> ClusterSpec {
        self.proxied = ids.to_vec();
        self
    }

    /// Every node's replication and election tunables.
    pub fn replication(mut self, replication: ReplicationConfig) -> ClusterSpec {
        self.replication = replication;
        self
    }

    /// Mutual TLS between the nodes: a throwaway CA named `ca_name`, made
    /// in the data dir, issues each node's certificate when it starts.
    pub fn tls(mut self, ca_name: &str) -> ClusterSpec {
        self.tls_ca = Some(ca_name.to_string());
        self
    }

    /// [`ClusterSpec::tls`] if `on`, plaintext otherwise.
    pub fn tls_if(self, on: bool, ca_name: &str) -> ClusterSpec {
        if on {
            self.tls(ca_name)
        } else {
            self
        }
    }

    /// The cluster id (certificates name nodes `node-<id>.<cluster-id>`)
    /// and the shared secret.
    pub fn cluster_id(mut self, id: &str, secret: &[u8]) -> ClusterSpec {
        self.cluster_id = id.to_string();
        self.secret = secret.to_vec();
        self
    }

    /// Data in a new temporary directory `<prefix>…` under `parent`.
    pub fn temp_dir_in(mut self, parent: &Path, prefix: &str) -> ClusterSpec {
        self.dir = DirSpec::Temp {
            parent: Some(parent.to_path_buf()),
            prefix: prefix.to_string(),
        };
        self
    }

    /// Data in `dir` itself, kept after the cluster stops (a restarted
    /// cluster finds its nodes' logs there).
    pub fn keep_dir(mut self, dir: &Path) -> ClusterSpec {
        self.dir = DirSpec::Keep(dir.to_path_buf());
        self
    }

    /// Subscribe a [`Recording`] (on the node's own Arbiter) to each of
    /// `subscribers.nodes` every time it starts.
    pub fn subscribe(mut self, subscribers: Subscribers) -> ClusterSpec {
        self.subscribers = Some(subscribers);
        self
    }

    fn make_dir(&self) -> Result<DataDir, String> {
        match &self.dir {
            DirSpec::Keep(p) => std::fs::create_dir_all(p)
                .map(|()| DataDir::Kept(p.clone()))
                .map_err(|e| format!("create {}: {e}", p.display())),
            DirSpec::Temp { parent, prefix } => {
                let mut b = tempfile::Builder::new();
                b.prefix(prefix);
                match parent {
                    Some(parent) => b
                        .tempdir_in(parent)
                        .map_err(|e| format!("temp dir in {}: {e}", parent.display())),
                    None => b.tempdir().map_err(|e| format!("temp dir: {e}")),
                }
                .map(DataDir::Temp)
            }
        }
    }

    /// Reserve the nodes' ports, make the data dir (and the CA), start the
    /// proxies; start no node (see [`TestCluster::try_start_node`]).
    pub async fn prepare(self) -> Result<TestCluster, String> {
        let dir = self.make_dir()?;
        let tls = match &self.tls_ca {
            Some(name) => Some(
                certs::TestCa::new(dir.path(), name, &self.cluster_id)
                    .map_err(|e| format!("the cluster's certificates: {e}"))?,
            ),
            None => None,
        };
        let mut ports = BTreeMap::new();
        for id in 1..=self.n {
            ports.insert(id, ReservedPort::new()?);
        }
        let addrs: BTreeMap<NodeId, SocketAddr> =
            ports.iter().map(|(&id, p)| (id, p.addr())).collect();
        let mut c = TestCluster {
            dir,
            addrs,
            ports,
            proxies: BTreeMap::new(),
            proxy_arbiters: Vec::new(),
            replication: self.replication.clone(),
            nodes: BTreeMap::new(),
            recordings: BTreeMap::new(),
            tls,
            spec: self,
        };
        for id in c.spec.proxied.clone() {
            let target = c.try_addr(id)?;
            let (proxy, arbiter) = support::on_arbiter("fault proxy", async move {
                FaultProxy::start(target)
                    .await
                    .map_err(|e| format!("proxy start: {e}"))
            })
            .await?;
            c.proxies.insert(id, proxy);
            c.proxy_arbiters.push(arbiter);
        }
        Ok(c)
    }

    /// [`ClusterSpec::prepare`], start every node, and make node 1 the
    /// leader with the full ISR; on failure stop whatever started.
    pub async fn start(self) -> Result<TestCluster, String> {
        let mut c = self.prepare().await?;
        let ids: Vec<NodeId> = c.addrs.keys().copied().collect();
        let mut started = Ok(());
        for id in ids {
            started = c.try_start_node(id).await;
            if started.is_err() {
                break;
            }
        }
        if started.is_ok() {
            started = c.try_make_leader(1).await;
        }
        match started {
            Ok(()) => Ok(c),
            Err(e) => {
                c.shutdown().await;
                Err(e)
            }
        }
    }
}

/// Nodes `1..=n`. [`TestCluster::start`] makes node 1 the leader (by
/// election, then a transfer if another node won).
///
/// The panicking constructors and methods are the tests' short calls; the
/// bench and the demo, which report failures, use [`TestCluster::builder`]
/// and the `try_` methods.
pub struct TestCluster {
    pub dir: DataDir,
    /// Each node's own replication address.
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    /// The ports behind `addrs`, held for the cluster's lifetime.
    ports: BTreeMap<NodeId, ReservedPort>,
    /// Proxies in front of some followers (the other nodes connect through
    /// them).
    pub proxies: BTreeMap<NodeId, FaultProxy>,
    /// The Arbiters the proxies run on (stopped with the cluster).
    proxy_arbiters: Vec<Arbiter>,
    pub replication: ReplicationConfig,
    nodes: BTreeMap<NodeId, (Node, Arbiter)>,
    /// The running subscribed nodes' recordings.
    recordings: BTreeMap<NodeId, Recording>,
    /// With TLS: the CA that issues node certificates.
    pub tls: Option<certs::TestCa>,
    spec: ClusterSpec,
}

impl TestCluster {
    /// A spec of `n` nodes with the tests' defaults.
    pub fn builder(n: u64) -> ClusterSpec {
        ClusterSpec {
            n,
            proxied: Vec::new(),
            replication: ReplicationConfig::default(),
            tls_ca: None,
            cluster_id: CLUSTER.to_string(),
            secret: SECRET.to_vec(),
            dir: DirSpec::Temp {
                parent: None,
                prefix: ".tmp".to_string(),
            },
            subscribers: None,
        }
    }

    /// Start `n` nodes; followers in `proxied` are reached through a proxy.
    pub async fn start(n: u64, proxied: &[NodeId], replication: ReplicationConfig) -> TestCluster {
        let spec = TestCluster::builder(n).proxied(proxied);
        or_panic(spec.replication(replication).start().await)
    }

    /// Like [`TestCluster::start`], with mutual TLS between the nodes.
    pub async fn start_tls(n: u64, replication: ReplicationConfig) -> TestCluster {
        let spec = TestCluster::builder(n).tls("cluster");
        or_panic(spec.replication(replication).start().await)
    }

    /// Prepare `n` nodes (addresses, data dirs, proxies) without starting
    /// any: start them with [`TestCluster::start_node`].
    pub async fn new(n: u64, proxied: &[NodeId], replication: ReplicationConfig) -> TestCluster {
        let spec = TestCluster::builder(n).proxied(proxied);
        or_panic(spec.replication(replication).prepare().await)
    }

    /// Like [`TestCluster::new`], with mutual TLS between the nodes: a
    /// throwaway CA in the cluster's temp dir issues each node's
    /// certificate when it starts.
    pub async fn new_tls(
        n: u64,
        proxied: &[NodeId],
        replication: ReplicationConfig,
    ) -> TestCluster {
        let spec = TestCluster::builder(n).proxied(proxied).tls("cluster");
        or_panic(spec.replication(replication).prepare().await)
    }

    /// Wait until some running node leads and every running node knows it;
    /// returns it and its epoch.
    pub async fn try_wait_leader(&self, limit: Duration) -> Result<(NodeId, u64), String> {
        let running: Vec<Node> = self.nodes.values().map(|(n, _)| n.clone()).collect();
        support::wait_leader(&running, limit).await
    }

    /// Propose `command` on whichever running node leads, until one takes
    /// it or `limit` passes; returns the node that did. A refusal after
    /// which nothing was appended (no leader yet, a leader that just lost
    /// its quorum on a loaded machine: [`Appended::No`]) is retried on the
    /// then-current leader; an error after which the entry may be in the
    /// log ([`Appended::Maybe`]) is returned at once, never re-sent.
    pub async fn try_propose_on_leader(
        &self,
        command: Command,
        acks: Acks,
        limit: Duration,
    ) -> Result<NodeId, String> {
        let deadline = std::time::Instant::now() + limit;
        let mut last = String::from("no leader");
        loop {
            let leader = self
                .nodes
                .iter()
                .find(|(_, (n, _))| n.role() == metawal_actors::Role::Leader)
                .map(|(&id, (n, _))| (id, n.clone()));
            if let Some((id, node)) = leader {
                match node.propose(command.clone(), acks).await {
                    Ok(_) => return Ok(id),
                    Err(e) if e.appended() == Appended::Maybe => {
                        return Err(format!("node {id}: {e} (may be in the log: not re-sent)"))
                    }
                    Err(e) => last = format!("node {id}: {e}"),
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "no leader took the write within {limit:?}; last: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// [`TestCluster::try_wait_leader`]'s leader; panics on failure.
    pub async fn wait_leader(&self, limit: Duration) -> NodeId {
        or_panic(self.try_wait_leader(limit).await).0
    }

    /// Wait for a leader, hand leadership to `id` if another node won, and
    /// wait until `id` leads every running node in its ISR.
    pub async fn try_make_leader(&self, id: NodeId) -> Result<(), String> {
        let limit = Duration::from_secs(20);
        let (l, _) = self.try_wait_leader(limit).await?;
        if l != id {
            self.try_node(l)?
                .transfer_leadership(id)
                .await
                .map_err(|e| format!("transfer from node {l} to node {id}: {e}"))?;
        }
        self.try_wait_isr_of(id, self.nodes.len(), limit).await
    }

    /// [`TestCluster::try_make_leader`]; panics on failure.
    pub async fn make_leader(&self, id: NodeId) {
        or_panic(self.try_make_leader(id).await)
    }

    fn try_addr(&self, id: NodeId) -> Result<SocketAddr, String> {
        self.addrs
            .get(&id)
            .copied()
            .ok_or_else(|| format!("the cluster has no node {id}"))
    }

    /// The config node `id` starts with (a new listening socket on its
    /// reserved port, its certificate with TLS).
    pub fn try_config(&self, id: NodeId) -> Result<NodeConfig, String> {
        let spec = &self.spec;
        let data = self.data_dir(id);
        let mut cfg = NodeConfig::new(
            id,
            &spec.cluster_id,
            spec.secret.clone(),
            data,
            self.try_addr(id)?,
        );
        cfg.peers = self
            .addrs
            .iter()
            .filter(|&(&p, _)| p != id)
            .map(|(&p, &a)| (p, self.proxies.get(&p).map_or(a, |x| x.addr())))
            .collect();
        cfg.replication = self.replication.clone();
        // Off: these tests count log entries and compare applied offsets,
        // and a leader's own pin entry would land at a time of its own
        // choosing. `tests/actors/members.rs` turns it on where it is the
        // subject (the process harness runs metawal-node's default, on).
        cfg.pin_directories = false;
        let port = &self.ports[&id];
        cfg.listener = Some(port.bound().map_err(|e| format!("node {id}: {e}"))?);
        match &self.tls {
            Some(ca) => {
                let files = ca.node(id);
                cfg.tls = Some(files.map_err(|e| format!("node {id}'s certificate: {e}"))?)
            }
            None => cfg.insecure_plaintext = true,
        }
        Ok(cfg)
    }

    /// [`TestCluster::try_config`]; panics on failure.
    pub fn config(&self, id: NodeId) -> NodeConfig {
        or_panic(self.try_config(id))
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

    /// (Re)start node `id` with its config changed by `f`, and subscribe
    /// its recording if the spec asks for one.
    pub async fn try_start_node_with(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut NodeConfig),
    ) -> Result<(), String> {
        let mut cfg = self.try_config(id)?;
        f(&mut cfg);
        let (node, arbiter) = start_node(cfg).await?;
        if let Some(s) = self.spec.subscribers.as_ref() {
            if s.nodes.contains(&id) {
                let rec = Recording::start(&node, Some(&arbiter.handle()), s.keep, s.mailbox);
                let rec = rec.map_err(|e| format!("node {id}: {e}"));
                match rec {
                    Ok(rec) => self.recordings.insert(id, rec),
                    Err(e) => {
                        node.shutdown().await;
                        arbiter.stop();
                        return Err(e);
                    }
                };
            }
        }
        self.nodes.insert(id, (node, arbiter));
        Ok(())
    }

    /// (Re)start node `id`.
    pub async fn try_start_node(&mut self, id: NodeId) -> Result<(), String> {
        self.try_start_node_with(id, |_| {}).await
    }

    /// [`TestCluster::try_start_node`]; panics on failure.
    pub async fn start_node(&mut self, id: NodeId) {
        or_panic(self.try_start_node(id).await)
    }

    /// [`TestCluster::try_start_node_with`]; panics on failure.
    pub async fn start_node_with(&mut self, id: NodeId, f: impl FnOnce(&mut NodeConfig)) {
        or_panic(self.try_start_node_with(id, f).await)
    }

    /// Wait until node `leader` leads with an ISR of `n`.
    pub async fn try_wait_isr_of(
        &self,
        leader: NodeId,
        n: usize,
        limit: Duration,
    ) -> Result<(), String> {
        let node = self.try_node(leader)?.clone();
        let what = format!("node {leader} to lead an ISR of {n}");
        support::wait_for(&what, limit, || {
            let node = node.clone();
            async move {
                node.status()
                    .await
                    .is_ok_and(|s| s.role == metawal_actors::Role::Leader && s.isr_len == n)
            }
        })
        .await
    }

    /// [`TestCluster::try_wait_isr_of`]; panics on failure.
    pub async fn wait_isr_of(&self, leader: NodeId, n: usize, limit: Duration) {
        or_panic(self.try_wait_isr_of(leader, n, limit).await)
    }

    /// Node `id`, if it is running.
    pub fn try_node(&self, id: NodeId) -> Result<&Node, String> {
        self.nodes
            .get(&id)
            .map(|(n, _)| n)
            .ok_or_else(|| format!("node {id} is not running"))
    }

    /// Node `id` (panics if stopped).
    pub fn node(&self, id: NodeId) -> &Node {
        or_panic(self.try_node(id))
    }

    /// The running nodes, by id.
    pub fn running(&self) -> Vec<(NodeId, Node)> {
        self.nodes
            .iter()
            .map(|(&id, (n, _))| (id, n.clone()))
            .collect()
    }

    /// Whether node `id` is running.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The proxy in front of `id`, if it has one.
    pub fn try_proxy(&self, id: NodeId) -> Result<&FaultProxy, String> {
        self.proxies
            .get(&id)
            .ok_or_else(|| format!("node {id} has no proxy"))
    }

    /// The proxy in front of `id` (panics if none).
    pub fn proxy(&self, id: NodeId) -> &FaultProxy {
        or_panic(self.try_proxy(id))
    }

    /// The recording of running node `id`'s subscriber
    /// ([`ClusterSpec::subscribe`]).
    pub fn try_recording(&self, id: NodeId) -> Result<&Recording, String> {
        self.recordings
            .get(&id)
            .ok_or_else(|| format!("node {id} has no subscriber"))
    }

    /// [`TestCluster::try_recording`]; panics if none.
    pub fn recording(&self, id: NodeId) -> &Recording {
        or_panic(self.try_recording(id))
    }

    /// Stop node `id` as a crash would (no resignation) and its arbiter.
    pub async fn crash_node(&mut self, id: NodeId) {
        self.recordings.remove(&id);
        if let Some((node, arbiter)) = self.nodes.remove(&id) {
            node.crash().await;
            arbiter.stop();
        }
    }

    /// Shut node `id` down and stop its arbiter.
    pub async fn stop_node(&mut self, id: NodeId) {
        self.recordings.remove(&id);
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

    /// Stop every node (the proxies first pass everything held, so no
    /// shutdown waits on a stall), then the proxies.
    pub async fn shutdown(mut self) {
        for p in self.proxies.values() {
            p.set(proxy::Fault::Pass);
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }
}

impl Drop for TestCluster {
    /// The proxies' Arbiters stop with the cluster (the nodes' only on
    /// [`TestCluster::shutdown`] or a stop).
    fn drop(&mut self) {
        for a in self.proxy_arbiters.drain(..) {
            a.stop();
        }
    }
}

/// The value, or a panic with the error (the tests' short calls).
fn or_panic<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
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
