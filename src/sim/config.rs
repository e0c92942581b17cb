//! What a seed runs with ([`SimConfig`], the bugs it can plant) and what it
//! reports ([`SeedReport`], the first [`Violation`]).

use std::fmt;
use std::time::Duration;

use super::check::Invariant;

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
    /// A leader counts a follower's answer as contact at the time the
    /// answer arrives, not at the send time of what the follower answered
    /// (planted in the shell, on `LinkReport::Heard`): acks that waited
    /// while the leader was paused confirm its read index after another
    /// leader was elected and committed, and the read is stale.
    HeardOnArrival,
    /// A follower that moves to a newer epoch (it votes, or a newer
    /// leader attaches) does not end its session with the older leader
    /// (planted in the shell, on `FollowerAction::StopSession`): that
    /// session still answers the old leader's probes, so a reply from an
    /// older epoch counts as follower contact, and a deposed leader's read
    /// index is confirmed by followers that already serve its successor.
    OldSessionAnswers,
    /// The leader admits a membership change while another is uncommitted
    /// (planted in the shell: it asks `admit_change` as if its whole log
    /// were committed).
    TwoPendingChanges,
    /// The leader admits a membership change before it has committed an
    /// entry of its own epoch (planted in the shell: it asks
    /// `admit_change` as if its epoch started at offset 0).
    NoOwnEpochBarrier,
    /// The leader counts its learners as voters for the commit point
    /// (planted in the shell, on `LeaderInput::SetMembers`).
    LearnerCounted,
    /// A candidate counts a grant from whatever data directory it comes
    /// from (planted in the election engine): a voter's wiped disk, which
    /// lost the entries it acknowledged, helps elect a leader without
    /// them.
    IgnoreDirectory,
}

impl PlantedBug {
    /// Every planted bug, for `--planted` and the tests.
    pub const ALL: [PlantedBug; 13] = [
        PlantedBug::AckBeforeFsync,
        PlantedBug::NoFencing,
        PlantedBug::LateElectionTimer,
        PlantedBug::NoUpToDateRule,
        PlantedBug::SkipRollback,
        PlantedBug::AdmitWhileTransferring,
        PlantedBug::RecoveryPastHint,
        PlantedBug::HeardOnArrival,
        PlantedBug::OldSessionAnswers,
        PlantedBug::TwoPendingChanges,
        PlantedBug::NoOwnEpochBarrier,
        PlantedBug::LearnerCounted,
        PlantedBug::IgnoreDirectory,
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
            PlantedBug::HeardOnArrival => "heard-on-arrival",
            PlantedBug::OldSessionAnswers => "old-session-answers",
            PlantedBug::TwoPendingChanges => "two-pending-changes",
            PlantedBug::NoOwnEpochBarrier => "no-own-epoch-barrier",
            PlantedBug::LearnerCounted => "learner-counted",
            PlantedBug::IgnoreDirectory => "ignore-directory",
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
    /// Change races started (see `sim/change_race.rs`).
    pub change_races: u64,
    /// Wipe races started (see `sim/wipe_race.rs`).
    pub wipe_races: u64,
    /// Disks wiped (a node back empty under its id, new directory id).
    pub wipes: u64,
    /// Membership changes appended (each admitted by the node engine).
    pub member_changes: u64,
    /// Membership changes the node engine refused (a change in progress, a
    /// leader not ready, a learner not caught up).
    pub member_refusals: u64,
    /// Transfers whose leader and target were cut off from each other
    /// just as the target was told to stand.
    pub transfer_cuts: u64,
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
    /// Nodes paused (`SIGSTOP`-like: nothing handled, then all at once).
    pub pauses: u64,
    /// Linearizable reads a leader confirmed and served.
    pub reads_served: u64,
    /// Virtual time from the final heal to the first moment one leader
    /// existed that every live node knew of (`None` if the seed broke an
    /// invariant before).
    pub heal_to_leader: Option<Duration>,
    /// The first invariant that broke, if any.
    pub violation: Option<Violation>,
    /// Every event, when [`SimConfig::keep_events`] was set.
    pub events: Vec<String>,
}
