//! The TCP streams between nodes: a message queued with a random latency
//! and delivered in order (or stalled while its receiver is deaf), and a
//! connection closed by both ends or by one (half-open until the FIN
//! reaches the other end).
//!
//! Its own file because the stream and close rules are one concern of their own.

use super::*;

impl Simulation {
    /// Queue `msg` on `conn` with a random latency.
    pub(super) fn send(&mut self, conn: ConnId, dir: Dir, msg: net::Msg) {
        let latency = if self.rng.chance(900) {
            self.rng.range(MS / 5, 3 * MS)
        } else {
            self.rng.range(5 * MS, 40 * MS)
        };
        if let Some(at) = self.net.send(conn, dir, msg, self.now + latency) {
            self.seq += 1;
            self.queue
                .push(Reverse((at, self.seq, Ev::Deliver { conn, dir })));
        }
    }

    pub(super) fn deliver(&mut self, conn: ConnId, dir: Dir) -> bool {
        let Some(c) = self.net.get(conn) else {
            return false;
        };
        let (leader, follower) = (c.leader, c.follower);
        if c.queued(dir) > 0 && !self.net.flows(conn, dir) {
            // The receiver is deaf: the stream stalls, the sender
            // retransmits.
            self.report.blackholed += 1;
            let delay = self.retransmit_delay();
            self.schedule(delay, Ev::Deliver { conn, dir });
            return false;
        }
        let Some(msg) = self.net.pop(conn, dir) else {
            return false;
        };
        match dir {
            Dir::ToFollower => {
                self.log(format!(
                    "n{follower} <- n{leader} #{conn} {}",
                    net::describe(&msg)
                ));
                self.follower_receive(conn, msg);
            }
            Dir::ToLeader => {
                self.log(format!(
                    "n{leader} <- n{follower} #{conn} {}",
                    net::describe(&msg)
                ));
                self.leader_receive(conn, msg);
            }
        }
        true
    }

    /// Close `conn` and tell both ends (those still open).
    pub(super) fn close(&mut self, conn: ConnId) {
        let Some(c) = self.net.close(conn) else {
            self.sessions.remove(&conn);
            return;
        };
        self.log(format!("#{conn} n{}→n{} closed", c.leader, c.follower));
        self.ends_closed(conn, &c);
    }

    /// Tell the ends of the closed `conn` that were still open.
    pub(super) fn ends_closed(&mut self, conn: ConnId, c: &net::Connection) {
        if c.closed_by != Some(c.follower) {
            self.sessions.remove(&conn);
        }
        if c.closed_by != Some(c.leader) {
            self.leader_link_down(c.leader, c.follower, conn);
        }
        if c.closed_by != Some(c.follower) {
            self.session_gone(c.follower, conn);
        }
    }

    /// `closer` closes its end of `conn`. The other end hears of it when
    /// the FIN reaches it: now, or, if it is deaf, once it hears again (or
    /// it closes on its own timeout first).
    pub(super) fn close_by(&mut self, conn: ConnId, closer: NodeId) {
        let Some(c) = self.net.get(conn) else {
            return;
        };
        if c.closed_by == Some(closer) {
            return;
        }
        let (leader, follower, other) = (c.leader, c.follower, c.peer_of(closer));
        // A paused end reads the FIN when it wakes, after the data before it.
        if c.closed_by.is_some() || (self.net.delivers(closer, other) && !self.paused(other)) {
            self.close(conn);
            return;
        }
        self.net.half_close(conn, closer);
        self.log(format!(
            "#{conn} n{leader}→n{follower} closed by n{closer}, half-open: n{other} does not hear the FIN"
        ));
        if closer == leader {
            self.leader_link_down(leader, follower, conn);
        } else {
            self.sessions.remove(&conn);
            self.session_gone(follower, conn);
        }
        let delay = self.retransmit_delay();
        self.schedule(delay, Ev::Fin { conn });
    }

    /// The FIN of half-open `conn` is (re)sent.
    pub(super) fn fin(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.net.get(conn) else {
            return false;
        };
        let Some(closer) = c.closed_by else {
            return false;
        };
        if !self.net.delivers(closer, c.peer_of(closer)) {
            self.report.blackholed += 1;
            let delay = self.retransmit_delay();
            self.schedule(delay, Ev::Fin { conn });
            return false;
        }
        self.close(conn);
        true
    }
}
