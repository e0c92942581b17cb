//! The cluster metadata state machine: validate a command, apply an entry.
//!
//! STUB — to be implemented (see issue 2, item 3).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Entry, NodeId};

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// Largest replication factor / replica list.
pub const MAX_REPLICAS: u32 = 64;
/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a command is refused. Each rule has its own variant.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    /// Placeholder until implemented.
    #[error("placeholder")]
    Placeholder,
}

/// One partition's assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartitionState {
    /// Replica broker ids, in preference order (empty until assigned).
    pub replicas: Vec<NodeId>,
    /// Current leader, if set.
    pub leader: Option<NodeId>,
    /// In-sync replicas.
    pub isr: Vec<NodeId>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    /// Replication factor requested at creation.
    pub replication_factor: u32,
    /// Partitions `0..partition_count`, by index.
    pub partitions: Vec<PartitionState>,
}

/// A 32-byte SHA-256 digest of a state, printed as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
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
}

impl MetadataState {
    /// An empty state at offset 0.
    pub fn new() -> MetadataState {
        MetadataState::default()
    }

    /// Check `command` against this state. `LeaderChange` is refused: it is a
    /// control entry only the replication layer appends.
    pub fn validate(&self, command: &Command) -> Result<(), ValidationError> {
        let _ = command;
        todo!()
    }

    /// Apply `entry`, which must be at `applied_offset() + 1`. An entry whose
    /// command does not validate (cannot happen for a log written by a leader)
    /// changes nothing but the applied offset, identically on every node, and
    /// the error is returned for logging.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), ValidationError> {
        let _ = entry;
        todo!()
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

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics.get(name)
    }

    /// All topics, in name order.
    pub fn topics(&self) -> impl Iterator<Item = (&String, &TopicState)> {
        self.topics.iter()
    }

    /// Stable digest of the whole state (independent of map order).
    pub fn digest(&self) -> Digest {
        todo!()
    }
}
