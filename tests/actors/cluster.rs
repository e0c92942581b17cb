//! Actor-level tests of a healthy 3-node cluster and of node restarts:
//! propagation of every command type, acks=all durability, validation
//! errors, role errors, a stopped follower, a restarted leader, a
//! follower whose diverged tail the leader truncates, and a lagging follower
//! caught up through the leader's WAL reads (its disk reader thread).

use metawal_testkit as common;

use std::time::{Duration, Instant};

use common::proxy::Fault;
use common::{
    create_topic, fast_config, record, wait_converged, wait_seen, wait_until, TestCluster,
};
use metawal::state::{PartitionState, ValidationError, MAX_PARTITIONS};
use metawal_actors::{Acks, Command, ProposeError, Role};

const LIMIT: Duration = Duration::from_secs(10);

/// Recognises the expected validation error.
type ErrorCheck = Box<dyn Fn(&ValidationError) -> bool>;

/// The commands of `every_command_type_reaches_followers_in_order`.
fn story() -> Vec<Command> {
    let mut cmds = vec![create_topic("orders", 3, 3)];
    for p in 0..3i32 {
        let r = p as u64;
        let replicas = vec![1 + r % 3, 1 + (r + 1) % 3, 1 + (r + 2) % 3];
        let leader = replicas[0];
        let isr = vec![replicas[0], replicas[1]];
        cmds.push(Command::AssignPartition {
            topic: "orders".into(),
            partition: p,
            replicas,
        });
        cmds.push(Command::SetPartitionLeader {
            topic: "orders".into(),
            partition: p,
            leader,
        });
        cmds.push(Command::UpdateIsr {
            topic: "orders".into(),
            partition: p,
            isr,
        });
    }
    cmds.push(create_topic("tmp", 2, 1));
    cmds.push(Command::AssignPartition {
        topic: "tmp".into(),
        partition: 1,
        replicas: vec![2],
    });
    cmds.push(Command::DeleteTopic { name: "tmp".into() });
    cmds.push(create_topic("tmp", 1, 1));
    cmds
}

#[actix::test]
async fn every_command_type_reaches_followers_in_order() {
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    // Subscribed at start, before any election can finish (it takes at
    // least the election timeout), so the subscribers see everything from
    // the first LeaderChange at offset 1.
    let mut recs = Vec::new();
    for id in [1, 2, 3] {
        c.start_node(id).await;
        recs.push(record(c.node(id)));
    }
    c.make_leader(1).await;
    let base = c.node(1).status().await.unwrap().log_end;
    let epoch = c.node(1).status().await.unwrap().epoch;

    let mut expected = Vec::new();
    for cmd in story() {
        let p = c.node(1).propose(cmd.clone(), Acks::All).await.unwrap();
        assert_eq!(
            p.offset,
            base + expected.len() as u64 + 1,
            "offsets are dense"
        );
        assert_eq!(p.epoch, epoch);
        expected.push((p.offset, cmd));
    }
    let last = base + expected.len() as u64;
    for (id, rec) in [(2, &recs[1]), (3, &recs[2])] {
        wait_seen(rec, last, LIMIT).await;
        let pairs = rec.pairs();
        let (elections, story): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(o, _)| *o <= base);
        assert_eq!(story, expected, "node {id}'s subscriber sequence");
        // Before the story: one LeaderChange per election, from offset 1.
        assert_eq!(
            elections.iter().map(|e| e.0).collect::<Vec<_>>(),
            (1..=base).collect::<Vec<_>>()
        );
        assert!(elections
            .iter()
            .all(|(_, c)| matches!(c, Command::LeaderChange { .. })));
        assert!(rec
            .seen()
            .iter()
            .filter(|s| s.offset > base)
            .all(|s| s.epoch == epoch));
    }

    let leader_view = c.node(1).view();
    for id in [2, 3] {
        let v = c.node(id).view();
        assert_eq!(v.applied_offset(), last, "node {id} applied");
        assert_eq!(v.topics(), vec!["orders".to_string(), "tmp".to_string()]);
        for p in 0..3i32 {
            let r = p as u64;
            let replicas = vec![1 + r % 3, 1 + (r + 1) % 3, 1 + (r + 2) % 3];
            assert_eq!(
                v.partition("orders", p),
                Some(PartitionState {
                    leader: Some(replicas[0]),
                    isr: vec![replicas[0], replicas[1]],
                    replicas,
                }),
                "node {id} orders-{p}"
            );
        }
        let tmp = v.topic("tmp").expect("tmp recreated");
        assert_eq!(tmp.partitions, vec![PartitionState::default()]);
        assert_eq!(v.topic("orders"), leader_view.topic("orders"));
        assert_eq!(
            c.node(id).applied().await.unwrap(),
            c.node(1).applied().await.unwrap(),
            "node {id} digest"
        );
    }
    c.shutdown().await;
}

#[actix::test]
async fn acks_all_resolves_only_when_both_followers_are_durable() {
    // Node 3's link is slowed a little, so that an acks=all resolved before
    // its ack would be seen at once.
    let mut cfg = fast_config();
    cfg.replica_lag_time_max = Duration::from_secs(5);
    cfg.session_timeout = Duration::from_secs(2);
    let c = TestCluster::start(3, &[3], cfg).await;
    c.wait_isr(3, LIMIT).await;
    let before = c.node(1).status().await.unwrap();
    let base = before.log_end;
    // A reconnect while the cluster came up (a loaded machine) is not what
    // this test measures: none may happen while the writes wait for node 3.
    let reconnects_before = before.follower(3).unwrap().reconnects;
    c.proxy(3).set(Fault::Delay(Duration::from_millis(30)));

    let mut tasks = Vec::new();
    for i in 0..200 {
        let (n1, n2, n3) = (c.node(1).clone(), c.node(2).clone(), c.node(3).clone());
        tasks.push(actix::spawn(async move {
            let p = n1
                .propose(create_topic(&format!("t{i}"), 1, 3), Acks::All)
                .await
                .expect("acks=all");
            let d2 = n2.status().await.unwrap().durable;
            let d3 = n3.status().await.unwrap().durable;
            (p.offset, d2, d3)
        }));
    }
    let mut offsets = Vec::new();
    for t in tasks {
        let (offset, d2, d3) = t.await.unwrap();
        assert!(
            d2 >= offset,
            "acks=all {offset} returned, node 2 durable {d2}"
        );
        assert!(
            d3 >= offset,
            "acks=all {offset} returned, node 3 durable {d3}"
        );
        offsets.push(offset);
    }
    offsets.sort();
    assert_eq!(offsets, (base + 1..base + 201).collect::<Vec<u64>>());
    // Node 3 never left the ISR: every ack really waited for it.
    let s = c.node(1).status().await.unwrap();
    assert_eq!(s.isr_len, 3);
    assert!(s.follower(3).unwrap().in_isr);
    assert_eq!(s.follower(3).unwrap().reconnects, reconnects_before);
    c.shutdown().await;
}

#[actix::test]
async fn invalid_command_gets_its_error_and_changes_nothing() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    c.wait_isr(3, LIMIT).await;
    let leader = c.node(1);
    leader
        .propose(create_topic("orders", 2, 2), Acks::All)
        .await
        .unwrap();
    leader
        .propose(
            Command::AssignPartition {
                topic: "orders".into(),
                partition: 0,
                replicas: vec![1, 2],
            },
            Acks::All,
        )
        .await
        .unwrap();
    let end = wait_converged(&c, &[1, 2, 3], LIMIT).await;
    let before_applied: Vec<_> = {
        let mut v = Vec::new();
        for id in 1..=3 {
            v.push(c.node(id).applied().await.unwrap());
        }
        v
    };
    let before_views: Vec<_> = (1..=3)
        .map(|id| {
            (
                c.node(id).view().topics(),
                c.node(id).view().topic("orders"),
            )
        })
        .collect();

    let t = || "orders".to_string();
    let cases: Vec<(Command, ErrorCheck)> = vec![
        (
            create_topic("orders", 1, 1),
            Box::new(|e| matches!(e, ValidationError::TopicExists { name } if name == "orders")),
        ),
        (
            create_topic("", 1, 1),
            Box::new(|e| matches!(e, ValidationError::EmptyTopicName)),
        ),
        (
            create_topic("bad/name", 1, 1),
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::IllegalTopicNameChar {
                        ch: '/',
                        position: 3,
                        ..
                    }
                )
            }),
        ),
        (
            create_topic("x", 0, 1),
            Box::new(
                |e| matches!(e, ValidationError::InvalidPartitionCount { count: 0, max } if *max == MAX_PARTITIONS),
            ),
        ),
        (
            Command::DeleteTopic {
                name: "nope".into(),
            },
            Box::new(|e| matches!(e, ValidationError::UnknownTopic { name } if name == "nope")),
        ),
        (
            Command::AssignPartition {
                topic: t(),
                partition: 5,
                replicas: vec![1],
            },
            Box::new(|e| {
                matches!(
                    e,
                    ValidationError::PartitionOutOfRange {
                        partition: 5,
                        partition_count: 2,
                        ..
                    }
                )
            }),
        ),
        (
            Command::AssignPartition {
                topic: t(),
                partition: 1,
                replicas: vec![],
            },
            Box::new(|e| matches!(e, ValidationError::EmptyReplicas { partition: 1, .. })),
        ),
        (
            Command::AssignPartition {
                topic: t(),
                partition: 1,
                replicas: vec![2, 2],
            },
            Box::new(|e| matches!(e, ValidationError::DuplicateReplica { replica: 2, .. })),
        ),
        (
            Command::SetPartitionLeader {
                topic: t(),
                partition: 0,
                leader: 3,
            },
            Box::new(
                |e| matches!(e, ValidationError::LeaderNotReplica { leader: 3, replicas, .. } if replicas == &vec![1, 2]),
            ),
        ),
        (
            Command::UpdateIsr {
                topic: t(),
                partition: 0,
                isr: vec![],
            },
            Box::new(|e| matches!(e, ValidationError::EmptyIsr { partition: 0, .. })),
        ),
        (
            Command::LeaderChange {
                leader: 1,
                epoch: 9,
            },
            Box::new(|e| matches!(e, ValidationError::ControlCommand { .. })),
        ),
    ];
    for (cmd, check) in &cases {
        for acks in [Acks::None, Acks::Leader, Acks::All] {
            match leader.propose(cmd.clone(), acks).await {
                Err(ProposeError::Invalid(e)) => {
                    assert!(check(&e), "{cmd:?}: wrong error {e:?}")
                }
                other => panic!("{cmd:?} with {acks:?}: expected Invalid, got {other:?}"),
            }
        }
    }
    let s = leader.status().await.unwrap();
    assert_eq!(s.log_end, end, "nothing appended");
    for id in 1..=3 {
        assert_eq!(
            c.node(id).applied().await.unwrap(),
            before_applied[id as usize - 1]
        );
        let v = c.node(id).view();
        assert_eq!(
            (v.topics(), v.topic("orders")),
            before_views[id as usize - 1]
        );
    }
    // The next valid command takes the very next offset, and it is the only
    // change every node sees.
    let p = leader
        .propose(create_topic("next", 1, 1), Acks::All)
        .await
        .unwrap();
    assert_eq!(p.offset, end + 1);
    wait_converged(&c, &[1, 2, 3], LIMIT).await;
    for id in 1..=3 {
        let v = c.node(id).view();
        assert_eq!(v.applied_offset(), end + 1);
        assert_eq!(v.topics(), vec!["next".to_string(), "orders".to_string()]);
        assert_eq!(v.topic("orders"), before_views[0].1);
    }
    c.shutdown().await;
}

#[actix::test]
async fn followers_refuse_proposals_with_the_leader_id() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    c.wait_isr(3, LIMIT).await;
    let end = c.node(1).status().await.unwrap().log_end;
    for id in [2, 3] {
        for acks in [Acks::None, Acks::Leader, Acks::All] {
            let r = c.node(id).propose(create_topic("t", 1, 1), acks).await;
            assert_eq!(
                r,
                Err(ProposeError::NotLeader {
                    node: id,
                    leader: Some(1)
                })
            );
        }
        assert_eq!(c.node(id).role(), Role::Follower);
    }
    let s = c.node(1).status().await.unwrap();
    assert_eq!(s.log_end, end, "nothing appended");
    assert!(c.node(2).view().topics().is_empty());
    c.shutdown().await;
}

/// The lone-leader case, now with no manual step: a leader whose followers
/// are gone commits nothing, steps down within about the election timeout
/// (check-quorum) and then refuses proposals with `NotLeader`; the two
/// others, restarted without it, elect a leader by themselves; the old
/// leader rejoins as a follower, its uncommitted tail is truncated, and all
/// three converge to one digest.
#[actix::test]
async fn lone_leader_commits_nothing_steps_down_and_rejoins_after_failover() {
    let cfg = fast_config();
    let mut c = TestCluster::start(3, &[], cfg).await;
    c.node(1)
        .propose(create_topic("before", 1, 3), Acks::All)
        .await
        .unwrap();
    let end = wait_converged(&c, &[1, 2, 3], LIMIT).await;
    c.stop_node(2).await;
    c.stop_node(3).await;

    // Within T it may still lead: an acks=leader write is appended (never
    // committed: one disk is not a majority of three) or refused.
    let stray = c
        .node(1)
        .propose(create_topic("stray", 1, 1), Acks::Leader)
        .await;
    assert!(
        matches!(
            stray,
            Ok(_) | Err(ProposeError::NotLeader { .. } | ProposeError::LeadershipLost)
        ),
        "{stray:?}"
    );
    // A condition with a liveness bound, not a stopwatch: on a loaded
    // machine the step-down may take longer than 4 T of wall time, but it
    // must come, and nothing else (no peer is reachable) can cause it.
    let n1 = c.node(1).clone();
    wait_until("the lone leader to step down", LIMIT, || {
        let n1 = n1.clone();
        async move { n1.role() == Role::Follower }
    })
    .await;
    for acks in [Acks::None, Acks::Leader, Acks::All] {
        let r = c.node(1).propose(create_topic("t", 1, 1), acks).await;
        assert!(
            matches!(r, Err(ProposeError::NotLeader { node: 1, .. })),
            "{r:?}"
        );
    }
    let s = c.node(1).status().await.unwrap();
    assert_eq!(s.commit, end, "nothing committed after the followers left");
    assert_eq!(c.node(1).view().topics(), vec!["before"]);

    // The leader crashes; the two others come back and elect one of them.
    c.stop_node(1).await;
    c.start_node(2).await;
    c.start_node(3).await;
    let leader = c.wait_leader(LIMIT).await;
    assert!(leader == 2 || leader == 3);
    c.wait_isr_of(leader, 2, LIMIT).await;
    c.node(leader)
        .propose(create_topic("after", 1, 3), Acks::All)
        .await
        .unwrap();

    // The old leader returns as a follower: its uncommitted tail is
    // truncated, and all three converge to one digest.
    c.start_node(1).await;
    assert_eq!(c.node(1).role(), Role::Follower);
    c.wait_isr_of(leader, 3, LIMIT).await;
    let target = c.node(leader).status().await.unwrap().log_end;
    for id in [1, 2, 3] {
        let n = c.node(id).clone();
        wait_until(&format!("node {id} to apply up to {target}"), LIMIT, || {
            let n = n.clone();
            async move { n.view().applied_offset() >= target }
        })
        .await;
    }
    let al = c.node(leader).applied().await.unwrap();
    for id in [1, 2, 3] {
        let a = c.node(id).applied().await.unwrap();
        assert_eq!((a.offset, a.digest), (al.offset, al.digest), "node {id}");
    }
    assert_eq!(c.node(1).view().topics(), vec!["after", "before"]);
    c.shutdown().await;
}

#[actix::test]
async fn stopped_follower_leaves_isr_at_once_and_catches_up_from_its_wal() {
    let mut cfg = fast_config();
    // Far longer than the test: leaving the ISR must come from the dropped link.
    cfg.replica_lag_time_max = Duration::from_secs(30);
    let mut c = TestCluster::start(3, &[3], cfg).await;
    c.wait_isr(3, LIMIT).await;
    for i in 0..20 {
        c.node(1)
            .propose(create_topic(&format!("a{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }
    let end = wait_converged(&c, &[1, 2, 3], LIMIT).await;
    let s3 = c.node(3).status().await.unwrap();
    let applied3 = c.node(3).applied().await.unwrap();
    assert_eq!((s3.log_end, s3.durable, applied3.offset), (end, end, end));

    let stopped = Instant::now();
    c.stop_node(3).await;
    let leader = c.node(1).clone();
    wait_until("node 3 to leave the ISR", Duration::from_secs(3), || {
        let leader = leader.clone();
        async move {
            let s = leader.status().await.unwrap();
            s.isr_len == 2 && !s.follower(3).unwrap().in_isr
        }
    })
    .await;
    let left_after = stopped.elapsed();
    assert!(left_after < Duration::from_secs(3), "{left_after:?}");

    // acks=all keeps working with the ISR {1, 2}; node 3 stays unreachable.
    c.proxy(3).set(Fault::Cut);
    for i in 0..20 {
        c.node(1)
            .propose(create_topic(&format!("b{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }
    let end2 = wait_converged(&c, &[1, 2], LIMIT).await;
    assert_eq!(end2, end + 20);

    // Restarted while the leader cannot reach it: it recovers exactly its
    // own log and state from its data dir, and names no leader it has not
    // heard (its meta's leader may be gone: clients would bounce).
    c.start_node(3).await;
    let s = c.node(3).status().await.unwrap();
    let epoch = c.node(1).status().await.unwrap().epoch;
    assert_eq!((s.role, s.epoch, s.leader), (Role::Follower, epoch, None));
    assert_eq!((s.log_end, s.durable), (end, end));
    assert_eq!(c.node(3).applied().await.unwrap(), applied3);
    assert_eq!(c.node(3).view().topics().len(), 20);

    // Reachable again: it catches up from there and rejoins the ISR.
    c.proxy(3).set(Fault::Pass);
    c.wait_isr(3, LIMIT).await;
    wait_converged(&c, &[3], LIMIT).await;
    // Heard again: it names its leader.
    let n3 = c.node(3).clone();
    wait_until("node 3 to name its leader", LIMIT, || {
        let n3 = n3.clone();
        async move { n3.leader() == Some(1) }
    })
    .await;
    assert_eq!(
        c.node(3).applied().await.unwrap(),
        c.node(1).applied().await.unwrap()
    );
    assert_eq!(c.node(3).view().topics().len(), 40);
    let p = c
        .node(1)
        .propose(create_topic("c", 1, 3), Acks::All)
        .await
        .unwrap();
    assert!(c.node(3).status().await.unwrap().durable >= p.offset);
    c.shutdown().await;
}

/// The leader restarts: another node leads meanwhile (the restarted one
/// resigned and comes back as a follower), leadership is handed back to it,
/// and the followers' subscribers see every entry once, in order, with no
/// gap — one `LeaderChange` per epoch and every write.
#[actix::test]
async fn restarted_leader_recovers_and_followers_resume_without_gaps_or_duplicates() {
    let mut c = TestCluster::start(3, &[], fast_config()).await;
    let rec2 = record(c.node(2));
    let rec3 = record(c.node(3));
    let mut written = Vec::new();
    for i in 0..30 {
        let cmd = create_topic(&format!("t{i}"), 1, 3);
        c.node(1).propose(cmd.clone(), Acks::All).await.unwrap();
        written.push(cmd);
    }
    wait_converged(&c, &[1, 2, 3], LIMIT).await;
    let epoch_before = c.node(1).status().await.unwrap().epoch;

    c.stop_node(1).await;
    c.start_node(1).await;
    assert_eq!(
        c.node(1).role(),
        Role::Follower,
        "a restarted leader follows"
    );
    c.make_leader(1).await;
    let s = c.node(1).status().await.unwrap();
    assert!(s.epoch > epoch_before, "{} > {epoch_before}", s.epoch);

    for i in 30..60 {
        let cmd = create_topic(&format!("t{i}"), 1, 3);
        let p = c.node(1).propose(cmd.clone(), Acks::All).await.unwrap();
        assert_eq!(p.epoch, s.epoch);
        written.push(cmd);
    }
    let end = wait_converged(&c, &[1, 2, 3], LIMIT).await;
    let leader = c.node(1).applied().await.unwrap();
    assert_eq!(leader.offset, end);
    for id in [2, 3] {
        assert_eq!(c.node(id).applied().await.unwrap(), leader, "node {id}");
        let st = c.node(id).status().await.unwrap();
        assert_eq!((st.epoch, st.leader), (s.epoch, Some(1)), "node {id}");
    }
    for (id, rec) in [(2, &rec2), (3, &rec3)] {
        wait_seen(rec, end, LIMIT).await;
        let seen = rec.seen();
        let offsets: Vec<u64> = seen.iter().map(|e| e.offset).collect();
        // Subscribed once the first leader's LeaderChange was applied.
        let first = offsets[0];
        assert!(first <= 3, "{first}");
        assert_eq!(
            offsets,
            (first..=end).collect::<Vec<u64>>(),
            "node {id}: consecutive, once each"
        );
        let writes: Vec<Command> = seen
            .iter()
            // Control entries: each leader's LeaderChange, and the
            // membership entry a new leader appends to pin the voters'
            // directory ids.
            .filter(|e| {
                !matches!(
                    e.command,
                    Command::LeaderChange { .. } | Command::Membership(_)
                )
            })
            .map(|e| e.command.clone())
            .collect();
        assert_eq!(writes, written, "node {id}: every write once, in order");
        // Epochs never go back along the log.
        assert!(
            seen.windows(2).all(|w| w[0].epoch <= w[1].epoch),
            "node {id}"
        );
    }
    c.shutdown().await;
}

#[actix::test]
async fn diverged_follower_is_truncated_to_the_leaders_log() {
    use metawal::record::Record;
    use metawal::wal::{Wal, WalOptions};
    use metawal_actors::Entry;

    let mut c = TestCluster::start(3, &[], fast_config()).await;
    c.wait_isr(3, LIMIT).await;
    // On a loaded machine node 1 can lose its quorum for a moment (seen in
    // 1 of 20 back-to-back runs): the writes go to whichever node leads,
    // and node 1 leads again before the stray entries are planted.
    for i in 0..10 {
        c.try_propose_on_leader(create_topic(&format!("t{i}"), 1, 3), Acks::All, LIMIT)
            .await
            .unwrap();
    }
    c.make_leader(1).await;
    let end = wait_converged(&c, &[1, 2, 3], LIMIT).await;
    let epoch = c.node(1).status().await.unwrap().epoch;
    c.stop_node(3).await;

    // Node 3 holds entries of the current epoch that no other node has: what an
    // epoch-1 leader might have sent it alone before failing.
    {
        let (mut wal, _) = Wal::open(&c.data_dir(3).join("wal"), WalOptions::default()).unwrap();
        assert_eq!(wal.last_offset(), end);
        let stray: Vec<Record> = (1..=5)
            .map(|i| {
                Record::encode(&Entry {
                    offset: end + i,
                    epoch,
                    command: create_topic(&format!("stray{i}"), 1, 3),
                })
                .unwrap()
            })
            .collect();
        wal.append(&stray).unwrap();
        wal.sync().unwrap();
    }

    // Leadership moves to node 2 (a new epoch), which goes on without
    // node 3.
    c.node(1).transfer_leadership(2).await.unwrap();
    c.wait_isr_of(2, 2, LIMIT).await;
    assert!(c.node(2).status().await.unwrap().epoch > epoch);
    for i in 0..8 {
        c.node(2)
            .propose(create_topic(&format!("u{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }

    // Node 3 comes back with a diverged tail: the leader truncates it to the
    // end of that epoch in its own log, then streams its own.
    c.start_node(3).await;
    c.wait_isr_of(2, 3, LIMIT).await;
    let end2 = c.node(2).status().await.unwrap().log_end;
    for id in [1, 3] {
        let v = c.node(id).view();
        wait_until(&format!("node {id} to apply {end2}"), LIMIT, || {
            let ok = v.applied_offset() >= end2;
            async move { ok }
        })
        .await;
    }
    let a1 = c.node(2).applied().await.unwrap();
    let a3 = c.node(3).applied().await.unwrap();
    assert_eq!((a3.offset, a3.digest), (a1.offset, a1.digest));
    assert_eq!(a1.offset, end2);
    for i in 1..=5 {
        assert!(
            c.node(3).view().topic(&format!("stray{i}")).is_none(),
            "node 3 applied a diverged entry"
        );
    }
    assert!(c.node(3).view().topic("u7").is_some());
    c.shutdown().await;
}

#[actix::test]
async fn follower_whose_wal_write_fails_stops_and_the_cluster_goes_on() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    c.wait_isr(3, LIMIT).await;
    c.node(1)
        .propose(create_topic("before", 1, 3), Acks::All)
        .await
        .unwrap();
    c.node(3).inject_wal_failure().await;
    // The write that node 3 fails to store still succeeds: node 3 leaves
    // the ISR when its session ends.
    c.node(1)
        .propose(create_topic("during", 1, 3), Acks::All)
        .await
        .unwrap();
    let n3 = c.node(3).clone();
    wait_until("node 3 to fail-stop", LIMIT, || {
        let n3 = n3.clone();
        async move { n3.role() == Role::Failed }
    })
    .await;
    c.wait_isr(2, LIMIT).await;
    for i in 0..5 {
        c.node(1)
            .propose(create_topic(&format!("after{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }
    let s = c.node(1).status().await.unwrap();
    assert_eq!(s.isr_len, 2, "a failed follower never rejoins the ISR");
    assert!(
        c.node(3).view().topic("after4").is_none(),
        "a failed follower applies nothing more"
    );
    c.shutdown().await;
}

/// Two writers persist epochs through the disk thread, the slower one with
/// the lower epoch (what a leader taking epoch 3 racing a handshake of
/// epoch 5 could do): the lower one is refused and the meta keeps epoch 5.
#[actix::test]
async fn a_lower_epoch_never_overwrites_a_higher_one_on_disk() {
    use metawal::engine::epoch::EpochRefused;
    use metawal::storage::NodeMeta;
    use metawal::wal::WalOptions;
    use metawal_actors::disk::DiskHandle;

    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = DiskHandle::start(1, dir.path().to_path_buf(), WalOptions::default())
        .await
        .unwrap();
    let meta = |epoch, leader| NodeMeta {
        node_id: 1,
        cluster_id: "c".into(),
        directory_id: metawal::membership::DirectoryId::UNKNOWN,
        current_epoch: epoch,
        leader: Some(leader),
        voted_for: None,
        commit_hint: 0,
    };
    let (m5, m3, m5b) = (meta(5, 2), meta(3, 1), meta(5, 3));
    let first = disk.run(move |d| d.store_meta_fenced(&m5)).await.unwrap();
    let second = disk.run(move |d| d.store_meta_fenced(&m3)).await.unwrap();
    let third = disk.run(move |d| d.store_meta_fenced(&m5b)).await.unwrap();
    assert_eq!(first.unwrap(), Ok(()));
    assert!(matches!(
        second.unwrap(),
        Err(EpochRefused::Stale { current: 5, .. })
    ));
    assert!(matches!(
        third.unwrap(),
        Err(EpochRefused::Conflict {
            epoch: 5,
            holder: 2
        })
    ));
    let on_disk = NodeMeta::load(dir.path()).unwrap().unwrap();
    assert_eq!((on_disk.current_epoch, on_disk.leader), (5, Some(2)));
    disk.stop().await;
}

/// A follower far behind a leader whose tail cache holds almost nothing
/// catches up entirely through WAL reads (the leader's disk reader thread),
/// across many segments, while `acks=all` writes keep committing with the
/// rest of the ISR; it ends with exactly the leader's state.
#[actix::test]
async fn lagging_follower_catches_up_through_wal_reads_while_writes_commit() {
    let mut cfg = fast_config();
    cfg.tail_cache_bytes = 1;
    cfg.segment_bytes = 4096;
    cfg.batch_bytes = 2048;
    let mut c = TestCluster::start(3, &[], cfg).await;
    c.wait_isr(3, LIMIT).await;
    c.stop_node(3).await;
    c.wait_isr(2, LIMIT).await;
    for i in 0..300 {
        c.node(1)
            .propose(create_topic(&format!("lag{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }
    c.start_node(3).await;
    // Writes go on while node 3 reads its way back.
    for i in 0..50 {
        c.node(1)
            .propose(create_topic(&format!("more{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }
    c.wait_isr(3, LIMIT).await;
    wait_converged(&c, &[1, 2, 3], LIMIT).await;
    assert_eq!(
        c.node(3).applied().await.unwrap(),
        c.node(1).applied().await.unwrap()
    );
    assert_eq!(c.node(3).view().topics().len(), 350);
    // Through the WAL, not a snapshot.
    let f3 = c
        .node(1)
        .status()
        .await
        .unwrap()
        .follower(3)
        .unwrap()
        .clone();
    assert_eq!(f3.snapshots_sent, 0);
    c.shutdown().await;
}

/// On the leader the Replicator is the only writer of the log progress its
/// actors read (links, store). The listener must not overwrite it with its
/// own follower position: it did on every accepted connection and every
/// housekeeping tick, which sent the commit point back to 0, made the store
/// refuse writes as "overloaded" under load, and fed the links a log end of
/// 0.
#[actix::test]
async fn the_leaders_log_progress_never_goes_back() {
    let cfg = fast_config();
    let heartbeat = cfg.heartbeat_interval;
    let c = TestCluster::start(3, &[], cfg).await;
    c.wait_isr(3, LIMIT).await;
    for i in 0..10 {
        c.node(1)
            .propose(create_topic(&format!("t{i}"), 1, 3), Acks::All)
            .await
            .expect("acks=all");
    }
    let leader = c.node(1);
    let committed = leader.log_progress().commit;
    assert!(committed >= 11, "commit {committed} after 11 entries");
    // An inbound connection to the leader (a follower starting) and a few
    // of the listener's housekeeping ticks: the progress stays where the
    // Replicator put it.
    let _probe = std::net::TcpStream::connect(c.addrs[&1]).expect("connect to the leader");
    let deadline = Instant::now() + heartbeat * 5;
    while Instant::now() < deadline {
        let p = leader.log_progress();
        assert!(
            p.commit >= committed && p.log_end >= committed,
            "the leader's progress went back to {p:?} (commit was {committed})"
        );
        actix_rt::time::sleep(heartbeat / 4).await;
    }
    c.shutdown().await;
}
