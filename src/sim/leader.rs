//! The leader's side of the protocol, driving the real engines: the
//! [`ReplicaSetTracker`] decides the commit point, the ISR and `acks=all`;
//! one [`LinkProgress`] per follower decides what may be sent;
//! [`decide_start`] decides where a follower's log joins the leader's.

use std::collections::BTreeMap;

use crate::command::{Command, Entry, NodeId};
use crate::engine::{LeaderAction, LeaderEngine, LeaderInput};
use crate::record::Record;
use crate::replication::{
    decide_start, AckOutcome, Backoff, LinkProgress, LinkState, ReplicaSetTracker, StartPoint,
};

use super::check::Invariant;
use super::disk::Meta;
use super::net::{ConnId, Dir, Msg};
use super::node::{Acks, FollowerState, LeaderState, LinkSim, Role, Waiter};
use super::{Simulation, MS};

impl Simulation {
    /// `id` becomes the leader of `epoch` (already persisted in its meta)
    /// and appends its `LeaderChange`.
    pub(super) fn become_leader(&mut self, id: NodeId, epoch: u64) {
        let now = self.instant();
        let config = self.config.clone();
        let peers: Vec<NodeId> = (1..=config.nodes as NodeId).filter(|&p| p != id).collect();
        let node = self.node_mut(id);
        node.disk.persist_meta(Meta {
            epoch,
            leader: Some(id),
        });
        let last = node.last_offset();
        let tracker = ReplicaSetTracker::new(
            id,
            peers.iter().copied(),
            now,
            config.replica_lag_max,
            config.min_insync.min(config.nodes).max(1),
            last + 1,
            node.commit.min(last),
            last,
            node.disk.durable(),
        );
        let links: BTreeMap<NodeId, LinkSim> = peers
            .iter()
            .map(|&p| {
                (
                    p,
                    LinkSim {
                        progress: LinkProgress::new(config.window_bytes, config.window_entries),
                        conn: None,
                        backoff: Backoff::new(2 * MS_DURATION, 100 * MS_DURATION),
                        next_attempt: 0,
                        last_send: 0,
                        sent_commit: 0,
                    },
                )
            })
            .collect();
        node.role = Role::Leader(Box::new(LeaderState {
            engine: LeaderEngine::new(id, epoch, tracker, WAL_BUSY_LIMIT),
            links,
            waiters: BTreeMap::new(),
            next_proposal: 0,
        }));
        self.report.elections += 1;
        self.log(format!(
            "n{id} leads epoch {epoch} (log {last}, commit {})",
            self.node(id).commit
        ));
        self.leader_append(id, Command::LeaderChange { leader: id, epoch }, None);
        self.leader_tick(id);
    }

    /// `id` learned of a higher epoch (or lost its election): it steps down,
    /// failing its waiting clients and closing its links.
    pub(super) fn step_down(&mut self, id: NodeId, epoch: u64) {
        let node = self.node_mut(id);
        let meta = node.meta();
        if epoch > meta.epoch {
            node.disk.persist_meta(Meta {
                epoch,
                leader: None,
            });
        }
        let Role::Leader(l) =
            std::mem::replace(&mut node.role, Role::Follower(FollowerState::default()))
        else {
            return;
        };
        self.report.failed += l.waiters.len() as u64;
        self.report.step_downs += 1;
        self.log(format!(
            "n{id} steps down from epoch {} (epoch {epoch} seen); {} waiting writes fail",
            meta.epoch,
            l.waiters.len()
        ));
        for link in l.links.values() {
            if let Some(c) = link.conn {
                self.close(c);
            }
        }
    }

    /// A client write reaches `id`.
    pub(super) fn leader_propose(&mut self, id: NodeId, command: Command, acks: Acks) {
        let node = self.node(id);
        let Role::Leader(l) = &node.role else {
            return;
        };
        let tracker = l.engine.tracker();
        if acks == Acks::All && !tracker.acks_all_allowed() {
            let line = format!(
                "n{id}: acks=all refused (ISR {:?} below min_insync {})",
                tracker.isr(),
                tracker.min_insync()
            );
            self.report.refused += 1;
            self.log(line);
            return;
        }
        if let Err(e) = node.state.validate(&command) {
            self.report.failed += 1;
            self.log(format!("n{id}: refused {}: {e}", command.kind()));
            return;
        }
        self.leader_append(id, command, Some(acks));
    }

    /// Append `command` at the leader's log end in its epoch; a client
    /// (`acks` given) waits for the engine to resolve it.
    fn leader_append(&mut self, id: NodeId, command: Command, acks: Option<Acks>) {
        let node = self.node_mut(id);
        let entry = Entry {
            offset: node.last_offset() + 1,
            epoch: node.meta().epoch,
            command,
        };
        let record = match Record::encode(&entry) {
            Ok(r) => r,
            Err(e) => {
                self.fail(Invariant::Protocol, format!("encode failed: {e}"));
                return;
            }
        };
        if let Err(e) = node.append(vec![(entry.clone(), record)]) {
            self.fail(Invariant::DenseLog, format!("leader n{id} append: {}", e.0));
            return;
        }
        let hash = node.chain.last().copied().unwrap_or(0);
        let r = self.checker.on_written(&entry, hash);
        self.check(r);
        if let Some(acks) = acks {
            self.log(format!(
                "n{id}: client write at {} acks={acks:?}",
                entry.offset
            ));
        }
        let now = self.instant();
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
    }

    /// Feed one input to `id`'s leader engine and carry out its actions.
    fn leader_input(&mut self, id: NodeId, input: LeaderInput) {
        let now = self.instant();
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
                Role::Follower(_) => None,
            };
            let Some(action) = action else { return };
            match action {
                LeaderAction::WriteWal { up_to } => {
                    let durable = self.node(id).disk.durable();
                    if durable >= up_to {
                        // Already synced by an earlier group commit.
                        let now = self.instant();
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
                    self.node_mut(id).learn_commit(commit);
                    self.apply(id);
                }
                LeaderAction::Resolve {
                    proposal, result, ..
                } => {
                    let waiter = match &mut self.node_mut(id).role {
                        Role::Leader(l) => l.waiters.remove(&proposal),
                        Role::Follower(_) => None,
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

    /// Timer: ISR lag, reconnects, heartbeats.
    pub(super) fn leader_tick(&mut self, id: NodeId) {
        if !self.node(id).is_leader() {
            return;
        }
        self.leader_input(id, LeaderInput::Tick);
        let peers: Vec<NodeId> = match &self.node(id).role {
            Role::Leader(l) => l.links.keys().copied().collect(),
            Role::Follower(_) => return,
        };
        let heartbeat = self.config.heartbeat.as_nanos() as u64;
        for peer in peers {
            let (state, conn, next_attempt, last_send, sent_commit, commit, epoch) = {
                let node = self.node(id);
                let Role::Leader(l) = &node.role else { return };
                let link = &l.links[&peer];
                (
                    link.progress.state(),
                    link.conn,
                    link.next_attempt,
                    link.last_send,
                    link.sent_commit,
                    l.engine.tracker().commit(),
                    node.meta().epoch,
                )
            };
            match (state, conn) {
                (LinkState::Connecting, None) if self.now >= next_attempt => {
                    let reachable = self.node(peer).up && self.net.reachable(id, peer);
                    if reachable {
                        let c = self.net.open(id, peer, epoch);
                        let now = self.now;
                        if let Some(link) = self.link_mut(id, peer) {
                            link.conn = Some(c);
                            link.progress.on_connected();
                            link.last_send = now;
                        }
                        self.log(format!("n{id} -> n{peer}: connect #{c}"));
                        self.send(c, Dir::ToFollower, Msg::Hello { epoch, leader: id });
                    } else {
                        let jitter = self.rng.unit();
                        let now = self.now;
                        if let Some(link) = self.link_mut(id, peer) {
                            link.next_attempt =
                                now + link.backoff.next_delay(jitter).as_nanos() as u64;
                        }
                    }
                }
                (LinkState::Probing | LinkState::Streaming, Some(c))
                    if self.now >= last_send + heartbeat || sent_commit < commit =>
                {
                    let now = self.now;
                    if let Some(link) = self.link_mut(id, peer) {
                        link.last_send = now;
                        link.sent_commit = commit;
                    }
                    self.send(c, Dir::ToFollower, Msg::Heartbeat { commit });
                }
                _ => {}
            }
        }
        self.pump(id);
    }

    fn link_mut(&mut self, id: NodeId, peer: NodeId) -> Option<&mut LinkSim> {
        match &mut self.node_mut(id).role {
            Role::Leader(l) => l.links.get_mut(&peer),
            Role::Follower(_) => None,
        }
    }

    /// Send on every link what its window allows.
    fn pump(&mut self, id: NodeId) {
        let peers: Vec<NodeId> = match &self.node(id).role {
            Role::Leader(l) => l.links.keys().copied().collect(),
            Role::Follower(_) => return,
        };
        for peer in peers {
            self.pump_link(id, peer);
        }
    }

    fn pump_link(&mut self, id: NodeId, peer: NodeId) {
        let batch_max = self.config.batch_entries.max(1);
        loop {
            let now = self.now;
            let node = self.node_mut(id);
            let last = node.last_offset();
            let records = node.disk.records();
            let Role::Leader(l) = &mut node.role else {
                return;
            };
            let commit = l.engine.tracker().commit();
            let Some(link) = l.links.get_mut(&peer) else {
                return;
            };
            let Some(conn) = link.conn else { return };
            let first = link.progress.next_offset();
            if !link.progress.can_send() || first > last {
                return;
            }
            let (room_bytes, room_entries) = link.progress.room();
            let mut batch = Vec::new();
            let mut bytes = 0;
            for offset in first..=last {
                let r = &records[offset as usize - 1];
                if batch.len() >= room_entries.min(batch_max)
                    || (!batch.is_empty() && bytes + r.len() > room_bytes)
                {
                    break;
                }
                bytes += r.len();
                batch.push(r.clone());
            }
            let n = batch.len();
            let end = first + n as u64 - 1;
            link.progress.on_sent(end, n, bytes);
            link.last_send = now;
            link.sent_commit = commit;
            self.send(
                conn,
                Dir::ToFollower,
                Msg::Append {
                    first_offset: first,
                    records: batch,
                    commit,
                },
            );
        }
    }

    /// A message from a follower.
    pub(super) fn leader_receive(&mut self, conn: ConnId, msg: Msg) {
        let Some(c) = self.net.get(conn) else { return };
        let (id, peer, conn_epoch) = (c.leader, c.follower, c.epoch);
        let node = self.node(id);
        let Role::Leader(l) = &node.role else { return };
        if node.meta().epoch != conn_epoch || l.links.get(&peer).and_then(|k| k.conn) != Some(conn)
        {
            return;
        }
        match msg {
            Msg::Position {
                last_offset,
                last_epoch,
            } => {
                if l.links[&peer].progress.state() != LinkState::Handshaking {
                    self.fail(
                        Invariant::Protocol,
                        format!("n{id}: Position from n{peer} outside a handshake"),
                    );
                    return;
                }
                match decide_start(&node.index, last_offset, last_epoch) {
                    StartPoint::Matched { matched } => {
                        match &mut self.node_mut(id).role {
                            Role::Leader(l) => {
                                if let Some(link) = l.links.get_mut(&peer) {
                                    link.progress.on_matched(matched);
                                }
                            }
                            Role::Follower(_) => return,
                        }
                        self.log(format!("n{id}: n{peer} matched at {matched}"));
                        self.leader_input(id, LeaderInput::Connected { peer, matched });
                        let commit = match &self.node(id).role {
                            Role::Leader(l) => l.engine.tracker().commit(),
                            Role::Follower(_) => return,
                        };
                        // A probe: confirms the match point to the follower.
                        self.send(
                            conn,
                            Dir::ToFollower,
                            Msg::Append {
                                first_offset: matched + 1,
                                records: Vec::new(),
                                commit,
                            },
                        );
                        self.pump_link(id, peer);
                    }
                    StartPoint::Truncate { to } => {
                        self.send(conn, Dir::ToFollower, Msg::Truncate { to });
                    }
                    StartPoint::Snapshot => self.fail(
                        Invariant::Protocol,
                        format!(
                            "n{id}: decide_start chose a snapshot for n{peer} at \
                             {last_offset}@e{last_epoch}, but no log is compacted"
                        ),
                    ),
                }
            }
            Msg::Reject { epoch } => {
                if epoch > conn_epoch {
                    self.step_down(id, epoch);
                } else {
                    self.close(conn);
                }
            }
            Msg::Ack { offset } => {
                let outcome = match &mut self.node_mut(id).role {
                    Role::Leader(l) => match l.links.get_mut(&peer) {
                        Some(link) => link.progress.on_ack(offset),
                        None => return,
                    },
                    Role::Follower(_) => return,
                };
                match outcome {
                    AckOutcome::Advanced { .. } => {
                        match &mut self.node_mut(id).role {
                            Role::Leader(l) => {
                                if let Some(link) = l.links.get_mut(&peer) {
                                    link.backoff.reset();
                                }
                            }
                            Role::Follower(_) => return,
                        }
                        self.leader_input(id, LeaderInput::Acked { peer, offset });
                        self.pump_link(id, peer);
                    }
                    AckOutcome::Stale => {}
                    AckOutcome::Beyond { sent } => self.fail(
                        Invariant::Protocol,
                        format!("n{id}: n{peer} acked {offset}, beyond {sent} sent"),
                    ),
                }
            }
            other => self.fail(
                Invariant::Protocol,
                format!("n{id}: unexpected {} from n{peer}", other.describe()),
            ),
        }
    }

    /// `conn` from `id` to `peer` is gone: the link reconnects after a
    /// backoff, the follower leaves the ISR.
    pub(super) fn leader_link_down(&mut self, id: NodeId, peer: NodeId, conn: ConnId) {
        let jitter = self.rng.unit();
        let now = self.now;
        match &mut self.node_mut(id).role {
            Role::Leader(l) => {
                let Some(link) = l.links.get_mut(&peer) else {
                    return;
                };
                if link.conn != Some(conn) {
                    return;
                }
                link.conn = None;
                link.progress.on_disconnected();
                link.next_attempt = now + link.backoff.next_delay(jitter).as_nanos() as u64;
            }
            Role::Follower(_) => return,
        }
        if self.node(id).up {
            self.leader_input(id, LeaderInput::Disconnected { peer });
        }
    }
}

const MS_DURATION: std::time::Duration = std::time::Duration::from_nanos(MS);

/// How long the sim's leader engine retries a full disk queue (the sim's
/// disk never reports one).
const WAL_BUSY_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
