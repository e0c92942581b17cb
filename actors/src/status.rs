//! `NodeStatus`: what a node reports about itself and, on the leader, about
//! each follower.

use std::time::Duration;

use metawal::engine::election::ElectionRole;
use metawal::replication::LinkState;
use metawal::NodeId;

pub(crate) use crate::peer_connection::reject_text;
pub use crate::peer_connection::{HandshakeRefusal, PeerChannel, PeerConnection, Unreachable};
pub(crate) use crate::peer_table::Noted;
pub use crate::peer_table::{PeerStatus, PeerTable, PEER_STATE_TTL, PEER_WARN_INTERVAL};

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
