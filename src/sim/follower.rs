//! The follower's side. Each inbound connection is driven by the real
//! [`ReplicaSessionEngine`] (the challenge, the leader's `Hello` checked with the
//! real keys and epoch fencing, `Welcome`/`Reject`, the checks on every
//! frame, acks, the session timeout), and the node's log is owned by the
//! real [`ReplicaListenerEngine`](crate::engine::follower::ReplicaListenerEngine) (the active session, the epoch persisted before
//! it is acted on, the group-commit queue, truncations, the commit point
//! learned), the two engines the `ReplicaSession` and `ReplicaListener`
//! actors drive. This file is only their shell: it carries the engines'
//! actions to the simulated network and disk, as those actors do to
//! sockets and the disk thread.
//!
//! The shell also checks what the engines must never be asked to do: a
//! leader may not send a batch that does not follow the log, nor ask to
//! truncate committed entries, nor send a snapshot (nothing is compacted in
//! the simulation).

use crate::command::NodeId;
use crate::engine::disk_io::{DiskCompletion, DiskExecutor, DiskRequest};
use crate::engine::election::ElectionInput;
use crate::engine::follower::{AppendRefused, MetaWriteError};
use crate::engine::node::NodeInput;
use crate::engine::AttachRefused;
use crate::engine::{
    FollowerAction, FollowerInput, Local, ReplicaSessionEngine, SessionAction, SessionInput,
};
use crate::frame::RejectReason;

use super::check::Invariant;
use super::leader::keys;
use super::net::{ConnId, Dir, Msg};
use super::{PlantedBug, Simulation};

impl Simulation {
    /// A leader opened `conn` to this node: its listener starts a session,
    /// which sends the `Challenge`.
    pub(super) fn follower_accept(&mut self, conn: ConnId) {
        let Some(c) = self.net.get(conn) else { return };
        let (id, nonce) = (c.follower, c.follower_nonce);
        if !self.node(id).up {
            return;
        }
        let session = ReplicaSessionEngine::new(
            id,
            keys(id).with_directory(self.node(id).directory),
            self.config.link_config(),
            self.clock(id),
            nonce,
        );
        self.sessions.insert(conn, session);
        self.owner_input(id, FollowerInput::SessionOpened(conn));
        self.session_actions(conn);
    }

    /// A message from a leader. Anything on the active session is a sign
    /// of life of its leader, for the election engine.
    pub(super) fn follower_receive(&mut self, conn: ConnId, msg: Msg) {
        self.session_input(conn, SessionInput::Frame(msg));
        let Some(c) = self.net.get(conn) else { return };
        let (id, leader, epoch) = (c.follower, c.leader, c.epoch);
        if self.node(id).up && self.node(id).owner.active() == Some(conn) {
            self.election_input(id, ElectionInput::LeaderHeard { leader, epoch });
        }
    }

    /// Timer: every session's timeout.
    pub(super) fn sessions_tick(&mut self) {
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            // A paused follower's sessions do not run.
            if let Some(c) = self.net.get(conn) {
                if self.paused(c.follower) {
                    continue;
                }
            }
            self.session_input(conn, SessionInput::Tick);
        }
    }

    /// `conn` is gone: its session ends, and the log owner hears of it.
    pub(super) fn session_gone(&mut self, follower: NodeId, conn: ConnId) {
        self.sessions.remove(&conn);
        if self.node(follower).up {
            self.owner_input(follower, FollowerInput::SessionGone(conn));
        }
    }

    /// What the follower end of `conn` knows now.
    fn local(&self, conn: ConnId) -> Option<(NodeId, Local)> {
        let id = self.net.get(conn)?.follower;
        let node = self.node(id);
        if !node.up {
            return None;
        }
        let meta = node.meta();
        let (epoch, leader) = if self.config.bug == Some(PlantedBug::NoFencing) {
            (0, None)
        } else {
            (meta.epoch, meta.leader)
        };
        Some((
            id,
            Local {
                epoch,
                leader,
                durable: node.owner.progress().durable,
            },
        ))
    }

    /// Feed one input to the session on `conn` and carry out its actions.
    fn session_input(&mut self, conn: ConnId, input: SessionInput) {
        let Some((id, local)) = self.local(conn) else {
            return;
        };
        let now = self.clock(id);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        session.handle(now, input, local);
        self.session_actions(conn);
    }

    fn session_actions(&mut self, conn: ConnId) {
        while let Some(action) = self.sessions.get_mut(&conn).and_then(|s| s.poll_action()) {
            let Some(c) = self.net.get(conn) else {
                self.sessions.remove(&conn);
                return;
            };
            let (leader, id) = (c.leader, c.follower);
            match action {
                SessionAction::Send(frame) => {
                    let ack = matches!(frame, Msg::Ack { .. });
                    self.send(conn, Dir::ToLeader, frame);
                    if ack {
                        // A pause asked for starts with an ack in flight.
                        self.start_pause(leader);
                    }
                }
                SessionAction::RejectAndClose { frame, reason } => {
                    if matches!(
                        frame,
                        Msg::Reject {
                            reason: RejectReason::StaleEpoch | RejectReason::EpochConflict,
                            ..
                        }
                    ) {
                        self.report.fenced += 1;
                    }
                    self.log(format!("n{id}: refuses n{leader}: {reason}"));
                    // The leader closes on the `Reject` (closing here would
                    // drop it unsent).
                    self.send(conn, Dir::ToLeader, frame);
                }
                SessionAction::Close { reason } => {
                    self.log(format!("n{id}: closes #{conn}: {reason}"));
                    self.close_by(conn, id);
                    return;
                }
                SessionAction::Attach { leader, epoch } => self.attach(conn, id, leader, epoch),
                SessionAction::Append {
                    records,
                    entries,
                    commit,
                } => {
                    let result = self
                        .node_mut(id)
                        .owner
                        .append(conn, records, entries, commit);
                    if let Err(AppendRefused::Invalid(e)) = &result {
                        self.fail(
                            Invariant::Protocol,
                            format!("n{id}: n{leader} sent a batch that does not follow: {e}"),
                        );
                        return;
                    }
                    self.owner_actions(id);
                    self.session_input(
                        conn,
                        SessionInput::Appended(result.map_err(|e| e.to_string())),
                    );
                }
                SessionAction::Election { from, msg } => {
                    // The simulation carries election messages as datagrams
                    // of their own, never on replication connections.
                    self.fail(
                        Invariant::ElectionSafety,
                        format!("n{id}: an election message from n{from} on a replication connection: {msg:?}"),
                    );
                    return;
                }
                SessionAction::Commit { commit } => {
                    self.owner_input(
                        id,
                        FollowerInput::Commit {
                            session: conn,
                            commit,
                        },
                    );
                }
                SessionAction::Truncate { to } => {
                    let p = self.node(id).owner.progress();
                    if crate::engine::follower::maybe_truncate(to, p.commit, p.durable).is_err()
                        && self.node(id).owner.active() == Some(conn)
                    {
                        self.fail(
                            Invariant::Protocol,
                            format!(
                                "n{id} told by n{leader} to truncate to {to}, below its durable commit {}",
                                p.commit.min(p.durable)
                            ),
                        );
                        return;
                    }
                    self.owner_input(
                        id,
                        FollowerInput::Truncate {
                            req: conn,
                            session: conn,
                            to,
                        },
                    );
                }
                SessionAction::InstallSnapshot { .. } => {
                    self.fail(
                        Invariant::Protocol,
                        format!("n{id}: n{leader} sent a snapshot, but no log is compacted"),
                    );
                    return;
                }
            }
        }
    }

    /// A session authenticated a leader; the log owner decides. (A node
    /// that leads refuses it, as a real node's listener does: a stale
    /// leader learns of the new epoch from check-quorum or from a
    /// follower's signed refusal, not from here.) Two leaders of one epoch
    /// are a violation.
    fn attach(&mut self, conn: ConnId, id: NodeId, leader: NodeId, epoch: u64) {
        let meta = self.node(id).meta();
        if self.node(id).is_leader() && epoch == meta.epoch && leader != id {
            self.fail(
                Invariant::ElectionSafety,
                format!("n{id} leads epoch {epoch} and n{leader} says it does too"),
            );
            return;
        }
        let (leader, epoch) = if self.config.bug == Some(PlantedBug::NoFencing) {
            // The planted bug: the shell passes the node's own epoch and
            // leader, so the log owner takes any leader as the known one.
            let stale = epoch < meta.epoch
                || (epoch == meta.epoch && meta.leader.is_some_and(|l| l != leader));
            if stale {
                (meta.leader.unwrap_or(leader), meta.epoch)
            } else {
                (leader, epoch)
            }
        } else {
            (leader, epoch)
        };
        self.owner_input(
            id,
            FollowerInput::Attach {
                req: conn,
                session: conn,
                leader,
                epoch,
            },
        );
    }

    /// Feed one input to `id`'s log owner and carry out its actions.
    pub(super) fn owner_input(&mut self, id: NodeId, input: FollowerInput) {
        self.node_mut(id).owner.handle(input);
        self.owner_actions(id);
    }

    /// Carry out what `id`'s log owner asks, as the `ReplicaListener` does:
    /// write meta and the WAL, truncate, answer the sessions.
    pub(super) fn owner_actions(&mut self, id: NodeId) {
        while let Some(action) = self.node_mut(id).owner.poll_action() {
            match action {
                FollowerAction::PersistMeta(m) => {
                    // Merged with (fenced against) the meta on disk by the
                    // disk, as the disk thread does.
                    let node = self.node_mut(id);
                    let result = match node.disk.execute(DiskRequest::PersistMeta(m)) {
                        DiskCompletion::MetaPersisted(Ok(Ok(()))) => Ok(()),
                        DiskCompletion::MetaPersisted(Ok(Err(refused))) => {
                            Err(MetaWriteError::Fenced(refused))
                        }
                        DiskCompletion::MetaPersisted(Err(e)) => {
                            Err(MetaWriteError::Storage(e.to_string()))
                        }
                        other => Err(MetaWriteError::Storage(format!(
                            "the disk answered a meta write with {other:?}"
                        ))),
                    };
                    node.owner.handle(FollowerInput::MetaWritten(result));
                }
                FollowerAction::EpochChanged { epoch, leader } => {
                    self.log(format!(
                        "n{id}: follows n{} in epoch {epoch}",
                        leader.unwrap_or(0)
                    ));
                    if let Some(leader) = leader {
                        self.election_input(id, ElectionInput::LeaderHeard { leader, epoch });
                    }
                }
                FollowerAction::Write(records) => {
                    let last = records.last().map_or(0, |r| r.offset);
                    let mut batch = Vec::with_capacity(records.len());
                    for r in records {
                        match r.entry() {
                            Ok(e) => batch.push((e, r)),
                            Err(e) => {
                                self.fail(
                                    Invariant::Protocol,
                                    format!("n{id}: undecodable record: {e}"),
                                );
                                return;
                            }
                        }
                    }
                    let node = self.node_mut(id);
                    if let Err(e) = node.append(batch) {
                        self.fail(Invariant::DenseLog, format!("n{id} append: {}", e.0));
                        return;
                    }
                    self.flush_log_events(id);
                    if self.config.bug == Some(PlantedBug::AckBeforeFsync) {
                        // The planted bug: "durable" before the fsync.
                        self.node_mut(id)
                            .owner
                            .handle(FollowerInput::Written(Ok(last)));
                    }
                    self.start_sync(id);
                }
                FollowerAction::TruncateWal { to } => {
                    let node = self.node_mut(id);
                    node.truncate(to);
                    let index = node.index.clone();
                    node.owner.handle(FollowerInput::Truncated(Ok(index)));
                    self.flush_log_events(id);
                    self.report.truncations += 1;
                    self.log(format!("n{id}: truncated to {to}"));
                }
                FollowerAction::InstallSnapshot { .. } => {
                    self.fail(
                        Invariant::Protocol,
                        format!("n{id}: asked to install a snapshot, but no log is compacted"),
                    );
                    return;
                }
                // The simulated store applies from the node's log.
                FollowerAction::Entries(_) => {}
                FollowerAction::MembershipAppended { offset, membership } => {
                    self.node_input(id, NodeInput::MembershipAppended { offset, membership });
                    self.check_one_pending_change(id);
                }
                FollowerAction::Durable { session, offset } => {
                    self.session_input(session, SessionInput::Durable(offset));
                }
                FollowerAction::StopSession(conn) => {
                    if self.config.bug == Some(PlantedBug::OldSessionAnswers) {
                        continue;
                    }
                    if self.net.get(conn).is_some() {
                        self.log(format!("n{id}: ends session #{conn}"));
                        self.close_by(conn, id);
                    }
                }
                FollowerAction::Attached { req, result } => {
                    let result = result.map_err(|e| match e {
                        AttachRefused::StaleEpoch { .. } => RejectReason::StaleEpoch,
                        AttachRefused::EpochConflict => RejectReason::EpochConflict,
                        AttachRefused::NotFollower | AttachRefused::Storage(_) => {
                            RejectReason::NotFollower
                        }
                    });
                    self.session_input(req, SessionInput::Attached(result));
                }
                FollowerAction::LogReset { req, result } => {
                    self.session_input(req, SessionInput::LogReset(result));
                }
                // The simulated node leads with its log at once.
                FollowerAction::Released { .. } => {}
                FollowerAction::FailStop(reason) => {
                    self.fail(
                        Invariant::Protocol,
                        format!("n{id}: the log owner fail-stopped, but simulated disks do not fail: {reason}"),
                    );
                    return;
                }
            }
        }
        // The simulated store hears of resets through the node's log.
        while self.node_mut(id).owner.poll_store_event().is_some() {}
        let commit = self.node(id).owner.progress().commit;
        if !self.node(id).is_leader() {
            self.node_mut(id).learn_commit(commit);
            self.flush_log_events(id);
            self.apply(id);
        }
    }

    /// The follower's disk is durable up to `durable`: tell the log owner.
    pub(super) fn follower_durable(&mut self, id: NodeId, durable: u64) {
        self.owner_input(id, FollowerInput::Written(Ok(durable)));
    }
}
