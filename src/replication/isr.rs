//! The in-sync replica set (ISR), the commit point and the ISR watermark, on
//! the leader.
//!
//! A follower is *in sync* while it is connected and has caught up with the
//! leader's log end within the last `replica_lag_time_max`. It leaves at once
//! when its link drops, or when it lags too long; it rejoins once its durable
//! offset reaches the commit point. The leader is always a member.
//!
//! Two watermarks, both monotonic:
//!
//! - the **commit point** ([`ReplicaSetTracker::commit`]), what every node may
//!   apply: the highest offset durable on a majority of the voters (the
//!   leader counted, ISR or not). A slow follower therefore never delays
//!   what the other nodes apply, and a committed entry is on a majority of
//!   disks, so any later leader (elected or promoted as the most up-to-date
//!   of a majority) has it — as in Raft, and Kafka's KRaft metadata log
//!   (`LeaderState.maybeUpdateHighWatermark`). A lone leader commits
//!   nothing;
//! - the **ISR watermark** ([`ReplicaSetTracker::isr_durable`]), the lowest
//!   durable offset over the whole ISR, capped at the commit point: an
//!   `acks=all` write resolves once it is covered, so it is committed and on
//!   every in-sync replica's disk.
//!
//! Neither moves below the first entry of the leader's epoch (its
//! `LeaderChange`), whose commit commits everything before it.
//!
//! "Caught up" follows Kafka's rule so that a healthy follower under constant
//! load stays in the ISR: an ack that reaches the log end the leader had at
//! the *previous* ack proves the follower was caught up at that time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::command::NodeId;

/// Per-follower view used for the ISR.
#[derive(Debug, Clone)]
struct Member {
    /// A voter (counted for commit, may join the ISR) or a learner
    /// (replicated to, counted for nothing).
    voter: bool,
    connected: bool,
    in_isr: bool,
    durable: u64,
    last_caught_up: Instant,
    /// Time of the previous ack and the log end at that time.
    previous_ack: Option<(Instant, u64)>,
}

/// What changed after an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IsrChange {
    /// The commit point moved to this offset.
    pub commit_advanced: Option<u64>,
    /// The ISR watermark (`acks=all`) moved to this offset.
    pub isr_durable_advanced: Option<u64>,
    /// Followers that joined the ISR.
    pub joined: Vec<NodeId>,
    /// Followers that left the ISR.
    pub left: Vec<NodeId>,
}

impl IsrChange {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.commit_advanced.is_none()
            && self.isr_durable_advanced.is_none()
            && self.joined.is_empty()
            && self.left.is_empty()
    }
}

/// ISR membership and the commit point of the leader's epoch.
#[derive(Debug, Clone)]
pub struct ReplicaSetTracker {
    leader: NodeId,
    members: BTreeMap<NodeId, Member>,
    lag_max: Duration,
    min_insync: usize,
    /// `min_insync_replicas` as configured (`min_insync` is it capped at
    /// the voter count in force).
    min_insync_wanted: usize,
    epoch_start: u64,
    local_durable: u64,
    log_end: u64,
    commit: u64,
    isr_durable: u64,
}

impl ReplicaSetTracker {
    /// A tracker for `leader` with `followers` (none in the ISR yet), whose
    /// epoch starts at `epoch_start` (the offset of its `LeaderChange`), with
    /// a known-committed offset `commit`, the log ending at `log_end` of which
    /// `local_durable` is on disk. `min_insync` is capped at the cluster size.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        leader: NodeId,
        followers: impl IntoIterator<Item = NodeId>,
        now: Instant,
        lag_max: Duration,
        min_insync: usize,
        epoch_start: u64,
        commit: u64,
        log_end: u64,
        local_durable: u64,
    ) -> ReplicaSetTracker {
        let members: BTreeMap<NodeId, Member> = followers
            .into_iter()
            .filter(|&f| f != leader)
            .map(|f| {
                (
                    f,
                    Member {
                        voter: true,
                        connected: false,
                        in_isr: false,
                        durable: 0,
                        last_caught_up: now,
                        previous_ack: None,
                    },
                )
            })
            .collect();
        let cluster = members.len() + 1;
        let mut t = ReplicaSetTracker {
            leader,
            members,
            lag_max,
            min_insync: min_insync.clamp(1, cluster),
            min_insync_wanted: min_insync,
            epoch_start,
            local_durable: local_durable.min(log_end),
            log_end,
            commit: commit.min(log_end),
            isr_durable: commit.min(log_end),
        };
        let _ = t.recompute();
        t
    }

    /// The commit point (commit point): what every node may apply.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// The ISR watermark: durable on every ISR member; `acks=all` writes up
    /// to here are acknowledged.
    pub fn isr_durable(&self) -> u64 {
        self.isr_durable
    }

    /// The leader's log end.
    pub fn log_end(&self) -> u64 {
        self.log_end
    }

    /// The leader's durable offset.
    pub fn local_durable(&self) -> u64 {
        self.local_durable
    }

    /// Offset of the first entry of this epoch.
    pub fn epoch_start(&self) -> u64 {
        self.epoch_start
    }

    /// Effective `min_insync_replicas` (capped at the number of voters).
    pub fn min_insync(&self) -> usize {
        self.min_insync
    }

    /// ISR members, leader first.
    pub fn isr(&self) -> Vec<NodeId> {
        let mut v = vec![self.leader];
        v.extend(
            self.members
                .iter()
                .filter(|(_, m)| m.in_isr)
                .map(|(&id, _)| id),
        );
        v
    }

    /// Number of ISR members, leader included.
    pub fn isr_len(&self) -> usize {
        1 + self.members.values().filter(|m| m.in_isr).count()
    }

    /// Whether an `acks=all` write may be accepted now.
    pub fn acks_all_allowed(&self) -> bool {
        self.isr_len() >= self.min_insync
    }

    /// Whether `peer` is in the ISR.
    pub fn in_isr(&self, peer: NodeId) -> bool {
        peer == self.leader || self.members.get(&peer).is_some_and(|m| m.in_isr)
    }

    /// `peer`'s durable offset as last reported.
    pub fn durable_of(&self, peer: NodeId) -> Option<u64> {
        if peer == self.leader {
            return Some(self.local_durable);
        }
        self.members.get(&peer).map(|m| m.durable)
    }

    /// When `peer` was last caught up with the log end.
    pub fn last_caught_up(&self, peer: NodeId) -> Option<Instant> {
        self.members.get(&peer).map(|m| m.last_caught_up)
    }

    /// The leader appended up to `log_end`.
    pub fn on_append(&mut self, log_end: u64) {
        self.log_end = self.log_end.max(log_end);
    }

    /// The leader's own WAL is durable up to `offset`.
    pub fn on_local_durable(&mut self, offset: u64) -> IsrChange {
        self.local_durable = self.local_durable.max(offset.min(self.log_end));
        let mut change = IsrChange::default();
        self.finish(&mut change);
        change
    }

    /// `peer`'s link completed a handshake whose log matches up to
    /// `matched_offset` (all of it durable on the follower).
    pub fn on_connected(&mut self, peer: NodeId, matched_offset: u64, now: Instant) -> IsrChange {
        let mut change = IsrChange::default();
        if let Some(m) = self.members.get_mut(&peer) {
            m.connected = true;
            m.durable = matched_offset;
            m.previous_ack = Some((now, self.log_end));
            if matched_offset >= self.log_end {
                m.last_caught_up = now;
            }
        }
        self.try_join(peer, now, &mut change);
        self.finish(&mut change);
        change
    }

    /// `peer`'s link dropped: it leaves the ISR at once.
    pub fn on_disconnected(&mut self, peer: NodeId) -> IsrChange {
        let mut change = IsrChange::default();
        if let Some(m) = self.members.get_mut(&peer) {
            m.connected = false;
            m.previous_ack = None;
            if m.in_isr {
                m.in_isr = false;
                change.left.push(peer);
            }
        }
        self.finish(&mut change);
        change
    }

    /// `peer` acked (cumulatively) `offset` as durable at `now`.
    pub fn on_ack(&mut self, peer: NodeId, offset: u64, now: Instant) -> IsrChange {
        let mut change = IsrChange::default();
        let log_end = self.log_end;
        let Some(m) = self.members.get_mut(&peer) else {
            return change;
        };
        if !m.connected {
            return change;
        }
        m.durable = m.durable.max(offset.min(log_end));
        if let Some((at, end_then)) = m.previous_ack {
            if m.durable >= end_then && at > m.last_caught_up {
                m.last_caught_up = at;
            }
        }
        if m.durable >= log_end {
            m.last_caught_up = now;
        }
        m.previous_ack = Some((now, log_end));
        self.try_join(peer, now, &mut change);
        self.finish(&mut change);
        change
    }

    /// Time passed: followers that lag more than `replica_lag_time_max`
    /// leave the ISR.
    pub fn tick(&mut self, now: Instant) -> IsrChange {
        let mut change = IsrChange::default();
        for (&id, m) in self.members.iter_mut() {
            if m.in_isr
                && m.durable < self.log_end
                && now.saturating_duration_since(m.last_caught_up) > self.lag_max
            {
                m.in_isr = false;
                change.left.push(id);
            }
        }
        self.finish(&mut change);
        change
    }

    /// The membership in force changed: `voters` (the leader among them)
    /// and `learners`. New members start unconnected (their links report
    /// when they connect); members no longer listed are forgotten; a voter
    /// that became a learner leaves the ISR. The commit point is counted
    /// over the new voters from now on (it never goes back).
    pub fn set_members(
        &mut self,
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
        now: Instant,
    ) -> IsrChange {
        let mut change = IsrChange::default();
        let wanted: BTreeMap<NodeId, bool> = voters
            .into_iter()
            .map(|v| (v, true))
            .chain(learners.into_iter().map(|l| (l, false)))
            .filter(|&(id, _)| id != self.leader)
            .collect();
        let gone: Vec<NodeId> = self
            .members
            .keys()
            .copied()
            .filter(|id| !wanted.contains_key(id))
            .collect();
        for id in gone {
            if self.members.remove(&id).is_some_and(|m| m.in_isr) {
                change.left.push(id);
            }
        }
        for (id, voter) in wanted {
            let m = self.members.entry(id).or_insert(Member {
                voter,
                connected: false,
                in_isr: false,
                durable: 0,
                last_caught_up: now,
                previous_ack: None,
            });
            m.voter = voter;
            if !voter && m.in_isr {
                m.in_isr = false;
                change.left.push(id);
            }
        }
        let voters = 1 + self.members.values().filter(|m| m.voter).count();
        self.min_insync = self.min_insync_wanted.clamp(1, voters);
        let joinable: Vec<NodeId> = self.members.keys().copied().collect();
        for id in joinable {
            self.try_join(id, now, &mut change);
        }
        self.finish(&mut change);
        change
    }

    /// Whether `peer` is a learner here.
    pub fn is_learner(&self, peer: NodeId) -> bool {
        self.members.get(&peer).is_some_and(|m| !m.voter)
    }

    fn try_join(&mut self, peer: NodeId, now: Instant, change: &mut IsrChange) {
        let commit = self.commit;
        if let Some(m) = self.members.get_mut(&peer) {
            if m.voter && m.connected && !m.in_isr && m.durable >= commit {
                m.in_isr = true;
                m.last_caught_up = m.last_caught_up.max(now);
                change.joined.push(peer);
            }
        }
    }

    fn finish(&mut self, change: &mut IsrChange) {
        let (commit, isr) = self.recompute();
        change.commit_advanced = commit;
        change.isr_durable_advanced = isr;
    }

    /// Recompute both watermarks; returns the new values of those that moved.
    ///
    /// Commit: the highest offset durable on a majority of *voters* (the
    /// leader and every follower, in the ISR or not), the leader among them:
    /// a follower's durable
    /// offset stays on its disk whether or not its link is up. The ISR and
    /// `min_insync_replicas` play no part here; they only gate `acks=all`.
    fn recompute(&mut self) -> (Option<u64>, Option<u64>) {
        let mut durable: Vec<u64> = self
            .members
            .values()
            .filter(|m| m.voter)
            .map(|m| m.durable)
            .collect();
        durable.push(self.local_durable);
        durable.sort_unstable_by(|a, b| b.cmp(a));
        let voters = durable.len();
        let majority = voters / 2 + 1;
        // Durable on `majority` voters: the majority-th highest offset. The
        // leader's own disk is required too, so the leader never applies an
        // entry it could lose in a crash.
        let commit = durable[majority - 1].min(self.local_durable);
        // acks=all: committed and durable on every ISR member.
        let all = self
            .members
            .values()
            .filter(|m| m.in_isr)
            .map(|m| m.durable)
            .fold(self.local_durable, u64::min);
        let mut moved = (None, None);
        if commit > self.commit && commit >= self.epoch_start {
            self.commit = commit;
            moved.0 = Some(commit);
        }
        let all = all.min(self.commit);
        if all > self.isr_durable && all >= self.epoch_start {
            self.isr_durable = all;
            moved.1 = Some(all);
        }
        (moved.0, moved.1)
    }
}

#[cfg(test)]
mod tests {
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
}
