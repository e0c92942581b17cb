//! Unit tests of the handshake: each exchange, each refusal, and tampered proofs.

use hmac::Mac;

use super::*;
use crate::frame::{Frame, RejectReason};

const SECRET: &[u8] = b"s3cret-shared-by-all";
const NF: Nonce = [1; NONCE_LEN];
const NL: Nonce = [2; NONCE_LEN];

fn leader() -> HandshakeKeys {
    HandshakeKeys::new(1, "cluster-a", SECRET).unwrap()
}

fn follower() -> HandshakeKeys {
    HandshakeKeys::new(2, "cluster-a", SECRET)
        .unwrap()
        .with_directory(FOLLOWER_DIR)
}

const FOLLOWER_DIR: crate::membership::DirectoryId = crate::membership::DirectoryId([0x22; 16]);

fn set_hello_field(frame: &mut Frame, f: impl FnOnce(&mut u64, &mut NodeId, &mut Vec<u8>)) {
    match frame {
        Frame::Hello {
            epoch,
            leader_id,
            nonce,
            ..
        } => f(epoch, leader_id, nonce),
        _ => panic!("not a Hello"),
    }
}

#[test]
fn full_good_exchange() {
    let (l, f) = (leader(), follower());
    let challenge = f.challenge(&NF);
    let ci = l.check_challenge(&challenge).unwrap();
    assert_eq!(
        ci,
        ChallengeInfo {
            node_id: 2,
            nonce: NF
        }
    );
    let hello = l.hello(5, &ci.nonce, &NL).unwrap();
    let hi = f.check_hello(&NF, 4, Some(3), &hello).unwrap();
    assert_eq!(
        hi,
        HelloInfo {
            leader_id: 1,
            epoch: 5,
            new_epoch: true,
            nonce: NL
        }
    );
    let welcome = f.welcome(&hi.nonce, 100, 4).unwrap();
    let wi = l.check_welcome(&NL, ci.node_id, &welcome).unwrap();
    assert_eq!(
        wi,
        WelcomeInfo {
            last_offset: 100,
            last_epoch: 4,
            directory_id: FOLLOWER_DIR,
        }
    );
    // Same epoch, same known leader (a reconnect): accepted, not new.
    let hi = f.check_hello(&NF, 5, Some(1), &hello).unwrap();
    assert!(!hi.new_epoch);
    // Same epoch, leader not known yet: accepted.
    assert!(f.check_hello(&NF, 5, None, &hello).is_ok());
}

#[test]
fn frames_survive_the_codec() {
    use crate::codec::FrameCodec;
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};
    let mut codec = FrameCodec::new(1 << 20);
    let hello = leader().hello(5, &NF, &NL).unwrap();
    let mut buf = BytesMut::new();
    codec.encode(&hello, &mut buf).unwrap();
    let decoded = codec.decode(&mut buf).unwrap().unwrap();
    assert!(follower().check_hello(&NF, 0, None, &decoded).is_ok());
}

#[test]
fn wrong_secret_is_bad_proof_on_both_sides() {
    let l = leader();
    let mut f = follower();
    f.secret = b"another-secret".to_vec();
    let hello = l.hello(5, &NF, &NL).unwrap();
    let err = f.check_hello(&NF, 0, None, &hello).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::BadProof {
            frame: "Hello",
            peer: 1
        }
    );
    assert_eq!(err.reject_reason(), RejectReason::BadProof);
    let welcome = f.welcome(&NL, 10, 1).unwrap();
    let err = l.check_welcome(&NL, 2, &welcome).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::BadProof {
            frame: "Welcome",
            peer: 2
        }
    );
    // Messages never show the secret or the proof.
    for e in [
        f.check_hello(&NF, 0, None, &hello).unwrap_err(),
        l.check_welcome(&NL, 2, &welcome).unwrap_err(),
    ] {
        let msg = e.to_string();
        assert!(!msg.contains("secret-shared"), "{msg}");
        assert!(!msg.contains("another-secret"), "{msg}");
        assert!(msg.contains("does not verify"), "{msg}");
    }
}

#[test]
fn wrong_cluster_id() {
    let l = leader();
    let other = HandshakeKeys::new(2, "cluster-b", SECRET).unwrap();
    let err = l.check_challenge(&other.challenge(&NF)).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::ClusterMismatch {
            theirs: "cluster-b".into(),
            ours: "cluster-a".into()
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("cluster-a") && msg.contains("cluster-b"),
        "{msg}"
    );
    assert_eq!(err.reject_reason(), RejectReason::ClusterMismatch);
    let hello = l.hello(1, &NF, &NL).unwrap();
    assert!(matches!(
        other.check_hello(&NF, 0, None, &hello),
        Err(HandshakeError::ClusterMismatch { .. })
    ));
    // A huge peer cluster id is cut short in the error.
    let big = HandshakeKeys::new(2, "x".repeat(100_000), SECRET).unwrap();
    let err = l.check_challenge(&big.challenge(&NF)).unwrap_err();
    assert!(err.to_string().len() < 400);
}

#[test]
fn wrong_protocol() {
    let l = leader();
    let mut challenge = follower().challenge(&NF);
    if let Frame::Challenge { protocol, .. } = &mut challenge {
        *protocol = PROTOCOL_VERSION + 1;
    }
    let err = l.check_challenge(&challenge).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::ProtocolMismatch {
            theirs: PROTOCOL_VERSION + 1,
            ours: PROTOCOL_VERSION
        }
    );
    assert!(err
        .to_string()
        .contains(&format!("{}", PROTOCOL_VERSION + 1)));
    let mut hello = l.hello(1, &NF, &NL).unwrap();
    if let Frame::Hello { protocol, .. } = &mut hello {
        *protocol = 0;
    }
    let err = follower().check_hello(&NF, 0, None, &hello).unwrap_err();
    assert_eq!(err.reject_reason(), RejectReason::ProtocolMismatch);
}

#[test]
fn stale_epoch_and_reject_round_trip() {
    let (l, f) = (leader(), follower());
    let hello = l.hello(3, &NF, &NL).unwrap();
    let err = f.check_hello(&NF, 7, Some(3), &hello).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::StaleEpoch {
            theirs: 3,
            leader_id: 1,
            current: 7,
            leader: Some(3)
        }
    );
    let msg = err.to_string();
    assert!(msg.contains('3') && msg.contains('7'), "{msg}");
    let rej = reject(&err, 7, Some(3));
    assert_eq!(
        rej,
        Frame::Reject {
            reason: RejectReason::StaleEpoch,
            epoch: 7,
            leader: Some(3),
            proof: Vec::new(),
        }
    );
    // The leader sees it while waiting for the Welcome, unproven.
    assert_eq!(
        l.check_welcome(&NL, 2, &rej).unwrap_err(),
        HandshakeError::Rejected {
            reason: RejectReason::StaleEpoch,
            epoch: 7,
            leader: Some(3),
            proven: false,
        }
    );
}

/// A follower's signed refusal proves its epoch to the leader it was
/// answering; any change to it, another nonce or another secret does
/// not verify.
#[test]
fn a_signed_reject_proves_the_epoch_and_nothing_else_does() {
    let keys = |id, secret: &[u8]| HandshakeKeys::new(id, "cluster-a", secret.to_vec()).unwrap();
    let f = keys(2, b"s");
    let l = keys(1, b"s");
    let signed = f
        .signed_reject(&NL, RejectReason::StaleEpoch, 9, Some(3))
        .unwrap();
    assert_eq!(
        l.check_welcome(&NL, 2, &signed).unwrap_err(),
        HandshakeError::Rejected {
            reason: RejectReason::StaleEpoch,
            epoch: 9,
            leader: Some(3),
            proven: true,
        }
    );
    let Frame::Reject { proof, .. } = &signed else {
        panic!("{signed:?}");
    };
    let forged = Frame::Reject {
        reason: RejectReason::StaleEpoch,
        epoch: 90,
        leader: Some(3),
        proof: proof.clone(),
    };
    for (frame, nonce, leader_keys) in [
        (&forged, NL, keys(1, b"s")),
        (&signed, [9u8; NONCE_LEN], keys(1, b"s")),
        (&signed, NL, keys(1, b"other")),
    ] {
        assert!(matches!(
            leader_keys.check_welcome(&nonce, 2, frame),
            Err(HandshakeError::BadProof {
                frame: "Reject",
                ..
            })
        ));
    }
}

#[test]
fn same_epoch_different_leader() {
    let f = follower();
    let hello = leader().hello(5, &NF, &NL).unwrap();
    let err = f.check_hello(&NF, 5, Some(3), &hello).unwrap_err();
    assert_eq!(
        err,
        HandshakeError::EpochConflict {
            epoch: 5,
            claimed: 1,
            known: 3
        }
    );
    assert_eq!(err.reject_reason(), RejectReason::EpochConflict);
    assert_ne!(
        err,
        HandshakeError::StaleEpoch {
            theirs: 5,
            leader_id: 1,
            current: 5,
            leader: Some(3)
        }
    );
}

#[test]
fn leader_claiming_own_id_refused() {
    let f = follower();
    let impostor = HandshakeKeys::new(2, "cluster-a", SECRET).unwrap();
    let hello = impostor.hello(5, &NF, &NL).unwrap();
    assert_eq!(
        f.check_hello(&NF, 0, None, &hello).unwrap_err(),
        HandshakeError::SameNodeId { node_id: 2 }
    );
    let l = leader();
    let c = HandshakeKeys::new(1, "cluster-a", SECRET)
        .unwrap()
        .challenge(&NF);
    assert_eq!(
        l.check_challenge(&c).unwrap_err(),
        HandshakeError::SameNodeId { node_id: 1 }
    );
}

#[test]
fn proof_is_bound_to_the_nonce() {
    let (l, f) = (leader(), follower());
    // A Hello recorded on an earlier connection (follower nonce NF) is
    // replayed on a new one where the follower sent another nonce.
    let hello = l.hello(5, &NF, &NL).unwrap();
    let new_nonce: Nonce = [9; NONCE_LEN];
    assert!(matches!(
        f.check_hello(&new_nonce, 0, None, &hello),
        Err(HandshakeError::BadProof { .. })
    ));
    // Same for a replayed Welcome.
    let welcome = f.welcome(&NL, 1, 1).unwrap();
    assert!(matches!(
        l.check_welcome(&new_nonce, 2, &welcome),
        Err(HandshakeError::BadProof { .. })
    ));
    // The leader's nonce inside the Hello is signed too.
    let mut hello2 = hello.clone();
    set_hello_field(&mut hello2, |_, _, n| *n = vec![7; NONCE_LEN]);
    assert!(matches!(
        f.check_hello(&NF, 0, None, &hello2),
        Err(HandshakeError::BadProof { .. })
    ));
}

#[test]
fn tampered_fields_fail() {
    let (l, f) = (leader(), follower());
    let hello = l.hello(5, &NF, &NL).unwrap();
    let mut h = hello.clone();
    set_hello_field(&mut h, |e, _, _| *e = 6);
    assert!(matches!(
        f.check_hello(&NF, 0, None, &h),
        Err(HandshakeError::BadProof { .. })
    ));
    let mut h = hello.clone();
    set_hello_field(&mut h, |_, id, _| *id = 3);
    assert!(matches!(
        f.check_hello(&NF, 0, None, &h),
        Err(HandshakeError::BadProof { .. })
    ));
    let mut h = hello;
    if let Frame::Hello { proof, .. } = &mut h {
        proof.truncate(16);
    }
    assert!(matches!(
        f.check_hello(&NF, 0, None, &h),
        Err(HandshakeError::BadProof { .. })
    ));

    let welcome = f.welcome(&NL, 100, 4).unwrap();
    for change in 0..4 {
        let mut w = welcome.clone();
        if let Frame::Welcome {
            last_offset,
            last_epoch,
            node_id,
            directory_id,
            ..
        } = &mut w
        {
            match change {
                0 => *last_offset = 101,
                1 => *last_epoch = 5,
                // A directory id is proven: a wiped node cannot claim
                // the old one by rewriting the frame.
                3 => directory_id.0[0] ^= 1,
                _ => *node_id = 3,
            }
        }
        let err = l
            .check_welcome(&NL, if change == 2 { 3 } else { 2 }, &w)
            .unwrap_err();
        assert!(matches!(err, HandshakeError::BadProof { .. }), "{err}");
    }
    // A Welcome from another node than the Challenge named.
    assert_eq!(
        l.check_welcome(&NL, 4, &welcome).unwrap_err(),
        HandshakeError::NodeIdMismatch {
            expected: 4,
            got: 2
        }
    );
}

#[test]
fn bad_nonce_length() {
    let l = leader();
    for len in [0, NONCE_LEN - 1, NONCE_LEN + 1] {
        let c = Frame::Challenge {
            protocol: PROTOCOL_VERSION,
            cluster_id: "cluster-a".into(),
            node_id: 2,
            nonce: vec![0; len],
        };
        assert_eq!(
            l.check_challenge(&c).unwrap_err(),
            HandshakeError::BadNonceLength {
                frame: "Challenge",
                len,
                expected: NONCE_LEN
            }
        );
    }
    let mut hello = l.hello(5, &NF, &NL).unwrap();
    set_hello_field(&mut hello, |_, _, n| n.push(0));
    let err = follower().check_hello(&NF, 0, None, &hello).unwrap_err();
    assert!(matches!(err, HandshakeError::BadNonceLength { .. }));
    assert_eq!(err.reject_reason(), RejectReason::Unexpected);
}

#[test]
fn unexpected_frames() {
    let (l, f) = (leader(), follower());
    let hb = Frame::Heartbeat { commit: 0, seq: 1 };
    assert_eq!(
        l.check_challenge(&hb).unwrap_err(),
        HandshakeError::Unexpected {
            expected: "Challenge",
            got: "Heartbeat"
        }
    );
    assert!(matches!(
        f.check_hello(&NF, 0, None, &hb),
        Err(HandshakeError::Unexpected { .. })
    ));
    assert!(matches!(
        l.check_welcome(&NL, 2, &hb),
        Err(HandshakeError::Unexpected { .. })
    ));
    let rej = Frame::Reject {
        reason: RejectReason::ClusterMismatch,
        epoch: 0,
        leader: None,
        proof: Vec::new(),
    };
    assert!(matches!(
        f.check_hello(&NF, 0, None, &rej),
        Err(HandshakeError::Rejected {
            reason: RejectReason::ClusterMismatch,
            ..
        })
    ));
}

#[test]
fn reject_hides_epoch_before_authentication() {
    let err = HandshakeError::BadProof {
        frame: "Hello",
        peer: 1,
    };
    assert_eq!(
        reject(&err, 9, Some(3)),
        Frame::Reject {
            reason: RejectReason::BadProof,
            epoch: 0,
            leader: None,
            proof: Vec::new(),
        }
    );
    assert_eq!(
        reject(&HandshakeError::NotFollower, 9, Some(3)),
        Frame::Reject {
            reason: RejectReason::NotFollower,
            epoch: 0,
            leader: None,
            proof: Vec::new(),
        }
    );
}

#[test]
fn empty_secret_or_cluster_refused() {
    assert_eq!(
        HandshakeKeys::new(1, "c", Vec::new()).unwrap_err(),
        KeysError::EmptySecret
    );
    assert_eq!(
        HandshakeKeys::new(1, "", SECRET).unwrap_err(),
        KeysError::EmptyClusterId
    );
    assert!(KeysError::EmptySecret
        .to_string()
        .contains("secret is empty"));
    // Keys built by hand are checked before any proof is made or checked.
    let bad = HandshakeKeys {
        node_id: 1,
        cluster_id: "cluster-a".into(),
        secret: Vec::new(),
        directory_id: crate::membership::DirectoryId::UNKNOWN,
    };
    assert_eq!(
        bad.hello(1, &NF, &NL).unwrap_err(),
        HandshakeError::InvalidKeys(KeysError::EmptySecret)
    );
    assert!(bad.welcome(&NL, 0, 0).is_err());
    let hello = leader().hello(1, &NF, &NL).unwrap();
    assert!(matches!(
        bad.check_hello(&NF, 0, None, &hello),
        Err(HandshakeError::InvalidKeys(_))
    ));
    // Debug never shows the secret.
    assert!(!format!("{:?}", leader()).contains("s3cret"));
}

#[test]
fn leader_proof_layout_is_as_documented() {
    // Recompute the documented HMAC input by hand.
    let mut input = Vec::new();
    input.extend_from_slice(b"metawal-leader");
    input.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
    input.extend_from_slice(&NF);
    input.extend_from_slice(&9u32.to_be_bytes());
    input.extend_from_slice(b"cluster-a");
    input.extend_from_slice(&1u64.to_be_bytes());
    input.extend_from_slice(&5u64.to_be_bytes());
    input.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
    input.extend_from_slice(&NL);
    let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
    mac.update(&input);
    let expected = mac.finalize().into_bytes().to_vec();
    match leader().hello(5, &NF, &NL).unwrap() {
        Frame::Hello { proof, .. } => assert_eq!(proof, expected),
        _ => panic!(),
    }

    let mut input = Vec::new();
    input.extend_from_slice(b"metawal-follower");
    input.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
    input.extend_from_slice(&NL);
    input.extend_from_slice(&9u32.to_be_bytes());
    input.extend_from_slice(b"cluster-a");
    input.extend_from_slice(&2u64.to_be_bytes());
    input.extend_from_slice(&100u64.to_be_bytes());
    input.extend_from_slice(&4u64.to_be_bytes());
    input.extend_from_slice(&FOLLOWER_DIR.0);
    let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
    mac.update(&input);
    let expected = mac.finalize().into_bytes().to_vec();
    match follower().welcome(&NL, 100, 4).unwrap() {
        Frame::Welcome { proof, .. } => {
            assert_eq!(proof.len(), PROOF_LEN);
            assert_eq!(proof, expected)
        }
        _ => panic!(),
    }
}
