//! One follower's link, as the leader sees it.
//!
//! The states are named, as raft-rs names them:
//!
//! ```text
//! Connecting ──connect──▶ Handshaking ──match──▶ Probing ──first ack──▶ Streaming
//!                              └──behind log start──▶ Snapshotting ──Position──▶ (decide again)
//! any state ──disconnect──▶ Connecting (resend from the acked offset)
//! ```
//!
//! In `Probing` one batch is in flight until the follower confirms the match
//! point; in `Streaming` batches are pipelined up to the window of unacked
//! bytes and entries. Acks are cumulative; an ack that does not advance the
//! acked offset is stale and ignored ([`AckOutcome::Stale`]); one that claims
//! more than was sent is ignored too and reported ([`AckOutcome::Beyond`]).

use std::collections::VecDeque;

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// No connection; waiting for the backoff delay or the TCP connect.
    Connecting,
    /// Connected; Challenge / Hello / Welcome (and any Truncate) in progress.
    Handshaking,
    /// The start point is known; one batch in flight until it is acked.
    Probing,
    /// Pipelining batches up to the window.
    Streaming,
    /// Sending a snapshot to a follower behind the leader's log start.
    Snapshotting,
}

impl LinkState {
    /// Lower-case name for logs and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Handshaking => "handshaking",
            LinkState::Probing => "probing",
            LinkState::Streaming => "streaming",
            LinkState::Snapshotting => "snapshotting",
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch sent and not yet acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inflight {
    last_offset: u64,
    entries: usize,
    bytes: usize,
}

/// What an ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The acked offset moved from `from` to `to`.
    Advanced {
        /// Acked offset before.
        from: u64,
        /// Acked offset now.
        to: u64,
    },
    /// Nothing new (a duplicate or older ack): ignored.
    Stale,
    /// The ack claims an offset that was never sent on this connection:
    /// ignored, and worth a warning.
    Beyond {
        /// Highest offset sent.
        sent: u64,
    },
}

/// Leader-side replication progress of one follower.
#[derive(Debug, Clone)]
pub struct LinkProgress {
    state: LinkState,
    next_offset: u64,
    acked_offset: u64,
    inflight: VecDeque<Inflight>,
    inflight_bytes: usize,
    inflight_entries: usize,
    window_bytes: usize,
    window_entries: usize,
    connections: u64,
}

impl LinkProgress {
    /// A link that has never connected, with the given window.
    pub fn new(window_bytes: usize, window_entries: usize) -> LinkProgress {
        LinkProgress {
            state: LinkState::Connecting,
            next_offset: 1,
            acked_offset: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            inflight_entries: 0,
            window_bytes,
            window_entries: window_entries.max(1),
            connections: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Next offset to send.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Highest offset the follower confirmed durable (on this or an earlier
    /// connection; re-derived at each handshake).
    pub fn acked_offset(&self) -> u64 {
        self.acked_offset
    }

    /// Bytes sent and not acked.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    /// Entries sent and not acked.
    pub fn inflight_entries(&self) -> usize {
        self.inflight_entries
    }

    /// Connections made after the first one.
    pub fn reconnects(&self) -> u64 {
        self.connections.saturating_sub(1)
    }

    /// The TCP connection is up; the handshake starts.
    pub fn on_connected(&mut self) {
        self.connections += 1;
        self.state = LinkState::Handshaking;
        self.clear_inflight();
    }

    /// The connection dropped or timed out: back to `Connecting`; anything in
    /// flight will be resent from the acked offset after the next handshake.
    pub fn on_disconnected(&mut self) {
        self.state = LinkState::Connecting;
        self.clear_inflight();
    }

    /// The handshake found that the follower's log matches up to
    /// `matched_offset`: start sending at `matched_offset + 1`, one batch at a
    /// time until the first ack.
    pub fn on_matched(&mut self, matched_offset: u64) {
        self.acked_offset = matched_offset;
        self.next_offset = matched_offset + 1;
        self.clear_inflight();
        self.state = LinkState::Probing;
    }

    /// The follower needs a snapshot first.
    pub fn on_snapshot_started(&mut self) {
        self.clear_inflight();
        self.state = LinkState::Snapshotting;
    }

    /// Whether a batch may be sent now: `Probing` with nothing in flight, or
    /// `Streaming` with room in the window.
    pub fn can_send(&self) -> bool {
        match self.state {
            LinkState::Probing => self.inflight.is_empty(),
            LinkState::Streaming => {
                self.inflight_bytes < self.window_bytes
                    && self.inflight_entries < self.window_entries
            }
            _ => false,
        }
    }

    /// Room left in the window, in (bytes, entries). A batch may use all the
    /// entry room and should stay within the byte room (a single record is
    /// always allowed when the window is empty).
    pub fn room(&self) -> (usize, usize) {
        (
            self.window_bytes.saturating_sub(self.inflight_bytes),
            self.window_entries.saturating_sub(self.inflight_entries),
        )
    }

    /// A batch ending at `last_offset` with `entries` entries and `bytes`
    /// bytes was written to the socket.
    pub fn on_sent(&mut self, last_offset: u64, entries: usize, bytes: usize) {
        if entries == 0 || last_offset < self.next_offset {
            return;
        }
        self.inflight.push_back(Inflight {
            last_offset,
            entries,
            bytes,
        });
        self.inflight_bytes += bytes;
        self.inflight_entries += entries;
        self.next_offset = last_offset + 1;
    }

    /// A cumulative ack for `offset` arrived.
    pub fn on_ack(&mut self, offset: u64) -> AckOutcome {
        if offset <= self.acked_offset {
            return AckOutcome::Stale;
        }
        let sent = self.next_offset.saturating_sub(1);
        if offset > sent {
            return AckOutcome::Beyond { sent };
        }
        let from = self.acked_offset;
        self.acked_offset = offset;
        while let Some(front) = self.inflight.front() {
            if front.last_offset > offset {
                break;
            }
            self.inflight_bytes -= front.bytes;
            self.inflight_entries -= front.entries;
            self.inflight.pop_front();
        }
        if self.state == LinkState::Probing {
            self.state = LinkState::Streaming;
        }
        AckOutcome::Advanced { from, to: offset }
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.inflight_entries = 0;
        // Resend from the acked point.
        self.next_offset = self.acked_offset + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_then_stream_within_window() {
        let mut l = LinkProgress::new(1000, 10);
        assert_eq!(l.state(), LinkState::Connecting);
        assert!(!l.can_send());
        l.on_connected();
        assert_eq!(l.state(), LinkState::Handshaking);
        assert!(!l.can_send());
        l.on_matched(5);
        assert_eq!(l.next_offset(), 6);
        assert!(l.can_send());
        l.on_sent(7, 2, 200);
        assert!(!l.can_send(), "probing allows one batch in flight");
        assert_eq!(l.on_ack(7), AckOutcome::Advanced { from: 5, to: 7 });
        assert_eq!(l.state(), LinkState::Streaming);
        l.on_sent(10, 3, 600);
        assert!(l.can_send());
        l.on_sent(12, 2, 400);
        assert!(!l.can_send(), "window of 1000 bytes is full");
        assert_eq!(l.inflight_bytes(), 1000);
        assert_eq!(l.on_ack(9), AckOutcome::Advanced { from: 7, to: 9 });
        assert_eq!(
            l.inflight_bytes(),
            1000,
            "partial ack of a batch frees nothing"
        );
        assert_eq!(l.on_ack(10), AckOutcome::Advanced { from: 9, to: 10 });
        assert_eq!(l.inflight_bytes(), 400);
        assert_eq!(l.on_ack(10), AckOutcome::Stale);
        assert_eq!(l.on_ack(3), AckOutcome::Stale);
        assert_eq!(l.on_ack(99), AckOutcome::Beyond { sent: 12 });
        assert_eq!(l.acked_offset(), 10);
    }

    #[test]
    fn disconnect_resends_from_acked() {
        let mut l = LinkProgress::new(1 << 20, 100);
        l.on_connected();
        l.on_matched(0);
        l.on_sent(4, 4, 100);
        l.on_ack(2);
        l.on_sent(8, 4, 100);
        l.on_disconnected();
        assert_eq!(l.state(), LinkState::Connecting);
        assert_eq!(l.inflight_bytes(), 0);
        assert_eq!(l.next_offset(), 3);
        l.on_connected();
        assert_eq!(l.reconnects(), 1);
        l.on_matched(2);
        assert_eq!(l.next_offset(), 3);
    }

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Ev {
        Connect,
        Match(u64),
        Send(usize, usize),
        Ack(u64),
        Disconnect,
        Snapshot,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            1 => Just(Ev::Connect),
            1 => (0u64..50).prop_map(Ev::Match),
            6 => (1usize..20, 1usize..400).prop_map(|(n, b)| Ev::Send(n, b)),
            5 => (0u64..120).prop_map(Ev::Ack),
            1 => Just(Ev::Disconnect),
            1 => Just(Ev::Snapshot),
        ]
    }

    proptest! {
        #[test]
        fn randomized_events_keep_window_and_ack_invariants(events in proptest::collection::vec(ev(), 1..200)) {
            const WB: usize = 1000;
            const WE: usize = 30;
            let mut l = LinkProgress::new(WB, WE);
            for e in events {
                let acked_before = l.acked_offset();
                match e {
                    Ev::Connect => l.on_connected(),
                    Ev::Match(m) => {
                        if l.state() == LinkState::Handshaking {
                            l.on_matched(m);
                        }
                    }
                    Ev::Send(n, bytes) => {
                        // The actor only sends what `can_send` and `room` allow
                        // (one record may always go into an empty window).
                        if l.can_send() {
                            let (room_b, room_e) = l.room();
                            let n = n.min(room_e).max(1);
                            let bytes = if l.inflight_entries() == 0 { bytes } else { bytes.min(room_b) };
                            l.on_sent(l.next_offset() + n as u64 - 1, n, bytes);
                        }
                    }
                    Ev::Ack(o) => {
                        let sent = l.next_offset() - 1;
                        match l.on_ack(o) {
                            AckOutcome::Advanced { from, to } => {
                                prop_assert_eq!(from, acked_before);
                                prop_assert_eq!(to, o);
                                prop_assert!(o <= sent);
                            }
                            AckOutcome::Stale => {
                                prop_assert!(o <= acked_before);
                                prop_assert_eq!(l.acked_offset(), acked_before);
                            }
                            AckOutcome::Beyond { sent: s } => {
                                prop_assert_eq!(s, sent);
                                prop_assert!(o > sent);
                                prop_assert_eq!(l.acked_offset(), acked_before);
                            }
                        }
                    }
                    Ev::Disconnect => l.on_disconnected(),
                    Ev::Snapshot => {
                        if l.state() == LinkState::Handshaking {
                            l.on_snapshot_started();
                        }
                    }
                }
                // The window bounds what is in flight (a batch here is at
                // most 400 B, less than the window).
                prop_assert!(l.inflight_entries() <= WE);
                prop_assert!(l.inflight_bytes() <= WB, "in flight {} > window {}", l.inflight_bytes(), WB);
                // Nothing is in flight without a connection, and the next
                // offset always follows what was acked or sent.
                if matches!(l.state(), LinkState::Connecting | LinkState::Handshaking | LinkState::Snapshotting) {
                    prop_assert_eq!(l.inflight_entries(), 0);
                    prop_assert_eq!(l.inflight_bytes(), 0);
                    prop_assert_eq!(l.next_offset(), l.acked_offset() + 1);
                }
                prop_assert!(l.next_offset() > l.acked_offset());
                // Only Probing and Streaming may send.
                if l.can_send() {
                    prop_assert!(matches!(l.state(), LinkState::Probing | LinkState::Streaming));
                }
            }
        }
    }
}
