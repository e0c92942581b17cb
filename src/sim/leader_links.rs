//! The leader's links, driven: each `FollowerLinkEngine` is fed its inputs
//! (ticks, log progress, frames, WAL reads, a closed connection), what it
//! sends goes out on the simulated connection, and its actions (connect,
//! close, read the WAL, load the snapshot, report) are carried out.
//!
//! A child module of `leader.rs`, separate because driving the links is
//! one concern of its own.

use crate::command::NodeId;
use crate::engine::election::ElectionInput;
use crate::engine::{LeaderInput, LinkAction, LinkInput, LinkReport, LogProgress, ReadFailure};
use crate::frame::NONCE_LEN;

use super::{take_records, SimLog, WalReadDone};
use crate::sim::check::Invariant;
use crate::sim::net::{ConnId, Dir, Msg};
use crate::sim::node::{LinkSim, Role};
use crate::sim::{Ev, PlantedBug, Simulation, MS};

impl Simulation {
    pub(super) fn link_peers(&self, id: NodeId) -> Vec<NodeId> {
        match &self.node(id).role {
            Role::Leader(l) => l.links.keys().copied().collect(),
            Role::Follower => Vec::new(),
        }
    }

    /// Run `f` on the link `id` → `peer` with the leader's log as the link
    /// sees it; `None` if `id` no longer leads or has no such link.
    pub(super) fn with_link<R>(
        &mut self,
        id: NodeId,
        peer: NodeId,
        f: impl FnOnce(&mut LinkSim, &SimLog<'_>) -> R,
    ) -> Option<R> {
        let node = self.node_mut(id);
        let view = SimLog {
            index: &node.index,
            records: node.disk.records(),
        };
        let Role::Leader(l) = &mut node.role else {
            return None;
        };
        Some(f(l.links.get_mut(&peer)?, &view))
    }

    pub(super) fn link_mut(&mut self, id: NodeId, peer: NodeId) -> Option<&mut LinkSim> {
        match &mut self.node_mut(id).role {
            Role::Leader(l) => l.links.get_mut(&peer),
            Role::Follower => None,
        }
    }

    /// Where `id`'s log stands, as its links are told.
    pub(super) fn log_progress(&self, id: NodeId) -> Option<LogProgress> {
        let node = self.node(id);
        let Role::Leader(l) = &node.role else {
            return None;
        };
        Some(LogProgress {
            log_end: node.last_offset(),
            durable: node.disk.durable(),
            commit: l.engine.tracker().commit(),
        })
    }

    /// Tell every link where the log stands and let it send, until the
    /// leader's log stops moving (acks move the commit point, which the
    /// links then carry).
    pub(super) fn pump(&mut self, id: NodeId) {
        let mut told = None;
        for _ in 0..8 {
            let Some(progress) = self.log_progress(id) else {
                return;
            };
            if told == Some(progress) {
                return;
            }
            told = Some(progress);
            for peer in self.link_peers(id) {
                self.link_input(id, peer, LinkInput::Progress(progress));
            }
        }
    }

    /// Feed one input to the link `id` → `peer` and carry out what it asks.
    pub(super) fn link_input(&mut self, id: NodeId, peer: NodeId, input: LinkInput) {
        let now = self.clock(id);
        if self
            .with_link(id, peer, |link, view| link.engine.handle(now, input, view))
            .is_none()
        {
            return;
        }
        self.drive_link(id, peer);
    }

    /// Send what the link engine has to send, then carry out its actions,
    /// until it has nothing more.
    pub(super) fn drive_link(&mut self, id: NodeId, peer: NodeId) {
        let now = self.clock(id);
        for _ in 0..64 {
            // Frames: the simulated connection never refuses one.
            loop {
                let next = self.with_link(id, peer, |link, view| {
                    let (conn, _) = link.conn?;
                    Some((conn, link.engine.poll_transmit(now, view)?))
                });
                match next {
                    None => return,
                    Some(None) => break,
                    Some(Some((conn, frame))) => self.send(conn, Dir::ToFollower, frame),
                }
            }
            let Some(action) = self.link_mut(id, peer).and_then(|l| l.engine.poll_action()) else {
                return;
            };
            self.link_action(id, peer, action);
        }
        self.fail(
            Invariant::Protocol,
            format!("n{id} -> n{peer}: the link engine did not settle after 64 actions"),
        );
    }

    pub(super) fn link_action(&mut self, id: NodeId, peer: NodeId, action: LinkAction) {
        let now = self.clock(id);
        let epoch = self.node(id).meta().epoch;
        match action {
            LinkAction::Connect { gen } => {
                // The handshake needs both directions: none to or from a
                // deaf node.
                let input = if self.node(peer).up && self.net.connects(id, peer) {
                    let mut follower_nonce = [0u8; NONCE_LEN];
                    let mut leader_nonce = [0u8; NONCE_LEN];
                    for b in follower_nonce.iter_mut().chain(leader_nonce.iter_mut()) {
                        *b = self.rng.below(256) as u8;
                    }
                    let c = self.net.open(id, peer, epoch, follower_nonce);
                    if let Some(link) = self.link_mut(id, peer) {
                        link.conn = Some((c, gen));
                    }
                    self.log(format!("n{id} -> n{peer}: connect #{c}"));
                    // The follower's listener accepts and challenges.
                    self.follower_accept(c);
                    LinkInput::Connected {
                        gen,
                        nonce: leader_nonce,
                    }
                } else {
                    LinkInput::ConnectFailed {
                        gen,
                        reason: "unreachable".into(),
                    }
                };
                self.with_link(id, peer, |link, view| link.engine.handle(now, input, view));
            }
            LinkAction::Close { gen } => {
                let conn = match self.link_mut(id, peer) {
                    Some(link) => match link.conn {
                        Some((c, g)) if g == gen => {
                            link.conn = None;
                            Some(c)
                        }
                        _ => None,
                    },
                    None => None,
                };
                if let Some(c) = conn {
                    self.close_by(c, id);
                }
            }
            LinkAction::ReadWal {
                gen,
                from,
                max_entries,
                max_bytes,
            } => {
                let latency = self.rng.range(MS / 2, 4 * MS);
                self.schedule(
                    latency,
                    Ev::WalRead(WalReadDone {
                        node: id,
                        peer,
                        epoch,
                        gen,
                        from,
                        max_entries,
                        max_bytes,
                    }),
                );
            }
            LinkAction::LoadSnapshot { .. } => self.fail(
                Invariant::Protocol,
                format!("n{id}: link to n{peer} asked for a snapshot, but no log is compacted"),
            ),
            LinkAction::Report(report) => match report {
                LinkReport::Connected { matched } => {
                    self.log(format!("n{id}: n{peer} matched at {matched}"));
                    self.leader_input(id, LeaderInput::Connected { peer, matched });
                }
                LinkReport::Acked { offset } => {
                    self.leader_input(id, LeaderInput::Acked { peer, offset });
                }
                LinkReport::Heard { since } => {
                    let since = if self.config.bug == Some(PlantedBug::HeardOnArrival) {
                        self.clock(id)
                    } else {
                        since
                    };
                    let heard = ElectionInput::FollowerHeard { peer, since };
                    self.election_input(id, heard);
                }
                LinkReport::Disconnected => {
                    self.leader_input(id, LeaderInput::Disconnected { peer });
                }
                LinkReport::Identified { directory_id } => {
                    // As the real Replicator: kept for the next change.
                    if let Role::Leader(l) = &mut self.node_mut(id).role {
                        if let Some(link) = l.links.get_mut(&peer) {
                            link.directory = directory_id;
                        }
                    }
                }
                LinkReport::Fenced {
                    epoch: theirs,
                    proven,
                    ..
                } => {
                    // As the real Replicator: only a signed refusal is
                    // trusted enough to step down on.
                    if proven && theirs > epoch {
                        self.election_input(id, ElectionInput::HigherEpoch { epoch: theirs });
                    }
                }
            },
        }
    }

    /// The simulated disk answers a link's WAL read.
    pub(in crate::sim) fn wal_read_done(&mut self, read: WalReadDone) {
        let WalReadDone {
            node: id,
            peer,
            epoch,
            gen,
            from,
            max_entries,
            max_bytes,
        } = read;
        let node = self.node(id);
        if !node.up || !node.is_leader() || node.meta().epoch != epoch {
            return;
        }
        let durable = node.disk.durable();
        let result = if from == 0 || from > durable {
            Err(ReadFailure::NotYetWritten)
        } else {
            let upto = &node.disk.records()[from as usize - 1..durable as usize];
            Ok(take_records(upto, max_entries, max_bytes))
        };
        self.link_input(id, peer, LinkInput::WalRead { gen, from, result });
        self.pump(id);
    }

    /// A message from a follower.
    pub(in crate::sim) fn leader_receive(&mut self, conn: ConnId, msg: Msg) {
        let Some(c) = self.net.get(conn) else { return };
        let (id, peer) = (c.leader, c.follower);
        let gen = match &self.node(id).role {
            Role::Leader(l) => match l.links.get(&peer).and_then(|k| k.conn) {
                Some((c, g)) if c == conn => g,
                _ => return,
            },
            Role::Follower => return,
        };
        self.link_input(id, peer, LinkInput::Frame { gen, frame: msg });
        self.pump(id);
    }

    /// `conn` from `id` to `peer` is gone: the link engine reconnects after
    /// its backoff and tells the leader engine.
    pub(in crate::sim) fn leader_link_down(&mut self, id: NodeId, peer: NodeId, conn: ConnId) {
        let gen = match self.link_mut(id, peer) {
            Some(link) => match link.conn {
                Some((c, g)) if c == conn => {
                    link.conn = None;
                    g
                }
                _ => return,
            },
            None => return,
        };
        if self.node(id).up {
            self.link_input(
                id,
                peer,
                LinkInput::Closed {
                    gen,
                    reason: "connection closed".into(),
                },
            );
            self.pump(id);
        }
    }
}
