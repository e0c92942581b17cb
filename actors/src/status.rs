//! `NodeStatus`: what a node reports about itself and, on the leader, about
//! each follower.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metawal::engine::election::ElectionRole;
use metawal::frame::RejectReason;
use metawal::handshake::HandshakeError;
use metawal::replication::LinkState;
use metawal::NodeId;
use serde::Serialize;

use crate::tls::{is_abrupt_close, ConnectError};

/// At most one WARN line per peer and reason in this interval about
/// failing to connect to it or to complete a handshake with it; the next
/// one says how many attempts failed for that reason in between
/// (`suppressed`). A new reason is logged at once.
pub const PEER_WARN_INTERVAL: Duration = Duration::from_secs(30);

/// How long an observation of a peer connection that no live connection
/// backs (an election connection, a refused inbound handshake, a link
/// that stopped) stays in [`crate::NodeMetrics::peer_connections`]: election
/// connections are made only while an election runs, so without new
/// evidence the last one says little after this.
pub const PEER_STATE_TTL: Duration = Duration::from_secs(60);

/// How this node's connection to one peer stands: the last thing learned
/// about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PeerConnection {
    /// No connection has completed or failed yet (a first attempt may be
    /// under way), or the last one that worked was lost and a new one is
    /// being tried.
    #[default]
    Connecting,
    /// The last connection completed its handshake (TLS and HMAC).
    Connected,
    /// The peer was reached, but the TLS or replication handshake was
    /// refused (by either side) or never completed.
    HandshakeRefused {
        /// Why, as a class.
        reason: HandshakeRefusal,
        /// The error, for a human.
        detail: String,
    },
    /// The peer could not be reached at all.
    Unreachable {
        /// Why, as a class.
        reason: Unreachable,
        /// The error, for a human.
        detail: String,
    },
}

impl PeerConnection {
    /// The state's name (`connecting`, `connected`, `handshake_refused`,
    /// `unreachable`).
    pub fn as_str(&self) -> &'static str {
        match self {
            PeerConnection::Connecting => "connecting",
            PeerConnection::Connected => "connected",
            PeerConnection::HandshakeRefused { .. } => "handshake_refused",
            PeerConnection::Unreachable { .. } => "unreachable",
        }
    }

    /// The failure's reason class, if it is a failure.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            PeerConnection::HandshakeRefused { reason, .. } => Some(reason.as_str()),
            PeerConnection::Unreachable { reason, .. } => Some(reason.as_str()),
            _ => None,
        }
    }

    /// The failure's detail, if it is a failure.
    pub fn detail(&self) -> Option<&str> {
        match self {
            PeerConnection::HandshakeRefused { detail, .. }
            | PeerConnection::Unreachable { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// What an operator should check, for a failure ("" otherwise).
    pub fn hint(&self) -> &'static str {
        match self {
            PeerConnection::Unreachable { reason, .. } => match reason {
                Unreachable::ConnectionRefused => {
                    "nothing listens there: is the peer running, and is this its replication \
                     address (not its HTTP port)?"
                }
                Unreachable::TimedOut => "no answer: is the host up and the port open?",
                Unreachable::Network => "check the address and the network",
            },
            PeerConnection::HandshakeRefused { reason, .. } => match reason {
                HandshakeRefusal::Tls => {
                    "check that both certificates are signed by the CA the other node trusts, \
                     are valid now and are issued for node-<id>.<cluster-id>, and that both \
                     nodes use TLS"
                }
                HandshakeRefusal::SecretMismatch => {
                    "every node must be configured with the same shared secret"
                }
                HandshakeRefusal::ClusterMismatch => {
                    "every node must be configured with the same cluster id"
                }
                HandshakeRefusal::ProtocolMismatch => {
                    "every node must run the same metawal version"
                }
                HandshakeRefusal::WrongNode => {
                    "another node id answers at this address: check the peers list"
                }
                HandshakeRefusal::NotCertified => {
                    "the certificate is not issued for the node id it claims"
                }
                HandshakeRefusal::EpochConflict => {
                    "two leaders claim one epoch: check that no two nodes share an id or a \
                     data directory"
                }
                HandshakeRefusal::Refused | HandshakeRefusal::TimedOut => {
                    "usually resolves on its own; if it persists, check the peer's log"
                }
                HandshakeRefusal::Closed => {
                    "the peer closed the connection: its log says why (often a different \
                     cluster id, secret or CA)"
                }
                HandshakeRefusal::ProtocolError => "check the peer's log",
            },
            _ => "",
        }
    }

    /// Whether this is a failure (refused or unreachable).
    pub fn is_failure(&self) -> bool {
        self.reason().is_some()
    }

    /// A refused handshake.
    pub fn refused(reason: HandshakeRefusal, detail: impl Into<String>) -> PeerConnection {
        PeerConnection::HandshakeRefused {
            reason,
            detail: detail.into(),
        }
    }

    /// An unreachable peer.
    pub fn unreachable(reason: Unreachable, detail: impl Into<String>) -> PeerConnection {
        PeerConnection::Unreachable {
            reason,
            detail: detail.into(),
        }
    }

    /// The state names, in the order `/metrics` lists them.
    pub const STATES: [&'static str; 4] = [
        "connecting",
        "connected",
        "handshake_refused",
        "unreachable",
    ];
}

/// A `Reject` reason in words.
pub(crate) fn reject_text(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::ProtocolMismatch => "it speaks another protocol version",
        RejectReason::ClusterMismatch => "it is in another cluster",
        RejectReason::BadProof => "this node's proof does not verify (the shared secrets differ)",
        RejectReason::StaleEpoch => "it knows a higher epoch",
        RejectReason::EpochConflict => "it knows another leader for this epoch",
        RejectReason::NotFollower => "it is not a follower",
        RejectReason::Unexpected => "unexpected frame",
        RejectReason::NotCertified => "this node's certificate is not for the node id it claims",
    }
}

/// Why a peer could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// Nothing listens at the address (the node is down, or the address or
    /// port is wrong).
    ConnectionRefused,
    /// The TCP connect did not finish in time (a firewall dropping
    /// packets, a host that is down).
    TimedOut,
    /// Another network error (no route, address not available, …).
    Network,
}

impl Unreachable {
    /// The reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unreachable::ConnectionRefused => "connection_refused",
            Unreachable::TimedOut => "timed_out",
            Unreachable::Network => "network",
        }
    }

    /// The class of a failed TCP connect.
    pub fn of_io(e: &std::io::Error) -> Unreachable {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Unreachable::ConnectionRefused,
            std::io::ErrorKind::TimedOut => Unreachable::TimedOut,
            _ => Unreachable::Network,
        }
    }
}

/// Why a handshake with a peer was refused or never completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeRefusal {
    /// The TLS handshake failed: a certificate not signed by the CA this
    /// side trusts, not valid for the expected node name, expired, or the
    /// peer does not speak TLS.
    Tls,
    /// The HMAC proof did not verify: the shared secrets differ.
    SecretMismatch,
    /// The peer is configured with another cluster id.
    ClusterMismatch,
    /// The peer speaks another protocol version.
    ProtocolMismatch,
    /// The node at the peer's address answered with another node id (the
    /// peers config is wrong, or two nodes share an id).
    WrongNode,
    /// The node id claimed is not one its TLS certificate names.
    NotCertified,
    /// Two leaders claim the same epoch (a misconfiguration).
    EpochConflict,
    /// The peer refused for a reason of the protocol's normal course (a
    /// stale epoch, it is not a follower): usually resolves on its own.
    Refused,
    /// The peer closed the connection before the handshake completed (it
    /// refused this node without saying why, e.g. a TLS alert it sent
    /// after checking this node's certificate, or a wrong cluster id).
    Closed,
    /// The handshake did not complete in time.
    TimedOut,
    /// A frame that does not belong in the handshake.
    ProtocolError,
}

impl HandshakeRefusal {
    /// The reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeRefusal::Tls => "tls",
            HandshakeRefusal::SecretMismatch => "secret_mismatch",
            HandshakeRefusal::ClusterMismatch => "cluster_mismatch",
            HandshakeRefusal::ProtocolMismatch => "protocol_mismatch",
            HandshakeRefusal::WrongNode => "wrong_node",
            HandshakeRefusal::NotCertified => "not_certified",
            HandshakeRefusal::EpochConflict => "epoch_conflict",
            HandshakeRefusal::Refused => "refused",
            HandshakeRefusal::Closed => "closed",
            HandshakeRefusal::TimedOut => "timed_out",
            HandshakeRefusal::ProtocolError => "protocol_error",
        }
    }

    /// The class of a reason sent in a `Reject`.
    pub fn of_reject(reason: RejectReason) -> HandshakeRefusal {
        match reason {
            RejectReason::ProtocolMismatch => HandshakeRefusal::ProtocolMismatch,
            RejectReason::ClusterMismatch => HandshakeRefusal::ClusterMismatch,
            RejectReason::BadProof => HandshakeRefusal::SecretMismatch,
            RejectReason::NotCertified => HandshakeRefusal::NotCertified,
            RejectReason::EpochConflict => HandshakeRefusal::EpochConflict,
            RejectReason::StaleEpoch | RejectReason::NotFollower => HandshakeRefusal::Refused,
            RejectReason::Unexpected => HandshakeRefusal::ProtocolError,
        }
    }

    /// The class of a handshake check that failed.
    pub fn of_error(e: &HandshakeError) -> HandshakeRefusal {
        match e {
            HandshakeError::ProtocolMismatch { .. } => HandshakeRefusal::ProtocolMismatch,
            HandshakeError::ClusterMismatch { .. } => HandshakeRefusal::ClusterMismatch,
            HandshakeError::BadProof { .. } | HandshakeError::InvalidKeys(_) => {
                HandshakeRefusal::SecretMismatch
            }
            HandshakeError::SameNodeId { .. } | HandshakeError::NodeIdMismatch { .. } => {
                HandshakeRefusal::WrongNode
            }
            HandshakeError::NotCertified { .. } => HandshakeRefusal::NotCertified,
            HandshakeError::EpochConflict { .. } => HandshakeRefusal::EpochConflict,
            HandshakeError::StaleEpoch { .. } | HandshakeError::NotFollower => {
                HandshakeRefusal::Refused
            }
            HandshakeError::Rejected { reason, .. } => HandshakeRefusal::of_reject(*reason),
            HandshakeError::BadNonceLength { .. } | HandshakeError::Unexpected { .. } => {
                HandshakeRefusal::ProtocolError
            }
        }
    }
}

/// Which connection an observation of a peer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerChannel {
    /// The leader's replication link to the peer (outbound).
    Replication,
    /// This node's election connection to the peer (outbound).
    Election,
    /// A connection the peer opened to this node (replication or
    /// election).
    Inbound,
}

impl PeerChannel {
    /// The channel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerChannel::Replication => "replication",
            PeerChannel::Election => "election",
            PeerChannel::Inbound => "inbound",
        }
    }
}

/// One peer's connection as this node last saw it (`/v1/status` `peers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub peer: NodeId,
    /// The address the observation was made on, if known (the configured
    /// address for outbound connections, the remote one for inbound).
    pub addr: Option<SocketAddr>,
    /// How the connection stands.
    pub connection: PeerConnection,
    /// Which connection showed it.
    pub via: PeerChannel,
    /// How long ago.
    pub since: Duration,
    /// Attempts that failed in a row up to now (0 once one succeeds).
    pub failures: u64,
}

/// Rate limit for the WARN lines about one peer (see
/// [`PEER_WARN_INTERVAL`]): one per reason per interval, so that a new
/// reason (unreachable, then a refused handshake) is never hidden behind
/// an old one. Pure: the clock is passed in.
#[derive(Debug, Clone)]
pub struct WarnLimiter {
    interval: Duration,
    /// Per reason: when it was last logged, and the failures not logged
    /// since.
    last: BTreeMap<&'static str, (Instant, u64)>,
}

impl WarnLimiter {
    /// A limiter allowing one warning per reason per `interval`.
    pub fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: BTreeMap::new(),
        }
    }

    /// A failure for `reason` at `now`: `Some(n)` if it is to be logged,
    /// `n` being the failures for that reason not logged since its last
    /// warning; `None` if it is suppressed.
    pub fn failure(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.last.get_mut(reason) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }

    /// The connection works again: the next failure is logged at once.
    /// Returns the failures suppressed since the last warnings.
    pub fn success(&mut self) -> u64 {
        std::mem::take(&mut self.last)
            .into_values()
            .map(|(_, n)| n)
            .sum()
    }
}

struct PeerEntry {
    observed: Option<Observed>,
    warn: WarnLimiter,
    failures: u64,
}

struct Observed {
    addr: Option<SocketAddr>,
    connection: PeerConnection,
    via: PeerChannel,
    at: Instant,
    /// A live connection (or a link that keeps retrying) backs it: it does
    /// not expire.
    live: bool,
}

/// What recording one observation decided about logging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noted {
    /// A failure to log at WARN, with the failures suppressed before it.
    Warn { suppressed: u64 },
    /// A failure not to log (rate limit).
    Suppressed,
    /// A success after `failures` failed attempts.
    Restored { failures: u64 },
    /// Nothing to log.
    Quiet,
}

/// Every peer's connection as this node last saw it, and the WARN rate
/// limit per peer. Only peers registered (the configured voters) are kept,
/// so an unauthenticated connection claiming any id cannot grow it.
#[derive(Default)]
pub struct PeerTable {
    peers: Mutex<BTreeMap<NodeId, PeerEntry>>,
}

impl std::fmt::Debug for PeerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTable")
    }
}

impl PeerTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, PeerEntry>> {
        // Every update is whole under the lock: a panic elsewhere leaves
        // the map usable.
        match self.peers.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        }
    }

    /// Make `peer` known (a configured voter).
    pub(crate) fn register(&self, peer: NodeId) {
        self.lock().entry(peer).or_insert_with(|| PeerEntry {
            observed: None,
            warn: WarnLimiter::new(PEER_WARN_INTERVAL),
            failures: 0,
        });
    }

    /// Record what `via` showed about `peer` at `now`. Outbound channels
    /// register the peer (their peers are configured ones); an inbound
    /// observation of an unregistered id is dropped.
    pub(crate) fn note(
        &self,
        peer: NodeId,
        via: PeerChannel,
        addr: Option<SocketAddr>,
        connection: PeerConnection,
        live: bool,
        now: Instant,
    ) -> Noted {
        if via != PeerChannel::Inbound {
            self.register(peer);
        }
        let mut peers = self.lock();
        let Some(entry) = peers.get_mut(&peer) else {
            return Noted::Quiet;
        };
        let noted = if let Some(reason) = connection.reason() {
            entry.failures += 1;
            // A peer that ends a handshake once is usually shutting down or
            // handing over (a planned close, seen under load): debug. If it
            // happens again in a row, it refuses us: WARN as any refusal.
            let first_close = reason == HandshakeRefusal::Closed.as_str() && entry.failures == 1;
            if first_close {
                Noted::Suppressed
            } else {
                match entry.warn.failure(reason, now) {
                    Some(suppressed) => Noted::Warn { suppressed },
                    None => Noted::Suppressed,
                }
            }
        } else if connection == PeerConnection::Connected {
            let failures = std::mem::take(&mut entry.failures);
            entry.warn.success();
            if failures > 0 {
                Noted::Restored { failures }
            } else {
                Noted::Quiet
            }
        } else {
            Noted::Quiet
        };
        entry.observed = Some(Observed {
            addr,
            connection,
            via,
            at: now,
            live,
        });
        noted
    }

    /// The connection on `via` that backed `peer`'s observation ended: it
    /// expires from now on (see [`PEER_STATE_TTL`]).
    pub(crate) fn release(&self, peer: NodeId, via: PeerChannel, now: Instant) {
        if let Some(Some(o)) = self.lock().get_mut(&peer).map(|e| e.observed.as_mut()) {
            if o.via == via && o.live {
                o.live = false;
                o.at = now;
            }
        }
    }

    /// Every peer with a current observation, by id.
    pub fn snapshot(&self, now: Instant) -> Vec<PeerStatus> {
        self.lock()
            .iter()
            .filter_map(|(&peer, e)| {
                let o = e.observed.as_ref()?;
                let since = now.saturating_duration_since(o.at);
                if !o.live && since > PEER_STATE_TTL {
                    return None;
                }
                Some(PeerStatus {
                    peer,
                    addr: o.addr,
                    connection: o.connection.clone(),
                    via: o.via,
                    since,
                    failures: e.failures,
                })
            })
            .collect()
    }
}

/// One follower as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerStatus {
    /// The follower's node id.
    pub peer: NodeId,
    /// Whether its link has a live connection.
    pub connected: bool,
    /// The link's state.
    pub state: LinkState,
    /// Highest offset it confirmed durable.
    pub acked_offset: u64,
    /// Entries it is behind the leader's log end.
    pub lag: u64,
    /// Whether it is in the ISR.
    pub in_isr: bool,
    /// Bytes sent to it and not yet acked.
    pub inflight_bytes: usize,
    /// Reconnections of its link.
    pub reconnects: u64,
    /// Snapshots sent to it (it was behind the leader's log start).
    pub snapshots_sent: u64,
    /// Times its link actor died (e.g. panicked) and the Replicator started
    /// a new one.
    pub link_restarts: u64,
    /// How the link's connection stands: connecting, connected, or why
    /// the last attempt failed (a refused handshake shows here while
    /// `state` only says `connecting`).
    pub connection: PeerConnection,
}

/// A node's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub node_id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its part in elections (follower, pre-candidate, candidate, leader).
    pub election_role: ElectionRole,
    /// Its epoch.
    pub epoch: u64,
    /// The leader it knows (itself if it leads).
    pub leader: Option<NodeId>,
    /// Whom it voted for in `epoch`, if anyone.
    pub voted_for: Option<NodeId>,
    /// Time since its active leader session last delivered anything (zero
    /// on the leader; `None` if it never heard a leader since it started).
    pub since_leader_contact: Option<Duration>,
    /// Elections this node stood in since it started (each one a new
    /// epoch).
    pub elections: u64,
    /// Pre-vote rounds it started (no epoch change; most end there while a
    /// leader is alive).
    pub pre_votes: u64,
    /// Last offset in its log.
    pub log_end: u64,
    /// Epoch of the entry at `log_end` (0 for an empty log): with
    /// `log_end`, what elections compare.
    pub last_log_epoch: u64,
    /// Last offset durable in its WAL.
    pub durable: u64,
    /// The commit point (highest committed offset) it knows.
    pub commit: u64,
    /// Last offset applied to its metadata state.
    pub applied_offset: u64,
    /// ISR size (leader only; 0 on a follower).
    pub isr_len: usize,
    /// Followers (leader only).
    pub followers: Vec<FollowerStatus>,
}

impl NodeStatus {
    /// The status of one follower.
    pub fn follower(&self, peer: NodeId) -> Option<&FollowerStatus> {
        self.followers.iter().find(|f| f.peer == peer)
    }
}

// Here, not in tls.rs: tls knows nothing of the status types (no import
// cycle tls -> status -> shared -> metrics -> error -> tls).
impl ConnectError {
    /// What the failure says about the connection to the peer.
    pub fn connection(&self) -> PeerConnection {
        let detail = self.to_string();
        match self {
            ConnectError::Timeout(_) => PeerConnection::unreachable(Unreachable::TimedOut, detail),
            ConnectError::Tcp(e) => PeerConnection::unreachable(Unreachable::of_io(e), detail),
            ConnectError::TlsTimeout(_) => {
                PeerConnection::refused(HandshakeRefusal::TimedOut, detail)
            }
            // The peer closed (or reset) the connection before TLS could
            // judge anything: it is shutting down, or refused the
            // connection without a TLS alert.
            ConnectError::Tls(e) if is_abrupt_close(e) => {
                PeerConnection::refused(HandshakeRefusal::Closed, detail)
            }
            ConnectError::Tls(_) => PeerConnection::refused(HandshakeRefusal::Tls, detail),
        }
    }
}

/// This node's leadership: its role, its epoch and the leader it knows,
/// published as one snapshot (a reader never sees the epoch of one change
/// with the leader of another). [`crate::Node::leadership`] reads it;
/// [`crate::Node::leadership_changes`] streams every change in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leadership {
    /// What the node is doing.
    pub role: Role,
    /// The highest epoch it acts in.
    pub epoch: u64,
    /// The leader of that epoch it knows, if any (itself when it leads).
    pub leader: Option<NodeId>,
    /// How many changes were published before this one (0 for the state
    /// the node started in): a gap between two snapshots a reader sees
    /// counts the changes it did not see.
    pub seq: u64,
}

impl Leadership {
    /// Whether this node leads (and so takes writes).
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}

/// What a node is doing: the node engine's one role type.
pub use metawal::engine::node::Role;

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn the_limiter_warns_once_per_interval_and_counts_what_it_suppressed() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(T);
        let r = "connection_refused";
        assert_eq!(l.failure(r, t0), Some(0));
        for s in 1..=5 {
            assert_eq!(l.failure(r, t0 + Duration::from_secs(s)), None);
        }
        // Just before the interval is over: still quiet.
        assert_eq!(l.failure(r, t0 + T - Duration::from_millis(1)), None);
        // At the interval: warns, with the six it kept quiet.
        assert_eq!(l.failure(r, t0 + T), Some(6));
        assert_eq!(l.failure(r, t0 + T + Duration::from_secs(1)), None);
        // A new reason is news: logged at once, then limited on its own.
        let s = "secret_mismatch";
        assert_eq!(l.failure(s, t0 + T + Duration::from_secs(1)), Some(0));
        assert_eq!(l.failure(s, t0 + T + Duration::from_secs(2)), None);
        // A success: the next failure warns at once.
        assert_eq!(l.success(), 2);
        assert_eq!(l.failure(r, t0 + T + Duration::from_secs(3)), Some(0));
    }

    fn refused() -> PeerConnection {
        PeerConnection::refused(HandshakeRefusal::SecretMismatch, "proof does not verify")
    }

    #[test]
    fn the_peer_table_rate_limits_per_peer_and_reports_a_restored_connection() {
        let table = PeerTable::default();
        let t0 = Instant::now();
        let note = |peer, c, at| table.note(peer, PeerChannel::Replication, None, c, true, at);
        assert_eq!(note(2, refused(), t0), Noted::Warn { suppressed: 0 });
        // Another peer has its own limit; the election channel shares the
        // peer's.
        assert_eq!(note(3, refused(), t0), Noted::Warn { suppressed: 0 });
        assert_eq!(
            table.note(2, PeerChannel::Election, None, refused(), false, t0),
            Noted::Suppressed
        );
        assert_eq!(note(2, refused(), t0 + T), Noted::Warn { suppressed: 1 });
        assert_eq!(
            note(2, PeerConnection::Connected, t0 + T),
            Noted::Restored { failures: 3 }
        );
        assert_eq!(note(2, PeerConnection::Connected, t0 + T), Noted::Quiet);
        let snap = table.snapshot(t0 + T);
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].peer, 2);
        assert_eq!(snap[0].connection, PeerConnection::Connected);
        assert_eq!(snap[0].failures, 0);
        assert_eq!(snap[1].connection, refused());
        assert_eq!(snap[1].failures, 1);
    }

    /// A peer that closes one handshake is usually stopping (a planned
    /// close): not a warning; a second close in a row is.
    #[test]
    fn one_closed_handshake_is_quiet_a_second_in_a_row_warns() {
        let table = PeerTable::default();
        let t0 = Instant::now();
        let closed = || PeerConnection::refused(HandshakeRefusal::Closed, "peer closed");
        let note = |c| table.note(2, PeerChannel::Election, None, c, false, t0);
        assert_eq!(note(closed()), Noted::Suppressed);
        assert_eq!(note(closed()), Noted::Warn { suppressed: 0 });
        assert_eq!(
            note(PeerConnection::Connected),
            Noted::Restored { failures: 2 }
        );
        assert_eq!(note(closed()), Noted::Suppressed);
        // Any other refusal warns at once.
        assert_eq!(note(refused()), Noted::Warn { suppressed: 0 });
    }

    #[test]
    fn inbound_observations_of_unknown_ids_are_dropped_and_unbacked_ones_expire() {
        let table = PeerTable::default();
        let t0 = Instant::now();
        // An unauthenticated peer claiming id 99: not a configured voter.
        let n = table.note(99, PeerChannel::Inbound, None, refused(), false, t0);
        assert_eq!(n, Noted::Quiet);
        assert!(table.snapshot(t0).is_empty());
        table.register(4);
        table.note(4, PeerChannel::Inbound, None, refused(), false, t0);
        table.note(
            5,
            PeerChannel::Replication,
            None,
            PeerConnection::Connected,
            true,
            t0,
        );
        let later = t0 + PEER_STATE_TTL + Duration::from_secs(1);
        // The live link's observation stays; the inbound one expired.
        let snap = table.snapshot(later);
        assert_eq!(snap.iter().map(|p| p.peer).collect::<Vec<_>>(), vec![5]);
        // Once the link stops, its observation expires too.
        table.release(5, PeerChannel::Replication, later);
        assert_eq!(table.snapshot(later).len(), 1);
        assert!(table
            .snapshot(later + PEER_STATE_TTL + Duration::from_secs(1))
            .is_empty());
    }

    #[test]
    fn a_connection_state_serializes_with_its_reason() {
        let json = serde_json::to_value(refused()).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "state": "handshake_refused",
                "reason": "secret_mismatch",
                "detail": "proof does not verify",
            })
        );
        let json = serde_json::to_value(PeerConnection::Connected).expect("serializes");
        assert_eq!(json, serde_json::json!({ "state": "connected" }));
        let json = serde_json::to_value(PeerConnection::unreachable(
            Unreachable::ConnectionRefused,
            "connect failed",
        ))
        .expect("serializes");
        assert_eq!(json["reason"], "connection_refused");
    }
}
