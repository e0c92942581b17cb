//! Atomic batches: the all-or-none outcome of a [`Command::Batch`].
//!
//! Separate because a batch is the one command whose parts depend on each
//! other: the second command of a batch is checked against the state the
//! first one leaves. Rather than clone the whole state (every topic) to try
//! a batch, the commands run on a *scratch* state holding only the topics
//! the batch names, copied up front. Every rule is local to one topic, so
//! the scratch decides exactly as the full state would. Applying the batch
//! then moves the scratch's topics back (and removes the ones it deleted):
//! the state is either untouched or has every command of the batch.

use std::collections::BTreeMap;

use crate::command::Command;

use super::validate::MAX_BATCH_COMMANDS;
use super::{MetadataState, TopicState, ValidationError};

/// What a valid batch does: the final form of every topic it names (`None`
/// for one it leaves deleted or absent).
pub(super) struct BatchOutcome {
    topics: BTreeMap<String, Option<TopicState>>,
}

/// The topic a batchable command names, or the refusal for one that cannot
/// be in a batch.
fn topic_of(index: usize, command: &Command) -> Result<&str, ValidationError> {
    match command {
        Command::CreateTopic { name, .. } | Command::DeleteTopic { name } => Ok(name),
        Command::CreatePartitions { topic, .. }
        | Command::AssignPartition { topic, .. }
        | Command::SetPartitionLeader { topic, .. }
        | Command::UpdateIsr { topic, .. } => Ok(topic),
        Command::Batch { .. } | Command::LeaderChange { .. } | Command::Membership(_) => {
            Err(ValidationError::NotInBatch {
                index,
                kind: command.kind(),
            })
        }
    }
}

impl MetadataState {
    /// Run `commands` on a scratch copy of the topics they name; the first
    /// refusal is returned as [`ValidationError::InBatch`] and nothing is
    /// kept. Never changes `self`.
    pub(super) fn batch_outcome(
        &self,
        commands: &[Command],
    ) -> Result<BatchOutcome, ValidationError> {
        if commands.is_empty() {
            return Err(ValidationError::EmptyBatch);
        }
        if commands.len() > MAX_BATCH_COMMANDS {
            return Err(ValidationError::BatchTooLarge {
                len: commands.len(),
                max: MAX_BATCH_COMMANDS,
            });
        }
        let mut scratch = MetadataState::default();
        let mut named: Vec<&str> = Vec::new();
        for (index, command) in commands.iter().enumerate() {
            let name = topic_of(index, command)?;
            if !named.contains(&name) {
                named.push(name);
                if let Some(t) = self.topics.get(name) {
                    scratch.topics.insert(name.to_owned(), t.clone());
                }
            }
        }
        for (index, command) in commands.iter().enumerate() {
            // Every command is checked before it changes anything (see
            // `apply_command`), so a refusal leaves the scratch as it was;
            // it is dropped anyway.
            scratch
                .apply_command(command)
                .map_err(|e| ValidationError::InBatch {
                    index,
                    kind: command.kind(),
                    error: Box::new(e),
                })?;
        }
        let topics = named
            .into_iter()
            .map(|name| (name.to_owned(), scratch.topics.remove(name)))
            .collect();
        Ok(BatchOutcome { topics })
    }

    /// Make a batch's outcome the state of the topics it names.
    pub(super) fn commit_batch(&mut self, outcome: BatchOutcome) {
        for (name, topic) in outcome.topics {
            match topic {
                Some(t) => {
                    self.topics.insert(name, t);
                }
                None => {
                    self.topics.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assign, create, fixture, grow, lead};
    use super::*;
    use crate::command::Entry;

    fn batch(commands: Vec<Command>) -> Command {
        Command::Batch { commands }
    }

    fn apply_at_next(s: &mut MetadataState, command: Command) -> Result<(), ValidationError> {
        let offset = s.applied_offset() + 1;
        s.apply(&Entry {
            offset,
            epoch: 1,
            command,
        })
    }

    #[test]
    fn a_topic_is_created_with_its_assignments_in_one_entry() {
        let mut s = MetadataState::new();
        let b = batch(vec![
            create("orders", 2, 2),
            assign("orders", 0, &[1, 2]),
            assign("orders", 1, &[2, 3]),
            lead("orders", 0, 2),
        ]);
        assert_eq!(s.validate(&b), Ok(()));
        assert_eq!(apply_at_next(&mut s, b), Ok(()));
        assert_eq!(s.applied_offset(), 1);
        let p0 = s.partition("orders", 0).unwrap();
        assert_eq!(
            (p0.replicas.clone(), p0.leader, p0.isr.clone()),
            (vec![1, 2], Some(2), vec![2])
        );
        assert_eq!(s.partition("orders", 1).unwrap().replicas, vec![2, 3]);
    }

    #[test]
    fn a_topic_grows_with_its_new_assignments_in_one_entry() {
        let mut s = fixture();
        let before = s.topic("t").unwrap().clone();
        // Without the growth the new partitions do not exist yet.
        assert!(matches!(
            s.validate(&batch(vec![assign("t", 3, &[1, 2])])),
            Err(ValidationError::InBatch { index: 0, error, .. })
                if matches!(*error, ValidationError::PartitionOutOfRange { partition: 3, .. })
        ));
        let b = batch(vec![
            grow("t", 5),
            assign("t", 3, &[1, 2]),
            assign("t", 4, &[2, 3]),
            lead("t", 4, 3),
        ]);
        assert_eq!(s.validate(&b), Ok(()));
        assert_eq!(apply_at_next(&mut s, b), Ok(()));
        let t = s.topic("t").unwrap();
        assert_eq!(t.partition_count(), 5);
        assert_eq!(t.partitions[..3], before.partitions[..]);
        assert_eq!(t.partitions[3].replicas, vec![1, 2]);
        let p4 = &t.partitions[4];
        assert_eq!(
            (p4.replicas.clone(), p4.leader, p4.isr.clone()),
            (vec![2, 3], Some(3), vec![3])
        );
    }

    #[test]
    fn a_refused_growth_refuses_its_batch_and_changes_nothing_but_the_offset() {
        let mut s = fixture();
        let before = s.clone();
        // Not a growth (3 is the current count): the assignment after it
        // would be out of range anyway, but the growth is refused first.
        let b = batch(vec![grow("t", 3), assign("t", 3, &[1])]);
        let err = s.validate(&b).unwrap_err();
        assert!(
            matches!(&err, ValidationError::InBatch { index: 0, kind: "CreatePartitions", error }
            if **error == ValidationError::PartitionCountNotIncreased {
                topic: "t".into(), current: 3, requested: 3
            }),
            "{err:?}"
        );
        assert_eq!(apply_at_next(&mut s, b), Err(err));
        assert_eq!(s.topics, before.topics);
        assert_eq!(s.applied_offset(), before.applied_offset() + 1);
        let moved_only = MetadataState {
            applied_offset: s.applied_offset(),
            applied_epoch: s.applied_epoch(),
            ..before
        };
        assert_eq!(s.digest(), moved_only.digest());
    }

    #[test]
    fn one_refused_command_refuses_the_whole_batch_and_changes_nothing_but_the_offset() {
        let mut s = fixture();
        let before = s.clone();
        let b = batch(vec![
            create("fresh", 1, 1),
            assign("fresh", 0, &[1]),
            assign("fresh", 5, &[1]),
        ]);
        let err = s.validate(&b).unwrap_err();
        assert!(
            matches!(&err, ValidationError::InBatch { index: 2, kind: "AssignPartition", error }
                if matches!(**error, ValidationError::PartitionOutOfRange { partition: 5, .. })),
            "{err:?}"
        );
        assert_eq!(apply_at_next(&mut s, b), Err(err));
        assert!(!s.contains_topic("fresh"));
        assert_eq!(s.topics, before.topics);
        assert_eq!(s.applied_offset(), before.applied_offset() + 1);
    }

    #[test]
    fn later_commands_see_what_earlier_ones_did() {
        let mut s = fixture();
        // Delete then re-create the fixture's topic "t" with one partition:
        // the assignment of partition 0 is checked against the new topic.
        let b = batch(vec![
            Command::DeleteTopic { name: "t".into() },
            create("t", 1, 1),
            assign("t", 0, &[7]),
        ]);
        assert_eq!(apply_at_next(&mut s, b), Ok(()));
        let t = s.topic("t").unwrap();
        assert_eq!(t.partition_count(), 1);
        assert_eq!(t.partitions[0].replicas, vec![7]);
        // Creating a topic twice in one batch is refused at the second.
        let twice = batch(vec![create("u", 1, 1), create("u", 1, 1)]);
        assert!(matches!(
            s.validate(&twice),
            Err(ValidationError::InBatch { index: 1, .. })
        ));
    }

    #[test]
    fn empty_nested_control_and_oversized_batches_are_refused() {
        let s = fixture();
        assert_eq!(s.validate(&batch(vec![])), Err(ValidationError::EmptyBatch));
        assert_eq!(
            s.validate(&batch(vec![
                create("a", 1, 1),
                batch(vec![create("b", 1, 1)])
            ])),
            Err(ValidationError::NotInBatch {
                index: 1,
                kind: "Batch"
            })
        );
        assert_eq!(
            s.validate(&batch(vec![Command::LeaderChange {
                leader: 1,
                epoch: 1
            }])),
            Err(ValidationError::NotInBatch {
                index: 0,
                kind: "LeaderChange"
            })
        );
        let many = vec![Command::DeleteTopic { name: "t".into() }; MAX_BATCH_COMMANDS + 1];
        assert_eq!(
            s.validate(&batch(many)),
            Err(ValidationError::BatchTooLarge {
                len: MAX_BATCH_COMMANDS + 1,
                max: MAX_BATCH_COMMANDS
            })
        );
    }
}
