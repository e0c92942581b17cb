//! Metadata commands and log entries.
//!
//! A [`Command`] is what a broker proposes; an [`Entry`] is a command that the
//! leader of an epoch placed at an offset of the log. Entries are what the WAL
//! stores (see [`crate::record`]) and what every node applies, in offset order,
//! to its [`crate::state::MetadataState`].

use serde::{Deserialize, Serialize};

pub use crate::id::NodeId;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Create a topic with `partition_count` partitions (numbered `0..partition_count`).
    CreateTopic {
        /// Kafka topic name: 1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
        name: String,
        /// Number of partitions, at least 1.
        partition_count: u32,
        /// Replicas per partition, at least 1.
        replication_factor: u32,
    },
    /// Delete a topic and all its partitions.
    DeleteTopic {
        /// The topic to delete.
        name: String,
    },
    /// Set the replica list of one partition.
    AssignPartition {
        /// Topic name.
        topic: String,
        /// Partition index, `0..partition_count`.
        partition: i32,
        /// Broker ids holding the partition; non-empty, no duplicates.
        replicas: Vec<NodeId>,
    },
    /// Set the leader of one partition.
    SetPartitionLeader {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The new leader; must be one of the partition's replicas.
        leader: NodeId,
    },
    /// Set the in-sync replica set of one partition.
    UpdateIsr {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Non-empty subset of the replicas that contains the current leader.
        isr: Vec<NodeId>,
    },
    /// Several commands applied as one log entry, in order, all or none:
    /// validated together (each against the state the earlier ones leave),
    /// and if any is refused the whole batch changes nothing. 1 to
    /// [`crate::state::MAX_BATCH_COMMANDS`] commands; no `Batch` or
    /// `LeaderChange` inside. Creating a topic (or growing one with
    /// `CreatePartitions`) together with its partition assignments is the
    /// typical use.
    Batch {
        /// The commands, applied in this order.
        commands: Vec<Command>,
    },
    /// Control entry appended by a new metadata leader as the first entry of
    /// its epoch. Its commit commits every earlier entry. Never proposed by a
    /// broker.
    LeaderChange {
        /// The metadata leader's node id.
        leader: NodeId,
        /// The epoch it leads.
        epoch: u64,
    },
    /// Control entry appended by the metadata leader to change the voters
    /// and learners (one at a time, see [`crate::membership::admit_change`]).
    /// In force from its append: it sets the majorities every later entry
    /// is counted by. Never proposed by a broker.
    Membership(crate::membership::Membership),
    /// Grow topic `topic` to `partition_count` partitions in all (Kafka's
    /// CreatePartitions): the new partitions are numbered from the old
    /// count; only up (a count not above the current one is refused), at
    /// most the per-topic partition limit
    /// ([`crate::state::MAX_PARTITIONS`]); their replicas are assigned by
    /// `AssignPartition` commands (typically in the same `Batch`).
    ///
    /// The last variant on purpose: new variants go at the end, so the
    /// order of the existing ones (and what older logs hold) stays as it was.
    CreatePartitions {
        /// The topic to grow.
        topic: String,
        /// The topic's new partition count, in all (not the number added).
        partition_count: u32,
    },
}

impl Command {
    /// A short name of the command kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::CreateTopic { .. } => "CreateTopic",
            Command::DeleteTopic { .. } => "DeleteTopic",
            Command::AssignPartition { .. } => "AssignPartition",
            Command::SetPartitionLeader { .. } => "SetPartitionLeader",
            Command::UpdateIsr { .. } => "UpdateIsr",
            Command::Batch { .. } => "Batch",
            Command::LeaderChange { .. } => "LeaderChange",
            Command::Membership(_) => "Membership",
            Command::CreatePartitions { .. } => "CreatePartitions",
        }
    }
}

/// A command placed in the log: offsets are dense and start at 1; `epoch` is
/// the epoch of the leader that appended it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub offset: u64,
    /// Epoch of the leader that wrote the entry.
    pub epoch: u64,
    /// The change.
    pub command: Command,
}

impl Entry {
    /// Whether the entry changes the membership (a control entry that takes
    /// effect when appended, not when applied).
    pub fn is_membership(&self) -> bool {
        matches!(self.command, Command::Membership(_))
    }
}
