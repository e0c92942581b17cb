//! Applying a log entry to the state: [`MetadataState::apply`].
//!
//! Separate from `validate` because applying is the one place the state
//! changes, and it must be deterministic on every node: the order check, the
//! applied offset and epoch, and each command's effect (the table in the
//! [`state` module docs](crate::state)) live here and nowhere else.

use crate::command::{Command, Entry};

use super::validate::{
    check_growth, check_isr, check_leader, check_partition_limit, check_replicas,
};
use super::{MetadataState, PartitionState, TopicState, ValidationError};

impl MetadataState {
    /// Apply `entry`, which must be at `applied_offset() + 1`.
    ///
    /// * Not the next offset: [`ValidationError::OutOfOrder`], nothing changes
    ///   (not even the applied offset).
    /// * `LeaderChange`: sets [`MetadataState::leader`]; no validation.
    /// * `Membership`: sets [`MetadataState::membership`]; no validation
    ///   (checked when it was built and when it was decoded).
    /// * Any other command is validated as by [`MetadataState::validate`]. If
    ///   it does not validate (cannot happen for a log written by a leader)
    ///   it changes nothing but the applied offset and epoch, identically on
    ///   every node, and the error is returned for logging.
    /// * Otherwise the command is applied (see the [module docs](crate::state) for
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
    pub(super) fn apply_command(&mut self, command: &Command) -> Result<(), ValidationError> {
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
            Command::CreatePartitions {
                topic,
                partition_count,
            } => {
                check_partition_limit(topic, *partition_count)?;
                let t = self.topics.get_mut(topic.as_str()).ok_or_else(|| {
                    ValidationError::UnknownTopic {
                        name: topic.clone(),
                    }
                })?;
                check_growth(topic, t, *partition_count)?;
                // Checked: above the current count and at most MAX_PARTITIONS.
                let count = *partition_count as usize;
                t.partitions.resize(count, PartitionState::default());
                Ok(())
            }
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
            Command::Batch { commands } => {
                let outcome = self.batch_outcome(commands)?;
                self.commit_batch(outcome);
                Ok(())
            }
            Command::LeaderChange { leader, .. } => {
                self.leader = Some(*leader);
                Ok(())
            }
            Command::Membership(m) => {
                self.membership = Some(m.clone());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assign, create, delete, fixture, grow, isr, lead, ok};
    use super::*;

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
    fn create_partitions_appends_unassigned_partitions() {
        let mut s = fixture();
        let before = s.topic("t").unwrap().clone();
        ok(&mut s, grow("t", 5));
        let t = s.topic("t").unwrap();
        assert_eq!(t.partition_count(), 5);
        assert_eq!(t.replication_factor, before.replication_factor);
        // The old partitions keep their replicas, leader and ISR ...
        assert_eq!(t.partitions[..3], before.partitions[..]);
        // ... and the new ones, numbered from the old count, are unassigned.
        assert!(t.partitions[3..]
            .iter()
            .all(|p| *p == PartitionState::default()));
        assert_eq!(s.partition_total(), 5);
        assert!(s.partition("t", 4).is_some());
        assert!(s.partition("t", 5).is_none());
        // Growing again starts from the new count.
        ok(&mut s, grow("t", 7));
        assert_eq!(s.topic("t").map(|t| t.partition_count()), Some(7));
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
}
