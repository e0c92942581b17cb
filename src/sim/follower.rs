//! The follower's side. Each inbound connection is driven by the real
//! [`SessionEngine`] (the challenge, the leader's `Hello` checked with the
//! real keys and epoch fencing, `Welcome`/`Reject`, the checks on every
//! frame, acks, the session timeout). This file plays the part of the
//! `ReplicaListener`, the log owner, and answers the session's requests
//! with the listener's rules: fencing ([`maybe_advance_epoch`], the epoch
//! persisted before it accepts a leader), [`check_append`] on every batch,
//! truncation ([`maybe_truncate`]), the log end reported only once all of
//! it is durable, and the commit point it may learn: the leader's, capped at
//! what this connection delivered or matched.

use crate::command::{Entry, NodeId};
use crate::engine::epoch::{maybe_advance_epoch, EpochRefused};
use crate::engine::follower::maybe_truncate;
use crate::engine::{Local, SessionAction, SessionEngine, SessionInput};
use crate::frame::RejectReason;
use crate::record::Record;
use crate::replication::check_append;

use super::check::Invariant;
use super::disk::Meta;
use super::leader::keys;
use super::net::{ConnId, Dir, Msg};
use super::node::{FollowerState, Role};
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
        let session = SessionEngine::new(
            id,
            keys(id),
            self.config.link_config(),
            self.instant(),
            nonce,
        );
        self.sessions.insert(conn, session);
        self.session_actions(conn);
    }

    /// A message from a leader.
    pub(super) fn follower_receive(&mut self, conn: ConnId, msg: Msg) {
        self.session_input(conn, SessionInput::Frame(msg));
    }

    /// Timer: every session's timeout.
    pub(super) fn sessions_tick(&mut self) {
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            self.session_input(conn, SessionInput::Tick);
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
                durable: node.disk.durable(),
            },
        ))
    }

    /// Feed one input to the session on `conn` and carry out its actions.
    fn session_input(&mut self, conn: ConnId, input: SessionInput) {
        let Some((_, local)) = self.local(conn) else {
            return;
        };
        let now = self.instant();
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
            let (leader, id, conn_epoch) = (c.leader, c.follower, c.epoch);
            match action {
                SessionAction::Send(frame) => self.send(conn, Dir::ToLeader, frame),
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
                    self.close(conn);
                    return;
                }
                SessionAction::Attach { leader, epoch } => self.attach(conn, id, leader, epoch),
                SessionAction::Append {
                    records,
                    entries,
                    commit,
                } => {
                    let result = self.append(conn, id, conn_epoch, records, entries, commit);
                    self.session_input(conn, SessionInput::Appended(result));
                    // Already durable (nothing new, or the planted bug).
                    let durable = self.follower_ack_point(id);
                    self.session_input(conn, SessionInput::Durable(durable));
                }
                SessionAction::Commit { commit } => {
                    if self.is_active(id, conn) {
                        self.learn_capped_commit(id, commit);
                    }
                }
                SessionAction::Truncate { to } => self.truncate(conn, id, leader, to),
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

    fn is_active(&self, id: NodeId, conn: ConnId) -> bool {
        matches!(&self.node(id).role, Role::Follower(st) if st.conn == Some(conn))
    }

    /// The listener's attach: fence, persist a newer epoch before acting in
    /// it, make `conn` the active session; the log end is reported once all
    /// of it is durable.
    fn attach(&mut self, conn: ConnId, id: NodeId, leader: NodeId, epoch: u64) {
        let meta = self.node(id).meta();
        let no_fencing = self.config.bug == Some(PlantedBug::NoFencing);
        // The listener's fencing rule (the real engine function).
        if let Err(refused) = maybe_advance_epoch(meta.epoch, meta.leader, epoch, leader) {
            if !no_fencing {
                let reason = match refused {
                    EpochRefused::Stale { .. } => RejectReason::StaleEpoch,
                    EpochRefused::Conflict { .. } => RejectReason::EpochConflict,
                };
                self.session_input(conn, SessionInput::Attached(Err(reason)));
                return;
            }
        }
        if self.node(id).is_leader() {
            if epoch == meta.epoch {
                self.fail(
                    Invariant::ElectionSafety,
                    format!("n{id} leads epoch {epoch} and n{leader} says it does too"),
                );
                return;
            }
            self.step_down(id, epoch);
        }
        // Persist the epoch and leader before acting in it.
        let new_meta = Meta {
            epoch,
            leader: Some(leader),
        };
        if self.node(id).meta() != new_meta {
            self.node_mut(id).disk.persist_meta(new_meta);
        }
        let old = match &self.node(id).role {
            Role::Follower(st) => st.conn,
            Role::Leader(_) => None,
        };
        if let Some(old) = old.filter(|&o| o != conn) {
            self.close(old);
        }
        self.node_mut(id).role = Role::Follower(FollowerState {
            conn: Some(conn),
            received: None,
            reported: None,
            position_owed: true,
            welcome_owed: true,
        });
        self.owe_position(id);
    }

    /// The listener's truncation, at the leader's request.
    fn truncate(&mut self, conn: ConnId, id: NodeId, leader: NodeId, to: u64) {
        if !self.is_active(id, conn) {
            let refused = Err("session is not the active one".to_string());
            self.session_input(conn, SessionInput::LogReset(refused));
            return;
        }
        let node = self.node_mut(id);
        // The listener's rule (the real engine function).
        if let Err(e) = maybe_truncate(to, node.commit, node.disk.durable()) {
            self.fail(
                Invariant::Protocol,
                format!("n{id} told by n{leader} to truncate: {e}"),
            );
            return;
        }
        node.truncate(to);
        if let Role::Follower(st) = &mut node.role {
            st.received = None;
            st.reported = None;
            st.position_owed = true;
        }
        self.report.truncations += 1;
        self.log(format!("n{id}: truncated to {to}"));
        self.owe_position(id);
    }

    /// Report the log end once all of it is durable (the leader counts the
    /// matched prefix as on this node's disk): the `Welcome` of a new
    /// session, or the `Position` after a truncation.
    fn owe_position(&mut self, id: NodeId) {
        let node = self.node(id);
        let Role::Follower(st) = &node.role else {
            return;
        };
        let Some(conn) = st.conn.filter(|_| st.position_owed) else {
            return;
        };
        let lie = self.config.bug == Some(PlantedBug::AckBeforeFsync);
        if !lie && (node.disk.syncing() || node.disk.durable() < node.last_offset()) {
            self.start_sync(id);
            return;
        }
        let end = (node.last_offset(), node.last_epoch());
        let welcome = match &mut self.node_mut(id).role {
            Role::Follower(st) => {
                st.position_owed = false;
                // The leader answers with a `Truncate` (which resets this)
                // or starts streaming: then this log matches the leader's
                // up to here, and the commit point may be learned up to it.
                st.reported = Some(end.0);
                std::mem::take(&mut st.welcome_owed)
            }
            Role::Leader(_) => return,
        };
        let input = if welcome {
            SessionInput::Attached(Ok(end))
        } else {
            SessionInput::LogReset(Ok(end))
        };
        self.session_input(conn, input);
    }

    /// The listener's append: only from the active session, checked
    /// against the log, then written; the commit point is learned up to
    /// what this connection delivered.
    fn append(
        &mut self,
        conn: ConnId,
        id: NodeId,
        epoch: u64,
        records: Vec<Record>,
        entries: Vec<Entry>,
        commit: u64,
    ) -> Result<(), String> {
        let node = self.node(id);
        match &node.role {
            Role::Follower(st) if st.conn == Some(conn) && !st.position_owed => {}
            Role::Follower(st) if st.conn == Some(conn) => {
                self.fail(
                    Invariant::Protocol,
                    format!("n{id}: Append before the handshake finished"),
                );
                return Err("append before the handshake finished".into());
            }
            _ => return Err("session is not the active one".into()),
        }
        if let Some(first) = records.first() {
            if first.offset != node.last_offset() + 1 {
                self.fail(
                    Invariant::Protocol,
                    format!(
                        "n{id}: Append at {}, log ends at {}",
                        first.offset,
                        node.last_offset()
                    ),
                );
                return Err("not contiguous".into());
            }
        }
        if let Err(e) = check_append(&node.index, epoch, &records) {
            self.fail(
                Invariant::Protocol,
                format!("n{id}: check_append refused a batch: {e}"),
            );
            return Err(e.to_string());
        }
        let last = node.last_offset() + records.len() as u64;
        let batch: Vec<(Entry, Record)> = entries.into_iter().zip(records).collect();
        let node = self.node_mut(id);
        if let Err(e) = node.append(batch) {
            self.fail(Invariant::DenseLog, format!("n{id} append: {}", e.0));
            return Err(e.0);
        }
        if let Role::Follower(st) = &mut node.role {
            st.received = Some(last);
        }
        self.learn_capped_commit(id, commit);
        self.start_sync(id);
        self.apply(id);
        Ok(())
    }

    /// Learn the leader's commit point, capped at what this node's log is
    /// known to share with the leader (received or matched on this
    /// connection).
    fn learn_capped_commit(&mut self, id: NodeId, commit: u64) {
        let cap = match &self.node(id).role {
            Role::Follower(st) => st.received.or(st.reported),
            Role::Leader(_) => None,
        };
        if let Some(cap) = cap {
            self.node_mut(id).learn_commit(commit.min(cap));
            self.apply(id);
        }
    }

    /// What the follower may ack: its durable offset (or, with the planted
    /// bug, everything it wrote).
    fn follower_ack_point(&self, id: NodeId) -> u64 {
        let node = self.node(id);
        if self.config.bug == Some(PlantedBug::AckBeforeFsync) {
            node.last_offset()
        } else {
            node.disk.durable()
        }
    }

    /// The follower's disk is durable up to `durable`: owe a position, ack,
    /// apply.
    pub(super) fn follower_durable(&mut self, id: NodeId, _durable: u64) {
        self.owe_position(id);
        let conn = match &self.node(id).role {
            Role::Follower(st) if !st.position_owed => st.conn,
            _ => None,
        };
        if let Some(conn) = conn {
            let offset = self.follower_ack_point(id);
            self.session_input(conn, SessionInput::Durable(offset));
        }
        self.apply(id);
    }
}
