//! Membership changes on running nodes (issue 20): a node that joins as a
//! learner, is promoted, counts for commit and elections; a removed voter
//! no longer counts; every refusal is typed; a restarted node takes its
//! voters from its log, not its flags.

use metawal_testkit as common;

use std::time::Duration;

use common::{create_topic, fast_config, reserve, start_node, wait_until, TestCluster};
use metawal::membership::{ChangeRefused, DirectoryId, Member};
use metawal_actors::{Acks, MemberError, Node, NodeConfig, Role};

const LIMIT: Duration = Duration::from_secs(20);

/// The config of a node `id` that joins `c` (its voters as peers).
fn joiner(c: &TestCluster, id: u64, port: &common::ReservedPort) -> NodeConfig {
    let mut cfg = NodeConfig::new(
        id,
        common::CLUSTER,
        common::SECRET.to_vec(),
        c.dir.path().join(format!("node-{id}")),
        port.addr(),
    );
    cfg.listener = Some(port.bound().expect("listen on the reserved port"));
    cfg.peers = c.addrs.clone();
    cfg.join = true;
    cfg.insecure_plaintext = true;
    cfg.replication = fast_config();
    cfg
}

fn member(id: u64, port: &common::ReservedPort) -> Member {
    Member {
        node_id: id,
        directory_id: DirectoryId::UNKNOWN,
        replication_addr: port.addr().to_string(),
        http_addr: String::new(),
        kafka_addr: String::new(),
    }
}

/// Three nodes, node 1 leading.
async fn three() -> TestCluster {
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    for id in [1, 2, 3] {
        c.start_node(id).await;
    }
    c.make_leader(1).await;
    c
}

fn voter_ids(node: &Node) -> Vec<u64> {
    node.members_in_force().voter_ids().collect()
}

async fn wait_applied(node: &Node, offset: u64) {
    let view = node.view();
    wait_until(
        &format!("node {} to apply offset {offset}", node.id()),
        LIMIT,
        || {
            let ok = view.applied_offset() >= offset;
            async move { ok }
        },
    )
    .await;
}

#[actix::test]
async fn a_joined_learner_is_promoted_and_a_removed_voter_no_longer_counts() {
    let mut c = three().await;
    let leader = c.node(1).clone();
    leader
        .propose(create_topic("before", 1, 1), Acks::All)
        .await
        .unwrap();

    // Node 4 starts empty, joining: it is nobody's voter, itself included.
    let port4 = reserve();
    let (node4, arb4) = start_node(joiner(&c, 4, &port4)).await.unwrap();
    assert_eq!(voter_ids(&node4), vec![1, 2, 3]);

    // Added as a learner: replicated to, not a voter.
    let added = leader.add_learner(member(4, &port4)).await.unwrap();
    wait_applied(&node4, added).await;
    let m = node4.members_in_force();
    assert!(m.learners().any(|l| l.node_id == 4), "4 is a learner on 4");
    assert_eq!(voter_ids(&node4), vec![1, 2, 3]);
    assert_eq!(
        node4.status().await.unwrap().elections,
        0,
        "a learner stood"
    );

    // Promoted once caught up: the leader counts it from then on.
    let promoted = leader.promote(4, LIMIT).await.unwrap();
    assert!(promoted > added);
    assert_eq!(voter_ids(&leader), vec![1, 2, 3, 4]);
    wait_applied(&node4, promoted).await;
    assert_eq!(voter_ids(&node4), vec![1, 2, 3, 4]);

    // Node 3 removed: voters {1, 2, 4}.
    let removed = leader.remove(3).await.unwrap();
    assert_eq!(voter_ids(&leader), vec![1, 2, 4]);
    let members = leader.members().await;
    assert_eq!(members.pending_offset, None, "the removal is committed");
    assert!(members.voters.iter().all(|v| v.caught_up.is_some()));
    wait_applied(&node4, removed).await;

    // With 2 and 3 down, 1 and 4 are a majority of {1, 2, 4} (not of
    // {1, 2, 3, 4}, nor of {1, 2, 3}): a write commits only if the leader
    // counts 4 and no longer counts 3.
    c.crash_node(3).await;
    c.crash_node(2).await;
    let p = leader
        .propose(create_topic("after", 1, 1), Acks::Leader)
        .await
        .unwrap();
    wait_applied(&leader, p.offset).await;
    wait_applied(&node4, p.offset).await;

    // Node 2 restarts with its old flags (peers 1 and 3): its log says the
    // voters are {1, 2, 4}. Then the leader goes: 2 and 4 elect one.
    c.start_node(2).await;
    wait_until("node 2 to take its voters from its log", LIMIT, || {
        let ok = voter_ids(c.node(2)) == vec![1, 2, 4];
        async move { ok }
    })
    .await;
    wait_applied(c.node(2), p.offset).await;
    c.crash_node(1).await;
    let n2 = c.node(2).clone();
    // Whichever of them leads takes a write (asked until one does: a
    // leader seen a moment ago may have lost an election since).
    wait_until("node 2 or node 4 to lead and take a write", LIMIT, || {
        let (n2, n4) = (n2.clone(), node4.clone());
        async move {
            for n in [n2, n4] {
                if n.role() != Role::Leader {
                    continue;
                }
                match n.propose(create_topic("elected", 1, 1), Acks::Leader).await {
                    // A retry of a write that was appended before a
                    // leadership change finds it there.
                    Ok(_) | Err(metawal_actors::ProposeError::Invalid(_)) => return true,
                    Err(_) => {}
                }
            }
            false
        }
    })
    .await;

    node4.shutdown().await;
    arb4.stop();
    c.shutdown().await;
}

#[actix::test]
async fn every_refused_change_says_why_and_changes_nothing() {
    let c = three().await;
    let leader = c.node(1).clone();
    let port = reserve();
    let before = leader.members_in_force();

    let refused = |r: Result<u64, MemberError>| match r {
        Err(MemberError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let why = refused(leader.promote(2, Duration::ZERO).await);
    assert!(
        matches!(why, ChangeRefused::AlreadyVoter { node_id: 2 }),
        "{why:?}"
    );
    assert!(matches!(
        refused(leader.remove(1).await),
        ChangeRefused::RemoveLeader { node_id: 1 }
    ));
    assert!(matches!(
        refused(leader.remove(9).await),
        ChangeRefused::UnknownNode { node_id: 9 }
    ));
    assert!(matches!(
        refused(leader.add_learner(member(2, &port)).await),
        ChangeRefused::AlreadyMember { node_id: 2, .. }
    ));
    assert!(matches!(
        refused(c.node(2).remove(3).await),
        ChangeRefused::NotLeader { leader: Some(1) }
    ));
    let mut bad = member(5, &port);
    bad.replication_addr = "not-an-address".into();
    assert!(matches!(
        leader.add_learner(bad).await,
        Err(MemberError::BadAddress { .. })
    ));
    // A learner that never started is never caught up: the promotion
    // waits its bound, then says so.
    leader.add_learner(member(5, &port)).await.unwrap();
    assert!(matches!(
        refused(leader.promote(5, Duration::from_millis(200)).await),
        ChangeRefused::NotCaughtUp { node_id: 5, .. }
    ));
    // Only the learner was added.
    let after = leader.members_in_force();
    assert_eq!(
        after.voter_ids().collect::<Vec<_>>(),
        before.voter_ids().collect::<Vec<_>>()
    );
    assert_eq!(after.learners().map(|l| l.node_id).collect::<Vec<_>>(), [5]);
    // And removed again.
    leader.remove(5).await.unwrap();
    assert_eq!(leader.members_in_force().learners().count(), 0);
    c.shutdown().await;
}

#[actix::test]
async fn a_wiped_disk_under_a_members_id_is_refused_until_removed_and_added_anew() {
    let c = three().await;
    let leader = c.node(1).clone();
    let port4 = reserve();
    let (node4, arb4) = start_node(joiner(&c, 4, &port4)).await.unwrap();
    let first_dir = node4.directory_id();
    let added = leader
        .add_learner(Member {
            directory_id: first_dir,
            ..member(4, &port4)
        })
        .await
        .unwrap();
    wait_applied(&node4, added).await;
    assert_ne!(node4.role(), Role::Failed);

    // Its disk is wiped; it comes back under the same id, empty.
    node4.shutdown().await;
    arb4.stop();
    std::fs::remove_dir_all(c.dir.path().join("node-4")).unwrap();
    let (node4, arb4) = start_node(joiner(&c, 4, &port4)).await.unwrap();
    assert_ne!(node4.directory_id(), first_dir, "a new directory, a new id");
    // The leader's log names node 4 with the old directory: the new one
    // refuses to be that member as soon as it learns it.
    let n4 = node4.clone();
    wait_until(
        "the wiped node 4 to refuse its old membership",
        LIMIT,
        || {
            let failed = n4.role() == Role::Failed;
            async move { failed }
        },
    )
    .await;
    // Removed, and added again under a new id with its new directory.
    leader.remove(4).await.unwrap();
    node4.shutdown().await;
    arb4.stop();
    std::fs::remove_dir_all(c.dir.path().join("node-4")).unwrap();
    let port5 = reserve();
    let (node5, arb5) = start_node(joiner(&c, 5, &port5)).await.unwrap();
    let again = leader
        .add_learner(Member {
            directory_id: node5.directory_id(),
            ..member(5, &port5)
        })
        .await
        .unwrap();
    wait_applied(&node5, again).await;
    leader.promote(5, LIMIT).await.unwrap();
    assert_eq!(voter_ids(&leader), vec![1, 2, 3, 5]);
    assert_ne!(node5.role(), Role::Failed);
    node5.shutdown().await;
    arb5.stop();
    c.shutdown().await;
}

/// A voter's wiped disk cannot help elect a leader: a new leader pins every
/// voter's directory (proved in its handshake) in the membership by itself,
/// a grant carries the voter's directory, and a candidate does not count a
/// grant from another directory than the one the membership names.
#[actix::test]
async fn a_wiped_voters_vote_does_not_count() {
    let mut c = TestCluster::new(3, &[], fast_config()).await;
    for id in [1, 2, 3] {
        c.start_node_with(id, |cfg| cfg.pin_directories = true)
            .await;
    }
    c.make_leader(1).await;
    let leader = c.node(1).clone();
    // Bootstrapped from flags: only each node's own directory was known.
    let dirs: Vec<(u64, DirectoryId)> =
        [1, 2, 3].map(|id| (id, c.node(id).directory_id())).to_vec();
    let l = leader.clone();
    wait_until("the leader to pin the voters' directories", LIMIT, || {
        let pinned: Vec<(u64, DirectoryId)> = l
            .members_in_force()
            .voters()
            .map(|v| (v.node_id, v.directory_id))
            .collect();
        let ok = pinned == dirs;
        async move { ok }
    })
    .await;
    let committed = leader
        .propose(create_topic("before-the-wipe", 1, 1), Acks::All)
        .await
        .unwrap();
    wait_applied(c.node(3), committed.offset).await;

    // Node 3's disk is wiped and it comes back empty; node 1 is down.
    c.stop_node(3).await;
    std::fs::remove_dir_all(c.dir.path().join("node-3")).unwrap();
    c.crash_node(1).await;
    c.start_node_with(3, |cfg| cfg.pin_directories = true).await;
    assert_ne!(c.node(3).directory_id(), dirs[2].1);
    // Node 2 stands again and again: the wiped node grants it its vote
    // (node 2's log is longer), which must not count.
    let n2 = c.node(2).clone();
    let start = n2.status().await.unwrap().pre_votes;
    wait_until("node 2 to ask for pre-votes 5 times", LIMIT, || {
        let n2 = n2.clone();
        async move {
            let s = n2.status().await.unwrap();
            assert_ne!(s.role, Role::Leader, "elected with a wiped voter's vote");
            s.pre_votes >= start + 5
        }
    })
    .await;
    // With node 1 back, 1 and 2 elect a leader that has the entries.
    c.start_node_with(1, |cfg| cfg.pin_directories = true).await;
    let (n1, n2) = (c.node(1).clone(), c.node(2).clone());
    wait_until("a leader among nodes 1 and 2", LIMIT, || {
        let ok = [&n1, &n2].iter().any(|n| n.role() == Role::Leader);
        async move { ok }
    })
    .await;
    c.shutdown().await;
}

#[actix::test]
async fn recover_lets_the_last_survivor_lead_alone_and_refuses_what_cannot_work() {
    let mut c = three().await;
    let p = c
        .node(1)
        .propose(create_topic("kept", 1, 1), Acks::All)
        .await
        .unwrap();
    for id in [2, 3] {
        wait_applied(c.node(id), p.offset).await;
    }
    // Nodes 2 and 3 are lost for good; node 1 is stopped.
    for id in [3, 2, 1] {
        c.stop_node(id).await;
    }
    let dir = c.data_dir(1);
    let none = std::collections::BTreeMap::new();
    use metawal_actors::{recover_voters, RecoverError};
    assert!(matches!(
        recover_voters(&dir, 1, common::CLUSTER, &[2], &none),
        Err(RecoverError::SelfNotAVoter { node: 1 })
    ));
    assert!(matches!(
        recover_voters(&dir, 2, common::CLUSTER, &[2], &none),
        Err(RecoverError::Foreign { .. })
    ));
    // The cluster never logged its membership (its voters came from
    // flags): every new voter needs its address given, this node's too.
    assert!(matches!(
        recover_voters(&dir, 1, common::CLUSTER, &[1], &none),
        Err(RecoverError::UnknownVoter { node: 1 })
    ));
    let mine: std::collections::BTreeMap<u64, std::net::SocketAddr> =
        [(1, c.addrs[&1])].into_iter().collect();
    assert!(matches!(
        recover_voters(&dir, 1, common::CLUSTER, &[1, 3], &mine),
        Err(RecoverError::UnknownVoter { node: 3 })
    ));
    let report = recover_voters(&dir, 1, common::CLUSTER, &[1], &mine).unwrap();
    assert_eq!(report.old_voters, None, "the flags' voters: not logged");
    assert_eq!(report.new_voters, vec![1]);
    assert!(report.offset > p.offset);

    // Alone, node 1 is a majority of its voters: it leads and commits.
    c.start_node(1).await;
    let n1 = c.node(1).clone();
    wait_until("node 1 to lead alone", LIMIT, || {
        let ok = n1.role() == Role::Leader;
        async move { ok }
    })
    .await;
    let after = n1
        .propose(create_topic("after-recovery", 1, 1), Acks::All)
        .await
        .unwrap();
    assert!(after.offset > report.offset);
    assert_eq!(voter_ids(&n1), vec![1]);
    assert!(n1.view().topic("kept").is_some());
    c.shutdown().await;
}
