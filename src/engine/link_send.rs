//! What the link sends next: `poll_transmit` and the frames it draws from
//! (control frames, probes, snapshot chunks, appends from the in-memory
//! tail or a WAL read), and the loading of a snapshot to send.
//!
//! A child module of `link.rs` (it sees the engine's private state),
//! separate because choosing the next frame is one concern of its own.

use std::time::Instant;

use crate::frame::Frame;
use crate::record::{concat_records, Record};

use super::{
    Conn, FollowerLinkEngine, LinkAction, LogView, Phase, ReadFailure, SnapshotBytes, SnapshotSend,
    MAX_PROBES_IN_FLIGHT,
};

impl FollowerLinkEngine {
    /// The next frame to write. Call only while the connection's writer has
    /// room for one frame: what this returns counts as sent.
    pub fn poll_transmit(&mut self, now: Instant, log: &dyn LogView) -> Option<Frame> {
        if !matches!(self.conn, Conn::Open(_)) {
            return None;
        }
        if let Some(frame) = self.control.pop_front() {
            return Some(self.sent(now, frame));
        }
        if let Some(frame) = self.next_snapshot_chunk() {
            return Some(self.sent(now, frame));
        }
        if self.conn != Conn::Open(Phase::Streaming) {
            return None;
        }
        // A probe every heartbeat interval, busy or idle (it keeps the
        // session alive and dates the follower's answers), and at once
        // when a read asks for one.
        if self.probe_wanted
            || now.saturating_duration_since(self.last_probe) >= self.config.heartbeat_interval
        {
            return Some(self.probe(now));
        }
        if let Some(frame) = self.next_append(log) {
            return Some(self.sent(now, frame));
        }
        // Idle: tell the follower a new commit at once.
        let commit = self.log.commit;
        if commit > self.sent_commit {
            self.sent_commit = commit;
            let seq = self.probe_seq;
            return Some(self.sent(now, Frame::Heartbeat { commit, seq }));
        }
        None
    }

    pub(super) fn probe(&mut self, now: Instant) -> Frame {
        self.probe_wanted = false;
        self.probe_seq += 1;
        self.last_probe = now;
        if self.probes.len() == MAX_PROBES_IN_FLIGHT {
            self.probes.pop_front();
        }
        self.probes.push_back((self.probe_seq, now));
        let commit = self.log.commit;
        self.sent_commit = commit;
        let seq = self.probe_seq;
        self.sent(now, Frame::Heartbeat { commit, seq })
    }

    pub(super) fn sent(&mut self, now: Instant, frame: Frame) -> Frame {
        if matches!(frame, Frame::Hello { .. }) {
            self.hello_sent = Some(now);
        }
        self.last_sent = now;
        frame
    }

    pub(super) fn start_snapshot(&mut self, _now: Instant) {
        self.conn = Conn::Open(Phase::AwaitPosition);
        self.progress.on_snapshot_started();
        self.loaded.clear();
        self.snapshot = SnapshotSend::Loading;
        self.actions
            .push_back(LinkAction::LoadSnapshot { gen: self.gen });
    }

    pub(super) fn on_snapshot_loaded(
        &mut self,
        now: Instant,
        result: Result<Option<SnapshotBytes>, String>,
    ) {
        match result {
            Ok(Some(snapshot)) => {
                tracing::info!(
                    node = self.node,
                    peer = self.peer,
                    offset = snapshot.offset,
                    bytes = snapshot.bytes.len(),
                    "follower is behind the log start; sending a snapshot"
                );
                self.snapshots_sent += 1;
                self.snapshot = SnapshotSend::Sending {
                    snapshot,
                    position: 0,
                };
            }
            Ok(None) => {
                tracing::error!(
                    node = self.node,
                    peer = self.peer,
                    "follower needs a snapshot but none exists"
                );
                self.disconnect(now, "no snapshot");
            }
            Err(e) => {
                tracing::error!(node = self.node, peer = self.peer, error = %e, "cannot load the snapshot");
                self.disconnect(now, "snapshot unavailable");
            }
        }
    }

    pub(super) fn next_snapshot_chunk(&mut self) -> Option<Frame> {
        let chunk = self.config.batch_bytes.max(1);
        let SnapshotSend::Sending { snapshot, position } = &mut self.snapshot else {
            return None;
        };
        let total = snapshot.bytes.len();
        let start = *position;
        let end = (start + chunk).min(total);
        let frame = Frame::SnapshotChunk {
            offset: snapshot.offset,
            epoch: snapshot.epoch,
            total_len: total as u64,
            position: start as u64,
            data: snapshot.bytes.slice(start..end),
        };
        if end >= total {
            // Everything is out; the follower answers with `Position`.
            self.snapshot = SnapshotSend::None;
        } else {
            *position = end;
        }
        Some(frame)
    }

    pub(super) fn on_wal_read(
        &mut self,
        now: Instant,
        from: u64,
        result: Result<Vec<Record>, ReadFailure>,
    ) {
        if !self.reading {
            return;
        }
        self.reading = false;
        if self.progress.next_offset() != from || self.conn != Conn::Open(Phase::Streaming) {
            return;
        }
        match result {
            Ok(records) => {
                // Nothing read: wait for the next progress update.
                self.wal_wait = records.is_empty();
                // Keep only the contiguous run that starts at `from`.
                let mut expected = from;
                self.loaded = records
                    .into_iter()
                    .take_while(|r| {
                        let ok = r.offset == expected;
                        expected += 1;
                        ok
                    })
                    .collect();
            }
            Err(ReadFailure::BelowLogStart) => self.start_snapshot(now),
            Err(ReadFailure::NotYetWritten) => {
                // A later progress update brings it within reach: no new
                // read until then.
                self.wal_wait = true;
            }
            Err(ReadFailure::Failed(e)) => {
                tracing::error!(node = self.node, peer = self.peer, offset = from, error = %e, "cannot read the WAL for a follower");
                self.disconnect(now, "WAL read failed");
            }
        }
    }

    /// The next `Append`, if the window has room and records are at hand;
    /// asks for a WAL read if they are neither in the tail nor loaded.
    pub(super) fn next_append(&mut self, log: &dyn LogView) -> Option<Frame> {
        if !self.progress.can_send() {
            return None;
        }
        let next = self.progress.next_offset();
        let end = self.log.log_end;
        let (room_bytes, room_entries) = self.progress.room();
        let max_bytes = self.config.batch_bytes.min(room_bytes).max(1);
        let mut records: Vec<Record> = if !self.loaded.is_empty() {
            self.loaded.drain(..).collect()
        } else {
            if self.reading || next > end {
                return None;
            }
            let max_entries = (room_entries as u64).min(end - next + 1) as usize;
            match log.read_tail(next, max_entries, max_bytes) {
                Some(records) if !records.is_empty() => records,
                _ if next > self.log.durable => {
                    // Not cached and not yet written: the next progress
                    // update (durability) brings it within reach.
                    return None;
                }
                _ if self.wal_wait => return None,
                _ => {
                    let max_entries = max_entries.min((self.log.durable - next + 1) as usize);
                    self.reading = true;
                    self.actions.push_back(LinkAction::ReadWal {
                        gen: self.gen,
                        from: next,
                        max_entries,
                        max_bytes,
                    });
                    return None;
                }
            }
        };
        // Keep the batch within the entry room, the batch size and (unless
        // nothing is in flight: one record always fits an empty window) the
        // byte room; what does not fit waits in `loaded`.
        let byte_limit = if self.progress.inflight_bytes() > 0 {
            max_bytes
        } else {
            max_bytes.max(records.first().map_or(0, Record::len))
        };
        let mut total = 0;
        let fit = records
            .iter()
            .take(room_entries)
            .take_while(|r| {
                total += r.len();
                total <= byte_limit
            })
            .count();
        let rest = records.split_off(fit);
        self.loaded.extend(rest);
        let (first, last) = (records.first()?.offset, records.last()?.offset);
        let entries = records.len();
        let payload = concat_records(&records);
        let bytes = payload.len();
        let commit = self.log.commit;
        self.progress.on_sent(last, entries, bytes);
        self.sent_commit = commit;
        tracing::trace!(
            stage = "send",
            node = self.node,
            peer = self.peer,
            offset = first,
            entries,
            bytes
        );
        Some(Frame::Append {
            first_offset: first,
            records: payload,
            commit,
        })
    }
}
