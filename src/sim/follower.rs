//! The follower's side: fencing by epoch (persisted before it accepts a
//! leader), the handshake (its durable log end, truncation on request),
//! [`check_append`] on every batch, cumulative acks after fsync, and the
//! commit point it may learn: the leader's, capped at what this connection
//! delivered (beyond that its log may still differ from the leader's).

use crate::command::{Entry, NodeId};
use crate::engine::epoch::maybe_advance_epoch;
use crate::engine::follower::maybe_truncate;
use crate::record::Record;
use crate::replication::check_append;

use super::check::Invariant;
use super::disk::Meta;
use super::net::{ConnId, Dir, Msg};
use super::node::{FollowerState, Role};
use super::{PlantedBug, Simulation};

impl Simulation {
    /// A message from a leader.
    pub(super) fn follower_receive(&mut self, conn: ConnId, msg: Msg) {
        let Some(c) = self.net.get(conn) else { return };
        let (leader, id, conn_epoch) = (c.leader, c.follower, c.epoch);
        if !self.node(id).up {
            return;
        }
        let meta = self.node(id).meta();
        if let Msg::Hello { epoch, leader } = msg {
            self.hello(conn, id, epoch, leader);
            return;
        }
        // Fencing: a connection from an older epoch is refused.
        let no_fencing = self.config.bug == Some(PlantedBug::NoFencing);
        if conn_epoch < meta.epoch && !no_fencing {
            self.report.fenced += 1;
            self.send(conn, Dir::ToLeader, Msg::Reject { epoch: meta.epoch });
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
            Msg::Truncate { to } => {
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
                    st.position_owed = true;
                }
                self.report.truncations += 1;
                self.log(format!("n{id}: truncated to {to}"));
                self.owe_position(id);
            }
            Msg::Append {
                first_offset,
                records,
                commit,
            } => self.append(id, leader, conn_epoch, first_offset, records, commit),
            Msg::Heartbeat { commit } => {
                let received = match &self.node(id).role {
                    Role::Follower(st) => st.received,
                    Role::Leader(_) => None,
                };
                if let Some(r) = received {
                    self.node_mut(id).learn_commit(commit.min(r));
                    self.apply(id);
                }
            }
            other => self.fail(
                Invariant::Protocol,
                format!("n{id}: unexpected {} from n{leader}", other.describe()),
            ),
        }
    }

    fn hello(&mut self, conn: ConnId, id: NodeId, epoch: u64, leader: NodeId) {
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
            self.send(conn, Dir::ToLeader, Msg::Reject { epoch: meta.epoch });
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
            position_owed: true,
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
        let msg = Msg::Position {
            last_offset: node.last_offset(),
            last_epoch: node.last_epoch(),
        };
        if let Role::Follower(st) = &mut self.node_mut(id).role {
            st.position_owed = false;
        }
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
                    self.send(conn, Dir::ToLeader, Msg::Ack { offset });
                }
            }
        }
        self.apply(id);
    }
}
