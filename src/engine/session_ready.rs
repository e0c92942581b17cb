//! The session's `Ready` phase: the replication frames of an attached
//! leader — `Append` (decoded and checked before it reaches the log),
//! `Heartbeat` (commit point, probe acks), `Truncate`, and the reassembly of
//! snapshot chunks (in order, bounded by [`MAX_SNAPSHOT_BYTES`]).
//!
//! A child module of `session.rs` (it sees the engine's private state),
//! separate so that `session.rs` holds the handshake, the attach and the
//! session's lifecycle, and this file what flows once it is attached.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Local, Pending, ReplicaSessionEngine, SessionAction, MAX_SNAPSHOT_BYTES};
use crate::frame::Frame;
use crate::record::RecordReader;

/// A snapshot being received.
#[derive(Debug, Clone)]
pub(super) struct SnapshotRecv {
    offset: u64,
    epoch: u64,
    total: u64,
    buf: BytesMut,
}

impl ReplicaSessionEngine {
    pub(super) fn on_ready_frame(&mut self, now: Instant, epoch: u64, frame: Frame, local: Local) {
        match frame {
            Frame::Append {
                first_offset,
                records,
                commit,
            } => self.on_append(epoch, first_offset, records, commit),
            Frame::Heartbeat { commit, seq } => {
                self.actions.push_back(SessionAction::Commit { commit });
                self.probe_seq = self.probe_seq.max(seq);
                // A new probe is answered at once (a read waits for it);
                // a heartbeat that only carries the commit point, at most
                // every half heartbeat interval.
                if self.probe_seq > self.probe_acked
                    || now.saturating_duration_since(self.last_ack)
                        >= self.config.heartbeat_interval / 2
                {
                    self.ack(now, local.durable);
                }
            }
            Frame::Truncate { to } => {
                self.set_pending(Pending::Reset);
                self.actions.push_back(SessionAction::Truncate { to });
            }
            Frame::SnapshotChunk {
                offset,
                epoch,
                total_len,
                position,
                data,
            } => self.on_snapshot_chunk(now, offset, epoch, total_len, position, data, local),
            other => {
                tracing::warn!(
                    node = self.node,
                    frame = other.kind(),
                    "unexpected frame from leader"
                );
                self.close("protocol error");
            }
        }
    }

    fn on_append(&mut self, epoch: u64, first_offset: u64, records: Bytes, commit: u64) {
        let mut recs = Vec::new();
        let mut entries = Vec::new();
        for item in RecordReader::new(records) {
            match item {
                Ok((r, e)) => {
                    recs.push(r);
                    entries.push(e);
                }
                Err(e) => {
                    tracing::warn!(node = self.node, epoch, offset = first_offset + recs.len() as u64, error = %e, "bad record from leader; nothing of this batch is written");
                    self.close("bad record");
                    return;
                }
            }
        }
        if recs.first().is_some_and(|r| r.offset != first_offset) {
            tracing::warn!(
                node = self.node,
                offset = first_offset,
                "Append's first_offset does not match its first record"
            );
            self.close("bad append");
            return;
        }
        self.set_pending(Pending::Append);
        self.actions.push_back(SessionAction::Append {
            records: recs,
            entries,
            commit,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_snapshot_chunk(
        &mut self,
        now: Instant,
        offset: u64,
        epoch: u64,
        total: u64,
        position: u64,
        data: Bytes,
        local: Local,
    ) {
        if total > MAX_SNAPSHOT_BYTES {
            tracing::warn!(node = self.node, bytes = total, "snapshot too large");
            self.close("snapshot too large");
            return;
        }
        if position == 0 {
            self.snapshot = Some(SnapshotRecv {
                offset,
                epoch,
                total,
                buf: BytesMut::new(),
            });
        }
        let Some(s) = self.snapshot.as_mut() else {
            self.close("snapshot chunk out of order");
            return;
        };
        if s.offset != offset
            || s.epoch != epoch
            || s.total != total
            || s.buf.len() as u64 != position
            || position + data.len() as u64 > total
        {
            self.snapshot = None;
            self.close("snapshot chunk out of order");
            return;
        }
        s.buf.extend_from_slice(&data);
        if (s.buf.len() as u64) < total {
            // Keep the leader's link from timing out during a long transfer.
            if now.saturating_duration_since(self.last_ack) >= self.config.heartbeat_interval {
                self.ack(now, local.durable);
            }
            return;
        }
        let Some(s) = self.snapshot.take() else {
            return;
        };
        self.set_pending(Pending::Reset);
        self.actions.push_back(SessionAction::InstallSnapshot {
            offset,
            epoch,
            bytes: s.buf.freeze(),
        });
    }
}
