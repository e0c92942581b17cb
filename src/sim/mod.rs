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
//! client write with `acks` none / leader / all, a connection cut, a crash
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

pub mod check;
pub mod disk;
pub mod election;
pub mod follower;
pub mod leader;
mod nemesis;
pub mod net;
pub mod node;
pub mod rng;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
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

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed: every random choice follows from it.
    pub seed: u64,
    /// Number of nodes (voters).
    pub nodes: usize,
    /// Steps with faults and client writes; the settle phase comes after.
    pub steps: u64,
    /// Keep every event in the report (not only the last 50 on a violation).
    pub keep_events: bool,
    /// `min_insync_replicas` for `acks=all`.
    pub min_insync: usize,
    /// Link window in entries.
    pub window_entries: usize,
    /// Link window in bytes.
    pub window_bytes: usize,
    /// Most bytes in one `Append` (at least one record).
    pub batch_bytes: usize,
    /// A link drops a follower silent for this long.
    pub session_timeout: Duration,
    /// Idle links get a heartbeat this often.
    pub heartbeat: Duration,
    /// `replica_lag_time_max` of the ISR.
    pub replica_lag_max: Duration,
    /// Timer tick.
    pub tick: Duration,
    /// Election timeout (randomized to `[t, 2t)`).
    pub election_timeout: Duration,
    /// Mean time between external events.
    pub external_every: Duration,
    /// Longest virtual time the settle phase may take.
    pub settle_deadline: Duration,
    /// A bug planted in the simulated shell (not in the engines), to show
    /// that the checks find it. `None` for real runs.
    pub bug: Option<PlantedBug>,
    /// Run the nemesis faults (on by default; off replays seeds recorded
    /// before they existed): the stale candidate (`sim/nemesis.rs`), failed
    /// step-up steps, leader transfers and clean shutdowns.
    pub nemesis: bool,
}

/// Bugs the simulation can plant in its own node shell, so that tests can
/// show the invariants catch them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// Followers ack (and report their log end) before their fsync: the
    /// leader counts unsynced entries as durable.
    AckBeforeFsync,
    /// Followers accept a leader of a lower epoch than the one they
    /// persisted.
    NoFencing,
    /// A node that has stepped down (from leading or standing) arms its
    /// election timer `20 × T` past the engine's deadline until it
    /// restarts: the cluster still elects and converges within the settle
    /// deadline, only slowly, so only the liveness bound catches it.
    LateElectionTimer,
    /// Raft's up-to-date rule is deleted from the vote and the pre-vote
    /// (planted in the election engine): a candidate with a shorter log
    /// can win, and entries a majority acknowledged are lost.
    NoUpToDateRule,
    /// A failed step-up goes back to following without stopping what it
    /// started or resuming its log owner (planted in the node engine).
    SkipRollback,
    /// A leader admits proposals while it transfers its leadership
    /// (planted in the node engine): the target is told to stand behind
    /// the leader's log.
    AdmitWhileTransferring,
    /// Recovery takes the commit point one past the meta's hint (planted
    /// in `engine::recovery`): a restarted node applies an entry that may
    /// never be committed.
    RecoveryPastHint,
}

impl PlantedBug {
    /// Every planted bug, for `--planted` and the tests.
    pub const ALL: [PlantedBug; 7] = [
        PlantedBug::AckBeforeFsync,
        PlantedBug::NoFencing,
        PlantedBug::LateElectionTimer,
        PlantedBug::NoUpToDateRule,
        PlantedBug::SkipRollback,
        PlantedBug::AdmitWhileTransferring,
        PlantedBug::RecoveryPastHint,
    ];

    /// Its name on the command line (`--planted NAME`).
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeFsync => "ack-before-fsync",
            PlantedBug::NoFencing => "no-fencing",
            PlantedBug::LateElectionTimer => "late-election-timer",
            PlantedBug::NoUpToDateRule => "no-up-to-date-rule",
            PlantedBug::SkipRollback => "skip-rollback",
            PlantedBug::AdmitWhileTransferring => "admit-while-transferring",
            PlantedBug::RecoveryPastHint => "recovery-past-hint",
        }
    }

    /// The bug named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl SimConfig {
    /// The replication settings of the simulated links.
    pub fn link_config(&self) -> crate::config::ReplicationConfig {
        crate::config::ReplicationConfig {
            heartbeat_interval: self.heartbeat,
            session_timeout: self.session_timeout,
            backoff_min: Duration::from_millis(2),
            backoff_max: Duration::from_millis(100),
            window_bytes: self.window_bytes,
            window_entries: self.window_entries,
            batch_bytes: self.batch_bytes,
            ..crate::config::ReplicationConfig::default()
        }
    }

    /// Defaults for `seed` with `nodes` nodes and 2000 steps.
    pub fn new(seed: u64, nodes: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes: nodes.max(1),
            steps: 2000,
            keep_events: false,
            // Varied by seed (the example alternates 3 and 5 nodes by parity).
            min_insync: [2, 1, 3][(seed / 2 % 3) as usize],
            window_entries: 16,
            window_bytes: 2048,
            batch_bytes: 320,
            session_timeout: Duration::from_millis(150),
            heartbeat: Duration::from_millis(20),
            replica_lag_max: Duration::from_millis(200),
            tick: Duration::from_millis(5),
            election_timeout: Duration::from_millis(80),
            external_every: Duration::from_millis(4),
            settle_deadline: Duration::from_secs(30),
            bug: None,
            nemesis: true,
        }
    }

    /// The command that replays this seed.
    pub fn replay_command(&self) -> String {
        let planted = match self.bug {
            Some(bug) => format!(" --planted {}", bug.name()),
            None => String::new(),
        };
        let nemesis = if self.nemesis { "" } else { " --no-nemesis" };
        format!(
            "cargo run --release --example simulate -- --seed {} --nodes {} --steps {}{planted}{nemesis} --verbose",
            self.seed, self.nodes, self.steps
        )
    }
}

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// The step after which the invariant was found broken.
    pub step: u64,
    /// Which invariant.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
    /// The last events before it (at most 50).
    pub events: Vec<String>,
    /// The command that replays the seed.
    pub replay: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "VIOLATION seed {} ({} nodes), step {}: {}: {}",
            self.seed, self.nodes, self.step, self.invariant, self.detail
        )?;
        writeln!(f, "last {} events:", self.events.len())?;
        for e in &self.events {
            writeln!(f, "  {e}")?;
        }
        write!(f, "replay: {}", self.replay)
    }
}

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Steps run (faults phase and settle phase).
    pub steps: u64,
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// Node crashes.
    pub crashes: u64,
    /// Node restarts.
    pub restarts: u64,
    /// Partitions made.
    pub partitions: u64,
    /// One-way partitions made (a node made deaf).
    pub one_way_partitions: u64,
    /// Messages that did not reach a deaf node: election datagrams lost,
    /// stream data and FINs held back (each retransmission counted).
    pub blackholed: u64,
    /// Clock steps.
    pub clock_steps: u64,
    /// Strikes of the stale-candidate nemesis (`sim/nemesis.rs`): a cut minority healed
    /// just as the leader crashed or was isolated.
    pub nemesis_strikes: u64,
    /// Clean shutdowns (the others are crashes).
    pub shutdowns: u64,
    /// Step-up steps failed by the nemesis (a meta write, the store's
    /// `LeaderChange`): each ran the node engine's rollback.
    pub step_faults: u64,
    /// Leadership transfers asked for (by the nemesis), and how many ended
    /// with the target leading.
    pub transfers: u64,
    /// Transfers that ended with the target leading.
    pub transfers_done: u64,
    /// Connections cut.
    pub cuts: u64,
    /// Leader promotions.
    pub elections: u64,
    /// Leaders that stepped down on seeing a higher epoch.
    pub step_downs: u64,
    /// Follower truncations of a diverged tail.
    pub truncations: u64,
    /// Messages or handshakes refused for a stale epoch.
    pub fenced: u64,
    /// Client writes that returned Ok (any `acks`).
    pub writes_ok: u64,
    /// `acks=all` writes that returned Ok.
    pub acked_all: u64,
    /// `acks=all` writes refused at admission (ISR below `min_insync`).
    pub refused: u64,
    /// Client writes that failed (leader stepped down or not the leader).
    pub failed: u64,
    /// Episodes of a slow disk (fsyncs of 50-300 ms).
    pub slow_disks: u64,
    /// Crash recoveries that cut a torn record.
    pub torn_tails: u64,
    /// Virtual time from the final heal to the first moment one leader
    /// existed that every live node knew of (`None` if the seed broke an
    /// invariant before).
    pub heal_to_leader: Option<Duration>,
    /// The first invariant that broke, if any.
    pub violation: Option<Violation>,
    /// Every event, when [`SimConfig::keep_events`] was set.
    pub events: Vec<String>,
}

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
    sessions: BTreeMap<ConnId, crate::engine::SessionEngine>,
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

    fn settle(&mut self) {
        self.faults = false;
        self.slow_disk_until.iter_mut().for_each(|t| *t = 0);
        self.log("settle: heal, restart every node, no more faults or writes".into());
        self.net.heal();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                self.restart(i as NodeId + 1);
            }
        }
        let healed = self.now;
        let bound = (self.config.election_timeout * LIVENESS_TIMEOUTS).as_nanos() as u64;
        let deadline = self.now + self.config.settle_deadline.as_nanos() as u64;
        while self.broken.is_none() && self.now < deadline {
            let since = self.now - healed;
            if self.report.heal_to_leader.is_none() {
                if self.leader_known() {
                    self.report.heal_to_leader = Some(Duration::from_nanos(since));
                    self.log(format!(
                        "settle: one leader known to every node {:.3} ms after the heal",
                        since as f64 / MS as f64
                    ));
                }
                if since > bound {
                    let state = self.describe_nodes();
                    self.fail(
                        Invariant::Liveness,
                        format!(
                            "no leader known to every live node within {LIVENESS_TIMEOUTS} x T = {:?} of the heal (after {:?}): {state}",
                            Duration::from_nanos(bound),
                            Duration::from_nanos(since)
                        ),
                    );
                    return;
                }
            }
            if self.report.heal_to_leader.is_some() && self.converged() {
                if let Err(b) = self.checker.check_acked(&self.nodes) {
                    self.broken = Some(b);
                }
                return;
            }
            if !self.step_once() {
                break;
            }
        }
        if self.broken.is_none() {
            let state = self.describe_nodes();
            self.broken = Some(Broken {
                invariant: Invariant::Convergence,
                detail: format!("not settled after the faults healed: {state}"),
            });
        }
    }

    /// Every node's role, epoch, log and what it knows of the leader.
    fn describe_nodes(&self) -> String {
        let state: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "n{} {} e{} ({:?} in e{}, leader {:?}) log {} durable {} commit {} applied {}",
                    n.id,
                    if !n.up {
                        "down"
                    } else if n.is_leader() {
                        "leader"
                    } else {
                        "follower"
                    },
                    n.meta().epoch,
                    n.election().role(),
                    n.election().epoch(),
                    n.election().leader(),
                    n.last_offset(),
                    n.disk.durable(),
                    n.commit,
                    n.state().applied_offset()
                )
            })
            .collect();
        state.join("; ")
    }

    /// Exactly one node leads, and every other live node's election engine
    /// knows it as the leader of its epoch.
    fn leader_known(&self) -> bool {
        let leaders: Vec<&Node> = self.nodes.iter().filter(|n| n.is_leader()).collect();
        let [leader] = leaders[..] else {
            return false;
        };
        let epoch = leader.election().epoch();
        leader.election().role() == crate::engine::election::ElectionRole::Leader
            && leader.meta().epoch == epoch
            && self
                .nodes
                .iter()
                .filter(|n| n.up && n.id != leader.id)
                .all(|n| n.election().epoch() == epoch && n.election().leader() == Some(leader.id))
    }

    /// One leader of the highest epoch; every node applied its whole log
    /// with the same digest.
    fn converged(&self) -> bool {
        let leaders: Vec<&Node> = self.nodes.iter().filter(|n| n.is_leader()).collect();
        let [leader] = leaders[..] else {
            return false;
        };
        let max_epoch = self.nodes.iter().map(|n| n.meta().epoch).max().unwrap_or(0);
        if leader.meta().epoch != max_epoch {
            return false;
        }
        let end = leader.last_offset();
        let caught_up = self
            .nodes
            .iter()
            .all(|n| n.up && n.state().applied_offset() == end && n.last_offset() == end);
        if !caught_up {
            return false;
        }
        let digest = leader.state().digest();
        self.nodes.iter().all(|n| n.state().digest() == digest)
    }

    fn finish(mut self) -> SeedReport {
        self.report.steps = self.step;
        self.report.virtual_time = Duration::from_nanos(self.now);
        self.report.acked_all = self.checker.acked_all().len() as u64;
        if let Some(b) = self.broken.take() {
            self.report.violation = Some(Violation {
                seed: self.config.seed,
                nodes: self.config.nodes,
                step: self.step,
                invariant: b.invariant,
                detail: b.detail,
                events: self.events.iter().cloned().collect(),
                replay: self.config.replay_command(),
            });
        }
        self.report.events = std::mem::take(&mut self.all_events);
        self.report
    }

    /// Process the next event. Returns false when nothing is left to do.
    fn step_once(&mut self) -> bool {
        loop {
            let Some(Reverse((at, _, ev))) = self.queue.pop() else {
                return false;
            };
            self.now = self.now.max(at);
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

    /// Queue `msg` on `conn` with a random latency.
    fn send(&mut self, conn: ConnId, dir: Dir, msg: net::Msg) {
        let latency = if self.rng.chance(900) {
            self.rng.range(MS / 5, 3 * MS)
        } else {
            self.rng.range(5 * MS, 40 * MS)
        };
        if let Some(at) = self.net.send(conn, dir, msg, self.now + latency) {
            self.seq += 1;
            self.queue
                .push(Reverse((at, self.seq, Ev::Deliver { conn, dir })));
        }
    }

    fn deliver(&mut self, conn: ConnId, dir: Dir) -> bool {
        let Some(c) = self.net.get(conn) else {
            return false;
        };
        let (leader, follower) = (c.leader, c.follower);
        if c.queued(dir) > 0 && c.closed_by.is_none() && !self.net.flows(conn, dir) {
            // The receiver is deaf: the stream stalls, the sender
            // retransmits.
            self.report.blackholed += 1;
            let delay = self.retransmit_delay();
            self.schedule(delay, Ev::Deliver { conn, dir });
            return false;
        }
        let Some(msg) = self.net.pop(conn, dir) else {
            return false;
        };
        match dir {
            Dir::ToFollower => {
                self.log(format!(
                    "n{follower} <- n{leader} #{conn} {}",
                    net::describe(&msg)
                ));
                self.follower_receive(conn, msg);
            }
            Dir::ToLeader => {
                self.log(format!(
                    "n{leader} <- n{follower} #{conn} {}",
                    net::describe(&msg)
                ));
                self.leader_receive(conn, msg);
            }
        }
        true
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
            if self.node(id).is_leader() {
                self.leader_tick(id);
            }
        }
        self.sessions_tick();
    }

    /// Close `conn` and tell both ends (those still open).
    fn close(&mut self, conn: ConnId) {
        let Some(c) = self.net.close(conn) else {
            self.sessions.remove(&conn);
            return;
        };
        self.log(format!("#{conn} n{}→n{} closed", c.leader, c.follower));
        self.ends_closed(conn, &c);
    }

    /// Tell the ends of the closed `conn` that were still open.
    fn ends_closed(&mut self, conn: ConnId, c: &net::Connection) {
        if c.closed_by != Some(c.follower) {
            self.sessions.remove(&conn);
        }
        if c.closed_by != Some(c.leader) {
            self.leader_link_down(c.leader, c.follower, conn);
        }
        if c.closed_by != Some(c.follower) {
            self.session_gone(c.follower, conn);
        }
    }

    /// `closer` closes its end of `conn`. The other end hears of it when
    /// the FIN reaches it: now, or, if it is deaf, once it hears again (or
    /// it closes on its own timeout first).
    fn close_by(&mut self, conn: ConnId, closer: NodeId) {
        let Some(c) = self.net.get(conn) else {
            return;
        };
        if c.closed_by == Some(closer) {
            return;
        }
        let (leader, follower, other) = (c.leader, c.follower, c.peer_of(closer));
        if c.closed_by.is_some() || self.net.delivers(closer, other) {
            self.close(conn);
            return;
        }
        self.net.half_close(conn, closer);
        self.log(format!(
            "#{conn} n{leader}→n{follower} closed by n{closer}, half-open: n{other} does not hear the FIN"
        ));
        if closer == leader {
            self.leader_link_down(leader, follower, conn);
        } else {
            self.sessions.remove(&conn);
            self.session_gone(follower, conn);
        }
        let delay = self.retransmit_delay();
        self.schedule(delay, Ev::Fin { conn });
    }

    /// The FIN of half-open `conn` is (re)sent.
    fn fin(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.net.get(conn) else {
            return false;
        };
        let Some(closer) = c.closed_by else {
            return false;
        };
        if !self.net.delivers(closer, c.peer_of(closer)) {
            self.report.blackholed += 1;
            let delay = self.retransmit_delay();
            self.schedule(delay, Ev::Fin { conn });
            return false;
        }
        self.close(conn);
        true
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

    /// `id`'s clock jumps forward by `by`: its engines see the new time
    /// at their next input, its election timer fires that much earlier.
    fn step_clock(&mut self, id: NodeId, by: u64) {
        self.clock_offset[id as usize - 1] += by;
        self.report.clock_steps += 1;
        self.log(format!(
            "fault: n{id}'s clock steps {:.3} ms forward",
            by as f64 / MS as f64
        ));
        self.disarm_election_timer(id);
        self.arm_election_timer(id);
    }

    fn external(&mut self) {
        if self.nemesis_tick() {
            return;
        }
        let r = self.rng.below(1000);
        let n = self.nodes.len() as NodeId;
        if r < 935 {
            if self.config.nemesis && r >= 931 {
                self.nemesis_transfer();
            } else if self.config.nemesis && r >= 925 {
                self.nemesis_cut();
            } else {
                self.propose();
            }
        } else if r < 940 {
            let id = self.rng.range(1, n);
            let ms = self.rng.range(200, 1000);
            self.slow_disk_until[id as usize - 1] = self.now + ms * MS;
            self.report.slow_disks += 1;
            self.log(format!("fault: n{id}'s disk is slow for {ms} ms"));
        } else if r < 950 {
            let conns: Vec<ConnId> = self.net.connections().map(|(id, _)| id).collect();
            if let Some(c) = self.rng.pick(&conns) {
                self.log(format!("fault: cut #{c}"));
                self.report.cuts += 1;
                self.close(c);
            }
        } else if r < 960 {
            let up: Vec<NodeId> = (1..=n).filter(|&i| self.node(i).up).collect();
            let leaders: Vec<NodeId> = up
                .iter()
                .copied()
                .filter(|&i| self.node(i).is_leader())
                .collect();
            // Leaders crash more often than their share: that is where the
            // interesting failovers are.
            let pool = if !leaders.is_empty() && self.rng.chance(300) {
                leaders
            } else {
                up.clone()
            };
            if up.len() > 1 {
                if let Some(id) = self.rng.pick(&pool) {
                    if self.config.nemesis && self.rng.chance(100) {
                        self.shut_down(id);
                    } else {
                        self.crash(id);
                    }
                }
            }
        } else if r < 975 {
            let down: Vec<NodeId> = (1..=n).filter(|&i| !self.node(i).up).collect();
            if let Some(id) = self.rng.pick(&down) {
                self.restart(id);
            }
        } else if r < 983 {
            if self.net.partition().is_none() && n > 1 {
                let mut side: Vec<bool> = (0..n).map(|_| self.rng.chance(500)).collect();
                // Often: cut a leader off into a minority.
                let leader = (1..=n).find(|&i| self.node(i).is_leader());
                if let (Some(l), true) = (leader, self.rng.chance(500)) {
                    side = (1..=n).map(|i| i == l).collect();
                    if n > 3 && self.rng.chance(500) {
                        let other = self.rng.range(1, n);
                        side[other as usize - 1] = true;
                    }
                }
                if side.iter().all(|&s| s) || side.iter().all(|&s| !s) {
                    let i = self.rng.below(n) as usize;
                    side[i] = !side[i];
                }
                let a: Vec<String> = (1..=n)
                    .filter(|&i| side[i as usize - 1])
                    .map(|i| format!("n{i}"))
                    .collect();
                self.log(format!("fault: partition {{{}}} | rest", a.join(",")));
                self.report.partitions += 1;
                for (id, c) in self.net.split(side) {
                    self.ends_closed(id, &c);
                }
            }
        } else if r < 990 {
            if self.net.partition().is_some() {
                self.log("fault: heal partition".into());
                self.net.heal_partition();
            } else {
                self.propose();
            }
        } else if r < 994 {
            self.one_way_partition();
        } else if r < 997 {
            if self.net.deaf().is_empty() {
                self.propose();
            } else {
                let healed: Vec<String> = self
                    .net
                    .heal_deaf()
                    .iter()
                    .map(|i| format!("n{i}"))
                    .collect();
                self.log(format!(
                    "fault: heal one-way partition ({} hear again)",
                    healed.join(",")
                ));
            }
        } else {
            // A clock step, often the leader's (its check-quorum).
            let up: Vec<NodeId> = (1..=n).filter(|&i| self.node(i).up).collect();
            let leader = up.iter().copied().find(|&i| self.node(i).is_leader());
            let id = match leader {
                Some(l) if self.rng.chance(500) => Some(l),
                _ => self.rng.pick(&up),
            };
            if let Some(id) = id {
                let t = self.config.election_timeout.as_nanos() as u64;
                let by = self.rng.below(t);
                self.step_clock(id, by);
            }
        }
    }

    /// Make one more node deaf (a minority at most), often the leader: it
    /// sends, but hears nothing.
    fn one_way_partition(&mut self) {
        let n = self.nodes.len() as NodeId;
        let most = (self.nodes.len() - 1) / 2;
        if self.net.deaf().len() >= most {
            return;
        }
        let hearing: Vec<NodeId> = (1..=n)
            .filter(|&i| self.node(i).up && !self.net.deaf().contains(&i))
            .collect();
        let leader = hearing.iter().copied().find(|&i| self.node(i).is_leader());
        let id = match leader {
            Some(l) if self.rng.chance(500) => Some(l),
            _ => self.rng.pick(&hearing),
        };
        let Some(id) = id else { return };
        self.net.deafen(id);
        self.report.one_way_partitions += 1;
        self.log(format!(
            "fault: one-way partition: n{id}{} sends but hears nothing",
            if self.node(id).is_leader() {
                " (leader)"
            } else {
                ""
            }
        ));
    }

    fn crash(&mut self, id: NodeId) {
        // Its connections end at its side; a peer hears of it if it can.
        for c in self.net.connections_of(id) {
            self.close_by(c, id);
        }
        self.disarm_election_timer(id);
        let loss = {
            let Simulation { nodes, rng, .. } = self;
            nodes[id as usize - 1].crash(rng)
        };
        self.report.crashes += 1;
        self.report.torn_tails += u64::from(loss.torn);
        self.log(format!(
            "fault: crash n{id} (unsynced: {} kept, {} lost{})",
            loss.kept,
            loss.lost,
            if loss.torn { ", torn record cut" } else { "" }
        ));
    }

    /// A clean shutdown, as `Node::shutdown` does it: the node engine's
    /// shutdown (a leader resigns), the WAL synced, the applied offset
    /// recorded as the commit hint; then the node is down.
    fn shut_down(&mut self, id: NodeId) {
        // No heartbeat follows the resignation: the leader state stops first.
        self.stop_leading(id);
        self.node_input(id, crate::engine::node::NodeInput::Shutdown);
        let node = self.node_mut(id);
        let applied = node.state().applied_offset();
        node.disk.sync_all();
        node.disk.record_commit_hint(applied);
        self.report.shutdowns += 1;
        self.log(format!(
            "fault: n{id} shuts down cleanly (commit hint {applied})"
        ));
        self.crash(id);
    }

    /// Plant the configured bug in `id`'s engines, if it lives there
    /// (the others live in this shell).
    fn plant_in_engines(&mut self, id: NodeId) {
        let plant = match self.config.bug {
            Some(PlantedBug::SkipRollback) => Some(crate::engine::node::NodePlant::SkipRollback),
            Some(PlantedBug::AdmitWhileTransferring) => {
                Some(crate::engine::node::NodePlant::AdmitWhileTransferring)
            }
            _ => None,
        };
        if let Some(plant) = plant {
            self.node_mut(id).engine.plant(plant);
        }
        if self.config.bug == Some(PlantedBug::NoUpToDateRule) {
            self.node_mut(id)
                .engine
                .election_mut_for_planting()
                .plant_skip_up_to_date();
        }
    }

    fn restart(&mut self, id: NodeId) {
        let now = self.clock(id);
        let past_hint = self.config.bug == Some(PlantedBug::RecoveryPastHint);
        let replayed = self.node_mut(id).restart(now, past_hint);
        self.check_applied(id, replayed);
        self.plant_in_engines(id);
        self.late_timer[id as usize - 1] = false;
        self.catch_up_watch[id as usize - 1] = None;
        self.disarm_election_timer(id);
        self.arm_election_timer(id);
        self.report.restarts += 1;
        let n = self.node(id);
        let line = format!(
            "restart n{id}: log {}@e{}, meta epoch {}, commit hint {} (applied {})",
            n.last_offset(),
            n.last_epoch(),
            n.meta().epoch,
            n.disk.commit_hint(),
            n.state().applied_offset()
        );
        self.log(line);
    }

    /// A client write to a leader (usually the newest one it can find).
    fn propose(&mut self) {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.is_leader())
            .map(|n| n.id)
            .collect();
        let Some(id) = self.rng.pick(&leaders) else {
            return;
        };
        let acks = match self.rng.below(10) {
            0..=1 => Acks::None,
            2..=4 => Acks::Leader,
            _ => Acks::All,
        };
        self.next_topic += 1;
        let name = format!("topic-{}", self.next_topic);
        let partition_count = 1 + (self.next_topic % 3) as u32;
        let create = Command::CreateTopic {
            name: name.clone(),
            partition_count,
            replication_factor: 1,
        };
        // Every fourth proposal is an atomic batch: the topic with its
        // partition assignments in one entry (no extra random draw, so the
        // schedule of faults is the same as without batches).
        let command = if self.next_topic.is_multiple_of(4) {
            let mut commands = vec![create];
            for p in 0..partition_count {
                commands.push(Command::AssignPartition {
                    topic: name.clone(),
                    partition: p as i32,
                    replicas: vec![1 + u64::from(p) % 3],
                });
            }
            Command::Batch { commands }
        } else {
            create
        };
        self.leader_propose(id, command, acks);
    }
}

#[cfg(test)]
mod tests;
