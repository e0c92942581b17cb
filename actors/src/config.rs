//! `NodeConfig`: everything a node needs to start.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use metawal::{NodeId, ReplicationConfig};

use crate::error::{ConfigProblem, NodeError};
use crate::tls::TlsFiles;

/// Configuration of one metawal node.
#[derive(Clone)]
pub struct NodeConfig {
    /// This node's id (≥ 1), the broker id.
    pub node_id: NodeId,
    /// The cluster id every node must share.
    pub cluster_id: String,
    /// The shared secret that authenticates replication connections.
    pub secret: Vec<u8>,
    /// Where the WAL, snapshots and the `meta` file live.
    pub data_dir: PathBuf,
    /// Address the replication listener binds (port 0 picks one).
    pub listen_addr: SocketAddr,
    /// A replication listener bound before the start: the node serves on
    /// it instead of binding `listen_addr` (which then only names it in
    /// errors). A test or a supervisor (systemd socket activation, a
    /// process harness) that reserved a port hands it over this way, so no
    /// other socket can take the port between the reservation and the
    /// start. One start uses it up.
    pub listener: Option<BoundListener>,
    /// Every other node's id and replication address. At a new cluster's
    /// first start they are, with this node, its first voter set (3 or 5
    /// nodes recommended); once the cluster has logged its membership, the
    /// log is the truth and these only seed it (see docs/membership.md).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Other nodes' HTTP addresses (`host:port`), by id: put in the
    /// bootstrap membership, so followers can redirect to the leader's API.
    pub peer_http: BTreeMap<NodeId, String>,
    /// This node's HTTP address as others reach it, if it serves the API.
    pub http_addr: Option<String>,
    /// Other nodes' Kafka front addresses (`host:port`), by id: put in the
    /// bootstrap membership, so every node's Kafka front lists them.
    pub peer_kafka: BTreeMap<NodeId, String>,
    /// This node's Kafka front address as clients reach it, if it serves
    /// one (`metawal-kafka`).
    pub kafka_addr: Option<String>,
    /// This node joins a running cluster: it is not one of the bootstrap
    /// voters (its `peers` are the cluster's voters), never stands for
    /// election, and waits as an empty learner until the leader adds it
    /// (`Node::add_learner`, `POST /v1/members`).
    pub join: bool,
    /// A new leader pins the directory ids the membership does not know
    /// (the bootstrap voters of flags): one membership entry, appended by
    /// itself within a few election timeouts of its election while some
    /// stay unknown (docs/membership.md, "Identity"). On by default; off,
    /// they are pinned by the next operator's change only.
    pub pin_directories: bool,
    /// Replication and election tunables (defaults from the design).
    pub replication: ReplicationConfig,
    /// Mutual TLS for every replication and election connection: this
    /// node's certificate and key, and the CA every peer's certificate must
    /// chain to (see [`crate::tls`]). Required unless `insecure_plaintext`.
    pub tls: Option<TlsFiles>,
    /// Run peer connections without TLS. Only for tests and trusted
    /// networks: then the HMAC handshake alone authenticates a connection
    /// and nothing protects the frames after it. Must be set explicitly
    /// when `tls` is `None`; the node logs a warning at start.
    pub insecure_plaintext: bool,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("secret", &"<redacted>")
            .field("data_dir", &self.data_dir)
            .field("listen_addr", &self.listen_addr)
            .field("listener", &self.listener)
            .field("peers", &self.peers)
            .field("peer_http", &self.peer_http)
            .field("http_addr", &self.http_addr)
            .field("peer_kafka", &self.peer_kafka)
            .field("kafka_addr", &self.kafka_addr)
            .field("join", &self.join)
            .field("pin_directories", &self.pin_directories)
            .field("replication", &self.replication)
            .field("tls", &self.tls)
            .field("insecure_plaintext", &self.insecure_plaintext)
            .finish()
    }
}

impl NodeConfig {
    /// A config with the default tunables and no peers. Set either `tls`
    /// or `insecure_plaintext` before starting: a config with neither is
    /// refused by [`NodeConfig::validate`].
    pub fn new(
        node_id: NodeId,
        cluster_id: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        data_dir: impl Into<PathBuf>,
        listen_addr: SocketAddr,
    ) -> NodeConfig {
        NodeConfig {
            node_id,
            cluster_id: cluster_id.into(),
            secret: secret.into(),
            data_dir: data_dir.into(),
            listen_addr,
            listener: None,
            peers: BTreeMap::new(),
            peer_http: BTreeMap::new(),
            http_addr: None,
            peer_kafka: BTreeMap::new(),
            kafka_addr: None,
            join: false,
            pin_directories: true,
            replication: ReplicationConfig::default(),
            tls: None,
            insecure_plaintext: false,
        }
    }

    /// Check the configuration; the error says what to fix.
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |p: ConfigProblem| Err(NodeError::Config(p));
        if self.node_id == 0 {
            return bad(ConfigProblem::ZeroNodeId);
        }
        if self.cluster_id.is_empty() {
            return bad(ConfigProblem::EmptyClusterId);
        }
        if self.secret.is_empty() {
            return bad(ConfigProblem::EmptySecret);
        }
        if self.peers.contains_key(&self.node_id) {
            return bad(ConfigProblem::SelfInPeers { node: self.node_id });
        }
        if self.peers.contains_key(&0) {
            return bad(ConfigProblem::ZeroPeerId);
        }
        if self.join && self.peers.is_empty() {
            return bad(ConfigProblem::JoinWithoutPeers);
        }
        match (&self.tls, self.insecure_plaintext) {
            (None, false) => return bad(ConfigProblem::NoTransport),
            (Some(_), true) => return bad(ConfigProblem::TlsAndPlaintext),
            _ => {}
        }
        self.replication.validate()?;
        Ok(())
    }
}

/// A listening TCP socket bound by the caller, handed to [`Node::start`]
/// (replication, [`NodeConfig::listener`]) or to the HTTP API
/// (`HttpConfig::listener`) instead of an address to bind.
///
/// Cloning shares the one socket; the first start takes it, a second start
/// with the same value is refused with a configuration error (a socket
/// cannot serve two nodes).
///
/// [`Node::start`]: crate::Node::start
#[derive(Clone)]
pub struct BoundListener(Arc<Mutex<Option<TcpListener>>>);

impl BoundListener {
    /// Wrap a bound, listening socket.
    pub fn new(listener: TcpListener) -> BoundListener {
        BoundListener(Arc::new(Mutex::new(Some(listener))))
    }

    /// Take the socket out, set to non-blocking for an async runtime;
    /// `None` if an earlier start took it.
    pub fn take(&self) -> std::io::Result<Option<TcpListener>> {
        // A poisoned lock only means a thread panicked while holding it;
        // the Option inside is still whole.
        let taken = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            Some(l) => {
                l.set_nonblocking(true)?;
                Ok(Some(l))
            }
            None => Ok(None),
        }
    }
}

impl std::fmt::Debug for BoundListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref().map(|l| l.local_addr()) {
            Some(Ok(addr)) => write!(f, "BoundListener({addr})"),
            Some(Err(_)) => f.write_str("BoundListener(?)"),
            None => f.write_str("BoundListener(taken)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        let mut c = NodeConfig::new(1, "c", b"s".to_vec(), "/tmp/x", ([127, 0, 0, 1], 0).into());
        c.insecure_plaintext = true;
        c
    }

    fn problem(c: &NodeConfig) -> Option<ConfigProblem> {
        match c.validate() {
            Err(NodeError::Config(p)) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn each_problem_is_named_by_its_variant() {
        assert_eq!(problem(&config()), None);
        let mut c = config();
        c.node_id = 0;
        assert_eq!(problem(&c), Some(ConfigProblem::ZeroNodeId));
        let mut c = config();
        c.cluster_id.clear();
        assert_eq!(problem(&c), Some(ConfigProblem::EmptyClusterId));
        let mut c = config();
        c.secret.clear();
        assert_eq!(problem(&c), Some(ConfigProblem::EmptySecret));
        let mut c = config();
        c.peers.insert(1, ([127, 0, 0, 1], 1).into());
        assert_eq!(problem(&c), Some(ConfigProblem::SelfInPeers { node: 1 }));
        let mut c = config();
        c.peers.insert(0, ([127, 0, 0, 1], 1).into());
        assert_eq!(problem(&c), Some(ConfigProblem::ZeroPeerId));
        let mut c = config();
        c.insecure_plaintext = false;
        assert_eq!(problem(&c), Some(ConfigProblem::NoTransport));
    }
}
