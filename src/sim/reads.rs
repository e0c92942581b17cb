//! Paused nodes and linearizable reads.
//!
//! A **pause** freezes a node the way `SIGSTOP`, a long GC pause or a VM
//! stall does: for a while it handles nothing (no message, no fsync
//! completion, no timer, no client) and so sends nothing, while its clock
//! keeps running. What was sent to it waits (a TCP stream buffers, an
//! election datagram is late) and is handled when it wakes, in the order
//! it arrived. A paused leader is the classic trap for a read index: when
//! it wakes, its followers' old acks arrive all at once, while another
//! leader may have been elected and have committed writes meanwhile.
//!
//! **Reads**: a client asks a node for a linearizable read ([`Ev::Read`]).
//! A leader starts a [`ReadIndex`] on its own clock, and after every step
//! each pending read is checked against what the node's engines know: its
//! role, its applied state, its election engine's `followers_heard` (fed
//! by the links' `LinkReport::Heard`). A read that becomes `Ready` is
//! served from the node's applied state, which must hold every entry any
//! leader had committed before the read began, as Raft's read index
//! promises ([`Invariant::StaleRead`]): whatever a client was told was
//! written for good by then, it reads.
//! The planted `HeardOnArrival` is the bug this catches.

use std::time::Instant;

use crate::command::NodeId;
use crate::engine::election::ElectionRole;
use crate::engine::read_index::{LeaderView, ReadIndex, ReadIndexState};

use super::check::Invariant;
use super::net::Dir;
use super::{Ev, Simulation, MS};

/// Reads a node keeps pending at most; more are refused, as a full queue
/// would refuse them.
pub(super) const MAX_PENDING_READS: usize = 8;

/// A read the leader has started and not answered yet.
#[derive(Debug, Clone)]
pub(super) struct PendingRead {
    read: ReadIndex<Instant>,
    /// The highest offset committed (by any leader) when it started.
    must_see: u64,
    /// Virtual time it started.
    started: u64,
}

impl Simulation {
    /// Whether node `id` is paused now.
    pub(super) fn paused(&self, id: NodeId) -> bool {
        self.paused_until[id as usize - 1] > self.now
    }

    /// The one node that handles `ev`, if it is a single node's event: an
    /// event for a paused node waits until it wakes.
    pub(super) fn handled_by(&self, ev: &Ev) -> Option<NodeId> {
        match *ev {
            Ev::Deliver { conn, dir } => {
                let c = self.net.get(conn)?;
                Some(match dir {
                    Dir::ToFollower => c.follower,
                    Dir::ToLeader => c.leader,
                })
            }
            Ev::WalRead(read) => Some(read.node),
            Ev::Fsync { node, .. } => Some(node),
            Ev::Election { to, .. } => Some(to),
            Ev::ElectionTimer { node, .. } => Some(node),
            Ev::Read { node } => Some(node),
            // A FIN is read after the data before it, by the end it reaches.
            Ev::Fin { conn } => {
                let c = self.net.get(conn)?;
                Some(c.peer_of(c.closed_by?))
            }
            Ev::Tick | Ev::External => None,
        }
    }

    /// Pause the leader, as soon as a follower has sent it an ack (answers
    /// are in flight, and wait for it; a client's read reaches it first and
    /// waits too), for one of two lengths, even odds:
    /// - *long*, 6–14 election timeouts: the others elect a leader and
    ///   commit, and the followers' sessions with the paused leader time
    ///   out;
    /// - *short*, 1.2–1.8 election timeouts and under the session timeout:
    ///   a follower's timer can fire and a new leader win and commit, while
    ///   the followers' sessions with the paused leader are still open —
    ///   only fencing ends them.
    pub(super) fn pause_one(&mut self) {
        let n = self.nodes.len() as NodeId;
        let up: Vec<NodeId> = (1..=n)
            .filter(|&i| self.node(i).up && !self.paused(i))
            .collect();
        let Some(id) = up.iter().copied().find(|&i| self.node(i).is_leader()) else {
            return;
        };
        let t = self.config.election_timeout.as_nanos() as u64;
        let for_ns = if self.rng.chance(500) {
            self.rng.range(6 * t, 14 * t)
        } else {
            let session_ns = self.config.session_timeout.as_nanos() as u64;
            let hi = (t * 9 / 5).min(session_ns * 19 / 20);
            self.rng.range((t * 6 / 5).min(hi - 1), hi)
        };
        self.pause_asked[id as usize - 1] = Some(for_ns);
    }

    /// A follower just sent `id` an ack: start the pause asked for, if any.
    pub(super) fn start_pause(&mut self, id: NodeId) {
        let i = id as usize - 1;
        if !self.node(id).up || self.paused(id) {
            return;
        }
        if let Some(for_ns) = self.pause_asked[i].take() {
            self.paused_until[i] = self.now + for_ns;
            self.report.pauses += 1;
            self.log(format!(
                "fault: n{id}{} paused for {} ms",
                if self.node(id).is_leader() {
                    " (leader)"
                } else {
                    ""
                },
                for_ns / MS
            ));
            // Handled first when it wakes: before the answers that wait.
            self.schedule(0, Ev::Read { node: id });
        }
    }

    /// When paused node `id` handles `ev`, which arrived while it was
    /// paused: at its wake-up, in the order things arrived, 1 µs apart (a
    /// process working through its backlog while its clock moves); the
    /// read that waited was asked for first.
    pub(super) fn after_pause(&mut self, id: NodeId, _ev: &Ev) -> u64 {
        let i = id as usize - 1;
        let at = self.paused_until[i].max(self.backlog_at[i]);
        self.backlog_at[i] = at + 1_000;
        at
    }

    /// A client asks a random live node for a linearizable read.
    pub(super) fn read_somewhere(&mut self) {
        let n = self.nodes.len() as NodeId;
        let id = self.rng.range(1, n);
        self.schedule(0, Ev::Read { node: id });
    }

    /// Node `id` takes a read: a leader that has applied an entry of its
    /// epoch starts a read index; anyone else answers "not the leader"
    /// (nothing to check).
    pub(super) fn read(&mut self, id: NodeId) {
        if !self.node(id).up || self.reads[id as usize - 1].len() >= MAX_PENDING_READS {
            return;
        }
        let view = self.leader_view(id);
        let commit = self.node(id).commit;
        let voters = self.members_of(id).0.len();
        let Some(read) = ReadIndex::maybe_start(self.clock(id), view, commit, voters) else {
            return;
        };
        let must_see = self.checker.committed_upto();
        self.log(format!(
            "n{id}: read started, index {} (committed up to {must_see})",
            read.read_index()
        ));
        let started = self.now;
        self.reads[id as usize - 1].push(PendingRead {
            read,
            must_see,
            started,
        });
    }

    fn leader_view(&self, id: NodeId) -> LeaderView {
        let n = self.node(id);
        LeaderView {
            leading: n.up && n.is_leader() && n.election().role() == ElectionRole::Leader,
            epoch: n.election().epoch(),
            applied_offset: n.state().applied_offset(),
            applied_epoch: n.state().applied_epoch(),
        }
    }

    /// After every step: serve, drop or keep each pending read.
    pub(super) fn check_reads(&mut self) {
        let limit = 4 * self.config.election_timeout.as_nanos() as u64;
        for i in 0..self.nodes.len() {
            let id = i as NodeId + 1;
            if self.reads[i].is_empty() || self.paused(id) {
                continue;
            }
            if !self.node(id).up {
                self.reads[i].clear();
                continue;
            }
            let view = self.leader_view(id);
            let heard: Vec<Instant> = self.node(id).election().followers_heard().collect();
            let mut keep = Vec::new();
            for r in std::mem::take(&mut self.reads[i]) {
                match r.read.check(view, heard.iter().copied()) {
                    ReadIndexState::Ready(index) => {
                        self.report.reads_served += 1;
                        let applied = view.applied_offset;
                        if applied < r.must_see {
                            self.fail(
                                Invariant::StaleRead,
                                format!(
                                    "n{id} (epoch {}) served a read (index {index}) started {:.3} ms ago from offset {applied}, but offset {} was committed before it started",
                                    view.epoch,
                                    (self.now - r.started) as f64 / MS as f64,
                                    r.must_see
                                ),
                            );
                        } else {
                            self.log(format!(
                                "n{id}: read served at offset {applied} (index {index})"
                            ));
                        }
                    }
                    ReadIndexState::Lost => {
                        self.log(format!("n{id}: read refused, leadership lost"));
                    }
                    ReadIndexState::Waiting if self.now - r.started > limit => {
                        self.log(format!("n{id}: read timed out"));
                    }
                    ReadIndexState::Waiting => keep.push(r),
                }
            }
            self.reads[i] = keep;
        }
    }
}
