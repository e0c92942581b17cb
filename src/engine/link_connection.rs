//! The link's connection: connecting, backoff and wake-ups, a dropped
//! connection, and the handshake's outcome (a failed handshake, and the
//! start point picked from the follower's log end).
//!
//! A child module of `link.rs` (it sees the engine's private state),
//! separate because the connection's lifecycle is one concern of its own.

use std::time::Instant;

use crate::frame::{Frame, RejectReason};
use crate::handshake::{HandshakeError, Nonce};
use crate::replication::StartPoint;

use super::{Conn, FollowerLinkEngine, LinkAction, LinkReport, LogView, Phase, SnapshotSend};

impl FollowerLinkEngine {
    pub(super) fn connect(&mut self, now: Instant) {
        self.gen += 1;
        self.conn = Conn::Opening;
        self.last_attempt = Some(now);
        self.actions
            .push_back(LinkAction::Connect { gen: self.gen });
    }

    pub(super) fn schedule_reconnect(&mut self, now: Instant) {
        let jitter = self.jitter();
        let delay = self.backoff.next_delay(jitter);
        tracing::debug!(
            node = self.node,
            peer = self.peer,
            delay_ms = delay.as_millis() as u64,
            "reconnecting after backoff"
        );
        self.conn = Conn::Idle {
            retry_at: Some(now + delay),
        };
    }

    pub(super) fn on_tick(&mut self, now: Instant) {
        match self.conn {
            Conn::Idle { retry_at: Some(at) } if now >= at => self.connect(now),
            Conn::Open(_)
                if now.saturating_duration_since(self.last_heard) > self.silence_limit() =>
            {
                self.disconnect(now, "follower silent past the session timeout");
            }
            _ => {}
        }
    }

    /// Retry now instead of waiting out the backoff, unless the last attempt
    /// was less than a heartbeat interval ago: then when that is over.
    pub(super) fn on_wake(&mut self, now: Instant) {
        if !matches!(self.conn, Conn::Idle { .. }) {
            return;
        }
        let at = self
            .last_attempt
            .map_or(now, |t| (t + self.config.heartbeat_interval).max(now));
        tracing::debug!(
            node = self.node,
            peer = self.peer,
            wait_ms = at.saturating_duration_since(now).as_millis() as u64,
            "woken: reconnecting"
        );
        if at <= now {
            self.connect(now);
        } else {
            self.conn = Conn::Idle { retry_at: Some(at) };
        }
    }

    pub(super) fn on_connected(&mut self, now: Instant, nonce: Nonce) {
        tracing::debug!(
            node = self.node,
            peer = self.peer,
            "connected; awaiting challenge"
        );
        self.conn = Conn::Open(Phase::AwaitChallenge);
        self.nonce = Some(nonce);
        self.progress.on_connected();
        self.acked_on_conn = false;
        self.reading = false;
        self.loaded.clear();
        self.snapshot = SnapshotSend::None;
        self.control.clear();
        self.sent_commit = 0;
        self.last_heard = now;
        self.last_sent = now;
        self.hello_sent = None;
        self.probe_seq = 0;
        self.last_probe = now;
        self.probes.clear();
        self.answered_since = None;
        self.probe_wanted = false;
    }

    /// Drop the connection (if any) and reconnect after the backoff.
    pub(super) fn disconnect(&mut self, now: Instant, reason: &str) {
        if !matches!(self.conn, Conn::Open(_)) {
            return;
        }
        tracing::info!(
            node = self.node,
            peer = self.peer,
            epoch = self.epoch,
            offset = self.progress.acked_offset(),
            reason,
            "follower link down"
        );
        self.actions.push_back(LinkAction::Close { gen: self.gen });
        self.progress.on_disconnected();
        self.reading = false;
        self.loaded.clear();
        self.snapshot = SnapshotSend::None;
        self.control.clear();
        self.nonce = None;
        if std::mem::take(&mut self.reported_connected) {
            self.actions
                .push_back(LinkAction::Report(LinkReport::Disconnected));
        }
        self.schedule_reconnect(now);
    }

    pub(super) fn handshake_failed(&mut self, now: Instant, e: HandshakeError) {
        if let HandshakeError::Rejected {
            reason: RejectReason::StaleEpoch | RejectReason::EpochConflict,
            epoch,
            leader,
            proven,
        } = &e
        {
            self.actions
                .push_back(LinkAction::Report(LinkReport::Fenced {
                    epoch: *epoch,
                    leader: *leader,
                    proven: *proven,
                }));
        }
        tracing::warn!(node = self.node, peer = self.peer, epoch = self.epoch, error = %e, "handshake with follower failed");
        self.disconnect(now, "handshake failed");
    }

    /// Pick the start point for a follower whose log ends at
    /// `(last_offset, last_epoch)`.
    pub(super) fn decide(
        &mut self,
        now: Instant,
        last_offset: u64,
        last_epoch: u64,
        log: &dyn LogView,
    ) {
        let start = log.start_point(last_offset, last_epoch);
        tracing::debug!(
            node = self.node,
            peer = self.peer,
            offset = last_offset,
            epoch = last_epoch,
            ?start,
            "start point"
        );
        match start {
            StartPoint::Matched { matched } => {
                self.conn = Conn::Open(Phase::Streaming);
                self.progress.on_matched(matched);
                self.loaded.clear();
                self.reported_connected = true;
                self.actions
                    .push_back(LinkAction::Report(LinkReport::Connected { matched }));
            }
            StartPoint::Truncate { to } => {
                tracing::info!(
                    node = self.node,
                    peer = self.peer,
                    offset = to,
                    "follower's log diverged; truncating it"
                );
                self.conn = Conn::Open(Phase::AwaitPosition);
                self.control.push_back(Frame::Truncate { to });
            }
            StartPoint::Snapshot => self.start_snapshot(now),
        }
    }
}
