//! Each input to the link engine and the exact frames and actions it
//! produces.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::epochs::EpochIndex;
use crate::frame::{Frame, RejectReason, NONCE_LEN};
use crate::handshake::{HandshakeKeys, Nonce};
use crate::record::{test_record, Record, RecordReader};
use crate::replication::{decide_start, StartPoint};

const LEADER: NodeId = 1;
const FOLLOWER: NodeId = 2;
const EPOCH: u64 = 1;
const LEADER_NONCE: Nonce = [7; NONCE_LEN];
const FOLLOWER_NONCE: Nonce = [9; NONCE_LEN];

/// The leader's log: records 1..=n in epoch 1, the tail holding offsets
/// from `tail_from` on.
struct Log {
    epochs: EpochIndex,
    records: Vec<Record>,
    tail_from: u64,
}

impl Log {
    fn new(n: u64) -> Log {
        let mut epochs = EpochIndex::new(0, 0);
        for o in 1..=n {
            epochs.append(o, EPOCH).expect("dense test log");
        }
        Log {
            epochs,
            records: (1..=n).map(test_record).collect(),
            tail_from: 1,
        }
    }

    fn progress(&self, commit: u64) -> LogProgress {
        let end = self.records.len() as u64;
        LogProgress {
            log_end: end,
            durable: end,
            commit,
        }
    }
}

impl LogView for Log {
    fn start_point(&self, last_offset: u64, last_epoch: u64) -> StartPoint {
        decide_start(&self.epochs, last_offset, last_epoch)
    }

    fn read_tail(&self, from: u64, max_entries: usize, max_bytes: usize) -> Option<Vec<Record>> {
        if from < self.tail_from || from as usize > self.records.len() {
            return None;
        }
        let mut bytes = 0;
        Some(
            self.records[from as usize - 1..]
                .iter()
                .take(max_entries)
                .take_while(|r| {
                    let first = bytes == 0;
                    bytes += r.len();
                    first || bytes <= max_bytes
                })
                .cloned()
                .collect(),
        )
    }
}

/// The follower's data directory id.
const FOLLOWER_DIR: crate::membership::DirectoryId = crate::membership::DirectoryId([0x77; 16]);

/// What a link reports first once the `Welcome` checks out.
const IDENTIFIED: LinkAction = LinkAction::Report(LinkReport::Identified {
    directory_id: FOLLOWER_DIR,
});

fn keys(node: NodeId) -> HandshakeKeys {
    HandshakeKeys::new(node, "test-cluster", b"secret".to_vec()).expect("valid keys")
}

fn config() -> ReplicationConfig {
    ReplicationConfig {
        heartbeat_interval: Duration::from_millis(100),
        session_timeout: Duration::from_secs(1),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(5),
        ..ReplicationConfig::default()
    }
}

fn engine(t0: Instant, log: &Log, config: ReplicationConfig) -> FollowerLinkEngine {
    let setup = LinkSetup {
        node: LEADER,
        peer: FOLLOWER,
        epoch: EPOCH,
        keys: keys(LEADER),
        config,
    };
    FollowerLinkEngine::new(setup, log.progress(0), t0, 42)
}

fn drain(e: &mut FollowerLinkEngine) -> Vec<LinkAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn transmit(e: &mut FollowerLinkEngine, now: Instant, log: &Log) -> Vec<Frame> {
    std::iter::from_fn(|| e.poll_transmit(now, log))
        .take(1000)
        .collect()
}

fn offsets(frame: &Frame) -> Vec<u64> {
    let Frame::Append { records, .. } = frame else {
        panic!("not an Append: {frame:?}");
    };
    let mut reader = RecordReader::new(records.clone());
    std::iter::from_fn(|| reader.next().map(|r| r.expect("valid record").0.offset)).collect()
}

/// Connect, pass the challenge, answer the Hello with a Welcome for a
/// follower whose log ends at `(last_offset, last_epoch)`; returns the
/// actions of the Welcome.
fn handshake(
    e: &mut FollowerLinkEngine,
    now: Instant,
    log: &Log,
    last_offset: u64,
    last_epoch: u64,
) -> Vec<LinkAction> {
    let gen = e.generation();
    e.handle(
        now,
        LinkInput::Connected {
            gen,
            nonce: LEADER_NONCE,
        },
        log,
    );
    let f = keys(FOLLOWER).with_directory(FOLLOWER_DIR);
    e.handle(
        now,
        LinkInput::Frame {
            gen,
            frame: f.challenge(&FOLLOWER_NONCE),
        },
        log,
    );
    let hello = e.poll_transmit(now, log).expect("a Hello");
    let info = f
        .check_hello(&FOLLOWER_NONCE, 0, None, &hello)
        .expect("the Hello verifies");
    assert_eq!((info.leader_id, info.epoch), (LEADER, EPOCH));
    assert_eq!(
        e.poll_transmit(now, log),
        None,
        "nothing before the Welcome"
    );
    let welcome = f
        .welcome(&info.nonce, last_offset, last_epoch)
        .expect("a Welcome");
    e.handle(
        now,
        LinkInput::Frame {
            gen,
            frame: welcome,
        },
        log,
    );
    drain(e)
}

#[test]
fn a_new_link_connects_authenticates_and_streams_from_the_match_point() {
    let t0 = Instant::now();
    let log = Log::new(5);
    let mut e = engine(t0, &log, config());
    assert_eq!(drain(&mut e), vec![LinkAction::Connect { gen: 1 }]);
    assert_eq!(e.state(), LinkState::Connecting);
    e.handle(t0, LinkInput::Progress(log.progress(3)), &log);
    let actions = handshake(&mut e, t0, &log, 2, EPOCH);
    assert_eq!(
        actions,
        vec![
            IDENTIFIED,
            LinkAction::Report(LinkReport::Connected { matched: 2 }),
            LinkAction::Report(LinkReport::Heard { since: t0 })
        ]
    );
    assert_eq!(e.state(), LinkState::Probing);
    let frames = transmit(&mut e, t0, &log);
    assert_eq!(frames.len(), 1, "probing: one batch until the first ack");
    assert_eq!(offsets(&frames[0]), vec![3, 4, 5]);
    assert!(matches!(
        frames[0],
        Frame::Append {
            first_offset: 3,
            commit: 3,
            ..
        }
    ));
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Ack { offset: 5, seq: 0 },
        },
        &log,
    );
    assert_eq!(
        drain(&mut e),
        vec![
            LinkAction::Report(LinkReport::Acked { offset: 5 }),
            LinkAction::Report(LinkReport::Heard { since: t0 })
        ]
    );
    assert_eq!(e.state(), LinkState::Streaming);
    assert!(e.connected());
}

#[test]
fn a_challenge_from_another_node_id_closes_without_a_report_and_backs_off() {
    let t0 = Instant::now();
    let log = Log::new(0);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(
        t0,
        LinkInput::Connected {
            gen: 1,
            nonce: LEADER_NONCE,
        },
        &log,
    );
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: keys(3).challenge(&FOLLOWER_NONCE),
        },
        &log,
    );
    assert_eq!(drain(&mut e), vec![LinkAction::Close { gen: 1 }]);
    assert_eq!(e.poll_transmit(t0, &log), None);
    let retry = e.poll_timeout().expect("a reconnect is scheduled");
    let delay = retry - t0;
    assert!(
        delay >= Duration::from_millis(25) && delay <= Duration::from_millis(100),
        "first backoff around 50 ms with jitter, got {delay:?}"
    );
    e.handle(retry - Duration::from_millis(1), LinkInput::Tick, &log);
    assert_eq!(drain(&mut e), vec![], "not before the backoff is over");
    e.handle(retry, LinkInput::Tick, &log);
    assert_eq!(drain(&mut e), vec![LinkAction::Connect { gen: 2 }]);
}

#[test]
fn a_reject_with_a_higher_epoch_reports_fenced() {
    let t0 = Instant::now();
    let log = Log::new(0);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(
        t0,
        LinkInput::Connected {
            gen: 1,
            nonce: LEADER_NONCE,
        },
        &log,
    );
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: keys(FOLLOWER).challenge(&FOLLOWER_NONCE),
        },
        &log,
    );
    assert!(matches!(
        e.poll_transmit(t0, &log),
        Some(Frame::Hello { .. })
    ));
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Reject {
                reason: RejectReason::StaleEpoch,
                epoch: 4,
                leader: Some(3),
                proof: Vec::new(),
            },
        },
        &log,
    );
    assert_eq!(
        drain(&mut e),
        vec![
            LinkAction::Report(LinkReport::Fenced {
                epoch: 4,
                leader: Some(3),
                proven: false
            }),
            LinkAction::Close { gen: 1 },
        ]
    );
}

#[test]
fn a_diverged_follower_is_truncated_then_matched_on_its_position() {
    let t0 = Instant::now();
    let mut log = Log::new(4);
    // The leader's epoch 2 starts at offset 3.
    log.epochs = EpochIndex::new(0, 0);
    for (o, ep) in [(1, 1), (2, 1), (3, 2), (4, 2)] {
        log.epochs.append(o, ep).expect("dense");
    }
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    // The follower has offsets 1..=5 of epoch 1: it diverged after 2.
    let actions = handshake(&mut e, t0, &log, 5, 1);
    assert_eq!(actions, vec![IDENTIFIED]);
    assert_eq!(transmit(&mut e, t0, &log), vec![Frame::Truncate { to: 2 }]);
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Position {
                last_offset: 2,
                last_epoch: 1,
            },
        },
        &log,
    );
    assert_eq!(
        drain(&mut e),
        vec![
            LinkAction::Report(LinkReport::Connected { matched: 2 }),
            LinkAction::Report(LinkReport::Heard { since: t0 })
        ]
    );
}

#[test]
fn an_entry_past_the_tail_is_read_from_the_wal_and_a_compacted_one_sends_the_snapshot() {
    let t0 = Instant::now();
    let mut log = Log::new(10);
    log.tail_from = 8;
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(10)), &log);
    handshake(&mut e, t0, &log, 0, 0);
    // No records at hand: the read is asked for, once; meanwhile only the
    // commit point goes out.
    assert_eq!(
        transmit(&mut e, t0, &log),
        vec![Frame::Heartbeat { commit: 10, seq: 0 }]
    );
    let read = drain(&mut e);
    assert_eq!(
        read,
        vec![LinkAction::ReadWal {
            gen: 1,
            from: 1,
            max_entries: 10,
            max_bytes: config().batch_bytes,
        }]
    );
    assert_eq!(e.poll_transmit(t0, &log), None);
    assert_eq!(drain(&mut e), vec![], "one read in flight at a time");
    // A read result for an older connection is ignored.
    e.handle(
        t0,
        LinkInput::WalRead {
            gen: 0,
            from: 1,
            result: Ok(log.records[..7].to_vec()),
        },
        &log,
    );
    assert_eq!(e.poll_transmit(t0, &log), None);
    e.handle(
        t0,
        LinkInput::WalRead {
            gen: 1,
            from: 1,
            result: Err(ReadFailure::BelowLogStart),
        },
        &log,
    );
    assert_eq!(drain(&mut e), vec![LinkAction::LoadSnapshot { gen: 1 }]);
    assert_eq!(e.state(), LinkState::Snapshotting);
    let snapshot = SnapshotBytes {
        offset: 7,
        epoch: 1,
        bytes: Bytes::from(vec![5u8; 600]),
    };
    e.handle(
        t0,
        LinkInput::SnapshotLoaded {
            gen: 1,
            result: Ok(Some(snapshot)),
        },
        &log,
    );
    let chunks = transmit(&mut e, t0, &log);
    assert_eq!(chunks.len(), 1);
    assert!(matches!(
        &chunks[0],
        Frame::SnapshotChunk { offset: 7, epoch: 1, total_len: 600, position: 0, data } if data.len() == 600
    ));
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Position {
                last_offset: 7,
                last_epoch: 1,
            },
        },
        &log,
    );
    assert_eq!(
        drain(&mut e),
        vec![
            LinkAction::Report(LinkReport::Connected { matched: 7 }),
            LinkAction::Report(LinkReport::Heard { since: t0 })
        ]
    );
    let frames = transmit(&mut e, t0, &log);
    assert_eq!(
        offsets(&frames[0]),
        vec![8, 9, 10],
        "the rest from the tail"
    );
    assert_eq!(e.snapshots_sent(), 1);
}

#[test]
fn wal_records_are_sent_in_order_and_what_does_not_fit_waits() {
    let t0 = Instant::now();
    let mut log = Log::new(6);
    log.tail_from = 100;
    let cfg = ReplicationConfig {
        window_entries: 4,
        ..config()
    };
    let mut e = engine(t0, &log, cfg);
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    handshake(&mut e, t0, &log, 0, 0);
    assert_eq!(e.poll_transmit(t0, &log), None);
    assert!(matches!(
        drain(&mut e)[..],
        [LinkAction::ReadWal {
            from: 1,
            max_entries: 4,
            ..
        }]
    ));
    // The disk returned more than the window takes (it may): 4 go now.
    e.handle(
        t0,
        LinkInput::WalRead {
            gen: 1,
            from: 1,
            result: Ok(log.records.clone()),
        },
        &log,
    );
    let frames = transmit(&mut e, t0, &log);
    assert_eq!(frames.len(), 1);
    assert_eq!(offsets(&frames[0]), vec![1, 2, 3, 4]);
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Ack { offset: 4, seq: 0 },
        },
        &log,
    );
    let frames = transmit(&mut e, t0, &log);
    assert_eq!(
        offsets(&frames[0]),
        vec![5, 6],
        "the rest, without a re-read"
    );
    assert_eq!(
        drain(&mut e),
        vec![
            LinkAction::Report(LinkReport::Acked { offset: 4 }),
            LinkAction::Report(LinkReport::Heard { since: t0 })
        ]
    );
}

#[test]
fn the_window_bounds_what_is_in_flight_and_acks_open_it() {
    let t0 = Instant::now();
    let log = Log::new(20);
    let one = log.records[0].len();
    let cfg = ReplicationConfig {
        window_bytes: 3 * one,
        batch_bytes: 2 * one,
        ..config()
    };
    let mut e = engine(t0, &log, cfg);
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    handshake(&mut e, t0, &log, 0, 0);
    let f = transmit(&mut e, t0, &log);
    assert_eq!(f.iter().map(offsets).collect::<Vec<_>>(), vec![vec![1, 2]]);
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Ack { offset: 2, seq: 0 },
        },
        &log,
    );
    let f = transmit(&mut e, t0, &log);
    assert_eq!(
        f.iter().map(offsets).collect::<Vec<_>>(),
        vec![vec![3, 4], vec![5]],
        "streaming: pipelined up to the window of 3 records"
    );
    assert_eq!(e.progress().inflight_bytes(), 3 * one);
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Ack { offset: 4, seq: 0 },
        },
        &log,
    );
    let f = transmit(&mut e, t0, &log);
    assert_eq!(f.iter().map(offsets).collect::<Vec<_>>(), vec![vec![6, 7]]);
}

#[test]
fn an_idle_link_sends_a_new_commit_at_once_and_heartbeats_on_the_interval() {
    let t0 = Instant::now();
    let log = Log::new(2);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    handshake(&mut e, t0, &log, 2, EPOCH);
    assert_eq!(transmit(&mut e, t0, &log), vec![], "nothing new to say");
    e.handle(t0, LinkInput::Progress(log.progress(2)), &log);
    assert_eq!(
        transmit(&mut e, t0, &log),
        vec![Frame::Heartbeat { commit: 2, seq: 0 }],
        "a commit alone is not a probe"
    );
    let t1 = t0 + Duration::from_millis(99);
    assert_eq!(transmit(&mut e, t1, &log), vec![]);
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    let t2 = t0 + Duration::from_millis(100);
    e.handle(t2, LinkInput::Tick, &log);
    assert_eq!(
        transmit(&mut e, t2, &log),
        vec![Frame::Heartbeat { commit: 2, seq: 1 }]
    );
}

#[test]
fn a_follower_counts_as_heard_as_of_what_it_answered_not_when_the_answer_came() {
    let t0 = Instant::now();
    let log = Log::new(2);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(2)), &log);
    handshake(&mut e, t0, &log, 2, EPOCH);
    transmit(&mut e, t0, &log);
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(
        transmit(&mut e, t1, &log),
        vec![Frame::Heartbeat { commit: 2, seq: 1 }]
    );
    // The leader was paused for seconds (and another may have been
    // elected meanwhile); an ack written before the follower read probe
    // 1 arrives only now: the follower is known to have followed this
    // leader at the Hello, not at t2.
    let t2 = t0 + Duration::from_secs(5);
    let ack = |seq| LinkInput::Frame {
        gen: 1,
        frame: Frame::Ack { offset: 2, seq },
    };
    e.handle(t2, ack(0), &log);
    assert_eq!(
        drain(&mut e),
        vec![LinkAction::Report(LinkReport::Heard { since: t0 })]
    );
    e.handle(t2, ack(1), &log);
    assert_eq!(
        drain(&mut e),
        vec![LinkAction::Report(LinkReport::Heard { since: t1 })]
    );
    // Later answers echoing the same probe stay at its send time.
    e.handle(t2, ack(1), &log);
    assert_eq!(
        drain(&mut e),
        vec![LinkAction::Report(LinkReport::Heard { since: t1 })]
    );
    // A probe never sent is a protocol error, and counts for nothing.
    e.handle(t2, ack(2), &log);
    assert_eq!(
        drain(&mut e),
        vec![
            LinkAction::Close { gen: 1 },
            LinkAction::Report(LinkReport::Disconnected)
        ]
    );
}

#[test]
fn a_read_probes_at_once_ahead_of_pending_appends() {
    let t0 = Instant::now();
    let log = Log::new(5);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    handshake(&mut e, t0, &log, 0, 0);
    let t1 = t0 + Duration::from_millis(10);
    e.handle(t1, LinkInput::Probe, &log);
    let frames = transmit(&mut e, t1, &log);
    assert_eq!(frames[0], Frame::Heartbeat { commit: 0, seq: 1 });
    assert_eq!(offsets(&frames[1]), vec![1, 2, 3, 4, 5]);
    // One probe per request: the next one at the interval.
    assert_eq!(transmit(&mut e, t1, &log), vec![]);
    assert_eq!(e.poll_timeout(), Some(t1 + Duration::from_millis(100)));
}

#[test]
fn a_silent_follower_is_dropped_and_the_replicator_told() {
    let t0 = Instant::now();
    let log = Log::new(0);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    handshake(&mut e, t0, &log, 0, 0);
    let t1 = t0 + Duration::from_millis(1000);
    e.handle(t1, LinkInput::Tick, &log);
    assert_eq!(drain(&mut e), vec![], "at the limit, not past it");
    let t2 = t1 + Duration::from_millis(1);
    e.handle(t2, LinkInput::Tick, &log);
    assert_eq!(
        drain(&mut e),
        vec![
            LinkAction::Close { gen: 1 },
            LinkAction::Report(LinkReport::Disconnected)
        ]
    );
    assert_eq!(e.state(), LinkState::Connecting);
    // Frames of the closed connection change nothing.
    e.handle(
        t2,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Ack { offset: 0, seq: 0 },
        },
        &log,
    );
    assert_eq!(drain(&mut e), vec![]);
}

#[test]
fn the_backoff_grows_until_a_connection_is_acked() {
    let t0 = Instant::now();
    let log = Log::new(3);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..4 {
        // Connects, completes the handshake, then drops before any ack.
        handshake(&mut e, now, &log, 0, 0);
        let gen = e.generation();
        e.handle(
            now,
            LinkInput::Closed {
                gen,
                reason: "reset".into(),
            },
            &log,
        );
        drain(&mut e);
        let at = e.poll_timeout().expect("a retry");
        delays.push(at - now);
        now = at;
        e.handle(now, LinkInput::Tick, &log);
        assert!(matches!(drain(&mut e)[..], [LinkAction::Connect { .. }]));
    }
    // Jitter is within ±50 %, so a doubling always shows over two steps.
    assert!(delays[2] > delays[0] && delays[3] > delays[1], "{delays:?}");
    // An ack on a connection resets it.
    handshake(&mut e, now, &log, 0, 0);
    transmit(&mut e, now, &log);
    let gen = e.generation();
    e.handle(
        now,
        LinkInput::Frame {
            gen,
            frame: Frame::Ack { offset: 3, seq: 0 },
        },
        &log,
    );
    e.handle(
        now,
        LinkInput::Closed {
            gen,
            reason: "reset".into(),
        },
        &log,
    );
    let delay = e.poll_timeout().expect("a retry") - now;
    assert!(
        delay <= Duration::from_millis(100),
        "reset backoff, got {delay:?}"
    );
}

#[test]
fn a_wake_reconnects_now_but_not_twice_within_a_heartbeat() {
    let t0 = Instant::now();
    let log = Log::new(0);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(
        t0,
        LinkInput::ConnectFailed {
            gen: 1,
            reason: "refused".into(),
        },
        &log,
    );
    // Woken 10 ms after the failed attempt: wait for the heartbeat interval.
    let t1 = t0 + Duration::from_millis(10);
    e.handle(t1, LinkInput::Wake, &log);
    assert_eq!(drain(&mut e), vec![]);
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    e.handle(t0 + Duration::from_millis(100), LinkInput::Tick, &log);
    assert_eq!(drain(&mut e), vec![LinkAction::Connect { gen: 2 }]);
    e.handle(
        t0 + Duration::from_millis(101),
        LinkInput::ConnectFailed {
            gen: 2,
            reason: "refused".into(),
        },
        &log,
    );
    // Woken long after: at once.
    let t2 = t0 + Duration::from_millis(500);
    e.handle(t2, LinkInput::Wake, &log);
    assert_eq!(drain(&mut e), vec![LinkAction::Connect { gen: 3 }]);
}

#[test]
fn an_ack_beyond_what_was_sent_is_ignored() {
    let t0 = Instant::now();
    let log = Log::new(3);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    handshake(&mut e, t0, &log, 0, 0);
    transmit(&mut e, t0, &log);
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Ack { offset: 9, seq: 0 },
        },
        &log,
    );
    // Ignored, but the follower did answer on this connection.
    assert_eq!(
        drain(&mut e),
        vec![LinkAction::Report(LinkReport::Heard { since: t0 })]
    );
    assert_eq!(e.progress().acked_offset(), 0);
}

#[test]
fn a_snapshot_held_back_by_a_full_writer_asks_to_be_woken() {
    let t0 = Instant::now();
    let mut log = Log::new(10);
    log.tail_from = 100;
    let cfg = ReplicationConfig {
        batch_bytes: 100,
        ..config()
    };
    let mut e = engine(t0, &log, cfg);
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(10)), &log);
    handshake(&mut e, t0, &log, 0, 0);
    e.poll_transmit(t0, &log);
    drain(&mut e);
    e.handle(
        t0,
        LinkInput::WalRead {
            gen: 1,
            from: 1,
            result: Err(ReadFailure::BelowLogStart),
        },
        &log,
    );
    drain(&mut e);
    e.handle(
        t0,
        LinkInput::SnapshotLoaded {
            gen: 1,
            result: Ok(Some(SnapshotBytes {
                offset: 7,
                epoch: 1,
                bytes: Bytes::from(vec![1u8; 300]),
            })),
        },
        &log,
    );
    // The writer took one chunk, then was full: two chunks are left, and
    // nothing from the follower is due. The engine must ask to be called
    // back within a heartbeat, not only at the silence deadline.
    assert!(matches!(
        e.poll_transmit(t0, &log),
        Some(Frame::SnapshotChunk { position: 0, .. })
    ));
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    let t1 = t0 + Duration::from_millis(100);
    e.handle(t1, LinkInput::Tick, &log);
    assert_eq!(
        transmit(&mut e, t1, &log).len(),
        2,
        "the rest of the chunks"
    );
}

#[test]
fn an_empty_wal_read_is_not_repeated_until_the_log_moves() {
    let t0 = Instant::now();
    let mut log = Log::new(5);
    log.tail_from = 100;
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    handshake(&mut e, t0, &log, 0, 0);
    transmit(&mut e, t0, &log);
    assert!(matches!(
        drain(&mut e)[..],
        [LinkAction::ReadWal { from: 1, .. }]
    ));
    e.handle(
        t0,
        LinkInput::WalRead {
            gen: 1,
            from: 1,
            result: Err(ReadFailure::NotYetWritten),
        },
        &log,
    );
    transmit(&mut e, t0, &log);
    assert_eq!(drain(&mut e), vec![], "no read again at once");
    e.handle(t0, LinkInput::Progress(log.progress(0)), &log);
    transmit(&mut e, t0, &log);
    assert!(matches!(
        drain(&mut e)[..],
        [LinkAction::ReadWal { from: 1, .. }]
    ));
}

#[test]
fn only_answers_the_link_accepts_on_its_current_connection_count_as_heard() {
    let t0 = Instant::now();
    let log = Log::new(5);
    let mut e = engine(t0, &log, config());
    drain(&mut e);
    e.handle(t0, LinkInput::Progress(log.progress(3)), &log);
    handshake(&mut e, t0, &log, 2, EPOCH);
    // An ack of an older connection: not this follower's answer now.
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 0,
            frame: Frame::Ack { offset: 1, seq: 0 },
        },
        &log,
    );
    assert_eq!(drain(&mut e), vec![]);
    // A frame the link does not expect breaks it: not heard either.
    e.handle(
        t0,
        LinkInput::Frame {
            gen: 1,
            frame: Frame::Heartbeat { commit: 1, seq: 1 },
        },
        &log,
    );
    let actions = drain(&mut e);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, LinkAction::Report(LinkReport::Heard { .. }))),
        "{actions:?}"
    );
}
