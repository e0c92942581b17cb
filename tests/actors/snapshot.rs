//! Snapshots: a follower that was down while the leader snapshotted and
//! dropped old WAL segments is brought back with a snapshot transfer, and a
//! node restarted on a data dir with a snapshot recovers the same state.

use metawal_testkit as common;

use std::time::Duration;

use common::{fast_config, wait_until, TestCluster};
use metawal_actors::{Acks, Command};

#[actix::test]
async fn lagging_follower_is_resynced_with_a_snapshot() {
    let mut cfg = fast_config();
    cfg.snapshot_every = 50;
    cfg.segment_bytes = 4096;
    let mut c = TestCluster::start(3, &[], cfg).await;
    c.wait_isr(3, Duration::from_secs(10)).await;
    let leader = c.node(1).clone();
    leader
        .propose(
            Command::CreateTopic {
                name: "s".into(),
                partition_count: 4,
                replication_factor: 3,
            },
            Acks::All,
        )
        .await
        .expect("create");
    for p in 0..4 {
        leader
            .propose(
                Command::AssignPartition {
                    topic: "s".into(),
                    partition: p,
                    replicas: vec![1, 2, 3],
                },
                Acks::All,
            )
            .await
            .expect("assign");
    }

    c.stop_node(3).await;
    c.wait_isr(2, Duration::from_secs(10)).await;
    let mut last = 0;
    for i in 0..600u64 {
        last = leader
            .propose(
                Command::SetPartitionLeader {
                    topic: "s".into(),
                    partition: (i % 4) as i32,
                    leader: 1 + i % 3,
                },
                Acks::All,
            )
            .await
            .expect("write while node 3 is down")
            .offset;
    }
    // The leader's WAL no longer holds what node 3 needs.
    let wal_dir = c.data_dir(1).join("wal");
    let (wal, _) = metawal::wal::Wal::open(
        &wal_dir,
        metawal::wal::WalOptions {
            segment_bytes: 4096,
            ..Default::default()
        },
    )
    .expect("open a copy of the leader's WAL read-only is fine here");
    assert!(
        wal.first_offset() > 10,
        "leader kept its whole log (first offset {})",
        wal.first_offset()
    );
    drop(wal);

    c.start_node(3).await;
    c.wait_isr(3, Duration::from_secs(20)).await;
    let n3 = c.node(3).clone();
    wait_until(
        "node 3 to apply the leader's log",
        Duration::from_secs(20),
        || {
            let n3 = n3.clone();
            async move { n3.view().applied_offset() >= last }
        },
    )
    .await;
    let a1 = leader.applied().await.expect("applied");
    let a3 = n3.applied().await.expect("applied");
    assert_eq!(a1.offset, a3.offset);
    assert_eq!(a1.digest, a3.digest);
    let status = leader.status().await.expect("status");
    let f3 = status.follower(3).expect("follower 3");
    assert_eq!(
        f3.snapshots_sent, 1,
        "node 3 was resynced with exactly one snapshot"
    );

    // Restart node 3 on its data dir: snapshot + WAL give the same state.
    c.stop_node(3).await;
    c.start_node(3).await;
    c.wait_isr(3, Duration::from_secs(20)).await;
    let n3 = c.node(3).clone();
    wait_until("restarted node 3 to apply", Duration::from_secs(20), || {
        let n3 = n3.clone();
        async move { n3.view().applied_offset() >= last }
    })
    .await;
    assert_eq!(n3.applied().await.expect("applied").digest, a1.digest);
    c.shutdown().await;
}

/// A follower whose diverged tail (entries of an old epoch no other node
/// has) runs past the leader's snapshot offset installs the snapshot, drops
/// the diverged tail and converges — instead of keeping the tail, reporting
/// it again and being sent the snapshot forever.
#[actix::test]
async fn diverged_tail_past_the_snapshot_is_replaced() {
    use metawal::record::Record;
    use metawal::wal::{Wal, WalOptions};
    use metawal_actors::Entry;

    let mut cfg = fast_config();
    cfg.snapshot_every = 50;
    cfg.segment_bytes = 4096;
    let limit = Duration::from_secs(20);
    let mut c = TestCluster::start(3, &[], cfg).await;
    c.wait_isr(3, limit).await;
    for i in 0..10 {
        c.node(1)
            .propose(common::create_topic(&format!("t{i}"), 1, 3), Acks::All)
            .await
            .expect("write");
    }
    let end = common::wait_converged(&c, &[1, 2, 3], limit).await;
    let epoch = c.node(1).status().await.expect("status").epoch;
    c.stop_node(3).await;

    // Node 3 holds 1000 entries of the current epoch that no other node has.
    let strays = 1000;
    {
        let opts = WalOptions {
            segment_bytes: 4096,
            ..Default::default()
        };
        let (mut wal, _) = Wal::open(&c.data_dir(3).join("wal"), opts).expect("open node 3's WAL");
        let stray: Vec<Record> = (1..=strays)
            .map(|i| {
                Record::encode(&Entry {
                    offset: end + i,
                    epoch,
                    command: common::create_topic(&format!("stray{i}"), 1, 3),
                })
                .expect("encode")
            })
            .collect();
        wal.append(&stray).expect("append strays");
        wal.sync().expect("sync");
    }

    // Leadership moves to node 2 (a new epoch), which writes past a few
    // snapshots and drops old segments, all without node 3.
    c.node(1).transfer_leadership(2).await.expect("transfer");
    c.wait_isr_of(2, 2, limit).await;
    let mut last = 0;
    for i in 0..600u64 {
        last = c
            .node(2)
            .propose(common::create_topic(&format!("u{i}"), 1, 3), Acks::All)
            .await
            .expect("write while node 3 is down")
            .offset;
    }
    assert!(
        end + strays > last,
        "node 3's diverged tail ({}) must run past the leader's snapshot (< {last})",
        end + strays
    );

    c.start_node(3).await;
    c.wait_isr_of(2, 3, limit).await;
    let n3 = c.node(3).clone();
    wait_until("node 3 to apply the leader's log", limit, || {
        let n3 = n3.clone();
        async move { n3.view().applied_offset() >= last }
    })
    .await;
    let a2 = c.node(2).applied().await.expect("applied");
    let a3 = n3.applied().await.expect("applied");
    assert_eq!((a3.offset, a3.digest), (a2.offset, a2.digest));
    assert!(n3.view().topic("stray1").is_none());
    let status = c.node(2).status().await.expect("status");
    let sent = status.follower(3).expect("follower 3").snapshots_sent;
    assert_eq!(sent, 1, "one snapshot brought node 3 back");
    c.shutdown().await;
}
