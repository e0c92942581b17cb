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
    #[error(
        "replica list for {topic}-{partition} has {count} brokers: at most {max} are allowed"
    )]
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
    #[error("{kind} is a control entry appended by the replication layer; brokers may not propose it")]
    ControlCommand {
        /// The command kind.
        kind: &'static str,
    },
    /// [`MetadataState::apply`] got an entry that is not the next one. Nothing
    /// was changed, not even the applied offset.
    #[error("entry at offset {got} is out of order: the next entry to apply is at offset {expected}")]
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
