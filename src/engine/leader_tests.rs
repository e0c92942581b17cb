//! Each input and the exact actions it produces.

use std::time::{Duration, Instant};

use super::*;
use crate::replication::ReplicaSetTracker;

const LAG: Duration = Duration::from_secs(5);
const BUSY: Duration = Duration::from_secs(5);
/// Under `LAG`, so a waiting proposal times out before its ISR shrinks.
const TIMEOUT: Duration = Duration::from_secs(4);

/// Leader 1 of {1, 2, 3}, min_insync 2, epoch 1 starting at offset 1.
fn engine(t0: Instant) -> ReplicatorEngine {
    let tracker = ReplicaSetTracker::new(1, [2, 3], t0, LAG, 2, 1, 0, 0, 0);
    ReplicatorEngine::new(1, 1, tracker, BUSY, TIMEOUT)
}

fn drain(e: &mut ReplicatorEngine) -> Vec<LeaderAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn append(offset: u64, acks: Acks, proposal: ProposalId) -> LeaderInput {
    LeaderInput::Append {
        offset,
        acks,
        proposal: Some(proposal),
    }
}

fn ok(proposal: ProposalId, offset: u64) -> LeaderAction {
    LeaderAction::Resolve {
        proposal,
        offset,
        result: Ok(()),
    }
}

#[test]
fn one_write_in_flight_then_the_rest_as_one_batch() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle(t0, append(1, Acks::Leader, 10));
    assert_eq!(drain(&mut e), vec![LeaderAction::WriteWal { up_to: 1 }]);
    e.handle(t0, append(2, Acks::Leader, 11));
    e.handle(t0, append(3, Acks::None, 12));
    assert_eq!(
        drain(&mut e),
        vec![ok(12, 3)],
        "acks=none resolves at once; no second write while one is in flight"
    );
    e.handle(t0, LeaderInput::WalDurable { up_to: 1 });
    assert_eq!(
        drain(&mut e),
        vec![ok(10, 1), LeaderAction::WriteWal { up_to: 3 }],
        "acks=leader resolves on the leader's disk; the queued entries go in one write"
    );
    e.handle(t0, LeaderInput::WalDurable { up_to: 3 });
    assert_eq!(drain(&mut e), vec![ok(11, 2)]);
}

#[test]
fn acks_all_waits_for_a_majority_and_the_whole_isr() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle(
        t0,
        LeaderInput::Connected {
            peer: 2,
            matched: 0,
        },
    );
    e.handle(
        t0,
        LeaderInput::Connected {
            peer: 3,
            matched: 0,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![
            LeaderAction::IsrChanged {
                joined: vec![2],
                left: vec![],
                isr_len: 2
            },
            LeaderAction::IsrChanged {
                joined: vec![3],
                left: vec![],
                isr_len: 3
            },
        ]
    );
    e.handle(t0, append(1, Acks::All, 7));
    e.handle(t0, LeaderInput::WalDurable { up_to: 1 });
    assert_eq!(drain(&mut e), vec![LeaderAction::WriteWal { up_to: 1 }]);
    e.handle(t0, LeaderInput::Acked { peer: 2, offset: 1 });
    assert_eq!(
        drain(&mut e),
        vec![LeaderAction::Commit { offset: 1 }],
        "2 of 3 disks commit; acks=all still waits for node 3"
    );
    e.handle(t0, LeaderInput::Acked { peer: 3, offset: 1 });
    assert_eq!(drain(&mut e), vec![ok(7, 1)]);
}

#[test]
fn isr_shrinking_below_min_insync_answers_after_append() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    for peer in [2, 3] {
        e.handle(t0, LeaderInput::Connected { peer, matched: 0 });
    }
    e.handle(t0, append(1, Acks::All, 7));
    e.handle(t0, LeaderInput::WalDurable { up_to: 1 });
    e.handle(t0, LeaderInput::Acked { peer: 2, offset: 1 });
    drain(&mut e);
    // Node 2 (which has it) and node 3 (which does not) both drop: the
    // entry is committed (2 disks), the ISR is {1}, below min_insync.
    e.handle(t0, LeaderInput::Disconnected { peer: 3 });
    e.handle(t0, LeaderInput::Disconnected { peer: 2 });
    let actions = drain(&mut e);
    assert_eq!(
        actions,
        vec![
            LeaderAction::IsrChanged {
                joined: vec![],
                left: vec![3],
                isr_len: 2
            },
            ok(7, 1),
            LeaderAction::IsrChanged {
                joined: vec![],
                left: vec![2],
                isr_len: 1
            },
        ],
        "with 3 gone the ISR {{1, 2}} covers it and still meets min_insync"
    );

    // Now a write that only the leader has when the ISR is {1}: it never
    // commits (a lone leader is no majority), so it stays waiting.
    e.handle(t0, append(2, Acks::All, 8));
    e.handle(t0, LeaderInput::WalDurable { up_to: 2 });
    assert_eq!(drain(&mut e), vec![LeaderAction::WriteWal { up_to: 2 }]);
    assert_eq!(e.waiting(), (0, 1));
    // Node 2 comes back with it: committed, ISR {1, 2} again.
    e.handle(
        t0,
        LeaderInput::Connected {
            peer: 2,
            matched: 2,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![
            LeaderAction::IsrChanged {
                joined: vec![2],
                left: vec![],
                isr_len: 2
            },
            LeaderAction::Commit { offset: 2 },
            ok(8, 2),
        ]
    );
}

#[test]
fn acks_all_resolved_with_a_shrunk_isr_is_not_enough_replicas() {
    let t0 = Instant::now();
    // min_insync 3 of 3.
    let tracker = ReplicaSetTracker::new(1, [2, 3], t0, LAG, 3, 1, 0, 0, 0);
    let mut e = ReplicatorEngine::new(1, 1, tracker, BUSY, TIMEOUT);
    for peer in [2, 3] {
        e.handle(t0, LeaderInput::Connected { peer, matched: 0 });
    }
    e.handle(t0, append(1, Acks::All, 7));
    e.handle(t0, LeaderInput::WalDurable { up_to: 1 });
    e.handle(t0, LeaderInput::Acked { peer: 2, offset: 1 });
    drain(&mut e);
    e.handle(t0, LeaderInput::Disconnected { peer: 3 });
    assert_eq!(
        drain(&mut e),
        vec![
            LeaderAction::IsrChanged {
                joined: vec![],
                left: vec![3],
                isr_len: 2
            },
            LeaderAction::Resolve {
                proposal: 7,
                offset: 1,
                result: Err(LeaderError::NotEnoughReplicasAfterAppend {
                    offset: 1,
                    isr: 2,
                    required: 3
                })
            },
        ]
    );
}

#[test]
fn full_disk_queue_is_retried_on_tick_then_fails_after_the_limit() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle(t0, append(1, Acks::Leader, 10));
    assert_eq!(drain(&mut e), vec![LeaderAction::WriteWal { up_to: 1 }]);
    e.handle(t0, LeaderInput::WalBusy);
    e.handle(t0, append(2, Acks::Leader, 11));
    assert_eq!(drain(&mut e), vec![], "no write until the retry");
    assert_eq!(e.failed(), None, "a full queue is transient");
    e.handle(t0 + Duration::from_millis(10), LeaderInput::Tick);
    assert_eq!(
        drain(&mut e),
        vec![LeaderAction::WriteWal { up_to: 2 }],
        "the retry covers everything not durable"
    );
    e.handle(
        t0 + Duration::from_millis(10),
        LeaderInput::WalDurable { up_to: 2 },
    );
    assert_eq!(drain(&mut e), vec![ok(10, 1), ok(11, 2)]);

    // Busy for longer than the limit: fail-stop, every waiter answered.
    e.handle(t0, append(3, Acks::Leader, 12));
    drain(&mut e);
    let t1 = t0 + Duration::from_secs(1);
    e.handle(t1, LeaderInput::WalBusy);
    e.handle(t1 + BUSY / 2, LeaderInput::Tick);
    assert_eq!(drain(&mut e), vec![LeaderAction::WriteWal { up_to: 3 }]);
    e.handle(t1 + BUSY, LeaderInput::WalBusy);
    let why = format!("the disk queue stayed full for {BUSY:?}");
    assert_eq!(
        drain(&mut e),
        vec![
            LeaderAction::Failed {
                reason: why.clone()
            },
            LeaderAction::Resolve {
                proposal: 12,
                offset: 3,
                result: Err(LeaderError::Storage(why.clone()))
            },
        ]
    );
    e.handle(t1 + BUSY, append(4, Acks::None, 13));
    assert_eq!(
        drain(&mut e),
        vec![LeaderAction::Resolve {
            proposal: 13,
            offset: 4,
            result: Err(LeaderError::Storage(why))
        }],
        "a failed leader takes nothing"
    );
}

#[test]
fn a_proposal_past_its_deadline_times_out_on_the_next_tick() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    for peer in [2, 3] {
        e.handle(t0, LeaderInput::Connected { peer, matched: 0 });
    }
    e.handle(t0, append(1, Acks::All, 7));
    e.handle(t0 + Duration::from_millis(300), append(2, Acks::Leader, 8));
    e.handle(t0 + Duration::from_secs(2), append(3, Acks::All, 9));
    drain(&mut e);
    e.handle(t0 + TIMEOUT - Duration::from_millis(1), LeaderInput::Tick);
    assert_eq!(drain(&mut e), vec![], "not before the deadline");
    let timed_out = |proposal, offset| LeaderAction::Resolve {
        proposal,
        offset,
        result: Err(LeaderError::TimedOut { timeout: TIMEOUT }),
    };
    e.handle(t0 + TIMEOUT + Duration::from_millis(500), LeaderInput::Tick);
    assert_eq!(
        drain(&mut e),
        vec![timed_out(7, 1), timed_out(8, 2)],
        "both queues, in offset order; offset 3 is not due yet"
    );
    assert_eq!(e.waiting(), (0, 1));
    // An expired proposal is answered once: its ack resolves nothing.
    e.handle(t0 + TIMEOUT, LeaderInput::WalDurable { up_to: 1 });
    e.handle(t0 + TIMEOUT, LeaderInput::WalDurable { up_to: 3 });
    e.handle(t0 + TIMEOUT, LeaderInput::Acked { peer: 2, offset: 3 });
    e.handle(t0 + TIMEOUT, LeaderInput::Acked { peer: 3, offset: 3 });
    assert_eq!(
        drain(&mut e),
        vec![
            LeaderAction::WriteWal { up_to: 3 },
            LeaderAction::Commit { offset: 3 },
            ok(9, 3)
        ]
    );
}

#[test]
fn storage_failure_answers_every_waiter_once() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle(t0, append(1, Acks::All, 1));
    e.handle(t0, append(2, Acks::Leader, 2));
    drain(&mut e);
    e.handle(
        t0,
        LeaderInput::StorageFailed {
            reason: "EIO".into(),
        },
    );
    e.handle(
        t0,
        LeaderInput::StorageFailed {
            reason: "again".into(),
        },
    );
    let err = |p, o| LeaderAction::Resolve {
        proposal: p,
        offset: o,
        result: Err(LeaderError::Storage("EIO".into())),
    };
    // `Failed` before the answers: the node is marked failed before a
    // proposer can hear of it.
    assert_eq!(
        drain(&mut e),
        vec![
            LeaderAction::Failed {
                reason: "EIO".into()
            },
            err(1, 1),
            err(2, 2),
        ]
    );
    e.handle(t0, LeaderInput::WalDurable { up_to: 2 });
    assert_eq!(drain(&mut e), vec![], "nothing resolves twice");
}

#[test]
fn stop_answers_waiters_shutting_down() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle(t0, append(1, Acks::All, 1));
    drain(&mut e);
    e.handle(t0, LeaderInput::Stop);
    assert_eq!(
        drain(&mut e),
        vec![LeaderAction::Resolve {
            proposal: 1,
            offset: 1,
            result: Err(LeaderError::ShuttingDown)
        }]
    );
}

/// A leader that steps down tells its waiters so at once (they do not hang
/// until the request timeout), and that the outcome is open.
#[test]
fn a_step_down_answers_waiters_that_the_leader_stepped_down() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle(t0, append(1, Acks::All, 1));
    e.handle(t0, append(2, Acks::Leader, 2));
    drain(&mut e);
    e.handle(t0, LeaderInput::StepDown);
    assert_eq!(
        drain(&mut e),
        vec![
            LeaderAction::Resolve {
                proposal: 1,
                offset: 1,
                result: Err(LeaderError::SteppedDown)
            },
            LeaderAction::Resolve {
                proposal: 2,
                offset: 2,
                result: Err(LeaderError::SteppedDown)
            }
        ]
    );
}
