//! The cluster metadata state machine: validate a command, apply an entry.
//!
//! [`MetadataState`] holds the topics, their partitions (replicas, leader,
//! ISR) and the position in the log (applied offset and epoch, and the
//! metadata leader named by the last `LeaderChange`).
//!
//! * [`MetadataState::validate`] checks a proposed [`Command`] against the
//!   state and returns a [`ValidationError`] with one variant per rule.
//! * [`MetadataState::apply`] applies a log [`Entry`]. It is deterministic:
//!   the same entries in the same order give the same state, and the same
//!   [`MetadataState::digest`], on every node.
//!
//! # Apply semantics
//!
//! | command | effect |
//! |---|---|
//! | `CreateTopic` | partitions `0..partition_count`, each unassigned ([`PartitionState::default`]) |
//! | `DeleteTopic` | removes the topic and its partitions |
//! | `AssignPartition` | sets the replicas; keeps the leader only if it is among the new replicas (else `None`); filters the ISR to the new replicas, keeping its order; if the ISR becomes empty while a leader remains, the ISR becomes `[leader]` |
//! | `SetPartitionLeader` | sets the leader; appends it to the ISR if it is not there |
//! | `UpdateIsr` | sets the ISR as given |
//! | `LeaderChange` | sets [`MetadataState::leader`] (control entry: applied, never validated) |
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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::command::{Command, Entry, NodeId};

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// Largest replication factor / replica list.
pub const MAX_REPLICAS: u32 = 64;
/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a command is refused (or an entry not applied). Each rule has its own
/// variant, carrying the offending values.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    /// The topic name is empty.
    #[error(
        "topic name is empty: a topic name must have 1 to {MAX_TOPIC_NAME_LEN} characters \
         from [a-zA-Z0-9._-]"
    )]
    EmptyTopicName,
    /// The topic name is longer than [`MAX_TOPIC_NAME_LEN`] characters.
    #[error(
        "topic name is {len} characters long: at most {max} characters are allowed \
         (name starts with {prefix:?})"
    )]
    TopicNameTooLong {
        /// Length of the name, in characters.
        len: usize,
        /// The limit, [`MAX_TOPIC_NAME_LEN`].
        max: usize,
        /// The first characters of the name (at most 32), to recognise it.
        prefix: String,
    },
    /// The topic name contains a character outside `[a-zA-Z0-9._-]`.
    #[error(
        "topic name {name:?} contains the illegal character {ch:?} at position {position}: \
         only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    IllegalTopicNameChar {
        /// The name.
        name: String,
        /// The first illegal character.
        ch: char,
        /// Its position in the name, counted in characters from 0.
        position: usize,
    },
    /// The topic name is `.` or `..`.
    #[error("topic name {name:?} is reserved: a topic may not be named \".\" or \"..\"")]
    ReservedTopicName {
        /// The name (`.` or `..`).
        name: String,
    },
    /// `partition_count` is 0 or above [`MAX_PARTITIONS`].
    #[error("partition count {count} is invalid: it must be between 1 and {max}")]
    InvalidPartitionCount {
        /// The requested count.
        count: u32,
        /// The limit, [`MAX_PARTITIONS`].
        max: u32,
    },
    /// `replication_factor` is 0 or above [`MAX_REPLICAS`].
    #[error("replication factor {factor} is invalid: it must be between 1 and {max}")]
    InvalidReplicationFactor {
        /// The requested factor.
        factor: u32,
        /// The limit, [`MAX_REPLICAS`].
        max: u32,
    },
    /// `CreateTopic` of a topic that already exists.
    #[error("topic {name:?} already exists: delete it first or choose another name")]
    TopicExists {
        /// The topic name.
        name: String,
    },
    /// The command names a topic that does not exist.
    #[error("unknown topic {name:?}: create it first")]
    UnknownTopic {
        /// The topic name.
        name: String,
    },
    /// The partition index is negative or not below the topic's partition count.
    #[error(
        "partition {partition} of topic {topic:?} is out of range: the topic has \
         {partition_count} partitions, numbered 0..{partition_count}"
    )]
    PartitionOutOfRange {
        /// The topic name.
        topic: String,
        /// The requested partition index.
        partition: i32,
        /// The topic's partition count.
        partition_count: u32,
    },
    /// `AssignPartition` with an empty replica list.
    #[error(
        "replica list for {topic}-{partition} is empty: assign between 1 and {MAX_REPLICAS} \
         distinct broker ids"
    )]
    EmptyReplicas {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// `AssignPartition` with a broker id listed twice.
    #[error(
        "replica list for {topic}-{partition} names broker {replica} more than once: \
         each broker may hold a partition once"
    )]
    DuplicateReplica {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The duplicated broker id.
        replica: NodeId,
    },
    /// `AssignPartition` with more than [`MAX_REPLICAS`] replicas.
    #[error("replica list for {topic}-{partition} has {count} brokers: at most {max} are allowed")]
    TooManyReplicas {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// Length of the requested replica list.
        count: usize,
        /// The limit, [`MAX_REPLICAS`].
        max: u32,
    },
    /// `SetPartitionLeader` with a leader that is not among the partition's
    /// replicas (including a partition that is not assigned yet).
    #[error(
        "broker {leader} cannot lead {topic}-{partition}: it is not one of its replicas \
         {replicas:?}; the leader must be a replica (assign the partition first if it has none)"
    )]
    LeaderNotReplica {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The requested leader.
        leader: NodeId,
        /// The partition's current replicas.
        replicas: Vec<NodeId>,
    },
    /// `UpdateIsr` with an empty ISR.
    #[error(
        "ISR for {topic}-{partition} is empty: it must contain at least one replica \
         (and the leader, if one is set)"
    )]
    EmptyIsr {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// `UpdateIsr` with a broker id listed twice.
    #[error(
        "ISR for {topic}-{partition} names broker {replica} more than once: \
         each replica may appear once"
    )]
    DuplicateIsrMember {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The duplicated broker id.
        replica: NodeId,
    },
    /// `UpdateIsr` naming a broker that is not a replica of the partition.
    #[error(
        "ISR for {topic}-{partition} names broker {replica}, which is not one of its \
         replicas {replicas:?}: the ISR must be a subset of the replicas"
    )]
    IsrNotSubset {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The first ISR member that is not a replica.
        replica: NodeId,
        /// The partition's current replicas.
        replicas: Vec<NodeId>,
    },
    /// `UpdateIsr` leaving out the partition's current leader.
    #[error(
        "ISR {isr:?} for {topic}-{partition} does not contain the current leader {leader}: \
         the leader must stay in the ISR (change the leader first)"
    )]
    IsrWithoutLeader {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The partition's current leader.
        leader: NodeId,
        /// The requested ISR.
        isr: Vec<NodeId>,
    },
    /// A control command (`LeaderChange`) was proposed: only the replication
    /// layer appends those.
    #[error(
        "{kind} is a control entry appended by the replication layer; brokers may not propose it"
    )]
    ControlCommand {
        /// The command kind.
        kind: &'static str,
    },
    /// [`MetadataState::apply`] got an entry that is not the next one. Nothing
    /// was changed, not even the applied offset.
    #[error(
        "entry at offset {got} is out of order: the next entry to apply is at offset {expected}"
    )]
    OutOfOrder {
        /// `applied_offset() + 1`.
        expected: u64,
        /// The entry's offset.
        got: u64,
    },
}

impl ValidationError {
    /// True for [`ValidationError::OutOfOrder`]: the entry was not applied at
    /// all (every other error from [`MetadataState::apply`] still advanced the
    /// applied offset).
    pub fn is_out_of_order(&self) -> bool {
        matches!(self, ValidationError::OutOfOrder { .. })
    }
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

/// Check a topic name against Kafka's rules.
fn validate_topic_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::EmptyTopicName);
    }
    if name == "." || name == ".." {
        return Err(ValidationError::ReservedTopicName {
            name: name.to_owned(),
        });
    }
    // Legal characters are ASCII, so a legal name has as many bytes as chars;
    // count characters only when the byte length is already over the limit.
    if name.len() > MAX_TOPIC_NAME_LEN {
        let len = name.chars().count();
        if len > MAX_TOPIC_NAME_LEN {
            return Err(ValidationError::TopicNameTooLong {
                len,
                max: MAX_TOPIC_NAME_LEN,
                prefix: name.chars().take(32).collect(),
            });
        }
    }
    if let Some((position, ch)) = name
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'))
    {
        return Err(ValidationError::IllegalTopicNameChar {
            name: name.to_owned(),
            ch,
            position,
        });
    }
    Ok(())
}

/// Check an `AssignPartition` replica list.
fn check_replicas(topic: &str, partition: i32, replicas: &[NodeId]) -> Result<(), ValidationError> {
    if replicas.is_empty() {
        return Err(ValidationError::EmptyReplicas {
            topic: topic.to_owned(),
            partition,
        });
    }
    if replicas.len() > MAX_REPLICAS as usize {
        return Err(ValidationError::TooManyReplicas {
            topic: topic.to_owned(),
            partition,
            count: replicas.len(),
            max: MAX_REPLICAS,
        });
    }
    // At most MAX_REPLICAS ids: a quadratic scan beats a set and allocates nothing.
    for (i, id) in replicas.iter().enumerate() {
        if replicas[..i].contains(id) {
            return Err(ValidationError::DuplicateReplica {
                topic: topic.to_owned(),
                partition,
                replica: *id,
            });
        }
    }
    Ok(())
}

/// Check a `SetPartitionLeader` against the partition.
fn check_leader(
    topic: &str,
    partition: i32,
    p: &PartitionState,
    leader: NodeId,
) -> Result<(), ValidationError> {
    if !p.is_replica(leader) {
        return Err(ValidationError::LeaderNotReplica {
            topic: topic.to_owned(),
            partition,
            leader,
            replicas: p.replicas.clone(),
        });
    }
    Ok(())
}

/// Check an `UpdateIsr` against the partition.
fn check_isr(
    topic: &str,
    partition: i32,
    p: &PartitionState,
    isr: &[NodeId],
) -> Result<(), ValidationError> {
    if isr.is_empty() {
        return Err(ValidationError::EmptyIsr {
            topic: topic.to_owned(),
            partition,
        });
    }
    // One pass: every earlier member is a distinct replica, so the prefix
    // scanned for duplicates is never longer than the replica list.
    for (i, id) in isr.iter().enumerate() {
        if isr[..i].contains(id) {
            return Err(ValidationError::DuplicateIsrMember {
                topic: topic.to_owned(),
                partition,
                replica: *id,
            });
        }
        if !p.is_replica(*id) {
            return Err(ValidationError::IsrNotSubset {
                topic: topic.to_owned(),
                partition,
                replica: *id,
                replicas: p.replicas.clone(),
            });
        }
    }
    if let Some(leader) = p.leader {
        if !isr.contains(&leader) {
            return Err(ValidationError::IsrWithoutLeader {
                topic: topic.to_owned(),
                partition,
                leader,
                isr: isr.to_vec(),
            });
        }
    }
    Ok(())
}

impl MetadataState {
    /// An empty state at offset 0.
    pub fn new() -> MetadataState {
        MetadataState::default()
    }

    /// Check `command` against this state. `LeaderChange` is refused
    /// ([`ValidationError::ControlCommand`]): it is a control entry only the
    /// replication layer appends.
    ///
    /// Checks run in this order and the first failure is returned:
    /// topic name (create only), counts, topic existence, partition range,
    /// then the command's own arguments against the partition.
    /// Allocates only to build an error.
    pub fn validate(&self, command: &Command) -> Result<(), ValidationError> {
        match command {
            Command::CreateTopic {
                name,
                partition_count,
                replication_factor,
            } => {
                validate_topic_name(name)?;
                if *partition_count == 0 || *partition_count > MAX_PARTITIONS {
                    return Err(ValidationError::InvalidPartitionCount {
                        count: *partition_count,
                        max: MAX_PARTITIONS,
                    });
                }
                if *replication_factor == 0 || *replication_factor > MAX_REPLICAS {
                    return Err(ValidationError::InvalidReplicationFactor {
                        factor: *replication_factor,
                        max: MAX_REPLICAS,
                    });
                }
                if self.topics.contains_key(name.as_str()) {
                    return Err(ValidationError::TopicExists { name: name.clone() });
                }
                Ok(())
            }
            Command::DeleteTopic { name } => self.checked_topic(name).map(|_| ()),
            Command::AssignPartition {
                topic,
                partition,
                replicas,
            } => {
                self.checked_topic(topic)?
                    .checked_partition(topic, *partition)?;
                check_replicas(topic, *partition, replicas)
            }
            Command::SetPartitionLeader {
                topic,
                partition,
                leader,
            } => {
                let p = self
                    .checked_topic(topic)?
                    .checked_partition(topic, *partition)?;
                check_leader(topic, *partition, p, *leader)
            }
            Command::UpdateIsr {
                topic,
                partition,
                isr,
            } => {
                let p = self
                    .checked_topic(topic)?
                    .checked_partition(topic, *partition)?;
                check_isr(topic, *partition, p, isr)
            }
            Command::LeaderChange { .. } => Err(ValidationError::ControlCommand {
                kind: command.kind(),
            }),
        }
    }

    /// Apply `entry`, which must be at `applied_offset() + 1`.
    ///
    /// * Not the next offset: [`ValidationError::OutOfOrder`], nothing changes
    ///   (not even the applied offset).
    /// * `LeaderChange`: sets [`MetadataState::leader`]; no validation.
    /// * Any other command is validated as by [`MetadataState::validate`]. If
    ///   it does not validate (cannot happen for a log written by a leader)
    ///   it changes nothing but the applied offset and epoch, identically on
    ///   every node, and the error is returned for logging.
    /// * Otherwise the command is applied (see the [module docs](self) for
    ///   each command's effect).
    ///
    /// For every in-order entry the applied offset and epoch become the
    /// entry's. Never panics.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), ValidationError> {
        match self.applied_offset.checked_add(1) {
            Some(expected) if expected == entry.offset => {}
            _ => {
                return Err(ValidationError::OutOfOrder {
                    expected: self.applied_offset.saturating_add(1),
                    got: entry.offset,
                })
            }
        }
        self.applied_offset = entry.offset;
        self.applied_epoch = entry.epoch;
        self.apply_command(&entry.command)
    }

    /// Validate and, if valid, carry out one command (offset already advanced).
    fn apply_command(&mut self, command: &Command) -> Result<(), ValidationError> {
        match command {
            Command::CreateTopic {
                name,
                partition_count,
                replication_factor,
            } => {
                self.validate(command)?;
                let count = *partition_count as usize;
                self.topics.insert(
                    name.clone(),
                    TopicState {
                        replication_factor: *replication_factor,
                        partitions: vec![PartitionState::default(); count],
                    },
                );
                Ok(())
            }
            Command::DeleteTopic { name } => match self.topics.remove(name.as_str()) {
                Some(_) => Ok(()),
                None => Err(ValidationError::UnknownTopic { name: name.clone() }),
            },
            Command::AssignPartition {
                topic,
                partition,
                replicas,
            } => {
                let p = self.checked_partition_mut(topic, *partition)?;
                check_replicas(topic, *partition, replicas)?;
                p.replicas.clone_from(replicas);
                if let Some(l) = p.leader {
                    if !replicas.contains(&l) {
                        p.leader = None;
                    }
                }
                p.isr.retain(|id| replicas.contains(id));
                if p.isr.is_empty() {
                    if let Some(l) = p.leader {
                        p.isr.push(l);
                    }
                }
                Ok(())
            }
            Command::SetPartitionLeader {
                topic,
                partition,
                leader,
            } => {
                let p = self.checked_partition_mut(topic, *partition)?;
                check_leader(topic, *partition, p, *leader)?;
                p.leader = Some(*leader);
                if !p.isr.contains(leader) {
                    p.isr.push(*leader);
                }
                Ok(())
            }
            Command::UpdateIsr {
                topic,
                partition,
                isr,
            } => {
                let p = self.checked_partition_mut(topic, *partition)?;
                check_isr(topic, *partition, p, isr)?;
                p.isr.clone_from(isr);
                Ok(())
            }
            Command::LeaderChange { leader, .. } => {
                self.leader = Some(*leader);
                Ok(())
            }
        }
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

    /// Stable digest of the whole state (independent of map order).
    ///
    /// SHA-256 over an explicit canonical encoding, independent of serde:
    ///
    /// ```text
    /// "metawal-state-v1"
    /// applied_offset u64 | applied_epoch u64 | leader opt
    /// topic count u64, then per topic in name order:
    ///   name (u64 length + UTF-8 bytes) | replication_factor u32 | partition count u64
    ///   per partition in index order:
    ///     replicas (u64 count + u64 each) | leader opt | isr (u64 count + u64 each)
    /// opt = 0u8, or 1u8 followed by u64
    /// ```
    ///
    /// All integers are big-endian.
    pub fn digest(&self) -> Digest {
        fn put_u64(h: &mut Sha256, v: u64) {
            h.update(v.to_be_bytes());
        }
        fn put_len(h: &mut Sha256, n: usize) {
            put_u64(h, n as u64);
        }
        fn put_opt(h: &mut Sha256, v: Option<u64>) {
            match v {
                None => h.update([0u8]),
                Some(v) => {
                    h.update([1u8]);
                    put_u64(h, v);
                }
            }
        }
        fn put_ids(h: &mut Sha256, ids: &[NodeId]) {
            put_len(h, ids.len());
            for id in ids {
                put_u64(h, *id);
            }
        }

        let mut h = Sha256::new();
        h.update(b"metawal-state-v1");
        put_u64(&mut h, self.applied_offset);
        put_u64(&mut h, self.applied_epoch);
        put_opt(&mut h, self.leader);
        put_len(&mut h, self.topics.len());
        for (name, topic) in &self.topics {
            put_len(&mut h, name.len());
            h.update(name.as_bytes());
            h.update(topic.replication_factor.to_be_bytes());
            put_len(&mut h, topic.partitions.len());
            for p in &topic.partitions {
                put_ids(&mut h, &p.replicas);
                put_opt(&mut h, p.leader);
                put_ids(&mut h, &p.isr);
            }
        }
        Digest(h.finalize().into())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::Record;
    use proptest::prelude::*;

    fn create(name: &str, partition_count: u32, replication_factor: u32) -> Command {
        Command::CreateTopic {
            name: name.to_owned(),
            partition_count,
            replication_factor,
        }
    }
    fn delete(name: &str) -> Command {
        Command::DeleteTopic {
            name: name.to_owned(),
        }
    }
    fn assign(topic: &str, partition: i32, replicas: &[NodeId]) -> Command {
        Command::AssignPartition {
            topic: topic.to_owned(),
            partition,
            replicas: replicas.to_vec(),
        }
    }
    fn lead(topic: &str, partition: i32, leader: NodeId) -> Command {
        Command::SetPartitionLeader {
            topic: topic.to_owned(),
            partition,
            leader,
        }
    }
    fn isr(topic: &str, partition: i32, isr: &[NodeId]) -> Command {
        Command::UpdateIsr {
            topic: topic.to_owned(),
            partition,
            isr: isr.to_vec(),
        }
    }

    /// Apply `command` as the next entry (epoch 1) and return the result.
    fn step(s: &mut MetadataState, command: Command) -> Result<(), ValidationError> {
        let entry = Entry {
            offset: s.applied_offset() + 1,
            epoch: 1,
            command,
        };
        s.apply(&entry)
    }

    fn ok(s: &mut MetadataState, command: Command) {
        let kind = command.kind();
        if let Err(e) = step(s, command) {
            panic!("{kind} refused: {e}");
        }
    }

    /// Topic "t": 3 partitions, rf 3; p0 = replicas [1,2,3], leader 1,
    /// ISR [1,2,3]; p1 = replicas [4,5], no leader, ISR []; p2 unassigned.
    fn fixture() -> MetadataState {
        let mut s = MetadataState::new();
        ok(&mut s, create("t", 3, 3));
        ok(&mut s, assign("t", 0, &[1, 2, 3]));
        ok(&mut s, lead("t", 0, 1));
        ok(&mut s, isr("t", 0, &[1, 2, 3]));
        ok(&mut s, assign("t", 1, &[4, 5]));
        s
    }

    /// `command` must be refused with exactly `expected`, by `validate` and by
    /// `apply`; `apply` must change nothing but the applied offset and epoch.
    fn assert_rejected(s: &MetadataState, command: Command, expected: ValidationError) {
        assert_eq!(s.validate(&command), Err(expected.clone()));
        // Error messages are never empty and never panic.
        assert!(!expected.to_string().is_empty());
        let mut after = s.clone();
        let entry = Entry {
            offset: s.applied_offset() + 1,
            epoch: s.applied_epoch() + 7,
            command,
        };
        assert_eq!(after.apply(&entry), Err(expected));
        assert_eq!(after.applied_offset(), entry.offset);
        assert_eq!(after.applied_epoch(), entry.epoch);
        assert_eq!(after.topics, s.topics);
        assert_eq!(after.leader, s.leader);
    }

    // ---- topic names -----------------------------------------------------

    #[test]
    fn empty_topic_name_refused() {
        assert_rejected(
            &fixture(),
            create("", 1, 1),
            ValidationError::EmptyTopicName,
        );
    }

    #[test]
    fn too_long_topic_name_refused() {
        let name = "a".repeat(MAX_TOPIC_NAME_LEN + 1);
        assert_rejected(
            &fixture(),
            create(&name, 1, 1),
            ValidationError::TopicNameTooLong {
                len: 250,
                max: MAX_TOPIC_NAME_LEN,
                prefix: "a".repeat(32),
            },
        );
        // Exactly the limit is fine.
        let ok_name = "a".repeat(MAX_TOPIC_NAME_LEN);
        assert_eq!(fixture().validate(&create(&ok_name, 1, 1)), Ok(()));
    }

    #[test]
    fn illegal_topic_name_char_refused() {
        assert_rejected(
            &fixture(),
            create("ab c", 1, 1),
            ValidationError::IllegalTopicNameChar {
                name: "ab c".into(),
                ch: ' ',
                position: 2,
            },
        );
        assert_rejected(
            &fixture(),
            create("é/x", 1, 1),
            ValidationError::IllegalTopicNameChar {
                name: "é/x".into(),
                ch: 'é',
                position: 0,
            },
        );
        assert_eq!(fixture().validate(&create("Az09._-", 1, 1)), Ok(()));
    }

    #[test]
    fn dot_topic_names_refused() {
        for name in [".", ".."] {
            assert_rejected(
                &fixture(),
                create(name, 1, 1),
                ValidationError::ReservedTopicName { name: name.into() },
            );
        }
        assert_eq!(fixture().validate(&create("...", 1, 1)), Ok(()));
    }

    // ---- counts ----------------------------------------------------------

    #[test]
    fn partition_count_bounds() {
        for count in [0, MAX_PARTITIONS + 1] {
            assert_rejected(
                &fixture(),
                create("n", count, 1),
                ValidationError::InvalidPartitionCount {
                    count,
                    max: MAX_PARTITIONS,
                },
            );
        }
        assert_eq!(fixture().validate(&create("n", MAX_PARTITIONS, 1)), Ok(()));
    }

    #[test]
    fn replication_factor_bounds() {
        for factor in [0, MAX_REPLICAS + 1] {
            assert_rejected(
                &fixture(),
                create("n", 1, factor),
                ValidationError::InvalidReplicationFactor {
                    factor,
                    max: MAX_REPLICAS,
                },
            );
        }
        assert_eq!(fixture().validate(&create("n", 1, MAX_REPLICAS)), Ok(()));
    }

    #[test]
    fn create_existing_topic_refused() {
        assert_rejected(
            &fixture(),
            create("t", 1, 1),
            ValidationError::TopicExists { name: "t".into() },
        );
    }

    // ---- unknown topic / partition range ---------------------------------

    #[test]
    fn unknown_topic_refused_for_every_command() {
        let unknown = ValidationError::UnknownTopic { name: "u".into() };
        for c in [
            delete("u"),
            assign("u", 0, &[1]),
            lead("u", 0, 1),
            isr("u", 0, &[1]),
        ] {
            assert_rejected(&fixture(), c, unknown.clone());
        }
    }

    #[test]
    fn partition_out_of_range_refused() {
        for partition in [-1, 3, i32::MIN, i32::MAX] {
            let expected = ValidationError::PartitionOutOfRange {
                topic: "t".into(),
                partition,
                partition_count: 3,
            };
            for c in [
                assign("t", partition, &[1]),
                lead("t", partition, 1),
                isr("t", partition, &[1]),
            ] {
                assert_rejected(&fixture(), c, expected.clone());
            }
        }
    }

    // ---- AssignPartition -------------------------------------------------

    #[test]
    fn assign_empty_replicas_refused() {
        assert_rejected(
            &fixture(),
            assign("t", 2, &[]),
            ValidationError::EmptyReplicas {
                topic: "t".into(),
                partition: 2,
            },
        );
    }

    #[test]
    fn assign_duplicate_replica_refused() {
        assert_rejected(
            &fixture(),
            assign("t", 2, &[1, 2, 3, 2]),
            ValidationError::DuplicateReplica {
                topic: "t".into(),
                partition: 2,
                replica: 2,
            },
        );
    }

    #[test]
    fn assign_too_many_replicas_refused() {
        let replicas: Vec<NodeId> = (0..u64::from(MAX_REPLICAS) + 1).collect();
        assert_rejected(
            &fixture(),
            assign("t", 2, &replicas),
            ValidationError::TooManyReplicas {
                topic: "t".into(),
                partition: 2,
                count: replicas.len(),
                max: MAX_REPLICAS,
            },
        );
        assert_eq!(
            fixture().validate(&assign("t", 2, &replicas[..MAX_REPLICAS as usize])),
            Ok(())
        );
    }

    #[test]
    fn assign_may_change_replica_count() {
        let mut s = fixture();
        ok(&mut s, assign("t", 0, &[1, 2, 3, 4, 5]));
        assert_eq!(s.partition("t", 0).map(|p| p.replicas.len()), Some(5));
    }

    // ---- SetPartitionLeader ----------------------------------------------

    #[test]
    fn leader_not_replica_refused() {
        assert_rejected(
            &fixture(),
            lead("t", 0, 9),
            ValidationError::LeaderNotReplica {
                topic: "t".into(),
                partition: 0,
                leader: 9,
                replicas: vec![1, 2, 3],
            },
        );
    }

    #[test]
    fn leader_of_unassigned_partition_refused() {
        assert_rejected(
            &fixture(),
            lead("t", 2, 1),
            ValidationError::LeaderNotReplica {
                topic: "t".into(),
                partition: 2,
                leader: 1,
                replicas: vec![],
            },
        );
    }

    // ---- UpdateIsr -------------------------------------------------------

    #[test]
    fn empty_isr_refused() {
        assert_rejected(
            &fixture(),
            isr("t", 0, &[]),
            ValidationError::EmptyIsr {
                topic: "t".into(),
                partition: 0,
            },
        );
    }

    #[test]
    fn duplicate_isr_member_refused() {
        assert_rejected(
            &fixture(),
            isr("t", 0, &[1, 2, 1]),
            ValidationError::DuplicateIsrMember {
                topic: "t".into(),
                partition: 0,
                replica: 1,
            },
        );
    }

    #[test]
    fn isr_not_subset_refused() {
        assert_rejected(
            &fixture(),
            isr("t", 0, &[1, 7]),
            ValidationError::IsrNotSubset {
                topic: "t".into(),
                partition: 0,
                replica: 7,
                replicas: vec![1, 2, 3],
            },
        );
        // Unassigned partition: nothing is a replica.
        assert_rejected(
            &fixture(),
            isr("t", 2, &[1]),
            ValidationError::IsrNotSubset {
                topic: "t".into(),
                partition: 2,
                replica: 1,
                replicas: vec![],
            },
        );
    }

    #[test]
    fn isr_without_leader_refused() {
        assert_rejected(
            &fixture(),
            isr("t", 0, &[2, 3]),
            ValidationError::IsrWithoutLeader {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                isr: vec![2, 3],
            },
        );
        // Without a leader, any non-empty subset is fine.
        let mut s = fixture();
        ok(&mut s, isr("t", 1, &[5]));
        assert_eq!(s.partition("t", 1).map(|p| p.isr.clone()), Some(vec![5]));
    }

    #[test]
    fn huge_isr_with_garbage_is_refused_quickly() {
        // A long list of non-replicas fails on the first element, not after a
        // quadratic duplicate scan.
        let big: Vec<NodeId> = (100..200_000).collect();
        assert!(matches!(
            fixture().validate(&isr("t", 0, &big)),
            Err(ValidationError::IsrNotSubset { replica: 100, .. })
        ));
    }

    // ---- LeaderChange ----------------------------------------------------

    #[test]
    fn leader_change_refused_by_validate_but_applied() {
        let s = fixture();
        let c = Command::LeaderChange {
            leader: 2,
            epoch: 5,
        };
        assert_eq!(
            s.validate(&c),
            Err(ValidationError::ControlCommand {
                kind: "LeaderChange"
            })
        );
        let mut after = s.clone();
        let entry = Entry {
            offset: s.applied_offset() + 1,
            epoch: 5,
            command: c,
        };
        assert_eq!(after.apply(&entry), Ok(()));
        assert_eq!(after.leader(), Some(2));
        assert_eq!(after.applied_epoch(), 5);
        assert_eq!(after.topics, s.topics);
    }

    // ---- apply: ordering -------------------------------------------------

    #[test]
    fn out_of_order_entries_change_nothing() {
        let s = fixture();
        let next = s.applied_offset() + 1;
        for offset in [0, next - 1, next + 1, u64::MAX] {
            let mut after = s.clone();
            let err = after
                .apply(&Entry {
                    offset,
                    epoch: 9,
                    command: create("new", 1, 1),
                })
                .unwrap_err();
            assert_eq!(
                err,
                ValidationError::OutOfOrder {
                    expected: next,
                    got: offset
                }
            );
            assert!(err.is_out_of_order());
            assert_eq!(after, s);
        }
    }

    #[test]
    fn apply_at_max_offset_never_panics() {
        let mut s = MetadataState {
            applied_offset: u64::MAX,
            ..MetadataState::default()
        };
        let before = s.clone();
        let r = s.apply(&Entry {
            offset: 0,
            epoch: 1,
            command: delete("x"),
        });
        assert_eq!(
            r,
            Err(ValidationError::OutOfOrder {
                expected: u64::MAX,
                got: 0
            })
        );
        assert_eq!(s, before);
    }

    #[test]
    fn offsets_and_epochs_advance() {
        let mut s = MetadataState::new();
        assert_eq!((s.applied_offset(), s.applied_epoch()), (0, 0));
        s.apply(&Entry {
            offset: 1,
            epoch: 3,
            command: create("a", 1, 1),
        })
        .unwrap();
        assert_eq!((s.applied_offset(), s.applied_epoch()), (1, 3));
        // An invalid entry still advances.
        s.apply(&Entry {
            offset: 2,
            epoch: 4,
            command: delete("zz"),
        })
        .unwrap_err();
        assert_eq!((s.applied_offset(), s.applied_epoch()), (2, 4));
    }

    // ---- apply: semantics ------------------------------------------------

    #[test]
    fn create_makes_unassigned_partitions() {
        let mut s = MetadataState::new();
        ok(&mut s, create("orders", 4, 3));
        let t = s.topic("orders").unwrap();
        assert_eq!(t.partition_count(), 4);
        assert_eq!(t.replication_factor, 3);
        assert!(t.partitions.iter().all(|p| *p == PartitionState::default()));
        assert!(!t.partitions[0].is_assigned());
        assert_eq!(s.topic_count(), 1);
        assert_eq!(s.partition_total(), 4);
        assert!(s.contains_topic("orders"));
        assert!(s.partition("orders", 3).is_some());
        assert!(s.partition("orders", 4).is_none());
        assert!(s.partition("orders", -1).is_none());
        assert!(s.partition("nope", 0).is_none());
    }

    #[test]
    fn delete_removes_topic_and_partitions() {
        let mut s = fixture();
        ok(&mut s, create("other", 2, 1));
        ok(&mut s, delete("t"));
        assert!(s.topic("t").is_none());
        assert!(s.partition("t", 0).is_none());
        assert_eq!(s.topic_count(), 1);
        assert_eq!(s.partition_total(), 2);
        // Recreating starts from scratch.
        ok(&mut s, create("t", 1, 1));
        assert_eq!(s.partition("t", 0), Some(&PartitionState::default()));
    }

    #[test]
    fn assign_keeps_leader_in_new_replicas_and_filters_isr() {
        let mut s = fixture();
        ok(&mut s, assign("t", 0, &[3, 1, 4]));
        let p = s.partition("t", 0).unwrap();
        assert_eq!(p.replicas, vec![3, 1, 4]);
        assert_eq!(p.leader, Some(1));
        assert_eq!(p.isr, vec![1, 3]); // ISR order kept, 2 filtered out
    }

    #[test]
    fn assign_drops_leader_not_in_new_replicas() {
        let mut s = fixture();
        ok(&mut s, assign("t", 0, &[2, 4]));
        let p = s.partition("t", 0).unwrap();
        assert_eq!(p.leader, None);
        assert_eq!(p.isr, vec![2]);
    }

    #[test]
    fn assign_resets_empty_isr_to_leader() {
        let mut s = fixture();
        ok(&mut s, isr("t", 0, &[1]));
        ok(&mut s, assign("t", 0, &[4, 1]));
        let p = s.partition("t", 0).unwrap();
        assert_eq!(p.leader, Some(1));
        assert_eq!(p.isr, vec![1]);
        // Without a leader an emptied ISR stays empty.
        let mut s = fixture();
        ok(&mut s, isr("t", 1, &[4]));
        ok(&mut s, assign("t", 1, &[6, 7]));
        let p = s.partition("t", 1).unwrap();
        assert_eq!((p.leader, p.isr.clone()), (None, vec![]));
    }

    #[test]
    fn set_leader_appends_to_isr() {
        let mut s = fixture();
        ok(&mut s, lead("t", 1, 5));
        let p = s.partition("t", 1).unwrap();
        assert_eq!((p.leader, p.isr.clone()), (Some(5), vec![5]));
        // Already in the ISR: ISR unchanged.
        ok(&mut s, lead("t", 0, 3));
        let p = s.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.isr.clone()), (Some(3), vec![1, 2, 3]));
        assert!(p.is_in_isr(3) && p.is_replica(3) && !p.is_replica(9));
    }

    #[test]
    fn update_isr_sets_as_given() {
        let mut s = fixture();
        ok(&mut s, isr("t", 0, &[3, 1]));
        assert_eq!(s.partition("t", 0).unwrap().isr, vec![3, 1]);
    }

    // ---- digest ----------------------------------------------------------

    #[test]
    fn digest_is_stable_and_sensitive() {
        let a = fixture();
        let b = fixture();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().to_string().len(), 64);

        // Each kind of change changes the digest.
        let changes = [
            create("x", 1, 1),
            delete("t"),
            assign("t", 2, &[1]),
            lead("t", 0, 2),
            isr("t", 0, &[1, 2]),
            Command::LeaderChange {
                leader: 1,
                epoch: 1,
            },
        ];
        for c in changes {
            let mut changed = a.clone();
            ok(&mut changed, c);
            assert_ne!(changed.digest(), a.digest());
        }
        // An invalid entry still moves the offset, hence the digest.
        let mut changed = a.clone();
        step(&mut changed, delete("nope")).unwrap_err();
        assert_ne!(changed.digest(), a.digest());
        // Epoch alone matters too.
        let mut e1 = a.clone();
        let mut e2 = a.clone();
        for (s, epoch) in [(&mut e1, 1), (&mut e2, 2)] {
            s.apply(&Entry {
                offset: a.applied_offset() + 1,
                epoch,
                command: delete("nope"),
            })
            .unwrap_err();
        }
        assert_ne!(e1.digest(), e2.digest());
    }

    #[test]
    fn digest_independent_of_insertion_order() {
        let mut a = MetadataState::new();
        ok(&mut a, create("alpha", 2, 1));
        ok(&mut a, create("beta", 1, 1));
        ok(&mut a, create("gamma", 3, 2));
        let mut b = MetadataState::new();
        ok(&mut b, create("gamma", 3, 2));
        ok(&mut b, create("alpha", 2, 1));
        ok(&mut b, create("beta", 1, 1));
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn digest_does_not_confuse_field_boundaries() {
        // "ab"+"c" vs "a"+"bc" topic names: length prefixes keep them apart.
        let mut a = MetadataState::new();
        ok(&mut a, create("ab", 1, 1));
        ok(&mut a, create("c", 1, 1));
        let mut b = MetadataState::new();
        ok(&mut b, create("a", 1, 1));
        ok(&mut b, create("bc", 1, 1));
        assert_ne!(a.digest(), b.digest());
        // Replicas [1,2] + ISR [] vs replicas [1] + ISR [2] etc.
        let mut c = MetadataState::new();
        ok(&mut c, create("t", 1, 1));
        ok(&mut c, assign("t", 0, &[1, 2]));
        let mut d = MetadataState::new();
        ok(&mut d, create("t", 1, 1));
        ok(&mut d, assign("t", 0, &[1]));
        assert_ne!(c.digest(), d.digest());
    }

    #[test]
    fn snapshot_roundtrip_keeps_digest() {
        let s = fixture();
        let bytes = rmp_serde::to_vec(&s).unwrap();
        let back: MetadataState = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.digest(), s.digest());
    }

    // ---- properties ------------------------------------------------------

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => prop::sample::select(vec!["t0", "t1"]).prop_map(String::from),
            1 => prop::sample::select(vec!["", ".", "..", "bad name", "ü"]).prop_map(String::from),
        ]
    }

    /// Mostly distinct ids from the pool 1..=4 in random order; sometimes an
    /// arbitrary list (empty, duplicates, ids outside the pool).
    fn arb_ids(max_len: usize) -> impl Strategy<Value = Vec<NodeId>> {
        prop_oneof![
            6 => prop::sample::subsequence(vec![1u64, 2, 3, 4], 1..=max_len.min(4)).prop_shuffle(),
            1 => prop::collection::vec(1u64..=5, 0..=max_len),
        ]
    }

    /// Mostly in-range partition indices, sometimes out of range.
    fn arb_partition() -> impl Strategy<Value = i32> {
        prop_oneof![9 => 0i32..2, 1 => -1i32..5]
    }

    /// Mostly valid counts, sometimes 0 or larger.
    fn arb_count() -> impl Strategy<Value = u32> {
        prop_oneof![9 => 2u32..4, 1 => 0u32..6]
    }

    /// Random commands over a small name pool and broker-id pool: a mix of
    /// valid and invalid ones.
    fn arb_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            2 => (arb_name(), arb_count(), arb_count()).prop_map(|(name, partition_count, replication_factor)| {
                Command::CreateTopic { name, partition_count, replication_factor }
            }),
            1 => arb_name().prop_map(|name| Command::DeleteTopic { name }),
            4 => (arb_name(), arb_partition(), arb_ids(4)).prop_map(|(topic, partition, replicas)| {
                Command::AssignPartition { topic, partition, replicas }
            }),
            4 => (arb_name(), arb_partition(), 1u64..=4).prop_map(|(topic, partition, leader)| {
                Command::SetPartitionLeader { topic, partition, leader }
            }),
            4 => (arb_name(), arb_partition(), arb_ids(3)).prop_map(|(topic, partition, isr)| {
                Command::UpdateIsr { topic, partition, isr }
            }),
            1 => (1u64..=3, 0u64..4).prop_map(|(leader, epoch)| Command::LeaderChange { leader, epoch }),
        ]
    }

    /// Commands as entries `1..=n`, epochs non-decreasing. Most sequences
    /// start by creating both pool topics, so that later commands find them.
    pub(crate) fn arb_entries() -> impl Strategy<Value = Vec<Entry>> {
        (
            any::<bool>(),
            prop::collection::vec((arb_command(), any::<bool>()), 0..120),
        )
            .prop_map(|(bare, cmds)| {
                let mut epoch = 1;
                let prelude = if bare {
                    vec![]
                } else {
                    vec![(create("t0", 2, 3), false), (create("t1", 3, 2), false)]
                };
                prelude
                    .into_iter()
                    .chain(cmds)
                    .enumerate()
                    .map(|(i, (command, bump))| {
                        epoch += u64::from(bump && i % 7 == 0);
                        Entry {
                            offset: i as u64 + 1,
                            epoch,
                            command,
                        }
                    })
                    .collect()
            })
    }

    fn check_invariants(s: &MetadataState) -> Result<(), TestCaseError> {
        for (name, t) in s.topics() {
            prop_assert!(validate_topic_name(name).is_ok());
            prop_assert!(t.partition_count() >= 1);
            for p in &t.partitions {
                for (i, r) in p.replicas.iter().enumerate() {
                    prop_assert!(!p.replicas[..i].contains(r), "duplicate replica");
                }
                for (i, r) in p.isr.iter().enumerate() {
                    prop_assert!(!p.isr[..i].contains(r), "duplicate ISR member");
                    prop_assert!(p.replicas.contains(r), "ISR not subset");
                }
                if let Some(l) = p.leader {
                    prop_assert!(p.replicas.contains(&l), "leader not replica");
                    prop_assert!(p.isr.contains(&l), "leader not in ISR");
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn same_entries_same_state_and_replay_equals_live(entries in arb_entries()) {
            let mut a = MetadataState::new();
            let mut b = MetadataState::new();
            let mut replayed = MetadataState::new();
            for e in &entries {
                let before = a.clone();
                let validated = a.validate(&e.command);
                let applied = a.apply(e);
                let _ = b.apply(e);
                let decoded = Record::encode(e).unwrap().entry().unwrap();
                prop_assert_eq!(&decoded, e);
                let _ = replayed.apply(&decoded);

                prop_assert_eq!(a.applied_offset(), e.offset);
                prop_assert_eq!(a.applied_epoch(), e.epoch);
                match &e.command {
                    Command::LeaderChange { leader, .. } => {
                        let is_control = matches!(validated, Err(ValidationError::ControlCommand { .. }));
                        prop_assert!(is_control, "LeaderChange must not validate");
                        prop_assert_eq!(&applied, &Ok(()));
                        prop_assert_eq!(a.leader(), Some(*leader));
                        prop_assert_eq!(&a.topics, &before.topics);
                    }
                    _ => {
                        // apply fails exactly when validate does, with the same error.
                        prop_assert_eq!(&applied, &validated);
                        prop_assert_eq!(a.leader(), before.leader());
                        if applied.is_err() {
                            prop_assert_eq!(&a.topics, &before.topics);
                        }
                    }
                }
                check_invariants(&a)?;
            }
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.digest(), b.digest());
            prop_assert_eq!(&a, &replayed);
            prop_assert_eq!(a.digest(), replayed.digest());

            // A snapshot restores the same digest.
            let snap: MetadataState = rmp_serde::from_slice(&rmp_serde::to_vec(&a).unwrap()).unwrap();
            prop_assert_eq!(snap.digest(), a.digest());
        }

        #[test]
        fn validate_and_apply_never_panic_on_arbitrary_input(
            name in ".{0,300}",
            partition in any::<i32>(),
            ids in prop::collection::vec(any::<u64>(), 0..80),
            count in any::<u32>(),
            offset in any::<u64>(),
        ) {
            let mut s = fixture();
            let cmds = [
                Command::CreateTopic { name: name.clone(), partition_count: count % (MAX_PARTITIONS + 2), replication_factor: count },
                Command::DeleteTopic { name: name.clone() },
                Command::AssignPartition { topic: "t".into(), partition, replicas: ids.clone() },
                Command::SetPartitionLeader { topic: "t".into(), partition, leader: count.into() },
                Command::UpdateIsr { topic: "t".into(), partition, isr: ids.clone() },
            ];
            for command in cmds {
                let _ = s.validate(&command);
                let _ = s.apply(&Entry { offset, epoch: 1, command: command.clone() });
                let _ = step(&mut s, command);
                check_invariants(&s)?;
            }
        }
    }
}
