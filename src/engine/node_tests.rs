//! Each input to the node engine and the exact actions it produces: the
//! step-up, its rollback, the step-down, what waits while a step is out,
//! shutdown, the leader a follower names, and transfer.

use super::*;
use crate::engine::election::ElectionMsg;

const T: Duration = Duration::from_millis(100);
const LOG: LastLog = (0, 0);

fn engine(t0: Instant) -> NodeEngine {
    let config = ElectionConfig {
        election_timeout: T,
    };
    NodeEngine::new(1, vec![1, 2, 3], config, 0, None, None, t0, 7919)
        .with_directory(crate::membership::DirectoryId([1; 16]))
}

fn drain(e: &mut NodeEngine) -> Vec<NodeAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn from(peer: NodeId, msg: ElectionMsg) -> NodeInput {
    NodeInput::Election(ElectionInput::Received { from: peer, msg })
}

fn published(role: Role, epoch: u64, leader: Option<NodeId>) -> NodeAction {
    NodeAction::Publish(Published {
        role,
        epoch,
        leader,
        transferring: false,
    })
}

/// Node 1 wins epoch 1 with node 2's votes; returns the time and the
/// actions of the win (from `ReleaseLog` on).
fn win(e: &mut NodeEngine, t0: Instant) -> (Instant, Vec<NodeAction>) {
    let now = t0 + 2 * T;
    e.handle(now, NodeInput::Election(ElectionInput::Tick), LOG);
    drain(e);
    let granted = ElectionMsg::PreVoteReply {
        epoch: 1,
        current: 0,
        granted: true,
        directory: crate::membership::DirectoryId([2; 16]),
    };
    e.handle(now, from(2, granted), LOG);
    assert_eq!(
        drain(e),
        vec![NodeAction::PersistVote {
            epoch: 1,
            voted_for: Some(1)
        }]
    );
    let persisted = NodeInput::VotePersisted {
        epoch: 1,
        voted_for: Some(1),
    };
    e.handle(now, persisted, LOG);
    drain(e);
    let granted = ElectionMsg::VoteReply {
        epoch: 1,
        current: 1,
        granted: true,
        directory: crate::membership::DirectoryId([2; 16]),
    };
    e.handle(now, from(2, granted), LOG);
    (now, drain(e))
}

/// Node 1 leads epoch 1 (every step answered).
fn leading(t0: Instant) -> (NodeEngine, Instant) {
    let mut e = engine(t0);
    let (now, _) = win(&mut e, t0);
    e.handle(now, NodeInput::LogReleased { commit: 4 }, LOG);
    e.handle(now, NodeInput::EpochPersisted, LOG);
    e.handle(now, NodeInput::LeadingStarted, LOG);
    drain(&mut e);
    assert_eq!(e.published().role, Role::Leader);
    (e, now)
}

#[test]
fn a_win_steps_up_in_order_and_publishes_the_role_once_the_epoch_is_on_disk() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let (now, actions) = win(&mut e, t0);
    assert_eq!(actions, vec![NodeAction::ReleaseLog { epoch: 1 }]);
    assert_eq!(e.admission(), NodeRole::Follower { leader: None });
    e.handle(now, NodeInput::LogReleased { commit: 4 }, LOG);
    assert_eq!(
        drain(&mut e),
        vec![NodeAction::PersistEpoch {
            epoch: 1,
            commit_hint: 4
        }]
    );
    e.handle(now, NodeInput::EpochPersisted, LOG);
    assert_eq!(
        drain(&mut e),
        vec![
            published(Role::Leader, 1, Some(1)),
            NodeAction::StartLeading {
                epoch: 1,
                commit: 4
            }
        ]
    );
    // Published, but proposals wait for the store's leadership.
    assert_eq!(e.admission(), NodeRole::Follower { leader: Some(1) });
    e.handle(now, NodeInput::LeadingStarted, LOG);
    assert_eq!(drain(&mut e), vec![]);
    assert_eq!(e.admission(), NodeRole::Leader);
}

#[test]
fn a_failed_step_rolls_back_follows_what_is_on_disk_and_resigns() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let (now, _) = win(&mut e, t0);
    e.handle(now, NodeInput::LogReleased { commit: 4 }, LOG);
    e.handle(now, NodeInput::EpochPersisted, LOG);
    drain(&mut e);
    let failed = NodeInput::StepFailed {
        step: StepUpStep::TakeLeadership,
        current: None,
    };
    e.handle(now, failed, LOG);
    assert_eq!(
        drain(&mut e),
        vec![published(Role::Follower, 1, None), NodeAction::StopLeading]
    );
    e.handle(now, NodeInput::LeadingStopped, LOG);
    assert_eq!(
        drain(&mut e),
        vec![NodeAction::ResumeFollowing { keep_commit: false }]
    );
    let resumed = NodeInput::Resumed {
        epoch: 1,
        leader: Some(1),
    };
    e.handle(now, resumed, LOG);
    // The epoch is given up: the others are told to elect now.
    let actions = drain(&mut e);
    let resign = ElectionMsg::Resign { epoch: 1 };
    assert_eq!(
        actions,
        vec![
            NodeAction::Send { to: 2, msg: resign },
            NodeAction::Send { to: 3, msg: resign }
        ]
    );
    assert_eq!(e.published(), e.published());
    assert_eq!(e.published().role, Role::Follower);
    assert_eq!(e.admission(), NodeRole::Follower { leader: None });
}

#[test]
fn a_higher_epoch_found_while_stepping_up_is_taken() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let (now, _) = win(&mut e, t0);
    e.handle(now, NodeInput::LogReleased { commit: 0 }, LOG);
    drain(&mut e);
    let refused = NodeInput::StepFailed {
        step: StepUpStep::PersistEpoch,
        current: Some(5),
    };
    e.handle(now, refused, LOG);
    assert_eq!(
        drain(&mut e),
        vec![published(Role::Follower, 5, None), NodeAction::StopLeading]
    );
    e.handle(now, NodeInput::LeadingStopped, LOG);
    drain(&mut e);
    let resumed = NodeInput::Resumed {
        epoch: 5,
        leader: None,
    };
    e.handle(now, resumed, LOG);
    let actions = drain(&mut e);
    assert!(
        actions.contains(&NodeAction::PersistVote {
            epoch: 5,
            voted_for: None
        }),
        "{actions:?}"
    );
}

#[test]
fn the_planted_skip_rollback_leaves_the_log_released() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.plant(NodePlant::SkipRollback);
    let (now, _) = win(&mut e, t0);
    e.handle(now, NodeInput::LogReleased { commit: 0 }, LOG);
    drain(&mut e);
    let failed = NodeInput::StepFailed {
        step: StepUpStep::PersistEpoch,
        current: None,
    };
    e.handle(now, failed, LOG);
    let actions = drain(&mut e);
    assert!(!actions.contains(&NodeAction::StopLeading), "{actions:?}");
}

#[test]
fn election_inputs_wait_while_a_step_is_out_and_are_taken_in_order_after() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let (now, _) = win(&mut e, t0);
    // A higher epoch is seen mid step-up: nothing yet.
    let higher = ElectionInput::HigherEpoch { epoch: 2 };
    e.handle(now, NodeInput::Election(higher), LOG);
    assert_eq!(drain(&mut e), vec![]);
    e.handle(now, NodeInput::LogReleased { commit: 0 }, LOG);
    e.handle(now, NodeInput::EpochPersisted, LOG);
    e.handle(now, NodeInput::LeadingStarted, LOG);
    // Now it is taken: the leader moves to epoch 2 and steps down, the
    // role published before it stops leading.
    assert_eq!(
        drain(&mut e),
        vec![
            NodeAction::PersistEpoch {
                epoch: 1,
                commit_hint: 0
            },
            published(Role::Leader, 1, Some(1)),
            NodeAction::StartLeading {
                epoch: 1,
                commit: 0
            },
            published(Role::Follower, 2, None),
            NodeAction::StopLeading,
        ]
    );
}

#[test]
fn the_deferred_queue_is_bounded() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let (now, _) = win(&mut e, t0);
    let ask = ElectionMsg::PreVote {
        epoch: 2,
        last_epoch: 0,
        last_offset: 0,
    };
    for _ in 0..DEFERRED_INPUTS_MAX + 10 {
        e.handle(now, from(3, ask), LOG);
    }
    assert_eq!(e.deferred.len(), DEFERRED_INPUTS_MAX);
    // Ticks are not held: the election's timer waits for the step, and the
    // engine looks again after an election timeout.
    e.handle(now, NodeInput::Election(ElectionInput::Tick), LOG);
    assert_eq!(e.deferred.len(), DEFERRED_INPUTS_MAX);
    assert_eq!(e.poll_timeout(), now + T);
}

#[test]
fn a_step_down_publishes_follower_before_it_stops_leading() {
    let t0 = Instant::now();
    let (mut e, now) = leading(t0);
    let higher = ElectionInput::HigherEpoch { epoch: 3 };
    e.handle(now, NodeInput::Election(higher), (1, 4));
    let actions = drain(&mut e);
    assert_eq!(
        actions[..2],
        [published(Role::Follower, 3, None), NodeAction::StopLeading],
        "{actions:?}"
    );
    assert_eq!(e.admission(), NodeRole::Follower { leader: None });
    e.handle(now, NodeInput::LeadingStopped, LOG);
    assert_eq!(
        drain(&mut e),
        vec![NodeAction::ResumeFollowing { keep_commit: true }]
    );
}

#[test]
fn a_stopping_node_never_takes_a_leadership_it_wins() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let now = t0 + 2 * T;
    e.handle(now, NodeInput::Election(ElectionInput::Tick), LOG);
    let granted = ElectionMsg::PreVoteReply {
        epoch: 1,
        current: 0,
        granted: true,
        directory: crate::membership::DirectoryId([2; 16]),
    };
    e.handle(now, from(2, granted), LOG);
    drain(&mut e);
    e.handle(now, NodeInput::Shutdown, LOG);
    assert_eq!(drain(&mut e), vec![published(Role::Stopped, 0, None)]);
    // The vote write lands after the shutdown; the reply that would win.
    let persisted = NodeInput::VotePersisted {
        epoch: 1,
        voted_for: Some(1),
    };
    e.handle(now, persisted, LOG);
    let granted = ElectionMsg::VoteReply {
        epoch: 1,
        current: 1,
        granted: true,
        directory: crate::membership::DirectoryId([2; 16]),
    };
    e.handle(now, from(2, granted), LOG);
    let actions = drain(&mut e);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, NodeAction::ReleaseLog { .. })),
        "{actions:?}"
    );
    assert_eq!(e.published().role, Role::Stopped);
}

#[test]
fn a_leader_shutting_down_resigns() {
    let t0 = Instant::now();
    let (mut e, now) = leading(t0);
    e.handle(now, NodeInput::Shutdown, (1, 5));
    let resign = ElectionMsg::Resign { epoch: 1 };
    assert_eq!(
        drain(&mut e),
        vec![
            NodeAction::Send { to: 2, msg: resign },
            NodeAction::Send { to: 3, msg: resign },
            published(Role::Stopped, 1, None),
        ]
    );
}

#[test]
fn a_follower_names_its_leader_only_while_it_hears_it() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let attached = NodeInput::LeaderAttached {
        epoch: 2,
        leader: 3,
    };
    e.handle(t0, attached, LOG);
    assert_eq!(
        drain(&mut e),
        vec![
            NodeAction::PersistVote {
                epoch: 2,
                voted_for: None
            },
            published(Role::Follower, 2, Some(3))
        ]
    );
    let persisted = NodeInput::VotePersisted {
        epoch: 2,
        voted_for: None,
    };
    e.handle(t0, persisted, LOG);
    assert_eq!(e.admission(), NodeRole::Follower { leader: Some(3) });
    // Heard again just before the timeout: still named.
    let heard = ElectionInput::LeaderHeard {
        leader: 3,
        epoch: 2,
    };
    e.handle(t0 + T / 2, NodeInput::Election(heard), LOG);
    assert_eq!(e.poll_timeout(), t0 + T / 2 + T);
    let tick = NodeInput::Election(ElectionInput::Tick);
    e.handle(t0 + T / 2 + T - Duration::from_millis(1), tick.clone(), LOG);
    assert_eq!(drain(&mut e), vec![]);
    // Not heard for the election timeout: no longer named.
    e.handle(t0 + T / 2 + T, tick, LOG);
    assert_eq!(drain(&mut e), vec![published(Role::Follower, 2, None)]);
    assert_eq!(e.admission(), NodeRole::Follower { leader: None });
    assert_eq!(e.known_leader(), Some(3));
}

#[test]
fn a_transfer_stops_admission_waits_for_catch_up_then_asks_the_target_to_stand() {
    let t0 = Instant::now();
    let (mut e, now) = leading(t0);
    e.handle(now, NodeInput::Transfer { to: 2 }, (1, 5));
    let mut transferring = published(Role::Leader, 1, Some(1));
    if let NodeAction::Publish(p) = &mut transferring {
        p.transferring = true;
    }
    assert_eq!(
        drain(&mut e),
        vec![transferring, NodeAction::WatchCatchUp { to: 2 }]
    );
    assert_eq!(e.admission(), NodeRole::Follower { leader: None });
    e.handle(now, NodeInput::CaughtUp { to: 2 }, (1, 5));
    assert_eq!(
        drain(&mut e),
        vec![NodeAction::Send {
            to: 2,
            msg: ElectionMsg::ElectNow { epoch: 1 }
        }]
    );
    // Node 2 wins epoch 2 and attaches: the transfer is done.
    let higher = ElectionInput::HigherEpoch { epoch: 2 };
    e.handle(now, NodeInput::Election(higher), (1, 5));
    e.handle(now, NodeInput::LeadingStopped, LOG);
    let resumed = NodeInput::Resumed {
        epoch: 2,
        leader: None,
    };
    e.handle(now, resumed, LOG);
    drain(&mut e);
    let persisted = NodeInput::VotePersisted {
        epoch: 2,
        voted_for: None,
    };
    e.handle(now, persisted, LOG);
    let attached = NodeInput::LeaderAttached {
        epoch: 2,
        leader: 2,
    };
    e.handle(now, attached, LOG);
    let actions = drain(&mut e);
    assert!(
        actions.contains(&NodeAction::TransferEnded {
            to: 2,
            outcome: Ok(())
        }),
        "{actions:?}"
    );
}

#[test]
fn a_transfer_that_does_not_catch_up_in_time_ends_and_admission_resumes() {
    let t0 = Instant::now();
    let (mut e, now) = leading(t0);
    e.handle(now, NodeInput::Transfer { to: 3 }, (1, 5));
    drain(&mut e);
    assert_eq!(e.poll_timeout(), (now + T).min(e.election().poll_timeout()));
    // Keep the leader's quorum live so check-quorum does not step it down.
    let heard = ElectionInput::FollowerHeard {
        peer: 2,
        since: now + T,
    };
    e.handle(now + T, NodeInput::Election(heard), (1, 5));
    e.handle(now + T, NodeInput::Election(ElectionInput::Tick), (1, 5));
    let actions = drain(&mut e);
    assert!(
        actions.contains(&NodeAction::TransferEnded {
            to: 3,
            outcome: Err(TransferFailed::TimedOut {
                step: "catching up",
                waited: T
            })
        }),
        "{actions:?}"
    );
    assert_eq!(e.admission(), NodeRole::Leader);
}

#[test]
fn a_second_transfer_or_one_on_a_follower_is_refused() {
    let t0 = Instant::now();
    let mut f = engine(t0);
    f.handle(t0, NodeInput::Transfer { to: 2 }, LOG);
    assert_eq!(
        drain(&mut f),
        vec![NodeAction::TransferEnded {
            to: 2,
            outcome: Err(TransferFailed::NotLeader)
        }]
    );
    let (mut e, now) = leading(t0);
    e.handle(now, NodeInput::Transfer { to: 2 }, (1, 5));
    drain(&mut e);
    e.handle(now, NodeInput::Transfer { to: 3 }, (1, 5));
    assert_eq!(
        drain(&mut e),
        vec![NodeAction::TransferEnded {
            to: 3,
            outcome: Err(TransferFailed::InProgress { to: 2 })
        }]
    );
}

#[test]
fn the_planted_admission_bug_admits_while_transferring() {
    let t0 = Instant::now();
    let (mut e, now) = leading(t0);
    e.plant(NodePlant::AdmitWhileTransferring);
    e.handle(now, NodeInput::Transfer { to: 2 }, (1, 5));
    assert_eq!(e.admission(), NodeRole::Leader);
}

#[test]
fn a_storage_failure_is_published_and_ends_elections() {
    let t0 = Instant::now();
    let (mut e, now) = leading(t0);
    e.handle(now, NodeInput::StorageFailed, (1, 5));
    assert_eq!(drain(&mut e), vec![published(Role::Failed, 1, None)]);
    e.handle(now + 10 * T, NodeInput::Election(ElectionInput::Tick), LOG);
    assert_eq!(drain(&mut e), vec![]);
    assert_eq!(e.admission(), NodeRole::Failed);
}

// ---- Membership ---------------------------------------------------------

fn member(id: NodeId) -> crate::membership::Member {
    crate::membership::Member {
        node_id: id,
        directory_id: crate::membership::DirectoryId([id as u8; 16]),
        replication_addr: format!("127.0.0.1:{}", 7000 + id),
        http_addr: format!("127.0.0.1:{}", 8000 + id),
        kafka_addr: String::new(),
    }
}

fn members(voters: &[NodeId], learners: &[NodeId]) -> crate::membership::Membership {
    crate::membership::Membership::new(
        voters.iter().map(|&v| member(v)),
        learners.iter().map(|&l| member(l)),
    )
    .unwrap()
}

fn with_members(t0: Instant, voters: &[NodeId]) -> NodeEngine {
    engine(t0).with_membership(crate::membership::MembershipLog::new(
        0,
        members(voters, &[]),
    ))
}

#[test]
fn an_appended_membership_is_in_force_at_once_and_a_truncation_reverts_it() {
    let t0 = Instant::now();
    let mut e = with_members(t0, &[1, 2, 3]);
    // Node 1 demoted to a learner by an entry it appended as a follower.
    let demoted = members(&[2, 3], &[1]);
    e.handle(
        t0,
        NodeInput::MembershipAppended {
            offset: 5,
            membership: demoted.clone(),
        },
        LOG,
    );
    assert_eq!(drain(&mut e), [NodeAction::MembershipChanged(demoted)]);
    e.handle(t0 + 3 * T, NodeInput::Election(ElectionInput::Tick), LOG);
    assert!(
        drain(&mut e)
            .iter()
            .all(|a| !matches!(a, NodeAction::Send { .. })),
        "a learner asked for votes"
    );
    // The new leader truncates the entry: node 1 votes again.
    e.handle(t0 + 3 * T, NodeInput::LogTruncated { after: 4 }, LOG);
    assert_eq!(
        drain(&mut e),
        [NodeAction::MembershipChanged(members(&[1, 2, 3], &[]))]
    );
    e.handle(t0 + 6 * T, NodeInput::Election(ElectionInput::Tick), LOG);
    assert!(
        drain(&mut e).iter().any(|a| matches!(
            a,
            NodeAction::Send {
                msg: ElectionMsg::PreVote { .. },
                ..
            }
        )),
        "a voter again, it stands"
    );
    // A truncation below nothing changes nothing.
    e.handle(t0 + 6 * T, NodeInput::LogTruncated { after: 2 }, LOG);
    assert!(drain(&mut e).is_empty());
}

#[test]
fn an_installed_snapshot_replaces_the_memberships_and_reports_a_change_only_if_one() {
    let t0 = Instant::now();
    let mut e = with_members(t0, &[1, 2, 3]);
    let grown = members(&[1, 2, 3], &[4]);
    e.handle(
        t0,
        NodeInput::MembershipAppended {
            offset: 5,
            membership: grown.clone(),
        },
        LOG,
    );
    drain(&mut e);
    // A snapshot at 9 whose membership is the one in force: nothing to tell.
    let reset = |offset, membership| NodeInput::MembershipReset { offset, membership };
    e.handle(t0, reset(9, grown.clone()), LOG);
    assert!(drain(&mut e).is_empty());
    // The entry at 5 is gone with the log it was in: a truncation there no
    // longer reverts anything.
    e.handle(t0, NodeInput::LogTruncated { after: 4 }, LOG);
    assert!(drain(&mut e).is_empty());
    // A snapshot with another membership puts it in force; entries after
    // the snapshot are taken after it.
    let shrunk = members(&[2, 3], &[]);
    e.handle(t0, reset(20, shrunk.clone()), LOG);
    assert_eq!(drain(&mut e), [NodeAction::MembershipChanged(shrunk)]);
    assert_eq!(e.membership().map(|m| m.latest_offset()), Some(20));
}

#[test]
fn a_membership_entry_out_of_order_fail_stops() {
    let t0 = Instant::now();
    let mut e = with_members(t0, &[1, 2, 3]);
    let m = members(&[1, 2, 3], &[4]);
    let at = |offset| NodeInput::MembershipAppended {
        offset,
        membership: m.clone(),
    };
    e.handle(t0, at(5), LOG);
    drain(&mut e);
    e.handle(t0, at(5), LOG);
    assert_eq!(e.published().role, Role::Failed);
}

#[test]
fn only_an_admitting_leader_admits_a_change() {
    use crate::membership::{ChangeContext, ChangeRefused, MemberChange};
    let t0 = Instant::now();
    let ctx = ChangeContext {
        leader: 1,
        leader_directory: crate::membership::DirectoryId([1; 16]),
        commit: 4,
        epoch_start: 4,
        last_offset: 4,
        max_lag_entries: 0,
    };
    let add = MemberChange::AddLearner(member(4));
    let follower = with_members(t0, &[1, 2, 3]);
    assert_eq!(
        follower.admit_change(&add, &ctx, |_| None),
        Err(ChangeRefused::NotLeader { leader: None })
    );
    let fixed = leading(t0).0;
    assert_eq!(
        fixed.admit_change(&add, &ctx, |_| None),
        Err(ChangeRefused::FixedMembership)
    );

    let mut e = with_members(t0, &[1, 2, 3]);
    let (now, _) = win(&mut e, t0);
    for step in [
        NodeInput::LogReleased { commit: 4 },
        NodeInput::EpochPersisted,
        NodeInput::LeadingStarted,
    ] {
        e.handle(now, step, LOG);
    }
    drain(&mut e);
    assert_eq!(
        e.admit_change(&add, &ctx, |_| None),
        Ok(members(&[1, 2, 3], &[4]))
    );
    // Appended: the next change waits for its commit; committed, it goes.
    e.handle(
        now,
        NodeInput::MembershipAppended {
            offset: 5,
            membership: members(&[1, 2, 3], &[4]),
        },
        LOG,
    );
    let remove = MemberChange::Remove(4);
    let ctx = ChangeContext {
        last_offset: 5,
        ..ctx
    };
    assert_eq!(
        e.admit_change(&remove, &ctx, |_| None),
        Err(ChangeRefused::ChangeInProgress { offset: 5 })
    );
    e.handle(now, NodeInput::Committed { offset: 5 }, LOG);
    let ctx = ChangeContext { commit: 5, ..ctx };
    assert_eq!(
        e.admit_change(&remove, &ctx, |_| None),
        Ok(members(&[1, 2, 3], &[]))
    );
    // Transferring: no admission.
    e.handle(now, NodeInput::Transfer { to: 2 }, LOG);
    assert!(matches!(
        e.admit_change(&remove, &ctx, |_| None),
        Err(ChangeRefused::NotLeader { .. })
    ));
}

#[test]
fn a_commit_point_past_the_log_end_folds_only_what_the_log_holds() {
    // A follower hears the commit point (74) before it has the entries:
    // a membership entry it appends later, below that point, is still
    // taken (it used to be refused as out of order, and the node
    // fail-stopped).
    let t0 = Instant::now();
    let mut e = with_members(t0, &[1, 2, 3]);
    e.handle(t0, NodeInput::Committed { offset: 74 }, (1, 7));
    let m = members(&[1, 2], &[]);
    e.handle(
        t0,
        NodeInput::MembershipAppended {
            offset: 43,
            membership: m.clone(),
        },
        (1, 43),
    );
    assert_eq!(drain(&mut e), [NodeAction::MembershipChanged(m)]);
    assert_eq!(e.published().role, Role::Follower);
}

#[test]
fn voter_set_changes_waiting_for_a_step_are_one_entry_the_newest() {
    let t0 = Instant::now();
    let mut e = with_members(t0, &[1, 2, 3]);
    // A step is out (the vote write of a pre-vote won).
    let (_, _) = win_prevote(&mut e, t0);
    assert!(e.busy());
    for (offset, voters) in [(5, &[1, 2, 3, 4][..]), (6, &[1, 2, 3, 4, 5][..])] {
        e.handle(
            t0,
            NodeInput::MembershipAppended {
                offset,
                membership: members(voters, &[]),
            },
            LOG,
        );
    }
    let waiting: Vec<_> = e
        .deferred
        .iter()
        .filter_map(|(i, _)| match i {
            ElectionInput::VotersChanged { voters } => Some(voters.clone()),
            _ => None,
        })
        .collect();
    let named: std::collections::BTreeMap<NodeId, _> = (1..=5)
        .map(|i| (i, crate::membership::DirectoryId([i as u8; 16])))
        .collect();
    assert_eq!(waiting, vec![named]);
}

/// Node 1 wins the pre-vote of epoch 1: its vote write is out.
fn win_prevote(e: &mut NodeEngine, t0: Instant) -> (Instant, Vec<NodeAction>) {
    let now = t0 + 2 * T;
    e.handle(now, NodeInput::Election(ElectionInput::Tick), LOG);
    drain(e);
    let granted = ElectionMsg::PreVoteReply {
        epoch: 1,
        current: 0,
        granted: true,
        directory: crate::membership::DirectoryId([2; 16]),
    };
    e.handle(now, from(2, granted), LOG);
    (now, drain(e))
}
