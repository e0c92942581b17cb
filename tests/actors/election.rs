//! Actor-level tests of automatic leader election over real TCP: failover
//! after a leader crash, check-quorum when the leader is cut off, a
//! partition healing into one digest, a 5-node cluster losing two and then
//! three nodes, leader transfer there and back under load, pre-vote
//! keeping a node with a stale epoch from disrupting a healthy leader, the
//! resignation of a leader that shuts down cleanly, and the replacement of
//! a leader whose disk fails.
//!
//! Timeouts are the fast test ones (`fast_config`: T = 300 ms, heartbeat
//! 20 ms); every wait polls a condition with a deadline.

use metawal_testkit as common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::Fault;
use common::{create_topic, fast_config, record, wait_until, TestCluster};
use metawal::state::ValidationError;
use metawal_actors::{Acks, Command, Node, NodeId, ProposeError, ReplicationConfig, Role};

const LIMIT: Duration = Duration::from_secs(20);

/// Wait until every node in `ids` has applied `offset`; then check that
/// they all hold the same state (offset and digest). Returns the offset.
async fn converged(c: &TestCluster, ids: &[NodeId], offset: u64) -> u64 {
    for &id in ids {
        let v = c.node(id).view();
        wait_until(&format!("node {id} to apply {offset}"), LIMIT, || {
            let ok = v.applied_offset() >= offset;
            async move { ok }
        })
        .await;
    }
    let first = c.node(ids[0]).applied().await.unwrap();
    for &id in &ids[1..] {
        let a = c.node(id).applied().await.unwrap();
        assert_eq!(
            (a.offset, a.digest),
            (first.offset, first.digest),
            "node {id}"
        );
    }
    first.offset
}

/// The leader crashes (no resignation): the two others elect a new leader
/// within 2 x (2T), `acks=all` writes go on with it, and the old leader
/// comes back as a follower and converges.
#[actix::test]
async fn a_crashed_leader_is_replaced_within_two_timeouts_and_rejoins_as_a_follower() {
    let cfg = fast_config();
    let t = cfg.election_timeout;
    let mut c = TestCluster::start(3, &[], cfg).await;
    for i in 0..10 {
        c.node(1)
            .propose(create_topic(&format!("t{i}"), 1, 3), Acks::All)
            .await
            .unwrap();
    }
    let epoch = c.node(1).status().await.unwrap().epoch;
    let mut stood_before = BTreeMap::new();
    for id in [2, 3] {
        stood_before.insert(id, c.node(id).status().await.unwrap().elections);
    }

    c.crash_node(1).await;
    let crashed = Instant::now();
    let leader = c.wait_leader(LIMIT).await;
    let elected = crashed.elapsed();
    assert!(leader == 2 || leader == 3);
    assert!(
        elected < 4 * t,
        "a new leader after {elected:?}, over 2 x (2T)"
    );
    let s = c.node(leader).status().await.unwrap();
    assert!(s.epoch > epoch, "a new epoch: {} > {epoch}", s.epoch);
    assert!(s.elections > stood_before[&leader], "it stood for election");
    let other = 5 - leader;
    let o = c.node(other).status().await.unwrap();
    assert_eq!(
        (o.role, o.leader, o.epoch),
        (Role::Follower, Some(leader), s.epoch)
    );
    assert_eq!(
        o.voted_for,
        Some(leader),
        "the follower's vote is on record"
    );

    for i in 0..20 {
        c.node(leader)
            .propose(create_topic(&format!("u{i}"), 1, 3), Acks::All)
            .await
            .expect("acks=all goes on with two of three");
    }
    match c
        .node(other)
        .propose(create_topic("x", 1, 3), Acks::All)
        .await
    {
        Err(ProposeError::NotLeader { leader: l, .. }) => assert_eq!(l, Some(leader)),
        r => panic!("the follower should name the new leader, got {r:?}"),
    }

    c.start_node(1).await;
    assert_eq!(c.node(1).role(), Role::Follower);
    c.wait_isr_of(leader, 3, LIMIT).await;
    let end = c.node(leader).status().await.unwrap().log_end;
    converged(&c, &[1, 2, 3], end).await;
    let s1 = c.node(1).status().await.unwrap();
    assert_eq!(
        (s1.role, s1.leader, s1.epoch),
        (Role::Follower, Some(leader), s.epoch)
    );
    assert!(c.node(1).view().topic("u19").is_some());
    c.shutdown().await;
}

/// Node 1 reaches the others, and they reach it, only through the proxies
/// in front of each node; nodes 2 and 3 reach each other directly. Cutting
/// every proxy isolates node 1 alone.
async fn isolatable_cluster(cfg: ReplicationConfig) -> TestCluster {
    let mut c = TestCluster::new(3, &[1, 2, 3], cfg).await;
    for id in 1..=3 {
        restart_isolatable(&mut c, id).await;
    }
    c.make_leader(1).await;
    c
}

async fn restart_isolatable(c: &mut TestCluster, id: NodeId) {
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .filter(|&p| p != id)
        .map(|p| {
            let addr = if id == 1 || p == 1 {
                c.proxy(p).addr()
            } else {
                c.addrs[&p]
            };
            (p, addr)
        })
        .collect();
    c.start_node_with(id, move |cfg| cfg.peers = peers).await;
}

/// The leader cut off from both followers steps down by itself (it has not
/// heard a majority within T): proposals to it fail with `NotLeader` within
/// about the election timeout instead of hanging. The majority elects a new
/// leader; when the partition heals, the old leader follows it and all
/// three converge to one digest.
#[actix::test]
async fn a_cut_off_leader_steps_down_the_majority_elects_and_all_converge_after_the_heal() {
    let cfg = fast_config();
    let t = cfg.election_timeout;
    let c = isolatable_cluster(cfg).await;
    c.node(1)
        .propose(create_topic("before", 1, 3), Acks::All)
        .await
        .unwrap();
    let epoch = c.node(1).status().await.unwrap().epoch;

    for id in 1..=3 {
        c.proxy(id).set(Fault::Cut);
    }
    let cut = Instant::now();
    let n1 = c.node(1).clone();
    wait_until("node 1 to step down", LIMIT, || {
        let n1 = n1.clone();
        async move { n1.role() != Role::Leader }
    })
    .await;
    let stepped_down = cut.elapsed();
    assert!(
        stepped_down < 3 * t,
        "stepped down after {stepped_down:?} (T = {t:?})"
    );
    for acks in [Acks::None, Acks::Leader, Acks::All] {
        match c.node(1).propose(create_topic("during", 1, 3), acks).await {
            Err(ProposeError::NotLeader { node: 1, .. }) => {}
            r => panic!("the cut-off node must refuse at once, got {r:?}"),
        }
    }

    // The majority side elects a leader of a higher epoch and writes.
    let leader = std::cell::Cell::new(None);
    wait_until("nodes 2 and 3 to agree on a new leader", LIMIT, || {
        let (n2, n3) = (c.node(2).clone(), c.node(3).clone());
        let leader = &leader;
        async move {
            let (Ok(s2), Ok(s3)) = (n2.status().await, n3.status().await) else {
                return false;
            };
            let found = [&s2, &s3]
                .into_iter()
                .find(|s| s.role == Role::Leader)
                .map(|l| (l.node_id, l.epoch));
            match found {
                Some((id, epoch)) if s2.leader == Some(id) && s3.leader == Some(id) => {
                    leader.set(Some((id, epoch)));
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    let (new, new_epoch) = leader.get().expect("a leader");
    assert!(new_epoch > epoch);
    for i in 0..10 {
        c.node(new)
            .propose(create_topic(&format!("after{i}"), 1, 3), Acks::All)
            .await
            .expect("the majority commits");
    }
    assert!(c.node(1).view().topic("after0").is_none());

    for id in 1..=3 {
        c.proxy(id).set(Fault::Pass);
    }
    c.wait_isr_of(new, 3, LIMIT).await;
    let end = c.node(new).status().await.unwrap().log_end;
    converged(&c, &[1, 2, 3], end).await;
    let s1 = c.node(1).status().await.unwrap();
    assert_eq!((s1.role, s1.leader), (Role::Follower, Some(new)));
    assert!(c.node(1).view().topic("after9").is_some());
    assert!(c.node(1).view().topic("during").is_none());
    c.shutdown().await;
}

/// Five nodes, `min_insync_replicas` 2: with two stopped, `acks=all` still
/// commits; with three stopped there is no majority, and a proposal gets a
/// clear error instead of hanging, with nothing committed.
#[actix::test]
async fn five_nodes_commit_with_two_down_and_refuse_with_three_down() {
    let cfg = fast_config();
    assert_eq!(cfg.min_insync_replicas, 2);
    let mut c = TestCluster::start(5, &[], cfg).await;
    c.stop_node(4).await;
    c.stop_node(5).await;
    for i in 0..10 {
        c.node(1)
            .propose(create_topic(&format!("t{i}"), 1, 3), Acks::All)
            .await
            .expect("acks=all with 3 of 5");
    }
    let end = c.node(1).status().await.unwrap().log_end;
    converged(&c, &[1, 2, 3], end).await;

    c.stop_node(3).await;
    let mut refusals = Vec::new();
    for id in [1, 2] {
        // A liveness bound: the proposal must be refused, not hang.
        let r = tokio::time::timeout(
            LIMIT,
            c.node(id)
                .propose(create_topic(&format!("lost{id}"), 1, 3), Acks::All),
        )
        .await
        .unwrap_or_else(|_| panic!("node {id}: a proposal without a quorum hung for {LIMIT:?}"));
        match r {
            Err(
                ProposeError::NotLeader { .. }
                | ProposeError::LeadershipLost
                | ProposeError::NotEnoughReplicas { .. },
            ) => refusals.push(r.unwrap_err().to_string()),
            other => panic!("node {id}: two of five must not commit, got {other:?}"),
        }
    }
    for msg in &refusals {
        assert!(
            msg.contains("not the metadata leader")
                || msg.contains("stopped leading")
                || msg.contains("in-sync"),
            "{msg}"
        );
    }
    // Nothing past `end` is committed or applied on either survivor.
    for id in [1, 2] {
        assert_eq!(c.node(id).view().applied_offset(), end, "node {id}");
        assert!(c.node(id).view().topic("lost1").is_none());
    }
    c.shutdown().await;
}

/// What one proposer task saw.
#[derive(Default)]
struct Outcomes {
    /// Topics acknowledged (`acks=all`), by this run.
    acked: BTreeSet<String>,
}

/// Propose `CreateTopic name` with `acks=all` to whichever node leads,
/// following `NotLeader` hints and retrying what may not have committed,
/// until it is acknowledged (or found already created by an earlier try).
async fn write_through_failover(nodes: &[Node], name: String, deadline: Instant) -> bool {
    let mut target = 0usize;
    while Instant::now() < deadline {
        let node = &nodes[target % nodes.len()];
        match node.propose(create_topic(&name, 1, 3), Acks::All).await {
            Ok(_) => return true,
            // An earlier try was committed after all.
            Err(ProposeError::Invalid(ValidationError::TopicExists { .. })) => return true,
            Err(ProposeError::NotLeader {
                leader: Some(l), ..
            }) => {
                target = nodes.iter().position(|n| n.id() == l).unwrap_or(target + 1);
            }
            Err(_) => {
                target += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    false
}

/// Leadership moves from node 1 to node 2 and back while proposers write
/// through it: every acknowledged write is in the log exactly once, on every
/// node, and no write is applied twice.
#[actix::test]
async fn transfer_there_and_back_under_load_loses_nothing_and_applies_nothing_twice() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    let rec3 = record(c.node(3));
    let nodes: Vec<Node> = (1..=3).map(|id| c.node(id).clone()).collect();
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let deadline = Instant::now() + LIMIT;
    let mut tasks = Vec::new();
    for p in 0..4 {
        let (nodes, outcomes) = (nodes.clone(), outcomes.clone());
        tasks.push(actix::spawn(async move {
            for i in 0..150 {
                let name = format!("p{p}-{i}");
                if write_through_failover(&nodes, name.clone(), deadline).await {
                    outcomes.lock().unwrap().acked.insert(name);
                }
            }
        }));
    }
    let epoch = c.node(1).status().await.unwrap().epoch;
    // Let the load start, then hand over and back.
    let n1 = c.node(1).clone();
    wait_until("some writes", LIMIT, || {
        let v = n1.view();
        async move { v.topics().len() >= 20 }
    })
    .await;
    c.node(1).transfer_leadership(2).await.expect("1 -> 2");
    assert_eq!(c.node(2).role(), Role::Leader);
    let e2 = c.node(2).status().await.unwrap().epoch;
    assert!(e2 > epoch);
    let n2 = c.node(2).clone();
    wait_until("more writes on node 2", LIMIT, || {
        let v = n2.view();
        async move { v.topics().len() >= 150 }
    })
    .await;
    c.node(2).transfer_leadership(1).await.expect("2 -> 1");
    assert_eq!(c.node(1).role(), Role::Leader);
    assert!(c.node(1).status().await.unwrap().epoch > e2);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut outcomes.lock().unwrap().acked);
    assert_eq!(acked.len(), 600, "every write acknowledged in the end");

    let end = c.node(1).status().await.unwrap().log_end;
    converged(&c, &[1, 2, 3], end).await;
    for id in 1..=3 {
        let topics: BTreeSet<String> = c.node(id).view().topics().into_iter().collect();
        assert_eq!(
            topics, acked,
            "node {id}: every acknowledged write, nothing else"
        );
    }
    // Applied once each, in one order: the subscriber saw every offset once
    // and every CreateTopic once.
    common::wait_seen(&rec3, end, LIMIT).await;
    let seen = rec3.seen();
    let offsets: Vec<u64> = seen.iter().map(|s| s.offset).collect();
    assert_eq!(offsets, (offsets[0]..=end).collect::<Vec<u64>>());
    let mut created = BTreeSet::new();
    for s in &seen {
        if let Command::CreateTopic { name, .. } = &s.command {
            assert!(created.insert(name.clone()), "{name} applied twice");
        }
    }
    assert_eq!(created, acked);
    c.shutdown().await;
}

/// A node that restarts with a stale epoch and cannot hear the leader (the
/// leader's link to it is cut) stands for election again and again, but
/// only with pre-votes, which the others refuse while they hear their
/// leader: the leader keeps its epoch, and once the link heals the node
/// rejoins at once.
#[actix::test]
async fn a_restarted_node_with_a_stale_epoch_never_disrupts_a_healthy_leader() {
    let cfg = fast_config();
    let t = cfg.election_timeout;
    let mut c = TestCluster::start(3, &[3], cfg).await;
    c.stop_node(3).await;
    // Two hand-overs while node 3 is down: its epoch is now two behind.
    c.node(1).transfer_leadership(2).await.unwrap();
    c.node(2).transfer_leadership(1).await.unwrap();
    let before = c.node(1).status().await.unwrap();

    c.proxy(3).set(Fault::Cut);
    c.start_node(3).await;
    let s3 = c.node(3).status().await.unwrap();
    assert!(s3.epoch < before.epoch, "{} < {}", s3.epoch, before.epoch);
    // Node 3 hears no leader: it tries, round after round.
    let n3 = c.node(3).clone();
    wait_until("node 3 to try three pre-vote rounds", 10 * t, || {
        let n3 = n3.clone();
        async move { n3.status().await.is_ok_and(|s| s.pre_votes >= 3) }
    })
    .await;
    let s3 = n3.status().await.unwrap();
    assert_eq!(
        s3.elections, 0,
        "pre-votes only: node 3 never stood in an epoch"
    );
    assert!(
        s3.epoch < before.epoch,
        "node 3's epoch did not climb: {}",
        s3.epoch
    );
    let now = c.node(1).status().await.unwrap();
    assert_eq!(
        (now.role, now.epoch),
        (Role::Leader, before.epoch),
        "the leader was not disturbed"
    );
    assert_eq!(c.node(2).status().await.unwrap().epoch, before.epoch);

    c.proxy(3).set(Fault::Pass);
    c.wait_isr_of(1, 3, LIMIT).await;
    let s3 = n3.status().await.unwrap();
    assert_eq!((s3.epoch, s3.leader), (before.epoch, Some(1)));
    assert_eq!(c.node(1).status().await.unwrap().epoch, before.epoch);
    c.shutdown().await;
}

/// A leader that shuts down cleanly resigns: the others elect within a
/// fraction of the election timeout instead of waiting it out.
#[actix::test]
async fn a_leader_that_shuts_down_cleanly_resigns_and_is_replaced_before_the_timeout() {
    let cfg = fast_config();
    let t = cfg.election_timeout;
    let mut c = TestCluster::start(3, &[], cfg).await;
    c.node(1)
        .propose(create_topic("before", 1, 3), Acks::All)
        .await
        .unwrap();
    c.stop_node(1).await;
    let stopped = Instant::now();
    let leader = c.wait_leader(LIMIT).await;
    let took = stopped.elapsed();
    assert!(
        took < t,
        "a new leader after {took:?}: the followers waited out T = {t:?}"
    );
    c.node(leader)
        .propose(create_topic("after", 1, 3), Acks::All)
        .await
        .expect("acks=all on the new leader");
    c.shutdown().await;
}

/// A leader whose disk fails fail-stops, and the cluster replaces it by
/// itself: its links stop, so the followers stop hearing it and elect one
/// of them; the failed node never stands again until it is restarted.
#[actix::test]
async fn a_leader_whose_disk_fails_is_replaced_by_an_election() {
    let cfg = fast_config();
    let mut c = TestCluster::start(3, &[], cfg).await;
    c.node(1)
        .propose(create_topic("before", 1, 3), Acks::All)
        .await
        .unwrap();
    c.node(1).inject_wal_failure().await;
    let r = c
        .node(1)
        .propose(create_topic("lost", 1, 3), Acks::All)
        .await;
    // The entry was handed to the leader before its disk failed: it may
    // have reached a follower, so the error must not say "not appended"
    // (a caller would retry and write it twice).
    let e = r.expect_err("the write fails with the disk");
    assert!(
        matches!(
            e,
            metawal_actors::ProposeError::StorageFailedAfterAppend { .. }
        ) && e.appended() == metawal_actors::Appended::Maybe,
        "{e:?}"
    );
    // The node is marked failed before any proposer hears of the failure.
    assert_eq!(c.node(1).role(), Role::Failed);
    let tried = c.node(1).status().await.unwrap().pre_votes;
    let leader = {
        let nodes = [c.node(2).clone(), c.node(3).clone()];
        let found = std::cell::Cell::new(None);
        wait_until("nodes 2 and 3 to elect one of them", LIMIT, || {
            let nodes = nodes.clone();
            let found = &found;
            async move {
                for n in &nodes {
                    if n.role() == Role::Leader {
                        found.set(Some(n.id()));
                        return true;
                    }
                }
                false
            }
        })
        .await;
        found.get().expect("a leader")
    };
    c.wait_isr_of(leader, 2, LIMIT).await;
    // On a loaded machine the new leader can lose its quorum and another
    // election follow: the cluster writes again on whichever node leads.
    c.try_propose_on_leader(create_topic("after", 1, 3), Acks::All, LIMIT)
        .await
        .expect("the cluster writes again");
    let s1 = c.node(1).status().await.unwrap();
    assert_eq!(
        (s1.role, s1.pre_votes),
        (Role::Failed, tried),
        "the failed node never stood"
    );
    // Restarted, it rejoins as a follower.
    c.stop_node(1).await;
    c.start_node(1).await;
    let leader = c.wait_leader(LIMIT).await;
    c.wait_isr_of(leader, 3, LIMIT).await;
    let end = c.node(leader).status().await.unwrap().log_end;
    converged(&c, &[1, 2, 3], end).await;
    c.shutdown().await;
}

/// The next leadership change of node `id`'s `changes`, within `LIMIT`;
/// every snapshot is consistent: a leader names itself, a follower never
/// does.
async fn next_change(
    id: NodeId,
    changes: &mut metawal_actors::LeadershipChanges,
) -> metawal_actors::Leadership {
    let l = match tokio::time::timeout(LIMIT, changes.next()).await {
        Ok(Ok(l)) => l,
        other => panic!("no leadership change within {LIMIT:?}: {other:?}"),
    };
    if l.is_leader() {
        assert_eq!(l.leader, Some(id), "node {id} leads: {l:?}");
    } else {
        assert_ne!(l.leader, Some(id), "node {id} follows: {l:?}");
    }
    l
}

/// A broker is told, not left to poll: across a transfer 1 -> 2 and back,
/// each node's leadership stream shows every change in order (numbered
/// without gaps), and each snapshot pairs an epoch with that epoch's
/// leader.
#[actix::test]
async fn leadership_changes_are_streamed_in_order_across_transfers() {
    let c = TestCluster::start(3, &[], fast_config()).await;
    let start1 = c.node(1).leadership();
    assert!(start1.is_leader(), "{start1:?}");
    assert_eq!(start1.leader, Some(1));
    let mut s1 = c.node(1).leadership_changes();
    let mut s2 = c.node(2).leadership_changes();
    let start2 = c.node(2).leadership();

    c.node(1).transfer_leadership(2).await.expect("1 -> 2");
    // Node 1 stops leading, then follows node 2 in a later epoch; node 2
    // becomes the leader of that epoch. Whatever the interleaving of
    // role and epoch writes, the snapshots come in order, numbered
    // without gaps, and end where the transfer ended.
    let mut seq1 = start1.seq;
    let mut last1 = start1;
    while !(last1.role == Role::Follower && last1.leader == Some(2)) {
        last1 = next_change(1, &mut s1).await;
        assert_eq!(last1.seq, seq1 + 1, "node 1 changes numbered in order");
        seq1 = last1.seq;
        assert!(last1.epoch >= start1.epoch);
    }
    let mut seq2 = start2.seq;
    let mut last2 = start2;
    while !last2.is_leader() {
        last2 = next_change(2, &mut s2).await;
        assert_eq!(last2.seq, seq2 + 1, "node 2 changes numbered in order");
        seq2 = last2.seq;
    }
    assert_eq!(last2.leader, Some(2), "{last2:?}");
    assert!(last2.epoch > start1.epoch, "{last2:?} after {start1:?}");
    assert_eq!(c.node(2).leadership(), last2);

    // And back: node 2's stream shows it losing the leadership.
    c.node(2).transfer_leadership(1).await.expect("2 -> 1");
    while last2.is_leader() {
        let next = next_change(2, &mut s2).await;
        assert_eq!(next.seq, last2.seq + 1);
        assert!(next.epoch >= last2.epoch);
        last2 = next;
    }
    c.shutdown().await;
}
