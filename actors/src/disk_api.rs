//! The typed methods a node calls on its disk: one per [`DiskRequest`] and
//! [`ReadRequest`], each queued at the call and answered by the matching
//! completion.

use std::future::Future;

use bytes::Bytes;
use metawal::engine::epoch::EpochRefused;
use metawal::engine::follower::ResetError;
use metawal::engine::link::SnapshotBytes;
use metawal::epochs::EpochIndex;
use metawal::record::Record;
use metawal::storage::{NodeMeta, Snapshot, StorageError};
use metawal::wal::WalError;
use metawal::{MetadataState, NodeId};

use crate::disk::DiskHandle;
use crate::error::DiskError;
use metawal::engine::disk_io::{DiskCompletion, DiskRequest, ReadCompletion, ReadRequest};
use metawal::engine::recovery::Recovered;

/// A completion that is not the one its request has: a bug in this file.
fn mismatched(node: NodeId, what: &str) -> DiskError {
    DiskError::Inconsistent {
        dir: String::new(),
        reason: format!("bug: node {node}'s disk answered {what} with another completion"),
    }
}

/// One typed method per request: the only way the node asks its disk
/// writer thread for anything but appends. Each returns a `'static`
/// future (the request is queued at the call).
impl DiskHandle {
    /// [`DiskRequest::Recover`].
    pub(crate) fn recover(&self) -> impl Future<Output = Result<Recovered, DiskError>> + 'static {
        let (done, node) = (self.request(DiskRequest::Recover), self.node());
        async move {
            match done.await? {
                DiskCompletion::Recovered(r) => Ok((*r)?),
                _ => Err(mismatched(node, "Recover")),
            }
        }
    }

    /// [`DiskRequest::PersistMeta`].
    pub(crate) fn persist_meta(
        &self,
        meta: NodeMeta,
    ) -> impl Future<Output = Result<Result<(), EpochRefused>, DiskError>> + 'static {
        let (done, node) = (self.request(DiskRequest::PersistMeta(meta)), self.node());
        async move {
            match done.await? {
                DiskCompletion::MetaPersisted(r) => Ok(r?),
                _ => Err(mismatched(node, "PersistMeta")),
            }
        }
    }

    /// [`DiskRequest::PersistVote`].
    pub(crate) fn persist_vote(
        &self,
        epoch: u64,
        voted_for: Option<NodeId>,
    ) -> impl Future<Output = Result<Result<NodeMeta, EpochRefused>, DiskError>> + 'static {
        let request = DiskRequest::PersistVote { epoch, voted_for };
        let (done, node) = (self.request(request), self.node());
        async move {
            match done.await? {
                DiskCompletion::VotePersisted(r) => Ok(r?),
                _ => Err(mismatched(node, "PersistVote")),
            }
        }
    }

    /// [`DiskRequest::ReadBack`]: the log's epochs and `meta` as on disk.
    pub(crate) fn read_back(
        &self,
    ) -> impl Future<Output = Result<(EpochIndex, Result<Option<NodeMeta>, StorageError>), DiskError>>
           + 'static {
        let (done, node) = (self.request(DiskRequest::ReadBack), self.node());
        async move {
            match done.await? {
                DiskCompletion::ReadBack { epochs, meta } => Ok((epochs, meta)),
                _ => Err(mismatched(node, "ReadBack")),
            }
        }
    }

    /// [`DiskRequest::TruncateSuffix`]: the log's epochs after it.
    pub(crate) fn truncate_suffix(
        &self,
        to: u64,
    ) -> impl Future<Output = Result<EpochIndex, String>> + 'static {
        let (done, node) = (
            self.request(DiskRequest::TruncateSuffix { to }),
            self.node(),
        );
        async move {
            match done.await {
                Ok(DiskCompletion::Truncated(r)) => r,
                Ok(_) => Err(mismatched(node, "TruncateSuffix").to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    }

    /// [`DiskRequest::InstallSnapshot`].
    pub(crate) fn install_snapshot(
        &self,
        offset: u64,
        epoch: u64,
        bytes: Bytes,
        replace_log: bool,
    ) -> impl Future<Output = Result<(EpochIndex, Box<Snapshot>), ResetError>> + 'static {
        let request = DiskRequest::InstallSnapshot {
            offset,
            epoch,
            bytes,
            replace_log,
        };
        let (done, node) = (self.request(request), self.node());
        async move {
            match done.await {
                Ok(DiskCompletion::SnapshotInstalled(r)) => r,
                Ok(_) => Err(ResetError::Storage(
                    mismatched(node, "InstallSnapshot").to_string(),
                )),
                Err(e) => Err(ResetError::Storage(e.to_string())),
            }
        }
    }

    /// [`DiskRequest::WriteSnapshot`]: the new log start.
    pub(crate) fn write_snapshot(
        &self,
        snapshot: Snapshot,
        keep_from: u64,
    ) -> impl Future<Output = Result<(u64, u64), String>> + 'static {
        let request = DiskRequest::WriteSnapshot {
            snapshot: Box::new(snapshot),
            keep_from,
        };
        let (done, node) = (self.request(request), self.node());
        async move {
            match done.await {
                Ok(DiskCompletion::SnapshotWritten(r)) => r,
                Ok(_) => Err(mismatched(node, "WriteSnapshot").to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    }

    /// [`DiskRequest::ReplayLog`]: the appended state and the last offset.
    pub(crate) fn replay_log(
        &self,
        state: MetadataState,
    ) -> impl Future<Output = Result<(MetadataState, u64), String>> + 'static {
        let request = DiskRequest::ReplayLog {
            state: Box::new(state),
        };
        let (done, node) = (self.request(request), self.node());
        async move {
            match done.await {
                Ok(DiskCompletion::LogReplayed(r)) => r.map(|(s, last)| (*s, last)),
                Ok(_) => Err(mismatched(node, "ReplayLog").to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    }

    /// Up to `max_entries` durable records from `from` within `max_bytes`
    /// (at least one), read on the reader thread (a `ReadRequest::Range`):
    /// the records, or why not.
    pub fn read_wal(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<Record>, DiskError>> + 'static {
        let done = self.read_range(from, max_entries, max_bytes);
        async move {
            let (_, records) = done.await?;
            Ok(records?)
        }
    }

    /// [`ReadRequest::Range`]: the log start at the read and the records.
    pub(crate) fn read_range(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<(u64, Result<Vec<Record>, WalError>), DiskError>> + 'static
    {
        let request = ReadRequest::Range {
            from,
            max_entries,
            max_bytes,
        };
        let (done, node) = (self.read_request(request), self.node());
        async move {
            match done.await? {
                ReadCompletion::Range { log_start, records } => Ok((log_start, records)),
                _ => Err(mismatched(node, "Range")),
            }
        }
    }

    /// [`ReadRequest::LogStart`].
    pub(crate) fn log_start(&self) -> impl Future<Output = Result<u64, DiskError>> + 'static {
        let (done, node) = (self.read_request(ReadRequest::LogStart), self.node());
        async move {
            match done.await? {
                ReadCompletion::LogStart(start) => Ok(start),
                _ => Err(mismatched(node, "LogStart")),
            }
        }
    }

    /// [`ReadRequest::LoadSnapshot`].
    pub(crate) fn load_snapshot(
        &self,
    ) -> impl Future<Output = Result<Option<SnapshotBytes>, String>> + 'static {
        let (done, node) = (self.read_request(ReadRequest::LoadSnapshot), self.node());
        async move {
            match done.await {
                Ok(ReadCompletion::Snapshot(r)) => r,
                Ok(_) => Err(mismatched(node, "LoadSnapshot").to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}
