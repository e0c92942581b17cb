//! Errors of the actor layer: one enum for what a proposal can return, one for
//! starting a node, one for the disk thread.

use std::net::SocketAddr;
use std::time::Duration;

use metawal::config::ConfigError;
use metawal::state::ValidationError;
use metawal::storage::StorageError;
use metawal::wal::WalError;
use metawal::NodeId;

/// Whether a failed proposal's entry may be in the log: what an embedder
/// needs to decide between "retry anywhere" and "read back first".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Nothing was appended: the proposal can be retried (elsewhere, or
    /// later) without risk of applying it twice.
    No,
    /// The entry may be in the log and may commit: read it back (e.g. from
    /// the next leader's view or change stream) before retrying.
    Maybe,
}

/// Why a proposal failed. Each variant says whether anything was appended
/// ([`ProposeError::appended`] says it in code).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposeError {
    /// This node does not lead; nothing was appended.
    #[error("node {node} is not the metadata leader (leader: {}); send the proposal there", leader.map_or("unknown".to_string(), |l| format!("node {l}")))]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// The command breaks a metadata rule; nothing was appended.
    #[error("invalid command: {0}")]
    Invalid(#[from] ValidationError),
    /// `acks=all` with fewer in-sync replicas than `min_insync_replicas`;
    /// nothing was appended.
    #[error("not enough in-sync replicas: the ISR has {isr} of the {required} that acks=all requires; nothing was appended, retry when followers have caught up")]
    NotEnoughReplicas {
        /// ISR size (leader included).
        isr: usize,
        /// `min_insync_replicas` in force.
        required: usize,
    },
    /// The entry was appended (and is committed at `offset`), but the ISR had
    /// shrunk below `min_insync_replicas` by then, so it is not acknowledged as
    /// `acks=all`.
    #[error("entry {offset} was appended but the ISR shrank to {isr}, below the {required} that acks=all requires; the entry is in the log")]
    NotEnoughReplicasAfterAppend {
        /// Offset of the appended entry.
        offset: u64,
        /// ISR size when it committed.
        isr: usize,
        /// `min_insync_replicas` in force.
        required: usize,
    },
    /// The entry was appended at `offset` but did not reach the requested
    /// acknowledgement in time; it may still commit.
    #[error("timed out after {timeout:?} waiting for offset {offset}; the entry is in the leader's log and may still commit")]
    Timeout {
        /// Offset of the appended entry.
        offset: u64,
        /// The request timeout.
        timeout: Duration,
    },
    /// This node stopped leading (it lost its quorum or an election, or
    /// handed leadership over) after appending the entry and before it was
    /// acknowledged: the entry may or may not be committed by the next
    /// leader. Read it back there before retrying.
    #[error("this node stopped leading before the entry was acknowledged; it may or may not commit under the next leader: check there before retrying")]
    LeadershipLost,
    /// The entry would be larger than a log record may be; nothing was
    /// appended. Split the batch.
    #[error("the entry would be {bytes} bytes, above the {max}-byte record limit; nothing was appended: split it into smaller batches")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The record size limit.
        max: usize,
    },
    /// Too much is queued; nothing was appended.
    #[error("node is overloaded ({0}); nothing was appended, retry later")]
    Overloaded(Overload),
    /// The node's storage failed earlier and it stopped accepting writes;
    /// nothing was appended. Restart the node.
    #[error("this node's storage failed and it stopped accepting writes; nothing was appended: restart the node")]
    StorageFailed,
    /// The leader's storage failed after the entry at `offset` was handed
    /// to it: the entry may have reached followers and may still commit
    /// under the next leader. This node takes no more writes (restart it);
    /// read the entry back on the next leader before retrying.
    #[error("this node's storage failed after offset {offset} was appended; it may still commit under the next leader: read it back there before retrying")]
    StorageFailedAfterAppend {
        /// Offset of the appended entry.
        offset: u64,
    },
    /// The entry could not be encoded as a log record; nothing was
    /// appended.
    #[error("cannot encode the entry: {0}; nothing was appended")]
    Encode(metawal::record::RecordError),
    /// The node is stopping.
    #[error("node is shutting down")]
    ShuttingDown,
}

/// What is full when a proposal is refused as [`ProposeError::Overloaded`].
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overload {
    /// Too many entries are appended but not committed (followers or the
    /// disk are behind).
    #[error("{entries} entries appended but not committed, at most {max}")]
    Uncommitted {
        /// Entries appended but not committed.
        entries: u64,
        /// The limit.
        max: u64,
    },
    /// The Replicator's mailbox is full.
    #[error("the Replicator's mailbox is full")]
    ReplicatorMailbox,
}

impl ProposeError {
    /// Whether the entry may have been appended: the split the HTTP API
    /// answers with 503 (no) or 504 (maybe).
    pub fn appended(&self) -> Appended {
        match self {
            ProposeError::NotLeader { .. }
            | ProposeError::Invalid(_)
            | ProposeError::NotEnoughReplicas { .. }
            | ProposeError::TooLarge { .. }
            | ProposeError::Overloaded(_)
            | ProposeError::StorageFailed
            | ProposeError::Encode(_) => Appended::No,
            ProposeError::NotEnoughReplicasAfterAppend { .. }
            | ProposeError::StorageFailedAfterAppend { .. }
            | ProposeError::Timeout { .. }
            | ProposeError::LeadershipLost
            // The store may have gone away after appending.
            | ProposeError::ShuttingDown => Appended::Maybe,
        }
    }
}

impl ProposeError {
    /// The leader engine's verdict on the entry it was handed at `offset`.
    pub(crate) fn from_leader(e: metawal::engine::LeaderError, offset: u64) -> ProposeError {
        use metawal::engine::LeaderError;
        match e {
            LeaderError::NotEnoughReplicasAfterAppend {
                offset,
                isr,
                required,
            } => ProposeError::NotEnoughReplicasAfterAppend {
                offset,
                isr,
                required,
            },
            // The reason is the leader's ERROR line; the caller needs the
            // offset to read the entry back.
            LeaderError::Storage(_) => ProposeError::StorageFailedAfterAppend { offset },
            LeaderError::ShuttingDown => ProposeError::ShuttingDown,
            LeaderError::SteppedDown => ProposeError::LeadershipLost,
            LeaderError::TimedOut { timeout } => ProposeError::Timeout { offset, timeout },
        }
    }
}

/// Why a linearizable read ([`crate::Node::read_index`]) could not be
/// confirmed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// This node does not lead; linearizable reads are confirmed by the
    /// leader.
    #[error("node {node} is not the metadata leader (leader: {}); read there", leader.map_or("unknown".to_string(), |l| format!("node {l}")))]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// This node stopped leading while the read was being confirmed.
    #[error("this node stopped leading while confirming the read; retry on the new leader")]
    LeadershipLost,
    /// No quorum confirmed the leadership within the time allowed.
    #[error("no quorum confirmed this node's leadership within {0:?}; retry")]
    Timeout(Duration),
}

/// Why a membership change ([`crate::Node::add_learner`],
/// [`crate::Node::promote`], [`crate::Node::remove`]) failed. Each variant
/// says whether the change may still take effect.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberError {
    /// The leader refused it (the rules of `metawal::membership`): nothing
    /// was appended; the reason says what to do.
    #[error(transparent)]
    Refused(#[from] metawal::membership::ChangeRefused),
    /// The new member's replication address is not `IP:port`; nothing was
    /// appended.
    #[error("replication address {addr:?} is not IP:port (a member is reached at the address it is added with); nothing changed")]
    BadAddress {
        /// The address given.
        addr: String,
    },
    /// The store would not append the entry (see the proposal error):
    /// nothing was appended.
    #[error("the membership entry was not appended: {0}")]
    NotAppended(ProposeError),
    /// Appended at `offset` but not committed within `waited`: it stays in
    /// force and may still commit (or be truncated by a new leader). List
    /// the members to see.
    #[error("the membership change appended at offset {offset} was not committed within {waited:?}; it may still commit: list the members to see")]
    Timeout {
        /// The entry's offset.
        offset: u64,
        /// How long the call waited.
        waited: Duration,
    },
    /// Appended at `offset`, then this node stopped leading before it
    /// committed: a new leader keeps or truncates it. List the members on
    /// the new leader.
    #[error("this node stopped leading before the membership change at offset {offset} committed; the new leader keeps or drops it: list the members there")]
    LeadershipLost {
        /// The entry's offset.
        offset: u64,
    },
    /// Another change asked of this node is still being admitted or
    /// committed; nothing was appended by this call. Retry once it returns.
    #[error("another membership change is under way on this node; retry once it returns")]
    Busy,
    /// The node is stopping; nothing was appended by this call.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a leader transfer (or a role change the NodeDriver asked for) failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoleError {
    /// This node does not lead; only the leader can hand leadership over.
    #[error("node {node} is not the metadata leader (leader: {}); ask the leader", leader.map_or("unknown".to_string(), |l| format!("node {l}")))]
    NotLeader {
        /// This node.
        node: NodeId,
        /// The leader it knows, if any.
        leader: Option<NodeId>,
    },
    /// The target is not a peer of this node.
    #[error("node {node} is not a voter of this cluster (or is this node); nothing changed")]
    UnknownPeer {
        /// The target asked for.
        node: NodeId,
    },
    /// A step of a transfer did not finish in time; the old leader takes
    /// proposals again if it still leads.
    #[error("leader transfer to node {to} timed out while {step} (waited {waited:?}); the old leader keeps leading if it still can")]
    TransferTimedOut {
        /// The target.
        to: NodeId,
        /// The step that timed out.
        step: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// Another transfer is under way; nothing changed.
    #[error("a leader transfer to node {to} is already under way; nothing changed")]
    TransferInProgress {
        /// The target of the transfer under way.
        to: NodeId,
    },
    /// The node is shutting down (its actors are gone).
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration is invalid.
    #[error("invalid node configuration: {0}")]
    Config(ConfigProblem),
    /// The data directory belongs to another node or cluster.
    #[error("data dir {} belongs to node {found_node} of cluster {found_cluster:?}, not node {node} of cluster {cluster:?}", dir.display())]
    ForeignDataDir {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The node id recorded in it.
        found_node: NodeId,
        /// The cluster id recorded in it.
        found_cluster: String,
        /// This node's id.
        node: NodeId,
        /// This node's cluster id.
        cluster: String,
    },
    /// The pre-bound replication listener was taken by an earlier start.
    #[error("the pre-bound replication listener was used by an earlier start: pass a new one")]
    ListenerTaken,
    /// The node id, cluster id or secret cannot key the handshake.
    #[error(transparent)]
    Keys(#[from] metawal::handshake::KeysError),
    /// The meta on disk refused the start's own record of it (a torn or
    /// foreign meta file).
    #[error("the meta file refused this start's record: {0}")]
    MetaRefused(metawal::engine::epoch::EpochRefused),
    /// The thread loading the TLS files did not finish (it panicked or the
    /// runtime is shutting down).
    #[error("loading the TLS files did not finish: {0}")]
    TlsLoadAborted(tokio::task::JoinError),
    /// A replication tunable is invalid.
    #[error(transparent)]
    Tunable(#[from] ConfigError),
    /// The replication address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Recovering the data directory failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The node was asked to stop while starting.
    #[error("node stopped while starting")]
    Stopped,
    /// The voters the flags give are not a valid membership.
    #[error("the voters given by the flags are not a valid membership: {0}")]
    BootstrapMembership(metawal::membership::MembershipError),
    /// The TLS files could not be loaded or the node's own certificate
    /// fails the checks its peers will make.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// What is wrong with a [`crate::NodeConfig`] ([`NodeError::Config`]).
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// `node_id` is 0.
    #[error("node_id must be at least 1")]
    ZeroNodeId,
    /// `cluster_id` is empty.
    #[error("cluster_id must not be empty")]
    EmptyClusterId,
    /// `secret` is empty.
    #[error("secret must not be empty: replication connections are authenticated with it")]
    EmptySecret,
    /// `peers` lists this node.
    #[error("peers must list the other nodes, not this node ({node})")]
    SelfInPeers {
        /// This node's id.
        node: NodeId,
    },
    /// A peer id is 0.
    #[error("peer ids must be at least 1")]
    ZeroPeerId,
    /// Neither TLS nor plaintext is chosen.
    #[error("no TLS configured: set tls (certificate, key and CA files), or insecure_plaintext to run peer connections unencrypted")]
    NoTransport,
    /// Both TLS and plaintext are set.
    #[error("both tls and insecure_plaintext are set: choose one")]
    TlsAndPlaintext,
    /// `join` is set, but no peer names the cluster to join.
    #[error("a joining node needs the cluster's voters as its peers (or --join to find them)")]
    JoinWithoutPeers,
}

/// Errors of the disk thread.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// Snapshot or meta storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The data directory is inconsistent.
    #[error("data directory {dir} is inconsistent: {reason}")]
    Inconsistent {
        /// The data directory.
        dir: String,
        /// What does not fit.
        reason: String,
    },
    /// The disk thread has stopped (after a fatal error or shutdown).
    #[error("the disk thread of node {0} has stopped")]
    Stopped(NodeId),
    /// The disk thread's queue is full.
    #[error("the disk thread's queue of node {0} is full")]
    QueueFull(NodeId),
}

impl From<metawal::engine::recovery::RecoverError> for DiskError {
    fn from(e: metawal::engine::recovery::RecoverError) -> DiskError {
        use metawal::engine::recovery::RecoverError;
        match e {
            RecoverError::Wal(e) => DiskError::Wal(e),
            RecoverError::Storage(e) => DiskError::Storage(e),
            RecoverError::Inconsistent { dir, reason } => DiskError::Inconsistent { dir, reason },
        }
    }
}

/// Why [`crate::Node::status`] could not answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusError {
    /// The node has stopped (its actors are gone).
    #[error("node {node} has stopped")]
    Stopped {
        /// The node.
        node: NodeId,
    },
}

/// Why [`crate::Node::metrics_text`] has no text.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsError {
    /// The node's status, which the gauges are read from, could not be had.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// Encoding the metrics as text failed.
    #[error("encoding the metrics failed")]
    Encode,
}

/// Why [`crate::Node::state`] or [`crate::Node::applied`] could not answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// The node has stopped (its store is gone).
    #[error("node {node} has stopped")]
    Stopped {
        /// The node.
        node: NodeId,
    },
}

/// Why [`crate::Node::log_start`] could not answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogStartError {
    /// The disk reader failed or has stopped.
    #[error("node {node} cannot read its log: {reason}")]
    Disk {
        /// The node.
        node: NodeId,
        /// What the disk layer said.
        reason: String,
    },
}

/// Why [`crate::Node::subscribe`] refused a subscriber.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The store's mailbox is full: retry shortly.
    #[error("node {node} is overloaded: its store's mailbox is full; retry")]
    Overloaded {
        /// The node.
        node: NodeId,
    },
    /// The node has stopped.
    #[error("node {node} has stopped")]
    Stopped {
        /// The node.
        node: NodeId,
    },
}
