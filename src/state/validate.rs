//! Command validation: the limits, [`ValidationError`] (one variant per
//! rule) and [`MetadataState::validate`].
//!
//! Separate from `apply` because validation is also run on its own, by the
//! leader before it proposes a command, and its rules (with their error
//! variants) are the bulk of the state machine's code. `apply` reuses the
//! per-command checks here so both refuse exactly the same commands.

use crate::command::{Command, NodeId};

use super::{MetadataState, PartitionState, TopicState};

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// Largest replication factor / replica list.
pub const MAX_REPLICAS: u32 = 64;
/// Most commands in one [`Command::Batch`].
pub const MAX_BATCH_COMMANDS: usize = 10_000;
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
    /// `CreatePartitions` asking for no more partitions than the topic has:
    /// partitions can only be added.
    #[error(
        "topic {topic:?} currently has {current} partitions, which is not fewer than the \
         requested {requested}: partitions can only be added (ask for more than {current})"
    )]
    PartitionCountNotIncreased {
        /// The topic name.
        topic: String,
        /// The topic's current partition count.
        current: u32,
        /// The requested partition count.
        requested: u32,
    },
    /// `CreatePartitions` asking for more than [`MAX_PARTITIONS`] partitions.
    #[error("topic {topic:?} cannot grow to {requested} partitions: a topic has at most {max}")]
    TooManyPartitions {
        /// The topic name.
        topic: String,
        /// The requested partition count.
        requested: u32,
        /// The limit, [`MAX_PARTITIONS`].
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
    /// A control command (`LeaderChange`, `Membership`) was proposed: only
    /// the replication layer appends those.
    #[error(
        "{kind} is a control entry appended by the replication layer; brokers may not propose it"
    )]
    ControlCommand {
        /// The command kind.
        kind: &'static str,
    },
    /// A `Batch` with no commands.
    #[error("the batch is empty: a batch holds 1 to {MAX_BATCH_COMMANDS} commands")]
    EmptyBatch,
    /// A `Batch` with more than [`MAX_BATCH_COMMANDS`] commands.
    #[error("the batch has {len} commands: at most {max} are allowed; split it")]
    BatchTooLarge {
        /// Number of commands in the batch.
        len: usize,
        /// The limit, [`MAX_BATCH_COMMANDS`].
        max: usize,
    },
    /// A `Batch` holding a command that cannot be in one (a `Batch` or a
    /// `LeaderChange`). Nothing of the batch was applied.
    #[error("command {index} of the batch is a {kind}, which a batch may not hold")]
    NotInBatch {
        /// Position of the command in the batch, from 0.
        index: usize,
        /// Its kind.
        kind: &'static str,
    },
    /// A command of a `Batch` is refused (checked against the state the
    /// commands before it leave). Nothing of the batch was applied.
    #[error("command {index} of the batch ({kind}) is refused, so the whole batch is: {error}")]
    InBatch {
        /// Position of the command in the batch, from 0.
        index: usize,
        /// Its kind.
        kind: &'static str,
        /// Why it is refused.
        error: Box<ValidationError>,
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

/// Check a topic name against Kafka's rules.
pub(super) fn validate_topic_name(name: &str) -> Result<(), ValidationError> {
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
pub(super) fn check_replicas(
    topic: &str,
    partition: i32,
    replicas: &[NodeId],
) -> Result<(), ValidationError> {
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

/// Check a `CreatePartitions` count against [`MAX_PARTITIONS`].
pub(super) fn check_partition_limit(topic: &str, requested: u32) -> Result<(), ValidationError> {
    if requested > MAX_PARTITIONS {
        return Err(ValidationError::TooManyPartitions {
            topic: topic.to_owned(),
            requested,
            max: MAX_PARTITIONS,
        });
    }
    Ok(())
}

/// Check that a `CreatePartitions` count grows the topic.
pub(super) fn check_growth(
    topic: &str,
    t: &TopicState,
    requested: u32,
) -> Result<(), ValidationError> {
    let current = t.partition_count();
    if requested <= current {
        return Err(ValidationError::PartitionCountNotIncreased {
            topic: topic.to_owned(),
            current,
            requested,
        });
    }
    Ok(())
}

/// Check a `SetPartitionLeader` against the partition.
pub(super) fn check_leader(
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
pub(super) fn check_isr(
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
    /// Check `command` against this state. `LeaderChange` is refused
    /// ([`ValidationError::ControlCommand`]): it is a control entry only the
    /// replication layer appends.
    ///
    /// Checks run in this order and the first failure is returned:
    /// topic name (create only), counts, topic existence, partition range,
    /// then the command's own arguments against the partition (for
    /// `CreatePartitions`: the limit, topic existence, then growth against
    /// the current count).
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
            Command::CreatePartitions {
                topic,
                partition_count,
            } => {
                check_partition_limit(topic, *partition_count)?;
                check_growth(topic, self.checked_topic(topic)?, *partition_count)
            }
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
            Command::Batch { commands } => self.batch_outcome(commands).map(|_| ()),
            Command::LeaderChange { .. } | Command::Membership(_) => {
                Err(ValidationError::ControlCommand {
                    kind: command.kind(),
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
