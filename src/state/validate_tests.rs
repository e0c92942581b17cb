//! Unit tests of the state's validation rules, one test per rule.

use super::super::tests::{assert_rejected, assign, create, delete, fixture, grow, isr, lead, ok};
use super::*;
use crate::command::Entry;

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
        grow("u", 5),
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

// ---- CreatePartitions ------------------------------------------------

#[test]
fn create_partitions_not_growing_refused() {
    // Equal, smaller, and 0: the fixture's "t" has 3 partitions.
    for requested in [3, 2, 1, 0] {
        assert_rejected(
            &fixture(),
            grow("t", requested),
            ValidationError::PartitionCountNotIncreased {
                topic: "t".into(),
                current: 3,
                requested,
            },
        );
    }
    let msg = ValidationError::PartitionCountNotIncreased {
        topic: "t".into(),
        current: 3,
        requested: 2,
    }
    .to_string();
    assert!(
        msg.contains("currently has 3 partitions") && msg.contains("requested 2"),
        "{msg}"
    );
    assert_eq!(fixture().validate(&grow("t", 4)), Ok(()));
}

#[test]
fn create_partitions_unknown_topic_refused() {
    for requested in [1, 5, MAX_PARTITIONS] {
        assert_rejected(
            &fixture(),
            grow("u", requested),
            ValidationError::UnknownTopic { name: "u".into() },
        );
    }
    // A deleted topic is unknown too.
    let mut s = fixture();
    ok(&mut s, delete("t"));
    assert_rejected(
        &s,
        grow("t", 5),
        ValidationError::UnknownTopic { name: "t".into() },
    );
}

#[test]
fn create_partitions_over_the_limit_refused() {
    for requested in [MAX_PARTITIONS + 1, u32::MAX] {
        assert_rejected(
            &fixture(),
            grow("t", requested),
            ValidationError::TooManyPartitions {
                topic: "t".into(),
                requested,
                max: MAX_PARTITIONS,
            },
        );
    }
    // Exactly the limit is fine, and then nothing more.
    let mut s = fixture();
    ok(&mut s, grow("t", MAX_PARTITIONS));
    assert_eq!(
        s.topic("t").map(|t| t.partition_count()),
        Some(MAX_PARTITIONS)
    );
    assert_rejected(
        &s,
        grow("t", MAX_PARTITIONS + 1),
        ValidationError::TooManyPartitions {
            topic: "t".into(),
            requested: MAX_PARTITIONS + 1,
            max: MAX_PARTITIONS,
        },
    );
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
