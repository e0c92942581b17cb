//! The leader's side of the protocol, driving the real engines: the
//! [`ReplicatorEngine`] decides WAL writes, the commit point, the ISR and
//! `acks=all`; one [`FollowerLinkEngine`] per follower decides connecting, the
//! authenticated handshake, the start point, what to send and when, and
//! what the leader engine is told. This file only carries their actions
//! out over the simulated network and disk.

use crate::engine::disk_io::{DiskCompletion, DiskExecutor, DiskRequest};
use std::collections::BTreeMap;

use crate::command::{Command, Entry, NodeId};
use crate::engine::node::NodeInput;
use crate::engine::store::{Admission, AdmitRefused, Admitted, NodeRole, StoreInput};
use crate::engine::{
    FollowerInput, FollowerLinkEngine, LeaderAction, LeaderInput, LinkInput, LinkSetup,
    LogProgress, LogView, ReplicatorEngine,
};
use crate::epochs::EpochIndex;
use crate::handshake::HandshakeKeys;
use crate::membership::Membership;
use crate::record::Record;
use crate::replication::{decide_start, ReplicaSetTracker, StartPoint};

use super::check::Invariant;
use super::disk::Meta;
use super::node::{node_meta, Acks, LeaderState, LinkSim, Role, Waiter};
use super::{PlantedBug, Simulation};

// Driving the leader's links: a child module, so it sees this module's
// private items.
#[path = "leader_links.rs"]
mod links;

/// Entries the leader's in-memory tail holds in the simulation: links
/// further behind read the (simulated) WAL, as the real ones do.
const TAIL_ENTRIES: u64 = 24;

/// The leader's log as its links see it.
struct SimLog<'a> {
    index: &'a EpochIndex,
    records: &'a [Record],
}

impl LogView for SimLog<'_> {
    fn start_point(&self, last_offset: u64, last_epoch: u64) -> StartPoint {
        decide_start(self.index, last_offset, last_epoch)
    }

    fn read_tail(&self, from: u64, max_entries: usize, max_bytes: usize) -> Option<Vec<Record>> {
        let last = self.records.len() as u64;
        if from == 0 || from > last || from + TAIL_ENTRIES <= last {
            return None;
        }
        Some(take_records(
            &self.records[from as usize - 1..],
            max_entries,
            max_bytes,
        ))
    }
}

/// Up to `max_entries` records within `max_bytes` (at least one).
fn take_records(records: &[Record], max_entries: usize, max_bytes: usize) -> Vec<Record> {
    let mut bytes = 0;
    records
        .iter()
        .take(max_entries.max(1))
        .take_while(|r| {
            let first = bytes == 0;
            bytes += r.len();
            first || bytes <= max_bytes
        })
        .cloned()
        .collect()
}

/// The handshake keys of node `id` (one cluster, one secret).
pub(super) fn keys(id: NodeId) -> HandshakeKeys {
    match HandshakeKeys::new(id, "sim-cluster", b"sim-secret".to_vec()) {
        Ok(k) => k,
        // A non-empty constant cluster id and secret are always valid.
        Err(e) => unreachable!("constant simulation keys refused: {e}"),
    }
}

impl Simulation {
    /// Step-up 3 ([`NodeAction::StartLeading`](crate::engine::node::NodeAction::StartLeading)):
    /// `id`, its log released and `epoch` persisted, starts its leader
    /// engine and links, and its store takes the leadership and appends
    /// `LeaderChange` — unless `store_refuses` (the fault a failing WAL
    /// queue makes), which leaves the leader state started and returns
    /// false: the node engine must roll that back.
    pub(super) fn start_leading(&mut self, id: NodeId, epoch: u64, store_refuses: bool) -> bool {
        let now = self.clock(id);
        let config = self.config.clone();
        let (voters, learners) = self.members_of(id);
        let peers = others(id, &voters, &learners);
        let node = self.node_mut(id);
        let last = node.last_offset();
        let mut tracker = ReplicaSetTracker::new(
            id,
            voters.iter().copied(),
            now,
            config.replica_lag_max,
            config.min_insync.min(config.nodes).max(1),
            last + 1,
            node.commit.min(last),
            last,
            node.disk.durable(),
        );
        // Learners are replicated to, never counted.
        let (voters, learners) = self.counted(voters, learners);
        let _ = tracker.set_members(voters, learners, now);
        let mut links: BTreeMap<NodeId, LinkSim> = BTreeMap::new();
        for &p in &peers {
            let link = self.new_link(id, p, epoch);
            links.insert(p, link);
        }
        let node = self.node_mut(id);
        node.role = Role::Leader(Box::new(LeaderState {
            engine: ReplicatorEngine::new(id, epoch, tracker, WAL_BUSY_LIMIT, REQUEST_TIMEOUT),
            links,
            waiters: BTreeMap::new(),
            next_proposal: 0,
        }));
        self.report.elections += 1;
        self.log(format!(
            "n{id} leads epoch {epoch} (log {last}, commit {})",
            self.node(id).commit
        ));
        // The store takes leadership: its appended state is the applied
        // state plus every entry of the log after it.
        let state = Box::new(self.node(id).state().clone());
        let appended = match self
            .node_mut(id)
            .disk
            .execute(DiskRequest::ReplayLog { state })
        {
            DiskCompletion::LogReplayed(Ok((appended, _))) => *appended,
            other => {
                self.fail(
                    Invariant::Protocol,
                    format!("n{id}: its log does not replay: {other:?}"),
                );
                return false;
            }
        };
        let lead = StoreInput::Lead {
            epoch,
            appended,
            next_offset: last + 1,
        };
        self.store_input(id, lead);
        if store_refuses {
            self.log(format!("fault: n{id}'s store refuses its LeaderChange"));
            return false;
        }
        self.append_leader_change(id, epoch);
        // The change race's second act starts the moment a leader wins.
        self.drive_change_race();
        self.leader_tick(id);
        true
    }

    /// The voters and the learners in force on `id` (every node a voter
    /// when it runs without a membership log).
    pub(super) fn members_of(&self, id: NodeId) -> (Vec<NodeId>, Vec<NodeId>) {
        match self.node(id).engine.membership() {
            Some(log) => {
                let m = log.latest();
                (
                    m.voter_ids().collect(),
                    m.learners().map(|l| l.node_id).collect(),
                )
            }
            None => ((1..=self.config.nodes as NodeId).collect(), Vec::new()),
        }
    }

    /// Who the leader's tracker counts: the voters, and not the learners —
    /// unless the planted `LearnerCounted` makes every member a voter.
    fn counted(&self, voters: Vec<NodeId>, learners: Vec<NodeId>) -> (Vec<NodeId>, Vec<NodeId>) {
        if self.config.bug == Some(PlantedBug::LearnerCounted) {
            (voters.into_iter().chain(learners).collect(), Vec::new())
        } else {
            (voters, learners)
        }
    }

    /// A link from leader `id` (of `epoch`) to `peer`, not connected yet.
    fn new_link(&mut self, id: NodeId, peer: NodeId, epoch: u64) -> LinkSim {
        let now = self.clock(id);
        let node = self.node(id);
        let last = node.last_offset();
        let progress = LogProgress {
            log_end: last,
            durable: node.disk.durable(),
            commit: node.commit.min(last),
        };
        let setup = LinkSetup {
            node: id,
            peer,
            epoch,
            keys: keys(id),
            config: self.config.link_config(),
        };
        let seed = self.rng.next_u64();
        LinkSim {
            engine: FollowerLinkEngine::new(setup, progress, now, seed),
            conn: None,
            directory: crate::membership::DirectoryId::UNKNOWN,
        }
    }

    /// [`NodeAction::MembershipChanged`](crate::engine::node::NodeAction::MembershipChanged)
    /// on `id`: a leader counts the new voters from now on, links to new
    /// members and drops the links to members removed (as the Replicator
    /// does); a follower has nothing to change.
    pub(super) fn members_changed(&mut self, id: NodeId, m: &Membership) {
        let voters: Vec<NodeId> = m.voter_ids().collect();
        let learners: Vec<NodeId> = m.learners().map(|l| l.node_id).collect();
        self.log(format!(
            "n{id}: members now voters {voters:?} learners {learners:?}"
        ));
        let epoch = self.node(id).meta().epoch;
        let Role::Leader(l) = &self.node(id).role else {
            return;
        };
        let have: Vec<NodeId> = l.links.keys().copied().collect();
        let want = others(id, &voters, &learners);
        let (counted, uncounted) = self.counted(voters, learners);
        self.leader_input(
            id,
            LeaderInput::SetMembers {
                voters: counted,
                learners: uncounted,
            },
        );
        for p in have.iter().filter(|p| !want.contains(p)) {
            let conn = match &mut self.node_mut(id).role {
                Role::Leader(l) => l.links.remove(p).and_then(|k| k.conn),
                Role::Follower => None,
            };
            if let Some((c, _)) = conn {
                self.close_by(c, id);
            }
        }
        for &p in want.iter().filter(|p| !have.contains(p)) {
            let link = self.new_link(id, p, epoch);
            if let Role::Leader(l) = &mut self.node_mut(id).role {
                l.links.insert(p, link);
            }
            self.link_input(id, p, LinkInput::Tick);
        }
        self.pump(id);
    }

    /// [`NodeAction::StopLeading`](crate::engine::node::NodeAction::StopLeading):
    /// `id` stops its leader engine and links (waiting clients fail) and
    /// its store's leadership. Nothing to stop is not an error (a step-up
    /// that failed before it started them).
    pub(super) fn stop_leading(&mut self, id: NodeId) {
        self.catch_up_watch[id as usize - 1] = None;
        self.store_input(id, StoreInput::StepDown);
        let node = self.node_mut(id);
        let Role::Leader(l) = std::mem::replace(&mut node.role, Role::Follower) else {
            return;
        };
        let epoch = node.meta().epoch;
        self.report.failed += l.waiters.len() as u64;
        self.report.step_downs += 1;
        self.log(format!(
            "n{id} stops leading (meta epoch {epoch}); {} waiting writes fail",
            l.waiters.len()
        ));
        for link in l.links.values() {
            if let Some((c, _)) = link.conn {
                self.close_by(c, id);
            }
        }
    }

    /// [`NodeAction::ResumeFollowing`](crate::engine::node::NodeAction::ResumeFollowing):
    /// `id`'s log owner follows again with the log and meta on disk once
    /// the writes queued before are done (taken as instant here); returns
    /// the meta it read back.
    pub(super) fn resume_following(&mut self, id: NodeId, keep_commit: bool) -> Meta {
        let node = self.node_mut(id);
        node.disk.sync_all();
        let meta = node.meta();
        let follow = FollowerInput::Follow {
            epochs: node.index.clone(),
            meta: node_meta(id, meta),
            commit: if keep_commit { node.commit } else { 0 },
        };
        self.owner_input(id, follow);
        meta
    }

    /// A client write reaches `id`.
    pub(super) fn leader_propose(&mut self, id: NodeId, command: Command, acks: Acks) {
        let node = self.node(id);
        let Role::Leader(l) = &node.role else {
            return;
        };
        let tracker = l.engine.tracker();
        // The node engine admits (a leader that is not transferring).
        let adm = Admission {
            role: node.engine.admission(),
            isr_len: tracker.isr().len(),
            min_insync: tracker.min_insync(),
        };
        let kind = command.kind();
        // The store's admission (the real engine's).
        match node.store.admit(command, acks == Acks::All, false, adm) {
            Ok(admitted) => self.leader_append(id, admitted, Some(acks)),
            Err(AdmitRefused::NotEnoughReplicas { isr, required }) => {
                self.report.refused += 1;
                self.log(format!(
                    "n{id}: acks=all refused (ISR of {isr} below min_insync {required})"
                ));
            }
            Err(e) => {
                self.report.failed += 1;
                self.log(format!("n{id}: refused {kind}: {e}"));
            }
        }
    }

    /// The leader's own `LeaderChange`, the first entry of its epoch.
    fn append_leader_change(&mut self, id: NodeId, epoch: u64) {
        let node = self.node(id);
        let adm = Admission {
            role: NodeRole::Leader,
            isr_len: 1,
            min_insync: 1,
        };
        let command = Command::LeaderChange { leader: id, epoch };
        match node.store.admit(command, false, true, adm) {
            Ok(admitted) => self.leader_append(id, admitted, None),
            Err(e) => self.fail(
                Invariant::Protocol,
                format!("n{id}: its LeaderChange was refused: {e}"),
            ),
        }
    }

    /// Append `command` at the leader's log end in its epoch; a client
    /// (`acks` given) waits for the engine to resolve it.
    pub(super) fn leader_append(&mut self, id: NodeId, admitted: Admitted, acks: Option<Acks>) {
        let node = self.node_mut(id);
        let Admitted { entry, record } = admitted;
        if entry.offset != node.last_offset() + 1 || entry.epoch != node.meta().epoch {
            let detail = format!(
                "n{id}: the store numbered an entry {}@e{} after {}@e{}",
                entry.offset,
                entry.epoch,
                node.last_offset(),
                node.meta().epoch
            );
            self.fail(Invariant::DenseLog, detail);
            return;
        }
        node.store.appended(entry.clone());
        if let Err(e) = node.append(vec![(entry.clone(), record)]) {
            self.fail(Invariant::DenseLog, format!("leader n{id} append: {}", e.0));
            return;
        }
        if let Command::Membership(m) = &entry.command {
            node.log_events.push(NodeInput::MembershipAppended {
                offset: entry.offset,
                membership: m.clone(),
            });
        }
        let hash = node.chain.last().copied().unwrap_or(0);
        let r = self.checker.on_written(&entry, hash);
        self.check(r);
        // A membership entry is in force from its append: before the leader
        // engine counts anything for it.
        self.flush_log_events(id);
        if let Some(acks) = acks {
            self.log(format!(
                "n{id}: client write at {} acks={acks:?}",
                entry.offset
            ));
        }
        let now = self.clock(id);
        let offset = entry.offset;
        if let Role::Leader(l) = &mut self.node_mut(id).role {
            // The waiter is registered before the entry can be sent.
            let proposal = acks.map(|acks| {
                let p = l.next_proposal;
                l.next_proposal += 1;
                l.waiters.insert(p, Waiter { entry, acks });
                p
            });
            l.engine.handle(
                now,
                LeaderInput::Append {
                    offset,
                    acks: acks.unwrap_or(Acks::None),
                    proposal,
                },
            );
        }
        self.leader_actions(id);
        self.pump(id);
    }

    /// The leader's own disk is durable up to `durable`.
    pub(super) fn leader_durable(&mut self, id: NodeId, durable: u64) {
        self.leader_input(id, LeaderInput::WalDurable { up_to: durable });
        self.pump(id);
    }

    /// Feed one input to `id`'s leader engine and carry out its actions.
    fn leader_input(&mut self, id: NodeId, input: LeaderInput) {
        let now = self.clock(id);
        if let Role::Leader(l) = &mut self.node_mut(id).role {
            l.engine.handle(now, input);
        }
        self.leader_actions(id);
    }

    /// Carry out what `id`'s leader engine asks, as the `Replicator` does:
    /// write the WAL, publish and apply a new commit point, answer clients.
    fn leader_actions(&mut self, id: NodeId) {
        loop {
            let action = match &mut self.node_mut(id).role {
                Role::Leader(l) => l.engine.poll_action(),
                Role::Follower => None,
            };
            let Some(action) = action else { return };
            match action {
                LeaderAction::WriteWal { up_to } => {
                    let durable = self.node(id).disk.durable();
                    if durable >= up_to {
                        // Already synced by an earlier group commit.
                        let now = self.clock(id);
                        if let Role::Leader(l) = &mut self.node_mut(id).role {
                            l.engine
                                .handle(now, LeaderInput::WalDurable { up_to: durable });
                        }
                    } else {
                        self.start_sync(id);
                    }
                }
                LeaderAction::IsrChanged { joined, left, .. } => {
                    self.log(format!("n{id}: ISR +{joined:?} -{left:?}"));
                }
                LeaderAction::Commit { offset: commit } => {
                    let node = self.node(id);
                    let from = node.commit.min(commit) as usize;
                    let entries: Vec<Entry> = node.log[from..commit as usize].to_vec();
                    let epoch = node.meta().epoch;
                    self.log(format!("n{id}: commit {commit}"));
                    let r = self.checker.on_committed(id, epoch, &entries, &self.nodes);
                    self.check(r);
                    self.check_member_commit(id, &entries);
                    self.node_mut(id).learn_commit(commit);
                    self.flush_log_events(id);
                    self.apply(id);
                }
                LeaderAction::Resolve {
                    proposal, result, ..
                } => {
                    let waiter = match &mut self.node_mut(id).role {
                        Role::Leader(l) => l.waiters.remove(&proposal),
                        Role::Follower => None,
                    };
                    let Some(w) = waiter else {
                        self.fail(
                            Invariant::Protocol,
                            format!("n{id}: engine resolved unknown proposal {proposal}"),
                        );
                        return;
                    };
                    match result {
                        Ok(()) => {
                            self.report.writes_ok += 1;
                            self.log(format!(
                                "n{id}: write at {} acks={:?} -> Ok",
                                w.entry.offset, w.acks
                            ));
                            if w.acks == Acks::All {
                                self.checker.on_acked_all(w.entry);
                            }
                        }
                        Err(e) => {
                            self.report.failed += 1;
                            self.log(format!(
                                "n{id}: write at {} acks={:?} -> {e}",
                                w.entry.offset, w.acks
                            ));
                        }
                    }
                }
                LeaderAction::Failed { reason } => {
                    self.fail(
                        Invariant::Protocol,
                        format!("n{id}: leader engine failed without a storage fault: {reason}"),
                    );
                    return;
                }
            }
        }
    }

    /// Timer: ISR lag, reconnects, heartbeats, session timeouts.
    pub(super) fn leader_tick(&mut self, id: NodeId) {
        if !self.node(id).is_leader() {
            return;
        }
        self.leader_input(id, LeaderInput::Tick);
        self.watch_catch_up(id);
        if !self.node(id).is_leader() {
            return;
        }
        for peer in self.link_peers(id) {
            self.link_input(id, peer, LinkInput::Tick);
        }
        self.pump(id);
    }
}

/// The members other than `id`: whom its links replicate to.
fn others(id: NodeId, voters: &[NodeId], learners: &[NodeId]) -> Vec<NodeId> {
    voters
        .iter()
        .chain(learners)
        .copied()
        .filter(|&p| p != id)
        .collect()
}

/// A link's WAL read, answered by the simulated disk after its latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct WalReadDone {
    pub node: NodeId,
    pub peer: NodeId,
    pub epoch: u64,
    pub gen: u64,
    pub from: u64,
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// How long the sim's leader engine retries a full disk queue (the sim's
/// disk never reports one).
const WAL_BUSY_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a proposal waits for its acknowledgement (the default
/// `request_timeout`).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
