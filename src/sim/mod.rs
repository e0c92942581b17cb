//! Deterministic whole-cluster simulation (behind the cargo feature `sim`:
//! the simulate example and `tests/simulation.rs` turn it on; a broker
//! embedding metawal never needs it).
//!
//! N nodes (3 or 5) run the real replication engines —
//! [`ReplicaSetTracker`](crate::replication::ReplicaSetTracker) for the ISR and
//! the commit point, [`LinkProgress`](crate::replication::LinkProgress) per
//! follower link, [`decide_start`](crate::replication::decide_start) and
//! [`check_append`](crate::replication::check_append) for the handshake and
//! every batch, [`EpochIndex`](crate::epochs::EpochIndex) and
//! [`MetadataState`](crate::state::MetadataState) — in one thread, over a
//! simulated [network](net) and [disk], on a virtual clock, with every
//! random choice drawn from one seeded [rng]. A seed replays exactly.
//!
//! One step is one event: a message delivered, an fsync completed, a timer
//! tick (leaders heartbeat and reconnect, sessions time out), a node's
//! election timer, an election message delivered, or an external event (a
//! client write with `acks` none / leader / all, a read, a connection cut, a crash
//! (leaders more often than their share), a restart, a slow disk, a
//! partition — often a leader cut off into a minority — or its heal, a
//! one-way partition or its heal, a clock step). After every step the
//! [`check`] module verifies the invariants.
//!
//! **One-way partitions** make a minority of nodes deaf ([net]): they send
//! but receive nothing. Election datagrams to them are lost; on a
//! replication connection the direction towards them stalls like a TCP
//! stream whose packets are blackholed (nothing lost or reordered, nothing
//! delivered until it heals), so a deaf leader's acks stop arriving and a
//! deaf follower's appends stop arriving, until an end gives up on the
//! silence. A FIN that cannot reach its peer leaves the connection
//! half-open; a new connection needs both directions.
//!
//! **Clock steps**: every node has its own monotonic clock, the virtual
//! clock plus an offset that only grows; a step adds a random amount in
//! `[0, T)` (`T` = the election timeout) to one node's offset. All of a
//! node's engines (election, leader, links, sessions) see its clock, and
//! its election timer, armed from the engine's
//! [`poll_timeout`](crate::engine::election::ElectionEngine::poll_timeout)
//! as the real elector arms it, is converted back to the virtual clock
//! with the node's offset (and re-armed when the clock steps).
//!
//! **Pauses and reads** (`sim/reads.rs`): a paused leader handles nothing for a
//! while (`SIGSTOP`, a VM stall) and then its whole backlog; clients ask
//! for linearizable reads, and a served read must hold every entry
//! committed before it started.
//!
//! At the end of a seed the faults heal, crashed nodes restart, and the
//! cluster must settle: within `10 × T` of virtual time from the heal,
//! exactly one leader that every live node knows of ([`Invariant::Liveness`]
//! otherwise; the time is [`SeedReport::heal_to_leader`]); then every node
//! at the same applied offset and digest and every acknowledged
//! `acks=all` write on every node.
//!
//! Every node runs the real node engine ([election]): its election
//! (pre-votes and votes over the simulated network, votes persisted before
//! they are sent, check-quorum) and its role changes (step-up with
//! rollback, step-down, transfer, clean shutdown with resignation), each
//! step carried out and answered by this shell. Restarts recover the
//! commit point from the commit hint (`engine::recovery`).
//!
//! Not modelled yet: snapshots and log compaction (a
//! `Snapshot` start point is reported as a violation), the tail cache, WAL
//! segment files and corruption beyond a torn tail, frames, the codec and
//! the authenticated handshake, nodes that receive but cannot send,
//! backward clock steps (monotonic clocks never go back), request
//! timeouts, and commands other than `CreateTopic`.
//!
//! ```no_run
//! use metawal::sim::{run_seed, SimConfig};
//! let report = run_seed(&SimConfig::new(42, 3));
//! if let Some(v) = &report.violation {
//!     // Seed, step, invariant, the last 50 events and the replay command.
//!     let _text = v.to_string();
//! }
//! ```

mod change_race;
pub mod check;
mod config;
pub mod disk;
pub mod election;
mod faults;
pub mod follower;
pub mod leader;
mod members;
mod nemesis;
pub mod net;
pub mod node;
mod reads;
pub mod rng;
mod settle;
mod streams;
mod wipe_race;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crate::command::{Command, NodeId};

use check::{Bounds, Broken, Checker, Invariant};
use net::{ConnId, Dir, Network};
use node::{Acks, Node};
use rng::SimRng;

const MS: u64 = 1_000_000;
const EVENTS_KEPT: usize = 50;

/// After the faults heal, one leader known to every live node must exist
/// within this many election timeouts of virtual time.
pub const LIVENESS_TIMEOUTS: u32 = 10;

pub use config::{PlantedBug, SeedReport, SimConfig, Violation};

/// Things that happen at a point of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Deliver {
        conn: ConnId,
        dir: Dir,
    },
    WalRead(leader::WalReadDone),
    Fsync {
        node: NodeId,
        generation: u64,
    },
    Tick,
    External,
    Election {
        from: NodeId,
        to: NodeId,
        msg: crate::engine::election::ElectionMsg,
    },
    /// A node's election timer (stale unless `gen` is its current one).
    ElectionTimer {
        node: NodeId,
        gen: u64,
    },
    /// The FIN of a half-open connection tries to reach its other end.
    Fin {
        conn: ConnId,
    },
    /// A client asks `node` for a linearizable read (see [`reads`]).
    Read {
        node: NodeId,
    },
}

/// A node's armed election timer.
#[derive(Debug, Clone, Copy, Default)]
struct Timer {
    /// Bumped at every arm; an event of an older generation is stale.
    gen: u64,
    /// Virtual time it fires at, while armed.
    at: Option<u64>,
}

/// Run one seed to the end (or its first violation).
pub fn run_seed(config: &SimConfig) -> SeedReport {
    Simulation::new(config.clone()).run()
}

/// The driver: nodes, network, clock, event queue, checker.
#[derive(Debug)]
pub struct Simulation {
    config: SimConfig,
    rng: SimRng,
    base: Instant,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    nodes: Vec<Node>,
    net: Network,
    /// The follower end of every open connection: the real session engine.
    sessions: BTreeMap<ConnId, crate::engine::ReplicaSessionEngine>,
    checker: Checker,
    events: VecDeque<String>,
    all_events: Vec<String>,
    step: u64,
    faults: bool,
    next_topic: u64,
    /// Per node: its disk is slow until this virtual time.
    slow_disk_until: Vec<u64>,
    /// Per node: how far its clock is ahead of the virtual clock (only
    /// grows: clocks are monotonic).
    clock_offset: Vec<u64>,
    /// Per node: its election timer.
    timers: Vec<Timer>,
    /// Per node: its election timers are armed late (the planted bug).
    late_timer: Vec<bool>,
    /// Per node: the transfer target whose catch-up its engine waits for.
    catch_up_watch: Vec<Option<NodeId>>,
    report: SeedReport,
    broken: Option<Broken>,
    /// The stale-candidate nemesis between its acts.
    nemesis: Option<nemesis::StaleCandidate>,
    /// The change race between its acts (see [`change_race`]).
    change_race: Option<change_race::ChangeRace>,
    /// The wipe race between its acts (see [`wipe_race`]).
    wipe_race: Option<wipe_race::WipeRace>,
    /// Per node: it is paused until this virtual time (see [`reads`]).
    paused_until: Vec<u64>,
    /// When the transfer cut in force heals (see [`Network::pair_cut`]).
    cut_until: u64,
    /// Per node: a pause asked for (its length), started when a follower
    /// next sends it an ack.
    pause_asked: Vec<Option<u64>>,
    /// Per node: when it handles the next event that waited for its wake.
    backlog_at: Vec<u64>,
    /// Per node: the linearizable reads it started and has not answered.
    reads: Vec<Vec<reads::PendingRead>>,
}

impl Simulation {
    /// A cluster of `config.nodes` empty nodes, no leader yet.
    pub fn new(config: SimConfig) -> Simulation {
        let mut rng = SimRng::new(config.seed);
        // The virtual clock starts here; every engine is set up on it.
        let base = Instant::now();
        let voters: Vec<NodeId> = (1..=config.nodes as NodeId).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let seed = rng.next_u64();
                Node::with_election(id, voters.clone(), config.election_timeout, seed, base)
            })
            .collect();
        let bounds = Bounds {
            window_entries: config.window_entries,
            window_bytes: config.window_bytes,
            queue: 256,
        };
        let report = SeedReport {
            seed: config.seed,
            nodes: config.nodes,
            ..SeedReport::default()
        };
        let mut sim = Simulation {
            rng,
            base,
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes,
            net: Network::new(),
            sessions: BTreeMap::new(),
            checker: Checker::new(bounds),
            events: VecDeque::new(),
            all_events: Vec::new(),
            step: 0,
            faults: true,
            next_topic: 0,
            slow_disk_until: vec![0; config.nodes],
            clock_offset: vec![0; config.nodes],
            timers: vec![Timer::default(); config.nodes],
            late_timer: vec![false; config.nodes],
            catch_up_watch: vec![None; config.nodes],
            report,
            broken: None,
            nemesis: None,
            change_race: None,
            wipe_race: None,
            paused_until: vec![0; config.nodes],
            cut_until: 0,
            pause_asked: vec![None; config.nodes],
            backlog_at: vec![0; config.nodes],
            reads: vec![Vec::new(); config.nodes],
            config,
        };
        sim.schedule(0, Ev::Tick);
        for id in 1..=sim.nodes.len() as NodeId {
            sim.plant_in_engines(id);
            sim.arm_election_timer(id);
        }
        let first = sim.external_delay();
        sim.schedule(first, Ev::External);
        sim
    }

    /// Run the faults phase, then heal and settle; check the end state.
    pub fn run(mut self) -> SeedReport {
        while self.step < self.config.steps && self.broken.is_none() {
            if !self.step_once() {
                break;
            }
        }
        if self.broken.is_none() {
            self.settle();
        }
        self.finish()
    }

    /// The nodes, for inspection.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Process the next event. Returns false when nothing is left to do.
    fn step_once(&mut self) -> bool {
        loop {
            let Some(Reverse((at, _, ev))) = self.queue.pop() else {
                return false;
            };
            self.now = self.now.max(at);
            if let Some(id) = self.handled_by(&ev) {
                if self.paused(id) {
                    // Paused: it handles this when it wakes, in order.
                    let at = self.after_pause(id, &ev);
                    self.log(format!("n{id} is paused: {ev:?} waits"));
                    self.seq += 1;
                    self.queue.push(Reverse((at, self.seq, ev)));
                    continue;
                }
            }
            let done = match ev {
                Ev::Deliver { conn, dir } => self.deliver(conn, dir),
                Ev::WalRead(read) => {
                    self.wal_read_done(read);
                    true
                }
                Ev::Fsync { node, generation } => self.fsync_done(node, generation),
                Ev::Tick => {
                    self.tick();
                    true
                }
                Ev::Election { from, to, msg } => self.election_deliver(from, to, msg),
                Ev::ElectionTimer { node, gen } => self.election_timer(node, gen),
                Ev::Fin { conn } => self.fin(conn),
                Ev::Read { node } => {
                    self.read(node);
                    true
                }
                Ev::External => {
                    if self.faults {
                        self.external();
                        let d = self.external_delay();
                        self.schedule(d, Ev::External);
                    }
                    self.faults
                }
            };
            if done {
                self.step += 1;
                if self.broken.is_none() {
                    if let Err(b) = self.checker.check_step(&mut self.nodes, &self.net) {
                        self.broken = Some(b);
                    }
                }
                self.check_reads();
                return true;
            }
        }
    }

    fn schedule(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + delay, self.seq, ev)));
    }

    fn external_delay(&mut self) -> u64 {
        let mean = self.config.external_every.as_nanos() as u64;
        self.rng.range(mean / 4, mean * 7 / 4)
    }

    /// Node `id`'s clock as an `Instant`, for its engines: the virtual
    /// clock plus the node's offset.
    fn clock(&self, id: NodeId) -> Instant {
        self.base + Duration::from_nanos(self.now + self.clock_offset[id as usize - 1])
    }

    /// The virtual time at which node `id`'s clock reads `at` (now if that
    /// is past).
    fn virtual_time(&self, id: NodeId, at: Instant) -> u64 {
        let zero = self.base + Duration::from_nanos(self.clock_offset[id as usize - 1]);
        let t = at.saturating_duration_since(zero).as_nanos();
        u64::try_from(t).unwrap_or(u64::MAX).max(self.now)
    }

    /// A delay for a TCP retransmission (of data or a FIN that did not get
    /// through).
    fn retransmit_delay(&mut self) -> u64 {
        self.rng.range(20 * MS, 60 * MS)
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn log(&mut self, what: String) {
        let line = format!(
            "[{:>5}] {:>9.3}ms {what}",
            self.step,
            self.now as f64 / MS as f64
        );
        if self.config.keep_events {
            self.all_events.push(line.clone());
        }
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(line);
    }

    fn fail(&mut self, invariant: Invariant, detail: String) {
        if self.broken.is_none() {
            self.broken = Some(Broken { invariant, detail });
        }
    }

    fn check(&mut self, r: Result<(), Broken>) {
        if let Err(b) = r {
            if self.broken.is_none() {
                self.broken = Some(b);
            }
        }
    }

    /// Start an fsync on `id` if it has unsynced records and none running.
    fn start_sync(&mut self, id: NodeId) {
        let Some((_, generation)) = self.node_mut(id).disk.start_sync() else {
            return;
        };
        let latency = if self.now < self.slow_disk_until[id as usize - 1] {
            self.rng.range(50 * MS, 300 * MS)
        } else if self.rng.chance(950) {
            self.rng.range(MS / 2, 5 * MS)
        } else {
            self.rng.range(20 * MS, 150 * MS)
        };
        self.schedule(
            latency,
            Ev::Fsync {
                node: id,
                generation,
            },
        );
    }

    fn fsync_done(&mut self, id: NodeId, generation: u64) -> bool {
        if !self.node(id).up {
            return false;
        }
        let Some(durable) = self.node_mut(id).disk.complete_sync(generation) else {
            return false;
        };
        self.log(format!("n{id} fsync: durable {durable}"));
        if self.node(id).is_leader() {
            self.leader_durable(id, durable);
        } else {
            self.follower_durable(id, durable);
        }
        self.start_sync(id);
        true
    }

    /// Apply what `id` may apply, and check each applied entry.
    fn apply(&mut self, id: NodeId) {
        let applied = self.node_mut(id).apply_committed();
        self.check_applied(id, applied);
    }

    /// Feed one input to `id`'s store engine; check what it applied.
    fn store_input(&mut self, id: NodeId, input: crate::engine::store::StoreInput) {
        let applied = self.node_mut(id).store_input(input);
        self.check_applied(id, applied);
    }

    fn check_applied(&mut self, id: NodeId, applied: Result<Vec<crate::command::Entry>, String>) {
        let applied = match applied {
            Ok(applied) => applied,
            Err(reason) => {
                self.fail(
                    Invariant::Protocol,
                    format!("n{id}: the store fail-stopped: {reason}"),
                );
                return;
            }
        };
        for entry in applied {
            let r = self.checker.on_applied(id, &entry);
            self.check(r);
        }
    }

    fn tick(&mut self) {
        let tick = self.config.tick.as_nanos() as u64;
        self.schedule(tick, Ev::Tick);
        for id in 1..=self.nodes.len() as NodeId {
            if self.node(id).is_leader() && !self.paused(id) {
                self.leader_tick(id);
            }
        }
        self.sessions_tick();
    }

    /// Arm `id`'s election timer for the engine's deadline, on the virtual
    /// clock, unless it is armed for no later already (an early timer
    /// re-arms when it finds the deadline moved).
    fn arm_election_timer(&mut self, id: NodeId) {
        if !self.node(id).up {
            return;
        }
        let mut at = self.virtual_time(id, self.node(id).engine.poll_timeout());
        if self.late_timer[id as usize - 1] {
            at += (self.config.election_timeout * 20).as_nanos() as u64;
        }
        let timer = &mut self.timers[id as usize - 1];
        if timer.at.is_some_and(|armed| armed <= at) {
            return;
        }
        timer.gen += 1;
        timer.at = Some(at);
        let ev = Ev::ElectionTimer {
            node: id,
            gen: timer.gen,
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    /// Disarm `id`'s election timer (a crash or a new engine).
    fn disarm_election_timer(&mut self, id: NodeId) {
        let timer = &mut self.timers[id as usize - 1];
        timer.gen += 1;
        timer.at = None;
    }

    /// `id`'s election timer fires: a tick if its clock reached the
    /// engine's deadline, else it re-arms.
    fn election_timer(&mut self, id: NodeId, gen: u64) -> bool {
        let timer = &mut self.timers[id as usize - 1];
        if timer.gen != gen || !self.nodes[id as usize - 1].up {
            return false;
        }
        timer.at = None;
        let due = self.node(id).engine.poll_timeout() <= self.clock(id);
        if due {
            self.election_input(id, crate::engine::election::ElectionInput::Tick);
            // A tick at the deadline always sets a later one; otherwise the
            // timer would fire again and again at this instant.
            if self.node(id).engine.poll_timeout() <= self.clock(id) {
                self.fail(
                    Invariant::Protocol,
                    format!("n{id}: the election engine kept its deadline after ticking at it"),
                );
            }
        } else {
            self.arm_election_timer(id);
        }
        due
    }
}

#[cfg(test)]
mod tests;
