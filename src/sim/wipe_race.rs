//! The wipe race: a voter's disk is wiped, and it comes back under its
//! old node id — the history a voter's directory id exists for, staged on
//! purpose because random faults never build it.
//!
//! With the voters `a` (leading), `w`, the set `Y` (as many as a majority
//! may leave out: one of three, two of five) and the rest `X`:
//!
//! 0. `Y` is cut off; `a` commits entries with `w` and `X` that `Y` lacks;
//! 1. `a` crashes; `w` crashes, its disk is wiped (log, vote, epoch:
//!    everything it acknowledged is gone) and it restarts with a new
//!    directory id; `X` is cut off instead of `Y`. `Y` and the empty `w`
//!    are a majority by count, and `Y`'s logs are at least `w`'s: `w`
//!    grants its vote to one of `Y`;
//! 2. after a hold of a few election timeouts, the cut heals and `a`
//!    restarts.
//!
//! A grant carries the voter's directory id, and a candidate counts it
//! only if the membership names that directory for that voter: no node of
//! `Y` is elected, and once the cut heals a node with the entries is.
//! With the planted `ignore-directory`, a node of `Y` is elected without
//! the entries `a`, `w` and `X` committed (leader completeness).
//!
//! Once per run at most: `w` stays a voter whose votes never count (its
//! replication is counted: what it acknowledges it holds), as on a real
//! cluster until the operator removes it and adds it again. The
//! simulation's bootstrap names every node's first directory (as if the
//! operator gave them at the first start), so the check holds from the
//! first offset.

use crate::command::NodeId;

use super::Simulation;

/// The race between its acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WipeRace {
    /// `Y` is cut off; waiting for `a` to commit an entry past `Y`'s logs.
    AwaitCommit {
        a: NodeId,
        w: NodeId,
        y: [Option<NodeId>; 2],
    },
    /// `a` is down, `w` wiped and back, `X` cut off: until this virtual
    /// time nothing else happens; then the cut heals and `a` restarts.
    Hold { a: NodeId, until: u64 },
}

/// Whether seed `seed` runs the race: one seed in four, decided without
/// drawing from the seed's generator, so that every other seed plays
/// exactly as it did before the race existed (and the seeds that catch
/// the other planted bugs still do).
fn wipe_race_seed(seed: u64) -> bool {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62 == 0
}

impl Simulation {
    /// Whether a race is under way: the random faults wait (client writes
    /// go on) so that its acts play out as staged.
    pub(super) fn wipe_race_running(&self) -> bool {
        self.wipe_race.is_some()
    }

    /// Start the race if the cluster is in its opening position: a leader
    /// with at least three voters (each with the directory its membership
    /// names), every node up, no partition, and no race run before.
    pub(super) fn maybe_start_wipe_race(&mut self) -> bool {
        if !wipe_race_seed(self.config.seed)
            || self.wipe_race.is_some()
            || self.report.wipe_races > 0
            || self.net.partition().is_some()
            || !self.rng.chance(20)
        {
            return false;
        }
        let n = self.nodes.len() as NodeId;
        if (1..=n).any(|i| !self.node(i).up || self.paused(i)) {
            return false;
        }
        let Some(a) = (1..=n).find(|&i| self.node(i).is_leader()) else {
            return false;
        };
        let Some(log) = self.node(a).engine.membership() else {
            return false;
        };
        let m = log.latest();
        let mut others: Vec<NodeId> = m.voter_ids().filter(|&v| v != a).collect();
        let left_out = m.voter_count() - m.majority();
        if others.len() < 2 || left_out == 0 || !self.wiped_voters(a).is_empty() {
            return false;
        }
        let Some(w) = self.rng.pick(&others) else {
            return false;
        };
        others.retain(|&o| o != w);
        let mut y = [None; 2];
        for slot in y.iter_mut().take(left_out) {
            let Some(pick) = self.rng.pick(&others) else {
                break;
            };
            others.retain(|&o| o != pick);
            *slot = Some(pick);
        }
        self.report.wipe_races += 1;
        self.log(format!(
            "wipe race: n{a} leads; {y:?} cut off, n{w} will be wiped"
        ));
        let side: Vec<bool> = (1..=n).map(|i| y.contains(&Some(i))).collect();
        for (id, c) in self.net.split(side) {
            self.ends_closed(id, &c);
        }
        self.wipe_race = Some(WipeRace::AwaitCommit { a, w, y });
        true
    }

    /// Drive the race (see the module docs).
    pub(super) fn drive_wipe_race(&mut self) {
        match self.wipe_race {
            Some(WipeRace::AwaitCommit { a, w, y }) => {
                if !self.node(a).is_leader() || self.net.partition().is_none() {
                    // Lost its leadership (or healed) first: over.
                    self.log("wipe race: over before act 1".into());
                    self.wipe_race = None;
                    return;
                }
                let held = y
                    .iter()
                    .flatten()
                    .map(|&i| self.node(i).last_offset())
                    .max()
                    .unwrap_or(0);
                if self.node(a).commit <= held {
                    return;
                }
                let n = self.nodes.len() as NodeId;
                self.log(format!(
                    "wipe race: n{a} committed {} ({y:?} hold up to {held}); crash n{a}, wipe n{w}, cut off the rest",
                    self.node(a).commit,
                ));
                self.crash(a);
                self.crash(w);
                self.node_mut(w).wipe();
                self.report.wipes += 1;
                self.restart(w);
                self.net.heal_partition();
                // `X`: the voters with the entries, other than `a` and `w`
                // (none of three voters). Cut off with `a`, which is down.
                let side: Vec<bool> = (1..=n).map(|i| i != w && !y.contains(&Some(i))).collect();
                for (id, c) in self.net.split(side) {
                    self.ends_closed(id, &c);
                }
                let t = self.config.election_timeout.as_nanos() as u64;
                self.wipe_race = Some(WipeRace::Hold {
                    a,
                    until: self.now + 8 * t,
                });
            }
            Some(WipeRace::Hold { a, until }) if self.now >= until => {
                self.log(format!("wipe race: heal, restart n{a}"));
                self.net.heal_partition();
                self.restart(a);
                self.wipe_race = None;
            }
            Some(WipeRace::Hold { .. }) | None => {}
        }
    }
}
