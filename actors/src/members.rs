//! The cluster's membership as the running node carries it: where the
//! first one comes from, how the log owner tells the NodeDriver what its
//! log did with membership entries, and what a reader of the members sees.
//!
//! Why a file of its own: the rules are the core crate's
//! (`metawal::membership`, `NodeEngine::admit_change`); this file only
//! holds the facts the actors pass around — the bootstrap membership built
//! from the flags, the [`LogEvent`]s from the `ReplicaListener` to the
//! `NodeDriver` (in order, never dropped), and the [`Members`] answer.

use std::net::SocketAddr;
use std::time::Duration;

use metawal::membership::{DirectoryId, Member, MemberRole, Membership};
use metawal::NodeId;

use crate::config::NodeConfig;
use crate::error::NodeError;

/// Most [`LogEvent`]s the log owner may be ahead of the NodeDriver by. One
/// is sent per membership entry written, truncation and snapshot install
/// (rare: a change is one entry, a truncation follows an election); a
/// driver that falls this far behind is stuck, and the node fail-stops
/// rather than lose one.
pub(crate) const MAX_LOG_EVENTS: usize = 1024;

/// What a follower's log owner did that moves the membership in force
/// (the node engine's `MembershipAppended`, `LogTruncated`,
/// `MembershipReset`).
#[derive(Debug, Clone)]
pub(crate) enum LogEvent {
    /// A membership entry was written at `offset`.
    Appended { offset: u64, membership: Membership },
    /// Every entry after `after` was dropped.
    Truncated { after: u64 },
    /// A snapshot at `offset` replaced the log; `membership` is the one it
    /// holds (`None`: a snapshot of a cluster that never logged one, whose
    /// voters are still those of its bootstrap).
    Reset {
        offset: u64,
        membership: Option<Membership>,
    },
}

/// Sends [`LogEvent`]s to the NodeDriver, bounded by [`MAX_LOG_EVENTS`].
pub(crate) type LogEventTx = tokio::sync::mpsc::Sender<LogEvent>;
/// The NodeDriver's end.
pub(crate) type LogEventRx = tokio::sync::mpsc::Receiver<LogEvent>;

/// A member as a node knows it from its flags.
fn flag_member(
    node_id: NodeId,
    replication: SocketAddr,
    http: Option<&String>,
    kafka: Option<&String>,
) -> Member {
    Member {
        node_id,
        // Not known from flags: the first leader logs the membership with
        // its own directory id only; see docs/membership.md.
        directory_id: DirectoryId::UNKNOWN,
        replication_addr: replication.to_string(),
        http_addr: http.cloned().unwrap_or_default(),
        kafka_addr: kafka.cloned().unwrap_or_default(),
    }
}

/// The membership a node starts with when its snapshot and log hold none:
/// this node and its `peers` as voters (a new cluster's bootstrap), or,
/// for a node that joins a running cluster (`config.join`), its peers as
/// voters and this node as nobody: it never stands until the leader's log
/// makes it a voter.
pub(crate) fn bootstrap(
    config: &NodeConfig,
    replication_addr: SocketAddr,
    directory_id: DirectoryId,
) -> Result<Membership, NodeError> {
    let peers = config.peers.iter().map(|(&id, &addr)| {
        flag_member(
            id,
            addr,
            config.peer_http.get(&id),
            config.peer_kafka.get(&id),
        )
    });
    let me = Member {
        directory_id,
        ..flag_member(
            config.node_id,
            replication_addr,
            config.http_addr.as_ref(),
            config.kafka_addr.as_ref(),
        )
    };
    let voters: Vec<Member> = if config.join {
        peers.collect()
    } else {
        std::iter::once(me).chain(peers).collect()
    };
    Membership::new(voters, []).map_err(NodeError::BootstrapMembership)
}

/// The replication address of a member, as a socket address: members are
/// added with `IP:port` (checked when the change is asked for), and one that
/// does not parse (a log written by something else) is not connected to.
pub(crate) fn socket_addr(m: &Member) -> Option<SocketAddr> {
    m.replication_addr.parse().ok()
}

/// One member as [`crate::Node::members`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member.
    pub member: Member,
    /// Voter or learner.
    pub role: MemberRole,
    /// The highest offset it acknowledged as durable (known on the leader
    /// only; the leader's own log end for itself).
    pub acked_offset: Option<u64>,
    /// Whether it is within the promotion bound of the leader's log end
    /// and was heard within the election timeout (known on the leader only).
    pub caught_up: Option<bool>,
    /// How long ago it last answered the leader in this leadership (known
    /// on the leader only; zero for the leader itself; `None` if it has not
    /// answered yet).
    pub heard_ago: Option<Duration>,
}

/// The cluster's members as this node knows them: the membership in
/// force in its log, and, on the leader, how far each member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The node that answered.
    pub node_id: NodeId,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// The leader's log end (on the leader; `None` elsewhere).
    pub log_end: Option<u64>,
    /// The voters.
    pub voters: Vec<MemberStatus>,
    /// The learners.
    pub learners: Vec<MemberStatus>,
    /// The offset of the entry that put this membership in force, if it is
    /// not committed yet: a change under way.
    pub pending_offset: Option<u64>,
}

/// How long a promotion waits for its learner to catch up when the caller
/// names no timeout.
pub const DEFAULT_PROMOTE_WAIT: Duration = Duration::from_secs(10);

/// Most a caller may ask a promotion to wait.
pub const MAX_PROMOTE_WAIT: Duration = Duration::from_secs(600);
