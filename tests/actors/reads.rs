//! Actor-level tests of what the server API is built on, through the
//! library: atomic batches (`Node::propose_batch`), change streams from any
//! offset (`Node::changes_from`, read back from the WAL, resumable, refused
//! below the log start), linearizable reads (`Node::read_index`), and
//! `last_log_epoch` in the status.

use metawal_testkit as common;

use std::time::Duration;

use common::proxy::Fault;
use common::{create_topic, fast_config, wait_converged, wait_until, TestCluster};
use metawal::state::ValidationError;
use metawal_actors::{Acks, ChangesError, Command, ProposeError, ReadError};

const LIMIT: Duration = Duration::from_secs(10);

fn assign(topic: &str, partition: i32, replicas: &[u64]) -> Command {
    Command::AssignPartition {
        topic: topic.into(),
        partition,
        replicas: replicas.to_vec(),
    }
}

#[actix::test]
async fn a_batch_is_one_entry_all_or_none_on_every_node() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    let leader = c.node(1);
    let before = leader.status().await.unwrap().log_end;
    let p = leader
        .propose_batch(
            vec![
                create_topic("orders", 2, 2),
                assign("orders", 0, &[1, 2]),
                assign("orders", 1, &[2, 3]),
            ],
            Acks::All,
        )
        .await
        .unwrap();
    assert_eq!(p.offset, before + 1, "the whole batch is one entry");

    // A batch whose last command is invalid: refused whole, nothing appended.
    let err = leader
        .propose_batch(
            vec![create_topic("never", 1, 1), assign("orders", 9, &[1])],
            Acks::All,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ProposeError::Invalid(ValidationError::InBatch { index: 1, .. })
        ),
        "{err:?}"
    );
    assert_eq!(leader.status().await.unwrap().log_end, p.offset);

    wait_converged(&c, &[1, 2, 3], LIMIT).await;
    for id in [1, 2, 3] {
        let view = c.node(id).view();
        assert_eq!(view.partition("orders", 1).unwrap().replicas, vec![2, 3]);
        assert!(view.topic("never").is_none());
    }
    c.shutdown().await;
}

#[actix::test]
async fn a_change_stream_reads_the_log_from_any_offset_on_any_node_and_follows_it() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    let mut offsets = Vec::new();
    for i in 0..20 {
        let p = c
            .node(1)
            .propose(create_topic(&format!("t{i}"), 1, 1), Acks::All)
            .await
            .unwrap();
        offsets.push(p.offset);
    }
    wait_converged(&c, &[1, 2, 3], LIMIT).await;
    // From the middle, on a follower: exactly the log, in order.
    let mut s = c.node(3).changes_from(offsets[5]);
    for (i, want) in offsets[5..].iter().enumerate() {
        let e = tokio::time::timeout(LIMIT, s.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.offset, *want);
        assert_eq!(e.command, create_topic(&format!("t{}", i + 5), 1, 1));
    }
    assert_eq!(s.position(), offsets[19] + 1);
    // It waits for the next entry, then yields it.
    let waiting = tokio::spawn(async move { s.next().await });
    let p = c
        .node(1)
        .propose(create_topic("later", 1, 1), Acks::All)
        .await
        .unwrap();
    let e = tokio::time::timeout(LIMIT, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.offset, p.offset);
    // From 1 on the leader: every entry, dense.
    let mut s = c.node(1).changes_from(1);
    for want in 1..=p.offset {
        let e = tokio::time::timeout(LIMIT, s.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.offset, want);
    }
    c.shutdown().await;
}

#[actix::test]
async fn a_change_stream_below_the_log_start_is_refused_with_where_the_log_starts() {
    let mut cfg = fast_config();
    cfg.snapshot_every = 20;
    cfg.segment_bytes = 4096;
    let c = TestCluster::start(3, &[], cfg).await;
    let node = c.node(1);
    // Enough entries for snapshots and dropped segments.
    let mut last = 0;
    for i in 0..300 {
        last = node
            .propose(
                create_topic(&format!("topic-number-{i}"), 1, 1),
                Acks::Leader,
            )
            .await
            .unwrap()
            .offset;
    }
    wait_until("the leader's log start to move past 1", LIMIT, || async {
        matches!(
            node.changes_from(1).next().await,
            Err(ChangesError::Compacted { .. })
        )
    })
    .await;
    let Err(ChangesError::Compacted {
        requested,
        log_start,
    }) = node.changes_from(1).next().await
    else {
        panic!("expected Compacted");
    };
    assert_eq!(requested, 1);
    assert!(log_start > 1 && log_start <= last, "log start {log_start}");
    // The state is a base to resume from: its offset + 1 is in the log.
    let state = node.state().await.unwrap();
    assert!(state.applied_offset() + 1 >= log_start);
    let mut s = node.changes_from(log_start);
    assert_eq!(s.next().await.unwrap().offset, log_start);
    c.shutdown().await;
}

/// Read your writes: once an `acks=all` write is answered, it is
/// committed, so the next read index covers it. The Replicator answers the
/// proposer itself and publishes its progress (the commit a read index
/// starts from) once per burst of messages; it must publish before it
/// answers, or a read right after the answer starts from the commit before
/// it. Concurrent writers make the bursts.
#[actix::test]
async fn a_read_index_right_after_an_acknowledged_write_covers_it() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let leader = c.node(1).clone();
            tokio::task::spawn_local(async move {
                for i in 0..40 {
                    let p = leader
                        .propose(create_topic(&format!("ryw-{w}-{i}"), 1, 1), Acks::All)
                        .await
                        .unwrap();
                    let index = leader.read_index(LIMIT).await.unwrap();
                    assert!(
                        index >= p.offset,
                        "writer {w}: write {i} was answered at offset {} but the next read index is {index}",
                        p.offset
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    c.shutdown().await;
}

#[actix::test]
async fn a_linearizable_read_needs_the_leader_to_reach_a_quorum() {
    let c = TestCluster::start(3, &[2, 3], fast_config()).await;
    let leader = c.node(1);
    let p = leader
        .propose(create_topic("seen", 1, 1), Acks::All)
        .await
        .unwrap();
    let index = leader.read_index(LIMIT).await.unwrap();
    assert!(index >= p.offset);
    assert!(leader.view().topic("seen").is_some());
    // On a follower: refused, naming the leader.
    assert_eq!(
        c.node(2).read_index(LIMIT).await,
        Err(ReadError::NotLeader {
            node: 2,
            leader: Some(1)
        })
    );
    // Cut off from both followers, the leader cannot confirm a read (before
    // check-quorum removes it, it would otherwise answer stale).
    c.proxy(2).set(Fault::Stall);
    c.proxy(3).set(Fault::Stall);
    let err = leader
        .read_index(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::Timeout(_) | ReadError::LeadershipLost | ReadError::NotLeader { .. }
        ),
        "{err:?}"
    );
    c.proxy(2).set(Fault::Pass);
    c.proxy(3).set(Fault::Pass);
    c.shutdown().await;
}

#[actix::test]
async fn status_reports_the_last_log_epoch_on_leader_and_followers() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    c.node(1)
        .propose(create_topic("x", 1, 1), Acks::All)
        .await
        .unwrap();
    let end = wait_converged(&c, &[1, 2, 3], LIMIT).await;
    let epoch = c.node(1).status().await.unwrap().epoch;
    for id in [1, 2, 3] {
        let s = c.node(id).status().await.unwrap();
        assert_eq!((s.log_end, s.last_log_epoch), (end, epoch), "node {id}");
    }
    c.shutdown().await;
}
