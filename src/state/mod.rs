//! The cluster metadata state machine: validate a command, apply an entry.
//!
//! [`MetadataState`] holds the topics, their partitions (replicas, leader,
//! ISR) and the position in the log (applied offset and epoch, and the
//! metadata leader named by the last `LeaderChange`).
//!
//! * [`MetadataState::validate`] checks a proposed
//!   [`Command`](crate::command::Command) against the state and returns a
//!   [`ValidationError`] with one variant per rule.
//! * [`MetadataState::apply`] applies a log
//!   [`Entry`](crate::command::Entry). It is deterministic: the same entries
//!   in the same order give the same state, and the same
//!   [`MetadataState::digest`], on every node.
//!
//! # Apply semantics
//!
//! | command | effect |
//! |---|---|
//! | `CreateTopic` | partitions `0..partition_count`, each unassigned ([`PartitionState::default`]) |
//! | `DeleteTopic` | removes the topic and its partitions |
//! | `CreatePartitions` | appends partitions `old_count..partition_count`, each unassigned ([`PartitionState::default`]); the existing ones are unchanged |
//! | `AssignPartition` | sets the replicas; keeps the leader only if it is among the new replicas (else `None`); filters the ISR to the new replicas, keeping its order; if the ISR becomes empty while a leader remains, the ISR becomes `[leader]` |
//! | `SetPartitionLeader` | sets the leader; appends it to the ISR if it is not there |
//! | `UpdateIsr` | sets the ISR as given |
//! | `Batch` | each command in order, all or none: if one is refused the batch changes nothing ([`ValidationError::InBatch`]) |
//! | `LeaderChange` | sets [`MetadataState::leader`] (control entry: applied, never validated) |
//! | `Membership` | sets [`MetadataState::membership`] (control entry: applied, never validated) |
//!
//! An in-order entry whose command does not validate changes nothing but the
//! applied offset and epoch (identically on every node) and its error is
//! returned. An entry that is not at `applied_offset() + 1` changes nothing at
//! all and gives [`ValidationError::OutOfOrder`].
//!
//! # Invariants kept by `apply`
//!
//! For every partition: the replicas have no duplicates; the ISR has no
//! duplicates and is a subset of the replicas; a leader, if set, is a replica
//! and is in the ISR.
//!
//! In the source the module is split by concept, one file each: `mod.rs`
//! holds the state types and the lookups shared by the rest; `validate.rs`
//! the limits, [`ValidationError`] and [`MetadataState::validate`];
//! `apply.rs` [`MetadataState::apply`]; `batch.rs` the all-or-none
//! outcome of a `Batch`; `digest.rs` [`Digest`] and
//! [`MetadataState::digest`]. The submodules are private: every item is
//! used through this module (`metawal::state::X`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::NodeId;
use crate::membership::Membership;

mod apply;
mod batch;
mod digest;
#[cfg(test)]
pub(crate) mod tests;
mod validate;

pub use digest::Digest;
pub use validate::{
    ValidationError, MAX_BATCH_COMMANDS, MAX_PARTITIONS, MAX_REPLICAS, MAX_TOPIC_NAME_LEN,
};

/// One partition's assignment.
#[derive(Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartitionState {
    /// Replica broker ids, in preference order (empty until assigned).
    pub replicas: Vec<NodeId>,
    /// Current leader, if set.
    pub leader: Option<NodeId>,
    /// In-sync replicas.
    pub isr: Vec<NodeId>,
}

// By hand for `clone_from`: the derived one clones into new vectors; this
// one reuses the target's (every node's view copies a changed partition
// this way on each applied write).
impl Clone for PartitionState {
    fn clone(&self) -> PartitionState {
        PartitionState {
            replicas: self.replicas.clone(),
            leader: self.leader,
            isr: self.isr.clone(),
        }
    }

    fn clone_from(&mut self, source: &PartitionState) {
        self.replicas.clone_from(&source.replicas);
        self.leader = source.leader;
        self.isr.clone_from(&source.isr);
    }
}

impl PartitionState {
    /// True once the partition has replicas.
    pub fn is_assigned(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// True if `id` is one of the replicas.
    pub fn is_replica(&self, id: NodeId) -> bool {
        self.replicas.contains(&id)
    }

    /// True if `id` is in the ISR.
    pub fn is_in_isr(&self, id: NodeId) -> bool {
        self.isr.contains(&id)
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    /// Replication factor requested at creation.
    pub replication_factor: u32,
    /// Partitions `0..partition_count`, by index.
    pub partitions: Vec<PartitionState>,
}

impl TopicState {
    /// Number of partitions (they are numbered `0..partition_count()`).
    pub fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }

    /// A partition by index; `None` if negative or out of range.
    pub fn partition(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// The partition at `partition`, or the matching error.
    fn checked_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<&PartitionState, ValidationError> {
        self.partition(partition)
            .ok_or_else(|| self.out_of_range(topic, partition))
    }

    fn checked_partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, ValidationError> {
        let err = self.out_of_range(topic, partition);
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get_mut(i))
            .ok_or(err)
    }

    fn out_of_range(&self, topic: &str, partition: i32) -> ValidationError {
        ValidationError::PartitionOutOfRange {
            topic: topic.to_owned(),
            partition,
            partition_count: self.partition_count(),
        }
    }
}

/// The metadata of the cluster: topics and partitions, plus where in the log
/// it stands. Deterministic: the same entries in the same order give the same
/// state (and [`MetadataState::digest`]) on every node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataState {
    topics: BTreeMap<String, TopicState>,
    applied_offset: u64,
    applied_epoch: u64,
    leader: Option<NodeId>,
    /// The membership of the last applied `Membership` entry (None before
    /// the first; the bootstrap one is not in the state). Absent in states
    /// written before membership entries existed.
    #[serde(default)]
    membership: Option<Membership>,
}

impl MetadataState {
    /// An empty state at offset 0.
    pub fn new() -> MetadataState {
        MetadataState::default()
    }

    fn checked_topic(&self, name: &str) -> Result<&TopicState, ValidationError> {
        self.topics
            .get(name)
            .ok_or_else(|| ValidationError::UnknownTopic {
                name: name.to_owned(),
            })
    }

    fn checked_partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, ValidationError> {
        self.topics
            .get_mut(topic)
            .ok_or_else(|| ValidationError::UnknownTopic {
                name: topic.to_owned(),
            })?
            .checked_partition_mut(topic, partition)
    }

    /// Offset of the last applied entry (0 if none).
    pub fn applied_offset(&self) -> u64 {
        self.applied_offset
    }

    /// Epoch of the last applied entry.
    pub fn applied_epoch(&self) -> u64 {
        self.applied_epoch
    }

    /// The metadata leader named by the last applied `LeaderChange`.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The membership of the last applied `Membership` entry: what a
    /// snapshot of this state carries (None before the first such entry).
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics.get(name)
    }

    /// True if the topic exists.
    pub fn contains_topic(&self, name: &str) -> bool {
        self.topics.contains_key(name)
    }

    /// All topics, in name order.
    pub fn topics(&self) -> impl Iterator<Item = (&String, &TopicState)> {
        self.topics.iter()
    }

    /// Number of topics.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Total number of partitions over all topics.
    pub fn partition_total(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    /// One partition of a topic; `None` if the topic does not exist or the
    /// index is out of range.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics.get(topic)?.partition(partition)
    }
}
