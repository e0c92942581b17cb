//! `NodeMetrics`: a node's Prometheus metrics.
//!
//! Two kinds, kept apart on purpose:
//! - **Recorded as they happen**, where the event is: proposal results and
//!   commit latency ([`crate::Node::propose`]), WAL fsync latency (the disk
//!   thread), bytes on replication and election connections. These are
//!   atomics (a histogram observation takes a short lock), cheap enough for
//!   the hot path.
//! - **Read at scrape time** from [`crate::Node::status`]: follower lag,
//!   state and reconnects, ISR size, role, epoch, elections, offsets. They
//!   already exist as status; copying them on every change would cost the
//!   hot path for nothing.
//!
//! [`NodeMetrics::encode`] refreshes the second kind from a status and
//! writes the OpenMetrics text that `GET /metrics` serves.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metawal::engine::Acks;
use metawal::replication::LinkState;
use metawal::NodeId;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::ProposeError;
use crate::status::{Noted, PeerChannel, PeerConnection, PeerStatus, PeerTable};

/// Label: the acknowledgement level of a proposal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcksLabel {
    acks: &'static str,
}

/// Label: how a proposal ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Label: a follower.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// Labels: a follower and one link state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerStateLabel {
    peer: String,
    state: &'static str,
}

/// Labels: a peer and one connection state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerConnLabel {
    peer: String,
    state: &'static str,
}

/// Labels: a peer, a failed connection's state and its reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerFailureLabel {
    peer: String,
    state: &'static str,
    reason: &'static str,
}

/// Label: a role.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

/// Label: an HTTP status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

const LINK_STATES: [LinkState; 5] = [
    LinkState::Connecting,
    LinkState::Handshaking,
    LinkState::Probing,
    LinkState::Streaming,
    LinkState::Snapshotting,
];
/// Every `Role::as_str`, so that the roles a node is not in read 0.
const ROLES: [&str; 4] = ["leader", "follower", "failed", "stopped"];

// The values read at scrape time, and how a status becomes them.
#[path = "metrics_scrape.rs"]
mod scrape;
pub use scrape::Scrape;

/// Latency buckets: 50 µs to about 3.3 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 17)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

struct Inner {
    registry: Registry,
    /// Held while `encode` refreshes the scrape-time families and encodes:
    /// two scrapes at once (the HTTP endpoint and an embedder's
    /// `Node::metrics_text`) would clear each other's series.
    encoding: std::sync::Mutex<()>,
    commit_latency: Family<AcksLabel, Histogram, fn() -> Histogram>,
    fsync_latency: Histogram,
    proposals: Family<ResultLabel, Counter>,
    /// The series every successful write records in (acks all, leader,
    /// none; and `result="ok"`), kept once made: `get_or_create` takes the
    /// family's lock and hashes the labels on each call. Made on first use,
    /// as `get_or_create` would, so `/metrics` lists the same series.
    ok_latency: [OnceLock<Histogram>; 3],
    ok_proposals: OnceLock<Counter>,
    bytes_sent: Counter,
    bytes_received: Counter,
    follower_lag: Family<PeerLabel, Gauge>,
    follower_state: Family<PeerStateLabel, Gauge>,
    follower_reconnects: Family<PeerLabel, Gauge>,
    isr_size: Gauge,
    epoch: Gauge,
    elections: Gauge,
    applied_offset: Gauge,
    commit_offset: Gauge,
    log_end_offset: Gauge,
    role: Family<RoleLabel, Gauge>,
    members: Family<RoleLabel, Gauge>,
    caught_up: Family<PeerLabel, Gauge>,
    watchers: Gauge,
    watch_cutoffs: Counter,
    http_requests: Family<StatusLabel, Counter>,
    peer_connection: Family<PeerConnLabel, Gauge>,
    peer_failures: Family<PeerFailureLabel, Counter>,
    /// Every peer's connection as last seen (see [`PeerTable`]).
    peers: PeerTable,
}

/// A node's metrics (cheap to clone: one `Arc`).
#[derive(Clone)]
pub struct NodeMetrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeMetrics")
    }
}

impl Default for NodeMetrics {
    fn default() -> NodeMetrics {
        NodeMetrics::new()
    }
}

/// A gauge value from a count (saturating: gauges are i64).
fn g(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl NodeMetrics {
    /// Every metric, registered under `metawal_*`.
    pub fn new() -> NodeMetrics {
        let mut r = Registry::default();
        let commit_latency =
            Family::<AcksLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        r.register(
            "metawal_commit_latency_seconds",
            "Successful proposals, from propose to the acknowledgement asked for",
            commit_latency.clone(),
        );
        let fsync_latency = latency_histogram();
        r.register(
            "metawal_fsync_latency_seconds",
            "WAL fdatasync (one per group commit)",
            fsync_latency.clone(),
        );
        let proposals = Family::<ResultLabel, Counter>::default();
        r.register(
            "metawal_proposals",
            "Proposals by result",
            proposals.clone(),
        );
        let bytes_sent = Counter::default();
        r.register(
            "metawal_bytes_sent",
            "Bytes written to replication and election connections",
            bytes_sent.clone(),
        );
        let bytes_received = Counter::default();
        r.register(
            "metawal_bytes_received",
            "Bytes read from replication and election connections",
            bytes_received.clone(),
        );
        let follower_lag = Family::<PeerLabel, Gauge>::default();
        r.register(
            "metawal_follower_lag_entries",
            "Entries a follower is behind the leader's log end (leader only)",
            follower_lag.clone(),
        );
        let follower_state = Family::<PeerStateLabel, Gauge>::default();
        r.register(
            "metawal_follower_state",
            "1 for the state a follower's link is in (leader only)",
            follower_state.clone(),
        );
        let follower_reconnects = Family::<PeerLabel, Gauge>::default();
        r.register(
            "metawal_follower_reconnects",
            "Reconnections of a follower's link in this leadership (leader only)",
            follower_reconnects.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let members = Family::<RoleLabel, Gauge>::default();
        r.register(
            "metawal_members",
            "Members in force on this node, by role (voter, learner)",
            members.clone(),
        );
        let caught_up = Family::<PeerLabel, Gauge>::default();
        r.register(
            "metawal_member_caught_up",
            "1 if a member is connected and within the promotion bound of the log end (leader only)",
            caught_up.clone(),
        );
        let isr_size = gauge(
            &mut r,
            "metawal_isr_size",
            "In-sync replicas, leader included (leader only)",
        );
        let epoch = gauge(&mut r, "metawal_epoch", "This node's epoch");
        let elections = gauge(
            &mut r,
            "metawal_elections",
            "Elections this node stood in since it started",
        );
        let applied_offset = gauge(
            &mut r,
            "metawal_applied_offset",
            "Last offset applied to the metadata state",
        );
        let commit_offset = gauge(
            &mut r,
            "metawal_commit_offset",
            "Highest committed offset this node knows",
        );
        let log_end_offset = gauge(
            &mut r,
            "metawal_log_end_offset",
            "Last offset in this node's log",
        );
        let role = Family::<RoleLabel, Gauge>::default();
        r.register("metawal_role", "1 for this node's role", role.clone());
        let watchers = gauge(&mut r, "metawal_watchers", "Open /v1/watch streams");
        let watch_cutoffs = Counter::default();
        r.register(
            "metawal_watch_cutoffs",
            "Watch streams cut off because their reader did not keep up",
            watch_cutoffs.clone(),
        );
        let http_requests = Family::<StatusLabel, Counter>::default();
        r.register(
            "metawal_http_requests",
            "HTTP API responses by status class",
            http_requests.clone(),
        );
        let peer_connection = Family::<PeerConnLabel, Gauge>::default();
        r.register(
            "metawal_peer_connection",
            "1 for the state this node's connection to a peer was last seen in \
             (connecting, connected, handshake_refused, unreachable)",
            peer_connection.clone(),
        );
        let peer_failures = Family::<PeerFailureLabel, Counter>::default();
        r.register(
            "metawal_peer_connection_failures",
            "Failed connections to or from a peer, by state (handshake_refused, \
             unreachable) and reason",
            peer_failures.clone(),
        );
        NodeMetrics {
            inner: Arc::new(Inner {
                peer_connection,
                peer_failures,
                peers: PeerTable::default(),
                registry: r,
                encoding: std::sync::Mutex::new(()),
                commit_latency,
                fsync_latency,
                proposals,
                ok_latency: Default::default(),
                ok_proposals: OnceLock::new(),
                bytes_sent,
                bytes_received,
                follower_lag,
                follower_state,
                follower_reconnects,
                members,
                caught_up,
                isr_size,
                epoch,
                elections,
                applied_offset,
                commit_offset,
                log_end_offset,
                role,
                watchers,
                watch_cutoffs,
                http_requests,
            }),
        }
    }

    /// A proposal ended: count it by result, and time it if it succeeded.
    pub(crate) fn proposal<T>(&self, acks: Acks, result: &Result<T, ProposeError>, took: Duration) {
        let inner = &*self.inner;
        let Err(e) = result else {
            let (i, acks) = match acks {
                Acks::All => (0, "all"),
                Acks::Leader => (1, "leader"),
                Acks::None => (2, "none"),
            };
            inner.ok_latency[i]
                .get_or_init(|| {
                    inner
                        .commit_latency
                        .get_or_create(&AcksLabel { acks })
                        .clone()
                })
                .observe(took.as_secs_f64());
            inner
                .ok_proposals
                .get_or_init(|| {
                    inner
                        .proposals
                        .get_or_create(&ResultLabel { result: "ok" })
                        .clone()
                })
                .inc();
            return;
        };
        inner
            .proposals
            .get_or_create(&ResultLabel {
                result: result_label(e),
            })
            .inc();
    }

    /// The histogram the disk thread records each `fdatasync` in.
    pub(crate) fn fsync_histogram(&self) -> Histogram {
        self.inner.fsync_latency.clone()
    }

    /// The byte counters of replication and election connections (sent,
    /// received).
    pub(crate) fn byte_counters(&self) -> (Counter, Counter) {
        (
            self.inner.bytes_sent.clone(),
            self.inner.bytes_received.clone(),
        )
    }

    /// A watch stream opened (`+1`) or closed (`-1`).
    pub(crate) fn watchers_add(&self, delta: i64) {
        self.inner.watchers.inc_by(delta);
    }

    /// A watch stream was cut off for not keeping up.
    pub(crate) fn watch_cut_off(&self) {
        self.inner.watch_cutoffs.inc();
    }

    /// Count an HTTP response by its status.
    pub(crate) fn http_response(&self, status: u16) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.inner
            .http_requests
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    /// Every peer's connection as this node last saw it, by peer id: from
    /// the leader's replication links, this node's election connections
    /// and the connections peers opened to it. Observations no live
    /// connection backs expire after [`crate::status::PEER_STATE_TTL`].
    pub fn peer_connections(&self) -> Vec<PeerStatus> {
        self.inner.peers.snapshot(Instant::now())
    }

    /// Make the configured peers known, so that inbound connections from
    /// them are recorded (and from no other id).
    pub(crate) fn register_peers(&self, peers: impl IntoIterator<Item = NodeId>) {
        for peer in peers {
            self.inner.peers.register(peer);
        }
    }

    /// Record what connection `via` showed about `peer`, count a failure,
    /// and log it: a failure at WARN at most once per peer per
    /// [`crate::status::PEER_WARN_INTERVAL`] (the others at debug), a
    /// success after failures at INFO. `live`: a running connection or
    /// link backs the observation (it does not expire until
    /// [`NodeMetrics::peer_released`]).
    pub(crate) fn peer_observed(
        &self,
        node: NodeId,
        peer: NodeId,
        via: PeerChannel,
        addr: Option<SocketAddr>,
        connection: PeerConnection,
        live: bool,
    ) {
        let state = connection.as_str();
        let reason = connection.reason();
        let detail = connection.detail().map(str::to_string);
        let hint = connection.hint();
        let noted = self
            .inner
            .peers
            .note(peer, via, addr, connection, live, Instant::now());
        if let Some(reason) = reason {
            self.inner
                .peer_failures
                .get_or_create(&PeerFailureLabel {
                    peer: peer.to_string(),
                    state,
                    reason,
                })
                .inc();
        }
        let addr = addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let channel = via.as_str();
        let error = detail.unwrap_or_default();
        let reason = reason.unwrap_or("-");
        let what = match (state, reason) {
            ("unreachable", _) => "cannot reach peer",
            (_, "tls") => {
                "handshake with peer refused or not completed (connection refused by TLS)"
            }
            _ => "handshake with peer refused or not completed",
        };
        match noted {
            Noted::Warn { suppressed } => tracing::warn!(
                node,
                peer,
                %addr,
                channel,
                state,
                reason,
                %error,
                hint,
                suppressed,
                "{what}"
            ),
            Noted::Suppressed => tracing::debug!(
                node,
                peer,
                %addr,
                channel,
                state,
                reason,
                %error,
                "{what} (warning rate-limited)"
            ),
            Noted::Restored { failures } => tracing::info!(
                node,
                peer,
                %addr,
                channel,
                failures,
                "connection to peer restored"
            ),
            Noted::Quiet => {}
        }
    }

    /// The connection on `via` that backed `peer`'s observation ended.
    pub(crate) fn peer_released(&self, peer: NodeId, via: PeerChannel) {
        self.inner.peers.release(peer, via, Instant::now());
    }

    /// Refresh the scrape-time metrics from `status` and encode everything
    /// as OpenMetrics text.
    pub fn encode(&self, status: &Scrape) -> Result<String, std::fmt::Error> {
        let m = &self.inner;
        // A panic elsewhere while holding it leaves nothing half-done that
        // this encode does not overwrite: take the lock anyway.
        let _one_at_a_time = m.encoding.lock().unwrap_or_else(|p| p.into_inner());
        m.isr_size.set(g(status.isr_len as u64));
        m.epoch.set(g(status.epoch));
        m.elections.set(g(status.elections));
        m.applied_offset.set(g(status.applied_offset));
        m.commit_offset.set(g(status.commit));
        m.log_end_offset.set(g(status.log_end));
        for role in ROLES {
            m.role
                .get_or_create(&RoleLabel { role })
                .set(i64::from(role == status.role));
        }
        // Followers only on the leader: a node that lost leadership drops
        // its follower series instead of reporting frozen values.
        m.follower_lag.clear();
        m.follower_state.clear();
        m.follower_reconnects.clear();
        m.caught_up.clear();
        for &(peer, ok) in &status.caught_up {
            m.caught_up
                .get_or_create(&PeerLabel {
                    peer: peer.to_string(),
                })
                .set(i64::from(ok));
        }
        for (role, n) in [("voter", status.voters), ("learner", status.learners)] {
            m.members.get_or_create(&RoleLabel { role }).set(g(n));
        }
        for &(peer, lag, state, reconnects) in &status.followers {
            let peer = peer.to_string();
            m.follower_lag
                .get_or_create(&PeerLabel { peer: peer.clone() })
                .set(g(lag));
            m.follower_reconnects
                .get_or_create(&PeerLabel { peer: peer.clone() })
                .set(g(reconnects));
            for s in LINK_STATES {
                m.follower_state
                    .get_or_create(&PeerStateLabel {
                        peer: peer.clone(),
                        state: s.as_str(),
                    })
                    .set(i64::from(s == state));
            }
        }
        // Peers whose observation expired drop out.
        m.peer_connection.clear();
        for p in m.peers.snapshot(Instant::now()) {
            let now = p.connection.as_str();
            for state in PeerConnection::STATES {
                m.peer_connection
                    .get_or_create(&PeerConnLabel {
                        peer: p.peer.to_string(),
                        state,
                    })
                    .set(i64::from(state == now));
            }
        }
        let mut out = String::new();
        encode(&mut out, &m.registry)?;
        Ok(out)
    }
}

/// The `result` label of a failed proposal.
fn result_label(e: &ProposeError) -> &'static str {
    match e {
        ProposeError::NotLeader { .. } => "not_leader",
        ProposeError::Invalid(_) => "invalid",
        ProposeError::NotEnoughReplicas { .. } => "not_enough_replicas",
        ProposeError::NotEnoughReplicasAfterAppend { .. } => "isr_shrank",
        ProposeError::Timeout { .. } => "timeout",
        ProposeError::LeadershipLost => "leadership_lost",
        ProposeError::TooLarge { .. } => "too_large",
        ProposeError::Overloaded(_) => "overloaded",
        ProposeError::StorageFailed | ProposeError::StorageFailedAfterAppend { .. } => "storage",
        ProposeError::Encode(_) => "encode",
        ProposeError::ShuttingDown => "shutting_down",
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
