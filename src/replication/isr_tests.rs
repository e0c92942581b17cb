//! Unit tests of the ISR tracker: joins, lag, the commit point and the ISR watermark, learners, changing voters.

use super::*;
use proptest::prelude::*;

const LAG: Duration = Duration::from_secs(5);

fn tracker(now: Instant) -> ReplicaSetTracker {
    ReplicaSetTracker::new(1, [2, 3], now, LAG, 2, 1, 0, 0, 0)
}

#[test]
fn learners_replicate_but_count_for_neither_commit_nor_isr() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    t.set_members([1, 2, 3], [4, 5], t0);
    t.on_append(10);
    t.on_local_durable(10);
    for l in [4, 5] {
        t.on_connected(l, 0, t0);
        let c = t.on_ack(l, 10, t0);
        assert_eq!(c.commit_advanced, None, "learner {l} counted for commit");
        assert!(c.joined.is_empty(), "learner {l} joined the ISR");
    }
    assert!(t.is_learner(4) && !t.is_learner(2));
    assert_eq!(t.durable_of(4), Some(10), "a learner's progress is tracked");
    assert_eq!(t.isr(), vec![1]);
    t.on_connected(2, 0, t0);
    assert_eq!(t.on_ack(2, 10, t0).commit_advanced, Some(10));
    assert_eq!(t.isr(), vec![1, 2]);
}

#[test]
fn a_change_of_voters_changes_the_majority_from_then_on() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    t.on_connected(2, 0, t0);
    t.on_append(10);
    t.on_local_durable(10);
    // Five voters: the leader and node 2 are two, not three.
    let c = t.set_members([1, 2, 3, 4, 5], [], t0);
    assert!(c.joined.is_empty() && c.left.is_empty());
    assert_eq!(t.on_ack(2, 10, t0).commit_advanced, None);
    t.on_connected(4, 0, t0);
    assert_eq!(t.on_ack(4, 10, t0).commit_advanced, Some(10));
    // min_insync is capped at the voters in force.
    let mut small = ReplicaSetTracker::new(1, [2, 3], t0, LAG, 5, 1, 0, 0, 0);
    assert_eq!(small.min_insync(), 3);
    small.set_members([1, 2, 3, 4], [], t0);
    assert_eq!(small.min_insync(), 4);
    // A voter demoted or removed leaves the ISR; removed, it is forgotten.
    let c = t.set_members([1, 4], [2], t0);
    assert_eq!(c.left, vec![2]);
    assert_eq!(t.isr(), vec![1, 4]);
    let c = t.set_members([1], [], t0);
    assert_eq!(c.left, vec![4]);
    assert_eq!(t.durable_of(4), None);
    // Alone, the leader commits on its own disk.
    t.on_append(12);
    assert_eq!(t.on_local_durable(12).commit_advanced, Some(12));
}

#[test]
fn scripted_join_commit_lag_and_leave() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    assert_eq!(t.isr(), vec![1]);
    assert!(!t.acks_all_allowed(), "min_insync 2 needs a follower");

    let c = t.on_connected(2, 0, t0);
    assert_eq!(c.joined, vec![2]);
    t.on_connected(3, 0, t0);
    assert_eq!(t.isr(), vec![1, 2, 3]);
    assert!(t.acks_all_allowed());

    t.on_append(10);
    assert_eq!(
        t.on_local_durable(10).commit_advanced,
        None,
        "no follower has it yet"
    );
    let c = t.on_ack(2, 10, t0);
    assert_eq!(
        c.commit_advanced,
        Some(10),
        "leader + one follower commit (k = 2)"
    );
    assert_eq!(t.isr_durable(), 0, "follower 3 has nothing yet");
    let c = t.on_ack(3, 8, t0);
    assert_eq!(c.isr_durable_advanced, Some(8));
    t.on_ack(3, 10, t0);
    assert_eq!(t.isr_durable(), 10);

    // Follower 3 stalls; 2 keeps up. 3 does not hold back the commit,
    // only acks=all; it leaves after the lag, not before.
    t.on_append(20);
    t.on_local_durable(20);
    t.on_ack(2, 20, t0 + Duration::from_secs(1));
    assert_eq!(
        t.commit(),
        20,
        "a slow in-sync follower does not delay the commit"
    );
    assert_eq!(t.isr_durable(), 10, "but acks=all waits for it");
    assert!(t.tick(t0 + Duration::from_secs(4)).left.is_empty());
    let c = t.tick(t0 + Duration::from_secs(6));
    assert_eq!(c.left, vec![3]);
    assert_eq!(
        c.isr_durable_advanced,
        Some(20),
        "ISR shrink lets acks=all through"
    );
    assert_eq!(t.isr(), vec![1, 2]);

    // 3 catches up to the commit point and rejoins.
    let c = t.on_ack(3, 20, t0 + Duration::from_secs(7));
    assert_eq!(c.joined, vec![3]);

    // A dropped link leaves at once.
    let c = t.on_disconnected(2);
    assert_eq!(c.left, vec![2]);
    assert_eq!(t.isr(), vec![1, 3]);
    assert_eq!(
        t.on_ack(2, 20, t0).joined,
        Vec::<NodeId>::new(),
        "acks on a dead link are ignored"
    );
}

#[test]
fn busy_follower_one_round_trip_behind_stays_in_sync() {
    let t0 = Instant::now();
    let mut t = tracker(t0);
    t.on_connected(2, 0, t0);
    t.on_connected(3, 0, t0);
    // Every 10 ms the log grows by 100; follower 2 always acks the log end
    // of the previous step (never fully caught up at ack time).
    let mut end = 0;
    for step in 1..=2000u64 {
        let now = t0 + Duration::from_millis(10 * step);
        let prev_end = end;
        end += 100;
        t.on_append(end);
        t.on_local_durable(end);
        t.on_ack(2, prev_end, now);
        t.on_ack(3, prev_end, now);
        assert!(t.tick(now).left.is_empty(), "step {step}");
    }
    assert_eq!(t.isr(), vec![1, 2, 3]);
}

#[test]
fn hw_not_below_epoch_start() {
    let t0 = Instant::now();
    // New epoch starts at offset 51 (its LeaderChange, not yet durable);
    // committed was 40; the leader has 50 durable.
    let mut t = ReplicaSetTracker::new(1, [2], t0, LAG, 2, 51, 40, 51, 50);
    assert_eq!(
        t.commit(),
        40,
        "50 < epoch start: entries of an old epoch are not committed by counting"
    );
    t.on_connected(2, 50, t0);
    assert_eq!(t.commit(), 40);
    t.on_ack(2, 51, t0);
    assert_eq!(t.commit(), 40, "the leader itself does not have 51 yet");
    assert_eq!(t.on_local_durable(51).commit_advanced, Some(51));
}

#[test]
fn lone_leader_commits_nothing() {
    // Both followers down: the ISR is {leader}, min_insync 2 refuses
    // acks=all, and acks=leader writes must not commit on one disk.
    let t0 = Instant::now();
    let mut t = tracker(t0);
    t.on_append(5);
    assert_eq!(t.on_local_durable(5), IsrChange::default());
    assert_eq!((t.commit(), t.isr_durable()), (0, 0));
    // One follower back: 2 of 3 is a majority.
    t.on_connected(2, 5, t0);
    assert_eq!(t.commit(), 5);
    assert_eq!(t.isr_durable(), 5);
}

#[test]
fn five_voters_need_three_disks_whatever_min_insync() {
    let t0 = Instant::now();
    let mut t = ReplicaSetTracker::new(1, [2, 3, 4, 5], t0, LAG, 2, 1, 0, 0, 0);
    t.on_connected(2, 0, t0);
    t.on_append(10);
    t.on_local_durable(10);
    t.on_ack(2, 10, t0);
    assert!(t.acks_all_allowed(), "ISR {{1, 2}} meets min_insync 2");
    assert_eq!(t.commit(), 0, "2 of 5 disks is not a majority");
    assert_eq!(t.isr_durable(), 0, "acks=all waits for the commit too");
    // A third voter that is not (yet) in the ISR still counts for the
    // commit: its disk holds the entry.
    t.on_connected(3, 10, t0);
    assert_eq!(t.commit(), 10);
    assert_eq!(t.isr_durable(), 10);
    // A disconnected voter's durable offset still counts.
    t.on_disconnected(3);
    t.on_append(12);
    t.on_local_durable(12);
    t.on_ack(2, 12, t0);
    assert_eq!(t.commit(), 10, "only 2 disks have 12");
}

#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Append(u64),
    LocalDurable,
    Connect(u64, u64),
    Disconnect(u64),
    Ack(u64, u64),
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..3000).prop_map(Step::Advance),
        (1u64..20).prop_map(Step::Append),
        Just(Step::LocalDurable),
        (2u64..=4, 0u64..200).prop_map(|(p, o)| Step::Connect(p, o)),
        (2u64..=4).prop_map(Step::Disconnect),
        (2u64..=4, 0u64..30).prop_map(|(p, back)| Step::Ack(p, back)),
        Just(Step::Tick),
    ]
}

proptest! {
    #[test]
    fn randomized_schedule_keeps_invariants(steps in proptest::collection::vec(step(), 1..300)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut t = ReplicaSetTracker::new(1, [2, 3, 4], t0, LAG, 2, 1, 0, 0, 0);
        let mut connected = std::collections::BTreeSet::new();
        let mut last_hw = 0;
        let mut last_isr_durable = 0;
        for s in steps {
            let last_hw_before_step = t.commit();
            match s {
                Step::Advance(ms) => now += Duration::from_millis(ms),
                Step::Append(n) => t.on_append(t.log_end() + n),
                Step::LocalDurable => { t.on_local_durable(t.log_end()); }
                Step::Connect(p, o) => {
                    let o = o.min(t.log_end());
                    t.on_disconnected(p);
                    t.on_connected(p, o, now);
                    connected.insert(p);
                }
                Step::Disconnect(p) => { t.on_disconnected(p); connected.remove(&p); }
                Step::Ack(p, back) => {
                    let o = t.log_end().saturating_sub(back);
                    t.on_ack(p, o, now);
                }
                Step::Tick => { t.tick(now); }
            }
            // The commit point never moves back, never passes the leader's durable offset
            // nor any ISR member's durable offset.
            prop_assert!(t.commit() >= last_hw);
            prop_assert!(t.isr_durable() >= last_isr_durable);
            last_hw = t.commit();
            last_isr_durable = t.isr_durable();
            prop_assert!(t.commit() <= t.local_durable());
            prop_assert!(t.commit() <= t.log_end());
            prop_assert!(t.isr_durable() <= t.commit(), "acks=all never runs ahead of the commit");
            // The commit is on a majority of the 4 voters' disks (3).
            let on_disk = [1u64, 2, 3, 4]
                .iter()
                .filter(|&&v| t.durable_of(v).unwrap_or(0) >= t.commit())
                .count();
            prop_assert!(t.commit() == last_hw_before_step || on_disk >= 3, "commit {} on {} disks", t.commit(), on_disk);
            let isr = t.isr();
            prop_assert_eq!(isr[0], 1);
            for &m in &isr[1..] {
                prop_assert!(connected.contains(&m), "disconnected {} in ISR", m);
                // acks=all entries are on every ISR member's disk.
                prop_assert!(t.durable_of(m).unwrap_or(0) >= t.isr_durable());
            }
            prop_assert_eq!(t.acks_all_allowed(), isr.len() >= 2);
            // The commit point is at least the epoch start once it moved at all.
            prop_assert!(t.commit() == 0 || t.commit() >= t.epoch_start());
        }
        // After a tick, no ISR member lags more than the limit.
        t.tick(now);
        for &m in &t.isr()[1..] {
            let lagging = t.durable_of(m).unwrap_or(0) < t.log_end();
            let since = now.saturating_duration_since(t.last_caught_up(m).unwrap_or(now));
            prop_assert!(!lagging || since <= LAG);
        }
    }
}
