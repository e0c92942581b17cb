//! The invariants, checked after every step of a simulation.
//!
//! The checker keeps a global view no single node has: which node led each
//! epoch, a rolling hash of every log prefix ever seen at each
//! `(offset, epoch)`, every entry any leader committed, every entry any node
//! applied, and every `acks=all` write a client saw succeed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::command::{Entry, NodeId};

use super::net::{Dir, Network};
use super::node::{Node, Role};

/// Which invariant broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// At most one leader per epoch.
    ElectionSafety,
    /// Offsets dense from 1; epochs never decrease along a log; each entry
    /// is the one the leader of its epoch wrote there.
    DenseLog,
    /// Two logs with the same (offset, epoch) agree on every entry up to it.
    LogMatching,
    /// Every committed entry is in the log of every later leader.
    LeaderCompleteness,
    /// No two nodes apply different entries at an offset; only committed
    /// entries are applied.
    AppliedAgreement,
    /// A node's applied offset never decreases within one incarnation.
    AppliedMonotonic,
    /// Each link's in-flight data stays within its window; each
    /// connection's queue stays bounded.
    BoundedQueues,
    /// The protocol did something its engines say cannot happen (a refused
    /// batch after a matched handshake, a snapshot without compaction, a
    /// truncation below the commit point, ...).
    Protocol,
    /// After the faults healed, the cluster did not settle on one leader
    /// with every node at the same applied offset and digest.
    Convergence,
    /// After the faults healed, no leader known to every live node within
    /// [`LIVENESS_TIMEOUTS`](super::LIVENESS_TIMEOUTS) election timeouts.
    Liveness,
    /// An `acks=all` write that returned Ok is missing from a node.
    AckedWriteLost,
    /// A linearizable read (a read index confirmed by the leader) was
    /// served from a state that misses an entry committed before the read
    /// began.
    StaleRead,
    /// A node publishes a role other than the one it runs (a leader state
    /// or a released log owner while it publishes `Follower`, or none
    /// while it publishes `Leader`), once no role-change step is out.
    RoleAgreement,
    /// A committed entry is not durable on a majority of the voters in
    /// force at its offset, or a log holds more than one membership entry
    /// past the commit point.
    MemberQuorum,
}

impl Invariant {
    /// Kebab-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::ElectionSafety => "election-safety",
            Invariant::DenseLog => "dense-log",
            Invariant::LogMatching => "log-matching",
            Invariant::LeaderCompleteness => "leader-completeness",
            Invariant::AppliedAgreement => "applied-agreement",
            Invariant::AppliedMonotonic => "applied-monotonic",
            Invariant::BoundedQueues => "bounded-queues",
            Invariant::Protocol => "protocol",
            Invariant::Convergence => "convergence",
            Invariant::Liveness => "liveness",
            Invariant::AckedWriteLost => "acked-write-lost",
            Invariant::StaleRead => "stale-read",
            Invariant::RoleAgreement => "role-agreement",
            Invariant::MemberQuorum => "member-quorum",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An invariant that broke, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The invariant.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
}

fn broken<T>(invariant: Invariant, detail: String) -> Result<T, Broken> {
    Err(Broken { invariant, detail })
}

/// Limits the checker enforces on queues.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A link's window in entries.
    pub window_entries: usize,
    /// A link's window in bytes (one record may overshoot an empty window).
    pub window_bytes: usize,
    /// Most messages queued in one direction of one connection.
    pub queue: usize,
}

/// The global view of one simulation.
#[derive(Debug, Clone)]
pub struct Checker {
    bounds: Bounds,
    leaders: BTreeMap<u64, NodeId>,
    /// Rolling hash of the log prefix ending at each (offset, epoch).
    prefixes: HashMap<(u64, u64), u64>,
    /// Every committed entry, with the epoch of the leader that committed it.
    committed: BTreeMap<u64, (Entry, u64)>,
    applied: BTreeMap<u64, Entry>,
    /// Per node: (incarnation, applied offset) last seen.
    last_applied: BTreeMap<NodeId, (u64, u64)>,
    acked_all: Vec<Entry>,
}

impl Checker {
    /// A checker with nothing seen yet.
    pub fn new(bounds: Bounds) -> Checker {
        Checker {
            bounds,
            leaders: BTreeMap::new(),
            prefixes: HashMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            last_applied: BTreeMap::new(),
            acked_all: Vec::new(),
        }
    }

    /// `acks=all` writes that returned Ok so far.
    pub fn acked_all(&self) -> &[Entry] {
        &self.acked_all
    }

    /// Highest committed offset any leader reported.
    pub fn committed_upto(&self) -> u64 {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// `node` becomes leader of `epoch` with log `log`: no other leader of
    /// that epoch, and its log holds every entry committed by the leader of
    /// an earlier epoch (Raft's leader completeness). A leader of an epoch
    /// below one that already committed may lack that epoch's entries: a
    /// candidate paused with its vote grants in its socket wins its old
    /// epoch on waking, and fencing keeps it from committing anything.
    pub fn on_leader(&mut self, epoch: u64, node: NodeId, log: &[Entry]) -> Result<(), Broken> {
        if let Some(&other) = self.leaders.get(&epoch) {
            if other != node {
                return broken(
                    Invariant::ElectionSafety,
                    format!("epoch {epoch} has leaders n{other} and n{node}"),
                );
            }
        }
        self.leaders.insert(epoch, node);
        for (&offset, (entry, by)) in &self.committed {
            if *by < epoch && log.get(offset as usize - 1) != Some(entry) {
                return broken(
                    Invariant::LeaderCompleteness,
                    format!(
                        "new leader n{node} (epoch {epoch}) lacks offset {offset} \
                         committed in epoch {by}: has {:?}, committed {entry:?}",
                        log.get(offset as usize - 1)
                    ),
                );
            }
        }
        Ok(())
    }

    /// The leader `node` of `epoch` moved its commit point over `entries`;
    /// every other up leader of a later epoch must already hold them.
    pub fn on_committed(
        &mut self,
        node: NodeId,
        epoch: u64,
        entries: &[Entry],
        nodes: &[Node],
    ) -> Result<(), Broken> {
        for e in entries {
            match self.committed.get(&e.offset) {
                Some((prev, by)) if prev != e => {
                    return broken(
                        Invariant::LeaderCompleteness,
                        format!(
                            "n{node} (epoch {epoch}) committed {e:?} at offset {}, \
                             where epoch {by} committed {prev:?}",
                            e.offset
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.committed.insert(e.offset, (e.clone(), epoch));
                }
            }
            for n in nodes {
                if let Role::Leader(_) = n.role {
                    let later = n.meta().epoch > epoch;
                    if n.up && later && n.log.get(e.offset as usize - 1) != Some(e) {
                        return broken(
                            Invariant::LeaderCompleteness,
                            format!(
                                "n{node} (epoch {epoch}) committed offset {} which the later \
                                 leader n{} (epoch {}) does not hold",
                                e.offset,
                                n.id,
                                n.meta().epoch
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// A leader wrote `entry` with prefix hash `hash`: no other entry may
    /// have been written at that (offset, epoch).
    pub fn on_written(&mut self, entry: &Entry, hash: u64) -> Result<(), Broken> {
        match self.prefixes.insert((entry.offset, entry.epoch), hash) {
            Some(prev) if prev != hash => broken(
                Invariant::DenseLog,
                format!(
                    "two different entries written at offset {} in epoch {}",
                    entry.offset, entry.epoch
                ),
            ),
            _ => Ok(()),
        }
    }

    /// `node` applied `entry`.
    pub fn on_applied(&mut self, node: NodeId, entry: &Entry) -> Result<(), Broken> {
        match self.committed.get(&entry.offset) {
            Some((c, _)) if c == entry => {}
            other => {
                return broken(
                    Invariant::AppliedAgreement,
                    format!(
                        "n{node} applied {entry:?}, committed there: {:?}",
                        other.map(|(c, _)| c)
                    ),
                )
            }
        }
        match self.applied.get(&entry.offset) {
            Some(prev) if prev != entry => broken(
                Invariant::AppliedAgreement,
                format!(
                    "n{node} applied {entry:?} at offset {}, another node applied {prev:?}",
                    entry.offset
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(entry.offset, entry.clone());
                Ok(())
            }
        }
    }

    /// A client's `acks=all` write of `entry` returned Ok.
    pub fn on_acked_all(&mut self, entry: Entry) {
        self.acked_all.push(entry);
    }

    /// The checks that run after every step.
    pub fn check_step(&mut self, nodes: &mut [Node], net: &Network) -> Result<(), Broken> {
        for n in nodes.iter_mut() {
            self.check_log(n)?;
            let meta = n.meta();
            if n.up {
                let applied = n.state().applied_offset();
                let last = self.last_applied.entry(n.id).or_insert((n.incarnation, 0));
                if last.0 != n.incarnation {
                    *last = (n.incarnation, 0);
                }
                if applied < last.1 {
                    return broken(
                        Invariant::AppliedMonotonic,
                        format!("n{} applied offset went from {} to {applied}", n.id, last.1),
                    );
                }
                last.1 = applied;
            }
            if let (true, Role::Leader(l)) = (n.up, &n.role) {
                match self.leaders.get(&meta.epoch) {
                    Some(&who) if who == n.id => {}
                    other => {
                        return broken(
                            Invariant::ElectionSafety,
                            format!(
                                "n{} leads epoch {} whose leader is {other:?}",
                                n.id, meta.epoch
                            ),
                        )
                    }
                }
                for (peer, link) in &l.links {
                    let (entries, bytes) = (
                        link.engine.progress().inflight_entries(),
                        link.engine.progress().inflight_bytes(),
                    );
                    if entries > self.bounds.window_entries
                        || (bytes > self.bounds.window_bytes && entries > 1)
                    {
                        return broken(
                            Invariant::BoundedQueues,
                            format!(
                                "link n{}→n{peer} has {entries} entries / {bytes} bytes in flight",
                                n.id
                            ),
                        );
                    }
                }
            }
        }
        for (id, c) in net.connections() {
            for dir in [Dir::ToFollower, Dir::ToLeader] {
                if c.queued(dir) > self.bounds.queue {
                    return broken(
                        Invariant::BoundedQueues,
                        format!(
                            "connection {id} has {} messages queued {dir:?}",
                            c.queued(dir)
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Dense offsets, ordered epochs, known writers and log matching, for
    /// the part of `n`'s log that changed since the last check.
    pub fn check_log(&mut self, n: &mut Node) -> Result<(), Broken> {
        let epoch_now = n.meta().epoch;
        for i in n.dirty_from..n.log.len() {
            let e = &n.log[i];
            if e.offset != i as u64 + 1 {
                return broken(
                    Invariant::DenseLog,
                    format!("n{} holds offset {} at position {}", n.id, e.offset, i + 1),
                );
            }
            let prev_epoch = if i == 0 { 0 } else { n.log[i - 1].epoch };
            if e.epoch < prev_epoch || e.epoch > epoch_now || !self.leaders.contains_key(&e.epoch) {
                return broken(
                    Invariant::DenseLog,
                    format!(
                        "n{} (epoch {epoch_now}) holds offset {} of epoch {} after epoch {prev_epoch}",
                        n.id, e.offset, e.epoch
                    ),
                );
            }
            match self.prefixes.get(&(e.offset, e.epoch)) {
                Some(&h) if h == n.chain[i] => {}
                Some(_) => {
                    return broken(
                        Invariant::LogMatching,
                        format!(
                            "n{} agrees at offset {} epoch {} but its log up to there differs",
                            n.id, e.offset, e.epoch
                        ),
                    )
                }
                None => {
                    return broken(
                        Invariant::DenseLog,
                        format!(
                            "n{} holds offset {} epoch {} that no leader wrote",
                            n.id, e.offset, e.epoch
                        ),
                    )
                }
            }
        }
        n.dirty_from = n.log.len();
        Ok(())
    }

    /// End of a seed: every `acks=all` write that returned Ok is on every
    /// node at its offset.
    pub fn check_acked(&self, nodes: &[Node], members: &[NodeId]) -> Result<(), Broken> {
        for e in &self.acked_all {
            for n in nodes.iter().filter(|n| members.contains(&n.id)) {
                if n.log.get(e.offset as usize - 1) != Some(e) {
                    return broken(
                        Invariant::AckedWriteLost,
                        format!(
                            "acked write {e:?} missing on n{}: it holds {:?}",
                            n.id,
                            n.log.get(e.offset as usize - 1)
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}
