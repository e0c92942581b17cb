use proptest::prelude::*;

use super::*;

fn member(id: NodeId) -> Member {
    Member {
        node_id: id,
        directory_id: DirectoryId([id as u8; 16]),
        replication_addr: format!("127.0.0.1:{}", 7000 + id),
        http_addr: format!("127.0.0.1:{}", 8000 + id),
        kafka_addr: format!("127.0.0.1:{}", 9000 + id),
    }
}

fn set(voters: &[NodeId], learners: &[NodeId]) -> Membership {
    Membership::new(
        voters.iter().map(|&v| member(v)),
        learners.iter().map(|&l| member(l)),
    )
    .unwrap()
}

fn ids(m: &Membership) -> (Vec<NodeId>, Vec<NodeId>) {
    (
        m.voter_ids().collect(),
        m.learners().map(|l| l.node_id).collect(),
    )
}

// ---- Membership ---------------------------------------------------------

#[test]
fn a_membership_is_checked_when_built() {
    assert_eq!(
        Membership::new(vec![], vec![member(1)]),
        Err(MembershipError::NoVoters)
    );
    assert_eq!(
        Membership::new(vec![member(1)], vec![member(1)]),
        Err(MembershipError::Duplicate { node_id: 1 })
    );
    assert_eq!(
        Membership::new(vec![member(0)], vec![]),
        Err(MembershipError::ZeroId)
    );
    let mut bad = member(2);
    bad.replication_addr = String::new();
    assert!(matches!(
        Membership::new(vec![member(1), bad], vec![]),
        Err(MembershipError::BadAddress {
            node_id: 2,
            which: "replication",
            ..
        })
    ));
    let mut long = member(2);
    long.http_addr = "x".repeat(MAX_ADDR_BYTES + 1);
    assert!(matches!(
        Membership::new(vec![member(1), long], vec![]),
        Err(MembershipError::BadAddress {
            node_id: 2,
            which: "http",
            ..
        })
    ));
    // A node without an HTTP API or a Kafka front.
    let mut embedded = member(2);
    embedded.http_addr = String::new();
    embedded.kafka_addr = String::new();
    assert!(Membership::new(vec![member(1), embedded], vec![]).is_ok());
    // A Kafka address is what a client can connect to, or nothing.
    for bad_kafka in ["kafka", "host:", ":9092", "host:0", "host:65536", "[]:9092"] {
        let mut m = member(2);
        m.kafka_addr = bad_kafka.into();
        assert_eq!(
            Membership::new(vec![member(1)], vec![m]),
            Err(MembershipError::BadKafkaAddress {
                node_id: 2,
                addr: bad_kafka.into()
            }),
            "{bad_kafka}"
        );
    }
    for good_kafka in ["broker-2.example:9092", "10.0.0.2:9093", "[::1]:9092"] {
        let mut m = member(2);
        m.kafka_addr = good_kafka.into();
        assert!(
            Membership::new(vec![member(1)], vec![m]).is_ok(),
            "{good_kafka}"
        );
    }
    let many = (1..=MAX_MEMBERS as u64 + 1).map(member);
    assert!(matches!(
        Membership::new(many, vec![]),
        Err(MembershipError::TooMany { .. })
    ));
    let ok = set(&[3, 1, 2], &[4]);
    assert_eq!(ids(&ok), (vec![1, 2, 3], vec![4]));
    assert_eq!(ok.majority(), 2);
    assert_eq!(ok.member(4).map(|(_, r)| r), Some(MemberRole::Learner));
    assert!(ok.is_voter(2) && !ok.is_voter(4) && !ok.is_voter(9));
}

#[test]
fn the_quorum_offset_counts_voters_only() {
    let m = set(&[1, 2, 3], &[4]);
    let durable = |id: NodeId| match id {
        1 => 10,
        2 => 5,
        3 => 7,
        4 => 100,
        _ => 0,
    };
    assert_eq!(m.quorum_offset(durable), 7);
    let five = set(&[1, 2, 3, 4, 5], &[]);
    assert_eq!(five.quorum_offset(|id| id * 10), 30);
    assert!(m.is_quorum([1, 3]));
    assert!(
        !m.is_quorum([1, 4, 4, 9]),
        "a learner or a stranger is not a vote"
    );
    assert!(!m.is_quorum([1, 1]), "a voter counts once");
}

#[test]
fn a_membership_round_trips_and_a_tampered_one_is_refused() {
    let m = set(&[1, 2, 3], &[4]);
    let bytes = rmp_serde::to_vec(&m).unwrap();
    let back: Membership = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, m);

    // The same bytes with no voter, and with a member filed under another id.
    let no_voters = rmp_serde::to_vec(&serde_json_like(&[], &[(4, 4)])).unwrap();
    let e = rmp_serde::from_slice::<Membership>(&no_voters).unwrap_err();
    assert!(e.to_string().contains("at least one voter"), "{e}");
    let misfiled = rmp_serde::to_vec(&serde_json_like(&[(1, 2)], &[])).unwrap();
    let e = rmp_serde::from_slice::<Membership>(&misfiled).unwrap_err();
    assert!(e.to_string().contains("names node 2"), "{e}");
}

#[test]
fn a_member_written_before_kafka_addresses_reads_with_none() {
    // The member as the log format had it before `kafka_addr`: records
    // encode structs as arrays (4 elements then), snapshots as maps.
    #[derive(serde::Serialize)]
    struct OldMember {
        node_id: NodeId,
        directory_id: DirectoryId,
        replication_addr: String,
        http_addr: String,
    }
    #[derive(serde::Serialize)]
    struct OldWire {
        voters: std::collections::BTreeMap<NodeId, OldMember>,
        learners: std::collections::BTreeMap<NodeId, OldMember>,
    }
    let old = |id: NodeId| OldMember {
        node_id: id,
        directory_id: DirectoryId([id as u8; 16]),
        replication_addr: format!("127.0.0.1:{}", 7000 + id),
        http_addr: format!("127.0.0.1:{}", 8000 + id),
    };
    let wire = OldWire {
        voters: [(1, old(1)), (2, old(2))].into_iter().collect(),
        learners: [(3, old(3))].into_iter().collect(),
    };
    let mut want = set(&[1, 2], &[3]);
    want = Membership::new(
        want.voters().map(|m| Member {
            kafka_addr: String::new(),
            ..m.clone()
        }),
        want.learners().map(|m| Member {
            kafka_addr: String::new(),
            ..m.clone()
        }),
    )
    .unwrap();
    for bytes in [
        rmp_serde::to_vec(&wire).unwrap(),
        rmp_serde::to_vec_named(&wire).unwrap(),
    ] {
        let back: Membership = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, want);
    }
    // A member without a Kafka address encodes as before, byte for byte:
    // a node of the previous version reads it.
    assert_eq!(
        rmp_serde::to_vec(&want).unwrap(),
        rmp_serde::to_vec(&wire).unwrap()
    );
    assert_eq!(
        rmp_serde::to_vec_named(&want).unwrap(),
        rmp_serde::to_vec_named(&wire).unwrap()
    );
    // And today's form keeps the address, in both encodings.
    let m = set(&[1, 2], &[3]);
    assert_eq!(m.voters().next().unwrap().kafka_addr, "127.0.0.1:9001");
    for bytes in [
        rmp_serde::to_vec(&m).unwrap(),
        rmp_serde::to_vec_named(&m).unwrap(),
    ] {
        assert_eq!(rmp_serde::from_slice::<Membership>(&bytes).unwrap(), m);
    }
}

/// The wire form built by hand: `(key, member id)` pairs.
fn serde_json_like(voters: &[(NodeId, NodeId)], learners: &[(NodeId, NodeId)]) -> impl Serialize {
    #[derive(serde::Serialize)]
    struct Wire {
        voters: std::collections::BTreeMap<NodeId, Member>,
        learners: std::collections::BTreeMap<NodeId, Member>,
    }
    Wire {
        voters: voters.iter().map(|&(k, id)| (k, member(id))).collect(),
        learners: learners.iter().map(|&(k, id)| (k, member(id))).collect(),
    }
}

#[test]
fn a_directory_id_is_32_hex_digits() {
    let id = DirectoryId([0xab; 16]);
    assert_eq!(id.to_string(), "ab".repeat(16));
    assert_eq!("ab".repeat(16).parse::<DirectoryId>(), Ok(id));
    assert_eq!(
        "AB".repeat(16).parse::<DirectoryId>(),
        Ok(id),
        "upper case is read too"
    );
    for bad in ["", "ab", &"zz".repeat(16), &"a".repeat(33), &"é".repeat(16)] {
        assert!(bad.parse::<DirectoryId>().is_err(), "{bad:?} was accepted");
    }
    assert!(DirectoryId::UNKNOWN.is_unknown() && !id.is_unknown());
}

// ---- MembershipLog ------------------------------------------------------

#[test]
fn a_membership_is_in_force_from_its_append_and_reverts_on_truncation() {
    let mut log = MembershipLog::new(0, set(&[1, 2, 3], &[]));
    log.append(5, set(&[1, 2, 3], &[4])).unwrap();
    log.append(9, set(&[1, 2, 3, 4], &[])).unwrap();
    assert_eq!(ids(log.at(4)), (vec![1, 2, 3], vec![]));
    assert_eq!(ids(log.at(5)), (vec![1, 2, 3], vec![4]));
    assert_eq!(ids(log.at(100)), (vec![1, 2, 3, 4], vec![]));
    assert_eq!(log.latest_offset(), 9);
    assert_eq!(log.uncommitted(8).map(|(o, _)| o), Some(9));
    assert_eq!(log.uncommitted_count(4), 2);
    assert_eq!(log.uncommitted(9), None);
    assert_eq!(
        log.append(9, set(&[1], &[])),
        Err(MembershipLogError::NotAfter { offset: 9, last: 9 })
    );

    assert!(log.truncate_suffix(8), "the entry at 9 is gone");
    assert_eq!(ids(log.latest()), (vec![1, 2, 3], vec![4]));
    assert!(!log.truncate_suffix(8), "nothing more to revert");

    log.compact(6);
    assert_eq!(
        log.latest_offset(),
        6,
        "the base moved to the compaction point"
    );
    assert_eq!(ids(log.latest()), (vec![1, 2, 3], vec![4]));
    assert_eq!(log.uncommitted(6), None);
    assert_eq!(
        log.append(6, set(&[1], &[])),
        Err(MembershipLogError::NotAfter { offset: 6, last: 6 })
    );
    log.reset(20, set(&[7], &[]));
    assert_eq!(
        (log.latest_offset(), ids(log.latest())),
        (20, (vec![7], vec![]))
    );
}

proptest! {
    /// The log against a model that keeps every appended `(offset, set)`
    /// and looks the answer up by scanning.
    #[test]
    fn the_log_agrees_with_a_scan_of_its_entries(ops in prop::collection::vec((0u8..3, 1u64..40), 1..60)) {
        let base = set(&[1], &[]);
        let mut log = MembershipLog::new(0, base.clone());
        let mut model: Vec<(u64, Membership)> = Vec::new();
        let mut model_base = (0u64, base);
        for (i, (op, offset)) in ops.into_iter().enumerate() {
            match op {
                0 => {
                    let m = set(&[1, 2 + (i as u64 % 5)], &[]);
                    let last = model.last().map_or(model_base.0, |(o, _)| *o);
                    let r = log.append(offset, m.clone());
                    prop_assert_eq!(r.is_ok(), offset > last);
                    if offset > last {
                        model.push((offset, m));
                    }
                }
                1 => {
                    log.truncate_suffix(offset);
                    model.retain(|(o, _)| *o <= offset);
                }
                _ => {
                    log.compact(offset);
                    if offset > model_base.0 {
                        if let Some((_, m)) = model.iter().rev().find(|(o, _)| *o <= offset) {
                            model_base.1 = m.clone();
                        }
                        model_base.0 = offset;
                        model.retain(|(o, _)| *o > offset);
                    }
                }
            }
            for probe in 0..45u64 {
                let want = model.iter().rev().find(|(o, _)| *o <= probe).map_or(&model_base.1, |(_, m)| m);
                if probe >= model_base.0 {
                    prop_assert_eq!(log.at(probe), want);
                }
            }
            prop_assert_eq!(log.latest(), model.last().map_or(&model_base.1, |(_, m)| m));
        }
    }
}

// ---- admit_change -------------------------------------------------------

fn ctx(commit: u64) -> ChangeContext {
    ChangeContext {
        leader: 1,
        leader_directory: DirectoryId([1; 16]),
        commit,
        epoch_start: 10,
        last_offset: 20,
        max_lag_entries: 5,
    }
}

fn caught_up(acked: u64) -> impl Fn(NodeId) -> Option<LearnerProgress> {
    move |_| {
        Some(LearnerProgress {
            acked,
            heard_recently: true,
            directory_id: DirectoryId::UNKNOWN,
        })
    }
}

#[test]
fn a_change_waits_for_the_leaders_own_epoch_to_commit() {
    let log = MembershipLog::new(0, set(&[1, 2, 3], &[]));
    let add = MemberChange::AddLearner(member(4));
    assert_eq!(
        admit_change(&log, &ctx(9), &add, caught_up(20)),
        Err(ChangeRefused::LeaderNotReady {
            epoch_start: 10,
            commit: 9
        })
    );
    let m = admit_change(&log, &ctx(10), &add, caught_up(20)).unwrap();
    assert_eq!(ids(&m), (vec![1, 2, 3], vec![4]));
}

#[test]
fn one_change_at_a_time() {
    let mut log = MembershipLog::new(0, set(&[1, 2, 3], &[]));
    log.append(15, set(&[1, 2, 3], &[4])).unwrap();
    let promote = MemberChange::Promote(4);
    assert_eq!(
        admit_change(&log, &ctx(14), &promote, caught_up(20)),
        Err(ChangeRefused::ChangeInProgress { offset: 15 })
    );
    let m = admit_change(&log, &ctx(15), &promote, caught_up(20)).unwrap();
    assert_eq!(ids(&m), (vec![1, 2, 3, 4], vec![]));
}

#[test]
fn a_learner_is_promoted_only_when_caught_up_and_heard() {
    let log = MembershipLog::new(0, set(&[1, 2, 3], &[4]));
    let promote = MemberChange::Promote(4);
    assert!(admit_change(&log, &ctx(12), &promote, caught_up(15)).is_ok());
    assert!(matches!(
        admit_change(&log, &ctx(12), &promote, caught_up(14)),
        Err(ChangeRefused::NotCaughtUp {
            node_id: 4,
            acked: 14,
            last_offset: 20,
            max_lag: 5,
            heard_recently: true
        })
    ));
    let silent = |_| {
        Some(LearnerProgress {
            acked: 20,
            heard_recently: false,
            directory_id: DirectoryId::UNKNOWN,
        })
    };
    let e = admit_change(&log, &ctx(12), &promote, silent).unwrap_err();
    assert!(e.to_string().contains("not heard"), "{e}");
    assert!(matches!(
        admit_change(&log, &ctx(12), &promote, |_| None),
        Err(ChangeRefused::NotCaughtUp { acked: 0, .. })
    ));
    assert_eq!(
        admit_change(&log, &ctx(12), &MemberChange::Promote(2), caught_up(20)),
        Err(ChangeRefused::AlreadyVoter { node_id: 2 })
    );
    assert_eq!(
        admit_change(&log, &ctx(12), &MemberChange::Promote(9), caught_up(20)),
        Err(ChangeRefused::UnknownNode { node_id: 9 })
    );
}

#[test]
fn removal_refuses_the_leader_the_last_voter_and_strangers() {
    let log = MembershipLog::new(0, set(&[1, 2, 3], &[4]));
    let remove = |id| MemberChange::Remove(id);
    assert_eq!(
        admit_change(&log, &ctx(12), &remove(1), caught_up(0)),
        Err(ChangeRefused::RemoveLeader { node_id: 1 })
    );
    assert_eq!(
        admit_change(&log, &ctx(12), &remove(9), caught_up(0)),
        Err(ChangeRefused::UnknownNode { node_id: 9 })
    );
    let m = admit_change(&log, &ctx(12), &remove(3), caught_up(0)).unwrap();
    assert_eq!(ids(&m), (vec![1, 2], vec![4]));
    let m = admit_change(&log, &ctx(12), &remove(4), caught_up(0)).unwrap();
    assert_eq!(ids(&m), (vec![1, 2, 3], vec![]));

    let alone = MembershipLog::new(0, set(&[2], &[]));
    let c = ChangeContext {
        leader: 2,
        ..ctx(12)
    };
    assert_eq!(
        admit_change(&alone, &c, &remove(2), caught_up(0)),
        Err(ChangeRefused::RemoveLeader { node_id: 2 })
    );
    let other = ChangeContext {
        leader: 1,
        ..ctx(12)
    };
    assert_eq!(
        admit_change(&alone, &other, &remove(2), caught_up(0)),
        Err(ChangeRefused::WouldLeaveNoVoters { node_id: 2 })
    );
}

#[test]
fn an_id_is_never_reused_while_it_is_a_member() {
    let log = MembershipLog::new(0, set(&[1, 2, 3], &[4]));
    let mut wiped = member(2);
    wiped.directory_id = DirectoryId([0xee; 16]);
    assert_eq!(
        admit_change(
            &log,
            &ctx(12),
            &MemberChange::AddLearner(wiped),
            caught_up(0)
        ),
        Err(ChangeRefused::AlreadyMember {
            node_id: 2,
            role: MemberRole::Voter
        })
    );
    assert_eq!(
        admit_change(
            &log,
            &ctx(12),
            &MemberChange::AddLearner(member(4)),
            caught_up(0)
        ),
        Err(ChangeRefused::AlreadyMember {
            node_id: 4,
            role: MemberRole::Learner
        })
    );
    let mut bad = member(5);
    bad.replication_addr = String::new();
    assert!(matches!(
        admit_change(&log, &ctx(12), &MemberChange::AddLearner(bad), caught_up(0)),
        Err(ChangeRefused::Invalid(MembershipError::BadAddress { .. }))
    ));
}

#[test]
fn a_change_pins_the_directories_the_membership_does_not_know() {
    // The bootstrap of flags: only the leader's own directory is known.
    let unknown = |id| Member {
        directory_id: DirectoryId::UNKNOWN,
        ..member(id)
    };
    let bootstrap = Membership::new([member(1), unknown(2), unknown(3)], [unknown(4)]).unwrap();
    let log = MembershipLog::new(10, bootstrap);
    // Each follower's handshake proved its directory; node 3's was wiped
    // after the membership pinned it, so it keeps the pinned one.
    let proved = |id: NodeId| {
        Some(LearnerProgress {
            acked: 20,
            heard_recently: true,
            directory_id: DirectoryId([id as u8 + 0x10; 16]),
        })
    };
    let m = admit_change(&log, &ctx(12), &MemberChange::Promote(4), proved).unwrap();
    let dirs: Vec<(NodeId, DirectoryId)> =
        m.voters().map(|v| (v.node_id, v.directory_id)).collect();
    assert_eq!(
        dirs,
        [
            (1, DirectoryId([1; 16])),
            (2, DirectoryId([0x12; 16])),
            (3, DirectoryId([0x13; 16])),
            (4, DirectoryId([0x14; 16])),
        ]
    );
    let pinned = Membership::new([member(1), member(2), member(3)], []).unwrap();
    let log = MembershipLog::new(10, pinned);
    let m = admit_change(&log, &ctx(12), &MemberChange::AddLearner(member(5)), proved).unwrap();
    assert!(
        m.voters()
            .all(|v| v.directory_id == DirectoryId([v.node_id as u8; 16])),
        "a known directory is never replaced: {m:?}"
    );
    // Not heard yet: stays unknown (pinned by a later change).
    let log = MembershipLog::new(10, Membership::new([member(1), unknown(2)], []).unwrap());
    let m = admit_change(&log, &ctx(12), &MemberChange::AddLearner(member(5)), |_| {
        None
    })
    .unwrap();
    assert!(m
        .member(2)
        .is_some_and(|(v, _)| v.directory_id.is_unknown()));
}
