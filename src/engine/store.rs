//! The store engine: admission of proposals on the leader, the order in
//! which committed entries are applied on every node, and when to snapshot.
//!
//! [`MetadataStoreEngine`] holds the applied [`MetadataState`], the leader's
//! *appended* state (committed entries plus those appended but not yet
//! committed, so two proposals in a row are validated against each other),
//! the bounded queue of decoded entries waiting for their commit, and the
//! log progress (commit point, local durability). It decides:
//! - whether a proposal is admitted ([`MetadataStoreEngine::admit`]): the role, the
//!   ISR size for `acks=all`, the command against the appended state, the
//!   bound on appended-but-uncommitted entries; then its offset, epoch and
//!   encoded record. Only once the shell has handed the record to the
//!   Replicator does [`MetadataStoreEngine::appended`] make it part of the log;
//! - what to apply next: entries up to `min(commit, durable)`, in order,
//!   from the queue, or else a read of the WAL
//!   ([`StoreAction::ReadWal`], one at a time, at most [`READ_BATCH`]);
//! - that a committed record that does not decode, or reads that keep
//!   failing, fail-stop the node (it never skips an entry nor applies out of
//!   order);
//! - when to take a snapshot ([`SnapshotPolicy`]).
//!
//! Each applied entry is handed to an [`ApplySink`] as it is applied (the
//! shell updates the node's view and notifies subscribers from it, so a
//! reader never sees a later entry's effect under an earlier offset).

use std::collections::VecDeque;

use crate::command::{Command, Entry, NodeId};
use crate::engine::LogProgress;
use crate::record::{decode_record, Record, RecordError};
use crate::state::MetadataState;
use crate::storage::Snapshot;

/// Most decoded entries held in memory waiting for their commit; the rest
/// are read back from the WAL when they commit.
pub const MAX_PENDING: usize = 16 * 1024;
/// Most entries read from the WAL at once when applying.
pub const READ_BATCH: usize = 4096;
/// Most appended-but-uncommitted entries before proposals are refused. With
/// records of at most 64 KiB (in practice < 2 KiB) this bounds the leader's
/// write queue and waiters.
pub const MAX_UNCOMMITTED: u64 = 250_000;

pub use super::store_io::*;
pub use super::store_policy::*;

/// The leader's appended state.
#[derive(Debug, Clone)]
struct Appended {
    state: MetadataState,
    next_offset: u64,
    epoch: u64,
}

/// The store engine of one node (see the module docs).
#[derive(Debug, Clone)]
pub struct MetadataStoreEngine {
    node: NodeId,
    snapshot_every: u64,
    state: MetadataState,
    appended: Option<Appended>,
    pending: VecDeque<Entry>,
    progress: LogProgress,
    reading: bool,
    snapshots: SnapshotPolicy,
    read_retry: ReadRetry,
    failed: bool,
    actions: VecDeque<StoreAction>,
}

impl MetadataStoreEngine {
    /// A store whose applied state is `state` (recovered), snapshotting
    /// every `snapshot_every` entries, with the log progress `progress`.
    pub fn new(
        node: NodeId,
        state: MetadataState,
        snapshot_every: u64,
        progress: LogProgress,
    ) -> MetadataStoreEngine {
        MetadataStoreEngine {
            node,
            snapshot_every,
            snapshots: SnapshotPolicy::new(snapshot_every, state.applied_offset()),
            state,
            appended: None,
            pending: VecDeque::new(),
            progress,
            reading: false,
            read_retry: ReadRetry::default(),
            failed: false,
            actions: VecDeque::new(),
        }
    }

    /// The applied state.
    pub fn state(&self) -> &MetadataState {
        &self.state
    }

    /// The log progress it knows.
    pub fn progress(&self) -> LogProgress {
        self.progress
    }

    /// The epoch this node leads, if it leads.
    pub fn leading(&self) -> Option<u64> {
        self.appended.as_ref().map(|a| a.epoch)
    }

    /// Whether it fail-stopped.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Entries waiting for their commit.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<StoreAction> {
        self.actions.pop_front()
    }

    /// Check a proposal and give it its offset, epoch and record. Nothing
    /// changes: the entry is in the log only once [`MetadataStoreEngine::appended`]
    /// is called (after the Replicator took it). `control` entries (the
    /// leader's own `LeaderChange`) are not validated.
    pub fn admit(
        &self,
        command: Command,
        acks_all: bool,
        control: bool,
        adm: Admission,
    ) -> Result<Admitted, AdmitRefused> {
        let log = match (adm.role, &self.appended) {
            (NodeRole::Leader, Some(log)) => log,
            (NodeRole::Stopped, _) => return Err(AdmitRefused::Stopped),
            (NodeRole::Failed, _) => return Err(AdmitRefused::Failed),
            (NodeRole::Follower { leader }, _) => return Err(AdmitRefused::NotLeader { leader }),
            // Leading, but the log is not taken yet (a role change runs).
            (NodeRole::Leader, None) => return Err(AdmitRefused::NotLeader { leader: None }),
        };
        if self.failed {
            return Err(AdmitRefused::Failed);
        }
        if acks_all && adm.isr_len < adm.min_insync {
            return Err(AdmitRefused::NotEnoughReplicas {
                isr: adm.isr_len,
                required: adm.min_insync,
            });
        }
        if !control {
            log.state
                .validate(&command)
                .map_err(AdmitRefused::Invalid)?;
        }
        let uncommitted = log.next_offset.saturating_sub(1 + self.progress.commit);
        if uncommitted >= MAX_UNCOMMITTED {
            return Err(AdmitRefused::Uncommitted {
                entries: uncommitted,
                max: MAX_UNCOMMITTED,
            });
        }
        let entry = Entry {
            offset: log.next_offset,
            epoch: log.epoch,
            command,
        };
        let record = Record::encode(&entry).map_err(|e| match e {
            RecordError::BadLength { len, max } => AdmitRefused::TooLarge { bytes: len, max },
            e => AdmitRefused::Encode(e),
        })?;
        Ok(Admitted { entry, record })
    }

    /// The Replicator took an admitted entry: it is in the log's order now.
    pub fn appended(&mut self, entry: Entry) {
        let Some(log) = self.appended.as_mut() else {
            return;
        };
        let result = if entry.offset != log.next_offset {
            Err(format!(
                "bug: entry {} appended where {} was next",
                entry.offset, log.next_offset
            ))
        } else {
            // It was validated against this very state: a refusal means the
            // appended state no longer matches the log, and later proposals
            // would be checked against the wrong state.
            log.state.apply(&entry).map_err(|e| {
                format!(
                    "bug: the appended state refused validated entry {}: {e}",
                    entry.offset
                )
            })
        };
        match result {
            Ok(()) => {
                log.next_offset += 1;
                self.push_pending(entry);
            }
            Err(reason) => self.fail_stop(reason),
        }
    }

    /// Take one input; apply what may be applied.
    pub fn handle(&mut self, input: StoreInput, sink: &mut dyn ApplySink) {
        match input {
            StoreInput::Progress(p) => self.progress = p,
            StoreInput::Entries(entries) => {
                for e in entries {
                    self.push_pending(e);
                }
            }
            StoreInput::WalRead { from, upto, result } => {
                self.reading = false;
                match result {
                    Ok(records) => {
                        self.read_retry.on_ok();
                        self.apply_read(records, upto, sink);
                    }
                    Err(error) => {
                        match self.read_retry.on_failed() {
                            ReadVerdict::Retry => {
                                // Bounded: after MAX_READ_FAILURES in a row
                                // the node fail-stops.
                                tracing::warn!(node = self.node, offset = from, %error, "cannot read committed entries from the WAL; retrying");
                                self.actions.push_back(StoreAction::RetryReadLater);
                            }
                            ReadVerdict::FailStop => self.fail_stop(format!(
                                "cannot read committed entries from offset {from} after {MAX_READ_FAILURES} tries: {error}"
                            )),
                        }
                        return;
                    }
                }
            }
            StoreInput::RetryRead => {}
            StoreInput::Truncated { to } => {
                self.pending.retain(|e| e.offset <= to);
            }
            StoreInput::SnapshotInstalled(snap) => {
                if snap.offset <= self.state.applied_offset() {
                    return;
                }
                tracing::info!(
                    node = self.node,
                    offset = snap.offset,
                    epoch = snap.epoch,
                    "state replaced by snapshot"
                );
                let offset = snap.offset;
                self.state = snap.state;
                sink.reset(&self.state);
                self.pending.retain(|e| e.offset > offset);
                self.snapshots.on_installed(offset);
            }
            StoreInput::SnapshotWritten { offset } => self.snapshots.on_written(offset),
            StoreInput::SnapshotFailed { offset, error } => {
                // Retried after another snapshot_every entries (the WAL
                // keeps everything meanwhile), not on every apply pass.
                self.snapshots.on_failed(offset);
                tracing::error!(node = self.node, offset, %error, "snapshot failed; retrying after another snapshot_every entries");
            }
            StoreInput::Lead {
                epoch,
                appended,
                next_offset,
            } => {
                self.appended = Some(Appended {
                    state: appended,
                    next_offset,
                    epoch,
                });
                self.pending.clear();
            }
            StoreInput::StepDown => {
                self.appended = None;
                self.pending.clear();
            }
        }
        self.drive(sink);
    }

    fn push_pending(&mut self, entry: Entry) {
        if entry.offset <= self.state.applied_offset() {
            return;
        }
        if let Some(back) = self.pending.back() {
            if entry.offset != back.offset + 1 {
                if self.pending.len() >= MAX_PENDING {
                    return;
                }
                // A gap: start a new run; the gap is read from the WAL.
                self.pending.clear();
            }
        }
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(entry);
        }
    }

    /// Apply everything committed and durable here, from the queue or the
    /// WAL; then maybe snapshot.
    fn drive(&mut self, sink: &mut dyn ApplySink) {
        if self.failed {
            return;
        }
        let target = self.progress.applicable();
        while !self.failed && self.state.applied_offset() < target {
            let next = self.state.applied_offset() + 1;
            while self.pending.front().is_some_and(|e| e.offset < next) {
                self.pending.pop_front();
            }
            match self.pending.front() {
                Some(e) if e.offset == next => {
                    if let Some(e) = self.pending.pop_front() {
                        self.apply_entry(e, sink);
                    }
                }
                front => {
                    let upto = front.map_or(target, |e| (e.offset - 1).min(target));
                    if !self.reading {
                        self.reading = true;
                        let count = (upto - next + 1).min(READ_BATCH as u64) as usize;
                        self.actions.push_back(StoreAction::ReadWal {
                            from: next,
                            count,
                            upto,
                        });
                    }
                    break;
                }
            }
        }
        self.maybe_snapshot();
    }

    fn apply_read(&mut self, records: Vec<Record>, upto: u64, sink: &mut dyn ApplySink) {
        for r in records {
            if self.failed || r.offset != self.state.applied_offset() + 1 || r.offset > upto {
                break;
            }
            match decode_record(&r.bytes) {
                Ok((entry, _)) => self.apply_entry(entry, sink),
                Err(e) => {
                    self.fail_stop(format!(
                        "committed record {} read back from the WAL is corrupt: {e}",
                        r.offset
                    ));
                    return;
                }
            }
        }
    }

    fn apply_entry(&mut self, entry: Entry, sink: &mut dyn ApplySink) {
        tracing::trace!(
            stage = "apply",
            node = self.node,
            offset = entry.offset,
            epoch = entry.epoch
        );
        match self.state.apply(&entry) {
            Ok(()) => {}
            Err(e) if e.is_out_of_order() => {
                // Only the next offset is ever applied: a broken invariant.
                self.fail_stop(format!(
                    "bug: entry {} applied out of order: {e}",
                    entry.offset
                ));
                return;
            }
            Err(e) => {
                // Validated by its leader against the state before it: a
                // committed entry that does not apply is a bug or a
                // corruption. Fail-stop, as a replay at start does
                // (`engine::recovery`), rather than hold a state no other
                // node has.
                self.fail_stop(format!(
                    "committed entry {} does not apply to the state before it: {e}",
                    entry.offset
                ));
                return;
            }
        }
        sink.applied(&self.state, entry);
    }

    fn maybe_snapshot(&mut self) {
        let applied = self.state.applied_offset();
        if self.failed || !self.snapshots.maybe_start(applied) {
            return;
        }
        let snapshot = Snapshot {
            offset: applied,
            epoch: self.state.applied_epoch(),
            state: self.state.clone(),
        };
        self.actions.push_back(StoreAction::TakeSnapshot {
            snapshot,
            keep_from: applied.saturating_sub(self.snapshot_every),
        });
    }

    fn fail_stop(&mut self, reason: String) {
        if self.failed {
            return;
        }
        tracing::error!(node = self.node, offset = self.state.applied_offset(), %reason, "cannot apply the committed log; node stopped applying: restart it");
        self.failed = true;
        self.actions.push_back(StoreAction::FailStop(reason));
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod engine_tests;
