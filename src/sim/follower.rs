//! The follower's side: the authenticated handshake (Challenge, the
//! leader's `Hello` checked with the real [`HandshakeKeys`], `Welcome`),
//! fencing by epoch (persisted before it accepts a leader), its durable log
//! end, truncation on request,
//! [`check_append`] on every batch, cumulative acks after fsync, and the
//! commit point it may learn: the leader's, capped at what this connection
//! delivered (beyond that its log may still differ from the leader's).

use crate::command::{Entry, NodeId};
use crate::engine::epoch::maybe_advance_epoch;
use crate::engine::follower::maybe_truncate;
use crate::frame::{Frame, RejectReason};
#[cfg(doc)]
use crate::handshake::HandshakeKeys;
use crate::handshake::{reject, HandshakeError};
use crate::record::{Record, RecordReader};
use crate::replication::check_append;

use super::check::Invariant;
use super::disk::Meta;
use super::leader::keys;
use super::net::{describe, ConnId, Dir, Msg};
use super::node::{FollowerState, Role};
use super::{PlantedBug, Simulation};

impl Simulation {
    /// A leader opened `conn` to this node: its listener sends the
    /// `Challenge`.
    pub(super) fn follower_accept(&mut self, conn: ConnId) {
        let Some(c) = self.net.get(conn) else { return };
        let (id, nonce) = (c.follower, c.follower_nonce);
        if self.node(id).up {
            self.send(conn, Dir::ToLeader, keys(id).challenge(&nonce));
        }
    }

    /// A message from a leader.
    pub(super) fn follower_receive(&mut self, conn: ConnId, msg: Msg) {
        let Some(c) = self.net.get(conn) else { return };
        let (leader, id, conn_epoch) = (c.leader, c.follower, c.epoch);
        if !self.node(id).up {
            return;
        }
        let meta = self.node(id).meta();
        let no_fencing = self.config.bug == Some(PlantedBug::NoFencing);
        if let Frame::Hello { .. } = msg {
            // The real check: protocol, cluster, proof and epoch fencing
            // (skipped by the planted bug).
            let nonce = match self.net.get(conn) {
                Some(c) => c.follower_nonce,
                None => return,
            };
            let (epoch, known) = if no_fencing {
                (0, None)
            } else {
                (meta.epoch, meta.leader)
            };
            match keys(id).check_hello(&nonce, epoch, known, &msg) {
                Ok(info) => self.hello(conn, id, info.epoch, info.leader_id, info.nonce),
                Err(e) => self.refuse(conn, id, &e),
            }
            return;
        }
        // Fencing: a connection from an older epoch is refused.
        if conn_epoch < meta.epoch && !no_fencing {
            self.report.fenced += 1;
            let frame = Frame::Reject {
                reason: RejectReason::StaleEpoch,
                epoch: meta.epoch,
                leader: meta.leader,
            };
            self.send(conn, Dir::ToLeader, frame);
            return;
        }
        let active = match &self.node(id).role {
            Role::Follower(st) => st.conn == Some(conn),
            Role::Leader(_) => false,
        };
        if !active {
            return;
        }
        match msg {
            Frame::Truncate { to } => {
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
            Frame::Append {
                first_offset,
                records,
                commit,
            } => {
                let records: Result<Vec<Record>, _> = RecordReader::new(records)
                    .map(|r| r.map(|(record, _)| record))
                    .collect();
                match records {
                    Ok(records) => {
                        self.append(id, leader, conn_epoch, first_offset, records, commit)
                    }
                    Err(e) => self.fail(
                        Invariant::Protocol,
                        format!("n{id}: undecodable Append from n{leader}: {e}"),
                    ),
                }
            }
            Frame::Heartbeat { commit } => {
                let (received, acked) = match &self.node(id).role {
                    Role::Follower(st) => (st.received.or(st.reported), st.acked),
                    Role::Leader(_) => (None, 0),
                };
                if let Some(r) = received {
                    self.node_mut(id).learn_commit(commit.min(r));
                    self.apply(id);
                }
                // Answered, so the leader's link hears from an idle
                // follower within its session timeout.
                self.send(conn, Dir::ToLeader, Frame::Ack { offset: acked });
            }
            other => self.fail(
                Invariant::Protocol,
                format!("n{id}: unexpected {} from n{leader}", describe(&other)),
            ),
        }
    }

    /// Refuse a leader's `Hello` with the listener's `Reject`.
    fn refuse(&mut self, conn: ConnId, id: NodeId, e: &HandshakeError) {
        let meta = self.node(id).meta();
        if matches!(
            e,
            HandshakeError::StaleEpoch { .. } | HandshakeError::EpochConflict { .. }
        ) {
            self.report.fenced += 1;
        }
        self.log(format!("n{id}: refuses a Hello: {e}"));
        self.send(conn, Dir::ToLeader, reject(e, meta.epoch, meta.leader));
    }

    fn hello(
        &mut self,
        conn: ConnId,
        id: NodeId,
        epoch: u64,
        leader: NodeId,
        leader_nonce: crate::handshake::Nonce,
    ) {
        let meta = self.node(id).meta();
        // The listener's fencing rule (the real engine function).
        let refused = maybe_advance_epoch(meta.epoch, meta.leader, epoch, leader).is_err();
        let no_fencing = self.config.bug == Some(PlantedBug::NoFencing);
        if refused && !no_fencing {
            self.report.fenced += 1;
            self.log(format!(
                "n{id}: refuses n{leader} of epoch {epoch} (at epoch {})",
                meta.epoch
            ));
            let frame = Frame::Reject {
                reason: RejectReason::StaleEpoch,
                epoch: meta.epoch,
                leader: meta.leader,
            };
            self.send(conn, Dir::ToLeader, frame);
            return;
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
            welcome_nonce: Some(leader_nonce),
            acked: 0,
        });
        self.owe_position(id);
    }

    /// Report the log end once all of it is durable (the leader counts
    /// the matched prefix as on this node's disk).
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
        let (last_offset, last_epoch) = (node.last_offset(), node.last_epoch());
        let welcome = match &mut self.node_mut(id).role {
            Role::Follower(st) => {
                st.position_owed = false;
                // The leader answers with a `Truncate` (which resets this)
                // or starts streaming: then this log matches the leader's
                // up to here, and the commit point may be learned up to it.
                st.reported = Some(last_offset);
                st.welcome_nonce.take()
            }
            Role::Leader(_) => return,
        };
        // The first report of a connection is the signed `Welcome`; after a
        // truncation it is a `Position`.
        let msg = match welcome {
            Some(nonce) => match keys(id).welcome(&nonce, last_offset, last_epoch) {
                Ok(frame) => frame,
                Err(e) => {
                    self.fail(
                        Invariant::Protocol,
                        format!("n{id}: cannot sign a Welcome: {e}"),
                    );
                    return;
                }
            },
            None => Frame::Position {
                last_offset,
                last_epoch,
            },
        };
        self.send(conn, Dir::ToLeader, msg);
    }

    fn append(
        &mut self,
        id: NodeId,
        leader: NodeId,
        epoch: u64,
        first_offset: u64,
        records: Vec<Record>,
        commit: u64,
    ) {
        let node = self.node(id);
        if let Role::Follower(st) = &node.role {
            if st.position_owed {
                self.fail(
                    Invariant::Protocol,
                    format!("n{id}: Append from n{leader} before the handshake finished"),
                );
                return;
            }
        }
        if first_offset != node.last_offset() + 1 {
            self.fail(
                Invariant::Protocol,
                format!(
                    "n{id}: Append from n{leader} at {first_offset}, log ends at {}",
                    node.last_offset()
                ),
            );
            return;
        }
        if let Err(e) = check_append(&node.index, epoch, &records) {
            self.fail(
                Invariant::Protocol,
                format!("n{id}: check_append refused a batch from n{leader}: {e}"),
            );
            return;
        }
        let mut batch: Vec<(Entry, Record)> = Vec::with_capacity(records.len());
        for r in records {
            match r.entry() {
                Ok(e) => batch.push((e, r)),
                Err(e) => {
                    self.fail(
                        Invariant::Protocol,
                        format!("n{id}: undecodable record from n{leader}: {e}"),
                    );
                    return;
                }
            }
        }
        let received = first_offset - 1 + batch.len() as u64;
        let node = self.node_mut(id);
        if let Err(e) = node.append(batch) {
            self.fail(Invariant::DenseLog, format!("n{id} append: {}", e.0));
            return;
        }
        if let Role::Follower(st) = &mut node.role {
            st.received = Some(received);
        }
        node.learn_commit(commit.min(received));
        self.start_sync(id);
        self.apply(id);
        // Already durable (a probe on a synced log): ack at once.
        let durable = if self.config.bug == Some(PlantedBug::AckBeforeFsync) {
            received
        } else {
            self.node(id).disk.durable()
        };
        self.follower_durable(id, durable);
    }

    /// The follower's disk is durable up to `durable`: owe a position, ack,
    /// apply.
    pub(super) fn follower_durable(&mut self, id: NodeId, durable: u64) {
        self.owe_position(id);
        let node = self.node_mut(id);
        if let Role::Follower(st) = &mut node.role {
            if let (Some(conn), Some(received)) = (st.conn, st.received) {
                let offset = durable.min(received);
                if offset > st.acked {
                    st.acked = offset;
                    self.send(conn, Dir::ToLeader, Frame::Ack { offset });
                }
            }
        }
        self.apply(id);
    }
}
