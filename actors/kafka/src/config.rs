//! The front's settings: where it listens, what it advertises for each
//! node, and its limits (each with a default a broker can keep).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metawal::NodeId;

/// Largest request frame a client may send: admin requests are small (a
/// `CreateTopics` of a thousand partitions with explicit assignments is
/// about 30 KiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Connections served at once; more are accepted and closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// A connection that sends no complete request for this long is closed
/// (Kafka's `connections.max.idle.ms` is 10 minutes; admin clients
/// reconnect on demand).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a `CreateTopics`, `DeleteTopics` or `CreatePartitions` waits for
/// its entry to commit, whatever `timeout_ms` the client asks for.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a TLS handshake or a response write may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A bad setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An advertised address is not `host:port`.
    #[error("Kafka address {addr:?} of node {node} is not HOST:PORT with a port from 1 to 65535")]
    BadAddress {
        /// The node.
        node: NodeId,
        /// The address given.
        addr: String,
    },
    /// A limit is zero.
    #[error("{what} must be at least 1")]
    Zero {
        /// The setting.
        what: &'static str,
    },
}

/// The front's settings.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Where [`crate::serve`] listens.
    pub listen: SocketAddr,
    /// Serve on this socket (bound to `listen`, e.g. inherited from a
    /// supervisor) instead of binding `listen`.
    pub listener: Option<metawal_actors::BoundListener>,
    /// The `host:port` clients reach each node's front at, this node's
    /// included: what `Metadata` and `DescribeCluster` list as brokers for
    /// the members whose membership entry carries no Kafka address (a
    /// member with neither is left out of the lists).
    advertised: BTreeMap<NodeId, (String, u16)>,
    /// Serve TLS with this config (the node's certificate); `None`:
    /// plaintext.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How a follower's front reaches the leader's TLS front to forward a
    /// `DescribeQuorum` (a client config trusting the CA the nodes'
    /// certificates chain to; the name checked is `node-<id>.<cluster>`).
    /// `None` with `tls` set: a follower answers `DescribeQuorum` from
    /// what it knows itself (log ends `-1`). Unused without `tls`.
    pub forward_tls: Option<Arc<rustls::ClientConfig>>,
    /// See [`DEFAULT_MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("listen", &self.listen)
            .field("advertised", &self.advertised)
            .field("tls", &self.tls.is_some())
            .field("forward_tls", &self.forward_tls.is_some())
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl KafkaConfig {
    /// Listen on `listen`, plaintext, with the default limits, advertising
    /// nothing yet (see [`KafkaConfig::advertise`]).
    pub fn new(listen: SocketAddr) -> KafkaConfig {
        KafkaConfig {
            listen,
            listener: None,
            advertised: BTreeMap::new(),
            tls: None,
            forward_tls: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Clients reach node `node`'s front at `addr` (`host:port`).
    pub fn advertise(&mut self, node: NodeId, addr: &str) -> Result<(), ConfigError> {
        let (host, port) =
            metawal::membership::split_host_port(addr).ok_or_else(|| ConfigError::BadAddress {
                node,
                addr: addr.chars().take(300).collect(),
            })?;
        self.advertised.insert(node, (host.to_string(), port));
        Ok(())
    }

    /// Where clients reach node `node`'s front as this configuration
    /// advertises it (the front itself prefers the address the membership
    /// in force carries: see `Front::broker_addr`).
    pub fn advertised(&self, node: NodeId) -> Option<(&str, u16)> {
        self.advertised.get(&node).map(|(h, p)| (h.as_str(), *p))
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (what, v) in [
            ("the Kafka front's frame limit", self.max_frame_bytes),
            ("the Kafka front's connection limit", self.max_connections),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero { what });
            }
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::Zero {
                what: "the Kafka front's idle timeout",
            });
        }
        Ok(())
    }
}
