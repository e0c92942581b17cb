//! The simulated network: one connection per leader → follower link, each a
//! pair of FIFO queues with per-message latency; connections can be cut, a
//! partition splits the nodes into two sides that cannot reach each other,
//! and a one-way partition makes nodes *deaf*: they still send, but nothing
//! reaches them.
//!
//! A connection is a TCP stream, so a direction that cannot deliver (its
//! receiver is deaf) loses nothing and reorders nothing: its data waits at
//! the head of the stream and the sender retransmits it (the simulation
//! retries the delivery) until the direction heals or an end gives up on
//! the silence and closes. A close is a FIN: if it cannot reach the other
//! end, that end stays open, half-open, until the FIN gets through or it
//! closes on its own timeout. The connection's handshake needs both
//! directions, so no connection opens to or from a deaf node.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
        Frame::Heartbeat { commit, seq } => format!("Heartbeat(commit {commit}, seq {seq})"),
        Frame::Ack { offset, seq } => format!("Ack({offset}, seq {seq})"),
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
    /// The end that closed while its FIN could not reach the other end:
    /// the connection is half-open, the other end still has it.
    pub closed_by: Option<NodeId>,
    queues: [VecDeque<(u64, Msg)>; 2],
}

impl Connection {
    /// Messages queued in direction `dir`.
    pub fn queued(&self, dir: Dir) -> usize {
        self.queues[dir as usize].len()
    }

    /// The sending and the receiving end of direction `dir`.
    pub fn ends(&self, dir: Dir) -> (NodeId, NodeId) {
        match dir {
            Dir::ToFollower => (self.leader, self.follower),
            Dir::ToLeader => (self.follower, self.leader),
        }
    }

    /// The end other than `node`.
    pub fn peer_of(&self, node: NodeId) -> NodeId {
        if node == self.leader {
            self.follower
        } else {
            self.leader
        }
    }
}

/// Every open connection, the partition if any, and the deaf nodes.
#[derive(Debug, Clone, Default)]
pub struct Network {
    conns: BTreeMap<ConnId, Connection>,
    next_id: ConnId,
    /// Side of each node while a partition is in force.
    partition: Option<Vec<bool>>,
    /// Nodes that can send but not receive (a one-way partition).
    deaf: BTreeSet<NodeId>,
    /// Two nodes that cannot reach each other, while both reach everyone
    /// else (the transfer cut).
    cut: Option<(NodeId, NodeId)>,
}

impl Network {
    /// A network with no connections and no partition.
    pub fn new() -> Network {
        Network::default()
    }

    /// Whether no partition separates `a` and `b` (deafness aside).
    pub fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        if self.cut == Some((a.min(b), a.max(b))) {
            return false;
        }
        match &self.partition {
            None => true,
            Some(side) => side_of(side, a) == side_of(side, b),
        }
    }

    /// Whether what `from` sends reaches `to` now: no partition between
    /// them and `to` not deaf.
    pub fn delivers(&self, from: NodeId, to: NodeId) -> bool {
        self.reachable(from, to) && !self.deaf.contains(&to)
    }

    /// Whether a connection between `a` and `b` can be set up: its
    /// handshake needs both directions.
    pub fn connects(&self, a: NodeId, b: NodeId) -> bool {
        self.delivers(a, b) && self.delivers(b, a)
    }

    /// Make `node` deaf: from now on nothing reaches it, what it sends
    /// still arrives.
    pub fn deafen(&mut self, node: NodeId) {
        self.deaf.insert(node);
    }

    /// The deaf nodes.
    pub fn deaf(&self) -> &BTreeSet<NodeId> {
        &self.deaf
    }

    /// Every deaf node hears again. Returns the nodes that were deaf.
    pub fn heal_deaf(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.deaf).into_iter().collect()
    }

    /// Whether data in direction `dir` of `id` arrives now (false for a
    /// closed connection).
    pub fn flows(&self, id: ConnId, dir: Dir) -> bool {
        self.conns.get(&id).is_some_and(|c| {
            let (from, to) = c.ends(dir);
            c.closed_by != Some(to) && self.delivers(from, to)
        })
    }

    /// The partition in force: the side of every node (index = id - 1).
    pub fn partition(&self) -> Option<&[bool]> {
        self.partition.as_deref()
    }

    /// Split the nodes: node `i + 1` is on side `side[i]`. Returns the
    /// connections that crossed the split (now closed).
    pub fn split(&mut self, side: Vec<bool>) -> Vec<(ConnId, Connection)> {
        self.partition = Some(side);
        self.close_unreachable()
    }

    /// Cut `a` and `b` off from each other only. Returns the connections
    /// between them (now closed).
    pub fn cut_pair(&mut self, a: NodeId, b: NodeId) -> Vec<(ConnId, Connection)> {
        self.cut = Some((a.min(b), a.max(b)));
        self.close_unreachable()
    }

    /// Close every connection whose ends can no longer reach each other;
    /// return them.
    fn close_unreachable(&mut self) -> Vec<(ConnId, Connection)> {
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

    /// The two nodes cut off from each other, if any.
    pub fn pair_cut(&self) -> Option<(NodeId, NodeId)> {
        self.cut
    }

    /// Remove the cut between two nodes.
    pub fn heal_cut(&mut self) {
        self.cut = None;
    }

    /// Remove the partition.
    pub fn heal_partition(&mut self) {
        self.partition = None;
    }

    /// Remove the partition and every one-way partition.
    pub fn heal(&mut self) {
        self.heal_partition();
        self.heal_cut();
        self.heal_deaf();
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
                closed_by: None,
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
    /// delivery time, or `None` when the connection is closed (at either
    /// end: a half-open connection's open end sends into the void).
    pub fn send(&mut self, id: ConnId, dir: Dir, msg: Msg, at: u64) -> Option<u64> {
        let c = self.conns.get_mut(&id)?;
        if c.closed_by.is_some() {
            return None;
        }
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

    /// `closer` closed its end of `id` but its FIN cannot reach the other
    /// end, which keeps the connection: half-open. What was in flight
    /// towards the closer is dropped (it will not read it); what it sent
    /// before the FIN stays, to be read before the FIN once the other end
    /// hears again (or wakes). Returns false if `id` is not open or
    /// already half-open.
    pub fn half_close(&mut self, id: ConnId, closer: NodeId) -> bool {
        match self.conns.get_mut(&id) {
            Some(c) if c.closed_by.is_none() => {
                c.closed_by = Some(closer);
                let towards_closer = if closer == c.leader {
                    Dir::ToLeader
                } else {
                    Dir::ToFollower
                };
                c.queues[towards_closer as usize].clear();
                true
            }
            _ => false,
        }
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
            n.send(c, Dir::ToFollower, Msg::Ack { offset: 1, seq: 0 }, 50),
            Some(50)
        );
        assert_eq!(
            n.send(c, Dir::ToFollower, Msg::Ack { offset: 2, seq: 0 }, 10),
            Some(50)
        );
        assert_eq!(
            n.pop(c, Dir::ToFollower),
            Some(Msg::Ack { offset: 1, seq: 0 })
        );
        assert_eq!(
            n.pop(c, Dir::ToFollower),
            Some(Msg::Ack { offset: 2, seq: 0 })
        );
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

    #[test]
    fn a_deaf_node_sends_but_does_not_receive() {
        let mut n = Network::new();
        let c = n.open(1, 2, 1, [0; NONCE_LEN]);
        assert!(n.flows(c, Dir::ToFollower) && n.flows(c, Dir::ToLeader));
        n.deafen(2);
        // Datagrams and stream data: to 2 blocked, from 2 delivered.
        assert!(!n.delivers(1, 2) && n.delivers(2, 1));
        assert!(!n.flows(c, Dir::ToFollower));
        assert!(n.flows(c, Dir::ToLeader));
        // The connection stays open, its data waits in order.
        assert_eq!(
            n.send(c, Dir::ToFollower, Msg::Ack { offset: 1, seq: 0 }, 5),
            Some(5)
        );
        assert_eq!(
            n.send(c, Dir::ToFollower, Msg::Ack { offset: 2, seq: 0 }, 1),
            Some(5)
        );
        assert!(n.get(c).is_some());
        // No new connection either way: the handshake needs both ways.
        assert!(!n.connects(1, 2) && !n.connects(2, 1));
        assert!(n.connects(1, 3));
        assert_eq!(n.heal_deaf(), vec![2]);
        assert!(n.flows(c, Dir::ToFollower));
        assert_eq!(
            n.pop(c, Dir::ToFollower),
            Some(Msg::Ack { offset: 1, seq: 0 })
        );
        assert_eq!(
            n.pop(c, Dir::ToFollower),
            Some(Msg::Ack { offset: 2, seq: 0 })
        );
    }

    #[test]
    fn a_half_open_connection_carries_nothing() {
        let mut n = Network::new();
        let c = n.open(1, 2, 1, [0; NONCE_LEN]);
        n.send(c, Dir::ToLeader, Msg::Ack { offset: 1, seq: 0 }, 5);
        n.deafen(2);
        assert!(n.half_close(c, 1));
        assert!(!n.half_close(c, 2), "already half-open");
        assert_eq!(n.get(c).and_then(|c| c.closed_by), Some(1));
        assert_eq!(n.pop(c, Dir::ToLeader), None, "in-flight data dropped");
        assert_eq!(
            n.send(c, Dir::ToLeader, Msg::Ack { offset: 2, seq: 0 }, 9),
            None
        );
        assert!(!n.flows(c, Dir::ToLeader));
        assert!(n.close(c).is_some());
    }
}
