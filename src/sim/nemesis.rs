//! The stale-candidate nemesis: faults aimed at the states where a missing
//! election rule loses data.
//!
//! The simulation's random faults rarely make a candidate with a stale log:
//! appends in flight reach every follower before an election timer fires.
//! Jepsen's and KRaft's nemeses aim instead, and so does this one, in two
//! acts:
//!
//! 1. **Cut** a minority of followers off while writes go on committing on
//!    the majority (their logs fall behind), sometimes slowing the disk of
//!    one more follower too (acked, but late to be durable);
//! 2. a few client events later, **strike**: heal the cut and, at that
//!    instant, crash the leader or isolate it, and step the stale nodes'
//!    clocks forward so their election timers fire first.
//!
//! Measured over 2000 seeds each (3 and 5 nodes), with a subtler
//! planted bug than [`PlantedBug::NoUpToDateRule`](super::PlantedBug)
//! (the up-to-date rule comparing log lengths only, not last epochs): 34
//! and 10 violations with the nemesis, 32 and 7 without it. Without any
//! planted bug: 0 violations either way. A modest gain; the faults that
//! make divergent uncommitted tails (a deposed leader that keeps
//! appending) are the next ones to aim.
//!
//! The nemesis draws from the seed's one random stream only while it is
//! enabled ([`SimConfig::nemesis`](super::SimConfig::nemesis)), so seeds
//! recorded without it replay exactly with it off.

use crate::command::NodeId;

use super::{Simulation, MS};

/// The nemesis between its two acts.
#[derive(Debug, Clone)]
pub(super) struct StaleCandidate {
    /// The followers cut off (their logs fall behind).
    stale: Vec<NodeId>,
    /// Client events until the strike.
    events_left: u64,
}

impl Simulation {
    /// Start the nemesis (its first act), unless it is already running or
    /// the cluster has no leader to strike.
    pub(super) fn nemesis_cut(&mut self) {
        if self.nemesis.is_some() || self.net.partition().is_some() {
            self.propose();
            return;
        }
        let n = self.nodes.len() as NodeId;
        let Some(leader) = (1..=n).find(|&i| self.node(i).up && self.node(i).is_leader()) else {
            self.propose();
            return;
        };
        let mut followers: Vec<NodeId> = (1..=n)
            .filter(|&i| i != leader && self.node(i).up)
            .collect();
        let most = (self.nodes.len() - 1) / 2;
        let want = self.rng.range(1, most as u64) as usize;
        let mut stale = Vec::new();
        while stale.len() < want {
            let Some(id) = self.rng.pick(&followers) else {
                break;
            };
            followers.retain(|&f| f != id);
            stale.push(id);
        }
        if stale.is_empty() {
            self.propose();
            return;
        }
        stale.sort_unstable();
        let side: Vec<bool> = (1..=n).map(|i| stale.contains(&i)).collect();
        let names: Vec<String> = stale.iter().map(|i| format!("n{i}")).collect();
        self.log(format!(
            "nemesis: cut {{{}}} off while n{leader} commits",
            names.join(",")
        ));
        self.report.partitions += 1;
        for (id, c) in self.net.split(side) {
            self.ends_closed(id, &c);
        }
        // Sometimes one more follower's disk is slow: it acks late, so the
        // commit point rests on fewer durable copies.
        if self.rng.chance(300) {
            if let Some(slow) = self.rng.pick(&followers) {
                let ms = self.rng.range(50, 300);
                self.slow_disk_until[slow as usize - 1] = self.now + ms * MS;
                self.report.slow_disks += 1;
                self.log(format!("nemesis: n{slow}'s disk is slow for {ms} ms"));
            }
        }
        let events_left = self.rng.range(5, 60);
        self.nemesis = Some(StaleCandidate { stale, events_left });
    }

    /// Count one client event towards the strike; strike when it is due.
    /// Returns whether it struck (the event is then spent).
    pub(super) fn nemesis_tick(&mut self) -> bool {
        let Some(plan) = self.nemesis.as_mut() else {
            return false;
        };
        plan.events_left = plan.events_left.saturating_sub(1);
        if plan.events_left > 0 {
            return false;
        }
        let Some(plan) = self.nemesis.take() else {
            return false;
        };
        self.nemesis_strike(&plan.stale);
        true
    }

    /// The second act: heal the cut, take the leader away, and let the
    /// stale nodes' timers fire first.
    fn nemesis_strike(&mut self, stale: &[NodeId]) {
        let n = self.nodes.len() as NodeId;
        self.report.nemesis_strikes += 1;
        if self.net.partition().is_some() {
            self.net.heal_partition();
        }
        let leader = (1..=n).find(|&i| self.node(i).up && self.node(i).is_leader());
        let names: Vec<String> = stale.iter().map(|i| format!("n{i}")).collect();
        match leader {
            Some(l) if self.rng.chance(500) => {
                self.log(format!(
                    "nemesis: heal {{{}}} and crash leader n{l}",
                    names.join(",")
                ));
                self.crash(l);
            }
            Some(l) => {
                self.log(format!(
                    "nemesis: heal {{{}}} and isolate leader n{l}",
                    names.join(",")
                ));
                self.report.partitions += 1;
                let side: Vec<bool> = (1..=n).map(|i| i == l).collect();
                for (id, c) in self.net.split(side) {
                    self.ends_closed(id, &c);
                }
            }
            None => self.log(format!("nemesis: heal {{{}}} (no leader)", names.join(","))),
        }
        // The stale nodes' clocks jump most of an election timeout: their
        // timers fire before the others'.
        let t = self.config.election_timeout.as_nanos() as u64;
        for &id in stale {
            if self.node(id).up {
                let by = self.rng.range(t / 2, t);
                self.step_clock(id, by);
            }
        }
    }
}
