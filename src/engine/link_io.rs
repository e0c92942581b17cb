//! The link engine's vocabulary: what the leader's log looks like to a
//! link, its inputs, reports and actions, and its setup (see
//! [`super::link`], which decides).

use std::time::Instant;

use bytes::Bytes;

use crate::command::NodeId;
use crate::config::ReplicationConfig;
use crate::frame::Frame;
use crate::handshake::{HandshakeKeys, Nonce};
use crate::membership::DirectoryId;
use crate::record::Record;
use crate::replication::StartPoint;

/// Where the leader's log stands, as the link needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogProgress {
    /// Last offset appended (maybe not yet durable).
    pub log_end: u64,
    /// Last offset durable in this node's WAL.
    pub durable: u64,
    /// Highest committed offset known (the leader's commit point).
    pub commit: u64,
}

impl LogProgress {
    /// Entries up to here may be applied: committed and durable locally.
    pub fn applicable(&self) -> u64 {
        self.commit.min(self.durable)
    }
}

/// The leader's log as the link reads it, synchronously and in memory: the
/// epoch boundaries (for the start point) and the newest records.
pub trait LogView {
    /// Where a follower whose log ends at `(last_offset, last_epoch)` joins
    /// the leader's log (see [`crate::replication::decide_start`]).
    fn start_point(&self, last_offset: u64, last_epoch: u64) -> StartPoint;
    /// Up to `max_entries` records from `from` on, within `max_bytes` (at
    /// least one record), if the in-memory tail holds `from`.
    fn read_tail(&self, from: u64, max_entries: usize, max_bytes: usize) -> Option<Vec<Record>>;
}

/// Why a WAL read for the link returned no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFailure {
    /// The WAL no longer holds `from` (it was compacted into a snapshot).
    BelowLogStart,
    /// `from` is not written yet.
    NotYetWritten,
    /// The read failed (I/O error, corrupt record, disk thread gone).
    Failed(String),
}

/// The latest snapshot, encoded for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotBytes {
    /// Last offset the snapshot covers.
    pub offset: u64,
    /// Epoch of that entry.
    pub epoch: u64,
    /// The encoded snapshot.
    pub bytes: Bytes,
}

/// An event for the link engine.
#[derive(Debug, Clone)]
pub enum LinkInput {
    /// A timer fired (see `FollowerLinkEngine::poll_timeout`).
    Tick,
    /// The follower connected to this leader's port: it may be back, so a
    /// disconnected link retries soon instead of waiting out its backoff.
    Wake,
    /// The leader's log moved.
    Progress(LogProgress),
    /// A read waits for the follower's answer: send a probe (a
    /// `Heartbeat` with a new `seq`) with the next frame instead of at the
    /// next heartbeat interval. Ignored unless streaming.
    Probe,
    /// The TCP connection asked for by [`LinkAction::Connect`] is open.
    /// `nonce` is fresh randomness for this connection's `Hello`.
    Connected {
        /// The generation of the [`LinkAction::Connect`].
        gen: u64,
        /// [`crate::frame::NONCE_LEN`] random bytes from a CSPRNG.
        nonce: Nonce,
    },
    /// The TCP connect failed or timed out.
    ConnectFailed {
        /// The generation of the [`LinkAction::Connect`].
        gen: u64,
        /// What went wrong, for the log.
        reason: String,
    },
    /// A frame from the follower.
    Frame {
        /// The connection it came on.
        gen: u64,
        /// The frame.
        frame: Frame,
    },
    /// The connection ended: closed by the follower, a read or write error,
    /// bad bytes, or the writer queue gone.
    Closed {
        /// The connection.
        gen: u64,
        /// Why, for the log.
        reason: String,
    },
    /// The answer to [`LinkAction::ReadWal`].
    WalRead {
        /// The connection it was asked for.
        gen: u64,
        /// The first offset asked for.
        from: u64,
        /// The records, or why there are none.
        result: Result<Vec<Record>, ReadFailure>,
    },
    /// The answer to [`LinkAction::LoadSnapshot`]: `Ok(None)` if there is no
    /// snapshot.
    SnapshotLoaded {
        /// The connection it was asked for.
        gen: u64,
        /// The snapshot, or why it could not be loaded.
        result: Result<Option<SnapshotBytes>, String>,
    },
}

/// What the Replicator is told about this link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkReport {
    /// Handshake done; the follower's log matches the leader's up to
    /// `matched`.
    Connected {
        /// The match point.
        matched: u64,
    },
    /// The follower has everything up to `offset` on disk (cumulative).
    Acked {
        /// The acked offset.
        offset: u64,
    },
    /// The connection reported by `Connected` is gone.
    Disconnected,
    /// The follower's `Welcome` proved its data directory id (reported
    /// before `Connected`): a change pins it in the membership where the
    /// membership does not know it yet.
    Identified {
        /// The directory id.
        directory_id: DirectoryId,
    },
    /// The follower answered on this epoch's authenticated connection (a
    /// `Welcome`, `Position` or `Ack` the link accepted): it counts as
    /// heard for check-quorum and read index **as of `since`**, the latest
    /// time this leader sent something the follower had read before it
    /// answered (the `Hello`, or the probe the `Ack` echoes), never the
    /// time the answer arrived.
    Heard {
        /// The follower followed this leader at some time after this.
        since: Instant,
    },
    /// The follower refused the leader: it knows epoch `epoch` (led by
    /// `leader`), which fences this leader's.
    Fenced {
        /// The follower's epoch.
        epoch: u64,
        /// The leader it knows for that epoch.
        leader: Option<NodeId>,
        /// The refusal carried a valid proof: the epoch is real.
        proven: bool,
    },
}

/// What the shell must do, besides writing frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Open a TCP connection to the follower (bounded by the session
    /// timeout), then report [`LinkInput::Connected`] or
    /// [`LinkInput::ConnectFailed`] with this `gen`.
    Connect {
        /// The generation of the connection to open.
        gen: u64,
    },
    /// Close connection `gen` now (frames still queued are dropped: the
    /// link resends from the acked offset on the next connection).
    Close {
        /// The connection.
        gen: u64,
    },
    /// Read up to `max_entries` records from `from` on, within `max_bytes`,
    /// from the WAL (off the arbiter), then report [`LinkInput::WalRead`].
    ReadWal {
        /// The connection the read is for.
        gen: u64,
        /// First offset.
        from: u64,
        /// Most entries.
        max_entries: usize,
        /// Byte budget (at least one record is returned).
        max_bytes: usize,
    },
    /// Load and encode the latest snapshot (off the arbiter), then report
    /// [`LinkInput::SnapshotLoaded`].
    LoadSnapshot {
        /// The connection it is for.
        gen: u64,
    },
    /// Tell the Replicator.
    Report(LinkReport),
}

/// Who is linked to whom, in which epoch, with which settings.
#[derive(Debug, Clone)]
pub struct LinkSetup {
    /// The leader (this node).
    pub node: NodeId,
    /// The follower.
    pub peer: NodeId,
    /// The leader's epoch.
    pub epoch: u64,
    /// This node's handshake keys.
    pub keys: HandshakeKeys,
    /// Windows, batch size, timeouts and backoff.
    pub config: ReplicationConfig,
}
