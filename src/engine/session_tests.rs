//! Each input to the session engine and the exact actions it produces.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::frame::NONCE_LEN;
use crate::record::{concat_records, test_record};

const FOLLOWER: NodeId = 2;
const LEADER: NodeId = 1;
const MY_NONCE: Nonce = [3; NONCE_LEN];
const LEADER_NONCE: Nonce = [4; NONCE_LEN];

fn keys(node: NodeId, secret: &[u8]) -> HandshakeKeys {
    HandshakeKeys::new(node, "test-cluster", secret.to_vec()).expect("valid keys")
}

fn config() -> ReplicationConfig {
    ReplicationConfig {
        heartbeat_interval: Duration::from_millis(100),
        session_timeout: Duration::from_secs(1),
        ..ReplicationConfig::default()
    }
}

fn local(epoch: u64, leader: Option<NodeId>, durable: u64) -> Local {
    Local {
        epoch,
        leader,
        durable,
    }
}

fn drain(e: &mut ReplicaSessionEngine) -> Vec<SessionAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn hello(secret: &[u8], epoch: u64) -> Frame {
    keys(LEADER, secret)
        .hello(epoch, &MY_NONCE, &LEADER_NONCE)
        .expect("a Hello")
}

/// A session of follower 2 (at epoch 1, log end 5) attached to leader 1 of
/// epoch 1.
fn ready(t0: Instant) -> ReplicaSessionEngine {
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    drain(&mut e);
    let l = local(1, Some(LEADER), 5);
    e.handle(t0, SessionInput::Frame(hello(b"s", 1)), l);
    drain(&mut e);
    e.handle(t0, SessionInput::Attached(Ok((5, 1))), l);
    drain(&mut e);
    e
}

fn append(first: u64, last: u64, commit: u64) -> Frame {
    let records: Vec<_> = (first..=last).map(test_record).collect();
    Frame::Append {
        first_offset: first,
        records: concat_records(&records),
        commit,
    }
}

#[test]
fn challenge_then_an_authenticated_hello_attaches_and_welcomes() {
    let t0 = Instant::now();
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Send(
            keys(FOLLOWER, b"s").challenge(&MY_NONCE)
        )]
    );
    let l = local(1, Some(LEADER), 5);
    e.handle(t0, SessionInput::Frame(hello(b"s", 2)), l);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Attach {
            leader: LEADER,
            epoch: 2
        }]
    );
    e.handle(t0, SessionInput::Attached(Ok((5, 1))), l);
    let actions = drain(&mut e);
    let [SessionAction::Send(welcome)] = &actions[..] else {
        panic!("expected one Welcome, got {actions:?}");
    };
    let info = keys(LEADER, b"s")
        .check_welcome(&LEADER_NONCE, FOLLOWER, welcome)
        .expect("the leader verifies the Welcome");
    assert_eq!((info.last_offset, info.last_epoch), (5, 1));
    assert_eq!(
        (e.leader(), e.epoch(), e.acked()),
        (Some(LEADER), Some(2), 5)
    );
}

#[test]
fn a_hello_with_another_secret_is_rejected_without_disclosing_the_epoch() {
    let t0 = Instant::now();
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    drain(&mut e);
    e.handle(
        t0,
        SessionInput::Frame(hello(b"other", 9)),
        local(3, Some(3), 0),
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::RejectAndClose {
            frame: Frame::Reject {
                reason: RejectReason::BadProof,
                epoch: 0,
                leader: None,
                proof: Vec::new()
            },
            reason: "handshake refused".into()
        }]
    );
    assert!(e.closed());
    // Nothing more comes out of a closed session.
    e.handle(
        t0,
        SessionInput::Frame(append(1, 1, 0)),
        local(3, Some(3), 0),
    );
    assert_eq!(drain(&mut e), vec![]);
}

#[test]
fn a_stale_epoch_is_rejected_with_this_nodes_epoch_and_leader() {
    let t0 = Instant::now();
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    drain(&mut e);
    e.handle(
        t0,
        SessionInput::Frame(hello(b"s", 2)),
        local(4, Some(3), 0),
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::RejectAndClose {
            frame: keys(FOLLOWER, b"s")
                .signed_reject(&LEADER_NONCE, RejectReason::StaleEpoch, 4, Some(3))
                .unwrap(),
            reason: "handshake refused".into()
        }]
    );
    // The stale leader can verify it: the higher epoch is real.
    let out = keys(LEADER, b"s")
        .signed_reject(&LEADER_NONCE, RejectReason::StaleEpoch, 4, Some(3))
        .unwrap();
    assert!(
        matches!(
            keys(LEADER, b"s").check_welcome(&LEADER_NONCE, FOLLOWER, &out),
            Err(crate::handshake::HandshakeError::BadProof { .. })
        ),
        "signed by node 1, not the follower the leader connected to"
    );
}

#[test]
fn an_attach_refused_by_the_log_owner_is_rejected() {
    let t0 = Instant::now();
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    drain(&mut e);
    let l = local(1, None, 0);
    e.handle(t0, SessionInput::Frame(hello(b"s", 1)), l);
    drain(&mut e);
    e.handle(
        t0,
        SessionInput::Attached(Err(RejectReason::NotFollower)),
        l,
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::RejectAndClose {
            frame: keys(FOLLOWER, b"s")
                .signed_reject(&LEADER_NONCE, RejectReason::NotFollower, 1, None)
                .unwrap(),
            reason: "leader refused".into()
        }]
    );
}

#[test]
fn an_append_is_decoded_and_passed_on_one_at_a_time() {
    let t0 = Instant::now();
    let mut e = ready(t0);
    let l = local(1, Some(LEADER), 5);
    e.handle(t0, SessionInput::Frame(append(6, 7, 5)), l);
    let actions = drain(&mut e);
    let [SessionAction::Append {
        records,
        entries,
        commit: 5,
    }] = &actions[..]
    else {
        panic!("expected one Append, got {actions:?}");
    };
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(entries.iter().map(|e| e.offset).collect::<Vec<_>>(), [6, 7]);
    e.handle(t0, SessionInput::Appended(Ok(())), l);
    e.handle(t0, SessionInput::Frame(append(8, 8, 7)), l);
    assert!(matches!(drain(&mut e)[..], [SessionAction::Append { .. }]));
    // A frame while the append is outstanding breaks the one-at-a-time
    // contract with the shell.
    e.handle(
        t0,
        SessionInput::Frame(Frame::Heartbeat { commit: 8, seq: 1 }),
        l,
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Close {
            reason: "protocol error".into()
        }]
    );
}

#[test]
fn a_corrupt_or_misplaced_batch_closes_and_nothing_is_appended() {
    let t0 = Instant::now();
    let l = local(1, Some(LEADER), 5);
    let mut e = ready(t0);
    let Frame::Append { records, .. } = append(6, 8, 5) else {
        unreachable!()
    };
    let mut bytes = records.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    e.handle(
        t0,
        SessionInput::Frame(Frame::Append {
            first_offset: 6,
            records: Bytes::from(bytes),
            commit: 5,
        }),
        l,
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Close {
            reason: "bad record".into()
        }]
    );
    let mut e = ready(t0);
    let Frame::Append { records, .. } = append(6, 8, 5) else {
        unreachable!()
    };
    e.handle(
        t0,
        SessionInput::Frame(Frame::Append {
            first_offset: 7,
            records,
            commit: 5,
        }),
        l,
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Close {
            reason: "bad append".into()
        }]
    );
}

#[test]
fn a_heartbeat_passes_the_commit_on_and_a_new_probe_is_answered_at_once() {
    let t0 = Instant::now();
    let mut e = ready(t0);
    let t1 = t0 + Duration::from_millis(50);
    e.handle(
        t1,
        SessionInput::Frame(Frame::Heartbeat { commit: 4, seq: 1 }),
        local(1, Some(LEADER), 5),
    );
    assert_eq!(
        drain(&mut e),
        vec![
            SessionAction::Commit { commit: 4 },
            SessionAction::Send(Frame::Ack { offset: 5, seq: 1 })
        ]
    );
    // Acked 20 ms ago and the same probe: only the commit.
    let t2 = t1 + Duration::from_millis(20);
    e.handle(
        t2,
        SessionInput::Frame(Frame::Heartbeat { commit: 5, seq: 1 }),
        local(1, Some(LEADER), 5),
    );
    assert_eq!(drain(&mut e), vec![SessionAction::Commit { commit: 5 }]);
    // A new probe is answered however recent the last ack was.
    e.handle(
        t2,
        SessionInput::Frame(Frame::Heartbeat { commit: 5, seq: 2 }),
        local(1, Some(LEADER), 5),
    );
    assert_eq!(
        drain(&mut e),
        vec![
            SessionAction::Commit { commit: 5 },
            SessionAction::Send(Frame::Ack { offset: 5, seq: 2 })
        ]
    );
    // Every later ack echoes the highest probe seen.
    e.handle(t2, SessionInput::Durable(6), local(1, Some(LEADER), 6));
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Send(Frame::Ack { offset: 6, seq: 2 })]
    );
}

#[test]
fn a_truncation_is_passed_on_and_answered_with_the_new_position() {
    let t0 = Instant::now();
    let mut e = ready(t0);
    let l = local(1, Some(LEADER), 5);
    e.handle(t0, SessionInput::Frame(Frame::Truncate { to: 2 }), l);
    assert_eq!(drain(&mut e), vec![SessionAction::Truncate { to: 2 }]);
    e.handle(t0, SessionInput::LogReset(Ok((2, 1))), l);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Send(Frame::Position {
            last_offset: 2,
            last_epoch: 1
        })]
    );
    assert_eq!(e.acked(), 2, "acks start again from the new log end");
    e.handle(t0, SessionInput::Durable(3), l);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Send(Frame::Ack { offset: 3, seq: 0 })]
    );
    e.handle(t0, SessionInput::Durable(3), l);
    assert_eq!(drain(&mut e), vec![]);
    // A refused truncation closes the session.
    e.handle(t0, SessionInput::Frame(Frame::Truncate { to: 0 }), l);
    drain(&mut e);
    e.handle(
        t0,
        SessionInput::LogReset(Err("entries up to 3 are committed here".into())),
        l,
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Close {
            reason: "truncation or snapshot install failed".into()
        }]
    );
}

fn chunk(position: u64, data: &[u8], total: u64) -> Frame {
    Frame::SnapshotChunk {
        offset: 40,
        epoch: 2,
        total_len: total,
        position,
        data: Bytes::copy_from_slice(data),
    }
}

#[test]
fn snapshot_chunks_are_reassembled_in_order_then_installed() {
    let t0 = Instant::now();
    let mut e = ready(t0);
    let l = local(1, Some(LEADER), 5);
    e.handle(t0, SessionInput::Frame(chunk(0, b"abc", 5)), l);
    assert_eq!(drain(&mut e), vec![]);
    e.handle(t0, SessionInput::Frame(chunk(3, b"de", 5)), l);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::InstallSnapshot {
            offset: 40,
            epoch: 2,
            bytes: Bytes::from_static(b"abcde")
        }]
    );
    e.handle(t0, SessionInput::LogReset(Ok((40, 2))), l);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Send(Frame::Position {
            last_offset: 40,
            last_epoch: 2
        })]
    );
    // A gap closes the session.
    e.handle(t0, SessionInput::Frame(chunk(0, b"abc", 5)), l);
    e.handle(t0, SessionInput::Frame(chunk(4, b"e", 5)), l);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Close {
            reason: "snapshot chunk out of order".into()
        }]
    );
    // So does a snapshot over the limit.
    let mut e = ready(t0);
    e.handle(
        t0,
        SessionInput::Frame(chunk(0, b"a", MAX_SNAPSHOT_BYTES + 1)),
        l,
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Close {
            reason: "snapshot too large".into()
        }]
    );
}

#[test]
fn a_silent_leader_is_dropped_and_a_missed_durable_is_re_acked() {
    let t0 = Instant::now();
    let mut e = ready(t0);
    let t1 = t0 + Duration::from_millis(100);
    e.handle(t1, SessionInput::Tick, local(1, Some(LEADER), 7));
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Send(Frame::Ack { offset: 7, seq: 0 })]
    );
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    e.handle(
        t0 + Duration::from_millis(1001),
        SessionInput::Tick,
        local(1, Some(LEADER), 7),
    );
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Close {
            reason: "leader silent past the session timeout".into()
        }]
    );
    assert_eq!(e.poll_timeout(), None);
}

const VOTER: NodeId = 3;
const VOTER_NONCE: Nonce = [5; NONCE_LEN];

fn voter_hello(secret: &[u8], cluster: &str) -> Frame {
    HandshakeKeys::new(VOTER, cluster, secret.to_vec())
        .expect("valid keys")
        .voter_hello(&MY_NONCE, &VOTER_NONCE)
        .expect("a VoterHello")
}

fn pre_vote() -> crate::engine::election::ElectionMsg {
    crate::engine::election::ElectionMsg::PreVote {
        epoch: 4,
        last_epoch: 3,
        last_offset: 9,
    }
}

/// An election connection: an authenticated voter is welcomed (with a
/// proof the voter checks), and its election frames reach the election
/// engine, tagged with its authenticated id. Nothing reaches the log.
#[test]
fn an_authenticated_voter_is_welcomed_and_its_election_frames_passed_on() {
    let t0 = Instant::now();
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    drain(&mut e);
    let l = local(1, Some(LEADER), 5);
    e.handle(
        t0,
        SessionInput::Frame(voter_hello(b"s", "test-cluster")),
        l,
    );
    let out = drain(&mut e);
    let [SessionAction::Send(welcome)] = out.as_slice() else {
        panic!("{out:?}");
    };
    keys(VOTER, b"s")
        .check_voter_welcome(&VOTER_NONCE, FOLLOWER, welcome)
        .expect("the welcome proves the secret");
    assert_eq!(e.voter(), Some(VOTER));
    e.handle(
        t0,
        SessionInput::Frame(Frame::Election { msg: pre_vote() }),
        l,
    );
    assert_eq!(
        drain(&mut e),
        [SessionAction::Election {
            from: VOTER,
            msg: pre_vote()
        }]
    );
    // A replication frame on an election connection closes it.
    e.handle(t0, SessionInput::Frame(append(6, 6, 0)), l);
    assert!(matches!(
        drain(&mut e).as_slice(),
        [SessionAction::Close { .. }]
    ));
    assert!(e.closed());
}

/// A voter with another secret or cluster id is refused and logged; an
/// election frame before (or instead of) the voter's handshake is refused:
/// nothing reaches the election engine.
#[test]
fn a_voter_with_another_secret_or_cluster_is_refused_and_passes_nothing_on() {
    let t0 = Instant::now();
    let l = local(1, Some(LEADER), 5);
    for (frame, reason) in [
        (
            voter_hello(b"other", "test-cluster"),
            RejectReason::BadProof,
        ),
        (
            voter_hello(b"s", "other-cluster"),
            RejectReason::ClusterMismatch,
        ),
        (
            Frame::Election { msg: pre_vote() },
            RejectReason::Unexpected,
        ),
    ] {
        let mut e =
            ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
        drain(&mut e);
        e.handle(t0, SessionInput::Frame(frame), l);
        let out = drain(&mut e);
        assert!(
            matches!(
                out.as_slice(),
                [SessionAction::RejectAndClose { frame: Frame::Reject { reason: r, epoch: 0, leader: None, proof }, .. }] if *r == reason && proof.is_empty()
            ),
            "{out:?}"
        );
        e.handle(
            t0,
            SessionInput::Frame(Frame::Election { msg: pre_vote() }),
            l,
        );
        assert!(drain(&mut e).is_empty(), "nothing after the refusal");
    }
}

fn certified(ids: &[NodeId]) -> PeerIdentity {
    PeerIdentity::Certified(ids.iter().copied().collect())
}

/// Over TLS the session is bound to the node ids the peer's certificate
/// names: a leader `Hello` with a valid proof from a peer whose certificate
/// is for another node is refused with `NotCertified` and nothing is
/// attached; the certified leader attaches as before.
#[test]
fn a_hello_from_a_node_its_certificate_does_not_name_is_refused() {
    let t0 = Instant::now();
    let l = local(1, Some(LEADER), 5);
    // The certificate names node 3; the Hello (valid proof) claims node 1.
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    e.set_peer_identity(certified(&[3]));
    drain(&mut e);
    e.handle(t0, SessionInput::Frame(hello(b"s", 2)), l);
    let out = drain(&mut e);
    let [SessionAction::RejectAndClose { frame, .. }] = out.as_slice() else {
        panic!("expected a refusal, got {out:?}");
    };
    assert!(
        matches!(
            frame,
            Frame::Reject {
                reason: RejectReason::NotCertified,
                ..
            }
        ),
        "{frame:?}"
    );
    assert_eq!((e.leader(), e.epoch()), (None, None));

    // The certificate names node 1: the same Hello attaches.
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    e.set_peer_identity(certified(&[LEADER]));
    drain(&mut e);
    e.handle(t0, SessionInput::Frame(hello(b"s", 2)), l);
    assert_eq!(
        drain(&mut e),
        vec![SessionAction::Attach {
            leader: LEADER,
            epoch: 2
        }]
    );
}

/// The same binding on an election connection: a candidate whose
/// certificate names another node gets no `VoterWelcome`, so its votes
/// never reach the election engine.
#[test]
fn a_voter_hello_from_a_node_its_certificate_does_not_name_is_refused() {
    let t0 = Instant::now();
    let l = local(1, Some(LEADER), 5);
    let mut e = ReplicaSessionEngine::new(FOLLOWER, keys(FOLLOWER, b"s"), config(), t0, MY_NONCE);
    e.set_peer_identity(certified(&[]));
    drain(&mut e);
    e.handle(
        t0,
        SessionInput::Frame(voter_hello(b"s", "test-cluster")),
        l,
    );
    let out = drain(&mut e);
    assert!(
        matches!(
            out.as_slice(),
            [SessionAction::RejectAndClose {
                frame: Frame::Reject {
                    reason: RejectReason::NotCertified,
                    ..
                },
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(e.voter(), None);
    e.handle(
        t0,
        SessionInput::Frame(Frame::Election { msg: pre_vote() }),
        l,
    );
    assert!(
        !drain(&mut e)
            .iter()
            .any(|a| matches!(a, SessionAction::Election { .. })),
        "no election message passes a refused session"
    );
}
