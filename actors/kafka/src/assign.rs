//! Replica placement for new partitions, and the checks a Kafka controller
//! makes on what a client asks for (counts, factors, explicit
//! assignments), with its error codes. Pure: tested without a node.

use kafka_protocol::ResponseError;
use metawal::{Command, NodeId};

use crate::codes::Refusal;

/// Kafka's `num.partitions` default: a `CreateTopics` with `-1` partitions
/// and no assignments gets one.
pub(crate) const DEFAULT_PARTITIONS: u32 = 1;
/// Kafka's `default.replication.factor`.
pub(crate) const DEFAULT_REPLICATION_FACTOR: u32 = 1;

/// Replicas for partitions `first..first + count` of `topic`, placed round
/// robin over `brokers` from a start drawn from the topic's name (so
/// topics spread their leaders), `factor` each.
pub(crate) fn round_robin(
    topic: &str,
    first: u32,
    count: u32,
    factor: u32,
    brokers: &[NodeId],
) -> Result<Vec<Vec<NodeId>>, Refusal> {
    let n = brokers.len();
    if factor == 0 || factor as usize > n {
        return Err(Refusal::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {factor} time(s): the replication factor must be between 1 and the {n} broker(s) of the cluster"
            ),
        ));
    }
    let start = name_hash(topic) as usize % n;
    Ok((first..first.saturating_add(count))
        .map(|p| {
            (0..factor as usize)
                .map(|i| brokers[(start + p as usize + i) % n])
                .collect()
        })
        .collect())
}

/// Checks explicit assignments (partition `i` of the list is partition
/// `first + i`): each non-empty, without duplicates, on known brokers, all
/// of one length.
pub(crate) fn explicit(
    assignments: Vec<Vec<i32>>,
    brokers: &[NodeId],
) -> Result<Vec<Vec<NodeId>>, Refusal> {
    let bad = |m: String| Refusal::new(ResponseError::InvalidReplicaAssignment, m);
    let mut out = Vec::with_capacity(assignments.len());
    for (i, ids) in assignments.into_iter().enumerate() {
        if ids.is_empty() {
            return Err(bad(format!("the assignment of partition {i} is empty")));
        }
        let mut replicas = Vec::with_capacity(ids.len());
        for id in ids {
            let known = u64::try_from(id).ok().filter(|id| brokers.contains(id));
            let Some(id) = known else {
                return Err(bad(format!(
                    "the assignment of partition {i} names broker {id}, which is not a member of the cluster"
                )));
            };
            if replicas.contains(&id) {
                return Err(bad(format!(
                    "the assignment of partition {i} names broker {id} twice"
                )));
            }
            replicas.push(id);
        }
        if out
            .first()
            .is_some_and(|f: &Vec<NodeId>| f.len() != replicas.len())
        {
            return Err(bad(
                "all partitions must have the same number of replicas".to_string()
            ));
        }
        out.push(replicas);
    }
    Ok(out)
}

/// The commands that give partitions `first..` of `topic` their replicas,
/// leader (the first replica) and ISR (every replica), as a Kafka
/// controller does when it creates them.
pub(crate) fn partition_commands(
    topic: &str,
    first: u32,
    replicas: Vec<Vec<NodeId>>,
) -> Vec<Command> {
    let mut out = Vec::with_capacity(replicas.len() * 3);
    for (i, r) in replicas.into_iter().enumerate() {
        let partition = i32::try_from(first as usize + i).unwrap_or(i32::MAX);
        // Never empty (`round_robin` and `explicit` refuse that); an empty
        // list would be refused by the state's validation anyway.
        let Some(&leader) = r.first() else {
            continue;
        };
        out.push(Command::AssignPartition {
            topic: topic.to_string(),
            partition,
            replicas: r.clone(),
        });
        out.push(Command::SetPartitionLeader {
            topic: topic.to_string(),
            partition,
            leader,
        });
        out.push(Command::UpdateIsr {
            topic: topic.to_string(),
            partition,
            isr: r,
        });
    }
    out
}

/// FNV-1a of a topic name: the placement start, and the topic id.
pub(crate) fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The topic id clients see: derived from the name (metawal keeps no ids),
/// the same on every node, never nil.
pub(crate) fn topic_id(name: &str) -> uuid::Uuid {
    let hi = name_hash(name);
    let lo = name_hash(&format!("{name}\u{0}metawal"));
    uuid::Uuid::from_u64_pair(hi, lo | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_spreads_replicas_and_refuses_a_factor_over_the_brokers() {
        let r = round_robin("t", 0, 4, 2, &[1, 2, 3]).unwrap();
        assert_eq!(r.len(), 4);
        for (p, replicas) in r.iter().enumerate() {
            assert_eq!(replicas.len(), 2);
            assert_ne!(replicas[0], replicas[1], "partition {p}");
        }
        let leaders: std::collections::BTreeSet<_> = r.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 3, "leaders spread: {r:?}");
        let e = round_robin("t", 0, 1, 4, &[1, 2, 3]).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidReplicationFactor);
        assert!(e.message.contains("3 broker"), "{}", e.message);
    }

    #[test]
    fn explicit_assignments_are_checked_like_a_kafka_controller_does() {
        assert_eq!(
            explicit(vec![vec![1, 2], vec![2, 3]], &[1, 2, 3]).unwrap(),
            vec![vec![1, 2], vec![2, 3]]
        );
        for bad in [
            vec![vec![]],
            vec![vec![1, 1]],
            vec![vec![9]],
            vec![vec![-1]],
            vec![vec![1, 2], vec![3]],
        ] {
            let e = explicit(bad.clone(), &[1, 2, 3]).unwrap_err();
            assert_eq!(e.code, ResponseError::InvalidReplicaAssignment, "{bad:?}");
        }
    }

    #[test]
    fn a_topic_id_is_stable_and_never_nil() {
        assert_eq!(topic_id("a"), topic_id("a"));
        assert_ne!(topic_id("a"), topic_id("b"));
        assert!(!topic_id("").is_nil());
    }
}
