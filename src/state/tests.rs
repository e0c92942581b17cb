//! Shared fixtures for the state tests, and the properties that span
//! validation, apply and the digest together.
//!
//! The per-concept unit tests sit with their code (`validate`, `apply`,
//! `digest`) and use the command builders and the [`fixture`] here. This is
//! `pub(crate)` because [`arb_entries`] also drives the replay test in
//! `crate::replay_tests`.

use super::validate::validate_topic_name;
use super::*;
use crate::command::{Command, Entry};
use crate::record::Record;
use proptest::prelude::*;

/// A `CreateTopic` command.
pub(super) fn create(name: &str, partition_count: u32, replication_factor: u32) -> Command {
    Command::CreateTopic {
        name: name.to_owned(),
        partition_count,
        replication_factor,
    }
}
/// A `DeleteTopic` command.
pub(super) fn delete(name: &str) -> Command {
    Command::DeleteTopic {
        name: name.to_owned(),
    }
}
/// An `AssignPartition` command.
pub(super) fn assign(topic: &str, partition: i32, replicas: &[NodeId]) -> Command {
    Command::AssignPartition {
        topic: topic.to_owned(),
        partition,
        replicas: replicas.to_vec(),
    }
}
/// A `SetPartitionLeader` command.
pub(super) fn lead(topic: &str, partition: i32, leader: NodeId) -> Command {
    Command::SetPartitionLeader {
        topic: topic.to_owned(),
        partition,
        leader,
    }
}
/// An `UpdateIsr` command.
pub(super) fn isr(topic: &str, partition: i32, isr: &[NodeId]) -> Command {
    Command::UpdateIsr {
        topic: topic.to_owned(),
        partition,
        isr: isr.to_vec(),
    }
}

/// A `CreatePartitions` command.
pub(super) fn grow(topic: &str, partition_count: u32) -> Command {
    Command::CreatePartitions {
        topic: topic.to_owned(),
        partition_count,
    }
}

/// Apply `command` as the next entry (epoch 1) and return the result.
pub(super) fn step(s: &mut MetadataState, command: Command) -> Result<(), ValidationError> {
    let entry = Entry {
        offset: s.applied_offset() + 1,
        epoch: 1,
        command,
    };
    s.apply(&entry)
}

/// Apply `command` as the next entry; panic if it is refused.
pub(super) fn ok(s: &mut MetadataState, command: Command) {
    let kind = command.kind();
    if let Err(e) = step(s, command) {
        panic!("{kind} refused: {e}");
    }
}

/// Topic "t": 3 partitions, rf 3; p0 = replicas [1,2,3], leader 1,
/// ISR [1,2,3]; p1 = replicas [4,5], no leader, ISR []; p2 unassigned.
pub(super) fn fixture() -> MetadataState {
    let mut s = MetadataState::new();
    ok(&mut s, create("t", 3, 3));
    ok(&mut s, assign("t", 0, &[1, 2, 3]));
    ok(&mut s, lead("t", 0, 1));
    ok(&mut s, isr("t", 0, &[1, 2, 3]));
    ok(&mut s, assign("t", 1, &[4, 5]));
    s
}

/// `command` must be refused with exactly `expected`, by `validate` and by
/// `apply`; `apply` must change nothing but the applied offset and epoch
/// (so the digest is that of `s` with only those two moved).
pub(super) fn assert_rejected(s: &MetadataState, command: Command, expected: ValidationError) {
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
    let moved_only = MetadataState {
        applied_offset: entry.offset,
        applied_epoch: entry.epoch,
        ..s.clone()
    };
    assert_eq!(after, moved_only);
    assert_eq!(after.digest(), moved_only.digest());
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

/// Random broker commands (no control entry, no batch) over a small name
/// pool and broker-id pool: a mix of valid and invalid ones.
fn arb_single() -> impl Strategy<Value = Command> {
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
        // Mostly growing the pool topics (2 and 3 partitions at the start)
        // by a little, sometimes not growing them.
        2 => (arb_name(), prop_oneof![3 => 3u32..7, 1 => 0u32..4]).prop_map(|(topic, partition_count)| {
            Command::CreatePartitions { topic, partition_count }
        }),
    ]
}

/// [`arb_single`] commands, batches of them (sometimes empty), and
/// `LeaderChange` control entries.
fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        16 => arb_single(),
        2 => prop::collection::vec(arb_single(), 0..6).prop_map(|commands| Command::Batch { commands }),
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
                Command::Batch { commands } => {
                    // All or none: a valid batch leaves what its commands
                    // applied one by one leave; a refused one nothing.
                    prop_assert_eq!(&applied, &validated);
                    let mut one_by_one = before.clone();
                    let each: Result<(), ValidationError> =
                        commands.iter().try_for_each(|c| one_by_one.apply_command(c));
                    if applied.is_ok() {
                        prop_assert!(each.is_ok());
                        prop_assert_eq!(&a.topics, &one_by_one.topics);
                    } else {
                        prop_assert_eq!(&a.topics, &before.topics);
                    }
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
            Command::CreatePartitions { topic: "t".into(), partition_count: count % (MAX_PARTITIONS + 2) },
        ];
        for command in cmds {
            let _ = s.validate(&command);
            let _ = s.apply(&Entry { offset, epoch: 1, command: command.clone() });
            let _ = step(&mut s, command);
            check_invariants(&s)?;
        }
    }
}

#[test]
fn a_partition_cloned_into_another_keeps_its_vectors() {
    let source = PartitionState {
        replicas: vec![1, 2, 3],
        leader: Some(2),
        isr: vec![2, 3],
    };
    let mut target = PartitionState {
        replicas: vec![4, 5, 6],
        leader: None,
        isr: vec![4, 5, 6],
    };
    let (replicas, isr) = (target.replicas.as_ptr(), target.isr.as_ptr());
    target.clone_from(&source);
    assert_eq!(target, source);
    assert_eq!(target.replicas.as_ptr(), replicas, "no new replica vector");
    assert_eq!(target.isr.as_ptr(), isr, "no new ISR vector");
}
