//! Each input to the store engine and what it applies and asks for.

use super::*;
use crate::command::Command;

/// Records what was applied.
#[derive(Default)]
struct Sink {
    applied: Vec<u64>,
    resets: Vec<u64>,
}

impl ApplySink for Sink {
    fn applied(&mut self, state: &MetadataState, entry: Entry) {
        assert_eq!(
            state.applied_offset(),
            entry.offset,
            "the state right after the entry"
        );
        self.applied.push(entry.offset);
    }
    fn reset(&mut self, state: &MetadataState) {
        self.resets.push(state.applied_offset());
    }
}

fn create(name: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        partition_count: 1,
        replication_factor: 1,
    }
}

fn entry(offset: u64) -> Entry {
    Entry {
        offset,
        epoch: 1,
        command: create(&format!("t{offset}")),
    }
}

fn record(offset: u64) -> Record {
    Record::encode(&entry(offset)).expect("encodes")
}

fn progress(commit: u64, durable: u64) -> LogProgress {
    LogProgress {
        log_end: durable,
        durable,
        commit,
    }
}

fn drain(e: &mut MetadataStoreEngine) -> Vec<StoreAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn follower() -> MetadataStoreEngine {
    MetadataStoreEngine::new(2, MetadataState::new(), 1000, progress(0, 0))
}

fn leader_adm() -> Admission {
    Admission {
        role: NodeRole::Leader,
        isr_len: 3,
        min_insync: 2,
    }
}

/// Node 1 leading epoch 1 over an empty log.
fn leader() -> MetadataStoreEngine {
    let mut e = MetadataStoreEngine::new(1, MetadataState::new(), 1000, progress(0, 0));
    e.handle(
        StoreInput::Lead {
            epoch: 1,
            appended: MetadataState::new(),
            next_offset: 1,
        },
        &mut Sink::default(),
    );
    e
}

#[test]
fn admission_refuses_with_the_reason_and_changes_nothing() {
    let e = leader();
    let refused = |adm: Admission, acks_all| e.admit(create("a"), acks_all, false, adm);
    assert_eq!(
        refused(
            Admission {
                role: NodeRole::Follower { leader: Some(3) },
                ..leader_adm()
            },
            false
        )
        .unwrap_err(),
        AdmitRefused::NotLeader { leader: Some(3) }
    );
    assert_eq!(
        refused(
            Admission {
                role: NodeRole::Failed,
                ..leader_adm()
            },
            false
        )
        .unwrap_err(),
        AdmitRefused::Failed
    );
    assert_eq!(
        refused(
            Admission {
                isr_len: 1,
                ..leader_adm()
            },
            true
        )
        .unwrap_err(),
        AdmitRefused::NotEnoughReplicas {
            isr: 1,
            required: 2
        }
    );
    assert!(
        refused(
            Admission {
                isr_len: 1,
                ..leader_adm()
            },
            false
        )
        .is_ok(),
        "acks below all do not need the ISR"
    );
    assert!(matches!(
        e.admit(
            Command::DeleteTopic {
                name: "nope".into()
            },
            false,
            false,
            leader_adm()
        ),
        Err(AdmitRefused::Invalid(_))
    ));
    let ok = e.admit(create("a"), true, false, leader_adm()).unwrap();
    assert_eq!((ok.entry.offset, ok.entry.epoch), (1, 1));
    assert!(
        e.admit(create("a"), true, false, leader_adm()).is_ok(),
        "admit alone changes nothing"
    );
}

#[test]
fn proposals_in_a_row_are_validated_against_each_other() {
    let mut e = leader();
    let a = e.admit(create("a"), false, false, leader_adm()).unwrap();
    e.appended(a.entry);
    assert!(matches!(
        e.admit(create("a"), false, false, leader_adm()),
        Err(AdmitRefused::Invalid(_))
    ));
    let b = e.admit(create("b"), false, false, leader_adm()).unwrap();
    assert_eq!(b.entry.offset, 2);
    assert_eq!(e.pending_len(), 1);
}

#[test]
fn too_much_uncommitted_is_refused_as_overloaded() {
    let mut e = MetadataStoreEngine::new(1, MetadataState::new(), 1000, progress(0, 0));
    e.handle(
        StoreInput::Lead {
            epoch: 1,
            appended: MetadataState::new(),
            next_offset: MAX_UNCOMMITTED + 1,
        },
        &mut Sink::default(),
    );
    assert!(matches!(
        e.admit(create("a"), false, false, leader_adm()),
        Err(AdmitRefused::Uncommitted { .. })
    ));
    e.handle(StoreInput::Progress(progress(1, 1)), &mut Sink::default());
    assert!(e.admit(create("a"), false, false, leader_adm()).is_ok());
}

#[test]
fn only_committed_and_durable_entries_apply_in_order() {
    let mut e = follower();
    let mut sink = Sink::default();
    e.handle(StoreInput::Entries((1..=5).map(entry).collect()), &mut sink);
    assert!(sink.applied.is_empty());
    e.handle(StoreInput::Progress(progress(4, 2)), &mut sink);
    assert_eq!(sink.applied, [1, 2], "durable here up to 2");
    e.handle(StoreInput::Progress(progress(4, 5)), &mut sink);
    assert_eq!(sink.applied.len(), 4, "committed up to 4");
    assert!(drain(&mut e).is_empty(), "all from memory");
}

#[test]
fn a_gap_is_read_back_from_the_wal_one_read_at_a_time() {
    let mut e = follower();
    let mut sink = Sink::default();
    // 1..=3 were dropped (the store was busy); 4..=5 arrived.
    e.handle(StoreInput::Entries(vec![entry(4), entry(5)]), &mut sink);
    e.handle(StoreInput::Progress(progress(5, 5)), &mut sink);
    let read = drain(&mut e);
    assert!(
        matches!(
            read[..],
            [StoreAction::ReadWal {
                from: 1,
                count: 3,
                upto: 3
            }]
        ),
        "{read:?}"
    );
    e.handle(StoreInput::Progress(progress(5, 5)), &mut sink);
    assert!(drain(&mut e).is_empty(), "one read at a time");
    e.handle(
        StoreInput::WalRead {
            from: 1,
            upto: 3,
            result: Ok((1..=3).map(record).collect()),
        },
        &mut sink,
    );
    let offsets: Vec<u64> = sink.applied.to_vec();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
}

#[test]
fn a_corrupt_committed_record_fail_stops_and_nothing_after_it_applies() {
    let mut e = follower();
    let mut sink = Sink::default();
    e.handle(StoreInput::Progress(progress(4, 4)), &mut sink);
    drain(&mut e);
    let mut bad = record(2);
    let mut bytes = bad.bytes.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bad.bytes = bytes.into();
    e.handle(
        StoreInput::WalRead {
            from: 1,
            upto: 4,
            result: Ok(vec![record(1), bad, record(3), record(4)]),
        },
        &mut sink,
    );
    assert_eq!(sink.applied, [1], "stops at the corrupt record");
    let actions = drain(&mut e);
    assert!(
        matches!(&actions[..], [StoreAction::FailStop(r)] if r.contains("committed record 2")),
        "{actions:?}"
    );
    assert!(e.has_failed());
    // Nothing more is applied or read, whatever comes in.
    e.handle(StoreInput::Entries((2..=6).map(entry).collect()), &mut sink);
    e.handle(StoreInput::Progress(progress(6, 6)), &mut sink);
    assert_eq!(sink.applied.len(), 1);
    assert!(drain(&mut e).is_empty());
    assert!(matches!(
        leader_failed_admit(&mut e),
        Err(AdmitRefused::Failed) | Err(AdmitRefused::NotLeader { .. })
    ));
}

fn leader_failed_admit(e: &mut MetadataStoreEngine) -> Result<Admitted, AdmitRefused> {
    e.handle(
        StoreInput::Lead {
            epoch: 2,
            appended: MetadataState::new(),
            next_offset: 7,
        },
        &mut Sink::default(),
    );
    e.admit(create("x"), false, false, leader_adm())
}

#[test]
fn failed_reads_are_retried_a_bounded_number_of_times() {
    let mut e = follower();
    let mut sink = Sink::default();
    e.handle(StoreInput::Progress(progress(3, 3)), &mut sink);
    drain(&mut e);
    for i in 1..MAX_READ_FAILURES {
        e.handle(
            StoreInput::WalRead {
                from: 1,
                upto: 3,
                result: Err("EIO".into()),
            },
            &mut sink,
        );
        let a = drain(&mut e);
        assert!(
            matches!(a[..], [StoreAction::RetryReadLater]),
            "try {i}: {a:?}"
        );
        e.handle(StoreInput::RetryRead, &mut sink);
        assert!(matches!(
            drain(&mut e)[..],
            [StoreAction::ReadWal { from: 1, .. }]
        ));
    }
    e.handle(
        StoreInput::WalRead {
            from: 1,
            upto: 3,
            result: Err("EIO".into()),
        },
        &mut sink,
    );
    assert!(matches!(drain(&mut e)[..], [StoreAction::FailStop(_)]));
    assert!(sink.applied.is_empty());
}

#[test]
fn a_truncation_drops_queued_entries_after_it() {
    let mut e = follower();
    let mut sink = Sink::default();
    e.handle(StoreInput::Entries((1..=5).map(entry).collect()), &mut sink);
    e.handle(StoreInput::Truncated { to: 3 }, &mut sink);
    assert_eq!(e.pending_len(), 3);
    // The new leader's 4 and 5 arrive.
    let mut four = entry(4);
    four.epoch = 2;
    e.handle(StoreInput::Entries(vec![four]), &mut sink);
    e.handle(StoreInput::Progress(progress(4, 4)), &mut sink);
    assert_eq!(sink.applied.len(), 4);
    assert_eq!(e.state().applied_epoch(), 2);
}

#[test]
fn an_installed_snapshot_replaces_the_state() {
    let mut e = follower();
    let mut sink = Sink::default();
    let mut state = MetadataState::new();
    for o in 1..=10 {
        state.apply(&entry(o)).unwrap();
    }
    e.handle(
        StoreInput::Entries((1..=12).map(entry).collect()),
        &mut sink,
    );
    e.handle(
        StoreInput::SnapshotInstalled(Box::new(Snapshot {
            offset: 10,
            epoch: 1,
            state,
        })),
        &mut sink,
    );
    assert_eq!(sink.resets, [10]);
    e.handle(StoreInput::Progress(progress(12, 12)), &mut sink);
    assert_eq!(sink.applied, [11, 12]);
}

#[test]
fn a_snapshot_is_taken_every_interval_and_a_failure_waits_another() {
    let mut e = MetadataStoreEngine::new(2, MetadataState::new(), 3, progress(0, 0));
    let mut sink = Sink::default();
    e.handle(StoreInput::Entries((1..=7).map(entry).collect()), &mut sink);
    e.handle(StoreInput::Progress(progress(3, 3)), &mut sink);
    let a = drain(&mut e);
    assert!(
        matches!(&a[..], [StoreAction::TakeSnapshot { snapshot, keep_from: 0 }] if snapshot.offset == 3),
        "{a:?}"
    );
    e.handle(
        StoreInput::SnapshotFailed {
            offset: 3,
            error: "ENOSPC".into(),
        },
        &mut sink,
    );
    e.handle(StoreInput::Progress(progress(5, 5)), &mut sink);
    assert!(drain(&mut e).is_empty(), "not retried on every apply pass");
    e.handle(StoreInput::Progress(progress(6, 6)), &mut sink);
    assert!(
        matches!(&drain(&mut e)[..], [StoreAction::TakeSnapshot { snapshot, .. }] if snapshot.offset == 6)
    );
}

#[test]
fn a_committed_entry_that_does_not_apply_fail_stops_and_applies_nothing_after() {
    let mut e = follower();
    let mut sink = Sink::default();
    let bad = Entry {
        offset: 1,
        epoch: 1,
        command: Command::DeleteTopic {
            name: "missing".into(),
        },
    };
    e.handle(StoreInput::Entries(vec![bad, entry(2)]), &mut sink);
    e.handle(StoreInput::Progress(progress(2, 2)), &mut sink);
    assert_eq!(sink.applied, Vec::<u64>::new());
    assert!(e.has_failed());
    let actions = drain(&mut e);
    assert!(
        matches!(&actions[..], [StoreAction::FailStop(reason)] if reason.contains("committed entry 1 does not apply")),
        "{actions:?}"
    );
}
