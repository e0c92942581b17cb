//! A simulated node: its disk, its log as decoded entries with the epoch
//! index, its role, the commit point it knows and the state it applied.

use crate::engine::disk_io::{DiskCompletion, DiskExecutor, DiskRequest};
use std::collections::BTreeMap;

use crate::command::{Command, Entry, NodeId};
use crate::engine::node::NodeInput;
use crate::membership::{DirectoryId, Member, Membership, MembershipLog};
use std::time::{Duration, Instant};

use crate::engine::election::{ElectionConfig, ElectionEngine};
use crate::engine::node::NodeEngine;
use crate::engine::store::{ApplySink, MetadataStoreEngine, StoreAction, StoreInput};
use crate::engine::{
    FollowerLinkEngine, LogProgress, ProposalId, ReplicaListenerEngine, ReplicatorEngine,
};
use crate::epochs::EpochIndex;
use crate::record::Record;
use crate::state::MetadataState;
use crate::storage::NodeMeta;

use super::disk::{CrashLoss, Meta, SimDisk};
use super::net::ConnId;
use super::rng::SimRng;

/// How long a client waits for its write: the engine's levels.
pub use crate::engine::Acks;

/// A client write waiting on the leader.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// The entry written.
    pub entry: Entry,
    /// What the client waits for.
    pub acks: Acks,
}

/// The leader's side of one follower link.
#[derive(Debug, Clone)]
pub struct LinkSim {
    /// The real link engine, the one the `FollowerLink` actor drives.
    pub engine: FollowerLinkEngine,
    /// The open connection, if any, with the engine's generation for it.
    pub conn: Option<(ConnId, u64)>,
    /// The directory id the follower's last `Welcome` proved.
    pub directory: DirectoryId,
}

/// What a leader keeps.
#[derive(Debug, Clone)]
pub struct LeaderState {
    /// The real leader engine (WAL writes, ISR, commit, waiters), the one
    /// the `Replicator` actor drives.
    pub engine: ReplicatorEngine,
    /// One link per follower.
    pub links: BTreeMap<NodeId, LinkSim>,
    /// Client writes the engine has not resolved yet, by proposal id.
    pub waiters: BTreeMap<ProposalId, Waiter>,
    /// The next proposal id.
    pub next_proposal: ProposalId,
}

/// A node's role.
#[derive(Debug, Clone)]
pub enum Role {
    /// Leader of the epoch in its meta.
    Leader(Box<LeaderState>),
    /// Follower (of the leader in its meta, if any); its log owner is
    /// [`Node::owner`].
    Follower,
}

/// One simulated node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node id, 1-based.
    pub id: NodeId,
    /// Running (not crashed).
    pub up: bool,
    /// Incremented at each restart.
    pub incarnation: u64,
    /// The disk: log records and meta.
    pub disk: SimDisk,
    /// The log's entries (decoded from the disk's records).
    pub log: Vec<Entry>,
    /// Epoch boundaries of the log.
    pub index: EpochIndex,
    /// Rolling hash of the log up to each entry (for log matching).
    pub chain: Vec<u64>,
    /// The role.
    pub role: Role,
    /// Its data directory id: [`sim_directory`] of its id and the wipes
    /// of its disk so far.
    pub directory: DirectoryId,
    /// The real node engine (role, epoch, election, role changes): the one
    /// the node's actors pump; rebuilt from the persisted meta on restart.
    pub engine: NodeEngine,
    /// What the node engine is built from: the voters, `T`, a seed.
    pub election_setup: (Vec<NodeId>, Duration, u64),
    /// The real follower engine, the log's owner while the node follows
    /// (the one the `ReplicaListener` actor drives); it refuses every
    /// session while the node leads.
    pub owner: ReplicaListenerEngine,
    /// The highest commit point this node knows.
    pub commit: u64,
    /// The real store engine (the `MetadataStore` actor's): admission on
    /// the leader, and the state built by applying committed entries in
    /// order.
    pub store: MetadataStoreEngine,
    /// Log entries handed to the store so far (it applies them once
    /// committed and durable).
    pub fed: u64,
    /// Lowest log index changed since the checker last looked.
    pub dirty_from: usize,
    /// What the log did that the node engine must hear (a leader's own
    /// membership entries, truncations, commits), in order, until the
    /// simulation hands it over ([`crate::sim::Simulation`]'s
    /// `flush_log_events`). A follower's membership entries come from its
    /// log owner (`FollowerAction::MembershipAppended`), as in the actors.
    pub log_events: Vec<NodeInput>,
}

/// A log did not accept an entry (its offset or epoch is out of order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRefused(pub String);

impl Node {
    /// A fresh node with an empty disk.
    pub fn new(id: NodeId) -> Node {
        Node::with_election(id, vec![id], Duration::from_millis(80), id, Instant::now())
    }

    /// A fresh node among `voters` with election timeout `t`, its election
    /// timer started at `now` (the simulation's clock, so a seed replays
    /// exactly).
    pub fn with_election(
        id: NodeId,
        voters: Vec<NodeId>,
        t: Duration,
        seed: u64,
        now: Instant,
    ) -> Node {
        let setup = (voters, t, seed);
        Node {
            id,
            up: true,
            incarnation: 0,
            disk: SimDisk::new(id),
            log: Vec::new(),
            index: EpochIndex::new(0, 0),
            chain: Vec::new(),
            role: Role::Follower,
            owner: ReplicaListenerEngine::new(
                id,
                EpochIndex::new(0, 0),
                node_meta(id, Meta::default()),
                0,
            ),
            directory: sim_directory(id, 0),
            engine: node_engine(id, sim_directory(id, 0), &setup, Meta::default(), now, &[]),
            election_setup: setup,
            commit: 0,
            store: new_store(id),
            fed: 0,
            dirty_from: 0,
            log_events: Vec::new(),
        }
    }

    /// The persisted meta.
    pub fn meta(&self) -> Meta {
        self.disk.meta()
    }

    /// The node engine's election (role, epoch, leader it knows).
    pub fn election(&self) -> &ElectionEngine {
        self.engine.election()
    }

    /// Whether the node is an up leader.
    pub fn is_leader(&self) -> bool {
        self.up && matches!(self.role, Role::Leader(_))
    }

    /// Last offset of the log.
    pub fn last_offset(&self) -> u64 {
        self.index.last_offset()
    }

    /// Epoch of the last entry.
    pub fn last_epoch(&self) -> u64 {
        self.index.last_epoch()
    }

    /// Append entries (already encoded) after the log end, unsynced.
    pub fn append(&mut self, batch: Vec<(Entry, Record)>) -> Result<(), AppendRefused> {
        for (entry, record) in batch {
            self.index
                .append(entry.offset, entry.epoch)
                .map_err(|e| AppendRefused(e.to_string()))?;
            let prev = self.chain.last().copied().unwrap_or(0);
            self.chain.push(chain_hash(prev, &record.bytes));
            self.disk.append([record]);
            self.log.push(entry);
        }
        Ok(())
    }

    /// Wipe a crashed node's disk: it comes back (at its next restart)
    /// empty, under its node id, with a new directory id.
    pub fn wipe(&mut self) {
        self.disk.wipe();
        self.directory = sim_directory(self.id, self.disk.wipes());
        self.reload();
    }

    /// Drop every entry after `to`.
    pub fn truncate(&mut self, to: u64) {
        // Nothing is applied past the durable commit, which a truncation
        // never goes below: this applies nothing.
        self.store
            .handle(StoreInput::Truncated { to }, &mut Collect(Vec::new()));
        self.fed = self.fed.min(to);
        let _ = self.disk.execute(DiskRequest::TruncateSuffix { to });
        self.index.truncate_suffix(to);
        let keep = to.min(self.log.len() as u64) as usize;
        self.log.truncate(keep);
        self.chain.truncate(keep);
        self.dirty_from = self.dirty_from.min(keep);
        self.log_events.push(NodeInput::LogTruncated { after: to });
    }

    /// Crash: volatile state is gone; the disk keeps what it keeps.
    pub fn crash(&mut self, rng: &mut SimRng) -> CrashLoss {
        self.up = false;
        let loss = self.disk.crash(rng);
        self.reload();
        loss
    }

    /// Restart from the disk, as `Node::start` recovers: the disk's
    /// `DiskRequest::Recover` (the commit point from the meta's hint by
    /// `engine::recovery::commit_point`, or one past it when `past_hint` is
    /// planted; the log replayed up to it into the state); the rest waits
    /// for a leader. Returns the entries applied, or
    /// why the replay fail-stopped.
    pub fn restart(&mut self, now: Instant, past_hint: bool) -> Result<Vec<Entry>, String> {
        self.up = true;
        self.incarnation += 1;
        self.reload();
        if past_hint {
            self.disk.plant_recover_past_hint();
        }
        let last = self.last_offset();
        let recovered = match self.disk.execute(DiskRequest::Recover) {
            DiskCompletion::Recovered(r) => (*r).map_err(|e| e.to_string())?,
            other => return Err(format!("the disk answered Recover with {other:?}")),
        };
        let (state, commit) = (recovered.state, recovered.commit);
        let progress = LogProgress {
            log_end: last,
            durable: self.disk.durable(),
            commit,
        };
        self.store = MetadataStoreEngine::new(self.id, state, u64::MAX / 4, progress);
        self.fed = commit;
        self.commit = commit;
        self.owner = ReplicaListenerEngine::new(
            self.id,
            self.index.clone(),
            node_meta(self.id, self.disk.meta()),
            commit,
        );
        let mut setup = self.election_setup.clone();
        setup.2 = setup
            .2
            .wrapping_add(self.incarnation.wrapping_mul(0x9E37_79B9));
        self.engine = node_engine(
            self.id,
            self.directory,
            &setup,
            self.disk.meta(),
            now,
            &self.log,
        );
        self.log_events.clear();
        Ok(self.log[..commit as usize].to_vec())
    }

    fn reload(&mut self) {
        self.role = Role::Follower;
        self.commit = 0;
        self.store = new_store(self.id);
        self.fed = 0;
        self.index = EpochIndex::new(0, 0);
        self.log.clear();
        self.chain.clear();
        self.dirty_from = 0;
        let mut prev = 0;
        for r in self.disk.records() {
            // The disk only holds records that decoded on restart.
            let Ok(entry) = r.entry() else { break };
            if self.index.append(entry.offset, entry.epoch).is_err() {
                break;
            }
            prev = chain_hash(prev, &r.bytes);
            self.chain.push(prev);
            self.log.push(entry);
        }
        // Everything read back is on disk.
        self.owner = ReplicaListenerEngine::new(
            self.id,
            self.index.clone(),
            node_meta(self.id, self.disk.meta()),
            0,
        );
    }

    /// Learn that everything up to `commit` is committed.
    pub fn learn_commit(&mut self, commit: u64) {
        if commit > self.commit {
            self.log_events
                .push(NodeInput::Committed { offset: commit });
        }
        self.commit = self.commit.max(commit);
    }

    /// The applied state.
    pub fn state(&self) -> &MetadataState {
        self.store.state()
    }

    /// Hand the store the log entries it has not seen and the progress;
    /// return what it applied (committed, locally durable, in order).
    pub fn apply_committed(&mut self) -> Result<Vec<Entry>, String> {
        let mut applied = Vec::new();
        let end = self.log.len() as u64;
        if self.fed < end {
            let from = self.fed.max(self.store.state().applied_offset()) as usize;
            let entries = self.log[from..].to_vec();
            applied.extend(self.store_input(StoreInput::Entries(entries))?);
            self.fed = end;
        }
        let progress = LogProgress {
            log_end: end,
            durable: self.disk.durable(),
            commit: self.commit,
        };
        applied.extend(self.store_input(StoreInput::Progress(progress))?);
        Ok(applied)
    }

    /// Feed one input to the store and carry out its actions (its WAL
    /// reads are answered from the disk at once); return what it applied,
    /// or why it fail-stopped.
    pub fn store_input(&mut self, input: StoreInput) -> Result<Vec<Entry>, String> {
        let mut sink = Collect(Vec::new());
        self.store.handle(input, &mut sink);
        while let Some(action) = self.store.poll_action() {
            match action {
                StoreAction::ReadWal { from, count, upto } => {
                    let durable = self.disk.durable().min(upto);
                    let records: Vec<Record> = self
                        .disk
                        .records()
                        .iter()
                        .skip(from.saturating_sub(1) as usize)
                        .take(count)
                        .filter(|r| r.offset <= durable)
                        .cloned()
                        .collect();
                    let read = StoreInput::WalRead {
                        from,
                        upto,
                        result: Ok(records),
                    };
                    self.store.handle(read, &mut sink);
                }
                StoreAction::RetryReadLater | StoreAction::TakeSnapshot { .. } => {}
                StoreAction::FailStop(reason) => return Err(reason),
            }
        }
        Ok(sink.0)
    }
}

/// Collects what the store applied, for the checker.
struct Collect(Vec<Entry>);

impl ApplySink for Collect {
    fn applied(&mut self, _state: &MetadataState, entry: Entry) {
        self.0.push(entry);
    }
    fn reset(&mut self, _state: &MetadataState) {}
}

/// A store that never snapshots (no compaction in the simulation).
fn new_store(id: NodeId) -> MetadataStoreEngine {
    MetadataStoreEngine::new(
        id,
        MetadataState::new(),
        u64::MAX / 4,
        LogProgress::default(),
    )
}

/// The directory id of node `id`'s disk after `wipes` wipes (never
/// [`DirectoryId::UNKNOWN`]: ids start at 1).
pub fn sim_directory(id: NodeId, wipes: u8) -> DirectoryId {
    let mut d = [id as u8; 16];
    d[15] = d[15].wrapping_add(wipes);
    DirectoryId(d)
}

/// Member `id` with its first directory, as the simulation's bootstrap
/// names it (addresses are names: the simulated network routes by node
/// id).
pub fn sim_member(id: NodeId) -> Member {
    sim_member_at(id, sim_directory(id, 0))
}

/// Member `id` with data directory `directory`.
pub fn sim_member_at(id: NodeId, directory: DirectoryId) -> Member {
    Member {
        node_id: id,
        directory_id: directory,
        replication_addr: format!("n{id}:replication"),
        http_addr: format!("n{id}:http"),
        kafka_addr: String::new(),
    }
}

/// The membership in force at each offset of `log`: the bootstrap (every
/// simulated node a voter) and each membership entry of the log after it.
pub fn membership_of(voters: &[NodeId], log: &[Entry]) -> MembershipLog {
    let bootstrap = match Membership::new(voters.iter().map(|&v| sim_member(v)), []) {
        Ok(m) => m,
        Err(e) => unreachable!("the simulation's bootstrap membership is refused: {e}"),
    };
    let mut members = MembershipLog::new(0, bootstrap);
    for e in log {
        if let Command::Membership(m) = &e.command {
            // Offsets of a log are increasing: the append cannot fail.
            let _ = members.append(e.offset, m.clone());
        }
    }
    members
}

/// A node engine for node `id` with the epoch, vote and leader of `meta`,
/// and the membership its `log` leaves in force.
fn node_engine(
    id: NodeId,
    directory: DirectoryId,
    setup: &(Vec<NodeId>, Duration, u64),
    meta: Meta,
    now: Instant,
    log: &[Entry],
) -> NodeEngine {
    let config = ElectionConfig {
        election_timeout: setup.1,
    };
    NodeEngine::new(
        id,
        setup.0.clone(),
        config,
        meta.epoch,
        meta.voted_for,
        meta.leader,
        now,
        setup.2,
    )
    .with_directory(directory)
    .with_membership(membership_of(&setup.0, log))
}

/// The engines' form of a simulated node's meta.
pub fn node_meta(id: NodeId, meta: Meta) -> NodeMeta {
    NodeMeta {
        node_id: id,
        cluster_id: "sim".into(),
        directory_id: crate::membership::DirectoryId([id as u8; 16]),
        current_epoch: meta.epoch,
        leader: meta.leader,
        voted_for: meta.voted_for,
        commit_hint: 0,
    }
}

/// FNV-1a over the previous hash and a record's bytes.
pub fn chain_hash(prev: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prev.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
