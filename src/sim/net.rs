//! The simulated network: one connection per leader → follower link, each a
//! pair of FIFO queues with per-message latency; connections can be cut, and
//! a partition splits the nodes into two sides that cannot reach each other.

use std::collections::{BTreeMap, VecDeque};

use crate::command::NodeId;
use crate::frame::{Frame, NONCE_LEN};

/// Identifies a connection for its whole life (never reused in a seed).
pub type ConnId = u64;

/// Direction of a message on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// From the leader to the follower.
    ToFollower,
    /// From the follower to the leader.
    ToLeader,
}

/// A message on the simulated wire: the real protocol [`Frame`], as the
/// engines produce and consume it (the simulation does not encode it to
/// bytes; the codec has its own tests).
pub type Msg = Frame;

/// Short description of a frame for the event log.
pub fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Challenge { node_id, .. } => format!("Challenge(n{node_id})"),
        Frame::Hello {
            leader_id, epoch, ..
        } => format!("Hello(e{epoch}, n{leader_id})"),
        Frame::Welcome {
            last_offset,
            last_epoch,
            ..
        } => format!("Welcome({last_offset}@e{last_epoch})"),
        Frame::Position {
            last_offset,
            last_epoch,
        } => format!("Position({last_offset}@e{last_epoch})"),
        Frame::Reject { reason, epoch, .. } => format!("Reject({reason:?}, e{epoch})"),
        Frame::Truncate { to } => format!("Truncate({to})"),
        Frame::Append {
            first_offset,
            records,
            commit,
        } => format!(
            "Append({first_offset}.., {} B, commit {commit})",
            records.len()
        ),
        Frame::Heartbeat { commit } => format!("Heartbeat(commit {commit})"),
        Frame::Ack { offset } => format!("Ack({offset})"),
        other => other.kind().to_string(),
    }
}

/// One leader → follower connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The leader end.
    pub leader: NodeId,
    /// The follower end.
    pub follower: NodeId,
    /// The leader's epoch when it opened the connection.
    pub epoch: u64,
    /// The nonce of the follower's `Challenge` on this connection.
    pub follower_nonce: [u8; NONCE_LEN],
    queues: [VecDeque<(u64, Msg)>; 2],
}

impl Connection {
    /// Messages queued in direction `dir`.
    pub fn queued(&self, dir: Dir) -> usize {
        self.queues[dir as usize].len()
    }
}

/// Every open connection, and the partition if any.
#[derive(Debug, Clone, Default)]
pub struct Network {
    conns: BTreeMap<ConnId, Connection>,
    next_id: ConnId,
    /// Side of each node while a partition is in force.
    partition: Option<Vec<bool>>,
}

impl Network {
    /// A network with no connections and no partition.
    pub fn new() -> Network {
        Network::default()
    }

    /// Whether `a` and `b` can talk (no partition between them).
    pub fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        match &self.partition {
            None => true,
            Some(side) => side_of(side, a) == side_of(side, b),
        }
    }

    /// The partition in force: the side of every node (index = id - 1).
    pub fn partition(&self) -> Option<&[bool]> {
        self.partition.as_deref()
    }

    /// Split the nodes: node `i + 1` is on side `side[i]`. Returns the
    /// connections that crossed the split (now closed).
    pub fn split(&mut self, side: Vec<bool>) -> Vec<(ConnId, Connection)> {
        self.partition = Some(side);
        let crossing: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !self.reachable(c.leader, c.follower))
            .map(|(&id, _)| id)
            .collect();
        crossing
            .into_iter()
            .filter_map(|id| self.close(id).map(|c| (id, c)))
            .collect()
    }

    /// Remove the partition.
    pub fn heal(&mut self) {
        self.partition = None;
    }

    /// Open a connection from `leader` (in `epoch`) to `follower`, whose
    /// `Challenge` will carry `follower_nonce`.
    pub fn open(
        &mut self,
        leader: NodeId,
        follower: NodeId,
        epoch: u64,
        follower_nonce: [u8; NONCE_LEN],
    ) -> ConnId {
        self.next_id += 1;
        let id = self.next_id;
        self.conns.insert(
            id,
            Connection {
                leader,
                follower,
                epoch,
                follower_nonce,
                queues: [VecDeque::new(), VecDeque::new()],
            },
        );
        id
    }

    /// The connection `id`, if open.
    pub fn get(&self, id: ConnId) -> Option<&Connection> {
        self.conns.get(&id)
    }

    /// Queue `msg` on `id` in direction `dir`, to arrive no earlier than
    /// `at` and never before a message queued earlier (FIFO). Returns the
    /// delivery time, or `None` when the connection is closed.
    pub fn send(&mut self, id: ConnId, dir: Dir, msg: Msg, at: u64) -> Option<u64> {
        let c = self.conns.get_mut(&id)?;
        let q = &mut c.queues[dir as usize];
        let at = q.back().map_or(at, |&(last, _)| at.max(last));
        q.push_back((at, msg));
        Some(at)
    }

    /// Take the next message in direction `dir` of `id`.
    pub fn pop(&mut self, id: ConnId, dir: Dir) -> Option<Msg> {
        self.conns.get_mut(&id)?.queues[dir as usize]
            .pop_front()
            .map(|(_, m)| m)
    }

    /// Close `id`, dropping whatever was in flight.
    pub fn close(&mut self, id: ConnId) -> Option<Connection> {
        self.conns.remove(&id)
    }

    /// Every open connection.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, &Connection)> {
        self.conns.iter().map(|(&id, c)| (id, c))
    }

    /// Open connections with `node` at either end.
    pub fn connections_of(&self, node: NodeId) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.leader == node || c.follower == node)
            .map(|(&id, _)| id)
            .collect()
    }
}

fn side_of(side: &[bool], node: NodeId) -> bool {
    usize::try_from(node)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| side.get(i).copied())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_even_with_shorter_later_latency() {
        let mut n = Network::new();
        let c = n.open(1, 2, 1, [0; NONCE_LEN]);
        assert_eq!(
            n.send(c, Dir::ToFollower, Msg::Ack { offset: 1 }, 50),
            Some(50)
        );
        assert_eq!(
            n.send(c, Dir::ToFollower, Msg::Ack { offset: 2 }, 10),
            Some(50)
        );
        assert_eq!(n.pop(c, Dir::ToFollower), Some(Msg::Ack { offset: 1 }));
        assert_eq!(n.pop(c, Dir::ToFollower), Some(Msg::Ack { offset: 2 }));
    }

    #[test]
    fn partition_closes_crossing_connections() {
        let mut n = Network::new();
        let a = n.open(1, 2, 1, [0; NONCE_LEN]);
        let b = n.open(1, 3, 1, [0; NONCE_LEN]);
        let closed = n.split(vec![true, true, false]);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].0, b);
        assert!(n.get(a).is_some());
        assert!(!n.reachable(1, 3));
        n.heal();
        assert!(n.reachable(1, 3));
    }
}
