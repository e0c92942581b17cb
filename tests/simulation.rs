//! The deterministic simulation, CI-sized: hundreds of seeds over 3 and 5
//! nodes must keep every invariant; plus tests that the checker itself
//! reports hand-made violations (a checker that cannot fail proves nothing).

use metawal::engine::disk_io::{DiskCompletion, DiskExecutor, DiskRequest};
use metawal::engine::store::MetadataStoreEngine;
use metawal::sim::check::{Bounds, Checker, Invariant};
use metawal::sim::disk::Meta;
use metawal::sim::net::Network;
use metawal::sim::node::{node_meta, Node};
use metawal::sim::{run_seed, PlantedBug, SimConfig, LIVENESS_TIMEOUTS};
use metawal::storage::NodeMeta;
use metawal::{Command, Entry, Record};

fn entry(offset: u64, epoch: u64, name: &str) -> Entry {
    Entry {
        offset,
        epoch,
        command: Command::CreateTopic {
            name: name.into(),
            partition_count: 1,
            replication_factor: 1,
        },
    }
}

fn node_with(id: u64, entries: &[Entry]) -> Node {
    let mut n = Node::new(id);
    let batch = entries
        .iter()
        .map(|e| (e.clone(), Record::encode(e).expect("encodes")))
        .collect();
    n.append(batch).expect("ordered entries");
    let epoch = entries.iter().map(|e| e.epoch).max().unwrap_or(0);
    let meta = NodeMeta {
        current_epoch: epoch,
        leader: Some(1),
        voted_for: Some(1),
        ..node_meta(id, Meta::default())
    };
    let written = n.disk.execute(DiskRequest::PersistMeta(meta));
    assert!(
        matches!(written, DiskCompletion::MetaPersisted(Ok(Ok(())))),
        "{written:?}"
    );
    n
}

fn checker() -> Checker {
    Checker::new(Bounds {
        window_entries: 16,
        window_bytes: 2048,
        queue: 256,
    })
}

#[test]
fn ci_seeds_keep_every_invariant() {
    let seeds = 400;
    let (mut steps, mut crashes, mut partitions, mut acked, mut elections) = (0, 0, 0, 0, 0);
    let (mut one_way, mut blackholed, mut clock_steps, mut strikes) = (0, 0, 0, 0);
    let mut heal_to_leader = Vec::new();
    for seed in 0..seeds {
        let nodes = if seed % 2 == 0 { 3 } else { 5 };
        let config = SimConfig::new(seed, nodes);
        let report = run_seed(&config);
        if let Some(v) = &report.violation {
            panic!("{v}");
        }
        steps += report.steps;
        crashes += report.crashes;
        partitions += report.partitions;
        acked += report.acked_all;
        elections += report.elections;
        one_way += report.one_way_partitions;
        blackholed += report.blackholed;
        clock_steps += report.clock_steps;
        strikes += report.nemesis_strikes;
        // Every seed that settled found its leader within the bound.
        let t = report.heal_to_leader.expect("a settled seed has a leader");
        assert!(
            t <= config.election_timeout * LIVENESS_TIMEOUTS,
            "seed {seed}: {t:?}"
        );
        heal_to_leader.push(t);
    }
    // The faults really happened, the new ones included, and deaf nodes
    // really missed messages.
    assert!(steps >= seeds * 2000);
    assert!(crashes > seeds, "{crashes} crashes");
    assert!(partitions > seeds, "{partitions} partitions");
    assert!(one_way > seeds / 2, "{one_way} one-way partitions");
    assert!(blackholed > 10 * seeds, "{blackholed} messages blackholed");
    assert!(clock_steps > seeds / 2, "{clock_steps} clock steps");
    assert!(strikes > seeds / 2, "{strikes} stale-candidate strikes");
    assert!(elections > 2 * seeds, "{elections} elections");
    assert!(acked > 10 * seeds, "{acked} acks=all writes");
    heal_to_leader.sort();
    eprintln!(
        "heal to leader: median {:?}, max {:?}",
        heal_to_leader[heal_to_leader.len() / 2],
        heal_to_leader.last()
    );
}

#[test]
fn a_seed_replays_exactly() {
    let mut c = SimConfig::new(12345, 5);
    c.keep_events = true;
    let a = run_seed(&c);
    let b = run_seed(&c);
    assert!(a.violation.is_none());
    assert_eq!(a.events, b.events);
    assert_eq!(
        (a.steps, a.crashes, a.writes_ok, a.virtual_time),
        (b.steps, b.crashes, b.writes_ok, b.virtual_time)
    );
    assert!(a.events.len() > 100);
}

#[test]
fn checker_reports_divergent_logs_as_log_matching() {
    let mut c = checker();
    c.on_leader(1, 1, &[]).expect("first leader of epoch 1");
    let leader_log = [entry(1, 1, "a"), entry(2, 1, "b")];
    let mut leader = node_with(1, &leader_log);
    for (i, e) in leader_log.iter().enumerate() {
        c.on_written(e, leader.chain[i]).expect("one writer");
    }
    c.check_log(&mut leader)
        .expect("the leader's own log is fine");
    // A follower holding a different entry at (2, epoch 1): same (offset,
    // epoch), different log.
    let mut diverged = node_with(2, &[entry(1, 1, "a"), entry(2, 1, "other")]);
    let err = c
        .check_log(&mut diverged)
        .expect_err("divergence must be seen");
    assert_eq!(err.invariant, Invariant::LogMatching, "{err:?}");
    // A matching follower is fine.
    let mut same = node_with(3, &leader_log);
    c.check_log(&mut same).expect("same log");
}

#[test]
fn checker_reports_an_entry_no_leader_wrote() {
    let mut c = checker();
    c.on_leader(1, 1, &[]).expect("leader");
    let mut n = node_with(2, &[entry(1, 1, "ghost")]);
    let err = c.check_log(&mut n).expect_err("nobody wrote it");
    assert_eq!(err.invariant, Invariant::DenseLog);
    // An epoch nobody led.
    let mut c = checker();
    let mut n = node_with(2, &[entry(1, 7, "x")]);
    assert_eq!(
        c.check_log(&mut n)
            .expect_err("no leader of epoch 7")
            .invariant,
        Invariant::DenseLog
    );
}

#[test]
fn checker_reports_two_leaders_in_one_epoch() {
    let mut c = checker();
    c.on_leader(3, 1, &[]).expect("first");
    let err = c
        .on_leader(3, 2, &[])
        .expect_err("second leader of epoch 3");
    assert_eq!(err.invariant, Invariant::ElectionSafety);
}

#[test]
fn checker_reports_a_leader_missing_a_committed_entry() {
    let mut c = checker();
    let nodes = vec![node_with(1, &[entry(1, 1, "a")])];
    c.on_leader(1, 1, &nodes[0].log).expect("leader");
    c.on_committed(1, 1, &[entry(1, 1, "a")], &nodes)
        .expect("commit");
    let err = c
        .on_leader(2, 2, &[])
        .expect_err("new leader without offset 1");
    assert_eq!(err.invariant, Invariant::LeaderCompleteness);
}

#[test]
fn checker_reports_different_applied_entries() {
    let mut c = checker();
    let nodes = vec![node_with(1, &[entry(1, 1, "a")])];
    c.on_committed(1, 1, &[entry(1, 1, "a")], &nodes)
        .expect("commit");
    c.on_applied(1, &entry(1, 1, "a"))
        .expect("the committed entry");
    let err = c
        .on_applied(2, &entry(1, 1, "b"))
        .expect_err("another entry at offset 1");
    assert_eq!(err.invariant, Invariant::AppliedAgreement);
    // Applying beyond the commit point is caught too.
    let err = c
        .on_applied(1, &entry(2, 1, "c"))
        .expect_err("offset 2 is not committed");
    assert_eq!(err.invariant, Invariant::AppliedAgreement);
}

#[test]
fn checker_reports_a_lost_acked_write() {
    let mut c = checker();
    c.on_acked_all(entry(1, 1, "a"));
    let nodes = vec![node_with(1, &[entry(1, 1, "a")]), Node::new(2)];
    let err = c.check_acked(&nodes, &[1, 2]).expect_err("n2 lacks it");
    assert_eq!(err.invariant, Invariant::AckedWriteLost);
    c.check_acked(&nodes, &[1])
        .expect("n1 has it, and n2 is not a member");
}

#[test]
fn checker_reports_a_regressed_applied_offset() {
    let mut c = checker();
    c.on_leader(1, 1, &[]).expect("leader");
    let e = entry(1, 1, "a");
    let mut nodes = vec![node_with(1, std::slice::from_ref(&e))];
    c.on_written(&e, nodes[0].chain[0]).expect("written");
    nodes[0].learn_commit(1);
    // Not durable yet: nothing applies.
    assert!(nodes[0].apply_committed().expect("no fail-stop").is_empty());
    let net = Network::new();
    c.check_step(&mut nodes, &net).expect("fine");
    // Pretend it applied offset 1, then lost it in the same incarnation.
    let mut applied = metawal::MetadataState::new();
    applied.apply(&e).expect("applies");
    nodes[0].store = MetadataStoreEngine::new(1, applied, 1000, Default::default());
    c.check_step(&mut nodes, &net).expect("fine");
    nodes[0].store =
        MetadataStoreEngine::new(1, metawal::MetadataState::new(), 1000, Default::default());
    let err = c
        .check_step(&mut nodes, &net)
        .expect_err("applied offset went back");
    assert_eq!(err.invariant, Invariant::AppliedMonotonic);
}

/// The first seed in `0..limit` whose run reports a violation, with it.
fn first_violation(bug: PlantedBug, limit: u64) -> Option<(u64, Invariant)> {
    (0..limit).find_map(|seed| {
        let mut c = SimConfig::new(seed, if seed % 2 == 0 { 3 } else { 5 });
        c.bug = Some(bug);
        run_seed(&c).violation.map(|v| (seed, v.invariant))
    })
}

#[test]
fn a_follower_acking_before_fsync_is_caught() {
    let found = first_violation(PlantedBug::AckBeforeFsync, 300);
    assert!(found.is_some(), "300 seeds did not notice unsynced acks");
    eprintln!("ack before fsync: first caught by {found:?}");
}

/// A shell that arms election timers late after a step-down is safe, and
/// the cluster still converges well within the settle deadline: only the
/// liveness bound (one leader within `10 x T` of the heal) catches it.
#[test]
fn late_election_timers_break_the_liveness_bound() {
    let found = first_violation(PlantedBug::LateElectionTimer, 200);
    assert!(
        matches!(found, Some((_, Invariant::Liveness))),
        "200 seeds with late election timers: {found:?}"
    );
    eprintln!("late election timer: first caught by {found:?}");
}

/// Raft's up-to-date rule deleted from all three places it is decided
/// (the pre-vote, the vote, and the grant once the vote is on disk): a
/// candidate with a shorter log wins and the committed entries it lacks
/// are lost. (Deleting it from the pre-vote and the vote only is not a
/// bug: the grant decides again against the fenced log.) Seed 3 catches
/// it; 20 seeds leave room for changes to the fault mix.
#[test]
fn a_vote_without_the_up_to_date_rule_is_caught() {
    let found = first_violation(PlantedBug::NoUpToDateRule, 20);
    assert!(
        matches!(
            found,
            Some((_, Invariant::LeaderCompleteness | Invariant::AckedWriteLost))
        ),
        "20 seeds did not notice votes without the up-to-date rule: {found:?}"
    );
    eprintln!("no up-to-date rule: first caught by {found:?}");
}

/// Missing fencing needs a deposed leader still talking to a follower that
/// moved on: rarer than the others (seed 35 today; it moved between 9 and
/// 1157 as the fault mix changed in the node-engine round), so the budget
/// is 1000 seeds, a few seconds.
#[test]
fn a_follower_without_fencing_is_caught() {
    let found = first_violation(PlantedBug::NoFencing, 1000);
    assert!(found.is_some(), "1000 seeds did not notice missing fencing");
    eprintln!("no fencing: first caught by {found:?}");
}

/// A failed step-up that does not roll back leaves a node that publishes
/// `Follower` while its log owner stays released (or its leader state
/// runs): the role-agreement check sees it the moment the engine is idle.
/// The nemesis fails a step-up step now and then; seed 7 catches it.
#[test]
fn a_step_up_without_its_rollback_is_caught() {
    let found = first_violation(PlantedBug::SkipRollback, 20);
    assert!(
        matches!(found, Some((_, Invariant::RoleAgreement))),
        "20 seeds did not notice a skipped rollback: {found:?}"
    );
    eprintln!("skip rollback: first caught by {found:?}");
}

/// A leader that admits proposals while it transfers tells its target to
/// stand while the target lacks entries it appended after the catch-up.
#[test]
fn admitting_while_transferring_is_caught() {
    let found = first_violation(PlantedBug::AdmitWhileTransferring, 150);
    assert!(
        matches!(found, Some((_, Invariant::Protocol))),
        "150 seeds did not notice admission during a transfer: {found:?}"
    );
    eprintln!("admit while transferring: first caught by {found:?}");
}

/// Recovery that takes the commit point one past the meta's hint applies,
/// on restart, an entry nobody committed: caught as applied-agreement at
/// the restart (seed 3). The nemesis shuts nodes down cleanly now and then,
/// which records the hint the way `Node::shutdown` does.
#[test]
fn recovery_past_the_commit_hint_is_caught() {
    let found = first_violation(PlantedBug::RecoveryPastHint, 20);
    assert!(
        matches!(found, Some((_, Invariant::AppliedAgreement))),
        "20 seeds did not notice recovery past the hint: {found:?}"
    );
    eprintln!("recovery past hint: first caught by {found:?}");
}

/// A leader that dates a follower's answer by its arrival: after a pause
/// (`SIGSTOP`, a VM stall) the acks that waited in its socket confirm a
/// read index although another leader was elected and committed
/// meanwhile, and the read misses a committed entry. Seed 283 catches it
/// today; 500 seeds (about a second) leave room for changes to the mix.
#[test]
fn a_follower_answer_dated_by_its_arrival_is_caught() {
    let found = first_violation(PlantedBug::HeardOnArrival, 500);
    assert!(
        matches!(found, Some((_, Invariant::StaleRead))),
        "500 seeds did not notice answers dated by their arrival: {found:?}"
    );
    eprintln!("heard on arrival: first caught by {found:?}");
}

/// A follower that moves to a newer epoch but keeps its session with the
/// older leader open answers that leader's probes: a reply from an older
/// epoch counts as follower contact. With the transfer cut (the leader
/// and its transfer's target lose each other; the target wins with the
/// others' votes; the leader resumes when its transfer times out) the
/// old leader's read index is confirmed by voters that already serve its
/// successor, and the read misses what the successor committed.
#[test]
fn a_reply_from_an_older_epoch_counted_as_contact_is_caught() {
    let found = first_violation(PlantedBug::OldSessionAnswers, 600);
    assert!(
        matches!(found, Some((_, Invariant::StaleRead))),
        "600 seeds did not notice replies from an older epoch: {found:?}"
    );
    eprintln!("old session answers: first caught by {found:?}");
}

/// A leader that admits a membership change while another is still
/// uncommitted: two changes in flight, whose voter sets may differ by two
/// voters and have majorities that do not meet. Caught at once, as a log
/// holding two membership entries past the commit point (seed 0 today).
#[test]
fn two_uncommitted_membership_changes_are_caught() {
    let found = first_violation(PlantedBug::TwoPendingChanges, 50);
    assert!(
        matches!(found, Some((_, Invariant::MemberQuorum))),
        "50 seeds did not notice two membership changes in flight: {found:?}"
    );
    eprintln!("two pending changes: first caught by {found:?}");
}

/// A leader that admits a membership change before it has committed an
/// entry of its own epoch: the change race (`sim/change_race.rs`) stages
/// Ongaro's history — an uncommitted promotion on the old leader's side,
/// a removal by the new leader, the old leader elected again by the
/// promoted node and the removed one — and two leaders commit different
/// entries at one offset (seed 21 today).
#[test]
fn a_membership_change_before_the_own_epoch_commits_is_caught() {
    let found = first_violation(PlantedBug::NoOwnEpochBarrier, 200);
    assert!(
        matches!(found, Some((_, Invariant::LeaderCompleteness))),
        "200 seeds did not notice the own-epoch barrier skipped: {found:?}"
    );
    eprintln!("no own-epoch barrier: first caught by {found:?}");
}

/// A leader that counts its learners for the commit point commits entries
/// a majority of the voters does not hold (seed 25 today).
#[test]
fn a_learner_counted_for_commit_is_caught() {
    let found = first_violation(PlantedBug::LearnerCounted, 300);
    assert!(
        matches!(found, Some((_, Invariant::MemberQuorum))),
        "300 seeds did not notice a learner counted for commit: {found:?}"
    );
    eprintln!("learner counted: first caught by {found:?}");
}

/// A candidate that counts a grant from whatever data directory sends it:
/// the wipe race (`sim/wipe_race.rs`) wipes a voter that acknowledged
/// committed entries, and the voters without them elect one of theirs with
/// the wiped voter's grant (seed 0 today).
#[test]
fn a_wiped_voters_grant_counted_is_caught() {
    let found = first_violation(PlantedBug::IgnoreDirectory, 50);
    assert!(
        matches!(found, Some((_, Invariant::LeaderCompleteness))),
        "50 seeds did not notice a wiped voter's grant counted: {found:?}"
    );
    eprintln!("ignore directory: first caught by {found:?}");
}

/// Regression seeds: the first seeds (3 and 5 nodes) that caught the old
/// commit rule (`min(min_insync_replicas, |ISR|)`: a lone leader committed
/// on its own disk) as a leader-completeness violation: 6–9 with the
/// simulation's own link glue, 0–2 since the simulation drives the real
/// link engine.
#[test]
fn old_commit_rule_regression_seeds() {
    for (seed, nodes) in [(0, 3), (1, 5), (2, 3), (6, 3), (7, 5), (8, 3), (9, 5)] {
        // Recorded before the stale-candidate nemesis: replayed without it.
        let mut config = SimConfig::new(seed, nodes);
        config.nemesis = false;
        let report = run_seed(&config);
        assert!(
            report.violation.is_none(),
            "seed {seed}: {:?}",
            report.violation.map(|v| v.to_string())
        );
    }
}
