//! Unit tests of the follower engine: the exact actions each input emits.

use super::*;
use crate::engine::epoch::EpochRefused;
use crate::storage::Snapshot;

/// A log of epoch 1 at 1..=10, epoch 3 at 11..=20.
fn log() -> EpochIndex {
    let mut e = EpochIndex::new(0, 0);
    for o in 1..=20 {
        e.append(o, if o <= 10 { 1 } else { 3 }).unwrap();
    }
    e
}

#[test]
fn snapshot_past_the_log_end_keeps_nothing_to_keep() {
    assert_eq!(
        plan_snapshot_install(&log(), 25, 4),
        SnapshotInstall::KeepSuffix
    );
    assert_eq!(
        plan_snapshot_install(&log(), 20, 5),
        SnapshotInstall::KeepSuffix,
        "the log ends at the snapshot: nothing after it to keep or drop"
    );
}

#[test]
fn matching_entry_at_the_snapshot_keeps_the_suffix() {
    assert_eq!(
        plan_snapshot_install(&log(), 15, 3),
        SnapshotInstall::KeepSuffix
    );
    assert_eq!(
        plan_snapshot_install(&log(), 5, 1),
        SnapshotInstall::KeepSuffix
    );
}

#[test]
fn diverged_entry_at_the_snapshot_replaces_the_log() {
    // The leader's snapshot at 15 was taken in epoch 2: our 11..=20 of
    // epoch 3 is not the leader's log there.
    assert_eq!(
        plan_snapshot_install(&log(), 15, 2),
        SnapshotInstall::ReplaceLog
    );
    assert_eq!(
        plan_snapshot_install(&log(), 5, 2),
        SnapshotInstall::ReplaceLog
    );
}

#[test]
fn truncation_stops_at_the_durable_commit() {
    assert_eq!(maybe_truncate(10, 10, 20), Ok(()));
    assert_eq!(maybe_truncate(12, 10, 20), Ok(()));
    assert_eq!(
        maybe_truncate(9, 10, 20),
        Err(TruncateRefused::Committed { to: 9, floor: 10 })
    );
    assert_eq!(
        maybe_truncate(9, 30, 9),
        Ok(()),
        "commit known beyond the disk: only what is on disk is protected"
    );
}

// ---- The engine ----

use crate::record::test_record;
use crate::state::MetadataState;

const ME: NodeId = 2;
const LEADER: NodeId = 1;

fn meta(epoch: u64, leader: Option<NodeId>) -> NodeMeta {
    NodeMeta {
        node_id: ME,
        cluster_id: "test-cluster".into(),
        directory_id: crate::membership::DirectoryId::UNKNOWN,
        current_epoch: epoch,
        leader,
        voted_for: None,
        commit_hint: 0,
    }
}

fn drain(e: &mut ReplicaListenerEngine) -> Vec<FollowerAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

/// A short, comparable name for each action.
fn names(actions: &[FollowerAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            FollowerAction::PersistMeta(m) => {
                format!("persist e{} l{}", m.current_epoch, m.leader.unwrap_or(0))
            }
            FollowerAction::EpochChanged { epoch, leader } => {
                format!("epoch e{epoch} l{}", leader.unwrap_or(0))
            }
            FollowerAction::Write(rs) => format!(
                "write {}..={}",
                rs.first().map_or(0, |r| r.offset),
                rs.last().map_or(0, |r| r.offset)
            ),
            FollowerAction::TruncateWal { to } => format!("truncate {to}"),
            FollowerAction::InstallSnapshot {
                offset,
                replace_log,
                ..
            } => format!("install {offset} replace={replace_log}"),
            FollowerAction::Entries(es) => format!("entries {}", es.len()),
            FollowerAction::MembershipAppended { offset, .. } => format!("membership {offset}"),
            FollowerAction::Durable { session, offset } => format!("durable s{session} {offset}"),
            FollowerAction::StopSession(s) => format!("stop s{s}"),
            FollowerAction::Attached { req, result } => format!("attached r{req} {result:?}"),
            FollowerAction::LogReset { req, result } => format!("reset r{req} {result:?}"),
            FollowerAction::Released { req, result } => format!(
                "released r{req} {:?}",
                result.as_ref().map(|(e, c)| (e.last_offset(), *c))
            ),
            FollowerAction::FailStop(_) => "fail-stop".to_string(),
        })
        .collect()
}

fn records(first: u64, last: u64) -> (Vec<Record>, Vec<Entry>) {
    (first..=last).map(|o| (test_record(o), entry(o))).unzip()
}

fn entry(offset: u64) -> Entry {
    Entry {
        offset,
        epoch: 1,
        command: crate::command::Command::DeleteTopic {
            name: format!("t{offset}"),
        },
    }
}

/// Follower 2 at epoch 1 under leader 1, empty log, session 1 attached.
fn attached() -> ReplicaListenerEngine {
    let mut e = ReplicaListenerEngine::new(ME, EpochIndex::new(0, 0), meta(1, Some(LEADER)), 0);
    e.handle(FollowerInput::SessionOpened(1));
    e.handle(FollowerInput::Attach {
        req: 10,
        session: 1,
        leader: LEADER,
        epoch: 1,
    });
    assert_eq!(names(&drain(&mut e)), ["attached r10 Ok((0, 0))"]);
    e
}

/// `attached()` with 1..=5 durable.
fn durable_to_5() -> ReplicaListenerEngine {
    let mut e = attached();
    let (rs, es) = records(1, 5);
    e.append(1, rs, es, 0).unwrap();
    e.handle(FollowerInput::Written(Ok(5)));
    drain(&mut e);
    e
}

#[test]
fn a_new_epoch_is_persisted_before_the_attach_is_answered() {
    let mut e = ReplicaListenerEngine::new(ME, EpochIndex::new(0, 0), meta(1, Some(LEADER)), 0);
    e.handle(FollowerInput::SessionOpened(7));
    e.handle(FollowerInput::Attach {
        req: 1,
        session: 7,
        leader: 3,
        epoch: 2,
    });
    assert_eq!(names(&drain(&mut e)), ["persist e2 l3"]);
    assert_eq!(e.active(), None, "nothing acted on before the write");
    e.handle(FollowerInput::MetaWritten(Ok(())));
    assert_eq!(
        names(&drain(&mut e)),
        ["epoch e2 l3", "attached r1 Ok((0, 0))"]
    );
    assert_eq!(e.active(), Some(7));
    assert_eq!(e.meta().current_epoch, 2);
}

#[test]
fn attaches_during_an_epoch_write_are_judged_against_it() {
    let mut e = ReplicaListenerEngine::new(ME, EpochIndex::new(0, 0), meta(1, Some(LEADER)), 0);
    for s in 1..=3 {
        e.handle(FollowerInput::SessionOpened(s));
    }
    let attach = |req, session, leader, epoch| FollowerInput::Attach {
        req,
        session,
        leader,
        epoch,
    };
    e.handle(attach(1, 1, 3, 3));
    assert_eq!(names(&drain(&mut e)), ["persist e3 l3"]);
    // Held while that write runs: a second leader of epoch 3, and one of 2.
    e.handle(attach(2, 2, 4, 3));
    e.handle(attach(3, 3, 5, 2));
    assert!(drain(&mut e).is_empty(), "held, not judged against epoch 1");
    e.handle(FollowerInput::MetaWritten(Ok(())));
    assert_eq!(
        names(&drain(&mut e)),
        [
            "epoch e3 l3",
            "attached r1 Ok((0, 0))",
            "attached r2 Err(EpochConflict)",
            "attached r3 Err(StaleEpoch { current: 3, leader: Some(3) })",
        ]
    );
}

#[test]
fn a_stale_or_fenced_attach_changes_nothing() {
    let mut e = ReplicaListenerEngine::new(ME, EpochIndex::new(0, 0), meta(4, Some(LEADER)), 0);
    e.handle(FollowerInput::SessionOpened(1));
    e.handle(FollowerInput::Attach {
        req: 1,
        session: 1,
        leader: 3,
        epoch: 3,
    });
    assert_eq!(
        names(&drain(&mut e)),
        ["attached r1 Err(StaleEpoch { current: 4, leader: Some(1) })"]
    );
    // A newer epoch the disk already holds (written by another path).
    e.handle(FollowerInput::Attach {
        req: 2,
        session: 1,
        leader: 3,
        epoch: 5,
    });
    assert_eq!(names(&drain(&mut e)), ["persist e5 l3"]);
    e.handle(FollowerInput::MetaWritten(Err(MetaWriteError::Fenced(
        EpochRefused::Stale {
            epoch: 5,
            current: 6,
            leader: Some(2),
        },
    ))));
    assert_eq!(
        names(&drain(&mut e)),
        ["attached r2 Err(StaleEpoch { current: 6, leader: Some(2) })"]
    );
    assert_eq!(e.meta().current_epoch, 4, "nothing adopted");
    assert_eq!(e.active(), None);
}

#[test]
fn one_write_in_flight_and_the_rest_group_commits_behind_it() {
    let mut e = attached();
    let (rs, es) = records(1, 3);
    e.append(1, rs, es, 0).unwrap();
    assert_eq!(names(&drain(&mut e)), ["entries 3", "write 1..=3"]);
    let (rs, es) = records(4, 4);
    e.append(1, rs, es, 0).unwrap();
    let (rs, es) = records(5, 6);
    e.append(1, rs, es, 2).unwrap();
    assert_eq!(
        names(&drain(&mut e)),
        ["entries 1", "entries 2"],
        "queued behind the write in flight"
    );
    e.handle(FollowerInput::Written(Ok(3)));
    assert_eq!(names(&drain(&mut e)), ["durable s1 3", "write 4..=6"]);
    assert_eq!(
        e.progress(),
        LogProgress {
            log_end: 6,
            durable: 3,
            commit: 2
        }
    );
}

/// `records(first, last)` with a membership entry at each of `at`.
fn records_with_membership(first: u64, last: u64, at: &[u64]) -> (Vec<Record>, Vec<Entry>) {
    let (rs, mut es) = records(first, last);
    for e in es.iter_mut().filter(|e| at.contains(&e.offset)) {
        let me = crate::membership::Member {
            node_id: ME,
            directory_id: crate::membership::DirectoryId([2; 16]),
            replication_addr: "a:1".into(),
            http_addr: "a:2".into(),
            kafka_addr: String::new(),
        };
        let m = crate::membership::Membership::new([me], []).unwrap();
        e.command = crate::command::Command::Membership(m);
    }
    (rs, es)
}

#[test]
fn a_membership_entry_is_reported_when_its_record_goes_to_the_disk() {
    let mut e = attached();
    let (rs, es) = records_with_membership(1, 3, &[2]);
    e.append(1, rs, es, 0).unwrap();
    assert_eq!(
        names(&drain(&mut e)),
        ["entries 3", "membership 2", "write 1..=3"]
    );
    // Queued behind the write in flight: reported with its own write.
    let (rs, es) = records_with_membership(4, 5, &[5]);
    e.append(1, rs, es, 0).unwrap();
    assert_eq!(names(&drain(&mut e)), ["entries 2"]);
    e.handle(FollowerInput::Written(Ok(3)));
    assert_eq!(
        names(&drain(&mut e)),
        ["durable s1 3", "membership 5", "write 4..=5"]
    );
}

#[test]
fn a_membership_entry_dropped_before_its_write_is_never_reported() {
    let mut e = attached();
    let (rs, es) = records(1, 3);
    e.append(1, rs, es, 0).unwrap();
    let (rs, es) = records_with_membership(4, 6, &[5]);
    e.append(1, rs, es, 0).unwrap();
    drain(&mut e);
    // A new session: the queued 4..=6 are dropped, never written.
    e.handle(FollowerInput::SessionOpened(2));
    e.handle(FollowerInput::Attach {
        req: 5,
        session: 2,
        leader: LEADER,
        epoch: 1,
    });
    e.handle(FollowerInput::Written(Ok(3)));
    let actions = names(&drain(&mut e));
    assert!(
        actions.iter().all(|a| !a.starts_with("membership")),
        "{actions:?}"
    );
    assert_eq!(e.progress().log_end, 3);
    assert!(matches!(
        e.poll_store_event(),
        Some(StoreEvent::Truncated(3))
    ));
    // What the new leader sends from 4 is reported when written.
    let (rs, es) = records_with_membership(4, 4, &[4]);
    e.append(2, rs, es, 0).unwrap();
    assert_eq!(
        names(&drain(&mut e)),
        ["entries 1", "membership 4", "write 4..=4"]
    );
}

#[test]
fn only_the_active_session_writes_and_teaches_the_commit() {
    let mut e = attached();
    e.handle(FollowerInput::SessionOpened(2));
    let (rs, es) = records(1, 2);
    assert_eq!(e.append(2, rs, es, 9), Err(AppendRefused::NotActive));
    e.handle(FollowerInput::Commit {
        session: 2,
        commit: 9,
    });
    assert_eq!(e.progress().commit, 0);
    e.handle(FollowerInput::Commit {
        session: 1,
        commit: 9,
    });
    assert_eq!(e.progress().commit, 9);
    let (rs, es) = records(2, 3);
    assert!(
        matches!(e.append(1, rs, es, 0), Err(AppendRefused::Invalid(_))),
        "not contiguous with the log end"
    );
    assert_eq!(e.progress().log_end, 0, "nothing of a refused batch kept");
}

#[test]
fn a_new_session_attaches_after_the_write_and_without_the_undurable_tail() {
    let mut e = attached();
    let (rs, es) = records(1, 3);
    e.append(1, rs, es, 0).unwrap();
    let (rs, es) = records(4, 6);
    e.append(1, rs, es, 0).unwrap();
    drain(&mut e);
    e.handle(FollowerInput::SessionOpened(2));
    e.handle(FollowerInput::Attach {
        req: 5,
        session: 2,
        leader: LEADER,
        epoch: 1,
    });
    assert!(drain(&mut e).is_empty(), "waits for the write in flight");
    let (rs, es) = records(7, 7);
    assert_eq!(
        e.append(1, rs, es, 0),
        Err(AppendRefused::NotActive),
        "no more writes once an attach waits"
    );
    e.handle(FollowerInput::Written(Ok(3)));
    assert_eq!(
        names(&drain(&mut e)),
        ["durable s1 3", "stop s1", "attached r5 Ok((3, 1))"]
    );
    assert!(
        matches!(e.poll_store_event(), Some(StoreEvent::Truncated(3))),
        "the store drops the queued 4..=6 it was given"
    );
    assert_eq!(e.progress().log_end, 3);
}

#[test]
fn a_truncation_waits_and_stops_at_the_durable_commit() {
    let mut e = durable_to_5();
    e.handle(FollowerInput::Commit {
        session: 1,
        commit: 3,
    });
    e.handle(FollowerInput::Truncate {
        req: 1,
        session: 1,
        to: 2,
    });
    assert_eq!(
        names(&drain(&mut e)),
        ["reset r1 Err(\"refusing to truncate to 2: entries up to 3 are committed here\")"]
    );
    e.handle(FollowerInput::Truncate {
        req: 2,
        session: 1,
        to: 4,
    });
    assert_eq!(names(&drain(&mut e)), ["truncate 4"]);
    let (rs, es) = records(6, 6);
    assert_eq!(e.append(1, rs, es, 0), Err(AppendRefused::NotActive));
    let mut after = EpochIndex::new(0, 0);
    for o in 1..=4 {
        after.append(o, 1).unwrap();
    }
    e.handle(FollowerInput::Truncated(Ok(after)));
    assert_eq!(names(&drain(&mut e)), ["reset r2 Ok((4, 1))"]);
    assert!(matches!(
        e.poll_store_event(),
        Some(StoreEvent::Truncated(4))
    ));
    assert_eq!(
        e.progress(),
        LogProgress {
            log_end: 4,
            durable: 4,
            commit: 3
        }
    );
}

#[test]
fn a_busy_store_holds_resets_back_instead_of_stopping_the_follower() {
    let mut e = durable_to_5();
    let mut log = EpochIndex::new(0, 0);
    for o in 1..=5 {
        log.append(o, 1).unwrap();
    }
    // The store takes nothing: every truncation waits in the outbox.
    for req in 0..MAX_STORE_OUTBOX as u64 {
        e.handle(FollowerInput::Truncate {
            req,
            session: 1,
            to: 5,
        });
        assert_eq!(names(&drain(&mut e)), ["truncate 5"]);
        e.handle(FollowerInput::Truncated(Ok(log.clone())));
        assert_eq!(names(&drain(&mut e)), [format!("reset r{req} Ok((5, 1))")]);
    }
    e.handle(FollowerInput::Truncate {
        req: 99,
        session: 1,
        to: 5,
    });
    let refused = names(&drain(&mut e));
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].starts_with("reset r99 Err(\"the metadata store has not taken"),
        "{refused:?}"
    );
    let (rs, es) = records(6, 6);
    assert_eq!(
        e.append(1, rs.clone(), es.clone(), 0),
        Err(AppendRefused::StoreBehind)
    );
    assert!(
        !e.has_failed(),
        "a busy store never stops a healthy follower"
    );
    // The store catches up: everything works again.
    let mut taken = 0;
    while let Some(ev) = e.poll_store_event() {
        assert!(matches!(ev, StoreEvent::Truncated(5)));
        taken += 1;
    }
    assert_eq!(taken, MAX_STORE_OUTBOX);
    e.append(1, rs, es, 0).unwrap();
    assert_eq!(names(&drain(&mut e)), ["entries 1", "write 6..=6"]);
}

#[test]
fn a_store_that_cannot_take_an_event_keeps_it_first() {
    let mut e = durable_to_5();
    e.handle(FollowerInput::Truncate {
        req: 1,
        session: 1,
        to: 3,
    });
    drain(&mut e);
    let mut log = EpochIndex::new(0, 0);
    for o in 1..=3 {
        log.append(o, 1).unwrap();
    }
    e.handle(FollowerInput::Truncated(Ok(log)));
    drain(&mut e);
    let ev = e.poll_store_event().unwrap();
    e.store_busy(ev);
    assert!(e.store_behind());
    let (rs, es) = records(4, 4);
    assert_eq!(e.append(1, rs, es, 0), Err(AppendRefused::StoreBehind));
    assert!(matches!(
        e.poll_store_event(),
        Some(StoreEvent::Truncated(3))
    ));
    assert!(e.poll_store_event().is_none());
}

fn snapshot_input(req: RequestId, offset: u64, epoch: u64) -> FollowerInput {
    FollowerInput::Snapshot {
        req,
        session: 1,
        offset,
        epoch,
        bytes: bytes::Bytes::from_static(b"snap"),
    }
}

#[test]
fn a_snapshot_over_a_diverged_log_replaces_it() {
    let mut e = durable_to_5();
    e.handle(snapshot_input(1, 3, 2));
    assert_eq!(names(&drain(&mut e)), ["install 3 replace=true"]);
    e.handle(snapshot_input(2, 4, 2));
    assert!(drain(&mut e).is_empty(), "one reset at a time");
    let snap = Snapshot {
        offset: 3,
        epoch: 2,
        state: MetadataState::new(),
    };
    e.handle(FollowerInput::SnapshotInstalled(Ok((
        EpochIndex::new(3, 2),
        Box::new(snap),
    ))));
    assert_eq!(
        names(&drain(&mut e)),
        ["reset r1 Ok((3, 2))", "install 4 replace=false"]
    );
    assert!(matches!(e.poll_store_event(), Some(StoreEvent::Snapshot(s)) if s.offset == 3));
    assert_eq!(e.progress().commit, 3, "a snapshot holds committed entries");
}

#[test]
fn a_matching_snapshot_keeps_the_suffix() {
    let mut e = durable_to_5();
    e.handle(snapshot_input(1, 3, 1));
    assert_eq!(names(&drain(&mut e)), ["install 3 replace=false"]);
}

#[test]
fn a_bad_snapshot_is_refused_and_a_failed_disk_fail_stops() {
    let mut e = durable_to_5();
    e.handle(snapshot_input(1, 3, 1));
    drain(&mut e);
    e.handle(FollowerInput::SnapshotInstalled(Err(ResetError::Invalid(
        "bad bytes".into(),
    ))));
    assert_eq!(names(&drain(&mut e)), ["reset r1 Err(\"bad bytes\")"]);
    assert!(!e.has_failed());
    assert!(e.poll_store_event().is_none());

    e.handle(snapshot_input(2, 3, 1));
    drain(&mut e);
    e.handle(FollowerInput::SnapshotInstalled(Err(ResetError::Storage(
        "EIO".into(),
    ))));
    assert_eq!(
        names(&drain(&mut e)),
        [
            "stop s1",
            "fail-stop",
            "reset r2 Err(\"resetting the log failed: EIO\")"
        ]
    );
    assert!(e.has_failed());
}

#[test]
fn a_failed_write_fail_stops_and_nothing_touches_the_log_after_it() {
    let mut e = attached();
    e.handle(FollowerInput::SessionOpened(2));
    let (rs, es) = records(1, 3);
    e.append(1, rs, es, 0).unwrap();
    e.handle(FollowerInput::Truncate {
        req: 4,
        session: 1,
        to: 0,
    });
    drain(&mut e);
    e.handle(FollowerInput::Written(Err(WriteError::Failed(
        "EIO".into(),
    ))));
    assert_eq!(
        names(&drain(&mut e)),
        [
            "stop s1",
            "stop s2",
            "reset r4 Err(\"WAL write up to offset 3 failed: EIO\")",
            "fail-stop"
        ]
    );
    e.handle(FollowerInput::Attach {
        req: 5,
        session: 2,
        leader: LEADER,
        epoch: 1,
    });
    assert_eq!(
        names(&drain(&mut e)),
        ["attached r5 Err(Storage(\"WAL write up to offset 3 failed: EIO\"))"]
    );
    let (rs, es) = records(1, 1);
    assert_eq!(e.append(1, rs, es, 0), Err(AppendRefused::NotActive));
    // A failed node is never turned back into a follower, nor leads.
    e.handle(FollowerInput::Follow {
        epochs: EpochIndex::new(0, 0),
        meta: meta(2, Some(ME)),
        commit: 0,
    });
    assert!(e.has_failed());
    e.handle(FollowerInput::Release { req: 6 });
    let released = names(&drain(&mut e));
    assert_eq!(
        released,
        ["released r6 Err(\"WAL write up to offset 3 failed: EIO\")"]
    );
}

#[test]
fn a_full_disk_queue_drops_the_unwritten_tail_and_goes_on() {
    let mut e = durable_to_5();
    let (rs, es) = records(6, 8);
    e.append(1, rs, es, 0).unwrap();
    drain(&mut e);
    e.handle(FollowerInput::Written(Err(WriteError::QueueFull)));
    assert!(drain(&mut e).is_empty());
    assert!(!e.has_failed(), "transient");
    assert!(matches!(
        e.poll_store_event(),
        Some(StoreEvent::Truncated(5))
    ));
    assert_eq!(e.progress().log_end, 5);
    let (rs, es) = records(9, 9);
    assert!(
        matches!(e.append(1, rs, es, 0), Err(AppendRefused::Invalid(_))),
        "the session's next batch does not follow: it closes and the leader resends"
    );
    let (rs, es) = records(6, 6);
    e.append(1, rs, es, 0).unwrap();
}

#[test]
fn release_ends_the_sessions_and_answers_after_the_write() {
    let mut e = attached();
    e.handle(FollowerInput::SessionOpened(2));
    let (rs, es) = records(1, 3);
    e.append(1, rs, es, 7).unwrap();
    let (rs, es) = records(4, 4);
    e.append(1, rs, es, 7).unwrap();
    drain(&mut e);
    e.handle(FollowerInput::Release { req: 9 });
    assert_eq!(names(&drain(&mut e)), ["stop s1", "stop s2"]);
    assert!(e.is_leading());
    e.handle(FollowerInput::Attach {
        req: 3,
        session: 2,
        leader: LEADER,
        epoch: 1,
    });
    assert_eq!(names(&drain(&mut e)), ["attached r3 Err(NotFollower)"]);
    e.handle(FollowerInput::Written(Ok(3)));
    assert_eq!(
        names(&drain(&mut e)),
        ["released r9 Ok((3, 7))"],
        "the log to lead with is what is durable"
    );
    e.handle(FollowerInput::Follow {
        epochs: EpochIndex::new(0, 0),
        meta: meta(2, Some(3)),
        commit: 0,
    });
    assert!(!e.is_leading());
    assert_eq!(e.meta().current_epoch, 2);
}

#[test]
fn an_attach_whose_session_ended_while_waiting_is_refused() {
    let mut e = attached();
    let (rs, es) = records(1, 1);
    e.append(1, rs, es, 0).unwrap();
    drain(&mut e);
    e.handle(FollowerInput::SessionOpened(2));
    e.handle(FollowerInput::Attach {
        req: 3,
        session: 2,
        leader: LEADER,
        epoch: 1,
    });
    e.handle(FollowerInput::SessionGone(2));
    e.handle(FollowerInput::Written(Ok(1)));
    assert_eq!(
        names(&drain(&mut e)),
        ["durable s1 1", "attached r3 Err(NotFollower)"]
    );
    assert_eq!(e.active(), Some(1), "the old session stays active");
}

#[test]
fn a_node_started_as_leader_lets_no_session_attach() {
    let mut e = ReplicaListenerEngine::leading(ME, EpochIndex::new(0, 0), meta(3, Some(ME)), 0);
    assert!(e.is_leading());
    e.handle(FollowerInput::SessionOpened(1));
    e.handle(FollowerInput::Attach {
        req: 1,
        session: 1,
        leader: LEADER,
        epoch: 4,
    });
    assert_eq!(
        names(&drain(&mut e)),
        ["attached r1 Err(NotFollower)"],
        "not even a higher epoch persists while leading"
    );
}

#[test]
fn a_newer_epoch_persisted_elsewhere_ends_the_active_session() {
    let mut e = attached();
    e.handle(FollowerInput::MetaChanged(meta(1, Some(LEADER))));
    assert!(drain(&mut e).is_empty(), "not newer: nothing changes");
    assert_eq!(e.active(), Some(1));
    e.handle(FollowerInput::MetaChanged(meta(2, Some(3))));
    assert_eq!(names(&drain(&mut e)), ["stop s1"]);
    assert_eq!(e.active(), None);
    // The old leader (epoch 1) is now stale here.
    e.handle(FollowerInput::SessionOpened(2));
    e.handle(FollowerInput::Attach {
        req: 4,
        session: 2,
        leader: LEADER,
        epoch: 1,
    });
    assert_eq!(
        names(&drain(&mut e)),
        ["attached r4 Err(StaleEpoch { current: 2, leader: Some(3) })"]
    );
}

#[test]
fn a_votes_fence_raises_the_epoch_answers_the_log_end_and_is_refused_while_leading() {
    let mut e = ReplicaListenerEngine::new(ME, log(), meta(3, Some(LEADER)), 0);
    assert_eq!(e.fence(5), Ok((3, 20)));
    assert_eq!(e.meta().current_epoch, 5);
    assert_eq!(e.meta().leader, None);
    // A lower epoch changes nothing.
    assert_eq!(e.fence(4), Ok((3, 20)));
    assert_eq!(e.meta().current_epoch, 5);
    // Released for a step-up: there is no follower log to vote with.
    drain(&mut e);
    e.handle(FollowerInput::Release { req: 1 });
    drain(&mut e);
    assert_eq!(e.fence(6), Err(FenceRefused::Leading));
    assert_eq!(e.meta().current_epoch, 5, "refused: nothing changed");
}
