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
#[path = "isr_tests.rs"]
mod tests;
